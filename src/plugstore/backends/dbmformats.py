"""On-disk dbm formats for the shelf backend, one engine per flavour.

Each engine is one opened namespace file working on raw ``bytes`` keys and values:

* :class:`DumbEngine` writes ``dbm.dumb``'s exact format (``.dat`` values, ``.dir`` text
  index) but crash-safely: a value is only written to space the committed index does not
  reference, and the index is replaced atomically.
* :class:`SQLiteEngine` writes Python 3.13's ``dbm.sqlite3`` table with :mod:`sqlite3`, so
  such files open on every supported Python.
* :class:`StdlibEngine` wraps ``dbm.gnu`` / ``dbm.ndbm`` when this Python has them.
* :class:`~plugstore.backends.gdbmfile.GdbmFileEngine` reads ``dbm.gnu`` files read-only
  when this Python has no ``dbm.gnu``.

Locking is not done here: :mod:`plugstore.backends.shelf` serialises access.
"""

from __future__ import annotations

import ast
import contextlib
import dbm
import errno
import importlib
import logging
import os
import sqlite3
import stat
import sys
import urllib.parse
from abc import ABC, abstractmethod
from typing import Any

from ..errors import BackendUnavailableError, StoreDamagedError
from .sqlite import advice, is_damaged

log = logging.getLogger("plugstore.backends.shelf")

_BLOCK = 512  # dbm.dumb aligns every value to this
#: File name endings a namespace ``NS`` can own: dumb, ndbm, Berkeley-ndbm, gdbm/sqlite3.
SUFFIXES = (".db.dat", ".db.dir", ".db.bak", ".db.pag", ".db.db", ".db")
DATA_SUFFIXES = (
    *SUFFIXES,
    ".db.dir.tmp",
    ".db-wal",
    ".db-shm",
    ".db-journal",
    ".db.expiry",  # plugstore's deadlines (see shelf.py); Errbot never opens it
    ".db.expiry.tmp",
)


def namespace_names(entries: list[str]) -> set[str]:
    """The namespaces a directory listing's dbm files may belong to.

    The longest matching suffix wins, but ``X.db.db`` is ambiguous: Berkeley-DB ndbm
    names namespace ``X``'s file so, and gnu and sqlite3 namespace ``X.db``'s.  Both
    are candidates; the caller keeps those whose files open (a name with no file of its
    own reads as empty).
    """
    names = set()
    for entry in entries:
        suffix = max((s for s in SUFFIXES if entry.endswith(s)), key=len, default=None)
        if suffix is not None and len(entry) > len(suffix):
            names.add(entry[: -len(suffix)])
            if suffix == ".db.db":
                names.add(entry[: -len(".db")])
    return names


FLAVOURS = {
    "dumb": "dbm.dumb",
    "sqlite3": "dbm.sqlite3",
    "sqlite": "dbm.sqlite3",
    "gnu": "dbm.gnu",
    "gdbm": "dbm.gnu",
    "ndbm": "dbm.ndbm",
}
_SQLITE_MAGIC = b"SQLite format 3\x00"
_HINTS = {
    "dbm.gnu": "install your system's python3-gdbm package or use a Python built with gdbm",
    "dbm.ndbm": "use a Python built with ndbm/Berkeley DB support",
}


def _align(n: int) -> int:
    return (n + _BLOCK - 1) // _BLOCK * _BLOCK


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _read_only(path: str) -> BackendUnavailableError:
    return BackendUnavailableError(f"{path} was opened read-only: writing to it is refused")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


#: What to do about the file system errors a shelf meets, by errno.
_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space, then retry",
    errno.EDQUOT: "the disk quota is used up: free some space or raise the quota, then retry",
    errno.EFBIG: "the file reached a size limit (ulimit -f, or the file system's): raise it",
    errno.EACCES: "let the user running the bot read and write the directory and its files",
    errno.EPERM: "let the user running the bot read and write the directory and its files",
    errno.EROFS: "remount the file system read-write, or move the store",
    errno.EIO: "the disk may be failing: check it (e.g. dmesg), and restore the files from a "
    "backup if they are damaged",
    errno.EMFILE: "raise this process's limit on open files (ulimit -n)",
    errno.ENFILE: "the system ran out of open files: close some, or raise its limit",
}


