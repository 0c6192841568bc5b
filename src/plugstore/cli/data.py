"""``ls``, ``get``, ``set``, ``rm``: look at and edit single values."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from plugstore.codecs import from_tagged_json, to_tagged_json
from plugstore.errors import EncodeError
from plugstore.keys import check_prefix

from .common import CliError, CliState, json_text, namespace_exists, shown, stdout_is_tty

FORMATS = click.Choice(["auto", "table", "plain", "json"])


@click.command("ls")
@click.argument("namespace", required=False)
@click.option("--prefix", default="", help="Only keys starting with this (needs NAMESPACE).")
@click.option(
    "--format",
    "fmt",
    type=FORMATS,
    default="auto",
    show_default=True,
    help="auto: a table on a terminal, plain lines otherwise.",
)
@click.pass_obj
def ls_cmd(state: CliState, namespace: str | None, prefix: str, fmt: str) -> None:
    """List the namespaces with their key counts, or the keys of NAMESPACE."""
    if namespace is None and prefix:
        raise click.UsageError("--prefix needs a NAMESPACE")
    with state.open() as store:
        if namespace is None:
            counts = [(n, store.backend.bucket(n).count()) for n in store.namespaces()]
            if fmt == "json":
                click.echo(json_text(dict(counts)))
            elif _as_table(fmt):
                _table(
                    f"namespaces in {store.url}",
                    ["namespace", "keys"],
                    [(shown(n), str(c)) for n, c in counts],
                )
            else:
                for name, count in counts:
                    click.echo(f"{name}\t{count}")
            return
        ns = store.namespace(namespace)  # validates the name
        if not namespace_exists(store, namespace):
            raise CliError(f"no namespace {namespace!r} in {store.url}")
        # Every stored key, scoped entries and the data version included: this is a
        # tool's view, not the plugin's (whose plain views show plain keys only).
        keys = sorted(store.backend.bucket(ns.name).keys(check_prefix(prefix)))
        if fmt == "json":
            click.echo(json_text(keys))
        elif _as_table(fmt):
            title = f"{namespace}: {len(keys)} keys" + (
                f" starting with {prefix!r}" if prefix else ""
            )
            _table(title, ["key"], [(shown(k),) for k in keys])
        else:
            for key in keys:
                click.echo(key)


def _as_table(fmt: str) -> bool:
    return fmt == "table" or (fmt == "auto" and stdout_is_tty())


def _table(title: str, columns: list[str], rows: list[tuple[str, ...]]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table()
    for i, column in enumerate(columns):
        table.add_column(column, justify="right" if i and column == "keys" else "left")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # Text: no markup in user data
    console = Console()
    console.print(Text(title))
    console.print(table)


@click.command("get")
@click.argument("namespace")
@click.argument("key")
@click.option("--repr", "as_repr", is_flag=True, help="Print Python's repr() instead of JSON.")
@click.pass_obj
def get_cmd(state: CliState, namespace: str, key: str, as_repr: bool) -> None:
    """Print the value of KEY in NAMESPACE as (tagged) JSON.

    Sets, tuples, bytes, datetimes... print in the json codec's tagged form, e.g.
    {"$t": "set", "v": [1, 2]}, which `plugstore set` accepts back.
    """
    with state.open() as store:
        try:
            value = store.namespace(namespace)[key]
        except KeyError:
            raise CliError(f"no key {key!r} in namespace {namespace!r}") from None
    if as_repr:
        click.echo(repr(value))
        return
    try:
        data = to_tagged_json(value)
    except EncodeError:
        raise CliError(
            f"the value of {key!r} is a {type(value).__module__}.{type(value).__qualname__}, "
            "which JSON cannot show: use --repr"
        ) from None
    click.echo(json_text(data, indent=2 if stdout_is_tty() else None))


def parse_json_value(text: str) -> Any:
    """Parse a value typed by a user: JSON, with the codec's type tags."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"invalid JSON value: {exc.msg} at line {exc.lineno} column {exc.colno} "
            """(a string needs JSON quotes, '"text"', or use --string)"""
        ) from None
    try:
        return from_tagged_json(data)
    except (ValueError, TypeError, KeyError, IndexError) as exc:  # DecodeError is a ValueError
        raise CliError(f"invalid tagged JSON value: {exc}") from None


# unknown "options" are values: `plugstore set n k -7` stores -7
@click.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("namespace")
@click.argument("key")
@click.argument("value", metavar="JSON_VALUE")
@click.option(
    "-s", "--string", "as_string", is_flag=True, help="Store JSON_VALUE as a string, unparsed."
)
@click.pass_obj
def set_cmd(state: CliState, namespace: str, key: str, value: str, as_string: bool) -> None:
    """Store JSON_VALUE under KEY in NAMESPACE ("-" reads it from stdin).

    The tagged form printed by `plugstore get` is accepted, so every type the json codec
    carries can be written: '{"$t": "set", "v": [1, 2]}'.
    """
    text = sys.stdin.read() if value == "-" else value
    parsed = text if as_string else parse_json_value(text)
    with state.open() as store:
        store.namespace(namespace)[key] = parsed


@click.command("rm")
@click.argument("namespace")
@click.argument("keys", nargs=-1, metavar="[KEY]...")
@click.option("--all", "drop_all", is_flag=True, help="Drop the whole namespace.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation (with --all).")
@click.pass_obj
def rm_cmd(
    state: CliState, namespace: str, keys: tuple[str, ...], drop_all: bool, yes: bool
) -> None:
    """Delete KEYs from NAMESPACE, or the whole namespace with --all."""
    if drop_all == bool(keys):
        raise click.UsageError("give the KEY(s) to delete, or --all to drop the namespace")
    with state.open() as store:
        ns = store.namespace(namespace)
        if drop_all:
            count = len(ns)
            if not count:
                raise CliError(f"no namespace {namespace!r} in {store.url}")
            if not yes and not click.confirm(
                f"Delete namespace {namespace!r} and its {count} keys from {store.url}?",
                err=True,
            ):
                raise CliError("aborted: nothing was deleted")
            dropped = store.drop_namespace(namespace)
            click.echo(f"dropped namespace {namespace!r} ({dropped} keys)")
            return
        missing = []
        for key in dict.fromkeys(keys):
            try:
                del ns[key]
            except KeyError:
                missing.append(key)
        if missing:
            shown_keys = ", ".join(repr(k) for k in missing)
            raise CliError(f"no key {shown_keys} in namespace {namespace!r}")
