"""The chat host: routes each line to a plugin's command, listener or conversation.

Routing, in order:

1. A line starting with ``.`` is a command: ``.name args``.  Commands always win, so
   ``.poll cancel`` works in the middle of a conversation.
2. Otherwise, if a plugin is in a conversation with the user (its state for them in the
   :class:`~plugstore.state.StateStore` is not ``"START"``), the line goes to that
   plugin's :meth:`~plugstore.bot.plugin.Plugin.converse`.
3. Otherwise every listener whose pattern matches the line gets it (``python++``).

Nothing a plugin does can crash the host: bad arguments get the command's usage line,
storage errors and plugin bugs get a one-line reply (the traceback only with
``debug=True``).
"""

from __future__ import annotations

import difflib
import random
import re
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from plugstore.errors import BackendUnavailableError, StoreError, StoreNotOpenError
from plugstore.keys import check_namespace
from plugstore.state import FIRST_STATE, StateStore
from plugstore.store import Store
from plugstore.url import StoreURL

if TYPE_CHECKING:
    from plugstore.relational import PluginDatabase, RelationalHost, RelationalPlugin

from .plugin import (
    DEFAULT_CHANNEL,
    CommandError,
    CommandSpec,
    Context,
    ListenerSpec,
    Plugin,
    Replies,
    UsageError,
)

#: The namespace holding every plugin's per-user conversation state.
STATE_NAMESPACE = "chat-states"
#: Plugin ``name`` keeps its data in the namespace ``chat.<name>``.
NAMESPACE_PREFIX = "chat."
_COMMAND_LINE = re.compile(r"\.(\S+)\s*(.*)\Z", re.DOTALL)


@dataclass(frozen=True)
class Reply:
    """One reply of the bot; ``error`` replies explain what went wrong."""

    text: str
    error: bool = False


class ChatHost:
    """Plugins on one store, answering lines said by users.

    >>> import plugstore
    >>> from plugstore.bot import ChatHost, builtin_plugins
    >>> with plugstore.open("memory://") as store:
    ...     host = ChatHost(store, builtin_plugins())
    ...     _ = host.handle("ana", ".remember meeting is tomorrow")
    ...     [reply.text for reply in host.handle("ana", ".whatis meeting")]
    ['tomorrow']
    """

    def __init__(
        self,
        store: Store,
        plugins: Iterable[type[Plugin]],
        *,
        rng: random.Random | None = None,
        debug: bool = False,
        scrub: Callable[[str], str] = str,
        database: str | StoreURL | None = None,
    ) -> None:
        self.store = store
        #: Where plugins' relational tables live (see :func:`tables_database`).
        self.database = database or tables_database(store)
        self.relational: RelationalHost | None = None
        self.rng = rng or random.Random()
        self.debug = debug
        #: Applied to every reply and traceback: the CLI removes the secrets it knows.
        self.scrub = scrub
        self.states = StateStore(store.namespace(STATE_NAMESPACE))
        self.plugins: list[Plugin] = []
        self.commands: dict[str, CommandSpec] = {}
        self.listeners: list[ListenerSpec] = []
        #: Plugins that could not be loaded, one line each (shown at start-up).
        self.problems: list[str] = []
        for cls in plugins:
            self._add(cls)

    def _add(self, cls: type[Plugin]) -> None:
        where = f"{cls.__module__}.{cls.__qualname__}"
        try:
            name = cls.plugin_name()
            if any(p.name == name for p in self.plugins):
                raise ValueError(f"a plugin named {name!r} is already loaded")
            data = self.store.namespace(
                check_namespace(NAMESPACE_PREFIX + name),
                version=cls.data_version,
                migrations=cls.data_migrations if cls.data_version is not None else None,
            )
            plugin = cls(self, data, self.states)
            if cls.tables is not None:
                plugin.db = self._open_tables(cls.tables, name)
            commands = plugin.commands()
            for spec in commands:
                if spec.name in self.commands:
                    owner = self.commands[spec.name].plugin.name
                    raise ValueError(f"command .{spec.name} is already taken by plugin {owner!r}")
            plugin.setup()
        except (BackendUnavailableError, StoreNotOpenError):
            raise  # the store itself is failing: nothing else will work either
        except Exception as exc:
            self.problems.append(f"plugin {where} not loaded: {_describe(exc)}")
            return
        self.plugins.append(plugin)
        self.commands.update((spec.name, spec) for spec in commands)
        self.listeners.extend(plugin.listeners())

    def _open_tables(self, tables: RelationalPlugin, name: str) -> PluginDatabase:
        """Migrate a plugin's tables to their head and open them."""
        if tables.name != name:
            raise ValueError(f"its tables belong to plugin {tables.name!r}, not {name!r}")
        try:
            if self.relational is None:
                from plugstore.relational import RelationalHost

                self.relational = RelationalHost(self.database)
            self.relational.add(tables)
            self.relational.start([name])
            return self.relational[name]
        except StoreError as exc:  # the tables' database, not the store: this plugin only
            raise TablesError(f"its tables: {_describe(exc)}") from exc

    def close(self) -> None:
        """Close the plugins' table connections (the store is the caller's to close)."""
        if self.relational is not None:
            self.relational.close()

    def __enter__(self) -> ChatHost:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def handle(self, user: str, text: str, channel: str = DEFAULT_CHANNEL) -> list[Reply]:
        """Answer one line said by ``user`` in ``channel``; never raises for anything a
        plugin does."""
        text = text.strip()
        if not text:
            return []
        problem = check_user(user) or check_channel(channel)
        if problem:
            return [Reply(problem, error=True)]
        match = _COMMAND_LINE.match(text)
        if match:
            return self._command(user, channel, match.group(1).lower(), match.group(2).strip())
        for plugin in self.plugins:
            if type(plugin).converse is Plugin.converse:
                continue  # this plugin holds no conversations: no state to read
            ctx = Context(self, plugin, user, channel)
            try:
                state = ctx.state
            except StoreError as exc:
                return [self._store_failure(plugin, "a conversation", exc)]
            if state != FIRST_STATE:
                return self._run(plugin, "its conversation", plugin.converse, ctx, text)
        replies: list[Reply] = []
        for listener in self.listeners:
            matches = list(listener.pattern.finditer(text))
            if matches:
                ctx = Context(self, listener.plugin, user, channel)
                replies += self._run(
                    listener.plugin, listener.synopsis, listener.handler, ctx, matches
                )
        return replies

    def _command(self, user: str, channel: str, name: str, args: str) -> list[Reply]:
        spec = self.commands.get(name)
        if spec is None:
            close = difflib.get_close_matches(name, self.commands, n=1)
            hint = f" - did you mean .{close[0]}?" if close else ""
            return [Reply(f"unknown command .{name}{hint} (.help lists the commands)", True)]
        ctx = Context(self, spec.plugin, user, channel)
        return self._run(spec.plugin, f".{spec.name}", spec.handler, ctx, args, usage=spec)

    def _run(
        self,
        plugin: Plugin,
        what: str,
        handler: Callable[..., Replies],
        *args: Any,
        usage: CommandSpec | None = None,
    ) -> list[Reply]:
        """Call a handler; its replies, or one line saying why it failed.

        A :class:`UsageError` shows the command's usage line (``usage``); raised by a
        conversation or a listener, which have none, it is a plain error reply.
        """
        try:  # inside the try: a generator runs here
            return [Reply(self.scrub(r.text), r.error) for r in _replies(handler(*args))]
        except UsageError as exc:
            if usage is None:
                return [Reply(self.scrub(str(exc)) or "that did not work", error=True)]
            detail = f" ({self.scrub(str(exc))})" if str(exc) else ""
            return [Reply(f"usage: {usage.synopsis}{detail}", error=True)]
        except CommandError as exc:
            return [Reply(self.scrub(str(exc)) or "that did not work", error=True)]
        except StoreError as exc:
            return [self._store_failure(plugin, what, exc)]
        except Exception as exc:
            if _is_database_failure(exc):
                return [self._store_failure(plugin, what, exc)]
            self._log(exc)
            hint = "" if self.debug else " (run with --debug for the traceback)"
            text = f"plugin {plugin.name!r} failed in {what}: {_describe(exc)}{hint}"
            return [Reply(self.scrub(text), error=True)]

    def _store_failure(self, plugin: Plugin, what: str, exc: Exception) -> Reply:
        self._log(exc)
        text = f"storage error in {what} ({plugin.name}): {_describe(exc)}"
        return Reply(self.scrub(text), error=True)

    def _log(self, exc: BaseException) -> None:
        if self.debug:  # the console's --debug: the traceback, on stderr
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            print(self.scrub(text), end="", file=sys.stderr)


