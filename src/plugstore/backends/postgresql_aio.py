"""The native async driver of the PostgreSQL backend (``plugstore.aio`` over psycopg 3's
async API and ``psycopg_pool.AsyncConnectionPool``).

It moves bytes and nothing else.  Every statement it runs -- text, parameters, whether
it may be repeated after a lost connection -- and the reading of every result come
from the sync bucket (:class:`~plugstore.backends.sqltable.TableBucket`'s ``sql_*`` and
``*_of`` methods, :class:`~plugstore.backends.postgresql.PostgreSQLBucket`'s ``incr``
and bulk read), and so do the error messages, the retry policy and the lock ids: a sync
and an async process share one table, one counter and one advisory lock.

* **Connections**: an ``AsyncConnectionPool`` (``pool_min``/``pool_max``, autocommit)
  and a second one for lock sessions (``lock_pool_max``), both made in the event loop
  after the sync backend has opened (and created the table).  A pooled connection the
  server closed while idle is passed over before anything is sent on it.
* **Lost connections**: reads and upserts of a given value are retried for
  ``retry_timeout`` with the sync backend's back-off, sleeping in the event loop;
  ``incr``, compare-and-set and counted deletes raise
  :class:`~plugstore.errors.BackendUnavailableError` at once.  A busy pool is a
  :class:`~plugstore.errors.PoolExhaustedError`; a statement the server refuses
  (privileges, a read-only server) says what to do, as in the sync backend.
* **Locks**: a session advisory lock on a connection of the lock pool, tried with
  ``pg_try_advisory_lock`` and waited for with ``asyncio.sleep`` between tries (the
  sync lock's polling schedule): no thread is held while waiting.  Released with
  ``pg_advisory_unlock``; closing the async store ends the sessions of the locks it
  still holds, which frees them.

**Cancellation** (read from psycopg 3.3 and psycopg_pool 3.3).  A task cancelled while
its statement runs: psycopg asks the server to cancel the statement and waits (up to
5 s) for it to end before raising ``CancelledError``, so the connection is idle again;
if that wait is itself interrupted, psycopg closes the connection.  Either way the
connection goes back to the pool with :func:`~plugstore.aio.finish.finish`, which no
cancellation interrupts, and the pool rolls back a transaction left open
(``write_batch`` interrupted between statements) or replaces a closed connection.  A
task cancelled while it waits for a connection leaves the pool's queue; one cancelled
just as it is given one may, on Python before 3.12, get it and lose the cancellation
(the pool waits with ``asyncio.wait_for``): :func:`_take` gives the connection back and
raises it.  A lock try interrupted mid-statement ends its session (it may have taken
the lock).  A cancelled write may still have been applied, as with the sync API on a
thread: it lands whole or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..aio.bucket import AsyncBucket, AsyncDriver
from ..aio.finish import finish
from ..aio.locks import AsyncHeld
from ..aio.runtime import Runtime
from ..backend import Backoff, Bucket
from ..errors import BackendUnavailableError, StoreError, StoreNotOpenError
from ..locks import Waiter
from .postgresql import (
    NO_STATISTICS,
    TRY_LOCK,
    UNLOCK,
    PostgreSQLBackend,
    PostgreSQLBucket,
    _alive,
)
from .sqltable import Batch

T = TypeVar("T")

#: What "wait forever" (a lock with ``timeout=None``) gives a pool's wait, in seconds.
_FOREVER = 365 * 86400.0

Work = Callable[[Any, Any, Any], Awaitable[T]]


async def _fetchone(conn: Any, query: str, params: Any) -> Any:
    cursor = await conn.execute(query, params)
    return await cursor.fetchone()


async def _fetchall(conn: Any, query: str, params: Any) -> list[Any]:
    cursor = await conn.execute(query, params)
    rows: list[Any] = await cursor.fetchall()
    return rows


async def _rowcount(conn: Any, query: str, params: Any) -> int:
    cursor = await conn.execute(query, params)
    count: int = cursor.rowcount
    return count


async def _transaction(conn: Any, steps: Sequence[Batch], _: Any) -> None:
    async with conn.transaction(), conn.cursor() as cursor:
        for query, rows in steps:
            await cursor.executemany(query, rows)


async def _analyze(conn: Any, analyze: Any, table: Any) -> None:
    """``ANALYZE`` the table unless the server has statistics of it by now."""
    row = await _fetchone(conn, NO_STATISTICS, (table,))
    if row and row[0]:
        await conn.execute(analyze)


#: ``Task.cancelling`` (Python 3.11+): how many cancellations of a task are pending.
_cancelling: Callable[[asyncio.Task[Any]], int] | None = getattr(asyncio.Task, "cancelling", None)


async def _take(pool: AsyncConnectionPool[Any], timeout: float) -> Any:
    """``pool.getconn(timeout)``, never swallowing the caller's cancellation.

    A task cancelled just as the pool hands it a connection can get the connection
    and lose the cancellation (``asyncio.wait_for`` before Python 3.12, which the pool
    waits with, may return the result instead of raising): the task would then run on
    as if never cancelled -- a cancelled loop would never stop.  When a cancellation
    arrived during the wait and none was raised, the connection goes back and the
    cancellation is raised here.
    """
    cancelling = _cancelling
    task = asyncio.current_task() if cancelling is not None else None
    if cancelling is None or task is None:
        return await pool.getconn(timeout)
    before = cancelling(task)
    conn = await pool.getconn(timeout)
    if cancelling(task) > before:
        await finish(pool.putconn(conn))
        raise asyncio.CancelledError
    return conn


class _Slots:
    """At most ``size`` statements of one store at a time; the tasks beyond them wait
    here, first come, first served, up to a timeout.

    psycopg_pool queues the tasks waiting for a connection itself, but each wait there
    costs ``asyncio.wait_for`` (a task before Python 3.12) and a condition: with 100
    tasks on 10 connections, 170 µs of CPU per ``get`` against 135 µs with this queue
    (measured here), where a waiter costs one future and one timer; and no
    cancellation is lost in it.
    """

    __slots__ = ("_free", "_waiters")

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: deque[asyncio.Future[bool]] = deque()

    async def acquire(self, timeout: float) -> bool:
        """Take a slot, waiting up to ``timeout`` seconds; whether one was taken."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(timeout, _give_up, waiter)
        try:
            return await waiter
        except BaseException:  # cancelled
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self.release()  # handed to us just as we were cancelled: pass it on
            raise
        finally:
            timer.cancel()

    def release(self) -> None:
        """Hand the slot to the task that has waited longest, or free it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # not timed out nor cancelled
                waiter.set_result(True)
                return
        self._free += 1


def _give_up(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)  # left in the queue: release() passes over it


class PostgreSQLAsyncDriver(AsyncDriver):
    """The pools of one async store and the awaited twins of the sync backend's
    statement helpers (``one``, ``all``, ``run``, ``run_batch``, ``run_transaction``)."""

    backend: PostgreSQLBackend

    def __init__(self, backend: PostgreSQLBackend, runtime: Runtime) -> None:
        super().__init__(backend, runtime)
        self._pool: AsyncConnectionPool[Any] | None = None
        self._lock_pool: AsyncConnectionPool[Any] | None = None
        #: Locks held now: their sessions end when the store closes.
        self._held: set[_AdvisoryLock] = set()
        #: One slot per pooled connection: the tasks beyond them queue here.
        self._slots = _Slots(backend.pool_max)

    # -- opening and closing ---------------------------------------------------------------

    async def open(self) -> None:
        b = self.backend
        try:
            self._pool = await self._make_pool(b.pool_min, b.pool_max, "")
            # Lock sessions are made when first needed and kept while idle after.
            self._lock_pool = await self._make_pool(0, b.lock_pool_max, " locks")
        except BaseException:
            await self.aclose()
            raise

    async def _make_pool(self, min_size: int, max_size: int, what: str) -> AsyncConnectionPool[Any]:
        b = self.backend
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            b._conninfo(),
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True},
            timeout=b.connect_timeout,
            open=False,
            name=f"plugstore async{what} {b.where}",
        )
        try:
            await pool.open(wait=min_size > 0, timeout=b.connect_timeout)
        except PoolTimeout as exc:
            await pool.close()
            raise await self._probe_error() from exc
        return pool

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        lock_pool, self._lock_pool = self._lock_pool, None
        held, self._held = self._held, set()
        for lock in held:
            await lock.end_session()  # frees the lock; its release() then reports it lost
        for each in (lock_pool, pool):
            if each is not None:
                await each.close()  # connections in use close when they come back

    # -- errors ----------------------------------------------------------------------------

    async def _refusal(self) -> BackendUnavailableError | None:
        """One direct connect, on failure paths only: the server's reason if it refuses
        a connection (down, auth, too many clients), ``None`` if it accepts one."""
        b = self.backend
        try:
            conn = await psycopg.AsyncConnection.connect(b._conninfo())
        except psycopg.Error as exc:
            return b._unavailable(exc)
        await conn.close()
        return None

    async def _probe_error(self) -> BackendUnavailableError:
        """Why a pool got no connection in time (refused, auth, ...)."""
        return await self._refusal() or self.backend.slow_to_accept()

    async def _down(self, failed: BaseException) -> BackendUnavailableError:
        """The error for a server that stayed unreachable: a pool timeout says only that
        no connection came, so the server is asked why."""
        if isinstance(failed, PoolTimeout):
            return await self._probe_error()
        return self.backend._unavailable(failed)

    async def _busy(self) -> BackendUnavailableError:
        """Every statement slot stayed taken for ``connect_timeout``: other tasks hold
        all the pool's connections -- unless the server refuses new ones."""
        return await self._refusal() or self.backend.exhausted_error("tasks")

    async def _exhausted(self, failed: BaseException) -> BackendUnavailableError | None:
        """The error for a pool timeout that came from a full pool, not a down server
        (as ``PostgreSQLBackend._exhausted``)."""
        b, pool = self.backend, self._pool
        if not isinstance(failed, PoolTimeout) or pool is None or not b.pool_full(pool):
            return None  # still connecting: the server may be down or restarting
        return await self._busy()

    # -- statements ------------------------------------------------------------------------

    def _current(self) -> AsyncConnectionPool[Any]:
        self.runtime.check()  # this loop, this process, not closed
        pool = self._pool
        if pool is None:
            raise StoreNotOpenError(f"store {self.runtime.url} is closed")
        return pool

    async def _getconn(self, pool: AsyncConnectionPool[Any]) -> Any:
        """A pooled connection, passing over those the server closed while they idled
        (noticed before anything is sent, so even ``incr`` just takes another one)."""
        timeout = self.backend.connect_timeout
        for _ in range(pool.max_size):
            conn = await _take(pool, timeout)
            if _alive(conn):
                return conn
            await conn.close()
            await finish(pool.putconn(conn))  # the pool replaces a closed connection
        return await _take(pool, timeout)

    async def _do(self, work: Work[T], query: Any, params: Any, retry: bool) -> T:
        pool = self._current()
        slots = self._slots
        if not await slots.acquire(self.backend.connect_timeout):
            raise await self._busy() from None
        try:
            return await self._first(work, query, params, retry, pool)
        finally:
            slots.release()

    async def _first(
        self, work: Work[T], query: Any, params: Any, retry: bool, pool: AsyncConnectionPool[Any]
    ) -> T:
        try:
            conn = await self._getconn(pool)
            try:
                return await work(conn, query, params)
            finally:
                await finish(pool.putconn(conn))  # the pool discards it if it broke
        except psycopg.OperationalError as exc:  # PoolTimeout is one too
            return await self._again(work, query, params, retry, exc)
        except psycopg.Error as exc:
            raise self.backend._refused(exc) from exc

    async def _again(
        self, work: Work[T], query: Any, params: Any, retry: bool, failed: BaseException
    ) -> T:
        """After a failure: retry only if ``retry``, for ``retry_timeout`` (the sync
        backend's policy, see ``PostgreSQLBackend._call``)."""
        b = self.backend
        exhausted = await self._exhausted(failed)
        if exhausted is not None:
            raise exhausted from None  # the pool has waited connect_timeout already
        if not retry:
            raise await self._down(failed) from None
        backoff = Backoff(b.retry_timeout)
        while True:
            if backoff.expired():
                raise await self._down(failed) from None
            await asyncio.sleep(backoff.pause())
            pool = self._current()
            try:
                conn = await self._getconn(pool)
                try:
                    return await work(conn, query, params)
                finally:
                    await finish(pool.putconn(conn))
            except psycopg.OperationalError as exc:
                failed = exc
                exhausted = await self._exhausted(failed)
                if exhausted is not None:
                    raise exhausted from None
            except psycopg.Error as exc:
                raise b._refused(exc) from exc

    async def one(self, query: str, params: Any, retry: bool = False) -> Any:
        """The first row of ``query`` (awaited ``PostgreSQLBackend.one``)."""
        return await self._do(_fetchone, query, params, retry)

    async def all(self, query: str, params: Any, retry: bool = True) -> list[Any]:
        """Every row of ``query``; reads are retried after a lost connection by default."""
        return await self._do(_fetchall, query, params, retry)

    async def run(self, query: str, params: Any, retry: bool = False) -> int:
        """The row count of ``query``."""
        return await self._do(_rowcount, query, params, retry)

    async def run_batch(self, query: str, rows: list[tuple[Any, ...]]) -> None:
        """``query`` for every row, in one transaction."""
        await self.run_transaction([(query, rows)])

    async def run_transaction(self, steps: Sequence[Batch]) -> None:
        """Each ``(query, rows)`` step for its rows, all in one transaction; retried
        after a lost connection (deletes and upserts of given values)."""
        await self._do(_transaction, steps, None, True)
        b = self.backend
        if b.analyze_due(sum(len(batch) for _, batch in steps)):
            # Best effort (see PostgreSQLBackend.analyze_due): autovacuum will, else.
            with contextlib.suppress(StoreError):
                await self._do(_analyze, b.compose("ANALYZE {t}"), b.compose("{t}"), False)

    # -- locks -----------------------------------------------------------------------------

    async def advisory_lock(
        self, namespace: str, key: str, timeout: float | None
    ) -> _AdvisoryLock | None:
        """Hold the advisory lock of ``key`` (the sync backend's id) on a session of the
        lock pool until release, trying it until ``timeout`` (``None``: forever)."""
        b = self.backend
        self.runtime.check()
        pool = self._lock_pool
        if pool is None:
            raise StoreNotOpenError(f"store {self.runtime.url} is closed")
        ident = b.lock_ident(namespace, key)
        waiter = Waiter(timeout)  # waiting for a session counts toward timeout
        conn = await self._lock_session(pool, timeout)
        trying = False
        try:
            while True:
                trying = True
                row = await _fetchone(conn, TRY_LOCK, (ident,))
                trying = False
                if row and row[0]:
                    break
                pause = waiter.pause()
                if pause is None:
                    await finish(pool.putconn(conn))
                    return None
                await asyncio.sleep(pause)
        except BaseException as exc:
            if trying:  # interrupted mid-try, it may hold the lock: end the session
                await conn.close()
            await finish(pool.putconn(conn))
            if isinstance(exc, psycopg.Error):
                raise b._unavailable(exc) from None
            raise
        held = _AdvisoryLock(self, pool, conn, ident)
        self._held.add(held)
        return held

    async def _lock_session(self, pool: AsyncConnectionPool[Any], timeout: float | None) -> Any:
        """A live connection of the lock pool.  A full pool is waited for up to
        ``timeout``; one that may still grow gets at least ``connect_timeout`` to."""
        b = self.backend
        for _ in range(pool.max_size + 1):
            wait = _FOREVER if timeout is None else timeout
            if not b.pool_full(pool):
                wait = max(wait, b.connect_timeout)
            try:
                conn = await _take(pool, max(wait, 0.001))
            except PoolTimeout:
                if b.pool_full(pool):
                    raise b.lock_pool_exhausted(pool.max_size, wait) from None
                raise await self._probe_error() from None
            except psycopg.Error as exc:
                raise b._unavailable(exc) from None
            if _alive(conn):
                return conn
            await conn.close()  # closed while idle (a restart): take another
            await finish(pool.putconn(conn))
        raise BackendUnavailableError(f"PostgreSQL at {b.where} keeps closing connections")

    # -- buckets ---------------------------------------------------------------------------

    def bucket(self, sync: Bucket) -> AsyncBucket:
        if isinstance(sync, PostgreSQLBucket):
            return PostgreSQLAsyncBucket(sync, self.runtime, self)
        return AsyncBucket(sync, self.runtime)


