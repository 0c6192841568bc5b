"""``sqlite:///PATH`` -- the embedded default: every namespace in one SQLite file.

* WAL journal, one table ``plugstore_kv (namespace, key, value)`` keyed on
  ``(namespace, key)`` (``WITHOUT ROWID``: one B-tree write per set).
* Every write is its own committed transaction before the call returns, so it survives a
  ``kill -9`` of the process without relying on ``close()``.  With the default
  ``synchronous=normal`` a power loss can roll back the last few commits (WAL mode never
  corrupts the file); ``synchronous=full`` fsyncs every commit and survives that too,
  at a large cost in writes per second.
* Safe across threads (one connection per process behind a lock) and processes (SQLite
  file locks, a busy timeout, and single-statement upserts for ``incr``/``cas`` so that
  no read-modify-write ever spans two statements).  A forked child opens its own
  connection instead of reusing its parent's.

Options: ``timeout`` (seconds to wait for another process's write lock, default 30),
``synchronous`` (``normal`` or ``full``), ``table`` (default ``plugstore_kv``).
"""

from __future__ import annotations

import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import forks
from ..backend import Backend, Options
from ..errors import BackendUnavailableError, ConfigurationError
from ..url import StoreURL
from .sqltable import TableBucket, not_an_integer, prefix_range

__all__ = ["SQLiteBackend", "SQLiteBucket", "prefix_range"]

_IN_CHUNK = 500  # stays under SQLite's bound-parameter limit
_TABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")


class SQLiteBucket(TableBucket):
    """One namespace: the rows of ``plugstore_kv`` with this namespace."""

    placeholder = "?"
    backend: SQLiteBackend

    def __init__(self, backend: SQLiteBackend, namespace: str) -> None:
        super().__init__(backend, namespace)
        self._incr_sql = self._q["incr"]

    def incr(self, key: str, delta: int) -> int:
        # One statement: insert `delta`, or add to a canonical integer; RETURNING gives the
        # result.  A non-integer or overflowing value fails the WHERE and returns no row.
        row = self.backend.one(self._incr_sql, (self.namespace, key, delta))
        if row is None:
            raise not_an_integer(key)
        return int(row[0])  # the WHERE clause kept it inside int64

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for start in range(0, len(keys), _IN_CHUNK):
            chunk = keys[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            query = self.backend.compose(
                f"SELECT key, value FROM {{t}} WHERE namespace = ? AND key IN ({marks})"
            )
            found.update(self.backend.all(query, (self.namespace, *chunk)))
        return found


class SQLiteBackend(Backend):
    """All namespaces in one SQLite file (WAL), safe across threads and processes."""

    name = "sqlite"
    durable = True
    multiprocess = True

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
        self.queries = self._statements(self.table)
        self._rendered: dict[str, str] = {}
        self._conn: sqlite3.Connection | None = None
        self._fork_gen = forks.generation
        self._lock = threading.RLock()

    @staticmethod
    def _statements(t: str) -> dict[str, str]:
        return {
            "get": f"SELECT value FROM {t} WHERE namespace = ? AND key = ?",
            "contains": f"SELECT 1 FROM {t} WHERE namespace = ? AND key = ?",
            "set": (
                f"INSERT INTO {t} (namespace, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value"
            ),
            "remove": f"DELETE FROM {t} WHERE namespace = ? AND key = ?",
            "insert_absent": (
                f"INSERT INTO {t} (namespace, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (namespace, key) DO NOTHING"
            ),
            "remove_if": f"DELETE FROM {t} WHERE namespace = ? AND key = ? AND value = ?",
            "replace_if": (
                f"UPDATE {t} SET value = ? WHERE namespace = ? AND key = ? AND value = ?"
            ),
            # ?3 is the delta.  The WHERE admits only canonical decimal text whose sum is
            # still an INTEGER (SQLite turns a sum that overflows int64 into a REAL).
            "incr": (
                f"INSERT INTO {t} (namespace, key, value) "
                "VALUES (?1, ?2, CAST(CAST(?3 AS TEXT) AS BLOB)) "
                "ON CONFLICT (namespace, key) DO UPDATE "
                "SET value = CAST(CAST(CAST(value AS INTEGER) + ?3 AS TEXT) AS BLOB) "
                "WHERE CAST(value AS TEXT) = CAST(CAST(value AS INTEGER) AS TEXT) "
                "AND typeof(CAST(value AS INTEGER) + ?3) = 'integer' "
                "RETURNING CAST(value AS TEXT)"
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
                    "PRIMARY KEY (namespace, key)) WITHOUT ROWID"
                )
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

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and self._fork_gen == forks.generation:
                conn.close()

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
        return self._lock

    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            raise BackendUnavailableError("the SQLite store is closed")
        return conn

    def _unavailable(self, exc: sqlite3.Error) -> BackendUnavailableError:
        text = str(exc)
        if _is_busy(exc):
            text = f"database is locked by another connection for more than {self.timeout}s"
        return BackendUnavailableError(f"SQLite {self.path}: {text}")

    # -- statement helpers (each holds the lock for one statement) --------------------------

    # ``retry`` is accepted for the shared TableBucket and ignored: a SQLite file has no
    # connection to lose, and a lock held too long is reported, not waited out twice.

    def one(self, sql: str, params: Sequence[Any], *, retry: bool = False) -> Any:
        with self._lock if self._fork_gen == forks.generation else self._locked():
            try:
                return self._connection().execute(sql, params).fetchone()
            except sqlite3.OperationalError as exc:
                raise self._unavailable(exc) from None

    def all(self, sql: str, params: Sequence[Any], *, retry: bool = False) -> list[Any]:
        with self._locked():
            try:
                return self._connection().execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                raise self._unavailable(exc) from None

    def run(self, sql: str, params: Sequence[Any], *, retry: bool = False) -> int:
        with self._lock if self._fork_gen == forks.generation else self._locked():
            try:
                return self._connection().execute(sql, params).rowcount
            except sqlite3.OperationalError as exc:
                raise self._unavailable(exc) from None

    def run_batch(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run ``sql`` for every row in one transaction: all rows land, or none."""
        with self._locked():
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(sql, rows)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                raise self._unavailable(exc) from None

    # -- backend API ---------------------------------------------------------------------

    def bucket(self, namespace: str) -> SQLiteBucket:
        return SQLiteBucket(self, namespace)

    def namespaces(self) -> list[str]:
        # A skip-scan over the primary key: one index probe per namespace, not per row.
        t = self.table
        rows = self.all(
            f"WITH RECURSIVE ns(n) AS (SELECT min(namespace) FROM {t} UNION ALL "
            f"SELECT (SELECT min(namespace) FROM {t} WHERE namespace > n) FROM ns "
            "WHERE n IS NOT NULL) SELECT n FROM ns WHERE n IS NOT NULL",
            (),
        )
        return [r[0] for r in rows]

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


def _is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` is SQLITE_BUSY/SQLITE_LOCKED: another connection holds a lock."""
    text = str(exc)
    return "locked" in text or "busy" in text
