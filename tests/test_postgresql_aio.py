"""PostgreSQL's native async driver (plugstore.backends.postgresql_aio), against the real
server: what the async conformance kit (tests/test_postgresql_backend.py -k async) does
not show -- that the native path is the one taken, cancellation mid-statement, an
unreachable port, busy pools, refused statements, and advisory locks across processes.

Every run works in a schema of its own (dropped at the end), every test in its own table.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Callable, Coroutine, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

import plugstore
import plugstore.aio as aio
from plugstore.aio import AsyncStore
from plugstore.aio.runtime import Runtime
from plugstore.backend import Options
from plugstore.backends.postgresql import PostgreSQLBackend
from plugstore.backends.postgresql_aio import PostgreSQLAsyncBucket, PostgreSQLAsyncDriver
from plugstore.errors import (
    BackendUnavailableError,
    LockLostError,
    LockTimeoutError,
    PoolExhaustedError,
    StoreNotOpenError,
)
from plugstore.url import StoreURL
from servers import require_server

HOST, PORT, DB, USER = "127.0.0.1", 5432, "test", "postgres"
SCHEMA = f"pgaio_{uuid.uuid4().hex[:12]}"
BASE = f"postgresql://{USER}@{HOST}:{PORT}/{DB}"
ADMIN = f"host={HOST} port={PORT} dbname={DB} user={USER}"


@pytest.fixture(scope="module", autouse=True)
def _run_schema() -> Iterator[None]:
    require_server("PostgreSQL", HOST, PORT)
    yield
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))


@pytest.fixture
def table(tmp_path: Path) -> str:
    name = re.sub(r"\W", "_", tmp_path.name).lower()[:40]
    return f"t_{name}_{zlib.crc32(str(tmp_path).encode()):08x}"


def url_for(table: str, **options: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"schema": SCHEMA, "table": table, **options}.items())
    return f"{BASE}?{query}"


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 120))


class RefusingExecutor(concurrent.futures.Executor):
    """An executor that refuses every call: the async store may not use its threads."""

    def __init__(self) -> None:
        self.refused: list[str] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.refused.append(getattr(fn, "__qualname__", repr(fn)))
        raise AssertionError(f"ran on a thread: {fn!r}")

    def run_async(self, loop: Any, fn: Callable[..., Any], *args: Any) -> Any:
        return self.submit(fn, *args)  # what the async store's calls use


def driver_of(astore: AsyncStore) -> PostgreSQLAsyncDriver:
    driver = astore._driver
    assert isinstance(driver, PostgreSQLAsyncDriver)
    return driver


def test_the_native_driver_runs_every_operation_without_a_thread(table: str) -> None:
    async def body() -> None:
        async with aio.open(url_for(table)) as astore:
            ns = astore.namespace("n")
            assert isinstance(ns._bucket, PostgreSQLAsyncBucket)
            runtime = astore._runtime
            threads, refusing = runtime.executor, RefusingExecutor()
            runtime.executor = refusing  # type: ignore[assignment]
            try:
                await ns.set("a", {"x": 1})
                assert await ns.get("a") == {"x": 1}
                assert await ns.incr("c", 5) == 5
                assert await ns.decr("c") == 4
                await ns.set("t", 1, ttl=60)
                ttl = await ns.ttl("t")
                assert ttl is not None
                assert 59 < ttl <= 60
                assert await ns.add("new", 1, ttl=30)
                assert not await ns.add("new", 2)
                assert await ns.expire("new", 90)
                ttl = await ns.ttl("new")
                assert ttl is not None
                assert 89 < ttl <= 90
                assert await ns.persist("new")
                assert await ns.ttl("new") is None
                assert not await ns.expire("absent", 5)
                await ns.delete("new")
                await ns.set_many({f"m{i:03d}": i for i in range(600)})  # two pages
                assert await ns.get_many(["m000", "m599", "nope"]) == {"m000": 0, "m599": 599}
                assert len([k async for k in ns.keys("m")]) == 600
                assert await ns.count() == 603
                assert await ns._bucket.stored_size("m") == 600 * 4 + 10 + 180 + 500 * 3
                assert await ns.replace_if("a", await ns.get_raw("a"), 2)
                assert await ns.pop("a") == 2
                assert await ns.setdefault("s", 3) == 3
                assert await ns.compute("s", lambda v: v + 1) == 4
                async with ns.lock("k", timeout=1) as lock:
                    assert lock.held
                    with pytest.raises(LockTimeoutError):
                        await ns.lock("k", timeout=0.1).acquire()
                scope = ns.scope(guild=1)
                await scope.replace({"a": 1, "b": 2})  # write_batch: one transaction
                assert await scope.get("b") == 2
                await ns.clear()
                assert await ns.count() == 0
                await ns.delete("c") if await ns.contains("c") else None
                # A load into the new table: the ANALYZE it is due runs natively too.
                await ns.set_many({f"b{i:05d}": i for i in range(10_000)})
                assert astore.sync.backend._unanalyzed is None  # type: ignore[attr-defined]
            finally:
                runtime.executor = threads
            assert refusing.refused == []
            astore.sync.backend.drop()  # type: ignore[attr-defined]

    run(body)


def _sessions(app: str) -> list[tuple[str, str | None]]:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT state, wait_event_type FROM pg_stat_activity WHERE application_name = %s",
            (app,),
        ).fetchall()
    return [(row[0], row[1]) for row in rows]


def test_tasks_cancelled_mid_statement_leave_the_pool_whole(table: str) -> None:
    """100 tasks blocked in their statements (a row lock held by another session) or
    waiting for a connection are cancelled -- half of them twice, the second time while
    psycopg waits for the server to cancel the statement.  Then: no session of the
    store is left in a transaction or running, the pool gives out all its connections,
    each idle, and the store serves 100 concurrent calls."""
    app = f"pgaio-cancel-{uuid.uuid4().hex[:8]}"
    qualified = sql.Identifier(SCHEMA, table)

    async def body() -> None:
        async with aio.open(url_for(table, pool_max=10, application_name=app)) as astore:
            ns = astore.namespace("n")
            await ns.set("k", "original")
            blocker = psycopg.connect(ADMIN)  # a transaction holding the row's lock
            blocker.execute(
                sql.SQL("SELECT 1 FROM {} WHERE namespace = 'n' AND key = 'k' FOR UPDATE").format(
                    qualified
                )
            )
            try:
                writes: list[Callable[[int], Coroutine[Any, Any, Any]]] = [
                    lambda i: ns.set("k", i),
                    lambda i: ns.incr("k"),  # refused later: "k" is no counter
                    lambda i: ns.set_many({"k": i, f"other{i}": i}),  # a transaction
                    lambda i: ns.delete("k"),
                ]
                tasks = [asyncio.ensure_future(writes[i % 4](i)) for i in range(100)]
                deadline = time.monotonic() + 20
                while _sessions(app).count(("active", "Lock")) < 10:
                    assert time.monotonic() < deadline, _sessions(app)
                    await asyncio.sleep(0.05)
                for task in tasks:
                    task.cancel()
                await asyncio.sleep(0.001)
                for task in tasks[::2]:
                    task.cancel()  # again, while the first cancellation is handled
                outcomes = await asyncio.gather(*tasks, return_exceptions=True)
                assert all(isinstance(o, asyncio.CancelledError) for o in outcomes), outcomes
            finally:
                blocker.rollback()
                blocker.close()
            await asyncio.sleep(0.5)  # connections closed by psycopg are replaced

            sessions = _sessions(app)
            assert all(state == "idle" for state, _ in sessions), sessions
            pool = driver_of(astore)._pool
            assert pool is not None
            conns = [await pool.getconn(5) for _ in range(10)]  # all of them, at once
            try:
                for conn in conns:
                    assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
                    assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
            finally:
                for conn in conns:
                    await pool.putconn(conn)
            assert pool.get_stats()["pool_size"] == 10
            assert await ns.get("k") in ("original", *range(100))  # whole, or not at all
            results = await asyncio.gather(*(ns.incr("after") for _ in range(100)))
            assert sorted(results) == list(range(1, 101))
            astore.sync.backend.drop()  # type: ignore[attr-defined]

    run(body)


def test_cancelled_lock_holders_and_waiters_leave_no_advisory_lock(table: str) -> None:
    app = f"pgaio-locks-{uuid.uuid4().hex[:8]}"

    async def body() -> None:
        async with aio.open(url_for(table, lock_pool_max=4, application_name=app)) as astore:
            ns = astore.namespace("n")

            async def hold(key: str) -> None:
                async with ns.lock(key, timeout=None):
                    await asyncio.sleep(3600)

            tasks = [asyncio.ensure_future(hold(f"k{i % 8}")) for i in range(40)]
            await asyncio.sleep(0.5)  # 4 holders (the lock pool), the others waiting
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with psycopg.connect(ADMIN, autocommit=True) as conn:
                held = conn.execute(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                    "WHERE l.locktype = 'advisory' AND a.application_name = %s",
                    (app,),
                ).fetchone()
            assert held == (0,)
            async with ns.lock("k0", timeout=0), ns.lock("k1", timeout=0):
                pass

    run(body)


def test_an_unreachable_port_fails_fast_and_clearly() -> None:
    url = "postgresql://bob:s3cr3t-pw@127.0.0.1:1/test?connect_timeout=1&retry_timeout=1"

    async def body() -> None:
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError) as err:
            await aio.open(url)
        assert time.monotonic() - started < 10
        assert "127.0.0.1:1" in str(err.value)
        assert "s3cr3t" not in str(err.value)

        # The driver on its own (the sync backend never opened): with pool_min=1 its
        # open fails; with pool_min=0 it opens, and each operation fails in bounded time.
        for pool_min in (1, 0):
            options = {"pool_min": pool_min, "connect_timeout": 1, "retry_timeout": 1}
            backend = PostgreSQLBackend(StoreURL.parse(url), Options(options))
            runtime = Runtime(asyncio.get_running_loop(), 1, "(test)")
            driver = PostgreSQLAsyncDriver(backend, runtime)
            started = time.monotonic()
            try:
                if pool_min:
                    with pytest.raises(BackendUnavailableError) as err:
                        await driver.open()
                    messages = [str(err.value)]
                else:
                    await driver.open()
                    bucket = driver.bucket(backend.bucket("n"))
                    messages = []
                    for op in (
                        partial(bucket.incr, "c", 1),  # never retried
                        partial(bucket.get, "c"),  # retried for retry_timeout
                        partial(bucket.lock, "k", 0.5, 30),
                    ):
                        with pytest.raises(BackendUnavailableError) as err:
                            await op()
                        assert not isinstance(err.value, PoolExhaustedError)
                        messages.append(str(err.value))
                    await driver.aclose()
            finally:
                runtime.shutdown()
            assert time.monotonic() - started < 20
            for message in messages:
                assert "PostgreSQL at 127.0.0.1:1 is unavailable" in message
                assert "refused" in message  # the server's answer, not a pool's timeout
                assert "s3cr3t" not in message

    run(body)


def test_busy_pools_say_so(table: str) -> None:
    url = url_for(table, pool_max=1, lock_pool_max=1, connect_timeout=1)

    async def body() -> None:
        async with aio.open(url) as astore:
            ns = astore.namespace("n")
            pool = driver_of(astore)._pool
            assert pool is not None
            held = await pool.getconn()
            try:
                for op in (lambda: ns.incr("c"), lambda: ns.get("c")):
                    started = time.monotonic()
                    with pytest.raises(PoolExhaustedError) as err:
                        await op()
                    assert time.monotonic() - started < 10  # not retried for retry_timeout
                    assert "all 1 connections" in str(err.value)
                    assert "pool_max" in str(err.value)
            finally:
                await pool.putconn(held)
            assert await ns.incr("c") == 1

            # The one connection taken by a task whose statement waits (a row lock held
            # by another session): the next task waits connect_timeout, then says so.
            blocker = psycopg.connect(ADMIN)
            blocker.execute(
                sql.SQL("SELECT 1 FROM {} WHERE key = 'c' FOR UPDATE").format(
                    sql.Identifier(SCHEMA, table)
                )
            )
            try:
                stuck = asyncio.ensure_future(ns.set("c", 0))
                await asyncio.sleep(0.2)
                started = time.monotonic()
                with pytest.raises(PoolExhaustedError, match="other tasks of this process"):
                    await ns.get("c")
                assert 0.9 < time.monotonic() - started < 10
            finally:
                blocker.rollback()
                blocker.close()
            await stuck
            assert await ns.incr("c") == 1
            async with ns.lock("a", timeout=1):
                with pytest.raises(PoolExhaustedError, match="lock_pool_max"):
                    await ns.lock("b", timeout=0.2).acquire()
                assert await ns.incr("c") == 2  # statements keep their own pool
            async with ns.lock("b", timeout=0):
                pass

    run(body)


@pytest.fixture
def limited_role() -> Iterator[str]:
    role = f"pgaio_role_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    yield role
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
        )
        conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _admin(*statements: sql.Composable) -> None:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def test_refused_statements_and_lost_connections_are_plugstore_errors(
    limited_role: str, table: str
) -> None:
    """Privileges taken away: every operation says what to grant.  Then the role may no
    longer connect and its sessions are ended: reads retry for retry_timeout, incr fails
    at once, each as BackendUnavailableError with the server's reason."""
    role, schema = sql.Identifier(limited_role), sql.Identifier(SCHEMA)
    _admin(
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema),
        sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(schema, role),
        sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(DB), role),
    )  # the fixture's DROP OWNED revokes them
    url = (
        f"postgresql://{limited_role}:pw-s3cr3t@{HOST}:{PORT}/{DB}?schema={SCHEMA}"
        f"&table={table}&retry_timeout=1&connect_timeout=1"
    )

    async def body() -> None:
        async with aio.open(url) as astore:
            ns = astore.namespace("n")
            await ns.set("k", 1)
            _admin(
                sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(
                    sql.Identifier(SCHEMA, table), role
                )
            )
            for op in (
                lambda: ns.set("k", 2),
                lambda: ns.get("k"),
                lambda: ns.incr("c"),
                lambda: ns.count(),
                lambda: ns.set_many({"a": 1, "b": 2}),
            ):
                refused = r"refused.*permission denied.*grant"
                with pytest.raises(BackendUnavailableError, match=refused) as e:
                    await op()
                assert isinstance(e.value.__cause__, psycopg.errors.InsufficientPrivilege)
                assert "s3cr3t" not in str(e.value)
            with psycopg.connect(ADMIN, autocommit=True) as conn:
                conn.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT 0").format(role))
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                    (limited_role,),
                )
            await asyncio.sleep(0.3)
            for op in (lambda: ns.get("k"), lambda: ns.incr("c")):
                started = time.monotonic()
                with pytest.raises(BackendUnavailableError, match="unavailable") as e:
                    await op()
                assert time.monotonic() - started < 10
                assert "s3cr3t" not in str(e.value)

    run(body)


