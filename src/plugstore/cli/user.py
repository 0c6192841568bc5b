"""``user export`` and ``user forget``: everything a store keeps about one user.

What counts as data about a user (scoped entries at a ``user`` or ``member`` level,
conversation states) is decided by :mod:`plugstore.userdata`.  Plugins' own data (rows
in relational plugins' tables, values of custom key-value layouts) is reached through
their user-data hooks, found as :func:`plugstore.cli.hooks.hooks_for` says.
"""

from __future__ import annotations

from pathlib import Path

import click

from plugstore.userdata import (
    ForgetSummary,
    UserDataError,
    export_user,
    forget_failed,
    forget_hooks,
    forget_user,
    remove_entries,
    user_id_text,
)

from .common import CliError, CliState, json_text, shown
from .hooks import hook_options, hooks_for


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


@user_group.command("export")
@click.argument("user")
@click.argument("url", required=False)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write to this file (default: stdout); replaced only when the export is complete.",
)
@hook_options
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
@hook_options
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


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"
