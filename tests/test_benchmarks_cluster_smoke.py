"""Smoke test for benchmarks/cluster.py: at tiny sizes it starts its own local cluster,
measures every contender, reports its bars and stops the cluster.  No timing is asserted
(speed belongs to the benchmark itself)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from redis_cluster import require_cluster_tools

CLUSTER = Path(__file__).resolve().parent.parent / "benchmarks" / "cluster.py"


def test_tiny_run_reports_every_contender_and_bar(tmp_path: Path) -> None:
    require_cluster_tools()
    proc = subprocess.run(
        [sys.executable, str(CLUSTER), "--n", "20", "--repeat", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for contender in ("plugstore", "raw RedisCluster", "plugstore wait=1"):
        for op in ("set", "get", "incr"):
            row = rf"^  {re.escape(contender)} +{op} +20 +[\d,]+"
            assert re.search(row, proc.stdout, re.MULTILINE), (contender, op)
    assert "plugstore >= 0.8x raw RedisCluster (set)" in proc.stdout
    assert "plugstore >= 0.8x raw RedisCluster (get)" in proc.stdout
    assert "/2 bars pass" in proc.stdout


def test_bad_flags_fail_before_anything_starts(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(CLUSTER), "--n", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "--n and --repeat must be at least 1" in proc.stderr