def os_failure(exc: OSError, path: str, doing: str) -> BackendUnavailableError:
    """The plugstore error for an ``OSError`` met while ``doing`` (e.g. "writing")
    ``path``: what failed, and what to do about it."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    advice = _ADVICE.get(exc.errno or 0, "check the directory and its files")
    where = f" ({exc.filename})" if exc.filename else ""
    return BackendUnavailableError(f"shelf: {doing} {path} failed{where}: {reason}; {advice}")


# ---------------------------------------------------------------------------- engines


class Engine(ABC):
    """One opened namespace file, working on raw ``bytes`` keys and values."""

    kind = "?"
    #: The handle must be reopened after a write (ndbm has no ``sync``).
    reopen_after_write = False
    #: Nothing reaches the file before ``commit`` (a failed batch leaves it unchanged).
    transactional = False

    @abstractmethod
    def get(self, key: bytes) -> bytes | None: ...

    @abstractmethod
    def put(self, key: bytes, value: bytes) -> None: ...

    @abstractmethod
    def delete(self, key: bytes) -> bool: ...

    @abstractmethod
    def keys(self) -> list[bytes]:
        """Every key, in no promised order; the caller must not change the list."""

    def count(self) -> int:
        return len(self.keys())

    def refresh(self) -> bool:
        """Catch up with another process's writes in place; ``False``: reopen instead."""
        return False

    def begin(self) -> None:
        """Start a batch of writes (called under the exclusive lock)."""
        return None

    @abstractmethod
    def commit(self) -> None:
        """Make the batch durable against a crash of this process, and visible."""

    def rollback(self) -> None:
        """Forget an unfinished batch (the caller reloads the handle afterwards)."""
        return None

    @abstractmethod
    def close(self) -> None: ...


class Empty(Engine):
    """A namespace with no file: reads find nothing, and nothing is ever created."""

    kind = "absent"

    def get(self, key: bytes) -> bytes | None:
        return None

    def put(self, key: bytes, value: bytes) -> None:  # pragma: no cover - a bug if reached
        raise AssertionError("write to an absent namespace without creating it")

    def delete(self, key: bytes) -> bool:
        return False

    def keys(self) -> list[bytes]:
        return []

    def commit(self) -> None:
        return None

    def close(self) -> None:
        return None


EMPTY = Empty()


