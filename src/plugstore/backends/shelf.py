"""``shelf:///DIR`` -- Errbot-compatible dbm files, one per namespace.

Namespace ``NS`` lives in ``DIR/NS.db`` exactly like Errbot's ``Shelf`` storage
(``shelve.DbfilenameShelf(os.path.join(basedir, NS + '.db'), protocol=2)``), so an
existing Errbot data directory opens as it is.  Keys are UTF-8 (shelve's key encoding);
the value bytes in the dbm file are exactly the codec's bytes, so with ``codec="pickle"``
values Errbot pickled decode here and values written here (except top-level ints, which
every codec stores as decimal text) unpickle in Errbot.

The dbm flavour of an existing file is detected (``dbm.whichdb``); new files use the
flavour this Python's ``dbm`` would pick (option ``dbm=`` overrides it):

* ``dbm.dumb`` is implemented here, in dumb's exact on-disk format, but crash-safe: new
  values go to space the committed index does not reference (never overwritten in
  place), and the index (``NS.db.dir``) is replaced atomically after every write.
* ``dbm.sqlite3`` (Python 3.13's default) is implemented here on :mod:`sqlite3` with the
  same table, so such files open on every Python version.
* ``dbm.gnu`` and ``dbm.ndbm`` use the standard modules when this Python has them.

Every namespace file is kept open.  Threads share one lock; processes coordinate through
a sidecar ``NS.db.lock`` (``flock``: shared for reads, exclusive for writes) that also
holds a generation counter bumped by every write, so a process whose open handle is
stale reloads it first.  Each write is committed before the lock is released.

Options: ``path``/``basedir`` (the directory, instead of the URL path), ``dbm``
(``dumb``, ``sqlite3``, ``gnu``, ``ndbm``: flavour of new files), ``fsync`` (dumb only:
also survive power loss, default false).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import os
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from ..backend import Backend, Bucket, Options
from ..errors import (
    BackendUnavailableError,
    ConfigurationError,
    InvalidNamespaceError,
    StoreError,
)
from ..keys import check_counter, check_namespace, parse_counter
from ..url import StoreURL
from .dbmformats import (
    DATA_SUFFIXES,
    EMPTY,
    FLAVOURS,
    Engine,
    database_exists,
    default_flavour,
    flavour_of,
    namespace_names,
    open_engine,
)

T = TypeVar("T")

_GEN = struct.Struct("<Q")
_PAGE = 256

# ----------------------------------------------------------------------------- bucket


class ShelfBucket(Bucket):
    """One namespace: one dbm file, ``DIR/NS.db``."""

    backend: ShelfBackend

    def get(self, key: str) -> bytes | None:
        kb = key.encode("utf-8")
        return self.backend.read(self.namespace, lambda e: e.get(kb))

    def set(self, key: str, value: bytes) -> None:
        kb = key.encode("utf-8")

        def op(e: Engine) -> tuple[None, bool]:
            e.put(kb, value)
            return None, True

        self.backend.write(self.namespace, op, create=True)

    def remove(self, key: str) -> bool:
        kb = key.encode("utf-8")

        def op(e: Engine) -> tuple[bool, bool]:
            gone = e.delete(kb)
            return gone, gone

        return self.backend.write(self.namespace, op, create=False)

    def cas(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        kb = key.encode("utf-8")

        def op(e: Engine) -> tuple[bool, bool]:
            if e.get(kb) != expected:
                return False, False
            if new is None:
                return True, e.delete(kb)
            e.put(kb, new)
            return True, True

        create = expected is None and new is not None
        return self.backend.write(self.namespace, op, create=create)

    def keys(self, prefix: str = "") -> Iterator[str]:
        return iter(self.backend.read(self.namespace, lambda e: _decoded(e.keys(), prefix)))

    def count(self, prefix: str = "") -> int:
        if not prefix:
            return self.backend.read(self.namespace, lambda e: e.count())
        return len(self.backend.read(self.namespace, lambda e: _decoded(e.keys(), prefix)))

    def contains(self, key: str) -> bool:
        return self.get(key) is not None

    def items(self, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        # A snapshot of the keys, then values a page at a time (each page under one
        # shared lock): bounded memory, and keys deleted meanwhile are skipped.
        keys = list(self.keys(prefix))
        for start in range(0, len(keys), _PAGE):
            found = self.get_many(keys[start : start + _PAGE])
            yield from found.items()

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        def op(e: Engine) -> dict[str, bytes]:
            found = {}
            for key in keys:
                value = e.get(key.encode("utf-8"))
                if value is not None:
                    found[key] = value
            return found

        return self.backend.read(self.namespace, op)

    def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        encoded = [(k.encode("utf-8"), v) for k, v in items]

        def op(e: Engine) -> tuple[None, bool]:
            for kb, value in encoded:
                e.put(kb, value)
            return None, bool(encoded)

        self.backend.write(self.namespace, op, create=True)

    def incr(self, key: str, delta: int) -> int:
        kb = key.encode("utf-8")

        def op(e: Engine) -> tuple[int, bool]:
            raw = e.get(kb)
            new = check_counter((0 if raw is None else parse_counter(raw)) + delta)
            e.put(kb, str(new).encode("ascii"))
            return new, True

        return self.backend.write(self.namespace, op, create=True)

    def clear(self, prefix: str = "") -> int:
        pb = prefix.encode("utf-8")

        def op(e: Engine) -> tuple[int, bool]:
            doomed = [k for k in e.keys() if k.startswith(pb)]  # noqa: SIM118 - not a dict
            for k in doomed:
                e.delete(k)
            return len(doomed), bool(doomed)

        return self.backend.write(self.namespace, op, create=False)


def _decoded(keys: list[bytes], prefix: str) -> list[str]:
    pb = prefix.encode("utf-8")
    out = []
    for k in keys:
        if k.startswith(pb):
            try:
                out.append(k.decode("utf-8"))
            except UnicodeDecodeError:
                continue  # not written through shelve/plugstore: no str key names it
    return out


# ---------------------------------------------------------------------------- backend


class _Slot:
    """Per-namespace state: the lock file and the open handle with the generation it saw."""

    __slots__ = ("base", "engine", "lock_fd", "lock_path", "seen")

    def __init__(self, base: str) -> None:
        self.base = base
        self.lock_path = base + ".lock"
        self.lock_fd: int | None = None
        self.engine: Engine | None = None
        self.seen = -1


class ShelfBackend(Backend):
    """Errbot-compatible dbm files, one per namespace, safe across threads and processes."""

    name = "shelf"
    durable = True
    multiprocess = True

    def __init__(self, url: StoreURL, options: Options) -> None:
        super().__init__(url, options)
        path: str | None = options.take("path", None, str)
        basedir: str | None = options.take("basedir", None, str)
        if path and basedir and path != basedir:
            raise ConfigurationError("options 'path' and 'basedir' disagree: give only one")
        chosen = path or basedir or url.file_path
        if not chosen:
            raise ConfigurationError(
                "the shelf backend needs a directory: shelf:///relative/dir, "
                "shelf:////absolute/dir, or basedir=... (Errbot's STORAGE_CONFIG key)"
            )
        self.path = Path(os.path.expanduser(chosen))
        flavour = options.take("dbm", "default", str).strip().lower()
        if flavour in ("", "default"):
            self.flavour = default_flavour()
        else:
            kind = FLAVOURS.get(flavour.removeprefix("dbm."))
            if kind is None:
                raise ConfigurationError(
                    f"unknown dbm flavour {flavour!r}: choose dumb, sqlite3, gnu or ndbm"
                )
            if kind in ("dbm.gnu", "dbm.ndbm"):
                try:
                    importlib.import_module(kind)
                except ImportError:
                    raise ConfigurationError(
                        f"dbm={flavour} was asked for, but this Python has no {kind} module"
                    ) from None
            self.flavour = kind
        self.fsync = options.take("fsync", False)
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._open = False
        self._inherited: list[object] = []  # a forked child's copies: never closed, kept alive

    # -- lifecycle ------------------------------------------------------------------------

    def open(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendUnavailableError(f"cannot create directory {self.path}: {exc}") from None
        if not self.path.is_dir():
            raise BackendUnavailableError(f"{self.path} is not a directory")
        with self._lock:
            self._pid = os.getpid()
            self._open = True

    def close(self) -> None:
        with self._guard():
            slots, self._slots = self._slots, {}
            self._open = False
            for slot in slots.values():
                self._release(slot)

    def _release(self, slot: _Slot) -> None:
        engine, slot.engine, slot.seen = slot.engine, None, -1
        fd, slot.lock_fd = slot.lock_fd, None
        try:
            if engine is not None:
                engine.close()
        finally:
            if fd is not None:
                os.close(fd)

    def _after_fork(self) -> None:
        """In a forked child, forget the parent's handles without touching them."""
        self._lock = threading.RLock()  # the parent's may have been held at fork time
        for slot in self._slots.values():
            # The parent still owns these: closing a gdbm or SQLite handle here could
            # write to the shared file.  Keep them referenced so they are never finalised.
            self._inherited.append((slot.engine, slot.lock_fd))
        self._slots = {}
        self._pid = os.getpid()

    # -- locking ---------------------------------------------------------------------------

    def _slot(self, namespace: str, *, create: bool) -> _Slot | None:
        """The namespace's slot with its lock file open; ``None`` if it has no file yet."""
        if not self._open:
            raise BackendUnavailableError("the shelf store is closed")
        slot = self._slots.get(namespace)
        if slot is None:
            slot = _Slot(os.path.join(self.path, namespace + ".db"))
        if slot.lock_fd is None:
            # Reading a namespace that does not exist creates nothing.  Only existence is
            # asked here, outside the lock: another process may be creating the file, and
            # its flavour is read (by _engine) once the lock is held.
            if not create and not os.path.exists(slot.lock_path) and not database_exists(slot.base):
                return None
            flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
            try:
                slot.lock_fd = os.open(slot.lock_path, flags, 0o666)
            except OSError as exc:
                raise BackendUnavailableError(
                    f"cannot open lock file {slot.lock_path}: {exc}"
                ) from None
            self._slots[namespace] = slot
        return slot

    @staticmethod
    def _generation(fd: int) -> int:
        raw = os.pread(fd, _GEN.size, 0)
        return _GEN.unpack(raw)[0] if len(raw) == _GEN.size else 0

    def _engine(self, slot: _Slot, *, create: bool) -> Engine:
        """The slot's handle, reopened first if another process wrote since we loaded it."""
        assert slot.lock_fd is not None
        gen = self._generation(slot.lock_fd)
        engine = slot.engine
        if engine is not None and slot.seen == gen:
            return engine
        if engine is not None:
            slot.engine, slot.seen = None, -1
            if engine.refresh():
                slot.engine, slot.seen = engine, gen
                return engine
            engine.close()
        kind = flavour_of(slot.base)
        if kind is None and not create:
            return EMPTY
        engine = open_engine(kind or self.flavour, slot.base, create=kind is None, fsync=self.fsync)
        slot.engine, slot.seen = engine, gen
        return engine

    def _guard(self) -> threading.RLock:
        """The thread lock, after dropping a forked parent's state (before locking it)."""
        if self._pid != os.getpid():
            self._after_fork()
        return self._lock

    def read(self, namespace: str, fn: Callable[[Engine], T]) -> T:
        """Run ``fn`` on the namespace's handle under a shared lock."""
        with self._guard():
            slot = self._slot(namespace, create=False)
            if slot is None:
                return fn(EMPTY)
            fd = slot.lock_fd
            assert fd is not None
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                return fn(self._engine(slot, create=False))
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def write(self, namespace: str, fn: Callable[[Engine], tuple[T, bool]], *, create: bool) -> T:
        """Run ``fn`` under the exclusive lock; commit and bump the generation if it wrote.

        ``fn`` returns ``(result, modified)``.  With ``create=False`` a namespace without
        a file is left alone (``fn`` sees an empty, read-only namespace).
        """
        with self._guard():
            slot = self._slot(namespace, create=create)
            if slot is None:
                return fn(EMPTY)[0]
            fd = slot.lock_fd
            assert fd is not None
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                engine = self._engine(slot, create=create)
                if engine is EMPTY:
                    return fn(EMPTY)[0]
                engine.begin()
                try:
                    result, modified = fn(engine)
                except BaseException:
                    # Our handle may hold half a batch: reload it.  Other processes must
                    # reload too unless the engine kept the batch off the file.
                    engine.rollback()
                    self._bump(slot, fd, notify=not engine.transactional, reload=True)
                    raise
                try:
                    engine.commit()
                except BaseException:
                    engine.rollback()
                    self._bump(slot, fd, notify=True, reload=True)
                    raise
                if modified:
                    self._bump(slot, fd, notify=True, reload=engine.reopen_after_write)
                return result
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _bump(self, slot: _Slot, fd: int, *, notify: bool, reload: bool) -> None:
        """Publish a write (``notify``: bump the generation) and/or drop our own handle."""
        if notify:
            gen = self._generation(fd) + 1
            os.pwrite(fd, _GEN.pack(gen), 0)
            slot.seen = gen
        if reload:
            engine, slot.engine, slot.seen = slot.engine, None, -1
            if engine is not None:
                with contextlib.suppress(Exception):
                    engine.close()

    # -- backend API -------------------------------------------------------------------------

    def bucket(self, namespace: str) -> ShelfBucket:
        return ShelfBucket(self, namespace)

    def namespaces(self) -> list[str]:
        try:
            entries = os.listdir(self.path)
        except OSError as exc:
            raise BackendUnavailableError(f"cannot list {self.path}: {exc}") from None
        found = []
        for name in sorted(namespace_names(entries)):
            try:
                check_namespace(name)
            except InvalidNamespaceError:
                continue
            try:
                if self.bucket(name).count() > 0:
                    found.append(name)
            except StoreError:
                found.append(name)  # a file we cannot open still holds a namespace
        return found

    def drop_namespace(self, namespace: str) -> int:
        """Delete the namespace's dbm files (the ``.lock`` sidecar stays); return its size."""
        with self._guard():
            slot = self._slot(namespace, create=False)
            if slot is None:
                return 0
            fd = slot.lock_fd
            assert fd is not None
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                engine = self._engine(slot, create=False)
                count = engine.count()
                if engine is not EMPTY:
                    slot.engine, slot.seen = None, -1
                    engine.close()
                for suffix in DATA_SUFFIXES:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(self.path, namespace + suffix))
                self._bump(slot, fd, notify=True, reload=True)
                return count
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def identity(self) -> tuple[object, ...]:
        return (self.name, str(self.path.resolve()))

    def info(self) -> dict[str, str]:
        return {
            **super().info(),
            "path": str(self.path),
            "dbm_for_new_files": self.flavour,
            "fsync": str(self.fsync).lower(),
        }


__all__ = ["ShelfBackend", "ShelfBucket", "default_flavour"]
