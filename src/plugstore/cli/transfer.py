"""``dump``, ``load``, ``copy``: moving whole namespaces between files and stores.

The dump format is JSON Lines, one record per key::

    {"ns": "notes", "key": "meeting", "value": <the value, tagged JSON>}
    {"ns": "karma", "key": "obj", "raw": "<base64 of the stored bytes>", "codec": "pickle"}

A key with a deadline (``ttl=``) carries it as ``"expires_at"``, epoch seconds; expired
keys are never dumped or copied, and loading skips records whose deadline has passed.

A ``value`` record is codec-independent: loading it encodes it with the destination's
codec.  A ``raw`` record carries a value the tagged JSON cannot (an arbitrary object under
the pickle codec, or bytes the codec could not decode) exactly as stored; it can only be
loaded into a store using the same codec, and loading it never decodes it, so no code runs.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

from plugstore.backend import Bucket
from plugstore.codecs import Codec, from_tagged_json, to_tagged_json
from plugstore.errors import CodecError, DecodeError, EncodeError, StoreError
from plugstore.keys import check_key, check_namespace
from plugstore.store import Store

from .common import (
    CliError,
    CliState,
    binary_stream,
    namespace_exists,
    shown,
    stdout_is_tty,
)

if TYPE_CHECKING:
    from rich.progress import Progress

DEFAULT_BATCH = 500
RECORD_FIELDS = frozenset({"ns", "key", "value", "raw", "codec", "expires_at"})


# --------------------------------------------------------------------------- dump


@dataclass
class DumpStats:
    """What a dump wrote."""

    keys: int = 0
    raw: int = 0
    undecodable: int = 0


def live_entries(
    store: Store, name: str, batch_size: int = DEFAULT_BATCH
) -> Iterator[tuple[str, bytes, float | None]]:
    """``(key, value, deadline)`` of every live key of namespace ``name``, streaming:
    keys a page at a time, then their values and deadlines in one bulk read."""
    bucket = store.backend.bucket(name)
    batch: list[str] = []
    for key in bucket.keys():  # noqa: SIM118 - a Bucket, not a dict
        batch.append(key)
        if len(batch) >= batch_size:
            found = bucket.get_many_with_deadlines(batch)
            yield from ((k, *found[k]) for k in batch if k in found)
            batch = []
    if batch:
        found = bucket.get_many_with_deadlines(batch)
        yield from ((k, *found[k]) for k in batch if k in found)


def dump_records(
    store: Store, names: list[str], *, raw_only: bool, stats: DumpStats
) -> Iterator[dict[str, Any]]:
    """Yield one record per live key of ``names``, streaming from the backend."""
    codec = store.codec
    for name in names:
        for key, data, deadline in live_entries(store, name):
            record: dict[str, Any] | None = None
            if not raw_only:
                try:
                    record = {"ns": name, "key": key, "value": to_tagged_json(codec.decode(data))}
                except EncodeError:
                    pass  # tagged JSON cannot carry it: keep the stored bytes
                except DecodeError:
                    stats.undecodable += 1  # keep the bytes exactly as they are
            if record is None:
                record = {
                    "ns": name,
                    "key": key,
                    "raw": base64.b64encode(data).decode("ascii"),
                    "codec": codec.name,
                }
                stats.raw += 1
            if deadline is not None:
                record["expires_at"] = deadline
            stats.keys += 1
            yield record


def record_line(record: dict[str, Any]) -> bytes:
    """One JSON Lines line, UTF-8; escapes only when a value holds lone surrogates."""
    try:
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(record) + "\n").encode("ascii")


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[bytes]]:
    """stdout, or ``path`` written to a temporary file renamed into place on success.

    A dump that fails half-way never leaves a truncated file that looks like a backup.
    """
    if path is None or path == "-":
        stream = binary_stream("stdout")
        yield stream
        stream.flush()
        return
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def chosen_namespaces(store: Store, names: tuple[str, ...], role: str) -> list[str]:
    """``names`` checked to exist in ``store`` (in order, once each); all if none given."""
    if not names:
        return store.namespaces()
    chosen = list(dict.fromkeys(names))
    for name in chosen:
        check_namespace(name)
        if not namespace_exists(store, name):
            raise CliError(f"no namespace {name!r} in the {role} store {store.url}")
    return chosen


@click.command("dump")
@click.argument("namespaces", nargs=-1, metavar="[NAMESPACE]...")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write to this file (default: stdout).",
)
@click.option(
    "--raw",
    "raw_only",
    is_flag=True,
    help="Write every value as its stored bytes: exact, never decoded, same codec only.",
)
@click.pass_obj
def dump_cmd(
    state: CliState, namespaces: tuple[str, ...], output: str | None, raw_only: bool
) -> None:
    """Write every key (of the chosen namespaces) as JSON Lines."""
    stats = DumpStats()
    with state.open() as store:
        names = chosen_namespaces(store, namespaces, "source")
        with _output(output) as out:
            for record in dump_records(store, names, raw_only=raw_only, stats=stats):
                out.write(record_line(record))
        codec = store.codec.name
    summary = f"dumped {stats.keys} keys from {len(names)} namespaces"
    if stats.raw:
        summary += f" ({stats.raw} as raw {codec} bytes)"
    if output and output != "-":
        summary += f" to {output}"
    click.echo(summary, err=True)
    if stats.undecodable:
        click.echo(
            f"warning: {stats.undecodable} stored values could not be decoded with the "
            f"{codec} codec; they were written as raw bytes, unchanged",
            err=True,
        )


# --------------------------------------------------------------------------- load


def parse_record(
    line: bytes, where: str, store: Store, *, check: bool = True
) -> tuple[str, str, bytes, float | None]:
    """Validate one dump line; return ``(namespace, key, bytes to store, deadline)``."""
    try:
        record = json.loads(line)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise CliError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise CliError(f"{where}: expected a JSON object with 'ns', 'key' and 'value'")
    unknown = sorted(set(record) - RECORD_FIELDS)
    if unknown:
        raise CliError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}")
    ns, key = record.get("ns"), record.get("key")
    if not isinstance(ns, str) or not isinstance(key, str):
        raise CliError(f"{where}: 'ns' and 'key' must be strings")
    try:
        check_namespace(ns)
        check_key(key)
    except StoreError as exc:
        raise CliError(f"{where}: {exc}") from None
    if ("value" in record) == ("raw" in record):
        raise CliError(f"{where}: a record needs exactly one of 'value' and 'raw'")
    if "raw" in record:
        data = _raw_bytes(record, where, store.codec, check=check)
    else:
        if "codec" in record:
            raise CliError(f"{where}: 'codec' belongs to raw records only")
        try:
            value = from_tagged_json(record["value"])
        except CodecError as exc:
            raise CliError(f"{where}: invalid tagged JSON value ({exc})") from None
        try:
            data = store.codec.encode(value)
        except CodecError as exc:
            raise CliError(f"{where}: {exc}") from None
    if len(data) > store.max_value_size:
        raise CliError(
            f"{where}: the value is {len(data)} bytes; this store accepts at most "
            f"{store.max_value_size}"
        )
    return ns, key, data, _deadline(record, where, store)


def _deadline(record: dict[str, Any], where: str, store: Store) -> float | None:
    deadline = record.get("expires_at")
    if deadline is None:
        return None
    if type(deadline) not in (int, float) or not math.isfinite(deadline):
        raise CliError(f"{where}: 'expires_at' must be a number (epoch seconds)")
    if not store.backend.expiry:
        raise CliError(
            f"{where}: this record expires, but the {store.backend.name!r} backend cannot "
            "expire keys (drop its 'expires_at' to keep it for good)"
        )
    return float(deadline)


def _raw_bytes(record: dict[str, Any], where: str, codec: Codec, *, check: bool) -> bytes:
    name = record.get("codec")
    if not isinstance(name, str):
        raise CliError(f"{where}: a raw record needs the name of its 'codec'")
    if name != codec.name:
        raise CliError(
            f"{where}: this raw value was stored with the {name} codec; the destination "
            f"uses {codec.name} (open it with --codec {name}, or dump without --raw)"
        )
    raw = record["raw"]
    if not isinstance(raw, str):
        raise CliError(f"{where}: 'raw' must be a base64 string")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise CliError(f"{where}: 'raw' is not valid base64") from None
    if check:
        try:  # never runs code: JSON decodes, signed pickles check their HMAC only
            codec.check_readable(data)
        except CodecError as exc:
            raise CliError(
                f"{where}: the destination could not read this raw value ({exc}); "
                "pass --keep-unreadable to load it as it is"
            ) from None
    return data


def _lines(source: IO[bytes], label: str) -> Iterator[tuple[str, bytes]]:
    for number, line in enumerate(source, 1):
        if line.strip():
            yield f"{label}:{number}", line


@click.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option(
    "--replace",
    "mode",
    flag_value="replace",
    help="Drop each namespace present in FILE before loading it.",
)
@click.option(
    "--merge",
    "mode",
    flag_value="merge",
    default=True,
    help="Write over existing keys, keep the others (default).",
)
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=DEFAULT_BATCH)
@click.option(
    "--keep-unreadable",
    is_flag=True,
    help="Write raw values the destination's codec cannot read (restoring a backup that "
    "already held such values) instead of refusing the file.",
)
@click.pass_obj
def load_cmd(state: CliState, file: str, mode: str, batch_size: int, keep_unreadable: bool) -> None:
    """Load a dump (JSON Lines; FILE "-" is stdin) into the store.

    The whole file is checked first: if any line is bad, nothing is written.  Raw
    values must be readable by the destination (checked without running any code: JSON
    is parsed, signed pickles have their signature verified) unless --keep-unreadable.
    """
    with contextlib.ExitStack() as stack:
        if file == "-":
            # spooled so it can be read twice: once to check, once to write
            source: IO[bytes] = stack.enter_context(tempfile.TemporaryFile())
            shutil.copyfileobj(binary_stream("stdin"), source)
            label = "<stdin>"
        else:
            source = stack.enter_context(open(file, "rb"))
            label = file
        store = stack.enter_context(state.open())

        counts: dict[str, int] = {}
        source.seek(0)
        for where, line in _lines(source, label):
            ns, _, _, _ = parse_record(line, where, store, check=not keep_unreadable)
            counts[ns] = counts.get(ns, 0) + 1

        dropped = 0
        if mode == "replace":
            for ns in counts:
                dropped += store.drop_namespace(ns)

        source.seek(0)
        pending: dict[str, list[tuple[str, bytes, float | None]]] = {}
        written = expired = 0
        now = store.clock()
        for where, line in _lines(source, label):
            ns, key, data, deadline = parse_record(line, where, store, check=False)  # checked
            if deadline is not None and deadline <= now:
                expired += 1  # it would be absent the moment it landed
                continue
            batch = pending.setdefault(ns, [])
            batch.append((key, data, deadline))
            if len(batch) >= batch_size:
                write_entries(store.backend.bucket(ns), batch)
                written += len(batch)
                pending[ns] = []  # a new list: the backend may keep the one it was given
        for ns, batch in pending.items():
            if batch:
                write_entries(store.backend.bucket(ns), batch)
                written += len(batch)
    summary = f"loaded {written} records into {len(counts)} namespaces"
    if mode == "replace":
        summary += f" (replaced: {dropped} existing keys dropped first)"
    if expired:
        summary += f"; skipped {expired} records whose deadline had passed"
    click.echo(summary)


def write_entries(bucket: Bucket, entries: list[tuple[str, bytes, float | None]]) -> None:
    """Write ``(key, value, deadline)`` entries in one batch (``set_many`` when none of
    them has a deadline)."""
    if any(deadline is not None for _, _, deadline in entries):
        bucket.set_many_until(entries)
    else:
        bucket.set_many([(key, value) for key, value, _ in entries])


# --------------------------------------------------------------------------- copy


@dataclass
class CopyResult:
    """One namespace's copy and its verification."""

    namespace: str
    source_before: int
    copied: int = 0
    existed: int = 0
    dest_before: int = 0
    source_after: int = 0
    dest_after: int = 0
    #: Keys copied without their deadline: the destination cannot expire keys.
    deadlines_dropped: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def expected(self) -> int:
        """Keys the destination should hold: what it had, plus the new keys copied."""
        return self.dest_before + self.copied - self.existed

    def verify(self) -> None:
        """Record a problem if the counts do not add up."""
        if self.dest_after != self.expected:
            self.problems.append(
                f"destination holds {self.dest_after} keys, expected {self.expected}"
            )
        if self.source_after != self.source_before:
            self.problems.append(
                f"source held {self.source_before} keys before the copy and "
                f"{self.source_after} after (was it written to, or is it the destination?)"
            )
        elif self.source_after != self.copied:
            self.problems.append(
                f"source holds {self.source_after} keys but {self.copied} were copied "
                "(was it written to during the copy?)"
            )


