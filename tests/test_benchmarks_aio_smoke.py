"""Smoke test for benchmarks/aio.py: it completes at tiny sizes and reports every workload.

No timing is asserted (speed belongs to the benchmark itself); what is checked is that
every workload runs on every backend that is reachable (and says why one is not), that
the lost-updates workload counts exactly, that --only/--backends choose, and that bad
flags fail before anything is measured.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

AIO = Path(__file__).resolve().parent.parent / "benchmarks" / "aio.py"
TINY = [
    "--quick",
    "--n", "20",
    "--tasks", "5",
    "--pool", "3",
    "--lag-calls", "30",
    "--lost-n", "4",
    "--lost-tasks", "2",
    "--repeat", "3",
]  # fmt: skip
BACKENDS = {"memory", "shelf", "sqlite", "postgresql", "mysql", "redis", "dynamodb"}
MULTIPROCESS = BACKENDS - {"memory"}


def run_bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(AIO), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("aiobench")
    out = tmp / "results.json"
    proc = run_bench(tmp, *TINY, "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, json.loads(out.read_text())


def workload(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return next(w for w in doc["workloads"] if w["key"] == key)


@pytest.mark.slow
def test_prints_header_every_workload_and_the_summary(
    tiny_run: tuple[str, dict[str, Any]],
) -> None:
    stdout, doc = tiny_run
    assert "cpu count" in stdout
    assert "aiosqlite 0." in stdout
    for number in range(1, 5):
        assert f"== {number}. " in stdout
    assert "== 2. 5 tasks issuing get/set/incr" in stdout
    assert "== 4. lost updates: 2 tasks x 4 processes x 4 increments" in stdout
    contenders = {r["contender"] for w in doc["workloads"] for r in w["rows"]}
    for name in contenders:
        assert f"  {name} " in stdout, name
    peers = {"sync API on 8 threads", "sync API on 3 threads", "sync API in the coroutine"}
    peers |= {"ticker alone", "raw aiosqlite", "raw sqlite3 on threads"}
    if "postgresql" in doc["backends"]:
        peers |= {"raw psycopg AsyncConnectionPool", "raw psycopg AsyncConnection"}
    if "redis" in doc["backends"]:
        peers |= {"raw redis.asyncio", "raw redis.asyncio BlockingConnectionPool"}
    assert peers <= contenders
    assert "== summary of bars" in stdout
    assert "bars pass" in stdout


@pytest.mark.slow
def test_every_backend_is_measured_or_its_absence_explained(
    tiny_run: tuple[str, dict[str, Any]],
) -> None:
    _, doc = tiny_run
    assert {"memory", "shelf", "sqlite"} <= set(doc["backends"])
    assert set(doc["backends"]) | set(doc["skipped"]) == BACKENDS
    assert {w["key"] for w in doc["workloads"]} == {"perop", "tasks", "lag", "lost"}
    for w in doc["workloads"]:
        measured = {row["op"].split()[0] for row in w["rows"]}
        expected = set(doc["backends"]) - ({"memory"} if w["key"] == "lost" else set())
        assert measured == expected, w["key"]
        for backend in doc["skipped"]:
            assert any(n.startswith(f"skipped on {backend}: ") for n in w["notes"])
        assert w["bars"], w["key"]


@pytest.mark.slow
def test_throughput_rows_have_every_repeat_and_the_bars_against_raw_drivers(
    tiny_run: tuple[str, dict[str, Any]],
) -> None:
    _, doc = tiny_run
    for key in ("perop", "tasks"):
        w = workload(doc, key)
        for row in w["rows"]:
            assert len(row["seconds"]) == 3, row
            assert row["median"] > 0
        ops = {(r["contender"], r["op"]) for r in w["rows"]}
        for backend in doc["backends"]:
            for op in ("get", "set", "incr"):
                assert ("plugstore.aio", f"{backend} {op}") in ops
        labels = [bar["label"] for bar in w["bars"]]
        peers = ["raw aiosqlite", "raw sqlite3 on threads"]
        for peer in peers:
            assert f"plugstore.aio >= 0.8x {peer} (sqlite get)" in labels
        pool = "raw psycopg AsyncConnectionPool"
        if "postgresql" in doc["backends"]:
            assert f"plugstore.aio >= 0.8x {pool} (postgresql incr)" in labels
        # No bar against a single connection, nor for backends compared with threads.
        assert not any("AsyncConnection " in label or "(mysql" in label for label in labels)


@pytest.mark.slow
def test_lag_reports_the_worst_tick_of_every_run_and_a_bar_per_backend(
    tiny_run: tuple[str, dict[str, Any]],
) -> None:
    _, doc = tiny_run
    lag = workload(doc, "lag")
    for row in lag["rows"]:
        assert len(row["extra"]["max_lag_ms"]) == 3
        assert len(row["extra"]["p99_lag_ms"]) == 3
        assert all(t >= 1 for t in row["extra"]["ticks"]), row
    contenders = {r["contender"] for r in lag["rows"]}
    assert contenders == {"plugstore.aio", "sync API in the coroutine", "ticker alone"}
    labels = {bar["label"]: bar for bar in lag["bars"]}
    for backend in doc["backends"]:
        bar = labels[f"plugstore.aio max lag <= 20 ms ({backend})"]
        row = next(
            r for r in lag["rows"] if r["contender"] == "plugstore.aio" and r["op"] == backend
        )
        assert bar["measured"] == f"{max(row['extra']['max_lag_ms']):.1f} ms"
        assert bar["passed"] is (max(row["extra"]["max_lag_ms"]) <= 20.0)


@pytest.mark.slow
def test_lost_updates_are_counted_exactly_on_every_multiprocess_backend(
    tiny_run: tuple[str, dict[str, Any]],
) -> None:
    _, doc = tiny_run
    lost = workload(doc, "lost")
    backends = {r["op"] for r in lost["rows"]}
    assert backends == set(doc["backends"]) & MULTIPROCESS
    for row in lost["rows"]:
        per_task = max(1, 4 // {"dynamodb": 8, "mysql": 4}.get(row["op"], 1))  # scaled down
        assert row["n"] == 4 * 2 * per_task
        lo, fi, er = row["extra"]["lost"], row["extra"]["final"], row["extra"]["errors"]
        assert len(lo) == len(fi) == len(er) == 1
        # Every increment that did not raise is in the final value, or counted lost.
        assert lo[0] + fi[0] + er[0] == row["n"], row
        assert lo == [0], row
        assert fi == [row["n"]], row
    labels = {bar["label"]: bar["passed"] for bar in lost["bars"]}
    for backend in backends:
        assert labels[f"incr loses 0 updates ({backend})"] is True
        assert labels[f"locked get-then-set loses 0 updates ({backend})"] is True


@pytest.mark.slow
def test_only_and_backends_choose_what_runs(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = run_bench(tmp_path, *TINY, "--only", "perop", "--backends", "memory", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "== 1. " in proc.stdout
    assert "== 2. " not in proc.stdout
    assert "== 3. " not in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["backends"] == ["memory"]
    (perop,) = doc["workloads"]
    assert {r["op"] for r in perop["rows"]} == {"memory get", "memory set", "memory incr"}


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_sigterm_unwinds_the_run_and_stops_the_emulator_it_started(tmp_path: Path) -> None:
    """A stopped run (SIGTERM, as CI or ``kill`` sends) runs its clean-ups: the DynamoDB
    emulator it started is stopped and its scratch directory removed, not left behind."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    args = ["--only", "lag", "--backends", "dynamodb", "--lag-calls", "100000", "--repeat", "3"]
    proc = subprocess.Popen(
        [sys.executable, str(AIO), *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        emulators: list[int] = []
        while not emulators and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            emulators = _children(proc.pid)
        assert emulators, "the benchmark never started its DynamoDB emulator"
        time.sleep(3)  # into the workload
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, err
    for pid in emulators:
        assert not Path(f"/proc/{pid}").exists(), f"emulator {pid} outlived the benchmark"
    assert not list(tmp_path.glob("plugstore-aio-bench-*"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--repeat", "2"], "--repeat must be >= 3"),
        (["--only", "perop,bogus"], "unknown workload(s) ['bogus']"),
        (["--backends", "sqlite,oracle"], "unknown backend(s) ['oracle']"),
        (["--tasks", "0"], "sizes must be >= 1"),
        (["--lost-n", "-1"], "sizes must be >= 1"),
    ],
)
def test_bad_flags_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run_bench(tmp_path, *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "== " not in proc.stdout  # nothing was measured