CHILD = """
import sys, plugstore
from plugstore.errors import LockTimeoutError
with plugstore.open(sys.argv[1]) as store:
    ns = store.namespace("n")
    try:
        with ns.lock("k", timeout=float(sys.argv[2])):
            print("took it")
    except LockTimeoutError:
        print("taken")
"""


def _sync_process_tries(url: str, timeout: float) -> str:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, url, str(timeout)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_held_advisory_lock_excludes_a_sync_process_and_ends_with_the_store(
    table: str,
) -> None:
    url = url_for(table)

    async def body() -> None:
        loop = asyncio.get_running_loop()
        astore = await aio.open(url)
        ns = astore.namespace("n")
        lock = await ns.lock("k", timeout=1).acquire()
        assert await loop.run_in_executor(None, _sync_process_tries, url, 0.3) == "taken"
        await astore.aclose()  # the lock's session ends with the store
        assert await loop.run_in_executor(None, _sync_process_tries, url, 0) == "took it"
        with pytest.raises(LockLostError):
            await lock.release()
        with pytest.raises(StoreNotOpenError):
            await ns.lock("k").acquire()

        # And a sync process's lock keeps an async waiter out until it is released.
        async with aio.open(url) as astore:
            ans = astore.namespace("n")
            with (
                plugstore.open(url) as store,
                store.namespace("n").lock("k", timeout=1),
                pytest.raises(LockTimeoutError),
            ):
                await ans.lock("k", timeout=0.3).acquire()
            async with ans.lock("k", timeout=0):
                pass

    run(body)


