"""plugstore web benchmark: how fast the console's pages load on a big namespace.

    python benchmarks/web.py                  # 1,000,000 keys on SQLite and PostgreSQL
    python benchmarks/web.py --quick          # 100,000 keys, 3 repeats
    python benchmarks/web.py --backends sqlite --keys 200000

One namespace of ``--keys`` keys is written (untimed), then each page is requested
through the console's real ASGI app (Starlette's test client: routing, the access
cookie, Jinja2 rendering; no network) ``--repeat`` times, after one warm-up request.
Beside each page, its peer is the raw driver running the store reads that page needs
(the same statements, on the same table): the ratio is what the console adds to them.
Bar (issue 20): the first page of the namespace renders in under 300 ms, on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import plugstore
from harness import Bar, Result, Row, bar_line, bar_summary, format_table, unwind_on_sigterm
from servers import PG_DSN, PG_URL, unavailable

#: The bar: the first page of a namespace of a million keys, in milliseconds.
FIRST_PAGE_MS = 300.0
NS = "big"
BACKENDS = ("sqlite", "postgresql")


def fill(store: plugstore.Store, keys: int) -> None:
    """``keys`` keys in namespace NS, written in batches (untimed)."""
    ns = store.namespace(NS)
    batch = 20_000
    for start in range(0, keys, batch):
        ns.set_many({f"user:{i:07d}": {"n": i} for i in range(start, min(keys, start + batch))})


def timed_ms(call: Callable[[], Any], repeat: int) -> list[float]:
    call()  # warm-up: caches, statements, templates
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def pages(keys: int) -> list[tuple[str, str]]:
    """(page, path) of each page measured."""
    middle = f"user:{keys // 2:07d}"
    return [
        ("overview", "/"),
        ("namespace, first page", f"/ns/{NS}"),
        ("namespace, page after the middle key", f"/ns/{NS}?after={middle}"),
        ("namespace, prefix search", f"/ns/{NS}?prefix=user:00012"),
        ("a key", f"/ns/{NS}/key?k={middle}"),
    ]


def raw_reads(backend: str, where: Any, keys: int) -> dict[str, Callable[[], Any]]:
    """Per page, the raw driver running the reads that page makes."""
    middle = f"user:{keys // 2:07d}"
    if backend == "sqlite":
        conn = sqlite3.connect(where, isolation_level=None)
        table = "plugstore_kv"

        def q(sql: str, *params: Any) -> Any:
            return conn.execute(sql.replace("{t}", table), params).fetchall()

    else:
        import psycopg

        pg = psycopg.connect(PG_DSN, autocommit=True)
        table = where

        def q(sql: str, *params: Any) -> Any:
            with pg.cursor() as cur:
                cur.execute(sql.replace("{t}", table).replace("?", "%s"), params)  # type: ignore[arg-type]
                return cur.fetchall()

    now = time.time()
    base = "FROM {t} WHERE namespace = ? AND (expires_at IS NULL OR expires_at > ?)"
    page, count = f"SELECT key {base}", f"SELECT count(*) {base}"
    first = f"{page} ORDER BY key LIMIT 101"
    after = f"{page} AND key > ? ORDER BY key LIMIT 101"
    ranged = " AND key >= ? AND key < ?"
    low, high = "user:00012", "user:00013"
    size_of = (
        "length(CAST(key AS BLOB)) + length(value)"
        if backend == "sqlite"
        else "octet_length(key) + octet_length(value)"
    )
    size = f"SELECT COALESCE(SUM({size_of}), 0) {base}"
    # The first page also looks for scopes: one seek into the scoped keys' range.
    scopes = f"{page} AND key > ? AND key < ? ORDER BY key LIMIT 1"
    return {
        "overview": lambda: (q(count, NS, now), q(size, NS, now)),
        "namespace, first page": lambda: (
            q(first, NS, now),
            q(count, NS, now),
            q(scopes, NS, now, "\x1f", "\x20"),
        ),
        "namespace, page after the middle key": lambda: (
            q(after, NS, now, middle),
            q(count, NS, now),
        ),
        "namespace, prefix search": lambda: (
            q(f"{page}{ranged} ORDER BY key LIMIT 101", NS, now, low, high),
            q(f"{count}{ranged}", NS, now, low, high),
        ),
        "a key": lambda: q(
            "SELECT value, expires_at FROM {t} WHERE namespace = ? AND key = ?", NS, middle
        ),
    }


def run_backend(backend: str, keys: int, repeat: int, tmp: Path) -> Result:
    from starlette.testclient import TestClient

    from plugstore.web import Access, create_app

    if backend == "sqlite":
        path = tmp / "web.db"
        url, where = f"sqlite:///{path}", str(path)
    else:
        table = f"bench_web_{uuid.uuid4().hex[:8]}"
        url, where = f"{PG_URL}?table={table}", table
    res = Result(backend, f"{backend}: {keys:,} keys in one namespace", "plugstore web", [])
    store = plugstore.open(url)
    try:
        t0 = time.perf_counter()
        fill(store, keys)
        res.notes.append(f"writing {keys:,} keys took {time.perf_counter() - t0:.0f} s (untimed)")
        access = Access()
        client = TestClient(create_app(store, access))
        client.get(f"/?token={access.token}")  # the cookie
        raw = raw_reads(backend, where, keys)
        for page, path in pages(keys):

            def load(path: str = path) -> None:
                response = client.get(path)
                assert response.status_code == 200, (path, response.status_code)

            web = Row("plugstore web", page, 1, [s / 1000 for s in timed_ms(load, repeat)])
            peer = Row(
                "raw reads of the page", page, 1, [s / 1000 for s in timed_ms(raw[page], repeat)]
            )
            res.rows += [web, peer]
            if page == "namespace, first page":
                ms = statistics.median(s * 1000 for s in web.seconds)
                res.bars.append(
                    Bar(
                        f"first page < {FIRST_PAGE_MS:g} ms ({backend})",
                        f"{ms:.0f} ms",
                        ms < FIRST_PAGE_MS,
                    )
                )
    finally:
        if backend == "postgresql":
            store.backend.drop()  # type: ignore[attr-defined]
        store.close()
    return res


def report(res: Result) -> str:
    lines = [f"== {res.title}"]
    table = [["page", "contender", "median ms", "min .. max ms", "web / raw"]]
    for web, peer in zip(res.rows[::2], res.rows[1::2], strict=True):
        web_ms = statistics.median(web.seconds) * 1000
        for row in (web, peer):
            ms = [s * 1000 for s in row.seconds]
            median = statistics.median(ms)
            ratio = f"{web_ms / median:.1f}x" if row is peer else ""
            span = f"{min(ms):.1f} .. {max(ms):.1f}"
            table.append([row.op, row.contender, f"{median:.1f}", span, ratio])
    lines += format_table(table, left=2)
    lines += [f"  * {note}" for note in res.notes]
    lines.append("  * web / raw: the page's median time over the raw reads' median time")
    lines += [bar_line(bar) for bar in res.bars]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100,000 keys and 3 repeats")
    parser.add_argument("--keys", type=int, help="keys in the namespace (1,000,000)")
    parser.add_argument("--repeat", type=int, help="requests per page (9; --quick: 3)")
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="subset of sqlite,postgresql"
    )
    parser.add_argument("--check", action="store_true", help="exit with status 1 if a bar fails")
    args = parser.parse_args(argv)
    args.keys = args.keys or (100_000 if args.quick else 1_000_000)
    args.repeat = args.repeat or (3 if args.quick else 9)
    args.backends = [b for b in args.backends.split(",") if b]
    unknown = sorted(set(args.backends) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backend(s) {unknown}")
    if args.keys < 1000 or args.repeat < 1:
        parser.error("--keys must be >= 1000 and --repeat >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"plugstore web benchmark: {args.keys:,} keys, {args.repeat} requests per page", flush=True
    )
    started = time.perf_counter()
    results: list[Result] = []
    tmp = Path(tempfile.mkdtemp(prefix="plugstore-web-bench-"))
    try:
        for backend in args.backends:
            if backend == "postgresql":
                problem = unavailable("127.0.0.1", 5432, "psycopg")
                if problem:
                    print(f"\n== postgresql skipped: {problem}")
                    continue
            res = run_backend(backend, args.keys, args.repeat, tmp)
            results.append(res)
            print("\n" + report(res), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines, failed = bar_summary(results, time.perf_counter() - started)
    print("\n" + "\n".join(lines))
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    unwind_on_sigterm()
    sys.exit(main())