def raw_compatible(src: Codec, dst: Codec) -> bool:
    """Whether bytes stored by ``src`` read back the same under ``dst``.

    Same codec name is not enough for signed pickles under two different secrets, so a
    probe value goes through both (no stored data is decoded here).
    """
    if src.name != dst.name:
        return False
    probe = ("plugstore-copy-probe", 1)
    try:
        return bool(dst.decode(src.encode(probe)) == probe)
    except CodecError:
        return False


def _same_store(a: Store, b: Store) -> bool:
    # Identities, not URLs: options and host spellings must not hide that both are one.
    return a.backend.identity() == b.backend.identity()


def copy_namespace(
    src: Store,
    dst: Store,
    result: CopyResult,
    *,
    raw: bool,
    merge: bool,
    batch_size: int,
    advance: Any,
) -> None:
    """Copy one namespace in batches (keys streamed, then their values and deadlines in
    bulk).  Expired keys are left out; deadlines are carried over when the destination
    can expire keys (else counted in ``result.deadlines_dropped``)."""
    name = result.namespace
    source, dest = src.backend.bucket(name), dst.backend.bucket(name)
    keep_deadlines = dst.backend.expiry

    def flush(keys: list[str]) -> None:
        items: list[tuple[str, bytes, float | None]] = []
        # keys deleted (or expired) meanwhile are skipped
        for key, (data, deadline) in source.get_many_with_deadlines(keys).items():
            if not raw:
                try:
                    data = dst.codec.encode(src.codec.decode(data))
                except CodecError as exc:
                    raise CliError(f"cannot copy {name}/{key!r}: {exc}") from None
            if len(data) > dst.max_value_size:
                raise CliError(
                    f"cannot copy {name}/{key!r}: {len(data)} bytes; the destination "
                    f"accepts at most {dst.max_value_size}"
                )
            if deadline is not None and not keep_deadlines:
                result.deadlines_dropped += 1
                deadline = None
            items.append((key, data, deadline))
        if merge and items:
            result.existed += len(dest.get_many([k for k, _, _ in items]))
        if items:
            write_entries(dest, items)
        result.copied += len(items)
        advance(len(keys))

    batch: list[str] = []
    for key in source.keys():  # noqa: SIM118 - a Bucket, not a dict
        batch.append(key)
        if len(batch) >= batch_size:
            flush(batch)
            batch = []
    if batch:
        flush(batch)


