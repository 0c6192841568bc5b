"""What a chat plugin is made of: a class, its commands, listeners and conversations.

A plugin is a small class.  Methods marked :func:`command` answer ``.name args`` lines;
methods marked :func:`listen` see every plain line matching a regular expression
(``thing++``); :meth:`Plugin.converse` receives the plain lines of a user the plugin is
in a conversation with (its state for that user is not ``"START"``).  Each plugin gets
its own :class:`~plugstore.namespace.Namespace` (``self.data``) and per-user state kept
in a :class:`~plugstore.state.StateStore`, so everything survives a restart and is
shared by every process using the same store.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from sqlalchemy.orm import Session

    from plugstore.namespace import Namespace
    from plugstore.relational import PluginDatabase, RelationalPlugin
    from plugstore.state import StateStore
    from plugstore.userdata import UserData
    from plugstore.versioning import Migration

    from .host import ChatHost

#: What a handler may return: one reply, several, or nothing.
Replies = str | Iterable[str] | None

F = TypeVar("F", bound=Callable[..., Replies])

_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,39}\Z")
_COMMAND_RE = re.compile(r"[a-z][a-z0-9_-]{0,39}\Z")
#: Where a line is said when nobody says where (the console's default channel).
DEFAULT_CHANNEL = "general"


class UsageError(Exception):
    """Raised by a command whose arguments are wrong; the reply shows its usage line."""


class CommandError(Exception):
    """Raised by a command to answer with an error message (no usage line)."""


@dataclass(frozen=True)
class CommandSpec:
    """A command as the host knows it: ``.name usage`` and a one-line description."""

    name: str
    usage: str
    description: str
    plugin: Plugin
    handler: Callable[[Context, str], Replies]

    @property
    def synopsis(self) -> str:
        """``.name usage``, as shown by ``.help``."""
        return f".{self.name} {self.usage}".rstrip()


@dataclass(frozen=True)
class ListenerSpec:
    """A listener: a pattern, its description, and the method receiving the matches."""

    pattern: re.Pattern[str]
    synopsis: str
    description: str
    plugin: Plugin
    handler: Callable[[Context, list[re.Match[str]]], Replies]


def command(
    name: str | None = None, *, usage: str = "", aliases: Iterable[str] = ()
) -> Callable[[F], F]:
    """Mark a plugin method as the command ``.name`` (default: the method's name).

    The method is called as ``method(ctx, args)`` with ``args`` the rest of the line
    (stripped).  The first line of its docstring is its ``.help`` description; ``usage``
    describes its arguments (``"KEY is VALUE"``).  Raise :class:`UsageError` for bad
    arguments.
    """

    aliases = list(aliases)
    for each in [*aliases, *([name] if name else [])]:
        _check_command_name(each)

    def mark(fn: F) -> F:
        names = [_check_command_name(name or fn.__name__), *aliases]
        fn.__plugstore_command__ = (names, usage)  # type: ignore[attr-defined]
        return fn

    return mark


def _check_command_name(name: str) -> str:
    if not _COMMAND_RE.match(name):
        raise ValueError(f"invalid command name {name!r}: use [a-z][a-z0-9_-]*, at most 40")
    return name


def listen(pattern: str, *, synopsis: str, flags: int = 0) -> Callable[[F], F]:
    """Mark a plugin method as a listener for plain lines matching ``pattern``.

    The method is called as ``method(ctx, matches)`` with every non-overlapping match in
    the line.  ``synopsis`` shows the syntax in ``.help`` (``"thing++, thing--"``); the
    docstring's first line describes it.
    """
    compiled = re.compile(pattern, flags)

    def mark(fn: F) -> F:
        fn.__plugstore_listener__ = (compiled, synopsis)  # type: ignore[attr-defined]
        return fn

    return mark


class Context:
    """One incoming line: who said it, where, and the speaking user's state in this
    plugin."""

    def __init__(
        self, host: ChatHost, plugin: Plugin, user: str, channel: str = DEFAULT_CHANNEL
    ) -> None:
        self.host = host
        self.plugin = plugin
        self.user = user
        #: The channel the line was said in (plugins keep per-channel data in scopes).
        self.channel = channel

    @property
    def state(self) -> str:
        """This plugin's conversation state with the user (``"START"``: none)."""
        return self.plugin.states.get(self.plugin.name, self.user)

    def set_state(self, state: str) -> None:
        """Put the conversation in ``state``; ``"START"`` ends it."""
        self.plugin.states.set(self.plugin.name, self.user, state)

    def transition(self, expected: str, state: str) -> bool:
        """Move from ``expected`` to ``state`` unless another process moved first."""
        return self.plugin.states.transition(self.plugin.name, self.user, expected, state)


class Plugin:
    """Base class of chat plugins.

    Subclasses set :attr:`name` (default: the class name, lowercased) and give a
    docstring whose first line describes the plugin.  The host builds each plugin once
    with its namespace ``chat.<name>`` and the shared :class:`StateStore`.
    """

    #: The plugin's name: its namespace is ``chat.<name>``, its state key is ``name``.
    name: str = ""
    #: Relational tables, if the plugin has any: a
    #: :class:`~plugstore.relational.RelationalPlugin` (named like the plugin, tables in
    #: schema ``pl_<name>``).  The host migrates them to their head before
    #: :meth:`setup` and sets :attr:`db`.
    tables: ClassVar[RelationalPlugin | None] = None
    #: The version of the layout of :attr:`data` (``None``: unversioned).  The host
    #: opens the namespace at this version, migrating older data with
    #: :attr:`data_migrations` first (see :mod:`plugstore.versioning`).
    data_version: ClassVar[int | None] = None
    #: ``data_migrations[n]`` takes the data from version ``n - 1`` to ``n``.
    data_migrations: ClassVar[Mapping[int, Callable[[Migration], None]]] = MappingProxyType({})
    #: How to export and erase what the plugin keeps about a user outside scopes and
    #: states (values naming the user, keys such as ``wins:ana``): a
    #: :class:`~plugstore.userdata.UserData`, run by ``.forgetme``.  Rows in
    #: :attr:`tables` have their own hook: ``RelationalPlugin(..., user_data=...)``.
    user_data: ClassVar[UserData | None] = None

    def __init__(self, host: ChatHost, data: Namespace, states: StateStore) -> None:
        self.name = type(self).plugin_name()
        self.host = host
        self.data = data
        self.states = states
        #: The plugin's tables (engine and sessions) when it declares :attr:`tables`.
        self.db: PluginDatabase | None = None

    def session(self) -> AbstractContextManager[Session]:
        """A session on the plugin's tables: committed when the block ends, rolled
        back if it raises (plugins that declare :attr:`tables`)."""
        if self.db is None:
            raise RuntimeError(f"plugin {self.name!r} declares no tables")
        return self.db.session()

    @classmethod
    def plugin_name(cls) -> str:
        """The plugin's validated name."""
        name = cls.name or cls.__name__.lower()
        if not _NAME_RE.match(name):
            raise ValueError(
                f"invalid plugin name {name!r}: use 1-40 of [a-z0-9_], starting with a letter"
            )
        return name

    @property
    def rng(self) -> random.Random:
        """The host's random source (seeded in tests)."""
        return self.host.rng

    def setup(self) -> None:
        """Called once after the plugin is built; override to prepare data."""

    def converse(self, ctx: Context, text: str) -> Replies:
        """Handle a plain line from a user whose state in this plugin is not ``"START"``.

        The default ends a conversation the plugin does not know how to continue.
        """
        ctx.set_state("START")
        return None

    def describe(self) -> str:
        """The first line of the class docstring."""
        return first_line(type(self).__doc__)

    def commands(self) -> list[CommandSpec]:
        """The plugin's commands, one spec per name (aliases included)."""
        return [
            CommandSpec(name, usage, first_line(method.__doc__), self, method)
            for (names, usage), method in self._marked("__plugstore_command__")
            for name in names
        ]

    def listeners(self) -> list[ListenerSpec]:
        """The plugin's listeners."""
        return [
            ListenerSpec(pattern, synopsis, first_line(method.__doc__), self, method)
            for (pattern, synopsis), method in self._marked("__plugstore_listener__")
        ]

    def _marked(self, marker: str) -> Iterator[tuple[Any, Callable[..., Replies]]]:
        """``(mark, bound method)`` for each public method carrying ``marker``, in
        definition order (bases first)."""
        seen: dict[str, None] = {}
        for klass in reversed(type(self).__mro__):
            for attr, value in vars(klass).items():
                if not attr.startswith("_") and callable(value):
                    seen.setdefault(attr, None)
        for attr in seen:
            mark = getattr(getattr(type(self), attr), marker, None)
            if mark is not None:
                yield mark, getattr(self, attr)


def first_line(doc: str | None) -> str:
    """The first non-empty line of a docstring ("" if none)."""
    for line in (doc or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""