def test_tasks_cancelled_while_waiting_for_a_connection_stop(table: str) -> None:
    """50 tasks looping on get() over a 4-connection pool are cancelled at once, 30
    times: every one stops (a cancellation the pool swallowed as it handed a connection
    over would keep its loop running), and the pool is whole afterwards."""

    async def body() -> None:
        async with aio.open(url_for(table, pool_max=4)) as astore:
            ns = astore.namespace("n")
            await ns.set("k", 1)

            async def reader() -> None:
                while True:
                    await ns.get("k")

            for round_ in range(30):
                tasks = [asyncio.ensure_future(reader()) for _ in range(50)]
                await asyncio.sleep(0.002 * (round_ % 10))
                for task in tasks:
                    task.cancel()
                _, pending = await asyncio.wait(tasks, timeout=10)
                assert not pending, f"round {round_}: {len(pending)} tasks kept running"
            pool = driver_of(astore)._pool
            assert pool is not None
            conns = [await pool.getconn(5) for _ in range(4)]
            for conn in conns:
                await pool.putconn(conn)
            assert await ns.get("k") == 1
            astore.sync.backend.drop()  # type: ignore[attr-defined]

    run(body)


def test_finish_completes_a_clean_up_its_cancelled_caller_gave_up_on() -> None:
    """aio.finish: a coroutine that must wait (here: for a lock) runs to its end after
    the task awaiting it is cancelled; one that need not wait runs without a task."""
    from plugstore.aio.finish import finish

    async def body() -> None:
        lock = asyncio.Lock()
        done: list[str] = []

        async def clean_up(name: str) -> str:
            async with lock:
                done.append(name)
            return name

        assert await finish(clean_up("free")) == "free"  # no wait
        await lock.acquire()
        caller = asyncio.ensure_future(finish(clean_up("after cancel")))
        await asyncio.sleep(0.01)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert done == ["free"]
        lock.release()
        await asyncio.sleep(0.01)
        assert done == ["free", "after cancel"]  # it went on by itself

        async def fails() -> None:
            async with lock:
                raise ValueError("raised in the clean-up")

        await lock.acquire()
        failing = asyncio.ensure_future(finish(fails()))
        await asyncio.sleep(0.01)
        lock.release()
        with pytest.raises(ValueError, match="raised in the clean-up"):
            await failing

    run(body)


def test_libpq_options_reach_the_async_connections(table: str) -> None:
    """libpq options from the URL reach the async pools' connections, statement and
    lock sessions alike (they share the sync backend's conninfo); sslmode=require on a
    server without TLS is refused when the store opens, with the server's answer."""
    app = f"pgaio-opts-{uuid.uuid4().hex[:8]}"

    async def body() -> None:
        url = url_for(table, application_name=app, sslmode="disable")
        async with aio.open(url) as astore:
            driver = driver_of(astore)
            row = await driver.one("SELECT current_setting('application_name')", None)
            assert row == (app,)
            ns = astore.namespace("n")
            async with ns.lock("k", timeout=1):  # a lock session: the lock pool's
                assert _sessions(app).count(("idle", "Client")) >= 2
        with psycopg.connect(ADMIN) as conn:
            ssl = conn.execute("SELECT current_setting('ssl')").fetchone()
        if ssl == ("off",):
            with pytest.raises(BackendUnavailableError, match="SSL"):
                await aio.open(url_for(table, sslmode="require"))

    run(body)
