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
TINY = ["--quick", "--n", "60", "--race-n", "40", "--repeat", "3"]


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
    for number in range(1, 11):
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
    ):
        assert peer in stdout
    assert "== 10. relational plugins" in stdout
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
    }
    for workload in doc["workloads"]:
        assert workload["bars"], workload["key"]
        for row in workload["rows"]:
            assert len(row["seconds"]) == 3
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
