"""Finding plugins' user-data hooks and relational plugins, for ``plugstore user`` and
``plugstore web`` alike.

Both commands take the same options (:func:`hook_options`) and see the same plugins:
the built-in chat plugins, those installed under the ``plugstore.user_data``,
``plugstore.relational`` and ``plugstore.bot_plugins`` entry points, the chat plugins
of ``-p DIR`` and the ``--load`` ones.  Relational plugins' tables are read on the
tables database (``--db``, default: where ``plugstore chat`` keeps them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from plugstore.store import Store
from plugstore.userdata import (
    UserData,
    UserDataHook,
    bind_user_data,
    entry_point_hooks,
    failing_hook,
)

from .common import CliError, CliState, load_attribute

if TYPE_CHECKING:
    from plugstore.relational import RelationalHost, RelationalPlugin


def hook_options(command: Any) -> Any:
    """Add ``-p/--plugins-dir``, ``--db``, ``-l/--load`` and ``--no-entry-points``
    (parameters ``plugin_dirs``, ``database``, ``loads``, ``no_entry_points``)."""
    command = click.option(
        "-p",
        "--plugins-dir",
        "plugin_dirs",
        multiple=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Also run the hooks of the chat plugins in DIR/*.py, as plugstore chat -p "
        "loads them (repeatable).",
    )(command)
    command = click.option(
        "--db",
        "database",
        metavar="URL",
        help="Database of relational plugins' tables (default: as for plugstore chat, the "
        "store's own when it is SQLite, PostgreSQL or MariaDB, else the embedded SQLite file).",
    )(command)
    command = click.option(
        "-l",
        "--load",
        "loads",
        multiple=True,
        metavar="MODULE:ATTR",
        help="Also run the hook at MODULE:ATTR: a RelationalPlugin or a UserData (repeatable).",
    )(command)
    command = click.option(
        "--no-entry-points",
        is_flag=True,
        help="Ignore hooks installed under the plugstore.relational, plugstore.user_data "
        "and plugstore.bot_plugins entry points (the built-in plugins' still run).",
    )(command)
    return command


@dataclass
class FoundPlugins:
    """What :func:`find_plugins` found: the key-value hooks, ready to run, and the
    relational plugins, whose hooks need their tables database (:func:`open_tables`)."""

    hooks: list[UserDataHook] = field(default_factory=list)
    relational: list[RelationalPlugin] = field(default_factory=list)


def find_plugins(
    state: CliState,
    store: Store,
    loads: Sequence[str],
    no_entry_points: bool,
    plugin_dirs: Sequence[Path] = (),
) -> FoundPlugins:
    """The key-value :class:`~plugstore.userdata.UserData` hooks bound to ``store`` and
    the relational plugins (every one with tables, with or without a user-data hook) of
    the built-in chat plugins, the entry points (unless ``no_entry_points``), the chat
    plugins in ``plugin_dirs`` and ``loads``.

    A chat plugin's entry point that cannot be loaded is a hook that fails (see
    :func:`~plugstore.userdata.failing_hook`); a plugin file in ``plugin_dirs`` that
    cannot be loaded is a :class:`CliError` (the operator named it).  The relational
    plugins installed under ``plugstore.relational`` are not listed here: the host adds
    them (:func:`open_tables`).
    """
    from plugstore.bot import builtin_plugins, directory_plugins
    from plugstore.bot import entry_point_plugins as bot_entry_points

    found = FoundPlugins()
    seen: set[int] = set()

    def add(data: object, owner: str) -> None:
        if id(data) not in seen:  # one UserData may be both a plugin's and an entry point
            seen.add(id(data))
            found.hooks.append(bind_user_data(data, store, owner))

    classes = builtin_plugins()
    if not no_entry_points:
        installed, problems = bot_entry_points()
        classes += installed
        for line in problems:
            name = line.removeprefix("entry point ").split(" = ", 1)[0]
            found.hooks.append(failing_hook(f"entry point {name}", line))
    for directory in plugin_dirs:
        in_dir, problems = directory_plugins(directory)
        if problems:
            raise CliError(state.scrub("; ".join(problems)))
        classes += in_dir
    for cls in classes:
        if cls.user_data is not None:
            add(cls.user_data, cls.name or cls.__name__.lower())
        if cls.tables is not None:
            found.relational.append(cls.tables)
    for spec in loads:
        loaded = _load(spec)
        if isinstance(loaded, UserData):
            add(loaded, loaded.name)
        else:
            found.relational.append(loaded)
    if not no_entry_points:
        found.hooks += entry_point_hooks(store)
    return found


def open_tables(
    state: CliState,
    store: Store,
    database: str | None,
    plugins: Iterable[RelationalPlugin],
    no_entry_points: bool,
) -> RelationalHost | None:
    """A :class:`~plugstore.relational.RelationalHost` (not started: nothing is
    migrated) over ``plugins`` and, unless ``no_entry_points``, the installed relational
    plugins, on ``database`` (default: where ``plugstore chat`` keeps tables for
    ``store``); ``None`` without the relational extra.  The caller closes it."""
    try:
        from plugstore.relational import RelationalHost
    except ImportError:  # without the extra no relational plugin can have run here
        return None
    from plugstore.bot.host import tables_database

    if database:
        state.note_secrets_in_text(database)
    where = database or tables_database(store)
    by_name = {p.name: p for p in plugins}  # the built-in poll is also an entry point
    return RelationalHost(where, by_name.values(), entry_points=not no_entry_points)


@contextmanager
def hooks_for(
    state: CliState,
    store: Store,
    database: str | None,
    loads: Sequence[str],
    no_entry_points: bool,
    plugin_dirs: Sequence[Path] = (),
) -> Iterator[list[UserDataHook]]:
    """Every user-data hook that may hold data about users of ``store``.

    * key-value :class:`~plugstore.userdata.UserData` hooks: those registered under
      ``plugstore.user_data``, and the ``user_data`` of the built-in chat plugins and of
      those under ``plugstore.bot_plugins``;
    * relational plugins' hooks (:class:`~plugstore.relational.RelationalUserData`): of
      the plugins under ``plugstore.relational`` and of the built-in chat plugins'
      tables (the poll plugin), on ``database`` (default: where ``plugstore chat`` keeps
      tables for this store), without migrating anything;
    * the chat plugins in ``plugin_dirs`` (``-p``), and the ``--load`` ones.

    With ``no_entry_points`` only the built-in and loaded ones.  An entry point that
    cannot be loaded is a hook that fails (see :func:`~plugstore.userdata.failing_hook`).
    """
    found = find_plugins(state, store, loads, no_entry_points, plugin_dirs)
    with ExitStack() as stack:
        hooks = found.hooks
        if found.relational or not no_entry_points:
            host = open_tables(state, store, database, found.relational, no_entry_points)
            if host is not None:
                stack.enter_context(host)
                hooks = hooks + host.user_data_hooks()
        yield hooks


def _load(spec: str) -> Any:
    obj = load_attribute(spec)
    if isinstance(obj, UserData):
        return obj
    try:
        from plugstore.relational import RelationalPlugin
    except ImportError:
        raise CliError(f"--load {spec}: a {type(obj).__name__}, not a UserData") from None
    if isinstance(obj, RelationalPlugin):
        return obj
    raise CliError(f"--load {spec}: a {type(obj).__name__}, not a RelationalPlugin or UserData")
