"""Errbot's Shelf data directory: one ``shelve`` file per namespace, ``DATA_DIR/NAME.db``.

``NAME`` is the name Errbot gives the storage (``core``, a plugin's name), as it is: a
plugin called "Test hooks" has ``Test hooks.db``.  The functions here take and report
those Errbot names; :attr:`ShelfFile.namespace` is the plugstore namespace of one
(:func:`~plugstore.integrations.errbot.names.namespace_for`: ``Test%20hooks``).

Errbot's ``Shelf`` storage is ``shelve.DbfilenameShelf(DATA_DIR/NS.db, protocol=2)``: the
keys are UTF-8, the values are pickles, and the dbm flavour is whichever this Python's
``dbm`` picked when the file was created (``dbm.gnu`` on most Linux Pythons, ``dbm.dumb``
where gdbm is missing, ``dbm.sqlite3`` from Python 3.13).  These functions read and write
such files as raw bytes, so nothing is ever unpickled here.

The bot must be stopped while its data directory is read or written: Errbot keeps its
files open and does not expect another writer.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ...backends.dbmformats import (
    DATA_SUFFIXES,
    default_flavour,
    flavour_of,
    namespace_names,
    open_engine,
)
from ...errors import ConfigurationError, DecodeError, InvalidNamespaceError
from .names import namespace_for


@dataclass(frozen=True)
class ShelfFile:
    """One namespace's file in an Errbot data directory."""

    #: The plugstore namespace of the file's Errbot name.
    namespace: str
    #: The path shelve was given (``DATA_DIR/NAME.db``); the dbm adds its own suffixes.
    base: str
    #: The dbm module that wrote it (``dbm.gnu``, ``dbm.dumb``, ...).
    flavour: str

    @property
    def name(self) -> str:
        """The Errbot name of the file (``Test hooks`` for ``Test hooks.db``)."""
        return os.path.basename(self.base)[: -len(".db")]


def _stem(data_dir: str | os.PathLike[str], name: str) -> str:
    """``DATA_DIR/NAME``, once ``name`` is known to have a namespace and to be one file
    name (Errbot's Shelf could not store a name with a path separator either)."""
    namespace_for(name)
    if "\x00" in name or os.sep in name or (os.altsep and os.altsep in name):
        raise InvalidNamespaceError(
            f"Errbot namespace {name!r} cannot be a Shelf file name (it holds a path "
            "separator or NUL), so Errbot's Shelf storage cannot hold it either"
        )
    return os.path.join(data_dir, name)


def _is_dbm_sqlite3(path: str) -> bool:
    """Whether a SQLite file is a ``dbm.sqlite3`` database (has its ``Dict`` table).

    A bot's data directory can hold other SQLite files: ``plugstore.db`` itself, the
    default store of ``STORAGE = "Plugstore"``.
    """
    uri = f"file:{os.path.abspath(path)}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as cx:
            row = cx.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'Dict'"
            ).fetchone()
    except sqlite3.Error:
        return False
    return row is not None


def shelf_file(data_dir: str | os.PathLike[str], name: str) -> ShelfFile | None:
    """The file of the Errbot namespace ``name`` in ``data_dir``, or ``None`` if it has none.

    Raises ``InvalidNamespaceError`` if ``name`` has no plugstore namespace or cannot be
    a file name.
    """
    base = _stem(data_dir, name) + ".db"
    flavour = flavour_of(base)
    if flavour is None or (flavour == "dbm.sqlite3" and not _is_dbm_sqlite3(base)):
        return None
    return ShelfFile(namespace_for(name), base, flavour)


def shelf_files(data_dir: str | os.PathLike[str]) -> list[ShelfFile]:
    """Every namespace file in ``data_dir``, sorted by Errbot name.

    Raises ``ConfigurationError`` if the directory cannot be listed, and
    ``InvalidNamespaceError`` naming the file if its name has no plugstore namespace
    (too long once escaped, or not UTF-8; pass the names to import explicitly to leave
    it out).
    """
    try:
        entries = os.listdir(data_dir)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the Errbot data directory {data_dir}: {exc}"
        ) from None
    found = []
    for name in sorted(namespace_names(entries)):
        try:
            namespace_for(name)
        except InvalidNamespaceError as exc:
            raise InvalidNamespaceError(
                f"{os.path.join(data_dir, name)}.db: {exc}; import the other namespaces by "
                "naming them"
            ) from None
        file = shelf_file(data_dir, name)
        if file is not None:
            found.append(file)
    return found


def read_shelf(file: ShelfFile) -> Iterator[tuple[str, bytes]]:
    """Yield ``(key, pickled value)`` for every key of ``file``, opened read-only."""
    engine = open_engine(file.flavour, file.base, create=False, fsync=False, readonly=True)
    try:
        for raw_key in engine.keys():  # noqa: SIM118 - an Engine, not a dict
            value = engine.get(raw_key)
            if value is None:
                continue
            try:
                key = raw_key.decode("utf-8")
            except UnicodeDecodeError:
                raise DecodeError(
                    f"{file.base}: key {raw_key!r} is not UTF-8 (was it written by shelve?)"
                ) from None
            yield key, value
    finally:
        engine.close()


def remove_shelf(data_dir: str | os.PathLike[str], name: str) -> None:
    """Delete every file of the Errbot namespace ``name`` in ``data_dir`` (the dbm's and
    their leftovers)."""
    stem = _stem(data_dir, name)
    for suffix in DATA_SUFFIXES:
        path = stem + suffix
        if os.path.exists(path):
            os.unlink(path)


def write_shelf(
    data_dir: str | os.PathLike[str],
    name: str,
    items: Iterable[tuple[str, bytes]],
    *,
    flavour: str | None = None,
) -> int:
    """Write ``(key, pickled value)`` pairs into the file of the Errbot namespace ``name``;
    return how many.

    An existing file is written in its own flavour; a new one in ``flavour`` (default:
    the one this Python's ``dbm``, and so Errbot on it, would create).  ``dbm.dumb`` and
    ``dbm.sqlite3`` files change all at once, at the end; ``dbm.gnu`` and ``dbm.ndbm``
    ones as they are written, so a failure leaves part of the keys written.
    """
    base = _stem(data_dir, name) + ".db"
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    existing = shelf_file(data_dir, name)
    kind = existing.flavour if existing is not None else flavour or default_flavour()
    engine = open_engine(kind, base, create=True, fsync=True)
    written = 0
    try:
        engine.begin()
        for key, value in items:
            engine.put(key.encode("utf-8"), value)
            written += 1
        engine.commit()
    except BaseException:
        engine.rollback()
        raise
    finally:
        engine.close()
    return written


__all__ = [
    "ShelfFile",
    "read_shelf",
    "remove_shelf",
    "shelf_file",
    "shelf_files",
    "write_shelf",
]
