"""Smoke test for benchmarks/run.py: it completes at tiny sizes and reports every workload.

No timing is asserted (speed belongs to the benchmark itself); what is checked is that
every workload runs, that the race counts lost updates exactly, and that bad flags fail.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"
TINY = ["--quick", "--n", "60", "--race-n", "40", "--lock-n", "10", "--repeat", "3"]


def run_bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUN), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "results.json"
    proc = run_bench(tmp, *TINY, "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, json.loads(out.read_text())


@pytest.mark.slow
def test_prints_header_and_every_workload(tiny_run: tuple[str, dict[str, Any]]) -> None:
    stdout, _ = tiny_run
    assert "cpu count" in stdout
    assert "sqlite 3." in stdout
    for number in range(1, 15):
        assert f"== {number}. " in stdout
    for peer in (
        "raw sqlite3",
        "diskcache.Cache",
        "sqlitedict autocommit",
        "shelve kept open",
        "shelve reopened per call",
        "dict + pickle",
        "raw sqlite3 upsert",
        "plugstore naive",
        "sqlitedict naive",
        "raw psycopg",
        "raw PyMySQL",
        "raw redis-py",
        "raw boto3",
        "Peek-style alembic loop",
        "Core select",
        "plugstore namespace",
        "scope, defaults merged",
        "threading.Lock (in-process)",
        "ns[k] = v",
    ):
        assert peer in stdout
    assert "== 10. relational plugins" in stdout
    assert "== 11. scoped views" in stdout
    assert "== 12. locked get-then-set increments, 4 processes x 10 on one key" in stdout
    assert "== 13. expiry: ns.set(k, v, ttl=3600)" in stdout
    assert "== 14. subtree read" in stdout
    assert "== 15. a lock holder's writes while 9 threads of its process wait" in stdout
    assert "== summary of bars" in stdout
    assert "bars pass" in stdout


@pytest.mark.slow
def test_json_has_medians_and_exact_lost_update_counts(
    tiny_run: tuple[str, dict[str, Any]],
) -> None:
    _, doc = tiny_run
    assert doc["cpu_count"] >= 1
    assert {w["key"] for w in doc["workloads"]} == {
        "sqlite",
        "batch",
        "peers",
        "memory",
        "race",
        "postgresql",
        "mysql",
        "redis",
        "dynamodb",
        "relational",
        "scopes",
        "locks",
        "expiry",
        "tree",
        "lockwait",
    }
    assert doc["settings"]["lock_n"] == 10
    for workload in doc["workloads"]:
        assert workload["bars"], workload["key"]
        for row in workload["rows"]:
            # The DynamoDB emulator is slow: one run of each lock kind there.
            runs = 1 if (workload["key"], row["op"]) == ("locks", "dynamodb") else 3
            if workload["key"] == "lockwait":
                assert row["extra"]["errors"] == [], row  # no holder or waiter failed
            assert len(row["seconds"]) == runs
            assert row["median"] > 0
    race = next(w for w in doc["workloads"] if w["key"] == "race")
    rows = {r["contender"]: r for r in race["rows"]}
    assert set(rows) == {
        "plugstore incr",
        "raw sqlite3 upsert",
        "plugstore naive",
        "sqlitedict naive",
    }
    for name, row in rows.items():
        lost, final, errors = row["extra"]["lost"], row["extra"]["final"], row["extra"]["errors"]
        assert len(lost) == len(final) == len(errors) == 3
        # lost is exact: every increment that did not raise is either in the final value or lost
        for lo, fi, er in zip(lost, final, errors, strict=True):
            assert lo + fi + er == row["n"], name
            assert lo >= 0
    assert rows["plugstore incr"]["extra"]["lost"] == [0, 0, 0]
    assert rows["plugstore incr"]["extra"]["final"] == [rows["plugstore incr"]["n"]] * 3
    assert rows["raw sqlite3 upsert"]["extra"]["lost"] == [0, 0, 0]


@pytest.mark.slow
def test_relational_measures_both_bars_and_drops_its_schemas(
    tiny_run: tuple[str, dict[str, Any]],
) -> None:
    _, doc = tiny_run
    relational = next(w for w in doc["workloads"] if w["key"] == "relational")
    rows = {(r["contender"], r["op"]) for r in relational["rows"]}
    for pair in [
        ("plugstore", "sqlite start-up"),
        ("Peek-style alembic loop", "sqlite start-up"),
        ("plugstore", "sqlite get, connection"),
        ("Core select", "sqlite get, connection"),
        ("plugstore", "sqlite get, session"),
        ("Core select", "sqlite get, session"),
    ]:
        assert pair in rows
    labels = [bar["label"] for bar in relational["bars"]]
    assert "plugstore >= 3x Peek-style alembic loop (sqlite start-up)" in labels
    assert "plugstore >= 0.7x Core select (sqlite get, connection)" in labels
    dropped = [n for n in relational["notes"] if n.startswith("postgresql: schemas")]
    if not dropped:  # PostgreSQL was not reachable: the workload said so
        assert any(n.startswith("skipped on postgresql") for n in relational["notes"])
        return
    assert ("plugstore", "postgresql start-up") in rows
    prefix = re.search(r"pl_bench_[0-9a-f]+_", dropped[0])
    assert prefix is not None
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres") as conn:
        left = conn.execute(
            "SELECT schema_name FROM information_schema.schemata "
            "WHERE starts_with(schema_name, %s)",
            (prefix.group(0),),
        ).fetchall()
    assert left == []


@pytest.mark.slow
def test_scopes_measures_scoped_and_plain_on_each_backend(
    tiny_run: tuple[str, dict[str, Any]],
) -> None:
    _, doc = tiny_run
    scopes = next(w for w in doc["workloads"] if w["key"] == "scopes")
    kinds = ["sqlite"]
    if not any(n.startswith("skipped on redis") for n in scopes["notes"]):
        kinds.append("redis")
        # drop_namespace removed every key a run wrote, scoped ones included
        assert any(n.startswith("redis: 0 keys left") for n in scopes["notes"])
    rows = {(r["contender"], r["op"]) for r in scopes["rows"]}
    labels = [bar["label"] for bar in scopes["bars"]]
    for kind in kinds:
        for op in ("set", "get"):
            assert ("plugstore scope", f"{kind} {op}") in rows
            assert ("plugstore namespace", f"{kind} {op}") in rows
            assert ("ns.scope(...) per op", f"{kind} {op}") in rows
            assert f"plugstore scope >= 0.9x plugstore namespace ({kind} {op})" in labels
        assert ("scope, defaults merged", f"{kind} get") in rows
        assert any(n.startswith(f"info: {kind}, against the namespace") for n in scopes["notes"])
    assert len(labels) == 2 * len(kinds)


@pytest.mark.slow
def test_locks_count_every_increment_on_every_backend(
    tiny_run: tuple[str, dict[str, Any]],
) -> None:
    _, doc = tiny_run
    locks = next(w for w in doc["workloads"] if w["key"] == "locks")
    expected = 4 * 10
    backends = {r["op"] for r in locks["rows"]}
    assert "sqlite" in backends
    skipped = {n.split()[2].rstrip(":") for n in locks["notes"] if n.startswith("skipped on ")}
    assert backends | skipped == {"sqlite", "postgresql", "mysql", "redis", "dynamodb"}
    for row in locks["rows"]:
        assert row["n"] == expected
        lost, final, errors = row["extra"]["lost"], row["extra"]["final"], row["extra"]["errors"]
        for lo, fi, er in zip(lost, final, errors, strict=True):
            assert lo + fi + er == expected, (row["contender"], row["op"])
        if row["contender"] == "ns.lock (engine lock)":
            assert lost == [0] * len(lost), row["op"]
            assert final == [expected] * len(final), row["op"]
            assert errors == [0] * len(errors), row["op"]
    labels = {bar["label"]: bar["passed"] for bar in locks["bars"]}
    for backend in backends:
        assert labels[f"ns.lock loses 0 updates, every run ({backend})"] is True
    # Lease entries were released, tables dropped, Redis keys removed.
    for backend in backends:
        note = next(n for n in locks["notes"] if n.startswith(f"time: {backend}: "))
        assert " 0 lease entries left" in note or " 0 keys left" in note, note


@pytest.mark.slow
def test_expiry_measures_timed_and_plain_keys_on_each_backend(
    tiny_run: tuple[str, dict[str, Any]],
) -> None:
    _, doc = tiny_run
    expiry = next(w for w in doc["workloads"] if w["key"] == "expiry")
    skipped = {n.split()[2].rstrip(":") for n in expiry["notes"] if n.startswith("skipped on ")}
    kinds = [k for k in ("sqlite", "memory", "redis", "postgresql", "mysql") if k not in skipped]
    assert {"sqlite", "memory"} <= set(kinds)
    rows = {(r["contender"], r["op"]) for r in expiry["rows"]}
    labels = [bar["label"] for bar in expiry["bars"]]
    for kind in kinds:
        for op in ("set", "get"):
            assert ("ns.set(k, v, ttl=3600)", f"{kind} {op}") in rows
            assert ("ns[k] = v", f"{kind} {op}") in rows
            label = f"ns.set(k, v, ttl=3600) >= 0.9x ns[k] = v ({kind} {op})"
            assert (label in labels) is (kind != "memory")  # memory: measured, no bar
    assert len(labels) == 2 * (len(kinds) - 1)
    assert any(n.startswith("info: memory (no bar)") for n in expiry["notes"])
    if "redis" in kinds:  # drop_namespace removed every key, deadlines and index included
        assert any(n.startswith("redis: 0 keys left") for n in expiry["notes"])


@pytest.mark.slow
def test_tree_compares_one_call_with_the_loop_and_a_raw_scan(tmp_path: Path) -> None:
    out = tmp_path / "tree.json"
    proc = run_bench(tmp_path, *TINY, "--only", "tree", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    (tree,) = json.loads(out.read_text())["workloads"]
    skipped = {n.split()[2].rstrip(":") for n in tree["notes"] if n.startswith("skipped on ")}
    kinds = [k for k in ("sqlite", "postgresql", "redis") if k not in skipped]
    assert "sqlite" in kinds
    rows = {(r["contender"], r["op"]) for r in tree["rows"]}
    for kind in kinds:
        for contender in (
            "scope().tree('guild', 'member')",
            "ids('guild') + children('member') per guild",
            "bucket.items(prefix), raw",
            "bucket.items(prefix), values decoded",
        ):
            assert (contender, f"{kind} read") in rows
    assert len(tree["bars"]) == len(kinds)  # one per backend: tree() against the loop
    if "redis" in kinds:
        assert any(n.startswith("redis: 0 keys left") for n in tree["notes"])


@pytest.mark.slow
def test_only_runs_the_chosen_workloads(tmp_path: Path) -> None:
    proc = run_bench(tmp_path, *TINY, "--only", "memory")
    assert proc.returncode == 0, proc.stderr
    assert "== 4. " in proc.stdout
    assert "== 1. " not in proc.stdout
    assert "== 5. " not in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--repeat", "2"], "--repeat must be >= 3"),
        (["--only", "sqlite,bogus"], "unknown workload"),
        (["--n", "0"], "sizes must be >= 1"),
    ],
)
def test_bad_flags_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run_bench(tmp_path, *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "== " not in proc.stdout  # nothing was measured


@pytest.mark.slow
def test_lockwait_times_the_holder_alone_and_waited_on_every_backend(
    tiny_run: tuple[str, dict[str, Any]],
) -> None:
    _, doc = tiny_run
    lockwait = next(w for w in doc["workloads"] if w["key"] == "lockwait")
    backends = {r["op"] for r in lockwait["rows"]}
    assert {"memory", "shelf", "sqlite"} <= backends
    skipped = {n.split()[2].rstrip(":") for n in lockwait["notes"] if n.startswith("skipped on ")}
    assert backends | skipped == {
        "memory",
        "shelf",
        "sqlite",
        "postgresql",
        "mysql",
        "redis",
        "dynamodb",
    }
    labels = [bar["label"] for bar in lockwait["bars"]]
    for backend in backends:
        assert f"holder, 9 waiters >= 0.8x holder alone ({backend})" in labels
        assert f"no waiter or holder fails ({backend})" in labels
