"""privacy: ``.forgetme`` erases what the bot keeps about the speaking user.

``.forgetme`` alone only says what it would erase; ``.forgetme confirm`` erases it.
The two steps keep no state between them (a pending question would itself be data about
the user): ``confirm`` erases whatever is stored at that moment.  What counts as data
about a user is :mod:`plugstore.userdata`'s rule: scoped entries at a ``user`` or
``member`` level and conversation states, in every namespace of the host's store.
"""

from __future__ import annotations

from plugstore.userdata import forget_user

from ..plugin import Context, Plugin, UsageError, command

#: The argument that makes ``.forgetme`` erase.
CONFIRM = "confirm"


class Privacy(Plugin):
    """What the bot keeps about you, and forgetting it."""

    name = "privacy"

    @command(usage=f"[{CONFIRM}]")
    def forgetme(self, ctx: Context, args: str) -> str:
        """Say what I keep about you; with 'confirm', erase it all."""
        verb = args.strip().lower()
        if verb not in ("", CONFIRM):
            raise UsageError(f"say '.forgetme {CONFIRM}' to erase, or nothing to see first")
        summary = forget_user(self.host.store, ctx.user, dry_run=verb != CONFIRM)
        if not summary.total:
            return "I keep nothing about you."
        if summary.dry_run:
            return (
                f"I keep {summary.describe()} about you. "
                f"Say '.forgetme {CONFIRM}' to erase it all; this cannot be undone."
            )
        return f"Done: I forgot {summary.describe()} about you."
