"""``doctor``: what store is this, and does it work?"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import secrets
from collections.abc import Callable

import click

import plugstore
from plugstore.store import Store

from .common import CliError, CliState, describe, print_traceback

#: The namespace the self-test writes in; only its own keys are touched and removed.
DOCTOR_NAMESPACE = "_plugstore_doctor"

SAMPLE = {
    "text": "héllo ✓",
    "int": 2**40,
    "float": 0.5,
    "none": None,
    "list": [1, "a", [True]],
    "tuple": (1, 2),
    "set": {"x", "y"},
    "bytes": b"\x00\xff",
    "when": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
}


class CheckFailed(Exception):
    """A self-test step got a wrong answer."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@click.command("doctor")
@click.argument("url", required=False)
@click.option(
    "--restore",
    is_flag=True,
    help="Put quarantined values back where they were (unless the key holds a value again).",
)
@click.pass_obj
def doctor_cmd(state: CliState, url: str | None, restore: bool) -> None:
    """Show the store's backend and versions, run a small read/write self-test, and
    list the values set aside as undecodable (quarantined).

    URL defaults to the global one.  The self-test writes two keys in the namespace
    "_plugstore_doctor" and deletes them again.  Exit code 1 if any step fails.
    """
    text = state.resolve_url(url)
    click.echo(
        f"plugstore {plugstore.__version__}, Python {platform.python_version()} "
        f"({platform.python_implementation()}) on {platform.platform(terse=True)}"
    )
    failures = 0

    def step(label: str, action: Callable[[], str | None]) -> bool:
        nonlocal failures
        try:
            detail = action()
        except Exception as exc:
            failures += 1
            if state.debug:
                print_traceback(exc, state)
            message = str(exc) if isinstance(exc, CheckFailed) else describe(exc)
            click.echo(f"  {label:<8} {click.style('FAIL', fg='red')}  {state.scrub(message)}")
            return False
        suffix = f"  {state.scrub(detail)}" if detail else ""
        click.echo(f"  {label:<8} {click.style('OK', fg='green')}{suffix}")
        return True

    opened: list[Store] = []

    def do_open() -> str:
        opened.append(state.open(text))
        return opened[0].url

    click.echo("checks:")
    if step("open", do_open):
        store = opened[0]
        try:
            _self_test(store, step)
            if not failures:
                _quarantine_report(store, state, restore)
        finally:
            info = store.info()
            store.close()
        click.echo("store:")
        for name, value in info.items():
            click.echo(f"  {name:<14} {state.scrub(str(value))}")
        if store.codec.name in ("pickle", "signed-pickle"):
            click.echo(
                f"note: the {store.codec.name} codec unpickles on read: use it with trusted "
                "data only"
            )
    if failures:
        raise CliError(f"doctor: {failures} check(s) failed")
    click.echo("doctor: all checks passed")


def _quarantine_report(store: Store, state: CliState, restore: bool) -> None:
    """List quarantined values (and, with ``restore``, put them back)."""
    from plugstore import quarantine

    found = list(quarantine.entries(store))
    if not found:
        click.echo("quarantine: empty")
        return
    click.echo(f"quarantine: {len(found)} value(s) set aside as undecodable")
    for entry in found:
        line = f"  {entry.namespace} {entry.key!r}  {len(entry.raw)} bytes, {entry.when}"
        if restore:
            done = quarantine.restore(store, entry)
            line += "  restored" if done else "  kept (the key holds a value again)"
        click.echo(state.scrub(f"{line}  ({entry.error})"))
    if not restore:
        click.echo("  (fix the cause, then `plugstore doctor --restore` puts them back)")


def _self_test(store: Store, step: Callable[[str, Callable[[], str | None]], bool]) -> None:
    ns = store.namespace(DOCTOR_NAMESPACE)
    tag = f"check-{os.getpid()}-{secrets.token_hex(4)}"
    key, counter = f"{tag}-value", f"{tag}-counter"

    def write() -> None:
        ns[key] = SAMPLE

    def read() -> None:
        _check(ns[key] == SAMPLE, "read back a different value than was written")

    def incr() -> None:
        _check(ns.incr(counter, 2) == 2, "incr on a new key did not return 2")
        _check(ns.incr(counter, 3) == 5, "incr did not add up to 5")
        _check(ns[counter] == 5, "get after incr did not return 5")

    def scan() -> None:
        found = set(ns.scan_keys(tag))
        _check(found == {key, counter}, f"prefix scan found {len(found)} keys, expected 2")

    def delete() -> None:
        del ns[key]
        del ns[counter]
        _check(key not in ns and counter not in ns, "deleted keys are still present")

    try:
        for label, action in (
            ("set", write),
            ("get", read),
            ("incr", incr),
            ("scan", scan),
            ("delete", delete),
        ):
            if not step(label, action):
                break
    finally:
        # leave nothing behind, whatever failed
        bucket = store.backend.bucket(DOCTOR_NAMESPACE)
        for leftover in (key, counter):
            with contextlib.suppress(Exception):  # a failure was already reported
                bucket.remove(leftover)
