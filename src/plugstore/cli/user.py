"""``user export`` and ``user forget``: everything a store keeps about one user.

What counts as data about a user (scoped entries at a ``user`` or ``member`` level,
conversation states) is decided by :mod:`plugstore.userdata`.  Plugins' own data (rows
in relational plugins' tables, values of custom key-value layouts) is reached through
their user-data hooks, found as :func:`hooks_for` says.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import click

from plugstore.store import Store
from plugstore.userdata import (
    ForgetSummary,
    UserData,
    UserDataError,
    UserDataHook,
    bind_user_data,
    entry_point_hooks,
    export_user,
    failing_hook,
    forget_failed,
    forget_hooks,
    forget_user,
    remove_entries,
    user_id_text,
)

from .common import CliError, CliState, json_text, load_attribute, shown


@click.group("user")
def user_group() -> None:
    """Export or delete everything stored about one user.

    A user's data is every scoped entry with the user's id at a "user" or "member"
    level (ns.scope(guild=1, member=42)) and every conversation state (StateStore)
    whose sender is the user, in every namespace, plus what plugins' user-data hooks
    find: rows in relational plugins' tables (the built-in poll plugin's polls and
    votes) and custom key-value layouts.  An id of digits, such as 42, matches both the
    int and the str id.
    """


def _hook_options(command: Any) -> Any:
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


@user_group.command("export")
@click.argument("user")
@click.argument("url", required=False)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write to this file (default: stdout); replaced only when the export is complete.",
)
@_hook_options
@click.pass_obj
def export_cmd(
    state: CliState,
    user: str,
    url: str | None,
    output: str | None,
    database: str | None,
    loads: tuple[str, ...],
    no_entry_points: bool,
    plugin_dirs: tuple[Path, ...],
) -> None:
    """Print everything stored about USER as one JSON document.

    URL defaults to the global one.  Values are written in the json codec's tagged
    JSON, like `plugstore dump`; each plugin hook's export is under "plugins".  If a
    hook fails, nothing is written and the exit status is 1.
    """
    user_id_text(user)  # a bad id fails before the store is opened
    with (
        state.open(url) as store,
        hooks_for(state, store, database, loads, no_entry_points, plugin_dirs) as hooks,
    ):
        data = export_user(store, user, hooks=hooks)
        where = store.url
    _write(output, json_text(data, indent=2) + "\n")
    scoped = sum(len(records) for records in data["namespaces"].values())
    plugins = ", ".join(data["plugins"])
    summary = (
        f"exported {_plural(scoped, 'scoped entry', 'scoped entries')} in "
        f"{_plural(len(data['namespaces']), 'namespace', 'namespaces')}, "
        f"{_plural(len(data['states']), 'conversation state', 'conversation states')} and "
        f"data from {_plural(len(data['plugins']), 'plugin', 'plugins')}"
        + (f" ({plugins})" if plugins else "")
        + f" about user {user!r} from {where}"
    )
    if output and output != "-":
        summary += f" to {shown(output)}"
    click.echo(summary, err=True)


def _write(output: str | None, text: str) -> None:
    """``text`` to stdout, or to ``output`` through a temporary file renamed into place."""
    path = output or "-"
    try:
        with click.open_file(path, "w", encoding="utf-8", atomic=path != "-") as out:
            out.write(text)
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None


@user_group.command("forget")
@click.argument("user")
@click.argument("url", required=False)
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@_hook_options
@click.pass_obj
def forget_cmd(
    state: CliState,
    user: str,
    url: str | None,
    dry_run: bool,
    yes: bool,
    database: str | None,
    loads: tuple[str, ...],
    no_entry_points: bool,
    plugin_dirs: tuple[Path, ...],
) -> None:
    """Delete everything stored about USER, after listing it and asking.

    URL defaults to the global one.  Each entry is printed as namespace, scope (or
    "state") and key, tab-separated; each plugin hook's count as plugin, "plugin" and
    kind: count.  The question goes to stderr; --yes skips it, --dry-run lists and
    stops.  Entries written after the listing are not deleted: run it again.  A hook
    that fails is reported and the exit status is 1; everything else is still deleted.
    """
    user_id_text(user)
    with (
        state.open(url) as store,
        hooks_for(state, store, database, loads, no_entry_points, plugin_dirs) as hooks,
    ):
        try:
            found = forget_user(store, user, dry_run=True, hooks=hooks)
        except UserDataError as exc:
            if exc.summary is None:  # pragma: no cover - forget_user always sets it
                raise
            found = exc.summary
        for failed in found.failures:
            click.echo(
                state.scrub(f"warning: plugin {failed.name!r} cannot tell: {failed.error}"),
                err=True,
            )
        if not found.total and not found.failures:
            click.echo(f"nothing is stored about user {user!r} in {store.url}")
            return
        for entry in found.entries:
            click.echo("\t".join(shown(part) for part in (entry.namespace, entry.where, entry.key)))
        for result in found.plugins:
            for kind, count in result.counts.items():
                click.echo("\t".join((shown(result.name), "plugin", f"{shown(kind)}: {count}")))
        if dry_run:
            click.echo(f"dry run: would delete {found.describe()} about user {user!r}")
            if found.failures:
                raise CliError(state.scrub(str(forget_failed(found))))
            return
        if found.total:
            question = f"Delete {_these(found)} about user {user!r} from {store.url}?"
            if not yes and not click.confirm(question, err=True):
                raise CliError("aborted: nothing was deleted")
        counts = remove_entries(store, found.entries)
        results = forget_hooks(hooks, user)
    done = ForgetSummary(found.user, False, found.entries, counts, results)
    click.echo(f"deleted {done.describe()} about user {user!r}")
    if done.failures:
        raise CliError(state.scrub(str(forget_failed(done))))


def _these(found: ForgetSummary) -> str:
    entries = len(found.entries)
    text = "this entry" if entries == 1 else f"these {entries} entries"
    return found.with_plugin_data(text, entries)


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
    from plugstore.bot import builtin_plugins, directory_plugins
    from plugstore.bot import entry_point_plugins as bot_entry_points

    hooks: list[UserDataHook] = []
    seen: set[int] = set()
    relational: list[Any] = []

    def add(data: object, owner: str) -> None:
        if id(data) not in seen:  # one UserData may be both a plugin's and an entry point
            seen.add(id(data))
            hooks.append(bind_user_data(data, store, owner))

    classes = builtin_plugins()
    if not no_entry_points:
        found, problems = bot_entry_points()
        classes += found
        for line in problems:
            name = line.removeprefix("entry point ").split(" = ", 1)[0]
            hooks.append(failing_hook(f"entry point {name}", line))
    for directory in plugin_dirs:
        found, problems = directory_plugins(directory)
        if problems:  # the operator named it: a plugin there that cannot load is an error
            raise CliError(state.scrub("; ".join(problems)))
        classes += found
    for cls in classes:
        if cls.user_data is not None:
            add(cls.user_data, cls.name or cls.__name__.lower())
        if cls.tables is not None and cls.tables.user_data is not None:
            relational.append(cls.tables)
    for spec in loads:
        loaded = _load(spec)
        if isinstance(loaded, UserData):
            add(loaded, loaded.name)
        else:
            relational.append(loaded)
    if not no_entry_points:
        for hook in entry_point_hooks(store):
            hooks.append(hook)
    with ExitStack() as stack:
        if relational or not no_entry_points:
            hooks += _relational_hooks(state, store, database, relational, no_entry_points, stack)
        yield hooks


def _relational_hooks(
    state: CliState,
    store: Store,
    database: str | None,
    plugins: list[Any],
    no_entry_points: bool,
    stack: ExitStack,
) -> list[UserDataHook]:
    try:
        from plugstore.relational import RelationalHost
    except ImportError:  # without the extra no relational plugin can have run here
        return []
    from plugstore.bot.host import tables_database

    if database:
        state.note_secrets_in_text(database)
    where = database or tables_database(store)
    by_name = {p.name: p for p in plugins}  # the built-in poll may also be an entry point
    host = stack.enter_context(
        RelationalHost(where, by_name.values(), entry_points=not no_entry_points)
    )
    return host.user_data_hooks()


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


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"