F = TypeVar("F", bound=Callable[..., Any])


def destination_options(command: F) -> F:
    """``--merge``, ``--replace`` and ``--batch-size``: how a command writes namespaces."""
    for option in (
        click.option("--batch-size", type=click.IntRange(1, 100_000), default=DEFAULT_BATCH),
        click.option("--replace", is_flag=True, help="Drop destination namespaces first."),
        click.option(
            "--merge", is_flag=True, help="Write into destination namespaces that hold keys."
        ),
    ):
        command = option(command)
    return command


def check_merge_replace(merge: bool, replace: bool) -> None:
    """``--merge`` and ``--replace`` together are a usage error."""
    if merge and replace:
        raise click.UsageError("--merge and --replace exclude each other")


def refuse_occupied(occupied: list[str], where: str, merge: bool, replace: bool) -> None:
    """Refuse to write into namespaces that hold keys unless --merge or --replace was given."""
    if occupied and not (merge or replace):
        raise CliError(
            f"{where} already holds namespace(s) {', '.join(occupied)}: "
            "pass --merge to write over them or --replace to drop them first"
        )


def fail_on_problems(results: list[CopyResult], what: str) -> None:
    """Exit 1 naming every namespace whose verification found a problem."""
    failed = [r for r in results if r.problems]
    if failed:
        details = "; ".join(f"{r.namespace}: {', '.join(r.problems)}" for r in failed)
        raise CliError(f"{what} verification failed: {details}")