class DumbEngine(Engine):
    """``dbm.dumb``'s format (``.dat`` values, ``.dir`` text index), written crash-safely.

    Stock dumb overwrites values in place and rewrites the index by renaming it to
    ``.bak`` first, so a crash can lose data or the whole index.  Here a value is only
    ever written to space the committed index does not reference, and the index is
    written to a temporary file and ``os.replace``-d over ``.dir``: whatever instant the
    process dies, ``.dir`` is the old or the new index and every value it names is intact.
    """

    kind = "dbm.dumb"
    transactional = True

    def __init__(self, base: str, *, create: bool, fsync: bool, readonly: bool = False) -> None:
        self._dat = base + ".dat"
        self._dir = base + ".dir"
        self._bak = base + ".bak"
        self._tmp = base + ".dir.tmp"
        self._fsync = fsync
        self._free: list[list[int]] | None = None  # [start, size] extents, lazily computed
        self._sorted: list[bytes] | None = None  # the keys in order, until one comes or goes
        self._dirty = False
        self._mode: int | None = None  # permission bits of an existing index, kept on rewrite
        self._readonly = readonly  # then nothing is ever written, not even a recovered index
        create = create and not readonly
        flags = (os.O_RDONLY if readonly else os.O_RDWR) | getattr(os, "O_CLOEXEC", 0)
        flags |= os.O_CREAT if create else 0
        self._fd = os.open(self._dat, flags, 0o666)
        try:
            self.index, self._lines = self._load()
            if create and not os.path.exists(self._dir):
                self._dirty = True
                self.commit()
        except BaseException:
            os.close(self._fd)
            raise

    # -- index file ---------------------------------------------------------------------

    def _load(self) -> tuple[dict[bytes, tuple[int, int]], dict[bytes, str]]:
        """Read the index: ``{key: (pos, size)}`` and each key's line as written."""
        source = self._dir
        try:
            with open(self._dir, "rb") as f:
                raw = f.read()
                self._mode = os.fstat(f.fileno()).st_mode & 0o777
        except FileNotFoundError:
            # Stock dumb renames .dir to .bak before rewriting it: a crash in between
            # leaves only .bak.  Use it; the next write commits it as .dir again.
            try:
                with open(self._bak, "rb") as f:
                    raw = f.read()
            except FileNotFoundError:
                return {}, {}
            source = self._bak
            self._dirty = True
            log.warning("%s is missing; recovered the index from %s", self._dir, self._bak)
        text = raw.decode("latin-1")
        if text and not text.endswith("\n"):  # dumb ends every entry with a newline
            raise self._damaged(source, f"its last line ({len(text.splitlines())}) is cut short")
        index: dict[bytes, tuple[int, int]] = {}
        lines: dict[bytes, str] = {}
        end = os.fstat(self._fd).st_size
        for number, line in enumerate(text.split("\n"), 1):
            line = line.rstrip()
            if not line:
                continue
            try:
                key, where = _parse_index_line(line)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                what = f"line {number} is not a dbm.dumb index entry"
                raise self._damaged(source, what) from None
            pos, size = where
            if pos % _BLOCK or pos + size > end:
                what = f"line {number} points at bytes {pos}-{pos + size} of {self._dat}, " + (
                    f"which has only {end}" if pos + size > end else "not a 512-byte block"
                )
                raise self._damaged(source, what)
            index[key] = where
            lines[key] = line + "\n"  # a later line for the same key wins, as in dumb
        _check_disjoint(source, index)
        return index, lines

    def _damaged(self, source: str, what: str) -> StoreDamagedError:
        return StoreDamagedError(
            f"{source} is corrupt: {what} (damaged by a crash of a non-plugstore writer, or "
            f"the disk?).  Nothing was read from it: restore it from a backup, or repair that "
            f"line by hand (one 'key', (offset, size) per line; the values are in {self._dat})"
        )

    def refresh(self) -> bool:
        try:
            current = os.stat(self._dat)
        except FileNotFoundError:
            return False
        own = os.fstat(self._fd)
        if (current.st_ino, current.st_dev) != (own.st_ino, own.st_dev):
            return False  # the namespace was dropped and created again
        self._dirty, self._free, self._sorted = False, None, None
        self.index, self._lines = self._load()
        return True

    def commit(self) -> None:
        if not self._dirty or self._readonly:
            return
        text = "".join(self._lines.values())
        if self._fsync:
            os.fsync(self._fd)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self._tmp, flags, 0o666)
        try:
            try:
                if self._mode is not None:
                    with contextlib.suppress(OSError):
                        os.fchmod(fd, self._mode)
                _write_all(fd, text.encode("latin-1"))
                if self._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self._tmp, self._dir)
        except BaseException:
            # .dir is still the last committed index; a half-written copy would only
            # hold on to space a full disk needs back.
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            raise
        if self._fsync:
            dir_fd = os.open(os.path.dirname(self._dir) or ".", os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        self._dirty = False
        self._free = None  # superseded values became free space

    # -- values ---------------------------------------------------------------------------

    def _free_extents(self) -> list[list[int]]:
        """Space the committed index does not reference (block-aligned gaps)."""
        extents = sorted((pos, _align(size)) for pos, size in self.index.values() if size)
        free: list[list[int]] = []
        cursor = 0
        for pos, size in extents:
            gap_end = pos // _BLOCK * _BLOCK
            if gap_end > cursor:
                free.append([cursor, gap_end - cursor])
            cursor = max(cursor, _align(pos + size))
        end = _align(os.fstat(self._fd).st_size)
        if end > cursor:
            free.append([cursor, end - cursor])
        return free

    def _allocate(self, size: int) -> tuple[int, int]:
        """Return ``(offset, file size)`` for a new value; never overlaps a live value."""
        need = _align(size)
        if self._free is None:
            self._free = self._free_extents()
        for extent in self._free:
            if extent[1] >= need:
                start = extent[0]
                extent[0] += need
                extent[1] -= need
                return start, -1
        eof = os.fstat(self._fd).st_size
        return _align(eof), eof

    def get(self, key: bytes) -> bytes | None:
        where = self.index.get(key)
        if where is None:
            return None
        pos, size = where
        data = os.pread(self._fd, size, pos) if size else b""
        if len(data) != size:
            raise StoreDamagedError(
                f"{self._dat} is shorter than its index says (truncated or corrupt file): "
                "restore it from a backup"
            )
        return data

    def put(self, key: bytes, value: bytes) -> None:
        if self._readonly:
            raise _read_only(self._dat)
        if value:
            pos, eof = self._allocate(len(value))
            if eof >= 0:  # appending: pad with NULs up to the block boundary, like dumb
                _pwrite_all(self._fd, b"\x00" * (pos - eof) + value, eof)
            else:
                _pwrite_all(self._fd, value, pos)
        else:
            pos = 0
        if key not in self.index:
            self._sorted = None
        self.index[key] = (pos, len(value))
        self._lines[key] = f"{key.decode('latin-1')!r}, ({pos}, {len(value)})\n"
        self._dirty = True

    def delete(self, key: bytes) -> bool:
        if self._readonly:
            raise _read_only(self._dat)
        if self.index.pop(key, None) is None:
            return False
        self._sorted = None
        del self._lines[key]
        self._dirty = True
        return True

    def keys(self) -> list[bytes]:
        # Sorted (UTF-8 byte order is code point order) and kept until a key comes or
        # goes: repeated listings then cost no sort.  Callers never change it.
        if self._sorted is None:
            self._sorted = sorted(self.index)
        return self._sorted

    def count(self) -> int:
        return len(self.index)

    def close(self) -> None:
        os.close(self._fd)


def _parse_index_line(line: str) -> tuple[bytes, tuple[int, int]]:
    """Parse one ``.dir`` line, ``'key', (pos, size)``, as dumb writes it (``%r, %r``).

    Strict, like stock dumb (which ``literal_eval``-s the line): a line that is not
    exactly one string and two integers is refused, so that two entries run together
    by a lost newline never read as one bogus key.
    """
    head, sep, tail = line.rpartition(", (")
    if not sep or not tail.endswith(")"):
        raise ValueError("no (pos, size) pair")
    pos_text, comma, size_text = tail[:-1].partition(", ")
    if not comma or not pos_text.isdigit() or not size_text.isdigit():
        raise ValueError("no (pos, size) pair")  # (int() would take " 1", "+1", "1_0")
    pos, size = int(pos_text), int(size_text)
    quote = head[:1]
    body = head[1:-1]
    if len(head) >= 2 and quote in ("'", '"') and head[-1] == quote and "\\" not in body:
        # repr() of a string without escapes: the text between the quotes, which repr
        # never lets contain its own quote character
        if quote in body:
            raise ValueError("more than one string")
        key = body
    else:
        key = ast.literal_eval(head)
        if not isinstance(key, str):
            raise ValueError("key is not a string")
    return key.encode("latin-1"), (pos, size)


def _check_disjoint(source: str, index: dict[bytes, tuple[int, int]]) -> None:
    """Refuse an index whose values overlap: dumb never writes one (a damaged offset or
    size would otherwise read part of another value)."""
    cursor = 0
    for pos, size in sorted(where for where in index.values() if where[1]):
        if pos < cursor:
            raise StoreDamagedError(
                f"{source} is corrupt: two entries claim the same bytes of the data file "
                "(a damaged offset or size).  Nothing was read from it: restore it from a "
                "backup, or repair the line by hand"
            )
        cursor = pos + size


class SQLiteEngine(Engine):
    """``dbm.sqlite3``'s layout (Python 3.13+): table ``Dict(key BLOB, value BLOB)``.

    Implemented on :mod:`sqlite3` directly, so these files open on any Python and the
    connection can be shared between threads.  Every statement (or batch) commits.
    """

    kind = "dbm.sqlite3"
    transactional = True

    def __init__(self, path: str, *, create: bool, readonly: bool = False) -> None:
        try:
            target = path
            if readonly:  # SQLite refuses every write, and never creates the database
                target = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
            elif create:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
                os.close(fd)
            self._cx = sqlite3.connect(
                target, timeout=60, isolation_level=None, check_same_thread=False, uri=readonly
            )
            try:
                if not readonly:
                    with contextlib.suppress(sqlite3.OperationalError):
                        self._cx.execute("PRAGMA journal_mode = wal")
                    self._cx.execute(
                        "CREATE TABLE IF NOT EXISTS Dict "
                        "(key BLOB UNIQUE NOT NULL, value BLOB NOT NULL)"
                    )
            except BaseException:
                self._cx.close()
                raise
        except sqlite3.Error as exc:
            raise _sqlite_error(path, exc, "cannot open ") from None
        self._path = path
        self._identity = _identity(path)

    def refresh(self) -> bool:
        return _identity(self._path) == self._identity  # SQLite itself reads current data

    def _run(self, sql: str, args: tuple[Any, ...] = (), fetch: str = "") -> Any:
        """Run one statement; ``fetch``: ``"one"`` or ``"all"`` rows (else the row count).

        Rows are fetched here: SQLite reads most pages while stepping through them, so a
        damaged page fails the fetch, not the execute.
        """
        try:
            cursor = self._cx.execute(sql, args)
            if fetch == "one":
                return cursor.fetchone()
            if fetch == "all":
                return cursor.fetchall()
            return cursor.rowcount
        except sqlite3.Error as exc:
            raise _sqlite_error(self._path, exc) from None

    def get(self, key: bytes) -> bytes | None:
        row = self._run("SELECT value FROM Dict WHERE key = CAST(? AS BLOB)", (key,), "one")
        return None if row is None else bytes(row[0])

    def put(self, key: bytes, value: bytes) -> None:
        self._run(
            "REPLACE INTO Dict (key, value) VALUES (CAST(? AS BLOB), CAST(? AS BLOB))",
            (key, value),
        )

    def delete(self, key: bytes) -> bool:
        return int(self._run("DELETE FROM Dict WHERE key = CAST(? AS BLOB)", (key,))) > 0

    def keys(self) -> list[bytes]:
        rows = self._run("SELECT key FROM Dict ORDER BY key", (), "all")  # the key index
        return [k.encode("utf-8") if isinstance(k, str) else bytes(k) for (k,) in rows]

    def count(self) -> int:
        return int(self._run("SELECT count(key) FROM Dict", (), "one")[0])

    def begin(self) -> None:
        self._run("BEGIN IMMEDIATE")

    def commit(self) -> None:
        if self._cx.in_transaction:
            self._run("COMMIT")

    def rollback(self) -> None:
        if self._cx.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._cx.execute("ROLLBACK")

    def close(self) -> None:
        self._cx.close()


def _sqlite_error(path: str, exc: sqlite3.Error, doing: str = "") -> BackendUnavailableError:
    """The plugstore error for a ``dbm.sqlite3`` file's driver error."""
    text = str(exc)
    if is_damaged(exc):
        return StoreDamagedError(
            f"dbm.sqlite3 file {path} is damaged ({text}): stop the bot, keep a copy of the "
            "file, then restore it from a backup, or save what is still readable with "
            f"`plugstore dump` (or `sqlite3 {path} .recover`) into a new file"
        )
    return BackendUnavailableError(f"{doing}dbm.sqlite3 file {path}: {text}{advice(exc)}")


class StdlibEngine(Engine):
    """``dbm.gnu`` / ``dbm.ndbm`` through the standard modules (when this Python has them)."""

    def __init__(self, kind: str, path: str, *, create: bool, readonly: bool = False) -> None:
        self.kind = kind
        self._path = path
        self._readonly = readonly
        module = _import_flavour(kind, path)
        flag = "r" if readonly else "c" if create else "w"
        if kind == "dbm.gnu" and not readonly:
            flag += "u"  # no gdbm file lock: the .lock sidecar coordinates processes
        elif kind != "dbm.gnu":
            self.reopen_after_write = True  # ndbm has no sync(): close() flushes
        try:
            self._db: Any = module.open(path, flag, 0o666)
        except OSError as exc:
            hint = ""
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES) and readonly:
                hint = " (another process holds it open for writing: stop it, then retry)"
            raise BackendUnavailableError(f"cannot open {kind} file {path}: {exc}{hint}") from None

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def put(self, key: bytes, value: bytes) -> None:
        if self._readonly:
            raise _read_only(self._path)
        self._db[key] = value

    def delete(self, key: bytes) -> bool:
        if self._readonly:
            raise _read_only(self._path)
        try:
            del self._db[key]
        except KeyError:
            return False
        return True

    def keys(self) -> list[bytes]:
        return [bytes(k) for k in self._db.keys()]  # noqa: SIM118 - gdbm cannot iterate

    def commit(self) -> None:
        sync = getattr(self._db, "sync", None)
        if sync is not None:
            sync()

    def close(self) -> None:
        self._db.close()


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_dev