class _AdvisoryLock(AsyncHeld):
    """A session advisory lock held by a connection of the async lock pool."""

    def __init__(
        self, driver: PostgreSQLAsyncDriver, pool: AsyncConnectionPool[Any], conn: Any, ident: int
    ) -> None:
        self._driver, self._pool, self._conn, self._ident = driver, pool, conn, ident

    async def release(self) -> bool:
        self._driver._held.discard(self)
        conn, pool = self._conn, self._pool
        try:
            row = await _fetchone(conn, UNLOCK, (self._ident,))
        except BaseException as exc:
            await conn.close()  # ending the session frees whatever it held
            await finish(pool.putconn(conn))
            if isinstance(exc, psycopg.Error):
                return False  # the session had ended, and the lock with it
            raise
        await finish(pool.putconn(conn))
        return bool(row and row[0])

    async def end_session(self) -> None:
        """Close the session (the store is closing): the server frees the lock."""
        await self._conn.close()


class PostgreSQLAsyncBucket(AsyncBucket):
    """One namespace, on psycopg's async API: the sync bucket's statements, awaited."""

    sync: PostgreSQLBucket

    def __init__(self, bucket: PostgreSQLBucket, runtime: Runtime, driver: PostgreSQLAsyncDriver):
        super().__init__(bucket, runtime)
        self.db = driver

    async def get(self, key: str) -> bytes | None:
        s = self.sync
        return s.value_of(await self.db.one(*s.sql_get(key)))

    async def get_with_deadline(self, key: str) -> tuple[bytes, float | None] | None:
        s = self.sync
        return s.entry_of(await self.db.one(*s.sql_get(key)))

    async def set(self, key: str, value: bytes) -> None:
        await self.db.run(*self.sync.sql_set(key, value))

    async def set_until(self, key: str, value: bytes, deadline: float) -> None:
        await self.db.run(*self.sync.sql_set_until(key, value, deadline))

    async def remove(self, key: str) -> bool:
        return await self.db.run(*self.sync.sql_remove(key)) > 0

    async def contains(self, key: str) -> bool:
        s = self.sync
        return s.present_of(await self.db.one(*s.sql_contains(key)))

    async def cas(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        stmt = self.sync.sql_cas(key, expected, new)
        if stmt is None:
            return not await self.contains(key)
        return await self.db.run(*stmt) > 0

    async def incr(self, key: str, delta: int) -> int:
        s = self.sync
        return s.counter_of(key, await self.db.one(*s.sql_incr(key, delta)))

    async def add(self, key: str, value: bytes, deadline: float | None) -> bool:
        return await self.db.run(*self.sync.sql_add(key, value, deadline)) > 0

    async def expire(self, key: str, deadline: float) -> bool:
        return await self.db.run(*self.sync.sql_expire(key, deadline)) > 0

    async def persist(self, key: str) -> bool:
        return await self.db.run(*self.sync.sql_persist(key)) > 0

    async def _pages(self, values: bool, prefix: str) -> AsyncIterator[list[Any]]:
        listing = self.sync.listing(values, prefix)
        rows = await self.db.all(*listing.first)
        while True:
            yield rows
            if not listing.more(rows):
                return
            rows = await self.db.all(*listing.after(rows))

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """The keys starting with ``prefix`` in code point order, a page per query."""
        async for rows in self._pages(False, prefix):
            for key in self.sync.keys_of(rows):
                yield key

    async def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        """``(key, value)`` pairs starting with ``prefix``, a page per query."""
        async for rows in self._pages(True, prefix):
            for pair in self.sync.items_of(rows):
                yield pair

    async def keys_page(self, prefix: str = "", limit: int | None = None) -> list[str]:
        found: list[str] = []
        if limit == 0:
            return found
        async for rows in self._pages(False, prefix):
            found += self.sync.keys_of(rows)
            if limit is not None and len(found) >= limit:
                return found[:limit]
        return found

    async def items_page(
        self, prefix: str = "", limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        found: list[tuple[str, bytes]] = []
        if limit == 0:
            return found
        async for rows in self._pages(True, prefix):
            found += self.sync.items_of(rows)
            if limit is not None and len(found) >= limit:
                return found[:limit]
        return found

    async def count(self, prefix: str = "") -> int:
        s = self.sync
        return s.count_of(await self.db.one(*s.sql_count(prefix)))

    async def stored_size(self, prefix: str = "") -> int:
        s = self.sync
        return s.count_of(await self.db.one(*s.sql_stored_size(prefix)))

    async def keys_after(self, prefix: str, after: str, limit: int) -> list[str]:
        if limit <= 0:
            return []
        s = self.sync
        return s.keys_of(await self.db.all(*s.sql_keys_after(prefix, after, limit)))

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        s = self.sync
        return s.many_of(await self.db.all(*s.sql_rows(keys)))

    async def get_many_with_deadlines(
        self, keys: Sequence[str]
    ) -> dict[str, tuple[bytes, float | None]]:
        s = self.sync
        return s.many_with_deadlines_of(await self.db.all(*s.sql_rows(keys)))

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        await self.db.run_batch(*self.sync.batch_set(items))

    async def set_many_until(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        await self.db.run_batch(*self.sync.batch_set_until(items))

    async def clear(self, prefix: str = "") -> int:
        live, expired = self.sync.sql_clear(prefix)
        removed = await self.db.run(*live)
        await self.db.run(*expired)
        return removed

    async def write_batch(
        self,
        sets: Sequence[tuple[str, bytes, float | None]],
        removes: Sequence[str] = (),
        clears: Sequence[str] = (),
        *,
        atomic: bool = True,
    ) -> None:
        await self.db.run_transaction(self.sync.batch_steps(sets, removes, clears))

    async def purge(self) -> int:
        return await self.db.run(*self.sync.sql_purge())

    async def lock(self, key: str, timeout: float | None, lease: float) -> AsyncHeld | None:
        """The session advisory lock of ``key`` (``lease`` is not needed: a dead
        holder's session ends)."""
        return await self.db.advisory_lock(self.namespace, key, timeout)


__all__ = ["PostgreSQLAsyncBucket", "PostgreSQLAsyncDriver"]
