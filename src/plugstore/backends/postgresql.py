"""``postgresql://user:password@host:port/database`` -- PostgreSQL through psycopg 3.

* **Layout**: one table for every namespace (default ``public.plugstore_kv``), primary key
  ``(namespace, key)``, ``key`` in the ``"C"`` collation so that ordering and prefix
  ranges follow code points as on every other backend, ``value bytea``, a ``version``
  counter bumped by every write, and ``expires_at double precision`` (a key's deadline,
  epoch seconds; ``NULL`` for none) with a partial index on the rows that have one.  A
  table made before expiry existed gains the column and index when it is opened.
  Schema and table are created on first use (under an advisory lock, so several
  processes starting at once do not collide); no DDL per namespace.
* **Atomic operations** are single statements: ``incr`` is an upsert that validates the
  stored text and the 64-bit range in its ``WHERE`` clause; compare-and-set is a
  conditional ``UPDATE``/``DELETE``/``INSERT ... ON CONFLICT DO NOTHING``.
* **Durability**: every write is its own committed transaction before the call returns
  (autocommit), so it survives a ``kill -9`` of the client.
* **Connections**: a ``psycopg_pool.ConnectionPool`` per process (thread-safe); a forked
  child builds its own pool and never touches its parent's sockets.  Connecting has a
  bounded timeout and fails with :class:`~plugstore.errors.BackendUnavailableError` naming
  host and port, never the password.  When every pooled connection stays in use for
  ``connect_timeout`` (and the server does accept connections), an operation raises
  :class:`~plugstore.errors.PoolExhaustedError` at once.
* **Locks**: advisory-lock sessions live on connections of a second, small pool
  (``lock_pool_max``), never the one statements use: a holder and the thread waiting
  behind it each keep their session for the whole hold or wait, and with one pool
  ``pool_max`` of them would leave the holder no connection for its own reads and writes.

Options (query string or keywords): ``schema`` (default ``public``), ``table`` (default
``plugstore_kv``), ``connect_timeout`` (seconds, default 5), ``retry_timeout`` (seconds
reads and upserts keep retrying after a lost connection, default 30), ``pool_min``/
``pool_max`` (default 1/10), ``lock_pool_max`` (connections for lock sessions, default 10);
any other libpq parameter such as ``sslmode``, ``sslrootcert`` or
``application_name`` is passed through to the server connection.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from .. import forks
from ..backend import Backend, Backoff, Options
from ..errors import BackendUnavailableError, ConfigurationError, PoolExhaustedError
from ..keys import INT64_MAX, INT64_MIN
from ..locks import HeldLock, lock_digest
from ..url import StoreURL
from . import connpool
from .liveness import closed_by_server
from .sessionlock import SessionLock, end_sessions
from .sqltable import LIVE, Stmt, TableBucket, not_an_integer, purge_table

if TYPE_CHECKING:
    from ..nearcache import NearCache
    from .pgnotify import NotifyListener

T = TypeVar("T")

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
_PRIVILEGES = (
    "grant the user USAGE on the schema and SELECT, INSERT, UPDATE, DELETE on the table "
    "(and CREATE on the database or schema to let plugstore create or upgrade them), or "
    "point the URL at a user who has them"
)
#: What to do about the errors a server gives for a statement it will not run, by SQLSTATE.
_REFUSAL_HINTS = {
    "42501": _PRIVILEGES,  # insufficient_privilege
    "25006": "the server is read-only (a standby, or default_transaction_read_only): "
    "point the URL at the primary",
    "53100": "the server's disk is full: free space on it",
}
#: libpq parameters passed through from the URL query (everything else is refused).
LIBPQ_PASSTHROUGH = frozenset(
    {
        "sslmode",
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslcrl",
        "sslpassword",
        "application_name",
        "target_session_attrs",
        "options",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "passfile",
        "service",
        "channel_binding",
    }
)


#: Rows written in bulk into a table without statistics before ANALYZE (analyze_due).
ANALYZE_AFTER = 10_000
#: Whether the server never analyzed (nor vacuumed) the table (its name, the parameter).
NO_STATISTICS = "SELECT reltuples < 0 FROM pg_class WHERE oid = %s::regclass"


def _index_name(table: str) -> str:
    """The name of the ``expires_at`` index: PostgreSQL cuts identifiers at 63 bytes, so a
    long table name is shortened, with a hash of it to keep the name its own."""
    name = f"{table}_expires_at"
    if len(name) <= 63:
        return name
    return f"{table[:40]}_{zlib.crc32(table.encode()):08x}_expires_at"


class PostgreSQLBucket(TableBucket):
    """One namespace: the rows of the store's table with this namespace."""

    placeholder = "%s"
    backend: PostgreSQLBackend

    # Statements and parsing shared with the async shell (see TableBucket).

    def sql_incr(self, key: str, delta: int) -> Stmt:
        # Never repeated after a lost connection: a lost success would count twice.
        params = {"ns": self.namespace, "key": key, "d": delta, "now": self.backend.clock()}
        return self._q["incr"], params, False

    @staticmethod
    def counter_of(key: str, row: Any) -> int:
        """The result of :meth:`sql_incr`: no row when the stored value is no counter."""
        if row is None:
            raise not_an_integer(key)
        return int(bytes(row[0]))

    def sql_rows(self, keys: Sequence[str]) -> Stmt:
        """The bulk read: ``(key, value, expires_at)`` of the live rows among ``keys``."""
        return self._q["get_many"], (self.namespace, list(keys), self.backend.clock()), True

    def incr(self, key: str, delta: int) -> int:
        return self.counter_of(key, self.backend.one(*self.sql_incr(key, delta)))

    def _rows(self, keys: Sequence[str]) -> list[tuple[str, bytes, float | None]]:
        rows: list[tuple[str, bytes, float | None]] = self.backend.all(*self.sql_rows(keys))
        return rows

    def lock(self, key: str, timeout: float | None, lease: float) -> HeldLock | None:
        """A session advisory lock on a pooled connection, freed when that session ends
        (``lease`` is not needed: a dead holder's connection closes)."""
        return self.backend.advisory_lock(self.namespace, key, timeout)


