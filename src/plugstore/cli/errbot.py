"""``import-errbot``, ``export-errbot``, ``errbot-plugin-dir``: moving an Errbot bot's data.

Errbot's Shelf storage keeps one shelve file per namespace in the bot's data directory
(see :mod:`plugstore.integrations.errbot.datadir`).  Both directions move the pickles as
bytes, never unpickling them (no code runs, and identifiers of a chat backend that is not
installed here still move): plain ints become plugstore's decimal text on the way in and
pickles again on the way out.  Both verify every value, byte for byte, after writing.

Errbot names its files by the raw name (``DATA_DIR/Test hooks.db``); in the store each
name has its namespace (``Test%20hooks``, see
:mod:`plugstore.integrations.errbot.names`), and ``errbot-namespace`` prints it.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from plugstore.backend import Bucket
from plugstore.backends.dbmformats import available
from plugstore.codecs import Codec, PickleCodec
from plugstore.errors import (
    BackendUnavailableError,
    CodecError,
    InvalidKeyError,
    InvalidNamespaceError,
)
from plugstore.integrations.errbot import errbot_name, namespace_for, plugin_dir
from plugstore.integrations.errbot.datadir import (
    ShelfFile,
    read_shelf,
    remove_shelf,
    shelf_file,
    shelf_files,
    write_shelf,
)
from plugstore.integrations.errbot.storage import DEFAULT_CODEC
from plugstore.keys import check_key
from plugstore.store import Store

from .common import CliError, CliState, namespace_exists
from .transfer import (
    CopyResult,
    check_merge_replace,
    destination_options,
    fail_on_problems,
    print_summary,
    progress_bar,
    refuse_occupied,
)

if TYPE_CHECKING:
    from rich.progress import TaskID

#: Mismatched keys named in a verification failure, at most.
SHOWN_MISMATCHES = 5
DBM_CHOICES = ("gnu", "ndbm", "dumb", "sqlite3")


@click.command("errbot-plugin-dir")
def plugin_dir_cmd() -> None:
    """Print the directory to set as Errbot's BOT_EXTRA_STORAGE_PLUGINS_DIR.

    Needed only when plugstore is installed in a way Errbot's entry-point discovery
    misses (an editable install): ``BOT_EXTRA_STORAGE_PLUGINS_DIR = "<this>"``.
    """
    click.echo(str(plugin_dir()))


@click.command("errbot-namespace")
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option(
    "-r",
    "--reverse",
    is_flag=True,
    help="Take namespaces and print the Errbot names they belong to.",
)
def errbot_namespace_cmd(names: tuple[str, ...], reverse: bool) -> None:
    """Print the plugstore namespace where Errbot keeps the storage NAME (a plugin's name).

    One line per NAME.  A name that is a valid namespace (core, Memo) is its own; any
    other is percent-escaped ("Test hooks" -> Test%20hooks).  Use it with the commands
    that take a namespace:

        plugstore ls "$(plugstore errbot-namespace 'Test hooks')"

    With --reverse, NAMEs are namespaces (as ls lists them) and their Errbot names are
    printed.
    """
    convert = errbot_name if reverse else namespace_for
    click.echo("\n".join(convert(name) for name in names))


def open_errbot_store(state: CliState, url: str) -> Store:
    """Open ``url`` with the pickle codec unless the URL or ``--codec`` chose another."""
    import plugstore

    parsed, options = state.prepare(url)
    if "codec" not in parsed.query:
        options.setdefault("codec", DEFAULT_CODEC)
    return plugstore.open(parsed, **options)


def _mismatches(expected: list[tuple[str, bytes]], bucket: Bucket, batch_size: int) -> list[str]:
    """Keys of ``expected`` whose stored bytes in ``bucket`` differ (or are missing)."""
    wrong = []
    for start in range(0, len(expected), batch_size):
        batch = expected[start : start + batch_size]
        found = bucket.get_many([k for k, _ in batch])
        wrong += [k for k, v in batch if found.get(k) != v]
    return wrong


def _problem(what: str, keys: list[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:SHOWN_MISMATCHES])
    more = f" and {len(keys) - SHOWN_MISMATCHES} more" if len(keys) > SHOWN_MISMATCHES else ""
    return f"{len(keys)} {what}: {shown}{more}"


# --------------------------------------------------------------------------- import


def _stored(codec: PickleCodec, file: ShelfFile) -> list[tuple[str, bytes]]:
    """``file``'s values as ``codec`` stores them, keys checked."""
    items = []
    for key, pickled in read_shelf(file):
        try:
            check_key(key)
        except InvalidKeyError as exc:
            raise CliError(f"cannot import {file.namespace}/{key!r}: {exc}") from None
        items.append((key, codec.from_pickle(pickled)))
    return items


def _chosen_files(data_dir: Path, names: tuple[str, ...]) -> list[ShelfFile]:
    """The files of the Errbot namespaces ``names`` (in order, once each)."""
    files = []
    for name in dict.fromkeys(names):
        file = shelf_file(data_dir, name)
        if file is None:
            raise CliError(
                f"{data_dir} has no file for namespace {name!r} ({name}.db){_hint(data_dir, name)}"
            )
        files.append(file)
    return files


def _hint(data_dir: Path, name: str) -> str:
    """A pointer to the Errbot name when ``name`` is the namespace of another file."""
    try:
        raw = errbot_name(name)
    except InvalidNamespaceError:
        return ""
    if raw == name or shelf_file(data_dir, raw) is None:
        return ""
    return f": {name!r} is the plugstore namespace of {raw!r}; name it as Errbot does"


@click.command("import-errbot")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("dst_url")
@click.argument("namespaces", nargs=-1, metavar="[NAME]...")
@destination_options
@click.pass_obj
def import_errbot_cmd(
    state: CliState,
    data_dir: Path,
    dst_url: str,
    namespaces: tuple[str, ...],
    merge: bool,
    replace: bool,
    batch_size: int,
) -> None:
    """Copy an Errbot Shelf data directory (every namespace file) into DST_URL, then verify.

    DATA_DIR is the bot's BOT_DATA_DIR; stop the bot first.  Every namespace file is read
    whichever dbm wrote it (gdbm, dumb, sqlite3), its values copied as the pickles Errbot
    wrote (never unpickled here), and every value read back and compared.  DST_URL's
    codec is pickle unless the URL or --codec says signed-pickle.  Then set
    STORAGE = "Plugstore" and STORAGE_CONFIG = {"url": DST_URL} in the bot's config.py.

    NAMEs choose what to import, named as Errbot names them (core, a plugin's name such
    as "Test hooks", the file name without .db).  A name that is not a valid namespace
    is imported into its escaped namespace (Test%20hooks), where the bot looks for it.
    """
    check_merge_replace(merge, replace)
    if namespaces:
        files = _chosen_files(data_dir, namespaces)
    else:
        files = shelf_files(data_dir)
        if not files:
            raise CliError(f"{data_dir} holds no Errbot storage files (NAMESPACE.db)")
    with open_errbot_store(state, dst_url) as dst:
        codec = dst.codec
        if not isinstance(codec, PickleCodec):
            raise CliError(
                f"the destination uses the {codec.name} codec; Errbot's values are pickles "
                "(identifiers, plugin configs), so import into a pickle or signed-pickle "
                "store (the default here: drop codec= from the URL and --codec)"
            )
        occupied = [f.namespace for f in files if namespace_exists(dst, f.namespace)]
        refuse_occupied(occupied, f"the destination {dst.url}", merge, replace)
        # Everything read and checked before the first write: a bad key or an oversized
        # value stops the import with the destination untouched.
        sources = [_stored(codec, file) for file in files]
        for file, items in zip(files, sources, strict=True):
            _check_sizes(dst, file.namespace, items)
        results: list[CopyResult] = []
        with progress_bar() as progress:
            for file, items in zip(files, sources, strict=True):
                result = CopyResult(file.namespace, len(items))
                task = progress.add_task(file.namespace, total=len(items))

                def advance(n: int, task: TaskID = task) -> None:
                    progress.advance(task, n)

                _write_batches(
                    dst,
                    result,
                    items,
                    replace=replace,
                    merge=merge,
                    batch_size=batch_size,
                    advance=advance,
                )
                results.append(result)
        for file, result in zip(files, results, strict=True):
            items = _stored(codec, file)
            bucket = dst.backend.bucket(file.namespace)
            result.source_after = len(items)
            result.dest_after = bucket.count()
            result.verify()
            wrong = _mismatches(items, bucket, batch_size)
            if wrong:
                result.problems.append(_problem("values differ from the source", wrong))
        print_summary(results, f"imported {data_dir} -> {dst.url} ({codec.name})")
    fail_on_problems(results, "import")


def _check_sizes(dst: Store, name: str, items: list[tuple[str, bytes]]) -> None:
    for key, data in items:
        if len(data) > dst.max_value_size:
            raise CliError(
                f"cannot import {name}/{key!r}: {len(data)} bytes; the destination accepts "
                f"at most {dst.max_value_size}"
            )


def _write_batches(
    dst: Store,
    result: CopyResult,
    items: list[tuple[str, bytes]],
    *,
    replace: bool,
    merge: bool,
    batch_size: int,
    advance: Callable[[int], Any],
) -> None:
    name = result.namespace
    if replace:
        dst.drop_namespace(name)
    bucket = dst.backend.bucket(name)
    result.dest_before = bucket.count()
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        if merge:
            result.existed += len(bucket.get_many([k for k, _ in batch]))
        bucket.set_many(batch)
        result.copied += len(batch)
        advance(len(batch))


# --------------------------------------------------------------------------- export


def _as_pickle(codec: Codec, data: bytes) -> bytes:
    """The stored ``data`` as the pickle Errbot's shelve reads (JSON values are decoded)."""
    if isinstance(codec, PickleCodec):
        return codec.to_pickle(data)
    return pickle.dumps(codec.decode(data), protocol=2)  # JSON decoding runs no code


def _pickled(src: Store, name: str) -> Iterator[tuple[str, bytes]]:
    for key, data in src.backend.bucket(name).items():
        try:
            yield key, _as_pickle(src.codec, data)
        except CodecError as exc:
            raise CliError(f"cannot export {name}/{key!r}: {exc}") from None


def _exported_names(src: Store, names: tuple[str, ...], data_dir: Path) -> list[tuple[str, str]]:
    """``(Errbot name, namespace)`` of each namespace to export: named as Errbot names
    them, else every namespace of ``src``.  Each is checked to exist and to have a Shelf
    file name before anything is written."""
    try:
        if names:
            chosen = [(name, namespace_for(name)) for name in dict.fromkeys(names)]
            for name, ns in chosen:
                if not namespace_exists(src, ns):
                    shown = repr(ns) if ns == name else f"{ns!r} (Errbot name {name!r})"
                    raise CliError(f"no namespace {shown} in the source store {src.url}")
        else:
            chosen = [(errbot_name(ns), ns) for ns in src.namespaces()]
        for name, _ in chosen:
            shelf_file(data_dir, name)  # refuses a name that cannot be a file name
    except InvalidNamespaceError as exc:
        raise CliError(
            f"cannot export: {exc}; export the other namespaces by naming them"
        ) from None
    return chosen


@click.command("export-errbot")
@click.argument("src_url")
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("namespaces", nargs=-1, metavar="[NAME]...")
@click.option("--merge", is_flag=True, help="Write into namespace files that hold keys.")
@click.option("--replace", is_flag=True, help="Delete existing namespace files first.")
@click.option(
    "--dbm",
    type=click.Choice(DBM_CHOICES),
    help="dbm flavour of new files (default: the one this Python's shelve would use).",
)
@click.pass_obj
def export_errbot_cmd(
    state: CliState,
    src_url: str,
    data_dir: Path,
    namespaces: tuple[str, ...],
    merge: bool,
    replace: bool,
    dbm: str | None,
) -> None:
    """Write SRC_URL's namespaces as an Errbot Shelf data directory, then verify.

    The reverse of import-errbot: each namespace becomes DATA_DIR/NAME.db, a shelve
    file Errbot's STORAGE = "Shelf" opens, NAME being its Errbot name (the namespace
    Test%20hooks is the plugin "Test hooks": "Test hooks.db").  Pickled values are
    written as they are stored (never unpickled); ints and JSON-coded values are pickled
    (protocol 2, like Errbot).  Choose --dbm to match the Python the bot runs on; stop
    the bot first.  NAMEs choose what to export, named as Errbot names them.
    """
    check_merge_replace(merge, replace)
    flavour = f"dbm.{dbm}" if dbm else None
    if flavour is not None:
        try:
            available(flavour)
        except BackendUnavailableError as exc:
            raise click.BadParameter(str(exc), param_hint="--dbm") from None
    with open_errbot_store(state, src_url) as src:
        chosen = _exported_names(src, namespaces, data_dir)
        occupied = []
        for name, _ in chosen:
            file = shelf_file(data_dir, name)
            if file is not None and any(True for _ in read_shelf(file)):
                occupied.append(name)
        refuse_occupied(occupied, str(data_dir), merge, replace)
        # Every value converted before the first write: one that cannot be (a bad
        # signature) stops the export with the data directory untouched.
        exported = [list(_pickled(src, ns)) for _, ns in chosen]
        results: list[CopyResult] = []
        with progress_bar() as progress:
            for (name, ns), items in zip(chosen, exported, strict=True):
                result = CopyResult(ns, len(items))
                task = progress.add_task(ns, total=len(items))
                if replace:
                    remove_shelf(data_dir, name)
                before = shelf_file(data_dir, name)
                present = dict(read_shelf(before)) if before is not None else {}
                if before is not None and flavour and before.flavour != flavour:
                    click.echo(
                        f"warning: {before.base} is a {before.flavour} file: merged in that "
                        f"flavour, not --dbm {dbm}",
                        err=True,
                    )
                result.dest_before = len(present)
                result.existed = sum(1 for k, _ in items if k in present)
                result.copied = write_shelf(data_dir, name, items, flavour=flavour)
                progress.advance(task, len(items))
                results.append(result)
        for (name, ns), result, items in zip(chosen, results, exported, strict=True):
            result.source_after = src.backend.bucket(ns).count()
            file = shelf_file(data_dir, name)
            written = dict(read_shelf(file)) if file is not None else {}
            result.dest_after = len(written)
            result.verify()
            wrong = [k for k, v in items if written.get(k) != v]
            if wrong:
                result.problems.append(_problem("values differ from the source", wrong))
        print_summary(results, f"exported {src.url} -> {data_dir} ({src.codec.name} -> shelve)")
    fail_on_problems(results, "export")
