"""privacy: ``.forgetme`` erases what the bot keeps about the speaking user.

``.forgetme`` alone only says what it would erase; ``.forgetme confirm`` erases it.
The two steps keep no state between them (a pending question would itself be data about
the user): ``confirm`` erases whatever is stored at that moment.  What counts as data
about a user is :mod:`plugstore.userdata`'s rule -- scoped entries at a ``user`` or
``member`` level and conversation states, in every namespace of the host's store --
plus what each loaded plugin's user-data hook finds: the rows of its tables
(``RelationalPlugin(..., user_data=...)``, as the poll plugin does) and the values its
:attr:`~plugstore.bot.plugin.Plugin.user_data` hook knows.  A hook that fails is named
in an error reply; everything else is still erased.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugstore.userdata import UserDataError, UserDataHook, bind_user_data, forget_user

from ..plugin import CommandError, Context, Plugin, UsageError, command

if TYPE_CHECKING:
    from ..host import ChatHost

#: The argument that makes ``.forgetme`` erase.
CONFIRM = "confirm"


def chat_hooks(host: ChatHost) -> list[UserDataHook]:
    """The user-data hooks of the host's loaded plugins: each plugin's
    :attr:`~plugstore.bot.plugin.Plugin.user_data`, then its tables' hook."""
    hooks: list[UserDataHook] = []
    for plugin in host.plugins:
        if plugin.user_data is not None:
            hooks.append(bind_user_data(plugin.user_data, host.store, plugin.name))
        if plugin.db is not None:
            hook = plugin.db.user_data_hook()
            if hook is not None:
                hooks.append(hook)
    return hooks


class Privacy(Plugin):
    """What the bot keeps about you, and forgetting it."""

    name = "privacy"

    @command(usage=f"[{CONFIRM}]")
    def forgetme(self, ctx: Context, args: str) -> str:
        """Say what I keep about you; with 'confirm', erase it all."""
        verb = args.strip().lower()
        if verb not in ("", CONFIRM):
            raise UsageError(f"say '.forgetme {CONFIRM}' to erase, or nothing to see first")
        dry_run = verb != CONFIRM
        try:
            summary = forget_user(
                self.host.store, ctx.user, dry_run=dry_run, hooks=chat_hooks(self.host)
            )
        except UserDataError as exc:
            done = exc.summary.describe() if exc.summary is not None else "nothing"
            raise CommandError(_partly(done, exc, dry_run)) from exc
        if not summary.total:
            return "I keep nothing about you."
        if summary.dry_run:
            return (
                f"I keep {summary.describe()} about you. "
                f"Say '.forgetme {CONFIRM}' to erase it all; this cannot be undone."
            )
        return f"Done: I forgot {summary.describe()} about you."


def _partly(done: str, exc: UserDataError, dry_run: bool) -> str:
    failed = "; ".join(f"plugin {f.name!r}: {f.error}" for f in exc.failures)
    if dry_run:
        return (
            f"I keep {done} about you, and I could not check what these plugins keep "
            f"({failed}). Try again later."
        )
    return (
        f"I forgot {done} about you, but I could not erase what these plugins keep "
        f"({failed}). Say '.forgetme {CONFIRM}' again later."
    )
