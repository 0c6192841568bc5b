"""``mysql://user:password@host:port/database`` (or ``mariadb://``) -- through PyMySQL.

* **Layout**: one InnoDB table for every namespace (default ``plugstore_kv``), primary
  key ``(namespace, key)``, ``value LONGBLOB``, a ``version`` counter bumped by every
  write, and ``expires_at DOUBLE`` (a key's deadline, epoch seconds; ``NULL`` for none)
  with an index for ``purge`` (MySQL has no partial indexes).  ``key`` is
  ``VARBINARY(1024)`` holding the key's UTF-8 bytes: a 1,024-byte key as ``utf8mb4``
  text would need 4,096 index bytes, past InnoDB's 3,072-byte limit, and binary order is
  code point order, as on every other backend.  Created on first use; no DDL per
  namespace.  A table made before expiry existed gains the column and index when opened.
* **Atomic operations** are single statements: ``incr`` is an upsert that validates the
  stored text and the 64-bit range in SQL and hands the result back through
  ``LAST_INSERT_ID(expr)`` in the same round trip (MySQL has no ``RETURNING``);
  compare-and-set is a conditional ``UPDATE``/``DELETE``/insert.  A statement chosen as a
  deadlock victim was rolled back whole, so it is run again.
* **Durability**: autocommit; every write is committed before the call returns.
* **Connections**: a small bounded pool of PyMySQL connections (:mod:`.connpool`,
  thread-safe); a forked child builds its own pool and never touches its parent's
  sockets.  Statements run on the driver's cursor directly.  Measured here per ``get``:
  SQLAlchemy Core's ``execute`` ran at 0.43x raw PyMySQL, SQLAlchemy's ``QueuePool``
  alone at 0.80x, this pool at about 0.9x.  The connections are PyMySQL's, parsing each
  distinct result-column description once (:mod:`.mysqlconn`): PyMySQL's own parse of a
  ``get``'s two descriptions was a quarter of its client time.  When every connection
  stays in use for ``connect_timeout``, an operation raises
  :class:`~plugstore.errors.PoolExhaustedError`.
* **Locks**: ``GET_LOCK`` sessions live on connections of a second pool (``lock_pool_max``),
  never the one statements use: a holder and the thread waiting behind it each keep
  their session for the whole hold or wait, and with one pool ``pool_max`` of them
  would leave the holder no connection for its own reads and writes.
* **Limits**: PyMySQL sends values as escaped literals (up to twice their size), so the
  largest value is a little under half the server's ``max_allowed_packet`` (16 MiB by
  default: values up to ~8 MiB).  Raise ``max_allowed_packet`` for values up to 16 MiB.

Options (query string or keywords): ``table`` (default ``plugstore_kv``),
``connect_timeout`` (seconds, default 5), ``read_timeout`` (seconds, default none),
``retry_timeout`` (seconds reads and upserts keep retrying after a lost connection,
default 30), ``pool_max`` (default 10), ``lock_pool_max`` (connections for lock
sessions, default 10), ``password``, ``unix_socket``, and TLS:
``ssl_ca``, ``ssl_cert``, ``ssl_key``, ``ssl_verify_cert``, ``ssl_verify_identity``,
``ssl_disabled``.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pymysql

from .. import forks
from ..backend import Backend, Backoff, Options
from ..errors import BackendUnavailableError, ConfigurationError, PoolExhaustedError
from ..keys import INT64_MAX, INT64_MIN
from ..locks import HeldLock, lock_digest
from ..url import StoreURL
from . import mysqlconn
from .connpool import ConnectionPool, PoolExhausted
from .liveness import has_news, watch
from .sessionlock import SessionLock, end_sessions
from .sqltable import LIVE, TableBucket, not_an_integer, purge_table

T = TypeVar("T")

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
#: Error numbers meaning the connection broke under a statement: server gone or lost,
#: shutting down, connection killed, disconnected for inactivity.
_LOST = frozenset({2006, 2013, 2055, 1053, 1927, 4031})
#: Connecting failed in a way that waiting may fix: refused (restarting), too many
#: connections, lost during the handshake, shutting down.
_TRANSIENT = frozenset({2002, 2003, 2013, 1040, 1053})
#: The statement was rolled back whole (autocommit), so running it again is safe.
_ROLLED_BACK = frozenset({1213, 1205})  # deadlock victim, lock wait timeout
_DEADLOCK_ATTEMPTS = 20
#: Keys per ``IN (...)`` list in ``get_many``.
_IN_CHUNK = 1000
_UINT64 = 1 << 64
#: Errors adding what another process added first: duplicate column, duplicate key name.
_ALREADY_THERE = frozenset({1060, 1061})
_PRIVILEGES = (
    "grant the user SELECT, INSERT, UPDATE, DELETE on the table (and CREATE and ALTER "
    "to let plugstore create or upgrade it), or point the URL at a user who has them"
)
#: What to do about the errors a server gives for a statement it will not run.
_REFUSAL_HINTS = {
    1142: _PRIVILEGES,  # command denied for a table
    1143: _PRIVILEGES,  # column denied
    1044: _PRIVILEGES,  # access denied to the database
    1045: "check the user and password in the URL (and the host the server lets it in from)",
    1290: "the server runs with --read-only (a replica?): point the URL at the primary",
    1836: "the server runs with --read-only (a replica?): point the URL at the primary",
    1021: "the server's disk is full: free space on it",
    1114: "the table is full (the server's disk, or a table size limit): free space",
}


def _detail(exc: BaseException) -> str:
    """The first line of the server's message (PyMySQL's name host and port, never the
    password)."""
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _errno(exc: BaseException) -> int:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else 0


def _connection_lost(exc: BaseException) -> bool:
    """Whether ``exc``, raised by a statement, means its connection broke."""
    if isinstance(exc, pymysql.err.InterfaceError | OSError):
        return True
    return isinstance(exc, pymysql.err.OperationalError) and _errno(exc) in _LOST


def _closed_by_server(conn: Any) -> bool:
    """Whether the server closed this idle pooled connection (see :mod:`.liveness`)."""
    poller = getattr(conn, "_plugstore_poller", None)
    if poller is None:
        sock = getattr(conn, "_sock", None)  # None once PyMySQL saw the connection end
        if sock is None:
            return True
        poller = conn._plugstore_poller = watch(sock.fileno())
    elif conn._sock is None:
        return True
    return has_news(poller)


class MySQLBucket(TableBucket):
    """One namespace: the rows of the store's table with this namespace."""

    placeholder = "%s"
    kcol = "`key`"
    binary_keys = True
    backend: MySQLBackend

    def incr(self, key: str, delta: int) -> int:
        params = {
            "ns": self.namespace,
            "key": key,
            "v": str(delta).encode(),
            "d": delta,
            "now": self.backend.clock(),
        }
        affected, result = self.backend.upsert_returning_id(self._q["incr"], params)
        if affected == 1:  # inserted: the value is the delta itself
            return delta
        if affected == 0:  # the row was left unchanged: not a counter, or out of range
            raise not_an_integer(key)
        # LAST_INSERT_ID is unsigned on the wire: map it back to int64.
        return result - _UINT64 if result > INT64_MAX else result

    def cas(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        now = self.backend.clock()
        if expected is None and new is not None:
            named = {"ns": self.namespace, "key": key, "v": new, "now": now}
            return self.backend.run(self._q["insert_absent"], named) > 0
        if expected is None or new is None:
            return super().cas(key, expected, new)
        # Sending both values could take twice max_value_size escaped, past the packet
        # limit; the expected one travels as its length and SHA-256 instead.
        digest = hashlib.sha256(expected).hexdigest()
        params = (new, self.namespace, key, len(expected), digest, now)
        return self.backend.run(self._q["replace_if_digest"], params) > 0

    def lock(self, key: str, timeout: float | None, lease: float) -> HeldLock | None:
        """``GET_LOCK`` on a pooled connection, freed when that session ends (``lease``
        is not needed: a dead holder's connection closes)."""
        return self.backend.named_lock(self.namespace, key, timeout)

    def _rows(self, keys: Sequence[str]) -> list[tuple[bytes, bytes, float | None]]:
        rows: list[tuple[bytes, bytes, float | None]] = []
        now = self.backend.clock()
        for start in range(0, len(keys), _IN_CHUNK):
            chunk = tuple(keys[start : start + _IN_CHUNK])
            rows += self.backend.all(self._q["get_many"], (self.namespace, chunk, now))
        return rows


class _NamedLock(SessionLock):
    """A ``GET_LOCK`` held by a session of the lock pool until release (or until the
    store closes)."""

    def __init__(self, held: set[SessionLock], pool: ConnectionPool, conn: Any, name: str) -> None:
        super().__init__(held, pool, conn)
        self._name = name

    def _release(self) -> bool:
        try:
            with self._conn.cursor() as cur:
                cur.execute("SELECT RELEASE_LOCK(%s)", (self._name,))
                row = cur.fetchone()
        except pymysql.err.MySQLError:
            self._pool.discard(self._conn)
            return False  # the session ended, and the server released the lock with it
        except BaseException:
            # Interrupted mid-reply: the session's state is unknown, so it goes (and the
            # server frees the lock with it); its pool slot is never lost.
            self._pool.discard(self._conn)
            raise
        self._pool.release(self._conn)
        return bool(row and row[0] == 1)


class MySQLBackend(Backend):
    """One MariaDB/MySQL table for every namespace; pooled, thread- and fork-safe."""

    name = "mysql"
    default_port = 3306
    durable = True
    multiprocess = True
    expiry = True
    atomic_batches = True
    isolated_batches = True
    lease_locks = False  # session locks: freed when the holder's connection ends

    def __init__(self, url: StoreURL, options: Options) -> None:
        super().__init__(url, options)
        self.database = url.path or ""
        if not self.database:
            raise ConfigurationError(
                "the mysql backend needs a database: mysql://user@host:3306/DATABASE"
            )
        self.table = options.take("table", "plugstore_kv", str)
        for what, ident in (("database", self.database), ("table", self.table)):
            if not _IDENT_RE.match(ident):
                raise ConfigurationError(
                    f"invalid {what} name {ident!r}: letters, digits and '_' (at most 64)"
                )
        self.connect_timeout = options.take("connect_timeout", 5.0)
        self.read_timeout = options.take("read_timeout", 0.0)
        self.retry_timeout = options.take("retry_timeout", 30.0)
        self.pool_max = options.take("pool_max", 10)
        self.lock_pool_max = options.take("lock_pool_max", 10)
        if self.pool_max < 1 or self.lock_pool_max < 1:
            raise ConfigurationError("pool_max and lock_pool_max must be at least 1")
        self._password: str | None = options.take("password", url.password, str)
        self.unix_socket = options.take("unix_socket", None, str)
        self._ssl: dict[str, Any] = {}
        for name in ("ssl_ca", "ssl_cert", "ssl_key"):
            path = options.take(name, None, str)
            if path is not None:
                self._ssl[name] = path
        for name in ("ssl_verify_cert", "ssl_verify_identity", "ssl_disabled"):
            if name in options:
                self._ssl[name] = options.take(name, False)
        host = url.host or "localhost"
        self.where = self.unix_socket or f"{host}:{url.port or 3306}"
        self.queries = self._statements()
        self._pool: ConnectionPool | None = None
        self._lock_pool: ConnectionPool | None = None  # GET_LOCK sessions only
        self._held: set[SessionLock] = set()  # GET_LOCKs held now (close frees them)
        self._fork_gen = forks.generation
        self._lock = threading.Lock()

    # -- SQL --------------------------------------------------------------------------

    def compose(self, text: str) -> str:
        """``text`` with ``{t}`` replaced by the quoted table name."""
        return text.replace("{t}", f"`{self.table}`")

    def _statements(self) -> dict[str, str]:
        c = self.compose
        # Canonical decimal text only (no sign on zero, no padding; \z, not $, which
        # would also match before a final newline), short enough to be an int64.
        counter = r"LENGTH(value) <= 20 AND value REGEXP '^(0|-?[1-9][0-9]*)\\z'"
        stored = "CAST(value AS DECIMAL(21, 0))"
        total = f"{stored} + %(d)s"
        # The stored number and the total must both be int64.
        in_range = (
            f"{stored} BETWEEN {INT64_MIN} AND {INT64_MAX} "
            f"AND {total} BETWEEN {INT64_MIN} AND {INT64_MAX}"
        )
        valid = f"IF({counter}, {in_range}, FALSE)"
        live = LIVE.format(p="%s")
        expired = "expires_at <= %(now)s"  # NULL (no deadline): IF() takes the else branch
        live_now = LIVE.format(p="%(now)s")
        return {
            "get": c("SELECT value, expires_at FROM {t} WHERE namespace = %s AND `key` = %s"),
            "contains": c("SELECT expires_at FROM {t} WHERE namespace = %s AND `key` = %s"),
            "set": c(
                "INSERT INTO {t} (namespace, `key`, value) VALUES (%s, %s, %s) "
                "ON DUPLICATE KEY UPDATE value = VALUES(value), expires_at = NULL, "
                "version = version + 1"
            ),
            "set_until": c(
                "INSERT INTO {t} (namespace, `key`, value, expires_at) VALUES (%s, %s, %s, %s) "
                "ON DUPLICATE KEY UPDATE value = VALUES(value), "
                "expires_at = VALUES(expires_at), version = version + 1"
            ),
            "remove": c(f"DELETE FROM {{t}} WHERE namespace = %s AND `key` = %s AND {live}"),
            # Inserts, or takes the place of an expired row.  "Affected rows" is 0 when a
            # live row existed: the no-op assignments change nothing.  (INSERT IGNORE
            # would also turn real errors into warnings.)  expires_at is assigned last:
            # in MySQL's default mode later assignments see the earlier ones' results.
            "insert_absent": c(
                "INSERT INTO {t} (namespace, `key`, value) VALUES (%(ns)s, %(key)s, %(v)s) "
                "ON DUPLICATE KEY UPDATE "
                f"value = IF({expired}, VALUES(value), value), "
                f"version = IF({expired}, version + 1, version), "
                f"expires_at = IF({expired}, NULL, expires_at)"
            ),
            "remove_if": c(
                f"DELETE FROM {{t}} WHERE namespace = %s AND `key` = %s AND value = %s AND {live}"
            ),
            "replace_if": c(
                "UPDATE {t} SET value = %s, version = version + 1 "
                f"WHERE namespace = %s AND `key` = %s AND value = %s AND {live}"
            ),
            "replace_if_digest": c(
                "UPDATE {t} SET value = %s, version = version + 1 "
                "WHERE namespace = %s AND `key` = %s AND LENGTH(value) = %s "
                f"AND SHA2(value, 256) = %s AND {live}"
            ),
            "get_many": c(
                "SELECT `key`, value, expires_at FROM {t} "
                f"WHERE namespace = %s AND `key` IN %s AND {live}"
            ),
            # Inserted: affected rows 1.  Updated: 2, and the new total travels back as
            # LAST_INSERT_ID (the OK packet's insert id, no second query).  Refused: the
            # row is left as it was, affected rows 0.  An expired row starts again from
            # the delta, without a deadline; a live one keeps its deadline.  `version`
            # and `value` are assigned before `expires_at`, so every assignment tests the
            # old row under either assignment-order mode.
            "incr": c(
                "INSERT INTO {t} (namespace, `key`, value) VALUES (%(ns)s, %(key)s, %(v)s) "
                "ON DUPLICATE KEY UPDATE "
                f"version = IF({expired}, version + 1 + 0 * LAST_INSERT_ID(%(d)s), "
                f"IF({valid}, version + 1 + 0 * LAST_INSERT_ID({total}), version)), "
                f"value = IF({expired}, VALUES(value), "
                f"IF({valid}, CAST({total} AS CHAR), value)), "
                f"expires_at = IF({expired}, NULL, expires_at)"
            ),
            # As insert_absent, with the new row's deadline (or none): affected rows 1
            # (inserted) or 2 (an expired row replaced: `version` always changes then),
            # 0 when a live row stayed.
            "add": c(
                "INSERT INTO {t} (namespace, `key`, value, expires_at) "
                "VALUES (%(ns)s, %(key)s, %(v)s, %(deadline)s) ON DUPLICATE KEY UPDATE "
                f"value = IF({expired}, VALUES(value), value), "
                f"version = IF({expired}, version + 1, version), "
                f"expires_at = IF({expired}, VALUES(expires_at), expires_at)"
            ),
            # "Affected rows" counts changed rows only: bumping `version` makes the
            # matched row count even when its deadline stays the same (or stays NULL).
            "expire": c(
                "UPDATE {t} SET expires_at = %(deadline)s, version = version + 1 "
                f"WHERE namespace = %(ns)s AND `key` = %(key)s AND {live_now}"
            ),
            "persist": c(
                "UPDATE {t} SET expires_at = NULL, version = version + 1 "
                f"WHERE namespace = %(ns)s AND `key` = %(key)s AND {live_now}"
            ),
            "expired_namespaces": c(
                "SELECT DISTINCT namespace FROM {t} WHERE expires_at <= %s ORDER BY namespace"
            ),
        }

    # -- connections ------------------------------------------------------------------

    def _connect(self) -> Any:  # a PyMySQL connection (the pool types it as DB-API)
        url = self.url
        return mysqlconn.connect(
            host=url.host or "localhost",
            port=url.port or 3306,
            user=url.username or "root",
            password=self._password or "",
            database=self.database,
            unix_socket=self.unix_socket,
            charset="utf8mb4",
            autocommit=True,
            binary_prefix=True,  # bytes are sent as _binary'...': never re-read as text
            sql_mode="STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION",
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout or None,
            write_timeout=self.read_timeout or None,
            **self._ssl,
        )

    def _unavailable(self, exc: BaseException) -> BackendUnavailableError:
        if isinstance(exc, PoolExhausted):
            return PoolExhaustedError(
                f"the MySQL connection pool for {self.where} is exhausted: all {exc.size} "
                f"connections stayed in use for {exc.waited}s by other threads of this "
                "process (the server may be fine; raise the pool_max option)"
            )
        detail = _detail(exc)
        number = _errno(exc)
        hint = _REFUSAL_HINTS.get(number)
        if hint:
            detail = f"({number}) {detail}; {hint}"
        return BackendUnavailableError(f"MySQL at {self.where} is unavailable: {detail}")

    def _refused(self, exc: BaseException) -> BackendUnavailableError:
        """A statement the server refused for a reason other than a lost connection
        (privileges, a read-only server, a full disk): a plugstore error saying what to
        do, with the driver's exception as its cause."""
        number = _errno(exc)
        hint = _REFUSAL_HINTS.get(number, "the server's error log may say more")
        return BackendUnavailableError(
            f"MySQL at {self.where} refused the operation: ({number}) {_detail(exc)}; {hint}"
        )

    def open(self) -> None:
        with self._lock:
            self._fork_gen = forks.generation
            self._pool = self._make_pool()
            self._lock_pool = self._make_lock_pool()
        try:
            self._prepare()
        except BaseException:
            self.close()
            raise

    def _make_pool(self) -> ConnectionPool:
        return ConnectionPool(self._connect, self.pool_max, self.connect_timeout)

    def _make_lock_pool(self) -> ConnectionPool:
        return ConnectionPool(self._connect, self.lock_pool_max, self.connect_timeout)

    def _prepare(self) -> None:
        """Create the table if needed; learn the server's packet limit."""
        self.run(
            self.compose(
                "CREATE TABLE IF NOT EXISTS {t} ("
                "namespace VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, "
                "`key` VARBINARY(1024) NOT NULL, value LONGBLOB NOT NULL, "
                "version BIGINT NOT NULL DEFAULT 1, expires_at DOUBLE NULL, "
                "PRIMARY KEY (namespace, `key`), KEY expires_at (expires_at)"
                ") ENGINE=InnoDB ROW_FORMAT=DYNAMIC"
            ),
            None,
            retry=False,  # a server that is down at start fails fast, within connect_timeout
        )
        self._add_expiry()
        row = self.one("SELECT @@max_allowed_packet", None)
        packet = int(row[0]) if row else 0
        # Worst case every byte is escaped (two bytes), plus room for the statement.
        self.max_value_size = max(1, min(Backend.max_value_size, (packet - 65536) // 2))

    def _add_expiry(self) -> None:
        """Give a table made before expiry existed its ``expires_at`` column and index.

        The catalog is asked first, so an up-to-date table sees no DDL; two processes
        upgrading at once both try, and the second finds the work done (1060/1061).
        """
        row = self.one(
            "SELECT (SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
            "DATABASE() AND TABLE_NAME = %s AND COLUMN_NAME = 'expires_at'), "
            "(SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = "
            "DATABASE() AND TABLE_NAME = %s AND INDEX_NAME = 'expires_at')",
            (self.table, self.table),
        )
        missing = []
        if not row[0]:
            missing.append("ADD COLUMN expires_at DOUBLE NULL")
        if not row[1]:
            missing.append("ADD INDEX expires_at (expires_at)")
        for change in missing:
            try:
                self.run(self.compose(f"ALTER TABLE {{t}} {change}"), None)
            except BackendUnavailableError as exc:
                if _errno(exc.__cause__ or exc) not in _ALREADY_THERE:
                    raise

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            lock_pool, self._lock_pool = self._lock_pool, None
            held, self._held = self._held, set()
            if self._fork_gen == forks.generation:
                end_sessions(held)  # the server frees the locks this store holds
                for each in (pool, lock_pool):
                    if each is not None:
                        each.close()

    def _current_pool(self) -> ConnectionPool:
        if self._fork_gen != forks.generation:
            # A forked child: build a pool of its own, never touch the parent's sockets.
            with forks.child_lock:
                if self._fork_gen != forks.generation:
                    self._lock = threading.Lock()
                    if self._pool is not None:
                        forks.keep_inherited(self._pool)
                        self._pool = self._make_pool()
                    if self._lock_pool is not None:
                        forks.keep_inherited(self._lock_pool)
                        self._lock_pool = self._make_lock_pool()
                    # The parent's locks: never this child's to end (closing one of
                    # their connections here would end the parent's session).
                    forks.keep_inherited(self._held)
                    self._held = set()
                    # Last: another thread of the child that sees the new generation
                    # must also see the new pool.
                    self._fork_gen = forks.generation
        pool = self._pool
        if pool is None:
            raise BackendUnavailableError("the MySQL store is closed")
        return pool

    def named_lock(self, namespace: str, key: str, timeout: float | None) -> HeldLock | None:
        """Hold ``GET_LOCK`` on a connection taken from the pool until release.

        Lock names are server-wide and at most 64 characters: the name is a hash of the
        database, table, namespace and key.
        """
        name = "plugstore:" + lock_digest(self.database, self.table, namespace, key)
        started = time.monotonic()
        self._current_pool()  # replaces both pools in a forked child
        pool = self._lock_pool
        if pool is None:
            raise BackendUnavailableError("the MySQL store is closed")
        # Waiting for a lock session is waiting for the lock: the lock pool runs dry
        # only while this process holds or awaits lock_pool_max other locks.
        for _ in range(pool.max_size + 1):
            try:
                conn = pool.acquire(math.inf if timeout is None else timeout)
            except PoolExhausted as exc:
                raise PoolExhaustedError(
                    f"the MySQL lock connection pool for {self.where} is exhausted: all "
                    f"{exc.size} lock sessions stayed in use for {exc.waited}s, holding or "
                    "awaiting other locks of this process (raise the lock_pool_max option)"
                ) from None
            except pymysql.err.MySQLError as exc:
                raise self._unavailable(exc) from None
            if not _closed_by_server(conn):
                break
            pool.discard(conn)  # closed while idle (a restart): take another
        # GET_LOCK takes seconds, fractions included; a year stands for "forever".
        wait = 365 * 86400.0
        if timeout is not None:
            wait = max(0.0, timeout - (time.monotonic() - started))
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT GET_LOCK(%s, %s)", (name, wait))
                row = cur.fetchone()
        except BaseException as exc:
            pool.discard(conn)
            if isinstance(exc, pymysql.err.MySQLError):
                raise self._unavailable(exc) from None
            raise
        if not (row and row[0] == 1):
            pool.release(conn)
            return None
        return _NamedLock(self._held, pool, conn, name)

    # -- statement helpers -----------------------------------------------------------------

    def _execute(self, work: Callable[[Any], T], retry: bool) -> T:
        """Run ``work(cursor)`` on a pooled connection.

        A deadlock victim or lock-wait timeout was rolled back whole, so it is run again
        (any statement).  After a lost connection only ``retry`` statements run again --
        those whose repetition changes nothing (reads, upserts of a given value) -- until
        ``retry_timeout``; ``incr``, compare-and-set and delete-and-report raise at once,
        since whether the lost attempt committed is unknown.
        """
        backoff: Backoff | None = None  # made at the first failure
        deadlocks = stale = checked = 0
        while True:
            pool = self._current_pool()
            try:
                conn = pool.acquire()
            except (pymysql.err.MySQLError, PoolExhausted) as exc:
                # Nothing ran.  Wait for a server that is restarting or full; refuse at
                # once what waiting cannot fix (bad login, unknown database, TLS, ...),
                # and an exhausted pool, which has waited connect_timeout already.
                transient = not isinstance(exc, PoolExhausted) and _errno(exc) in _TRANSIENT
                if not (retry and transient):
                    raise self._unavailable(exc) from None
                backoff = backoff or Backoff(self.retry_timeout)
                if backoff.expired():
                    raise self._unavailable(exc) from None
                backoff.wait()
                continue
            if checked <= self.pool_max and _closed_by_server(conn):
                # Idle past wait_timeout, or the server restarted: found before anything
                # is sent, so this is safe for any statement.  Take another connection.
                checked += 1
                pool.discard(conn)
                continue
            try:
                with conn.cursor() as cur:
                    result = work(cur)
            except (pymysql.err.MySQLError, OSError) as exc:
                if not _connection_lost(exc):
                    pool.release(conn)
                    if _errno(exc) in _ROLLED_BACK and deadlocks < _DEADLOCK_ATTEMPTS:
                        deadlocks += 1
                        time.sleep(random.uniform(0, 0.002 * deadlocks))
                        continue
                    raise self._refused(exc) from exc
                pool.discard(conn)  # a broken connection never goes back to the pool
                if not retry:
                    raise self._unavailable(exc) from None
                backoff = backoff or Backoff(self.retry_timeout)
                if backoff.expired():
                    raise self._unavailable(exc) from None
                if stale < self.pool_max:
                    stale += 1  # likely a stale pooled connection: try the next at once
                else:
                    backoff.wait()
                continue
            except BaseException:
                # Interrupted mid-reply (KeyboardInterrupt, a signal handler's exception):
                # unread bytes would be taken as the next statement's reply, so the
                # connection never goes back to the pool.
                pool.discard(conn)
                raise
            pool.release(conn)
            return result

    def one(self, query: str, params: Any, retry: bool = False) -> Any:
        def work(cur: Any) -> Any:
            cur.execute(query, params)
            return cur.fetchone()

        return self._execute(work, retry)

    def all(self, query: str, params: Any, retry: bool = True) -> list[Any]:
        """Reads: retried after a lost connection by default."""

        def work(cur: Any) -> list[Any]:
            cur.execute(query, params)
            return list(cur.fetchall())

        return self._execute(work, retry)

    def run(self, query: str, params: Any, retry: bool = False) -> int:
        def work(cur: Any) -> int:
            return int(cur.execute(query, params))

        return self._execute(work, retry)

    def upsert_returning_id(self, query: str, params: Any) -> tuple[int, int]:
        """Run an upsert; return (affected rows, the OK packet's insert id).  Never retried
        after a lost connection."""

        def work(cur: Any) -> tuple[int, int]:
            affected = cur.execute(query, params)
            return int(affected), int(cur.lastrowid or 0)

        return self._execute(work, False)

    def run_batch(self, query: str, rows: Sequence[Sequence[Any]]) -> None:
        """All rows in one transaction (multi-row inserts by PyMySQL): all land, or none.
        Retried as :meth:`run_transaction` is: the batch is a set of upserts."""
        self.run_transaction(((query, rows),))

    def run_transaction(self, steps: Sequence[tuple[str, Sequence[Sequence[Any]]]]) -> None:
        """Run each ``(query, rows)`` step for its rows, all in one transaction.

        Retried after a lost connection or a deadlock: deletes and upserts of given
        values give the same result applied again, whether or not a lost attempt
        committed.
        """

        def work(cur: Any) -> None:
            conn = cur.connection
            conn.begin()
            try:
                for query, rows in steps:
                    cur.executemany(query, rows)
                conn.commit()
            except BaseException:
                with contextlib.suppress(pymysql.err.MySQLError):
                    conn.rollback()  # if the connection is gone, the server rolled back
                raise

        self._execute(work, True)

    # -- backend API ---------------------------------------------------------------------

    def bucket(self, namespace: str) -> MySQLBucket:
        return MySQLBucket(self, namespace)

    def namespaces(self) -> list[str]:
        # DISTINCT on the primary key's first column; a namespace holding only expired
        # rows is empty.
        live = LIVE.format(p="%s")
        query = self.compose(
            f"SELECT DISTINCT namespace FROM {{t}} WHERE {live} ORDER BY namespace"
        )
        return [row[0] for row in self.all(query, (self.clock(),))]

    def purge(self, namespace: str | None = None) -> dict[str, int]:
        return purge_table(self, namespace)

    def drop(self) -> None:
        """Drop this store's table (tests and tooling; not part of the Backend contract)."""
        self.run(self.compose("DROP TABLE IF EXISTS {t}"), None)

    def identity(self) -> tuple[object, ...]:
        if self.unix_socket:
            return (self.name, self.unix_socket, self.database, self.table)
        return (*super().identity(), self.database, self.table)

    def info(self) -> dict[str, str]:
        row = self.one("SELECT VERSION()", None, retry=True)
        return {
            **super().info(),
            "server": f"{row[0] if row else '?'} at {self.where}",
            "driver": f"PyMySQL {pymysql.VERSION_STRING}",  # __version__ mimics MySQLdb
            "table": f"{self.database}.{self.table}",
            "max value size": f"{self.max_value_size} bytes",
        }