@click.command("copy")
@click.argument("src_url")
@click.argument("dst_url")
@click.argument("namespaces", nargs=-1, metavar="[NAMESPACE]...")
@destination_options
@click.pass_obj
def copy_cmd(
    state: CliState,
    src_url: str,
    dst_url: str,
    namespaces: tuple[str, ...],
    merge: bool,
    replace: bool,
    batch_size: int,
) -> None:
    """Copy every namespace (or the chosen ones) from SRC_URL to DST_URL, then verify.

    Values move as raw bytes when both stores use the same codec (nothing is decoded, so
    no code runs), else they are decoded and re-encoded.  A destination namespace that
    already holds keys is refused unless --merge or --replace says what to do with it.
    At the end the key counts of every namespace are checked; a mismatch fails (exit 1).
    """
    check_merge_replace(merge, replace)
    with state.open(src_url) as src, state.open(dst_url) as dst:
        if _same_store(src, dst):
            raise CliError("the source and the destination are the same store")
        names = chosen_namespaces(src, namespaces, "source")
        occupied = [n for n in names if namespace_exists(dst, n)]
        refuse_occupied(occupied, "the destination", merge, replace)
        raw = raw_compatible(src.codec, dst.codec)
        results = [CopyResult(n, src.backend.bucket(n).count()) for n in names]
        _run_copy(src, dst, results, raw=raw, replace=replace, merge=merge, batch_size=batch_size)
        for result in results:
            result.source_after = src.backend.bucket(result.namespace).count()
            result.dest_after = dst.backend.bucket(result.namespace).count()
            result.verify()
        how = f"raw {src.codec.name} bytes" if raw else f"{src.codec.name} -> {dst.codec.name}"
        print_summary(results, f"copied {src.url} -> {dst.url} ({how})")
        warn_dropped_deadlines(results, dst)
    fail_on_problems(results, "copy")