class TablesError(Exception):
    """A plugin's tables could not be migrated or opened."""


def tables_database(store: Store) -> str | StoreURL:
    """Where plugins' tables live by default: the store's own database when it is SQL
    (SQLite, PostgreSQL, MariaDB), in memory for a memory store, else the embedded
    SQLite file."""
    url = store.backend.url
    if url.backend_name in ("sqlite", "postgresql", "postgres", "mysql", "mariadb"):
        return url
    if url.backend_name == "memory":
        return "memory://"
    from plugstore.config import default_url

    return default_url()


def check_user(user: str) -> str | None:
    """Why ``user`` cannot speak (empty, or control characters that could fake a line of
    someone else's output), or ``None``."""
    if not user.strip():
        return "a user name must not be empty"
    if not user.isprintable():
        return f"a user name must not contain control characters: {user!r}"
    return None


def check_channel(channel: str) -> str | None:
    """Why ``channel`` cannot be spoken in (the rules of :func:`check_user`), or ``None``."""
    if not channel.strip():
        return "a channel name must not be empty"
    if not channel.isprintable():
        return f"a channel name must not contain control characters: {channel!r}"
    return None


def _is_database_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a plugin's tables' database failing (locked, unreachable), as
    opposed to a plugin bug such as a constraint it broke."""
    errors = sys.modules.get("sqlalchemy.exc")  # loaded only if some plugin has tables
    return errors is not None and isinstance(exc, (errors.OperationalError, errors.InterfaceError))


def _replies(result: object) -> list[Reply]:
    if result is None:
        return []
    if isinstance(result, str):
        return [Reply(result)]
    if isinstance(result, Reply):
        return [result]
    if isinstance(result, Iterable):
        out: list[Reply] = []
        for item in result:
            out += _replies(item)
        return out
    return [Reply(str(result))]


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, StoreError):
        return text or type(exc).__name__
    if _is_database_failure(exc):  # the driver's own message, without the SQL
        text = str(getattr(exc, "orig", None) or text).strip().splitlines()[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
