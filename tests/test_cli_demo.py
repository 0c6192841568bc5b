"""``plugstore demo``: the README's main job, run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import plugstore


def run_demo(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PLUGSTORE_URL": url, "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "plugstore.cli", "demo", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_demo_persists_across_runs_on_the_default_style_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    first = run_demo(url, "--rolls", "20")
    assert first.returncode == 0, first.stderr
    assert "run #1" in first.stdout
    assert "exact" in first.stdout
    assert "LOST" not in first.stdout
    second = run_demo(url, "--rolls", "20")
    assert second.returncode == 0, second.stderr
    assert "run #2" in second.stdout
    with plugstore.open(url) as store:
        assert store.namespace("demo-notes")["runs"] == 2
        assert store.namespace("demo-karma")["plugstore"] == 2000  # 2 runs x 4 x 250
        game = store.namespace("demo-game")
        stats = [game[p] for p in ("alice", "bob", "carol") if p in game]
        assert sum(s["rolls"] for s in stats) == 40
        board = game["leaderboard"]
        assert [p for p, _ in board] == sorted(
            (p for p, _ in board), key=lambda p: (-game.get(p, {}).get("points", 0), p)
        )
        assert set(store.namespaces()) >= {"demo-notes", "demo-karma", "demo-game"}


def test_demo_reports_a_bad_store_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    result = run_demo(f"sqlite:///{tmp_path / 'file' / 'x.db'}")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
