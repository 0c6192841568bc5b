"""examples/relational_tutorial, run as its README and docs/relational.md say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from relational_helpers import ENGINES, drop_schemas, url_for

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "relational_tutorial"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=EXAMPLE, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_the_tutorial_plugin_migrates_and_runs(engine: str, tmp_path: Path) -> None:
    url = url_for(engine, tmp_path)
    drop_schemas(url, ["tutorial"])  # as on a database that never saw the plugin
    try:
        first = run("use_it.py", url)
        assert first.returncode == 0, first.stderr
        assert first.stdout.splitlines() == [
            "migrated tutorial: None -> c96fac2b779a",
            "1 string_ints rows",
            "greeting='hi there'",
            "max_rows=100",
        ]
        second = run("use_it.py", url)  # already at the head: no migration
        assert second.stdout.splitlines()[0] == "2 string_ints rows", second.stderr
        # The committed revisions match the models: `plugstore db check` is clean.
        check = run(
            "-m", "plugstore.cli", "db", "check", url, "--no-entry-points",
            "--load", "tutorial_plugin.tables:plugin",
        )  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr
        assert "tutorial: tables match revision c96fac2b779a" in check.stdout
    finally:
        drop_schemas(url, ["tutorial"])
