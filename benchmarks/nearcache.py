"""plugstore near cache benchmark: hot-key reads, and how soon other processes' writes show.

    python benchmarks/nearcache.py                 # Redis, Redis Cluster, PostgreSQL, SQLite
    python benchmarks/nearcache.py --quick         # fewer reads and writes
    python benchmarks/nearcache.py --backends sqlite --check

**Hot-key get.**  One key read over and over, as a bot reads its prefix or allow list on
every message: plugstore with ``cache=10000``, the same store without a cache, and the
memory backend (no I/O at all), timed in turns in the same run.  Bars (issue 21): on
Redis, Redis Cluster and PostgreSQL the cached get is at least 20x the uncached one and
at least 0.5x the memory backend's; on SQLite the ratios are reported.

**Invalidation.**  Another process (no cache) writes one key ``--writes`` times, a few
milliseconds apart, noting when each write returned; this process reads it through the
cache every 0.2 ms, noting what it read when.  The delay of a write is the time from its
return to the first read showing it (or a later value).  Bars: p99 delay within 5 ms on
Redis, Redis Cluster and PostgreSQL; 0 reads (begun) older than a write that returned
more than the cache's bound before (``Listener.BOUND``, 25 ms there; on SQLite 0 ms: the
next read sees it).

Redis Cluster runs on the tests' local cluster (3 masters with a replica each, started
for the run and stopped after; see tests/redis_cluster.py), or on ``--seeds``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import plugstore
from cluster import cluster_seeds
from harness import (
    Bar,
    Result,
    Row,
    bar_line,
    bar_summary,
    fmt_rate,
    format_table,
    unwind_on_sigterm,
)
from plugstore.nearcache import Listener
from servers import PG_URL, REDIS_URL, unavailable

BACKENDS = ("redis", "redis+cluster", "postgresql", "sqlite")
#: Coherence by the engine's notices: the p99 bar (ms) of the delay until a read sees
#: a write; the bound no read may exceed is the cache's own (Listener.BOUND).
TOLD = {"redis": 5.0, "redis+cluster": 5.0, "postgresql": 5.0}
SPEEDUP, VS_MEMORY = 20.0, 0.5
POLL = 0.0002
GAP = 0.004


@contextmanager
def place(backend: str, tmp: Path, seeds: str | None = None) -> Iterator[str]:
    """A store URL of its own for one workload (a PostgreSQL table dropped after);
    ``seeds``: the Redis Cluster's."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / f'near-{uuid.uuid4().hex[:8]}.db'}"
        return
    if backend.startswith("redis"):
        base = f"redis+cluster://{seeds}/" if backend == "redis+cluster" else REDIS_URL
        url = f"{base}?prefix=bench_near_{uuid.uuid4().hex[:8]}:"
        try:
            yield url
        finally:
            with plugstore.open(url) as store:
                for name in store.namespaces():
                    store.drop_namespace(name)
        return
    url = f"{PG_URL}?table=bench_near_{uuid.uuid4().hex[:8]}"
    try:
        yield url
    finally:
        with plugstore.open(url) as store:
            store.backend.drop()  # type: ignore[attr-defined]


