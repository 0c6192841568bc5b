"""``purge``: delete expired keys for good."""

from __future__ import annotations

import click

from plugstore.keys import check_namespace

from .common import CliState, shown


@click.command("purge")
@click.argument("url", required=False)
@click.option(
    "-n",
    "--namespace",
    metavar="NS",
    help="Purge this namespace only (default: every namespace).",
)
@click.pass_obj
def purge_cmd(state: CliState, url: str | None, namespace: str | None) -> None:
    """Delete the expired keys of the store at URL (default: the global store).

    Expired keys are absent from every read already; this frees the space they still
    take where the engine keeps them (SQL tables, shelf files).  On Redis it removes
    what is left of them in the key indexes (Redis deletes the entries itself); on
    DynamoDB it deletes them now rather than within DynamoDB's own TTL sweep.  Prints
    one line per namespace that had any, then the total.
    """
    if namespace is not None:
        check_namespace(namespace)
    with state.open(url) as store:
        counts = store.backend.purge(namespace)
        where = store.url
    for name, count in sorted(counts.items()):
        click.echo(f"{shown(name)}\t{count}")
    total = sum(counts.values())
    scope = f"namespace {namespace!r} of " if namespace is not None else ""
    click.echo(f"purged {total} expired keys from {scope}{where}")