class _AdvisoryLock(SessionLock):
    """A session advisory lock held by a connection of the lock pool until release (or
    until the store closes)."""

    def __init__(
        self, held: set[SessionLock], pool: connpool.ConnectionPool, conn: Any, ident: int
    ) -> None:
        super().__init__(held, pool, conn)
        self._ident = ident

    def _release(self) -> bool:
        try:
            row = self._conn.execute(UNLOCK, (self._ident,)).fetchone()
        except BaseException as exc:
            self._pool.discard(self._conn)  # closing the session frees whatever it held
            if isinstance(exc, psycopg.Error):
                return False  # the session ended, and the server released the lock with it
            raise
        self._pool.release(self._conn)
        return bool(row and row[0])


#: A session advisory lock, taken if free (the parameter is the lock id, :func:`lock_ident`).
TRY_LOCK = "SELECT pg_try_advisory_lock(%s)"
#: Its release: true if the session held it.
UNLOCK = "SELECT pg_advisory_unlock(%s)"


def _alive(conn: Any) -> bool:
    """Whether an idle pooled connection is still open at the server's end (a restart or
    ``idle_session_timeout`` closes it): asked before anything is sent on it."""
    try:
        return not closed_by_server(conn.pgconn.socket)
    except psycopg.OperationalError:
        return False


