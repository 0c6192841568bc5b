#!/usr/bin/env python
"""plugstore.aio benchmarks: the async API against the async drivers it competes with.

    python benchmarks/aio.py                      # full run (see docs/benchmarks.md)
    python benchmarks/aio.py --quick              # small sizes, 3 repeats
    python benchmarks/aio.py --only perop,lag --backends sqlite,redis --json aio.json

Four workloads in one run: per-op get/set/incr from one task; 100 tasks on a pool the
size of the peer's; the event loop's lag beside plugstore.aio calls; lost updates across
processes.  As in run.py, every contender of a workload runs once per repeat, in
alternating order, and ratios are medians of same-repeat pairs: compare ratios inside
one run, never numbers across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import gc
import importlib
import json
import multiprocessing
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import plugstore
import plugstore.aio
from harness import (
    Bar,
    Contender,
    Result,
    Row,
    Value,
    bar_line,
    bar_summary,
    fmt_rate,
    format_table,
    make_data,
    make_value,
    measure,
    span,
    unwind_on_sigterm,
    write_json,
)
from plugstore.aio.runtime import DEFAULT_THREADS
from servers import (
    MYSQL_URL,
    PG_DSN,
    PG_URL,
    REDIS_URL,
    _name,
    _redis_prefix,
    redis_purge,
    unavailable,
)

T = TypeVar("T")

WORKLOADS = ("perop", "tasks", "lag", "lost")
BACKENDS = ("memory", "shelf", "sqlite", "postgresql", "mysql", "redis", "dynamodb")
#: Servers probed before use: (port on 127.0.0.1, the module their peer needs).
SERVERS = {
    "postgresql": (5432, "psycopg_pool"),
    "mysql": (3306, "pymysql"),
    "redis": (6379, "redis"),
}
#: Backends that run this many times fewer operations in every workload: the DynamoDB
#: emulator serves a few hundred requests/s, one at a time; MariaDB flushes its log at
#: every commit (a few hundred writes/s here).
SLOWER = {"dynamodb": 8, "mysql": 4}
NS = "bench"
COUNTER = "counter"
SUBJECT = "plugstore.aio"
ON_THREAD = "sync API on a thread"
#: The ticker of the lag workload: it sleeps this long and measures how late it wakes.
TICK = 0.005
LAG_BAR_MS = 20.0
#: Tasks sharing the mixed calls of the lag workload.
LAG_WORKERS = 10
#: The shortest run of the "ticker alone" baseline, in ticks (it otherwise runs as long
#: as the latest plugstore.aio run on that backend, to have as many chances of noise).
BASELINE_TICKS = 100
INCR = "incr"
LOCKED = "locked get-then-set"


@dataclass
class AioSettings:
    n: int  # ops per phase per contender (per-op and tasks workloads)
    repeat: int
    tasks: int  # concurrent tasks in the tasks workload
    pool: int  # pool size and threads in the tasks workload, for plugstore and its peers
    lag_calls: int  # mixed plugstore calls beside the ticker
    lost_n: int  # operations per task in the lost-updates workload
    lost_tasks: int  # tasks per process in the lost-updates workload
    procs: int
    lost_runs: int


@dataclass
class Bench:
    """What every workload needs: the settings, the backends reachable, a scratch dir."""

    s: AioSettings
    tmp: Path
    backends: list[str]
    skipped: dict[str, str] = field(default_factory=dict)  # backend -> why it is not run
    endpoint: str | None = None  # the local DynamoDB's

    def scaled(self, backend: str, n: int) -> int:
        return max(1, n // SLOWER.get(backend, 1))

    def url(self, backend: str, d: Path) -> str:
        """A store URL of ``backend`` whose data is this run's own (``d`` is fresh)."""
        if backend == "memory":
            return "memory://"
        if backend == "shelf":
            return f"shelf:///{d / 'shelf'}"
        if backend == "sqlite":
            return f"sqlite:///{d / 'aio.db'}"
        if backend == "postgresql":
            return f"{PG_URL}?table={_name(d)}"
        if backend == "mysql":
            return f"{MYSQL_URL}?table={_name(d)}"
        if backend == "redis":
            return f"{REDIS_URL}?prefix={_redis_prefix(d)}"
        if backend != "dynamodb" or self.endpoint is None:
            raise ValueError(f"no store URL for {backend!r} here")
        return f"dynamodb://{_name(d)}?region=us-east-1&endpoint_url={self.endpoint}&create=true"

    def skip_notes(self) -> list[str]:
        return [f"skipped on {b}: {why}" for b, why in self.skipped.items()]


def slower_notes(backends: Sequence[str], what: str) -> list[str]:
    notes = [f"{b}: 1/{SLOWER[b]} of the {what}" for b in backends if b in SLOWER]
    if "dynamodb" in backends:
        notes.append("dynamodb: the local emulator, plugstore dev dynamodb, in its own process")
    return notes


def drop_data(backend: str, url: str) -> None:
    """Remove what a run left on a server (files go with their directory)."""
    if backend in ("postgresql", "mysql", "dynamodb"):
        with plugstore.open(url) as store:
            store.backend.drop()  # type: ignore[attr-defined]
    elif backend == "redis":
        redis_purge(url.split("prefix=", 1)[1])


def pool_options(backend: str, size: int) -> dict[str, Any]:
    """plugstore options that match a peer's pool of ``size`` connections."""
    if backend == "postgresql":
        return {"pool_min": size, "pool_max": size}
    if backend in ("mysql", "redis", "dynamodb"):
        return {"pool_max": size}
    return {}


