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

Deadlines (``ttl=``) are kept beside the dbm file, in ``DIR/NS.db.expiry``: a JSON object
``{key: epoch seconds}`` that Errbot never opens, so the dbm file stays exactly what
Errbot reads.  It is replaced atomically, loaded with the dbm handle, and written around
the dbm commit so that a crash can only lose a deadline (the value then never expires),
never make a value expire early.  Expired entries stay in the dbm file, invisible here,
until they are overwritten or purged (Errbot, which knows nothing of deadlines, still
sees them).

Every namespace file is kept open.  Threads share one lock; processes coordinate through
a sidecar ``NS.db.lock`` (``flock``: shared for reads, exclusive for writes) that also
holds a generation counter bumped by every write, so a process whose open handle is
stale reloads it first.  Each write is committed before the lock is released.

Keys list in code point order, as on every backend.  Every failure of the file system (a
full disk, a permission, an I/O error) reaches the caller as ``BackendUnavailableError``
naming the files and what to do, after the failed write was undone; a damaged file (a
torn dumb index, a corrupt ``dbm.sqlite3`` page) as ``StoreDamagedError``.

Options: ``path``/``basedir`` (the directory, instead of the URL path), ``dbm``
(``dumb``, ``sqlite3``, ``gnu``, ``ndbm``: flavour of new files), ``fsync`` (dumb only:
also survive power loss, default false).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import math
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
    StoreDamagedError,
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
    file_exists,
    flavour_of,
    namespace_names,
    open_engine,
    os_failure,
)

T = TypeVar("T")

_GEN = struct.Struct("<Q")
_PAGE = 256

# ---------------------------------------------------------------------------- deadlines


class Deadlines:
    """One namespace's deadlines, ``{key: epoch seconds}``, as loaded from ``NS.db.expiry``.

    Writers change :attr:`items` under the namespace's exclusive lock; the backend then
    saves it in two steps around the dbm commit (:meth:`save_before`, :meth:`save_after`).
    """

    __slots__ = ("fsync", "items", "path", "saved")

    def __init__(self, path: str, items: dict[str, float], fsync: bool = False) -> None:
        self.path = path
        self.items = items
        self.saved = dict(items)  # what the file holds
        self.fsync = fsync

    @classmethod
    def load(cls, path: str, fsync: bool = False) -> Deadlines:
        """Read the sidecar (none: no deadlines).  Entries that are not a string key with
        a finite number are ignored: they cannot have been written here."""
        try:
            with open(path, "rb") as file:
                raw = json.loads(file.read())
        except FileNotFoundError:
            return cls(path, {}, fsync)
        except OSError as exc:
            raise os_failure(exc, path, "reading the deadlines in") from None
        except (ValueError, RecursionError) as exc:  # not JSON, or nested past parsing
            raise StoreDamagedError(
                f"the deadlines in {path} are damaged ({exc}): restore the file from a "
                "backup, or delete it (the namespace's keys then never expire)"
            ) from None
        items = {}
        if isinstance(raw, dict):
            for key, when in raw.items():
                if type(when) in (int, float) and math.isfinite(when):
                    items[key] = float(when)
        return cls(path, items, fsync)

    def expired(self, key: str, now: float) -> bool:
        when = self.items.get(key)
        return when is not None and when <= now

    @property
    def changed(self) -> bool:
        return self.items != self.saved

    def save_before(self) -> None:
        """Before the dbm commit: drop from the file every deadline that is going away or
        changing, so that a crash after the commit never leaves an old deadline on a new
        value (it may leave a value without its deadline)."""
        kept = {k: v for k, v in self.saved.items() if self.items.get(k) == v}
        if kept != self.saved:
            self._write(kept)

    def save_after(self) -> None:
        """After the dbm commit: write the deadlines as they now are."""
        if self.items != self.saved:
            self._write(self.items)

    def forget(self) -> None:
        """A write failed: back to what the file holds."""
        self.items = dict(self.saved)

    def _write(self, items: dict[str, float]) -> None:
        try:
            if not items:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
            else:
                tmp = self.path + ".tmp"
                try:
                    with open(tmp, "wb") as file:
                        file.write(json.dumps(items, ensure_ascii=False).encode("utf-8"))
                        if self.fsync:
                            os.fsync(file.fileno())
                    os.replace(tmp, self.path)
                except OSError:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)  # the sidecar itself is untouched
                    raise
        except OSError as exc:
            raise os_failure(exc, self.path, "writing") from None
        self.saved = dict(items)