def hot_get(backend: str, url: str, reads: int, repeat: int) -> Result:
    with (
        plugstore.open(url, cache=10_000) as cached,
        plugstore.open(url) as plain,
        plugstore.open("memory://") as memory,
    ):
        value = {"prefix": "!", "allow": ["ana", "bob"], "n": 1}
        for store in (plain, memory):
            store.namespace("settings")["guild:1"] = value
        contenders: dict[str, Callable[[], Any]] = {
            "plugstore, cache=10000": cached.namespace("settings").__getitem__,
            "plugstore, no cache": plain.namespace("settings").__getitem__,
            "memory backend": memory.namespace("settings").__getitem__,
        }
        counts = {"plugstore, cache=10000": reads, "plugstore, no cache": max(200, reads // 100)}
        rows = {name: Row(name, "get", counts.get(name, reads)) for name in contenders}
        for _ in range(repeat):
            for name, get in contenders.items():
                n = rows[name].n
                assert get("guild:1") == value
                t0 = time.perf_counter()
                for _ in range(n):
                    get("guild:1")
                rows[name].seconds.append(time.perf_counter() - t0)
    res = Result(backend, f"{backend}: hot-key get", "plugstore, cache=10000", list(rows.values()))
    speedup = res.ratio("plugstore, no cache", "get")
    vs_memory = res.ratio("memory backend", "get")
    if backend in TOLD:
        res.bars.append(
            Bar(
                f"cached get >= {SPEEDUP:g}x uncached ({backend})",
                f"{speedup:.1f}x",
                speedup >= SPEEDUP,
            )
        )
        res.bars.append(
            Bar(
                f"cached get >= {VS_MEMORY:g}x memory backend ({backend})",
                f"{vs_memory:.2f}x",
                vs_memory >= VS_MEMORY,
            )
        )
    else:
        res.notes.append(f"cached / uncached {speedup:.1f}x, cached / memory {vs_memory:.2f}x")
    return res


def writer(url: str, writes: int, gap: float) -> None:
    """The other process: write 1..writes to one key; print when each write returned."""
    with plugstore.open(url) as store:
        ns = store.namespace("hot")
        print("ready", flush=True)
        sys.stdin.readline()
        done = []
        for i in range(1, writes + 1):
            ns["k"] = i
            done.append(time.monotonic())  # CLOCK_MONOTONIC: one clock for both processes
            time.sleep(gap)
    print(json.dumps(done), flush=True)


def invalidation(backend: str, url: str, writes: int) -> Result:
    p99_bar = TOLD.get(backend)
    bound = Listener.BOUND * 1000 if p99_bar else 0.0
    with plugstore.open(url, cache=10_000) as store:
        ns = store.namespace("hot")
        ns["k"] = 0
        child = subprocess.Popen(
            [sys.executable, __file__, "--writer", url, str(writes)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        assert child.stdin is not None
        assert child.stdout.readline().strip() == "ready"
        reads: list[tuple[float, float, int]] = []  # (read began, read returned, value)
        child.stdin.write("go\n")
        child.stdin.flush()
        while True:
            began = time.monotonic()
            value = ns["k"]
            reads.append((began, time.monotonic(), value))
            if value == writes:
                break
            time.sleep(POLL)
        written = json.loads(child.communicate(timeout=120)[0])
    delays, stale = [], 0
    first_seen: dict[int, float] = {}
    for _, returned, value in reads:
        for i in range(1, value + 1):
            first_seen.setdefault(i, returned)
    for i, t_written in enumerate(written, start=1):
        delays.append(max(0.0, first_seen[i] - t_written) * 1000)
    w = 0  # reads (begun) older than a write that returned more than ``bound`` ms before
    for began, _, value in reads:
        while w < len(written) and written[w] + bound / 1000 < began:
            w += 1
        if value < w:
            stale += 1
    p50, p99 = statistics.median(delays), statistics.quantiles(delays, n=100)[98]
    res = Result(backend, f"{backend}: invalidation", "plugstore, cache=10000", [])
    res.notes.append(
        f"{writes} writes by another process, {len(reads)} cached reads: delay until seen "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(delays):.2f} ms; "
        f"{stale} reads older than a write returned more than {bound:g} ms before"
    )
    if p99_bar:
        res.bars.append(
            Bar(f"p99 delay <= {p99_bar:g} ms ({backend})", f"{p99:.2f} ms", p99 <= p99_bar)
        )
    res.bars.append(Bar(f"0 stale reads beyond {bound:g} ms ({backend})", str(stale), stale == 0))
    return res


def report(res: Result) -> str:
    lines = [f"== {res.title}"]
    if res.rows:
        table = [("contender", "reads/s", "median us", f"{res.subject} / it")]
        for row in res.rows:
            mine = row.contender == res.subject
            ratio = "" if mine else f"{res.ratio(row.contender, 'get'):.2f}x"
            table.append((row.contender, fmt_rate(row.median), f"{1e6 / row.median:.2f}", ratio))
        lines += format_table(table)
    lines += [f"  * {note}" for note in res.notes]
    lines += [bar_line(bar) for bar in res.bars]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    p.add_argument("--reads", type=int, default=200_000, help="cached reads per repeat")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--writes", type=int, default=1000)
    p.add_argument("--quick", action="store_true", help="20,000 reads, 3 repeats, 200 writes")
    p.add_argument("--seeds", help="host:port,... of a running Redis Cluster (default: start one)")
    p.add_argument("--check", action="store_true", help="exit 1 if a bar fails")
    args = p.parse_args(argv)
    if args.quick:
        args.reads, args.repeat, args.writes = 20_000, 3, 200
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"plugstore near cache benchmark: {args.reads:,} reads x {args.repeat}, "
        f"{args.writes} writes"
    )
    started = time.perf_counter()
    results: list[Result] = []
    tmp = Path(tempfile.mkdtemp(prefix="plugstore-near-bench-"))
    stack = ExitStack()
    try:
        for backend in args.backends:
            server = {"postgresql": (5432, "psycopg"), "redis": (6379, "redis")}.get(backend)
            if server and (problem := unavailable("127.0.0.1", *server)):
                print(f"\n== {backend} skipped: {problem}")
                continue
            seeds = None
            if backend == "redis+cluster":
                seeds = stack.enter_context(cluster_seeds(args.seeds))
            with place(backend, tmp, seeds) as url:
                res = hot_get(backend, url, args.reads, args.repeat)
            results.append(res)
            print("\n" + report(res), flush=True)
            with place(backend, tmp, seeds) as url:
                res = invalidation(backend, url, args.writes)
            results.append(res)
            print("\n" + report(res), flush=True)
    finally:
        stack.close()
        shutil.rmtree(tmp, ignore_errors=True)
    lines, failed = bar_summary(results, time.perf_counter() - started)
    print("\n" + "\n".join(lines))
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--writer"]:
        writer(sys.argv[2], int(sys.argv[3]), GAP)
        sys.exit(0)
    unwind_on_sigterm()
    sys.exit(main())