# ------------------------------------------------------------------ contenders' operations


@dataclass
class Ops:
    """One contender's three operations, awaited: set a value, get it (a raw peer
    raises ``KeyError`` if it is absent, plugstore gives ``None``: the phases compare
    what they read), add 1 to a counter and return the new value."""

    set: Callable[[str, Value], Awaitable[Any]]
    get: Callable[[str], Awaitable[Any]]
    incr: Callable[[str], Awaitable[int]]


#: Opens a contender's store in a fresh directory: an async context giving its Ops.
Opener = Callable[[Path], contextlib.AbstractAsyncContextManager[Ops]]
#: Timed phases over Ops: seconds per op name.
Phases = Callable[[Ops, Sequence[str], Sequence[Value]], Awaitable[dict[str, float]]]


async def clocked(work: Callable[[], Awaitable[T]]) -> tuple[float, T]:
    """Await ``work()`` once; (seconds, its result).  Garbage is collected first."""
    gc.collect()
    t0 = time.perf_counter()
    out = await work()
    return time.perf_counter() - t0, out


async def one_task(ops: Ops, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:
    """Sequential awaits in one task: every set, then every get, then every incr."""

    async def sets() -> None:
        for k, v in zip(keys, values, strict=True):
            await ops.set(k, v)

    async def gets() -> Any:
        for k in keys:
            out = await ops.get(k)
        return out

    async def incrs() -> int:
        for _ in keys:
            total = await ops.incr(COUNTER)
        return total

    times: dict[str, float] = {}
    times["set"], _ = await clocked(sets)
    times["get"], last = await clocked(gets)
    if last != values[-1]:
        raise AssertionError(f"read back {last!r}, expected {values[-1]!r}")
    times["incr"], total = await clocked(incrs)
    if total != len(keys):
        raise AssertionError(f"incr counted {total}, not {len(keys)}")
    return times


def many_tasks(tasks: int) -> Phases:
    """``tasks`` tasks share the keys (task t takes every t-th): all set, then all get
    (each value checked), then all incr one counter."""

    async def phases(ops: Ops, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:
        pairs = list(zip(keys, values, strict=True))
        parts = [pairs[t::tasks] for t in range(tasks)]

        async def sets(part: list[tuple[str, Value]]) -> None:
            for k, v in part:
                await ops.set(k, v)

        async def gets(part: list[tuple[str, Value]]) -> None:
            for k, v in part:
                if await ops.get(k) != v:
                    raise AssertionError(f"read back a wrong value for {k!r}")

        async def incrs(count: int) -> int:
            last = 0
            for _ in range(count):
                last = await ops.incr(COUNTER)
            return last

        times: dict[str, float] = {}
        times["set"], _ = await clocked(lambda: asyncio.gather(*(sets(p) for p in parts)))
        times["get"], _ = await clocked(lambda: asyncio.gather(*(gets(p) for p in parts)))
        times["incr"], lasts = await clocked(
            lambda: asyncio.gather(*(incrs(len(p)) for p in parts))
        )
        if max(lasts) != len(keys):
            raise AssertionError(f"incr counted {max(lasts)}, not {len(keys)}")
        return times

    return phases


def contender(open_ops: Opener, phases: Phases, width: int = 1) -> Contender:
    """A harness contender: a new event loop, the store opened and warmed by ``width``
    concurrent writes (pools fill, threads start) untimed, then ``phases``."""

    def run(d: Path, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:
        async def main() -> dict[str, float]:
            async with open_ops(d) as ops:
                await asyncio.gather(*(ops.set(f"warm:{i}", values[0]) for i in range(width)))
                return await phases(ops, keys, values)

        return asyncio.run(main())

    return run


def plugstore_aio(bench: Bench, backend: str, options: dict[str, Any]) -> Opener:
    """plugstore.aio: ``await ns.set/get/incr`` on a store opened with ``options``."""

    @contextlib.asynccontextmanager
    async def opener(d: Path) -> AsyncIterator[Ops]:
        url = bench.url(backend, d)
        try:
            async with plugstore.aio.open(url, **options) as store:
                ns = store.namespace(NS)
                yield Ops(ns.set, ns.get, ns.incr)
        finally:
            drop_data(backend, url)

    return opener


def sync_on_threads(bench: Bench, backend: str, threads: int, options: dict[str, Any]) -> Opener:
    """The sync API, each call sent to a thread pool of ``threads`` with
    ``loop.run_in_executor``: what async code does without plugstore.aio."""

    @contextlib.asynccontextmanager
    async def opener(d: Path) -> AsyncIterator[Ops]:
        url = bench.url(backend, d)
        store = plugstore.open(url, **options)
        ns = store.namespace(NS)
        loop = asyncio.get_running_loop()
        pool = concurrent.futures.ThreadPoolExecutor(threads)

        def on_thread(fn: Callable[..., T]) -> Callable[..., Awaitable[T]]:
            return lambda *args: loop.run_in_executor(pool, fn, *args)

        try:
            yield Ops(on_thread(ns.__setitem__), on_thread(ns.__getitem__), on_thread(ns.incr))
        finally:
            pool.shutdown(wait=True)
            store.close()
            drop_data(backend, url)

    return opener


def sql_ops(
    fetch: Callable[[str, Any], Awaitable[Any]],
    execute: Callable[[str, Any], Awaitable[Any]],
    queries: dict[str, str],
    incr_params: Callable[[str], Any],
) -> Ops:
    """A raw SQL peer running plugstore's own statements (``queries``) with a driver's
    ``fetch`` (one row or ``None``) and ``execute``; values JSON-encoded in the loop."""
    get_q, set_q, incr_q = queries["get"], queries["set"], queries["incr"]

    async def set_(key: str, value: Value) -> None:
        await execute(set_q, (NS, key, json.dumps(value).encode()))

    async def get(key: str) -> Any:
        row = await fetch(get_q, (NS, key))
        if row is None or (row[1] is not None and row[1] <= time.time()):
            raise KeyError(key)
        return json.loads(row[0])

    async def incr(key: str) -> int:
        row = await fetch(incr_q, incr_params(key))
        return int(row[0] if isinstance(row[0], str) else bytes(row[0]))

    return Ops(set_, get, incr)


def plugstore_queries(url: str) -> dict[str, str]:
    """Create plugstore's table at ``url`` (untimed) and return its statements, so a raw
    peer makes exactly the round trips plugstore makes, on the same table layout."""
    with plugstore.open(url) as store:
        return dict(store.backend.queries)  # type: ignore[attr-defined]


def raw_psycopg(pool_size: int | None) -> Opener:
    """psycopg 3 async: one ``AsyncConnection`` (``pool_size`` None) or an
    ``AsyncConnectionPool`` of ``pool_size`` (a connection checked out per op)."""

    @contextlib.asynccontextmanager
    async def opener(d: Path) -> AsyncIterator[Ops]:
        import psycopg
        from psycopg_pool import AsyncConnectionPool

        url = f"{PG_URL}?table={_name(d)}_raw"
        queries = plugstore_queries(url)

        def incr_params(key: str) -> dict[str, Any]:
            return {"ns": NS, "key": key, "d": 1, "now": time.time()}

        try:
            if pool_size is None:
                conn = await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True)

                async def fetch(query: str, params: Any) -> Any:
                    return await (await conn.execute(query, params)).fetchone()

                async def execute(query: str, params: Any) -> None:
                    await conn.execute(query, params)

                try:
                    yield sql_ops(fetch, execute, queries, incr_params)
                finally:
                    await conn.close()
            else:
                pool = AsyncConnectionPool(
                    PG_DSN,
                    min_size=pool_size,
                    max_size=pool_size,
                    kwargs={"autocommit": True},
                    open=False,
                )
                await pool.open(wait=True)

                async def pool_fetch(query: str, params: Any) -> Any:
                    async with pool.connection() as c:
                        return await (await c.execute(query, params)).fetchone()

                async def pool_execute(query: str, params: Any) -> None:
                    async with pool.connection() as c:
                        await c.execute(query, params)

                try:
                    yield sql_ops(pool_fetch, pool_execute, queries, incr_params)
                finally:
                    await pool.close()
        finally:
            drop_data("postgresql", url)

    return opener


def redis_scripts() -> dict[str, str]:
    """plugstore's Redis scripts by name: in the I/O-free Redis core where it exists
    (``rediscore``, which the native async driver brings), else in the backend."""
    try:
        scripts: dict[str, str] = importlib.import_module("plugstore.backends.rediscore").SCRIPTS
    except ImportError:
        from plugstore.backends.redis import _SCRIPTS as scripts
    return scripts


def raw_redis(pool_size: int | None) -> Opener:
    """redis.asyncio: GET, and plugstore's own set and incr scripts by EVALSHA on its key
    layout (entry, index, deadlines); a ``BlockingConnectionPool`` of ``pool_size``, or
    the client's default pool when None."""

    @contextlib.asynccontextmanager
    async def opener(d: Path) -> AsyncIterator[Ops]:
        import redis.asyncio as aredis

        scripts = redis_scripts()
        prefix = _redis_prefix(d)
        if pool_size is None:
            r = aredis.Redis(host="127.0.0.1", port=6379)
        else:
            pool = aredis.BlockingConnectionPool(
                host="127.0.0.1", port=6379, max_connections=pool_size
            )
            r = aredis.Redis(connection_pool=pool)
        base = f"{prefix}{{{NS}}}:".encode()
        entry, index, deadlines = base + b"k:", base + b"i", base + b"x"
        set_sha = await r.script_load(scripts["set"])
        incr_sha = await r.script_load(scripts["incr"])

        async def set_(key: str, value: Value) -> None:
            member = key.encode()
            await r.evalsha(
                set_sha, 3, entry + member, index, deadlines, json.dumps(value).encode(), member
            )

        async def get(key: str) -> Any:
            raw = await r.get(entry + key.encode())
            if raw is None:
                raise KeyError(key)
            return json.loads(raw)

        async def incr(key: str) -> int:
            member = key.encode()
            raw = await r.evalsha(incr_sha, 3, entry + member, index, deadlines, 1, member)
            return int(raw)

        try:
            yield Ops(set_, get, incr)
        finally:
            await r.aclose()
            if pool_size is not None:
                await pool.aclose()
            redis_purge(prefix)

    return opener


def _sqlite_incr_params(key: str) -> tuple[Any, ...]:
    return (NS, key, 1, time.time())


def _first(rows: Any) -> Any:
    return next(iter(rows), None)


def raw_aiosqlite() -> Opener:
    """aiosqlite: one connection (its own thread), plugstore's statements and pragmas;
    reads with ``execute_fetchall`` (one hop to its thread per op)."""

    @contextlib.asynccontextmanager
    async def opener(d: Path) -> AsyncIterator[Ops]:
        import aiosqlite

        path = d / "raw.db"
        queries = plugstore_queries(f"sqlite:///{path}")  # WAL is kept in the file
        db = await aiosqlite.connect(path, timeout=30.0, isolation_level=None)
        await db.execute("PRAGMA synchronous = NORMAL")

        async def fetch(query: str, params: Any) -> Any:
            return _first(await db.execute_fetchall(query, params))

        async def execute(query: str, params: Any) -> None:
            await db.execute(query, params)

        try:
            yield sql_ops(fetch, execute, queries, _sqlite_incr_params)
        finally:
            await db.close()

    return opener


def raw_sqlite_threads(threads: int) -> Opener:
    """sqlite3 on a pool of ``threads`` threads (``loop.run_in_executor``), one
    connection per thread, plugstore's statements and pragmas."""

    @contextlib.asynccontextmanager
    async def opener(d: Path) -> AsyncIterator[Ops]:
        path = d / "raw.db"
        queries = plugstore_queries(f"sqlite:///{path}")
        local = threading.local()
        conns: list[sqlite3.Connection] = []

        def connect() -> None:
            conn = sqlite3.connect(
                path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA synchronous = NORMAL")
            local.conn = conn
            conns.append(conn)

        def fetch_here(query: str, params: Any) -> Any:
            return local.conn.execute(query, params).fetchone()

        def execute_here(query: str, params: Any) -> None:
            local.conn.execute(query, params)

        pool = concurrent.futures.ThreadPoolExecutor(threads, initializer=connect)
        loop = asyncio.get_running_loop()

        async def fetch(query: str, params: Any) -> Any:
            return await loop.run_in_executor(pool, fetch_here, query, params)

        async def execute(query: str, params: Any) -> None:
            await loop.run_in_executor(pool, execute_here, query, params)

        try:
            yield sql_ops(fetch, execute, queries, _sqlite_incr_params)
        finally:
            pool.shutdown(wait=True)
            for conn in conns:
                conn.close()

    return opener


# ------------------------------------------------------------------ 1. and 2. throughput

#: Peers of plugstore.aio by backend, in the per-op and tasks workloads: (name, opener
#: maker taking the pool size, whether plugstore is held to the bar against it).
Peers = list[tuple[str, Callable[[int], Opener], bool]]


def raw_peers(backend: str, tasks_workload: bool) -> Peers:
    if backend == "postgresql":
        peers: Peers = [("raw psycopg AsyncConnectionPool", raw_psycopg, True)]
        if not tasks_workload:  # 100 tasks on one connection would only queue on it
            peers.append(("raw psycopg AsyncConnection", lambda _: raw_psycopg(None), False))
        return peers
    if backend == "redis":
        if tasks_workload:
            return [("raw redis.asyncio BlockingConnectionPool", raw_redis, True)]
        return [("raw redis.asyncio", lambda _: raw_redis(None), True)]
    if backend == "sqlite":
        return [
            ("raw aiosqlite", lambda _: raw_aiosqlite(), True),
            ("raw sqlite3 on threads", raw_sqlite_threads, True),
        ]
    return []


def throughput(bench: Bench, tasks_workload: bool) -> Result:
    s = bench.s
    if tasks_workload:
        key = "tasks"
        title = (
            f"2. {s.tasks} tasks issuing get/set/incr: plugstore.aio (pool_max and threads "
            f"= {s.pool}) vs async drivers with a pool of {s.pool}"
        )
    else:
        key = "perop"
        title = (
            "1. per-op get/set/incr, sequential awaits in one task: plugstore.aio vs async drivers"
        )
    res = Result(key, title, SUBJECT, [])
    size = s.pool if tasks_workload else DEFAULT_THREADS
    phases = many_tasks(s.tasks) if tasks_workload else one_task
    width = s.pool if tasks_workload else 1
    for backend in bench.backends:
        started = time.perf_counter()
        options = pool_options(backend, s.pool) if tasks_workload else {}
        if tasks_workload:
            options["threads"] = s.pool
        contenders: list[tuple[str, int, Contender]] = []
        n = bench.scaled(backend, s.n)
        contenders.append(
            (SUBJECT, n, contender(plugstore_aio(bench, backend, options), phases, width))
        )
        peers = raw_peers(backend, tasks_workload)
        for name, make, _ in peers:
            contenders.append((name, n, contender(make(s.pool), phases, width)))
        sync_options = {k: v for k, v in options.items() if k != "threads"}
        on_thread = f"sync API on {size} threads"
        contenders.append(
            (
                on_thread,
                n,
                contender(sync_on_threads(bench, backend, size, sync_options), phases, width),
            )
        )
        keys, values = make_data(n)
        rows = measure(contenders, keys, values, bench.tmp, s.repeat)
        for row in rows:
            row.op = f"{backend} {row.op}"
        res.rows += rows
        for name, _, barred in peers:
            for op in ("get", "set", "incr"):
                if barred:
                    res.ratio_bar(name, f"{backend} {op}", 0.8)
        res.notes.append(f"time: {backend} {time.perf_counter() - started:.1f}s")
    res.notes += bench.skip_notes()
    if tasks_workload:
        res.notes += [
            f"each phase: {s.tasks} tasks share the ops (task t takes every {s.tasks}th key), "
            "all set, then all get (every value checked), then all incr one counter; "
            "ops/s = all ops / wall time of the phase",
            f"plugstore.aio opened with threads={s.pool} and pool_max={s.pool} (postgresql "
            f"also pool_min={s.pool}); peers: psycopg AsyncConnectionPool(min=max={s.pool}), "
            f"redis.asyncio BlockingConnectionPool(max_connections={s.pool}), sqlite3 on "
            f"{s.pool} threads with a connection each; aiosqlite has one connection (and "
            "thread) per connection object, so it runs on one",
            f"'sync API on {size} threads': plugstore.open with the same pool, each call "
            f"sent to a ThreadPoolExecutor({size}) with loop.run_in_executor (no bar)",
        ]
    else:
        res.notes += [
            "one task awaits each op in turn: n sets, n gets, n incr of one counter; the "
            "last value read and the counter are checked",
            f"plugstore.aio opened with its defaults (threads={DEFAULT_THREADS}, DynamoDB 3; "
            "the backend's own pool)",
            "raw peers run plugstore's own statements/scripts on the same layout, "
            "json.dumps/json.loads in the loop: PostgreSQL SELECT value, expires_at / "
            "INSERT .. ON CONFLICT DO UPDATE / the incr upsert RETURNING; Redis GET and "
            "EVALSHA of the set and incr scripts; SQLite the same three statements, WAL, "
            "synchronous=NORMAL, autocommit",
            "raw psycopg AsyncConnection: one connection, no pool (no bar; the pool is the "
            "like-for-like peer: plugstore checks a pooled connection out per op)",
            f"'sync API on {size} threads': plugstore.open, each call sent to a "
            f"ThreadPoolExecutor({size}) with loop.run_in_executor (no bar)",
        ]
    res.notes += slower_notes(bench.backends, "ops")
    return res


def w_perop(bench: Bench) -> Result:
    return throughput(bench, tasks_workload=False)


def w_tasks(bench: Bench) -> Result:
    return throughput(bench, tasks_workload=True)


# ------------------------------------------------------------------ 3. event-loop lag


async def ticking(work: Callable[[], Awaitable[int]]) -> tuple[float, int, list[float]]:
    """Run ``work()`` beside a ticker that sleeps TICK in a loop and records how late
    each wake-up is -> (seconds of ``work``, what it returned, lags in seconds)."""
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(TICK)
            lags.append(time.perf_counter() - t0 - TICK)

    gc.collect()  # before the ticker starts: a full collection takes tens of ms here
    task = asyncio.create_task(ticker())
    await asyncio.sleep(TICK * 3)  # the ticker is running
    lags.clear()
    t0 = time.perf_counter()
    done = await work()
    seconds = time.perf_counter() - t0
    stop.set()
    await task
    return seconds, done, lags


def _plus_one(value: int) -> int:
    return value + 1


def lag_mix_aio(ns: Any, calls: int) -> Callable[[], Awaitable[int]]:
    """``calls`` plugstore.aio calls shared by LAG_WORKERS tasks, cycling through get,
    set, incr, compute and a locked get-then-set; checks the counters at the end."""

    async def worker(w: int) -> None:
        for i in range(w, calls, LAG_WORKERS):
            op = i % 5
            if op == 0:
                await ns.get(f"k{i % 50}")
            elif op == 1:
                await ns.set(f"k{i % 50}", make_value(i))
            elif op == 2:
                await ns.incr(COUNTER)
            elif op == 3:
                await ns.compute("computed", _plus_one, 0)
            else:
                async with ns.lock("locked"):
                    await ns.set("locked", await ns.get("locked", 0) + 1)

    async def work() -> int:
        await asyncio.gather(*(worker(w) for w in range(LAG_WORKERS)))
        return await check_mix(ns.get, calls)

    return work


def lag_mix_sync(ns: plugstore.Namespace, calls: int) -> Callable[[], Awaitable[int]]:
    """The same calls through the sync API, made directly in the coroutines (each
    worker yields to the loop after each call, as a handler awaiting its next message
    would)."""

    async def worker(w: int) -> None:
        for i in range(w, calls, LAG_WORKERS):
            op = i % 5
            if op == 0:
                ns.get(f"k{i % 50}")
            elif op == 1:
                ns[f"k{i % 50}"] = make_value(i)
            elif op == 2:
                ns.incr(COUNTER)
            elif op == 3:
                ns.compute("computed", _plus_one, 0)
            else:
                with ns.lock("locked"):
                    ns["locked"] = ns.get("locked", 0) + 1
            await asyncio.sleep(0)

    async def get(key: str, default: Any = None) -> Any:
        return ns.get(key, default)

    async def work() -> int:
        await asyncio.gather(*(worker(w) for w in range(LAG_WORKERS)))
        return await check_mix(get, calls)

    return work


async def check_mix(get: Callable[..., Awaitable[Any]], calls: int) -> int:
    """Each of the three counters of a mix must hold its number of calls."""
    for key, op in ((COUNTER, 2), ("computed", 3), ("locked", 4)):
        expected = len(range(op, calls, 5))
        got = await get(key, 0)
        if got != expected:
            raise AssertionError(f"{key} is {got}, expected {expected}")
    return calls


LAG_AIO = "plugstore.aio"
LAG_SYNC = "sync API in the coroutine"
LAG_ALONE = "ticker alone"


def lag_once(
    bench: Bench, backend: str, kind: str, calls: int, alone: float = 0.0
) -> tuple[float, int, list[float]]:
    """One run of ``kind`` on a fresh store of ``backend`` (the ticker alone runs for
    ``alone`` seconds, at least BASELINE_TICKS ticks)."""
    d = Path(tempfile.mkdtemp(dir=bench.tmp))
    url = bench.url(backend, d)

    async def main() -> tuple[float, int, list[float]]:
        if kind == LAG_ALONE:

            async def idle() -> int:
                await asyncio.sleep(max(alone, TICK * BASELINE_TICKS))
                return 0

            return await ticking(idle)
        if kind == LAG_AIO:
            async with plugstore.aio.open(url) as store:
                ns = store.namespace(NS)
                await ns.set("warm", 1)
                return await ticking(lag_mix_aio(ns, calls))
        with plugstore.open(url) as sync_store:
            sync_ns = sync_store.namespace(NS)
            sync_ns["warm"] = 1
            return await ticking(lag_mix_sync(sync_ns, calls))

    try:
        return asyncio.run(main())
    finally:
        if kind != LAG_ALONE:
            drop_data(backend, url)
        shutil.rmtree(d, ignore_errors=True)


def w_lag(bench: Bench) -> Result:
    s = bench.s
    title = (
        f"3. event-loop lag: a {TICK * 1000:g} ms ticker beside {s.lag_calls} mixed calls "
        f"(get/set/incr/compute/lock) from {LAG_WORKERS} tasks"
    )
    res = Result("lag", title, LAG_AIO, [])
    kinds = [LAG_AIO, LAG_SYNC, LAG_ALONE]
    for backend in bench.backends:
        started = time.perf_counter()
        calls = bench.scaled(backend, s.lag_calls)
        rows = {kind: Row(kind, backend, calls) for kind in kinds}
        for kind in kinds:  # warm-up: imports, first connections
            lag_once(bench, backend, kind, min(calls, 20))
        aio_seconds = 0.0  # of the latest plugstore.aio run: the baseline's length
        for r in range(s.repeat):
            for kind in kinds if r % 2 == 0 else kinds[::-1]:
                seconds, _, lags = lag_once(bench, backend, kind, calls, aio_seconds)
                if kind == LAG_AIO:
                    aio_seconds = seconds
                row = rows[kind]
                row.seconds.append(seconds)
                ms = sorted(lag * 1000 for lag in lags)
                row.extra.setdefault("max_lag_ms", []).append(round(ms[-1], 3))
                p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
                row.extra.setdefault("p99_lag_ms", []).append(round(p99, 3))
                row.extra.setdefault("ticks", []).append(len(ms))
        res.rows += rows.values()
        worst = max(rows[LAG_AIO].extra["max_lag_ms"])
        res.bars.append(
            Bar(
                f"plugstore.aio max lag <= {LAG_BAR_MS:g} ms ({backend})",
                f"{worst:.1f} ms",
                worst <= LAG_BAR_MS,
            )
        )
        res.notes.append(f"time: {backend} {time.perf_counter() - started:.1f}s")
    res.notes += bench.skip_notes()
    res.notes += [
        f"lag = how late the ticker's asyncio.sleep({TICK:g}) wakes; max = the worst tick "
        "of a run; the bar takes the worst of every run; p99 is the median over runs",
        f"mix: call i is get, set, incr, compute or a locked get-then-set (i mod 5), "
        f"{LAG_WORKERS} tasks share the calls; the counters are checked after each run",
        f"'{LAG_SYNC}': the same calls through the sync API, made in the coroutines (each "
        "worker awaits asyncio.sleep(0) after each call): every call blocks the loop "
        "(no bar; the problem the async API solves)",
        f"'{LAG_ALONE}': the ticker with nothing else running, as long as the latest "
        f"plugstore.aio run (at least {BASELINE_TICKS} ticks): this machine's own noise",
    ]
    res.notes += slower_notes(bench.backends, "calls")
    return res


# ------------------------------------------------------------------ 4. lost updates

_barrier: Any = None


def _init_worker(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


def lost_task(kind: str, url: str, tasks: int, n: int) -> tuple[float, float, int, list[str]]:
    """In a worker process: ``tasks`` tasks each make ``n`` increments of one key, after
    the barrier -> (start, end, increments that did not raise, error names)."""

    async def one(ns: Any) -> tuple[int, list[str]]:
        ok, errors = 0, []
        for _ in range(n):
            try:
                if kind == INCR:
                    await ns.incr(COUNTER)
                else:
                    async with ns.lock(COUNTER):
                        await ns.set(COUNTER, await ns.get(COUNTER) + 1)
                ok += 1
            except plugstore.StoreError as exc:  # e.g. a lock that timed out: counted
                errors.append(type(exc).__name__)
        return ok, errors

    async def main() -> tuple[float, float, int, list[str]]:
        async with plugstore.aio.open(url) as store:
            ns = store.namespace(NS)
            await ns.get(COUNTER)  # connected before the clock starts
            _barrier.wait(timeout=120)
            t0 = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
            out = await asyncio.gather(*(one(ns) for _ in range(tasks)))
            t1 = time.perf_counter()
        return t0, t1, sum(ok for ok, _ in out), [e for _, es in out for e in es]

    return asyncio.run(main())


def w_lost(bench: Bench) -> Result:
    s = bench.s
    title = (
        f"4. lost updates: {s.lost_tasks} tasks x {s.procs} processes x {s.lost_n} "
        "increments of one key (await ns.incr; a get-then-set under async with ns.lock)"
    )
    res = Result("lost", title, INCR, [])
    targets = [b for b in bench.backends if b != "memory"]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(s.procs)
    kinds = [INCR, LOCKED]
    with ctx.Pool(s.procs, initializer=_init_worker, initargs=(barrier,)) as pool:

        def once(backend: str, kind: str, n: int) -> tuple[float, int, list[str], int]:
            d = Path(tempfile.mkdtemp(dir=bench.tmp))
            url = bench.url(backend, d)
            try:
                with plugstore.open(url) as store:
                    store.namespace(NS)[COUNTER] = 0
                # chunksize=1 and the barrier: each worker takes exactly one task.
                jobs = [(kind, url, s.lost_tasks, n)] * s.procs
                out = pool.starmap(lost_task, jobs, chunksize=1)
                with plugstore.open(url) as store:
                    final = int(store.namespace(NS)[COUNTER])
            finally:
                drop_data(backend, url)
                shutil.rmtree(d, ignore_errors=True)
            wall = max(t1 for _, t1, _, _ in out) - min(t0 for t0, _, _, _ in out)
            return wall, sum(ok for _, _, ok, _ in out), [e for *_, es in out for e in es], final

        for backend in targets:
            started = time.perf_counter()
            n = bench.scaled(backend, s.lost_n)
            expected = s.procs * s.lost_tasks * n
            here = {kind: Row(kind, backend, expected) for kind in kinds}
            for kind in kinds:  # warm-up: the workers' imports and first connections
                once(backend, kind, 2)
            for r in range(s.lost_runs):
                for kind in kinds if r % 2 == 0 else kinds[::-1]:
                    wall, ok, errors, final = once(backend, kind, n)
                    row = here[kind]
                    row.seconds.append(wall)
                    row.extra.setdefault("final", []).append(final)
                    # Every increment that did not raise must be in the final value.
                    row.extra.setdefault("lost", []).append(ok - final)
                    row.extra.setdefault("errors", []).append(len(errors))
                    seen = set(row.extra.get("error types", [])) | set(errors)
                    row.extra["error types"] = sorted(seen)
            res.rows += here.values()
            for kind in kinds:
                row = here[kind]
                worst = max(row.extra["lost"])
                exact = worst == 0 and min(row.extra["final"]) == expected
                measured = f"lost {worst}"
                if not exact:
                    measured += f", final {span(row.extra['final'])}/{expected}"
                res.bars.append(Bar(f"{kind} loses 0 updates ({backend})", measured, exact))
            res.notes.append(f"time: {backend} {time.perf_counter() - started:.1f}s")
    res.notes += bench.skip_notes()
    if "memory" in bench.backends:
        res.notes.append("memory: not run (a memory store is private to its process)")
    res.notes += [
        "each process: plugstore.aio.open(url) in asyncio.run, the tasks start together "
        "after a barrier across the processes (spawned once, as a pool)",
        f"{INCR}: await ns.incr(k); {LOCKED}: async with ns.lock(k): await ns.set(k, "
        "await ns.get(k) + 1), default lock timeout",
        "lost = increments that did not raise - final value; errors = increments that "
        f"raised (a lock timeout); {s.lost_runs} run(s) of each kind per backend; ops/s = "
        "increments / wall time from the first start to the last finish",
    ]
    for row in res.rows:
        if row.extra.get("error types"):
            res.notes.append(
                f"errors: {row.contender} on {row.op}: {', '.join(row.extra['error types'])}"
            )
    res.notes += slower_notes(targets, "increments per task")
    return res


RUNNERS: dict[str, Callable[[Bench], Result]] = {
    "perop": w_perop,
    "tasks": w_tasks,
    "lag": w_lag,
    "lost": w_lost,
}


# ------------------------------------------------------------------ servers


class LocalDynamoDB:
    """``plugstore dev dynamodb`` (moto, requests serialised) in a process of its own,
    so its request handling never competes with the measured event loop for the GIL."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["AWS_EC2_METADATA_DISABLED"] = "true"  # never look beyond loopback
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "plugstore.cli", "dev", "dynamodb", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        url = self.proc.stdout.readline().strip()  # printed once the server is up
        if "endpoint_url=" not in url:
            self.stop()
            raise RuntimeError(f"plugstore dev dynamodb did not start (it printed {url!r})")
        self.endpoint = url.split("endpoint_url=", 1)[1].split("&", 1)[0]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def reachable(chosen: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The chosen backends whose server and driver are here, and why the others are not."""
    ok: list[str] = []
    skipped: dict[str, str] = {}
    for backend in chosen:
        probe = SERVERS.get(backend)
        problem = unavailable("127.0.0.1", *probe) if probe else None
        if backend == "dynamodb":
            try:
                import moto.server  # noqa: F401
            except ImportError as exc:
                problem = f"moto unavailable ({exc})"
        if problem is None:
            ok.append(backend)
        else:
            skipped[backend] = problem
    return ok, skipped


# ------------------------------------------------------------------ report


def report(res: Result) -> str:
    """The workload as a text table, its notes and its bars."""
    if res.key == "lag":
        head: tuple[str, ...] = ("contender", "backend", "calls", "calls/s (median)")
        head += ("max lag ms (worst)",)
        head += ("max lag ms (median)", "p99 lag ms (median)", "ticks (median)")
        table: list[tuple[str, ...]] = [head]
        for row in res.rows:
            x = row.extra
            table.append(
                (
                    row.contender,
                    row.op,
                    "-" if row.contender == LAG_ALONE else str(row.n),
                    "" if row.contender == LAG_ALONE else fmt_rate(row.median),
                    f"{max(x['max_lag_ms']):.1f}",
                    f"{statistics.median(x['max_lag_ms']):.1f}",
                    f"{statistics.median(x['p99_lag_ms']):.1f}",
                    f"{statistics.median(x['ticks']):.0f}",
                )
            )
    elif res.key == "lost":
        head = ("contender", "backend", "expected", "ops/s (median)", "final", "lost per run")
        table = [(*head, "lost total", "errors", "wall s (median)")]
        for row in res.rows:
            lost = row.extra["lost"]
            table.append(
                (
                    row.contender,
                    row.op,
                    str(row.n),
                    fmt_rate(row.median),
                    span(row.extra["final"]),
                    span(lost),
                    str(sum(lost)),
                    str(sum(row.extra["errors"])),
                    f"{statistics.median(row.seconds):.2f}",
                )
            )
    else:
        head = ("contender", "op", "ops", "ops/s (median)", "min .. max", "plugstore.aio/this")
        table = [head]
        for row in res.rows:
            ratio = ""
            if row.contender != res.subject:
                ratio = f"{res.ratio(row.contender, row.op):.2f}x"
            rates = row.rates
            table.append(
                (
                    row.contender,
                    row.op,
                    str(row.n),
                    fmt_rate(row.median),
                    f"{fmt_rate(min(rates))} .. {fmt_rate(max(rates))}",
                    ratio,
                )
            )
    out = [f"== {res.title}", *format_table(table)]
    if res.key in ("perop", "tasks"):
        out.append(
            f"  * plugstore.aio/this = median over repeats of {res.subject} ops/s / this "
            "row's ops/s in the same repeat"
        )
    out += [f"  * {note}" for note in res.notes]
    out += [bar_line(bar) for bar in res.bars]
    return "\n".join(out)


def _version(module: str) -> str:
    try:
        return str(__import__(module).__version__)
    except (ImportError, AttributeError):
        return "-"


def header(s: AioSettings) -> str:
    return "\n".join(
        [
            "plugstore.aio benchmarks",
            f"  python {platform.python_version()} ({platform.python_implementation()}), "
            f"sqlite {sqlite3.sqlite_version}, plugstore {plugstore.__version__}, "
            f"psycopg {_version('psycopg')}, psycopg_pool {_version('psycopg_pool')}, "
            f"redis {_version('redis')}, aiosqlite {_version('aiosqlite')}",
            f"  {platform.platform()}, cpu count {os.cpu_count()}",
            f"  n={s.n} tasks={s.tasks} pool={s.pool} lag-calls={s.lag_calls} "
            f"lost={s.procs}x{s.lost_tasks}x{s.lost_n} lost-runs={s.lost_runs} "
            f"repeat={s.repeat} (ops/s are medians; ratios are medians of same-repeat pairs)",
        ]
    )


def _names(flag: str, text: str, known: Sequence[str], p: argparse.ArgumentParser) -> list[str]:
    chosen = [w.strip() for w in text.split(",") if w.strip()]
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        p.error(f"unknown {flag} {unknown}; choose from {', '.join(known)}")
    return [w for w in known if w in chosen]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes and 3 repeats")
    p.add_argument("--n", type=int, help="ops per phase per contender (2000; --quick: 300)")
    p.add_argument("--repeat", type=int, help="repeats per contender, >= 3 (5; --quick: 3)")
    p.add_argument("--tasks", type=int, default=100, help="concurrent tasks (100)")
    p.add_argument("--pool", type=int, default=10, help="pool size and threads with tasks (10)")
    p.add_argument(
        "--lag-calls", type=int, help="mixed calls beside the ticker (1000; --quick: 300)"
    )
    p.add_argument(
        "--lost-n", type=int, help="increments per task, lost updates (200; --quick: 50)"
    )
    p.add_argument("--lost-tasks", type=int, default=8, help="tasks per process, lost updates (8)")
    p.add_argument("--procs", type=int, default=4, help="processes, lost updates (4)")
    p.add_argument("--lost-runs", type=int, default=1, help="runs of each kind, lost updates (1)")
    p.add_argument("--only", default=",".join(WORKLOADS), help=f"subset of {WORKLOADS}")
    p.add_argument("--backends", default=",".join(BACKENDS), help=f"subset of {BACKENDS}")
    p.add_argument("--json", type=Path, metavar="FILE", help="also save the results as JSON")
    p.add_argument("--check", action="store_true", help="exit with status 1 if a bar fails")
    args = p.parse_args(argv)
    if args.n is None:
        args.n = 300 if args.quick else 2000
    if args.repeat is None:
        args.repeat = 3 if args.quick else 5
    if args.lag_calls is None:
        args.lag_calls = 300 if args.quick else 1000
    if args.lost_n is None:
        args.lost_n = 50 if args.quick else 200
    args.only = _names("workload(s)", args.only, WORKLOADS, p)
    args.backends = _names("backend(s)", args.backends, BACKENDS, p)
    if args.repeat < 3:
        p.error("--repeat must be >= 3 (results are medians)")
    sizes = (args.n, args.tasks, args.pool, args.lag_calls, args.lost_n, args.lost_tasks)
    if min(*sizes, args.procs, args.lost_runs) < 1:
        p.error("sizes must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    s = AioSettings(
        args.n,
        args.repeat,
        args.tasks,
        args.pool,
        args.lag_calls,
        args.lost_n,
        args.lost_tasks,
        args.procs,
        args.lost_runs,
    )
    print(header(s), flush=True)
    started = time.perf_counter()
    backends, skipped = reachable(args.backends)
    local = LocalDynamoDB() if "dynamodb" in backends else None
    results: list[Result] = []
    try:
        with tempfile.TemporaryDirectory(prefix="plugstore-aio-bench-") as tmp:
            bench = Bench(s, Path(tmp), backends, skipped, local.endpoint if local else None)
            for key in args.only:
                res = RUNNERS[key](bench)
                results.append(res)
                print("\n" + report(res), flush=True)
    finally:
        if local is not None:
            local.stop()
    lines, failed = bar_summary(results, time.perf_counter() - started)
    print("\n" + "\n".join(lines))
    if args.json:
        write_json(args.json, s, results, backends=backends, skipped=skipped)
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    unwind_on_sigterm()
    sys.exit(main())
