"""``user export`` and ``user forget``: everything a store keeps about one user.

What counts as data about a user (scoped entries at a ``user`` or ``member`` level,
conversation states) is decided by :mod:`plugstore.userdata`.
"""

from __future__ import annotations

import click

from plugstore.userdata import (
    ForgetSummary,
    export_user,
    forget_user,
    remove_entries,
    user_id_text,
)

from .common import CliError, CliState, json_text, shown


@click.group("user")
def user_group() -> None:
    """Export or delete everything stored about one user.

    A user's data is every scoped entry with the user's id at a "user" or "member"
    level (ns.scope(guild=1, member=42)) and every conversation state (StateStore)
    whose sender is the user, in every namespace.  An id of digits, such as 42,
    matches both the int and the str id.
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
@click.pass_obj
def export_cmd(state: CliState, user: str, url: str | None, output: str | None) -> None:
    """Print everything stored about USER as one JSON document.

    URL defaults to the global one.  Values are written in the json codec's tagged
    JSON, like `plugstore dump`.
    """
    user_id_text(user)  # a bad id fails before the store is opened
    with state.open(url) as store:
        data = export_user(store, user)
        where = store.url
    _write(output, json_text(data, indent=2) + "\n")
    scoped = sum(len(records) for records in data["namespaces"].values())
    summary = (
        f"exported {_plural(scoped, 'scoped entry', 'scoped entries')} in "
        f"{_plural(len(data['namespaces']), 'namespace', 'namespaces')} and "
        f"{_plural(len(data['states']), 'conversation state', 'conversation states')} "
        f"about user {user!r} from {where}"
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
@click.pass_obj
def forget_cmd(state: CliState, user: str, url: str | None, dry_run: bool, yes: bool) -> None:
    """Delete everything stored about USER, after listing it and asking.

    URL defaults to the global one.  Each entry is printed as namespace, scope (or
    "state") and key, tab-separated.  The question goes to stderr; --yes skips it,
    --dry-run lists and stops.  Entries written after the listing are not deleted: run
    it again.
    """
    user_id_text(user)
    with state.open(url) as store:
        found = forget_user(store, user, dry_run=True)
        if not found.entries:
            click.echo(f"nothing is stored about user {user!r} in {store.url}")
            return
        for entry in found.entries:
            click.echo("\t".join(shown(part) for part in (entry.namespace, entry.where, entry.key)))
        if dry_run:
            click.echo(f"dry run: would delete {found.describe()} about user {user!r}")
            return
        these = "this entry" if found.total == 1 else f"these {found.total} entries"
        question = f"Delete {these} about user {user!r} from {store.url}?"
        if not yes and not click.confirm(question, err=True):
            raise CliError("aborted: nothing was deleted")
        counts = remove_entries(store, found.entries)
    done = ForgetSummary(found.user, False, found.entries, counts)
    click.echo(f"deleted {done.describe()} about user {user!r}")


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"
