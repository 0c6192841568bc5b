"""Smoke test for benchmarks/nearcache.py: it completes at a tiny size on every backend
with a near cache and reports the hot-key ratios and the invalidation delays.  No timing
is asserted (speed belongs to the benchmark itself)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from redis_cluster import require_cluster_tools
from servers import require_server

NEAR = Path(__file__).resolve().parent.parent / "benchmarks" / "nearcache.py"


def run_bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(NEAR), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_every_backend_reports_its_ratios_and_delays(tmp_path: Path) -> None:
    require_server("PostgreSQL", "127.0.0.1", 5432)
    require_server("Redis", "127.0.0.1", 6379)
    require_cluster_tools()
    proc = run_bench(tmp_path, "--reads", "2000", "--repeat", "2", "--writes", "30")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for backend in ("redis", "redis+cluster", "postgresql", "sqlite"):
        assert f"== {backend}: hot-key get" in out
        assert f"== {backend}: invalidation" in out
        assert f"0 stale reads beyond {0 if backend == 'sqlite' else 25} ms ({backend})" in out
    for backend in ("redis", "redis+cluster", "postgresql"):
        assert f"bar: cached get >= 20x uncached ({backend})" in out
        assert f"bar: p99 delay <= 5 ms ({backend})" in out
    assert "30 writes by another process" in out
    assert "bars pass" in out


def test_an_unknown_backend_is_refused(tmp_path: Path) -> None:
    proc = run_bench(tmp_path, "--backends", "oracle")
    assert proc.returncode == 2
    assert "invalid choice: 'oracle'" in proc.stderr
