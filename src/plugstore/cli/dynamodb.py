"""``dynamodb`` and ``dev dynamodb``: DynamoDB table tooling and a local server."""

from __future__ import annotations

import threading
from typing import Any

import click

import plugstore
from plugstore.backends.dynamodb_schema import DEFAULT_PK, DEFAULT_SK, terraform
from plugstore.url import StoreURL

from .common import CliError

PROVISIONED_HELP = "Provisioned capacity instead of on-demand billing."


@click.group("dynamodb")
def dynamodb_group() -> None:
    """Create the table a dynamodb:// store needs, or print it as Terraform."""


@dynamodb_group.command("create-table")
@click.argument("url", metavar="URL")
@click.option("--provisioned", nargs=2, type=int, metavar="READ WRITE", help=PROVISIONED_HELP)
@click.option("--pitr", is_flag=True, help="Turn on point-in-time recovery (backups).")
@click.option("--wait", default=300.0, show_default=True, help="Seconds to wait for ACTIVE.")
def create_table_cmd(
    url: str, provisioned: tuple[int, int] | None, pitr: bool, wait: float
) -> None:
    """Create the table for URL (dynamodb://TABLE?region=...), idempotently.

    On-demand billing unless --provisioned is given.  Waits until the table is ACTIVE,
    then turns on DynamoDB's TTL on the attribute "expires" (so that expired keys are
    deleted by DynamoDB too).  An existing table with the right keys is left as it is,
    TTL aside; one with other keys is an error.
    """
    from plugstore.backend import Options
    from plugstore.backends.dynamodb import DynamoDBBackend

    parsed = StoreURL.parse(url)
    if parsed.backend_name != "dynamodb":
        raise CliError(f"not a dynamodb:// URL: {parsed}")
    # Options of the store, not of the table.
    store_level = ("codec", "secret", "max_value_size", "create", "plugin_dirs")
    options = Options({k: v for k, v in parsed.query.items() if k not in store_level})
    backend = DynamoDBBackend(parsed, options)
    if options.leftover():
        raise CliError(f"unknown option(s) for the dynamodb backend: {options.leftover()}")
    backend.connect()
    try:
        table = backend.create_table(
            provisioned=provisioned or None, point_in_time_recovery=pitr, wait=wait
        )
        ttl, attribute = backend.time_to_live()
    finally:
        backend.close()
    mode = table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
    click.echo(
        f"table {backend.table} is {table.get('TableStatus', '?')} ({mode}); "
        f"keys {backend.pk} (partition), {backend.sk} (sort); "
        f"TTL {ttl.lower()}" + (f" on {attribute}" if attribute else "")
    )


@dynamodb_group.command("terraform")
@click.option("--table", required=True, help="The table name.")
@click.option("--pk", default=DEFAULT_PK, show_default=True, help="Partition key attribute.")
@click.option("--sk", default=DEFAULT_SK, show_default=True, help="Sort key attribute.")
@click.option("--provisioned", nargs=2, type=int, metavar="READ WRITE", help=PROVISIONED_HELP)
@click.option("--pitr", is_flag=True, help="Turn on point-in-time recovery (backups).")
@click.option("--resource", default="plugstore", show_default=True, help="Resource name.")
def terraform_cmd(
    table: str,
    pk: str,
    sk: str,
    provisioned: tuple[int, int] | None,
    pitr: bool,
    resource: str,
) -> None:
    """Print an aws_dynamodb_table resource matching what the backend expects."""
    click.echo(
        terraform(
            table,
            pk=pk,
            sk=sk,
            provisioned=provisioned or None,
            point_in_time_recovery=pitr,
            resource=resource,
        ),
        nl=False,
    )


@click.group("dev")
def dev_group() -> None:
    """Local stand-ins for development (no Docker needed)."""


@dev_group.command("dynamodb")
@click.option("--port", default=8000, show_default=True, help="Port on 127.0.0.1 (0: any).")
@click.option("--table", default="plugstore", show_default=True, help="Table to create.")
@click.option("--region", default="us-east-1", show_default=True)
def dev_dynamodb_cmd(port: int, table: str, region: str) -> None:
    """Run a local DynamoDB-compatible server (moto) with the table created.

    Prints the store URL on the first line, then serves on 127.0.0.1 until Ctrl-C.  The
    data lives in this process's memory.  Requests are handled one at a time, as
    DynamoDB serialises writes to an item (moto's own server does not; see
    docs/dynamodb.md).
    """
    from plugstore.dev_dynamodb import LOOPBACK, make_server, url_for

    try:
        server = make_server(LOOPBACK, port)
    except OSError as exc:
        raise CliError(f"cannot listen on {LOOPBACK}:{port}: {exc.strerror or exc}") from None
    url = url_for(LOOPBACK, server.server_port, table, region)
    thread = threading.Thread(target=server.serve_forever, name="dynamodb-local", daemon=True)
    thread.start()
    try:
        with plugstore.open(url, create=True):
            pass
        click.echo(url)
        click.echo(
            f"local DynamoDB on http://{LOOPBACK}:{server.server_port}, table {table!r} "
            "ready; Ctrl-C stops it (the data is kept in memory only)",
            err=True,
        )
        click.echo(f"  export PLUGSTORE_URL='{url}'", err=True)
        _wait(thread)
    finally:
        server.shutdown()


def _wait(thread: Any) -> None:
    while thread.is_alive():
        thread.join(0.5)
