"""``sqlite:///PATH`` -- the embedded default: every namespace in one SQLite file.

* WAL journal, one table ``plugstore_kv (namespace, key, value, expires_at)`` keyed on
  ``(namespace, key)`` (``WITHOUT ROWID``: one B-tree write per set).  ``expires_at`` (a
  nullable REAL, epoch seconds) is a key's deadline.  It has no index: one cost 35% on
  every write with a deadline (a second B-tree page per commit), so ``purge`` scans the
  table instead.  A table written by a version without expiry gains the column when it
  is opened.
* Every write is its own committed transaction before the call returns, so it survives a
  ``kill -9`` of the process without relying on ``close()``.  With the default
  ``synchronous=normal`` a power loss can roll back the last few commits (WAL mode never
  corrupts the file); ``synchronous=full`` fsyncs every commit and survives that too,
  at a large cost in writes per second.
* Safe across threads (one connection per process writes, behind a lock) and processes
  (SQLite file locks, a busy timeout, and single-statement upserts for ``incr``/``cas`` so
  that no read-modify-write ever spans two statements).  Plain reads (``SELECT``) run on
  a small pool of read-only connections beside it, without the lock: SQLite releases
  the GIL while it reads and a WAL reader never waits for the writer, so threads read in
  parallel (100 async tasks on 10 threads read 0.7x of raw sqlite3 on a connection per
  thread with every read queued on the one connection).  Each read is its own snapshot
  of what is committed, so it never sees part of a batch.  A forked child opens its own
  connections instead of reusing its parent's.
* Every driver error reaches the caller as a plugstore error: a damaged file (a corrupt
  page, "file is not a database") as ``StoreDamagedError`` saying how to recover, a full
  disk, an I/O error or a lock held too long as ``BackendUnavailableError``.

Options: ``timeout`` (seconds to wait for another process's write lock, default 30),
``synchronous`` (``normal`` or ``full``), ``table`` (default ``plugstore_kv``),
``read_connections`` (read-only connections beside the writer, default 4; 0: every read
on the writer's connection).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .. import forks
from ..backend import Backend, Options
from ..errors import BackendUnavailableError, ConfigurationError, StoreDamagedError
from ..url import StoreURL
from .sqltable import LIVE, TableBucket, not_an_integer, prefix_range, purge_table

if TYPE_CHECKING:
    from ..nearcache import NearCache

__all__ = ["SQLiteBackend", "SQLiteBucket", "advice", "is_damaged", "prefix_range"]

R = TypeVar("R")

_IN_CHUNK = 500  # stays under SQLite's bound-parameter limit
_TABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")


class SQLiteBucket(TableBucket):
    """One namespace: the rows of ``plugstore_kv`` with this namespace."""

    placeholder = "?"
    # octet_length() arrived in SQLite 3.43; a text cast to a blob is its UTF-8 bytes.
    size_sql = "length(CAST({k} AS BLOB)) + length(value)"
    backend: SQLiteBackend

    def __init__(self, backend: SQLiteBackend, namespace: str) -> None:
        super().__init__(backend, namespace)
        self._incr_sql = self._q["incr"]

    def incr(self, key: str, delta: int) -> int:
        # One statement: insert `delta`, or add to a canonical integer; RETURNING gives the
        # result.  A non-integer or overflowing value fails the WHERE and returns no row.
        params = (self.namespace, key, delta, self.backend.clock())
        row = self.backend.one(self._incr_sql, params)
        if row is None:
            raise not_an_integer(key)
        return int(row[0])  # the WHERE clause kept it inside int64

    def _rows(self, keys: Sequence[str]) -> list[tuple[str, bytes, float | None]]:
        rows: list[tuple[str, bytes, float | None]] = []
        now = self.backend.clock()
        for start in range(0, len(keys), _IN_CHUNK):
            chunk = keys[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            query = self.backend.compose(
                f"SELECT key, value, expires_at FROM {{t}} WHERE namespace = ? "
                f"AND key IN ({marks}) AND {self._live}"
            )
            rows += self.backend.all(query, (self.namespace, *chunk, now))
        return rows


class SQLiteBackend(Backend):
    """All namespaces in one SQLite file (WAL), safe across threads and processes."""

    name = "sqlite"
    durable = True
    multiprocess = True
    expiry = True
    atomic_batches = True
    isolated_batches = True

    def __init__(self, url: StoreURL, options: Options) -> None:
        super().__init__(url, options)
        path = options.take("path", url.file_path, str)
        if not path or path == ":memory:":
            raise ConfigurationError(
                "the sqlite backend needs a file path: sqlite:///relative.db or "
                "sqlite:////absolute/path.db (use memory:// for a throwaway store)"
            )
        self.path = Path(os.path.expanduser(path))
        self.timeout = options.take("timeout", 30.0)
        sync = options.take("synchronous", "normal").lower()
        if sync not in ("normal", "full"):
            raise ConfigurationError("option 'synchronous' must be 'normal' or 'full'")
        self.synchronous = sync
        self.table = options.take("table", "plugstore_kv")
        if not _TABLE_RE.match(self.table):
            raise ConfigurationError(f"invalid table name {self.table!r}")
        self.read_connections = options.take("read_connections", 4)
        if type(self.read_connections) is not int or self.read_connections < 0:
            raise ConfigurationError("option 'read_connections' must be a whole number >= 0")
        self.queries = self._statements(self.table)
        self._rendered: dict[str, str] = {}
        self._conn: sqlite3.Connection | None = None
        self._fork_gen = forks.generation
        self._lock = threading.RLock()
        # Read-only connections: idle ones, and how many exist (idle or reading).
        self._readers: list[sqlite3.Connection] = []
        self._reader_count = 0
        self._readers_lock = threading.Lock()

    @staticmethod
    def _statements(t: str) -> dict[str, str]:
        live = LIVE.format(p="?")
        # In an upsert's DO UPDATE, bare column names are the existing row's.
        expired = "expires_at <= ?4"
        return {
            "get": f"SELECT value, expires_at FROM {t} WHERE namespace = ? AND key = ?",
            "contains": f"SELECT expires_at FROM {t} WHERE namespace = ? AND key = ?",
            "set": (
                f"INSERT INTO {t} (namespace, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (namespace, key) DO UPDATE "
                "SET value = excluded.value, expires_at = NULL"
            ),
            "set_until": (
                f"INSERT INTO {t} (namespace, key, value, expires_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (namespace, key) DO UPDATE "
                "SET value = excluded.value, expires_at = excluded.expires_at"
            ),
            "remove": f"DELETE FROM {t} WHERE namespace = ? AND key = ? AND {live}",
            # Inserts, or takes the place of an expired row; a live row stays as it was.
            "insert_absent": (
                f"INSERT INTO {t} (namespace, key, value) VALUES (?1, ?2, ?3) "
                "ON CONFLICT (namespace, key) DO UPDATE "
                f"SET value = excluded.value, expires_at = NULL WHERE {expired}"
            ),
            "remove_if": (
                f"DELETE FROM {t} WHERE namespace = ? AND key = ? AND value = ? AND {live}"
            ),
            "replace_if": (
                f"UPDATE {t} SET value = ? WHERE namespace = ? AND key = ? AND value = ? AND {live}"
            ),
            # ?3 is the delta, ?4 now.  An expired row starts again from the delta, without
            # a deadline; a live one must hold canonical decimal text whose sum is still
            # an INTEGER (SQLite turns a sum that overflows int64 into a REAL), and keeps
            # its deadline.
            "incr": (
                f"INSERT INTO {t} (namespace, key, value) "
                "VALUES (?1, ?2, CAST(CAST(?3 AS TEXT) AS BLOB)) "
                "ON CONFLICT (namespace, key) DO UPDATE SET "
                f"value = CASE WHEN {expired} THEN excluded.value "
                "ELSE CAST(CAST(CAST(value AS INTEGER) + ?3 AS TEXT) AS BLOB) END, "
                f"expires_at = CASE WHEN {expired} THEN NULL ELSE expires_at END "
                f"WHERE {expired} OR (CAST(value AS TEXT) = CAST(CAST(value AS INTEGER) AS TEXT) "
                "AND typeof(CAST(value AS INTEGER) + ?3) = 'integer') "
                "RETURNING CAST(value AS TEXT)"
            ),
            # As insert_absent, with the new row's deadline (or none).
            "add": (
                f"INSERT INTO {t} (namespace, key, value, expires_at) "
                "VALUES (:ns, :key, :v, :deadline) ON CONFLICT (namespace, key) DO UPDATE "
                "SET value = excluded.value, expires_at = excluded.expires_at "
                "WHERE expires_at <= :now"
            ),
            # SQLite counts a row its UPDATE matched as changed, even to the same value.
            "expire": (
                f"UPDATE {t} SET expires_at = :deadline WHERE namespace = :ns AND key = :key "
                f"AND {LIVE.format(p=':now')}"
            ),
            "persist": (
                f"UPDATE {t} SET expires_at = NULL WHERE namespace = :ns AND key = :key "
                f"AND {LIVE.format(p=':now')}"
            ),
            # A scan of the table (no index on expires_at: see the module docs).
            "expired_namespaces": (
                f"SELECT DISTINCT namespace FROM {t} WHERE expires_at <= ? ORDER BY namespace"
            ),
        }

    def compose(self, text: str) -> str:
        """``text`` with ``{t}`` replaced by the (validated) table name; cached."""
        rendered = self._rendered.get(text)
        if rendered is None:
            rendered = self._rendered[text] = text.replace("{t}", self.table)
        return rendered

    # -- connection management -----------------------------------------------------------

    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendUnavailableError(f"cannot create {self.path.parent}: {exc}") from None
        with self._lock:
            self._fork_gen = forks.generation
            self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise BackendUnavailableError(f"cannot open SQLite file {self.path}: {exc}") from None
        # Switching a new file to WAL takes an exclusive lock and SQLite does not run the
        # busy handler for it: processes opening a fresh file together get "database is
        # locked" at once.  So the set-up is retried until the timeout like any write.
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {self.table} ("
                    "namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, "
                    "expires_at REAL, PRIMARY KEY (namespace, key)) WITHOUT ROWID"
                )
                self._add_expiry(conn)
                return conn
            except sqlite3.OperationalError as exc:
                if _is_busy(exc) and time.monotonic() < deadline:
                    time.sleep(random.uniform(0.005, 0.05))
                    continue
                conn.close()
                raise self._unavailable(exc) from None
            except sqlite3.Error as exc:
                conn.close()
                raise self._unavailable(exc) from None

    def _add_expiry(self, conn: sqlite3.Connection) -> None:
        """Give a table made before expiry existed its ``expires_at`` column."""
        t = self.table
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({t})")}
        if "expires_at" not in columns:
            try:
                conn.execute(f"ALTER TABLE {t} ADD COLUMN expires_at REAL")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):  # another process just added it
                    raise

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and self._fork_gen == forks.generation:
                conn.close()
        with self._readers_lock:
            idle, self._readers = self._readers, []
            self._reader_count -= len(idle)
        for reader in idle:  # those reading now are closed when they are given back
            reader.close()

    def near_cache_coherence(self, cache: NearCache) -> DataVersion:
        return DataVersion(self, cache)

    def data_version(self) -> int:
        """``PRAGMA data_version`` of the writer's connection: it changes when any other
        connection (another process, another store, this store's readers never write)
        commits to the file, and not for this connection's own commits."""
        with self._locked():
            row = self._connection().execute("PRAGMA data_version").fetchone()
        return int(row[0])

    # -- read connections ------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection | None:
        """An idle read connection, or a new one while fewer than ``read_connections``
        exist; ``None``: read on the writer's connection (all busy, or closed)."""
        with self._readers_lock:
            if self._readers:
                return self._readers.pop()
            if self._reader_count >= self.read_connections or self._conn is None:
                return None
            self._reader_count += 1
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error:
            with self._readers_lock:
                self._reader_count -= 1
            return None  # the writer's connection reports what is wrong, if anything
        return conn

    def _give_back(self, conn: sqlite3.Connection) -> None:
        with self._readers_lock:
            if self._conn is not None:
                self._readers.append(conn)
                return
            self._reader_count -= 1
        conn.close()  # the store was closed meanwhile

    def _locked(self) -> threading.RLock:
        """The connection lock, after making sure this process owns the connection.

        Checked before taking the lock: a child forked while another thread of the parent
        held it would otherwise wait forever on a lock nobody in the child can release.
        """
        if self._fork_gen != forks.generation:
            self._lock = threading.RLock()
            self._fork_gen = forks.generation
            if self._conn is not None:  # never close, reuse or finalise the parent's
                forks.keep_inherited(self._conn)
                self._conn = self._connect()
            self._readers_lock = threading.Lock()
            for reader in self._readers:
                forks.keep_inherited(reader)
            self._readers, self._reader_count = [], 0
        return self._lock

    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            raise BackendUnavailableError("the SQLite store is closed")
        return conn

    def _unavailable(self, exc: sqlite3.Error) -> BackendUnavailableError:
        """The plugstore error for a driver error: damaged file, locked, or unusable."""
        text = str(exc)
        if is_damaged(exc):
            return StoreDamagedError(
                f"SQLite file {self.path} is damaged ({text}): stop the bot, keep a copy of "
                "the file, then restore it from a backup, or save what is still readable "
                f"with `plugstore dump` (or `sqlite3 {self.path} .recover`) into a new file"
            )
        if _is_busy(exc):
            text = f"database is locked by another connection for more than {self.timeout}s"
        return BackendUnavailableError(f"SQLite {self.path}: {text}{advice(exc)}")

    # -- statement helpers (one statement each) --------------------------------------------

    # ``retry`` is accepted for the shared TableBucket and ignored: a SQLite file has no
    # connection to lose, and a lock held too long is reported, not waited out twice.

    def one(self, sql: str, params: Sequence[Any], retry: bool = False) -> Any:
        return self._query(sql, params, sqlite3.Cursor.fetchone)

    def all(self, sql: str, params: Sequence[Any], retry: bool = False) -> list[Any]:
        rows: list[Any] = self._query(sql, params, sqlite3.Cursor.fetchall)
        return rows

    def _query(self, sql: str, params: Sequence[Any], fetch: Callable[[sqlite3.Cursor], R]) -> R:
        """``fetch`` of ``sql``'s cursor: a plain read (a SELECT; never an upsert ...
        RETURNING) on a read connection without the writer's lock, anything else (or a
        read when every read connection is busy) on the writer's connection, locked."""
        if sql[0] == "S" and self._fork_gen == forks.generation:
            reader = self._reader()
            if reader is not None:
                try:
                    return fetch(reader.execute(sql, params))
                except sqlite3.Error as exc:
                    raise self._unavailable(exc) from None
                finally:
                    self._give_back(reader)
        with self._lock if self._fork_gen == forks.generation else self._locked():
            try:
                return fetch(self._connection().execute(sql, params))
            except sqlite3.Error as exc:
                raise self._unavailable(exc) from None

    def run(self, sql: str, params: Sequence[Any], retry: bool = False) -> int:
        with self._lock if self._fork_gen == forks.generation else self._locked():
            try:
                return self._connection().execute(sql, params).rowcount
            except sqlite3.Error as exc:
                raise self._unavailable(exc) from None

    def run_batch(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run ``sql`` for every row in one transaction: all rows land, or none."""
        self.run_transaction(((sql, rows),))

    def run_transaction(self, steps: Sequence[tuple[str, Sequence[Sequence[Any]]]]) -> None:
        """Run each ``(sql, rows)`` step for its rows, all in one write transaction."""
        with self._locked():
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                for sql, rows in steps:
                    conn.executemany(sql, rows)
                conn.execute("COMMIT")
            except BaseException as exc:
                # Whatever failed (a row, the COMMIT itself on a full disk), no transaction
                # may stay open; SQLite may already have rolled it back, and an error
                # from ROLLBACK must not hide the first one.
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._unavailable(exc) from None
                raise

    # -- backend API ---------------------------------------------------------------------

    def bucket(self, namespace: str) -> SQLiteBucket:
        return SQLiteBucket(self, namespace)

    def namespaces(self) -> list[str]:
        # A skip-scan over the primary key: one index probe per namespace, not per row
        # (plus the expired rows it steps over: a namespace holding only those is empty).
        t, live = self.table, LIVE.format(p="?1")
        rows = self.all(
            f"WITH RECURSIVE ns(n) AS (SELECT (SELECT namespace FROM {t} WHERE {live} "
            "ORDER BY namespace LIMIT 1) UNION ALL "
            f"SELECT (SELECT namespace FROM {t} WHERE namespace > n AND {live} "
            "ORDER BY namespace LIMIT 1) FROM ns "
            "WHERE n IS NOT NULL) SELECT n FROM ns WHERE n IS NOT NULL",
            (self.clock(),),
        )
        return [r[0] for r in rows]

    def purge(self, namespace: str | None = None) -> dict[str, int]:
        return purge_table(self, namespace)

    def identity(self) -> tuple[object, ...]:
        return (self.name, str(self.path.resolve()), self.table)

    def info(self) -> dict[str, str]:
        mode = self.one("PRAGMA journal_mode", ())
        return {
            **super().info(),
            "path": str(self.path),
            "sqlite": sqlite3.sqlite_version,
            "journal_mode": str(mode[0]) if mode else "?",
            "synchronous": self.synchronous,
        }


#: SQLITE_CORRUPT and SQLITE_NOTADB: the file's pages are not a sound database.
_DAMAGED_CODES = (11, 26)


def is_damaged(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the file is damaged (corrupt page, not a database at all)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in _DAMAGED_CODES  # extended codes keep the primary in the low byte
    text = str(exc)
    return "malformed" in text or "not a database" in text


#: What to do about the engine's failures that are the system's, by primary result code.
_ADVICE = {
    13: "the disk is full (or the file reached a size limit): free some space, then retry",
    10: "an input/output error: check the disk's free space, size limits (ulimit -f) and "
    "health (e.g. dmesg), and the file's permissions",
    8: "the file is read-only: let the user running the bot write it and its directory",
    14: "the file cannot be opened: check the path and its permissions",
}


def advice(exc: sqlite3.Error) -> str:
    """``"; what to do"`` for a SQLITE_FULL, IOERR, READONLY or CANTOPEN error, else ``""``."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is None:
        text = str(exc)
        code = 13 if "is full" in text else 10 if "I/O error" in text else None
    hint = _ADVICE.get(code & 0xFF) if code is not None else None
    return f"; {hint}" if hint else ""


def _is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` is SQLITE_BUSY/SQLITE_LOCKED: another connection holds a lock."""
    text = str(exc)
    return "locked" in text or "busy" in text


class DataVersion:
    """A near cache's coherence on SQLite: before each cached read, ``PRAGMA
    data_version`` (a few microseconds, no I/O); if any other connection committed
    since the last look, the whole cache is dropped, since SQLite cannot say what
    changed.  This store's own writes drop only what they touched (they are the
    writer connection's own commits)."""

    description = "PRAGMA data_version before every cached read (another commit drops it all)"
    immediate = True

    def __init__(self, backend: SQLiteBackend, cache: NearCache) -> None:
        self._backend = backend
        self._cache = cache
        self._seen = backend.data_version()

    def check(self) -> bool:
        try:
            version = self._backend.data_version()
        except (sqlite3.Error, BackendUnavailableError):
            return False  # the read that follows goes to the file and reports the error
        if version != self._seen:
            self._cache.clear()
            self._seen = version
        return True

    def close(self) -> None:
        pass