#: A namespace without a file has no deadlines (and gets none: nothing is written).
NO_DEADLINES = Deadlines("", {})

# ----------------------------------------------------------------------------- bucket


class ShelfBucket(Bucket):
    """One namespace: one dbm file, ``DIR/NS.db`` (and ``NS.db.expiry``)."""

    backend: ShelfBackend

    def _now(self) -> float:
        return self.backend.clock()

    def get(self, key: str) -> bytes | None:
        kb = key.encode("utf-8")

        def op(e: Engine, dl: Deadlines) -> bytes | None:
            value = e.get(kb)
            if value is not None and dl.items and dl.expired(key, self._now()):
                return None
            return value

        return self.backend.read(self.namespace, op)

    def get_with_deadline(self, key: str) -> tuple[bytes, float | None] | None:
        kb = key.encode("utf-8")

        def op(e: Engine, dl: Deadlines) -> tuple[bytes, float | None] | None:
            value = e.get(kb)
            if value is None or dl.expired(key, self._now()):
                return None
            return value, dl.items.get(key)

        return self.backend.read(self.namespace, op)

    def set(self, key: str, value: bytes) -> None:
        kb = key.encode("utf-8")

        def op(e: Engine, dl: Deadlines) -> tuple[None, bool]:
            e.put(kb, value)
            dl.items.pop(key, None)
            return None, True

        self.backend.write(self.namespace, op, create=True)

    def set_until(self, key: str, value: bytes, deadline: float) -> None:
        self.set_many_until([(key, value, deadline)])

    def remove(self, key: str) -> bool:
        kb = key.encode("utf-8")

        def op(e: Engine, dl: Deadlines) -> tuple[bool, bool]:
            live = e.get(kb) is not None and not dl.expired(key, self._now())
            gone = e.delete(kb)
            dl.items.pop(key, None)
            return live, gone

        return self.backend.write(self.namespace, op, create=False)

    def cas(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        kb = key.encode("utf-8")

        def op(e: Engine, dl: Deadlines) -> tuple[bool, bool]:
            current = e.get(kb)
            if current is not None and dl.expired(key, self._now()):
                current = None  # expired: absent
            if current != expected:
                return False, False
            if current is None:  # a new entry: an expired one's deadline goes with it
                dl.items.pop(key, None)
            if new is None:
                gone = e.delete(kb)
                dl.items.pop(key, None)
                return True, gone
            e.put(kb, new)  # a live entry keeps its deadline
            return True, True

        create = expected is None and new is not None
        return self.backend.write(self.namespace, op, create=create)

    def add(self, key: str, value: bytes, deadline: float | None) -> bool:
        kb = key.encode("utf-8")

        def op(e: Engine, dl: Deadlines) -> tuple[bool, bool]:
            if e.get(kb) is not None and not dl.expired(key, self._now()):
                return False, False
            e.put(kb, value)  # absent, or expired: a new entry, with this deadline or none
            if deadline is None:
                dl.items.pop(key, None)
            else:
                dl.items[key] = deadline
            return True, True

        return self.backend.write(self.namespace, op, create=True)

    def expire(self, key: str, deadline: float) -> bool:
        kb = key.encode("utf-8")

        def op(e: Engine, dl: Deadlines) -> tuple[bool, bool]:
            if e.get(kb) is None or dl.expired(key, self._now()):
                return False, False
            dl.items[key] = deadline  # only the sidecar changes: the dbm file is not written
            return True, False

        return self.backend.write(self.namespace, op, create=False)

    def persist(self, key: str) -> bool:
        kb = key.encode("utf-8")

        def op(e: Engine, dl: Deadlines) -> tuple[bool, bool]:
            if e.get(kb) is None or dl.expired(key, self._now()):
                return False, False
            dl.items.pop(key, None)
            return True, False

        return self.backend.write(self.namespace, op, create=False)

    def keys(self, prefix: str = "") -> Iterator[str]:
        return iter(self.backend.read(self.namespace, lambda e, dl: self._live_keys(e, dl, prefix)))

    def _live_keys(self, e: Engine, dl: Deadlines, prefix: str) -> list[str]:
        """The live keys starting with ``prefix``, in code point order."""
        keys = _decoded(e.keys(), prefix)
        if dl.items:
            now = self._now()
            keys = [k for k in keys if not dl.expired(k, now)]
        # Code point order, as on every backend (UTF-8 order is the same).  dumb lists
        # in order already (then this is one pass); gnu and ndbm list in hash order.
        keys.sort()
        return keys

    def count(self, prefix: str = "") -> int:
        def op(e: Engine, dl: Deadlines) -> int:
            if not prefix and not dl.items:
                return e.count()
            return len(self._live_keys(e, dl, prefix))

        return self.backend.read(self.namespace, op)

    def contains(self, key: str) -> bool:
        return self.get(key) is not None

    def items(self, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        # A snapshot of the keys and the first page of values under one shared lock (a
        # listing of up to _PAGE entries never sees part of a write_batch), then values
        # a page at a time: bounded memory, and keys deleted meanwhile are skipped.
        def first(e: Engine, dl: Deadlines) -> tuple[list[str], list[tuple[str, bytes]]]:
            keys = self._live_keys(e, dl, prefix)
            found = []
            for key in keys[:_PAGE]:
                value = e.get(key.encode("utf-8"))
                if value is not None:
                    found.append((key, value))
            return keys[_PAGE:], found

        rest, found = self.backend.read(self.namespace, first)
        yield from found
        for start in range(0, len(rest), _PAGE):
            yield from self.get_many(rest[start : start + _PAGE]).items()

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        found = self.get_many_with_deadlines(keys)
        return {key: value for key, (value, _) in found.items()}

    def get_many_with_deadlines(self, keys: Sequence[str]) -> dict[str, tuple[bytes, float | None]]:
        def op(e: Engine, dl: Deadlines) -> dict[str, tuple[bytes, float | None]]:
            found = {}
            now = self._now()
            for key in keys:
                value = e.get(key.encode("utf-8"))
                if value is not None and not dl.expired(key, now):
                    found[key] = (value, dl.items.get(key))
            return found

        return self.backend.read(self.namespace, op)

    def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        self.set_many_until([(key, value, None) for key, value in items])

    def set_many_until(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        encoded = [(k, k.encode("utf-8"), v, d) for k, v, d in items]

        def op(e: Engine, dl: Deadlines) -> tuple[None, bool]:
            for key, kb, value, deadline in encoded:
                e.put(kb, value)
                if deadline is None:
                    dl.items.pop(key, None)
                else:
                    dl.items[key] = deadline
            return None, bool(encoded)

        self.backend.write(self.namespace, op, create=True)

    def incr(self, key: str, delta: int) -> int:
        kb = key.encode("utf-8")

        def op(e: Engine, dl: Deadlines) -> tuple[int, bool]:
            raw = e.get(kb)
            if raw is not None and dl.expired(key, self._now()):
                raw = None  # expired: a fresh counter, without the old deadline
            if raw is None:
                dl.items.pop(key, None)
            new = check_counter((0 if raw is None else parse_counter(raw)) + delta)
            e.put(kb, str(new).encode("ascii"))  # a live counter keeps its deadline
            return new, True

        return self.backend.write(self.namespace, op, create=True)

    def clear(self, prefix: str = "") -> int:
        pb = prefix.encode("utf-8")

        def op(e: Engine, dl: Deadlines) -> tuple[int, bool]:
            doomed = [k for k in e.keys() if k.startswith(pb)]  # noqa: SIM118 - not a dict
            now, live = self._now(), 0
            for k in doomed:
                e.delete(k)
                key = k.decode("utf-8", "replace")
                if not dl.expired(key, now):
                    live += 1
                dl.items.pop(key, None)
            return live, bool(doomed)

        return self.backend.write(self.namespace, op, create=False)

    def write_batch(
        self,
        sets: Sequence[tuple[str, bytes, float | None]],
        removes: Sequence[str] = (),
        clears: Sequence[str] = (),
        *,
        atomic: bool = True,
    ) -> None:
        # One write under the file's exclusive lock: readers (shared lock) see it whole
        # or not at all; a failure part-way rolls the handle back (see write()).
        prefixes = tuple(p.encode("utf-8") for p in clears)
        doomed_keys = [(key, key.encode("utf-8")) for key in removes]
        encoded = [(k, k.encode("utf-8"), v, d) for k, v, d in sets]

        def op(e: Engine, dl: Deadlines) -> tuple[None, bool]:
            modified = False
            if prefixes:
                for kb in [k for k in e.keys() if k.startswith(prefixes)]:  # noqa: SIM118
                    modified = e.delete(kb) or modified
                    dl.items.pop(kb.decode("utf-8", "replace"), None)
            for key, kb in doomed_keys:
                modified = e.delete(kb) or modified
                dl.items.pop(key, None)
            for key, kb, value, deadline in encoded:
                e.put(kb, value)
                if deadline is None:
                    dl.items.pop(key, None)
                else:
                    dl.items[key] = deadline
            return None, modified or bool(encoded)

        self.backend.write(self.namespace, op, create=bool(encoded))

    def purge(self) -> int:
        def op(e: Engine, dl: Deadlines) -> tuple[int, bool]:
            now, purged = self._now(), 0
            for key in [k for k in dl.items if dl.expired(k, now)]:
                if e.delete(key.encode("utf-8")):
                    purged += 1
                del dl.items[key]
            return purged, purged > 0

        return self.backend.write(self.namespace, op, create=False)


def _decoded(keys: list[bytes], prefix: str) -> list[str]:
    """The keys starting with ``prefix``, decoded."""
    pb = prefix.encode("utf-8")
    out = []
    for k in keys:
        if k.startswith(pb):
            try:
                out.append(k.decode("utf-8"))
            except UnicodeDecodeError:
                continue  # not written through shelve/plugstore: no str key names it
    return out


def _valid_namespace(name: str) -> bool:
    try:
        check_namespace(name)
    except InvalidNamespaceError:
        return False
    return True


# ---------------------------------------------------------------------------- backend


class _Slot:
    """Per-namespace state: the lock file and the open handle with the generation it saw."""

    __slots__ = ("base", "deadlines", "engine", "lock_fd", "lock_path", "seen")

    def __init__(self, base: str) -> None:
        self.base = base
        self.lock_path = base + ".lock"
        self.lock_fd: int | None = None
        self.engine: Engine | None = None
        self.deadlines = NO_DEADLINES  # loaded with the engine, at the same generation
        self.seen = -1


class ShelfBackend(Backend):
    """Errbot-compatible dbm files, one per namespace, safe across threads and processes."""

    name = "shelf"
    durable = True
    multiprocess = True
    expiry = True
    atomic_batches = True
    isolated_batches = True

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
            raise os_failure(exc, str(self.path), "creating the directory") from None
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
            if not create and not file_exists(slot.lock_path) and not database_exists(slot.base):
                return None  # (a file this process may not look at raises instead)
            flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
            try:
                slot.lock_fd = os.open(slot.lock_path, flags, 0o666)
            except OSError as exc:
                raise os_failure(exc, slot.lock_path, "opening the lock file") from None
            self._slots[namespace] = slot
        return slot

    @staticmethod
    def _generation(fd: int) -> int:
        raw = os.pread(fd, _GEN.size, 0)
        return _GEN.unpack(raw)[0] if len(raw) == _GEN.size else 0

    def _engine(self, slot: _Slot, *, create: bool) -> Engine:
        """The slot's handle (and deadlines), reloaded first if another process wrote
        since we loaded them."""
        assert slot.lock_fd is not None
        gen = self._generation(slot.lock_fd)
        engine = slot.engine
        if engine is not None and slot.seen == gen:
            return engine
        slot.deadlines = NO_DEADLINES
        if engine is not None:
            slot.engine, slot.seen = None, -1
            if engine.refresh():
                slot.deadlines = Deadlines.load(slot.base + ".expiry", self.fsync)
                slot.engine, slot.seen = engine, gen
                return engine
            engine.close()
        kind = flavour_of(slot.base)
        if kind is None and not create:
            return EMPTY
        engine = open_engine(kind or self.flavour, slot.base, create=kind is None, fsync=self.fsync)
        slot.deadlines = Deadlines.load(slot.base + ".expiry", self.fsync)
        slot.engine, slot.seen = engine, gen
        return engine

    def _guard(self) -> threading.RLock:
        """The thread lock, after dropping a forked parent's state (before locking it)."""
        if self._pid != os.getpid():
            self._after_fork()
        return self._lock

    def read(self, namespace: str, fn: Callable[[Engine, Deadlines], T]) -> T:
        """Run ``fn`` on the namespace's handle and deadlines under a shared lock."""
        try:
            with self._guard():
                slot = self._slot(namespace, create=False)
                if slot is None:
                    return fn(EMPTY, NO_DEADLINES)
                fd = slot.lock_fd
                assert fd is not None
                fcntl.flock(fd, fcntl.LOCK_SH)
                try:
                    engine = self._engine(slot, create=False)
                    return fn(engine, slot.deadlines)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        except StoreError:
            raise
        except OSError as exc:  # the file system's failures (EIO, EACCES...) and dbm.error
            raise os_failure(exc, self._files(namespace), "reading") from None

    def write(
        self,
        namespace: str,
        fn: Callable[[Engine, Deadlines], tuple[T, bool]],
        *,
        create: bool,
    ) -> T:
        """Run ``fn`` under the exclusive lock; commit and bump the generation if it wrote.

        ``fn`` returns ``(result, modified)`` and may change the deadlines in place.  With
        ``create=False`` a namespace without a file is left alone (``fn`` sees an empty,
        read-only namespace).  A write that fails (a full disk...) raises a plugstore
        error and leaves the files as they were before it, or, if only the deadlines
        sidecar could not be written after the commit, leaves the value without its new
        deadline.
        """
        try:
            with self._guard():
                return self._write(namespace, fn, create=create)
        except StoreError:
            raise
        except OSError as exc:  # ENOSPC, EDQUOT, EACCES, EIO... and dbm.error
            raise os_failure(exc, self._files(namespace), "writing") from None

    def _write(
        self,
        namespace: str,
        fn: Callable[[Engine, Deadlines], tuple[T, bool]],
        *,
        create: bool,
    ) -> T:
        slot = self._slot(namespace, create=create)
        if slot is None:
            return fn(EMPTY, Deadlines("", {}))[0]
        fd = slot.lock_fd
        assert fd is not None
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            engine = self._engine(slot, create=create)
            if engine is EMPTY:
                return fn(EMPTY, Deadlines("", {}))[0]
            deadlines = slot.deadlines
            if deadlines is NO_DEADLINES:  # never written to: it is shared
                deadlines = slot.deadlines = Deadlines.load(slot.base + ".expiry", self.fsync)
            published = False
            engine.begin()
            try:
                result, modified = fn(engine, deadlines)
                changed = deadlines.changed
                if modified or changed:
                    # Published before the commit: a write that reaches the file always
                    # makes other processes reload (they wait for our lock first), even
                    # if bumping the counter fails (it then fails the write instead).
                    self._bump(slot, fd, notify=True, reload=False)
                    published = True
                    if changed:
                        deadlines.save_before()
                engine.commit()  # also ends a transaction that wrote nothing
            except BaseException:
                # Our handle may hold half a batch: reload it.  Other processes must
                # reload too unless the engine kept the batch off the file.
                deadlines.forget()
                engine.rollback()
                notify = not published and not engine.transactional
                self._bump(slot, fd, notify=notify, reload=True)
                raise
            if changed:
                try:
                    deadlines.save_after()
                except BaseException:
                    self._bump(slot, fd, notify=True, reload=True)
                    raise
            if (modified or changed) and engine.reopen_after_write:
                self._bump(slot, fd, notify=False, reload=True)
            return result
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _files(self, namespace: str) -> str:
        return os.path.join(self.path, namespace + ".db") + "*"

    def _bump(self, slot: _Slot, fd: int, *, notify: bool, reload: bool) -> None:
        """Publish a write (``notify``: bump the generation) and/or drop our own handle."""
        try:
            if notify:
                gen = self._generation(fd) + 1
                os.pwrite(fd, _GEN.pack(gen), 0)
                slot.seen = gen
        finally:  # even if the counter cannot be written, a doubtful handle goes
            if reload:
                engine, slot.engine, slot.seen = slot.engine, None, -1
                slot.deadlines = NO_DEADLINES
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
            raise os_failure(exc, str(self.path), "listing") from None
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
        try:
            return self._drop(namespace)
        except StoreError:
            raise
        except OSError as exc:
            raise os_failure(exc, self._files(namespace), "deleting") from None

    def _drop(self, namespace: str) -> int:
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
                if slot.deadlines.items:  # what the namespace held: its live keys
                    now = self.clock()
                    count -= sum(
                        1
                        for key in slot.deadlines.items
                        if slot.deadlines.expired(key, now) and engine.get(key.encode()) is not None
                    )
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

    def purge(self, namespace: str | None = None) -> dict[str, int]:
        # Every namespace with a file: namespaces() leaves out those holding only
        # expired keys.
        if namespace is not None:
            names = [namespace]
        else:
            try:
                entries = os.listdir(self.path)
            except OSError as exc:
                raise os_failure(exc, str(self.path), "listing") from None
            names = [n for n in sorted(namespace_names(entries)) if _valid_namespace(n)]
        counts = {name: self.bucket(name).purge() for name in names}
        return {name: n for name, n in counts.items() if n}

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