def _first_line(exc: BaseException) -> str:
    """The first line of a driver message (psycopg's name host and port, never the
    password)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PostgreSQLBackend(Backend):
    """One PostgreSQL table for every namespace; pooled, thread- and fork-safe."""

    name = "postgresql"
    default_port = 5432
    durable = True
    multiprocess = True
    expiry = True
    atomic_batches = True
    isolated_batches = True
    lease_locks = False  # session locks: freed when the holder's connection ends
    async_driver = "plugstore.backends.postgresql_aio:PostgreSQLAsyncDriver"

    def __init__(self, url: StoreURL, options: Options) -> None:
        super().__init__(url, options)
        self.schema = options.take("schema", "public", str)
        self.table = options.take("table", "plugstore_kv", str)
        for what, ident in (("schema", self.schema), ("table", self.table)):
            if not _IDENT_RE.match(ident):
                raise ConfigurationError(
                    f"invalid {what} name {ident!r}: letters, digits and '_' (at most 63)"
                )
        self.connect_timeout = options.take("connect_timeout", 5.0)
        self.retry_timeout = options.take("retry_timeout", 30.0)
        self.pool_min = options.take("pool_min", 1)
        self.pool_max = options.take("pool_max", 10)
        if not 0 <= self.pool_min <= self.pool_max or self.pool_max < 1:
            raise ConfigurationError("need 0 <= pool_min <= pool_max and pool_max >= 1")
        self.lock_pool_max = options.take("lock_pool_max", 10)
        if self.lock_pool_max < 1:
            raise ConfigurationError("lock_pool_max must be at least 1")
        self._libpq: dict[str, str] = {}
        for k in sorted(LIBPQ_PASSTHROUGH):
            value = options.take(k, None, str)
            if value is not None:
                self._libpq[k] = value
        # Errbot-style config dicts may carry the password as an option (never in logs).
        self._password: str | None = options.take("password", url.password, str)
        self.where = f"{url.host or 'localhost'}:{url.port or 5432}"
        self._qualified = sql.Identifier(self.schema, self.table)
        self._rendered: dict[str, str] = {}
        self.queries = self._statements()
        self._pool: ConnectionPool[Any] | None = None
        self._lock_pool: connpool.ConnectionPool | None = None  # advisory-lock sessions
        self._fork_gen = forks.generation
        self._lock = threading.Lock()
        self._held: set[SessionLock] = set()  # advisory locks held now (close frees them)
        # Rows still to write in bulk before ANALYZE, while the table has no statistics
        # (None: it has, or this process already ran it); see analyze_due.
        self._unanalyzed: int | None = None

    # -- SQL --------------------------------------------------------------------------

    def compose(self, text: str) -> str:
        """``text`` with ``{t}`` replaced by the quoted, schema-qualified table name.

        Rendered once to a plain string (and cached): psycopg would otherwise render a
        ``Composed`` on every execute, which costs more than a local round trip's share.
        """
        rendered = self._rendered.get(text)
        if rendered is None:
            rendered = sql.SQL(text).format(t=self._qualified).as_string(None)
            self._rendered[text] = rendered
        return rendered

    def _statements(self) -> dict[str, str]:
        c = self.compose
        number = "encode({t}.value, 'escape')"  # any bytes, as text; non-ASCII escaped
        live = LIVE.format(p="%s")
        expired = "{t}.expires_at <= %(now)s"  # NULL (no deadline) is not expired
        live_now = LIVE.format(p="%(now)s")
        return {
            "get": c("SELECT value, expires_at FROM {t} WHERE namespace = %s AND key = %s"),
            "contains": c("SELECT expires_at FROM {t} WHERE namespace = %s AND key = %s"),
            "set": c(
                "INSERT INTO {t} (namespace, key, value) VALUES (%s, %s, %s) "
                "ON CONFLICT (namespace, key) DO UPDATE "
                "SET value = EXCLUDED.value, expires_at = NULL, version = {t}.version + 1"
            ),
            "set_until": c(
                "INSERT INTO {t} (namespace, key, value, expires_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, "
                "expires_at = EXCLUDED.expires_at, version = {t}.version + 1"
            ),
            "remove": c(f"DELETE FROM {{t}} WHERE namespace = %s AND key = %s AND {live}"),
            # Inserts, or takes the place of an expired row; a live row stays as it was.
            "insert_absent": c(
                "INSERT INTO {t} (namespace, key, value) VALUES (%s, %s, %s) "
                "ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, "
                "expires_at = NULL, version = {t}.version + 1 WHERE {t}.expires_at <= %s"
            ),
            "remove_if": c(
                f"DELETE FROM {{t}} WHERE namespace = %s AND key = %s AND value = %s AND {live}"
            ),
            "replace_if": c(
                "UPDATE {t} SET value = %s, version = version + 1 "
                f"WHERE namespace = %s AND key = %s AND value = %s AND {live}"
            ),
            "get_many": c(
                "SELECT key, value, expires_at FROM {t} "
                f"WHERE namespace = %s AND key = ANY(%s) AND {live}"
            ),
            # An expired row starts again from the delta, without a deadline.  A live one
            # must hold canonical decimal text; the sum is computed in numeric (no
            # overflow error) and must stay inside int64, else no row comes back; it
            # keeps its deadline.  CASE, unlike OR, fixes the order of evaluation: the
            # text of an expired row is never cast.
            "incr": c(
                "INSERT INTO {t} (namespace, key, value) "
                "VALUES (%(ns)s, %(key)s, convert_to(%(d)s::bigint::text, 'UTF8')) "
                "ON CONFLICT (namespace, key) DO UPDATE SET "
                f"value = CASE WHEN {expired} THEN EXCLUDED.value "
                f"ELSE convert_to(({number}::numeric + %(d)s)::text, 'UTF8') END, "
                f"expires_at = CASE WHEN {expired} THEN NULL ELSE {{t}}.expires_at END, "
                "version = {t}.version + 1 "
                f"WHERE CASE WHEN {expired} THEN true "
                f"ELSE {number} ~ '^(0|-?[1-9][0-9]*)$' "
                f"AND {number}::numeric BETWEEN {INT64_MIN} AND {INT64_MAX} "
                f"AND {number}::numeric + %(d)s BETWEEN {INT64_MIN} AND {INT64_MAX} END "
                "RETURNING value"
            ),
            # As insert_absent, with the new row's deadline (or none).
            "add": c(
                "INSERT INTO {t} (namespace, key, value, expires_at) "
                "VALUES (%(ns)s, %(key)s, %(v)s, %(deadline)s) "
                "ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, "
                "expires_at = EXCLUDED.expires_at, version = {t}.version + 1 "
                f"WHERE {expired}"
            ),
            "expire": c(
                "UPDATE {t} SET expires_at = %(deadline)s, version = version + 1 "
                f"WHERE namespace = %(ns)s AND key = %(key)s AND {live_now}"
            ),
            "persist": c(
                "UPDATE {t} SET expires_at = NULL, version = version + 1 "
                f"WHERE namespace = %(ns)s AND key = %(key)s AND {live_now}"
            ),
            "expired_namespaces": c(
                "SELECT DISTINCT namespace FROM {t} WHERE expires_at <= %s ORDER BY namespace"
            ),
        }

    # -- connections ------------------------------------------------------------------

    def _conninfo(self) -> str:
        url = self.url
        params: dict[str, Any] = {
            "host": url.host or "localhost",
            "port": url.port or 5432,
            "dbname": url.path or None,
            "user": url.username,
            "password": self._password,
            "connect_timeout": max(1, round(self.connect_timeout)),
            **self._libpq,
        }
        return psycopg.conninfo.make_conninfo(**{k: v for k, v in params.items() if v is not None})

    def _refused(self, exc: psycopg.Error) -> BackendUnavailableError:
        """A statement the server refused for a reason other than a lost connection
        (privileges, a read-only server): a plugstore error saying what to do, with the
        driver's exception as its cause."""
        detail = _first_line(exc)
        state = exc.sqlstate or ""
        hint = _REFUSAL_HINTS.get(state, "the server's log may say more")
        return BackendUnavailableError(
            f"PostgreSQL at {self.where} refused the operation: {detail} "
            f"(SQLSTATE {state or 'unknown'}); {hint}"
        )

    def _unavailable(self, exc: BaseException) -> BackendUnavailableError:
        detail = _first_line(exc)
        return BackendUnavailableError(f"PostgreSQL at {self.where} is unavailable: {detail}")

    def open(self) -> None:
        with self._lock:
            self._fork_gen = forks.generation
            self._pool = self._make_pool()
            self._lock_pool = self._make_lock_pool()
        try:
            self._create_table()
        except BaseException:
            self.close()  # no pool threads left behind by a failed open
            raise

    def _make_pool(self) -> ConnectionPool[Any]:
        pool: ConnectionPool[Any] = ConnectionPool(
            self._conninfo(),
            min_size=self.pool_min,
            max_size=self.pool_max,
            kwargs={"autocommit": True},
            timeout=self.connect_timeout,
            open=False,
            name=f"plugstore {self.where}",
        )
        try:
            pool.open(wait=self.pool_min > 0, timeout=self.connect_timeout)
        except PoolTimeout as exc:
            pool.close()
            raise self._probe_error() from exc
        return pool

    def _make_lock_pool(self) -> connpool.ConnectionPool:
        # Connections are made when first needed and kept idle after: a process pays
        # one connect per lock it holds or awaits at once, not one per lock taken.
        conninfo = self._conninfo()
        return connpool.ConnectionPool(
            lambda: psycopg.connect(conninfo, autocommit=True),
            self.lock_pool_max,
            self.connect_timeout,
        )

    def _probe_error(self) -> BackendUnavailableError:
        """Connect once directly to report why the pool could not (refused, auth, ...)."""
        try:
            psycopg.connect(self._conninfo()).close()
        except psycopg.Error as exc:
            return self._unavailable(exc)
        return self.slow_to_accept()

    def slow_to_accept(self) -> BackendUnavailableError:
        """A pool that got no connection in time although a direct connect works."""
        return BackendUnavailableError(
            f"PostgreSQL at {self.where} did not accept connections within {self.connect_timeout}s"
        )

    @property
    def table_lock_id(self) -> int:
        """The advisory lock taken while changing the table's definition.  A stable id
        (str hashes differ between processes): every process takes the same one."""
        return zlib.crc32(f"plugstore:{self.schema}.{self.table}".encode())

    def near_cache_coherence(self, cache: NearCache) -> NotifyListener:
        from .pgnotify import NotifyListener, install_triggers

        install_triggers(self)
        return NotifyListener(self, cache)

    def _create_table(self) -> None:
        create_table = self.compose(
            "CREATE TABLE IF NOT EXISTS {t} ("
            'namespace text NOT NULL, key text COLLATE "C" NOT NULL, '
            "value bytea NOT NULL, version bigint NOT NULL DEFAULT 1, "
            "expires_at double precision, PRIMARY KEY (namespace, key))"
        )
        try:
            with self._connection() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.table_lock_id,))
                self._create_schema(conn)
                conn.execute(create_table)
                self._add_expiry(conn)
                self._unanalyzed = ANALYZE_AFTER if self._no_statistics(conn) else None
        except PoolTimeout as exc:
            raise self._probe_error() from exc
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from exc
        except psycopg.Error as exc:
            raise self._refused(exc) from exc

    def _create_schema(self, conn: Any) -> None:
        """Create the schema unless it exists.  Stores opening two tables of a new schema
        at once hold different table locks, and two ``CREATE SCHEMA IF NOT EXISTS`` at
        once fail on the catalog's unique index: the schema has a lock of its own."""
        found = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)", (self.schema,)
        ).fetchone()
        if found and found[0]:
            return
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s)",
            (zlib.crc32(f"plugstore-schema:{self.schema}".encode()),),
        )
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))

    def analyze_due(self, rows: int) -> bool:
        """Count ``rows`` written in bulk (batches, loads, copies); ``True`` once, when
        :data:`ANALYZE_AFTER` of them went into a table the server has no statistics of
        (PostgreSQL 14 and later mark it ``reltuples = -1``): time to ``ANALYZE`` it,
        if nobody did meanwhile (:data:`NO_STATISTICS`).  Until autovacuum does (a
        minute or more after a bulk load), the planner guesses a few rows a namespace
        and pages a listing by a bitmap scan and a sort of every key after the mark:
        O(n) a page, 400 s to dump a million keys just loaded.  With statistics of the
        first rows it walks the primary key, however much is added."""
        left = self._unanalyzed
        if left is None:
            return False
        left -= rows
        if left > 0:
            self._unanalyzed = left
            return False
        self._unanalyzed = None
        return True

    def bulk_written(self, rows: int) -> None:
        """Count ``rows`` written in bulk; ``ANALYZE`` when :meth:`analyze_due`."""
        if not self.analyze_due(rows):
            return
        # Best effort: should it fail, autovacuum analyzes the table later.
        with contextlib.suppress(psycopg.Error, PoolTimeout), self._connection() as conn:
            if self._no_statistics(conn):  # still: no other process nor autovacuum did
                conn.execute(self.compose("ANALYZE {t}"))

    def _no_statistics(self, conn: Any) -> bool:
        row = conn.execute(NO_STATISTICS, (self.compose("{t}"),)).fetchone()
        return bool(row and row[0])

    def _add_expiry(self, conn: Any) -> None:
        """Give a table made before expiry existed its ``expires_at`` column and the
        partial index ``purge`` reads.  The catalog is asked first: ``ALTER TABLE ... IF
        NOT EXISTS`` would take an exclusive lock on the table at every open."""
        index = _index_name(self.table)
        has_column, has_index = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass "
            "AND attname = 'expires_at' AND NOT attisdropped), "
            "EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = %s AND indexname = %s)",
            (self.compose("{t}"), self.schema, index),
        ).fetchone()
        if not has_column:
            conn.execute(self.compose("ALTER TABLE {t} ADD COLUMN expires_at double precision"))
        if not has_index:
            conn.execute(
                sql.SQL(
                    "CREATE INDEX IF NOT EXISTS {} ON {} (expires_at) WHERE expires_at IS NOT NULL"
                ).format(sql.Identifier(index), self._qualified)
            )

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            lock_pool, self._lock_pool = self._lock_pool, None
            held, self._held = self._held, set()
            if self._fork_gen == forks.generation:
                if pool is not None:
                    pool.close()
                end_sessions(held)  # the server frees the locks this store holds
                if lock_pool is not None:
                    lock_pool.close()

    def _current_pool(self) -> ConnectionPool[Any]:
        if self._fork_gen != forks.generation:
            # A forked child: build a pool of its own, never touch the parent's sockets.
            with forks.child_lock:
                if self._fork_gen != forks.generation:
                    self._lock = threading.Lock()
                    if self._pool is not None:
                        forks.keep_inherited(self._pool)  # its sockets are the parent's
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
            raise BackendUnavailableError("the PostgreSQL store is closed")
        return pool

    def _connection(self) -> Any:
        return self._current_pool().connection(timeout=self.connect_timeout)

    # -- statement helpers -----------------------------------------------------------------

    def _call(self, work: Callable[[Any], T], retry: bool, failed: BaseException) -> T:
        """Run ``work(connection)``; after a lost connection, retry only if ``retry``.

        Retried: statements whose repetition changes nothing (reads, upserts of a given
        value), until ``retry_timeout`` -- a server restart heals by itself.  Never
        retried: statements whose outcome depends on whether a lost attempt committed
        (``incr``, compare-and-set, delete-and-report): they raise at once.  The pool
        throws broken connections away, so each retry gets a healthy or new one.
        """
        exhausted = self._exhausted(failed)
        if exhausted is not None:
            raise exhausted from None  # the pool has waited connect_timeout already
        if not retry:
            raise self._unavailable(failed) from None
        backoff = Backoff(self.retry_timeout)
        while True:
            if backoff.expired():
                raise self._unavailable(failed) from None
            backoff.wait()
            try:
                with self._connection() as conn:
                    return work(conn)
            except (psycopg.OperationalError, PoolTimeout) as exc:
                failed = exc
                exhausted = self._exhausted(failed)
                if exhausted is not None:
                    raise exhausted from None
            except psycopg.Error as exc:
                raise self._refused(exc) from exc

    def _exhausted(self, failed: BaseException) -> BackendUnavailableError | None:
        """The error for a pool timeout that came from a full pool, not a down server:
        every connection the pool may hold exists and is in use, and the server accepts
        a new one (one direct connect, on this failure path only; if that fails too,
        its reason is the error)."""
        pool = self._pool
        if not isinstance(failed, PoolTimeout) or pool is None or not self.pool_full(pool):
            return None
        try:
            psycopg.connect(self._conninfo()).close()
        except psycopg.Error as exc:
            return self._unavailable(exc)  # e.g. too many clients: the server's limit
        return self.exhausted_error("threads")

    @staticmethod
    def pool_full(pool: Any) -> bool:
        """Whether every connection ``pool`` (psycopg_pool, sync or async) may hold
        exists and is in use: a timeout then means a busy pool, not a server that is
        down or restarting (the pool would still be connecting)."""
        stats = pool.get_stats()
        return bool(
            stats.get("pool_size", 0) >= stats.get("pool_max", 0)
            and stats.get("pool_available", 0) == 0
        )

    def exhausted_error(self, users: str) -> PoolExhaustedError:
        """A statement pool that stayed busy for ``connect_timeout`` (``users``: what in
        this process holds its connections: threads, tasks)."""
        return PoolExhaustedError(
            f"the PostgreSQL connection pool for {self.where} is exhausted: all "
            f"{self.pool_max} connections stayed in use for {self.connect_timeout}s by "
            f"other {users} of this process (the server is fine; raise the pool_max option)"
        )

    def lock_pool_exhausted(self, size: int, waited: float) -> PoolExhaustedError:
        """A lock pool whose every session stayed in use for ``waited`` seconds."""
        return PoolExhaustedError(
            f"the PostgreSQL lock connection pool for {self.where} is exhausted: "
            f"all {size} lock sessions stayed in use for {waited}s, holding "
            "or awaiting other locks of this process (raise the lock_pool_max option)"
        )

    def _getconn(self, pool: ConnectionPool[Any]) -> Any:
        """A pooled connection, passing over those the server closed while they idled
        (after a restart, or idle_session_timeout): noticed before anything is sent,
        so even ``incr`` just takes another one."""
        for _ in range(self.pool_max):
            conn = pool.getconn(self.connect_timeout)
            if _alive(conn):
                return conn
            conn.close()
            pool.putconn(conn)  # the pool replaces a closed connection
        return pool.getconn(self.connect_timeout)

    # The three helpers below try once on the fast path (no closure, no loop) and only
    # build the retrying version of the work after a failure.

    def one(self, query: str | sql.Composable, params: Any, retry: bool = False) -> Any:
        try:
            pool = self._current_pool()
            conn = self._getconn(pool)  # cheaper than pool.connection()
            try:
                return conn.execute(query, params).fetchone()
            finally:
                pool.putconn(conn)  # the pool discards it if it broke
        except (psycopg.OperationalError, PoolTimeout) as exc:
            return self._call(lambda c: c.execute(query, params).fetchone(), retry, exc)
        except psycopg.Error as exc:
            raise self._refused(exc) from exc

    def all(self, query: str | sql.Composable, params: Any, retry: bool = True) -> list[Any]:
        """Reads: retried after a lost connection by default."""
        try:
            pool = self._current_pool()
            conn = self._getconn(pool)
            try:
                rows: list[Any] = conn.execute(query, params).fetchall()
                return rows
            finally:
                pool.putconn(conn)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            return self._call(lambda c: c.execute(query, params).fetchall(), retry, exc)
        except psycopg.Error as exc:
            raise self._refused(exc) from exc

    def run(self, query: str | sql.Composable, params: Any, retry: bool = False) -> int:
        try:
            pool = self._current_pool()
            conn = self._getconn(pool)
            try:
                count: int = conn.execute(query, params).rowcount
                return count
            finally:
                pool.putconn(conn)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            retried: int = self._call(lambda c: c.execute(query, params).rowcount, retry, exc)
            return retried
        except psycopg.Error as exc:
            raise self._refused(exc) from exc

    def run_batch(self, query: str | sql.Composable, rows: Sequence[Sequence[Any]]) -> None:
        """All rows in one transaction (pipelined by psycopg): all land, or none.
        Retried as :meth:`run_transaction` is: the batch is a set of upserts."""
        self.run_transaction(((query, rows),))

    def run_transaction(
        self, steps: Sequence[tuple[str | sql.Composable, Sequence[Sequence[Any]]]]
    ) -> None:
        """Run each ``(query, rows)`` step for its rows, all in one transaction.

        Retried after a lost connection: deletes and upserts of given values give the
        same result applied again, whether or not the lost attempt committed.
        """

        def work(conn: Any) -> None:
            with conn.transaction(), conn.cursor() as cur:
                for query, rows in steps:
                    cur.executemany(query, rows)

        try:
            with self._connection() as conn:
                work(conn)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            self._call(work, True, exc)
        except psycopg.Error as exc:
            raise self._refused(exc) from exc
        self.bulk_written(sum(len(rows) for _, rows in steps))

    def advisory_lock(self, namespace: str, key: str, timeout: float | None) -> HeldLock | None:
        """Hold ``pg_advisory_lock`` on a connection of the lock pool until release.

        The lock id is 64 bits of a hash of the table, namespace and key: two names
        sharing an id only make their holders take turns.  ``lock_timeout`` bounds the
        wait, inside a transaction so that it applies to this statement alone (a
        session lock outlives the transaction it was taken in).  Waiting for a lock
        session counts toward ``timeout``: the lock pool runs dry only while this
        process holds or awaits ``lock_pool_max`` other locks.
        """
        ident = self.lock_ident(namespace, key)
        started = time.monotonic()
        self._current_pool()  # replaces both pools in a forked child
        pool = self._lock_pool
        if pool is None:
            raise BackendUnavailableError("the PostgreSQL store is closed")
        conn = self._lock_session(pool, timeout)
        try:
            if timeout == 0:
                row = conn.execute(TRY_LOCK, (ident,)).fetchone()
                got = bool(row and row[0])
            else:
                wait = "0"  # no limit
                if timeout is not None:
                    left = timeout - (time.monotonic() - started)
                    wait = f"{max(1, round(left * 1000))}ms"
                try:
                    with conn.transaction():
                        conn.execute("SELECT set_config('lock_timeout', %s, true)", (wait,))
                        conn.execute("SELECT pg_advisory_lock(%s)", (ident,))
                    got = True
                except psycopg.errors.LockNotAvailable:
                    got = False
        except BaseException as exc:
            pool.discard(conn)  # interrupted mid-wait, it may hold the lock: end the session
            if isinstance(exc, psycopg.Error):
                raise self._unavailable(exc) from None
            raise
        if not got:
            pool.release(conn)
            return None
        return _AdvisoryLock(self._held, pool, conn, ident)

    def lock_ident(self, namespace: str, key: str) -> int:
        """The advisory lock id of ``key`` in ``namespace``: 64 bits of a hash of the
        table, namespace and key (the same in every process, sync or async)."""
        digest = lock_digest(self.schema, self.table, namespace, key, size=8)
        return int.from_bytes(bytes.fromhex(digest), "big", signed=True)

    def _lock_session(self, pool: connpool.ConnectionPool, timeout: float | None) -> Any:
        """A live connection of the lock pool, waited for up to ``timeout``."""
        for _ in range(pool.max_size + 1):
            try:
                conn = pool.acquire(math.inf if timeout is None else timeout)
            except connpool.PoolExhausted as exc:
                raise self.lock_pool_exhausted(exc.size, exc.waited) from None
            except psycopg.Error as exc:
                raise self._unavailable(exc) from None
            if _alive(conn):
                return conn
            pool.discard(conn)  # closed while idle (a restart): take another
        raise BackendUnavailableError(f"PostgreSQL at {self.where} keeps closing connections")

    # -- backend API ---------------------------------------------------------------------

    def bucket(self, namespace: str) -> PostgreSQLBucket:
        return PostgreSQLBucket(self, namespace)

    def namespaces(self) -> list[str]:
        # A skip-scan over the primary key: one index probe per namespace (plus the
        # expired rows it steps over: a namespace holding only those is empty).
        live = LIVE.format(p="%(now)s")
        query = self.compose(
            f"WITH RECURSIVE ns(n) AS (SELECT (SELECT namespace FROM {{t}} WHERE {live} "
            "ORDER BY namespace LIMIT 1) UNION ALL "
            f"SELECT (SELECT namespace FROM {{t}} WHERE namespace > n AND {live} "
            "ORDER BY namespace LIMIT 1) FROM ns "
            "WHERE n IS NOT NULL) SELECT n FROM ns WHERE n IS NOT NULL"
        )
        return [row[0] for row in self.all(query, {"now": self.clock()})]

    def purge(self, namespace: str | None = None) -> dict[str, int]:
        return purge_table(self, namespace)

    def drop(self) -> None:
        """Drop this store's table (tests and tooling; not part of the Backend contract)."""
        with self._connection() as conn:
            conn.execute(self.compose("DROP TABLE IF EXISTS {t}"))

    def identity(self) -> tuple[object, ...]:
        return (*super().identity(), self.schema, self.table)

    def info(self) -> dict[str, str]:
        row = self.one(sql.SQL("SELECT current_setting('server_version')"), None)
        return {
            **super().info(),
            "server": f"PostgreSQL {row[0] if row else '?'} at {self.where}",
            "driver": f"psycopg {psycopg.__version__}",
            "table": f"{self.schema}.{self.table}",
        }