def available(kind: str) -> None:
    """Raise ``BackendUnavailableError`` unless this Python can write ``kind`` files."""
    if kind in ("dbm.dumb", "dbm.sqlite3"):
        return  # implemented here, on every Python
    try:
        importlib.import_module(kind)
    except ImportError:
        version = ".".join(map(str, sys.version_info[:3]))
        hint = _HINTS.get(kind, "use a Python that has it")
        raise BackendUnavailableError(
            f"this Python ({version}) has no {kind} module to write such files: {hint} "
            "(dbm.dumb and dbm.sqlite3 files can always be written)"
        ) from None


def _import_flavour(kind: str, path: str) -> Any:
    try:
        return importlib.import_module(kind)
    except ImportError:
        hint = _HINTS.get(kind, "use a Python that has it")
        version = ".".join(map(str, sys.version_info[:3]))
        readable = (
            " (plugstore can still read it without the module, read-only: e.g. "
            "`plugstore import-errbot` copies it into another store)"
            if kind == "dbm.gnu"
            else ""
        )
        raise BackendUnavailableError(
            f"{path} is a {kind} file, but this Python ({version}) has no {kind} module: "
            f"{hint}, or convert the file with a Python that has it{readable}"
        ) from None


#: The files a dbm database at ``path`` can consist of (``path`` + each of these).
_CANDIDATES = ("", ".dat", ".dir", ".pag", ".db", ".bak")


