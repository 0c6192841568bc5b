"""The Redis Cluster benchmark: the redis+cluster backend vs redis-py's RedisCluster.

    python benchmarks/cluster.py [--n 2000] [--repeat 5] [--seeds host:port,...] [--check]

Per-op ``set``, ``get`` and ``incr`` of one namespace, each a round trip to the master
of its slot: plugstore sends one ``EVALSHA`` (``SET`` plus the index ``ZADD``) per set,
``GET`` per get and an ``EVALSHA`` around ``INCRBY`` per incr; the peer, redis-py's own
``RedisCluster`` (its defaults), sends ``SET``/``GET``/``INCRBY`` of the same keys and
JSON values.  Ratios are paired per repeat (both contenders run within seconds of each
other); the bar is 0.8x on set and get.  A row for ``wait=1`` (each write followed by
``WAIT 1`` on its connection) shows what a replica's confirmation costs; it has no peer.

Without ``--seeds`` the benchmark starts the tests' local cluster (3 masters with a
replica each, AOF with ``appendfsync always``, loopback ports picked at run time; see
tests/redis_cluster.py) and stops it at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import plugstore
from harness import (
    Contender,
    Result,
    Value,
    bar_line,
    bar_summary,
    fmt_rate,
    format_table,
    make_data,
    measure,
    set_get,
    timed,
    unwind_on_sigterm,
)

TESTS = Path(__file__).resolve().parent.parent / "tests"


def plugstore_cluster(seeds: str, **options: str) -> Contender:
    """plugstore on the cluster: ``ns[k] = v``, ``ns[k]`` and ``ns.incr`` per op."""

    def run(d: Path, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:
        query = "&".join(f"{k}={v}" for k, v in {"prefix": _prefix(), **options}.items())
        store = plugstore.open(f"redis+cluster://{seeds}/?{query}")
        ns = store.namespace("bench")
        try:
            times = set_get(
                lambda: [ns.__setitem__(k, v) for k, v in zip(keys, values, strict=True)],
                lambda: [ns[k] for k in keys][-1],
                values[-1],
            )
            times["incr"], total = timed(lambda: [ns.incr("counter") for _ in keys][-1])
            assert total == len(keys), total
            return times
        finally:
            store.drop_namespace("bench")
            store.close()

    return run


def raw_cluster(seeds: str) -> Contender:
    """redis-py's RedisCluster: SET/GET of json.dumps(v), INCRBY, the same hash tag."""

    def run(d: Path, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:
        from redis.cluster import ClusterNode, RedisCluster

        addresses = [seed.rsplit(":", 1) for seed in seeds.split(",")]
        nodes = [ClusterNode(host, int(port)) for host, port in addresses]
        r = RedisCluster(startup_nodes=nodes)
        names = [f"{_prefix()}{{bench}}:{k}" for k in keys]
        counter = names[0] + ":counter"

        def sets() -> None:
            for name, v in zip(names, values, strict=True):
                r.set(name, json.dumps(v).encode())

        def gets() -> Any:
            for name in names:
                raw = r.get(name)
                if raw is None:
                    raise KeyError(name)
                out = json.loads(raw)
            return out

        try:
            times = set_get(sets, gets, values[-1])
            times["incr"], total = timed(lambda: [r.incrby(counter, 1) for _ in keys][-1])
            assert total == len(keys), total
            return times
        finally:
            for start in range(0, len(names), 1000):
                r.delete(*names[start : start + 1000])
            r.delete(counter)
            r.close()

    return run


def _prefix() -> str:
    return f"bench:{uuid.uuid4().hex[:8]}:"


@contextmanager
def cluster_seeds(given: str | None) -> Iterator[str]:
    """``given``, or the seeds of a local cluster started for the run (and stopped)."""
    if given:
        yield given
        return
    sys.path.insert(0, str(TESTS))
    from redis_cluster import LocalCluster  # the tests' cluster, processes by pid

    directory = Path(tempfile.mkdtemp(prefix="plugstore-cluster-bench-"))
    cluster = LocalCluster(directory)
    try:
        cluster.start()
        yield cluster.seeds
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


def report(res: Result) -> str:
    table: list[tuple[str, ...]] = [("contender", "op", "ops", "ops/s (median)", "plugstore/this")]
    for row in res.rows:
        ratio = "" if row.contender == res.subject else f"{res.ratio(row.contender, row.op):.2f}x"
        table.append((row.contender, row.op, str(row.n), fmt_rate(row.median), ratio))
    out = [f"== {res.title}", *format_table(table)]
    out += [f"  * {note}" for note in res.notes]
    out += [bar_line(bar) for bar in res.bars]
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="ops per contender and phase")
    parser.add_argument("--repeat", type=int, default=5, help="paired repeats")
    parser.add_argument("--seeds", help="host:port,... of a running cluster (default: start one)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a bar fails")
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeat < 1:
        parser.error("--n and --repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    keys, values = make_data(args.n)
    tmp = Path(tempfile.mkdtemp(prefix="plugstore-cluster-bench-"))
    try:
        with cluster_seeds(args.seeds) as seeds:
            subject, peer, waited = "plugstore", "raw RedisCluster", "plugstore wait=1"
            contenders = [
                (subject, args.n, plugstore_cluster(seeds)),
                (peer, args.n, raw_cluster(seeds)),
                (waited, args.n, plugstore_cluster(seeds, wait="1")),
            ]
            rows = measure(contenders, keys, values, tmp, args.repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res = Result(
        "cluster",
        "redis+cluster backend vs redis-py's RedisCluster (per op, loopback cluster)",
        subject,
        rows,
        notes=[
            f"{args.n} ops per phase, {args.repeat} paired repeats; 3 masters with a replica "
            "each, appendfsync always",
            "plugstore/this = median over repeats of plugstore ops/s / this row's ops/s in "
            "the same repeat",
            "wait=1: each write (set, incr) followed by WAIT 1 on its connection; no peer "
            "(its ratio is what plugstore without wait does per op relative to it)",
        ],
    )
    res.ratio_bar(peer, "set", 0.8)
    res.ratio_bar(peer, "get", 0.8)
    print(report(res))
    lines, failed = bar_summary([res], time.perf_counter() - started)
    print("\n" + "\n".join(lines))
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    unwind_on_sigterm()
    sys.exit(main())