def warn_dropped_deadlines(results: list[CopyResult], dst: Store) -> None:
    """Say on stderr how many keys lost their deadline on the way (if any did)."""
    dropped = sum(r.deadlines_dropped for r in results)
    if dropped:
        click.echo(
            f"warning: {dropped} keys had a deadline, but the {dst.backend.name!r} backend "
            "cannot expire keys: they were copied without it and will not expire",
            err=True,
        )


@contextlib.contextmanager
def progress_bar() -> Iterator[Progress]:
    """A progress display on stderr, one task per namespace (hidden when not a terminal)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as progress:
        yield progress


def _run_copy(
    src: Store,
    dst: Store,
    results: list[CopyResult],
    *,
    raw: bool,
    replace: bool,
    merge: bool,
    batch_size: int,
) -> None:
    with progress_bar() as progress:
        for result in results:
            task = progress.add_task(shown(result.namespace), total=result.source_before)
            if replace:
                dst.drop_namespace(result.namespace)
            result.dest_before = dst.backend.bucket(result.namespace).count()
            copy_namespace(
                src,
                dst,
                result,
                raw=raw,
                merge=merge,
                batch_size=batch_size,
                advance=lambda n, task=task: progress.advance(task, n),
            )


def print_summary(results: list[CopyResult], title: str) -> None:
    """The per-namespace table of a copy (tab-separated when stdout is not a terminal)."""
    header = ["namespace", "source", "copied", "destination", "status"]
    rows = [
        (
            r.namespace,
            str(r.source_after),
            str(r.copied),
            str(r.dest_after),
            "OK" if not r.problems else "MISMATCH",
        )
        for r in results
    ]
    if stdout_is_tty():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table()
        for i, column in enumerate(header):
            table.add_column(column, justify="right" if 0 < i < 4 else "left")
        for row in rows:
            table.add_row(*(Text(shown(cell)) for cell in row))
        console = Console()
        console.print(Text(title))
        console.print(table)
        return
    click.echo(title)
    for row in rows:
        click.echo("\t".join(row))
    total = sum(r.copied for r in results)
    click.echo(f"{total} keys in {len(results)} namespaces")
