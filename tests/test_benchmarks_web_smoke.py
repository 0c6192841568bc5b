"""Smoke test for benchmarks/web.py: it completes at a tiny size on both backends and
reports every page beside its raw reads, and the first-page bar.  No timing is asserted
(speed belongs to the benchmark itself)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from servers import require_server

pytest.importorskip("starlette", reason="the web extra is not installed")

WEB = Path(__file__).resolve().parent.parent / "benchmarks" / "web.py"


def run_bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(WEB), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_every_page_is_measured_beside_its_raw_reads(tmp_path: Path) -> None:
    require_server("PostgreSQL", "127.0.0.1", 5432)
    proc = run_bench(tmp_path, "--keys", "2000", "--repeat", "2")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for backend in ("sqlite", "postgresql"):
        assert f"== {backend}: 2,000 keys in one namespace" in out
        assert f"bar: first page < 300 ms ({backend})" in out
    for page in ("overview", "namespace, first page", "page after the middle key", "a key"):
        assert out.count(f"{page}") >= 4  # plugstore web and raw reads, on both backends
    assert "2/2 bars pass" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--keys", "10"], "--keys must be >= 1000"),
        (["--backends", "sqlite,oracle"], "unknown backend(s) ['oracle']"),
    ],
)
def test_bad_flags_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run_bench(tmp_path, *args)
    assert proc.returncode == 2
    assert message in proc.stderr