def file_exists(path: str) -> bool:
    """Whether ``path`` is a file; unlike ``os.path.isfile``, a path this process may not
    look at (in a directory it cannot enter...) raises instead of reading as absent."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def database_exists(path: str) -> bool:
    """Whether any dbm database's files exist at ``path``, without reading them: a file
    another process is still creating exists, though its flavour cannot be told yet."""
    try:
        return any(file_exists(path + suffix) for suffix in _CANDIDATES)
    except OSError as exc:
        raise os_failure(exc, path, "looking for") from None


def _dumb_mid_rewrite(path: str) -> bool:
    # stock dumb died between renaming .dir to .bak and rewriting it
    return file_exists(path + ".dat") and file_exists(path + ".bak")


def flavour_of(path: str) -> str | None:
    """The dbm flavour that wrote ``path`` (``None`` if there is no such database).

    A database whose files cannot be read raises ``BackendUnavailableError`` saying why
    (``dbm.whichdb`` alone would call it absent, and its namespace empty)."""
    try:
        return _flavour_of(path)
    except OSError as exc:
        if isinstance(exc, BackendUnavailableError):
            raise
        raise os_failure(exc, path, "reading") from None


def _flavour_of(path: str) -> str | None:
    kind = dbm.whichdb(path)
    if kind is None:
        if _dumb_mid_rewrite(path):
            return "dbm.dumb"
        if file_exists(path + ".dat") and file_exists(path + ".dir"):
            # whichdb takes a .dir that does not start with a quote (zeroed by a crash,
            # its first byte lost) for no dbm at all: it is a dumb file, and the strict
            # index load says it is damaged, rather than the namespace reading as empty.
            return "dbm.dumb"
        for suffix in _CANDIDATES:  # whichdb ignores the files it cannot open: say why
            if file_exists(path + suffix):
                with open(path + suffix, "rb"):
                    pass
        return None
    if kind == "":
        with open(path, "rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
        if head == _SQLITE_MAGIC:
            return "dbm.sqlite3"  # whichdb before Python 3.13 does not know it
        from .gdbmfile import is_gdbm

        if is_gdbm(head):
            return "dbm.gnu"  # whichdb knows neither GDBM 1.21's numsync magic nor other-endian
        raise BackendUnavailableError(f"{path} exists but is not a dbm file this Python knows")
    return kind


def default_flavour() -> str:
    """The flavour Python's ``dbm`` (and so Errbot) would create a new file with."""
    for name in getattr(dbm, "_names", ("dbm.gnu", "dbm.ndbm", "dbm.dumb")):
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        return str(name)
    return "dbm.dumb"


def _importable(kind: str) -> bool:
    try:
        importlib.import_module(kind)
    except ImportError:
        return False
    return True


def open_engine(
    kind: str, base: str, *, create: bool, fsync: bool, readonly: bool = False
) -> Engine:
    """Open ``base``, a ``kind`` file; ``readonly``: never create or write anything.

    A ``dbm.gnu`` file opens read-only even where this Python has no ``dbm.gnu`` module.
    """
    create = create and not readonly
    try:
        if kind == "dbm.dumb":
            return DumbEngine(base, create=create, fsync=fsync, readonly=readonly)
        if kind == "dbm.sqlite3":
            return SQLiteEngine(base, create=create, readonly=readonly)
        if kind == "dbm.gnu" and readonly and not _importable(kind):
            from .gdbmfile import GdbmFileEngine

            return GdbmFileEngine(base)
        if kind in ("dbm.gnu", "dbm.ndbm"):
            return StdlibEngine(kind, base, create=create, readonly=readonly)
    except BackendUnavailableError:
        raise  # an OSError too, but already says what is wrong
    except OSError as exc:
        raise os_failure(exc, base, f"opening {kind} file") from None
    raise BackendUnavailableError(f"{base} is a {kind} file, which plugstore cannot open")


__all__ = [
    "DATA_SUFFIXES",
    "EMPTY",
    "FLAVOURS",
    "SUFFIXES",
    "Engine",
    "available",
    "database_exists",
    "default_flavour",
    "file_exists",
    "flavour_of",
    "namespace_names",
    "open_engine",
    "os_failure",
]
