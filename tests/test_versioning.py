"""Versioned namespaces and quarantine beyond the conformance kit: the progress bar of a
large migration, `plugstore doctor` listing and restoring set-aside values, and the
plain views hiding a namespace's meta and scoped entries from Errbot-style callers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import plugstore
from plugstore.cli.app import cli
from plugstore.quarantine import entries
from plugstore.versioning import PROGRESS_MIN, Migration

GARBAGE = b"\x00\xffnot a value"


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.sqlite3'}"


def _bump(m: Migration) -> None:
    batch = {key: value + 1 for key, value in m.items()}
    m.namespace.update(batch)


def test_a_large_migration_shows_progress_on_stderr(
    db: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with plugstore.open(db) as store:
        store.namespace("big").update({f"k{i:05}": i for i in range(PROGRESS_MIN)})
        capfd.readouterr()
        ns = store.namespace("big", version=2, migrations={2: _bump})
        captured = capfd.readouterr()
        assert ns["k00000"] == 1
        assert ns[f"k{PROGRESS_MIN - 1:05}"] == PROGRESS_MIN
        assert "big: v1 -> v2" in captured.err
        assert "100%" in captured.err
        assert captured.out == ""


def test_a_small_migration_is_quiet(db: str, capfd: pytest.CaptureFixture[str]) -> None:
    with plugstore.open(db) as store:
        store.namespace("small").update({f"k{i}": i for i in range(PROGRESS_MIN - 1)})
        capfd.readouterr()
        store.namespace("small", version=2, migrations={2: _bump})
        assert capfd.readouterr() == ("", "")


def test_a_migration_sees_the_entries_as_they_were(db: str) -> None:
    """Keys the step writes are not visited; keys it deletes are skipped from the next
    page of values on."""
    seen: list[str] = []
    keys = [f"k{i:04}" for i in range(1200)]

    def move(m: Migration) -> None:
        for key, value in m.items():
            seen.append(key)
            m.namespace.scope(user=key)["v"] = value  # sorts before every plain key
            del m.namespace[key]
            if key == keys[0]:
                del m.namespace[keys[-1]]  # on the last page: never reached

    with plugstore.open(db) as store:
        store.namespace("moves").update(dict.fromkeys(keys, 1))
        ns = store.namespace("moves", version=2, migrations={2: move})
        assert sorted(seen) == keys[:-1]
        assert len(list(ns.scope().ids("user"))) == len(keys) - 1
        assert len(ns) == 0


def _runner() -> CliRunner:
    try:  # click < 8.2 mixes stderr into stdout unless told not to
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()


def test_doctor_lists_and_restores_quarantined_values(db: str) -> None:
    with plugstore.open(db) as store:
        ns = store.namespace("notes", quarantine=True)
        ns["fine"] = "ok"
        ns._bucket.set("broken", GARBAGE)
        assert ns.get("broken") is None
        assert list(ns) == ["fine"]
    run: Any = _runner().invoke
    listed = run(cli, ["doctor", db], catch_exceptions=False)
    assert listed.exit_code == 0, listed.stdout + listed.stderr
    assert "quarantine: 1 value(s) set aside as undecodable" in listed.stdout
    assert "notes 'broken'" in listed.stdout
    assert f"{len(GARBAGE)} bytes" in listed.stdout
    assert "plugstore doctor --restore" in listed.stdout
    restored = run(cli, ["doctor", "--restore", db], catch_exceptions=False)
    assert restored.exit_code == 0
    assert "restored" in restored.stdout
    with plugstore.open(db) as store:
        assert store.namespace("notes")._bucket.get("broken") == GARBAGE
        assert list(entries(store)) == []
    again = run(cli, ["doctor", db], catch_exceptions=False)
    assert "quarantine: empty" in again.stdout


def test_tools_see_what_the_plain_views_hide(db: str) -> None:
    """`plugstore ls NS` and dump list scoped entries and the stamp; the namespace's
    own iteration (what Errbot's storage shows) lists plain keys only."""
    with plugstore.open(db) as store:
        ns = store.namespace("karma", version=2)
        ns["plain"] = 1
        ns.scope(channel="general")["alice"] = 3
        assert list(ns) == ["plain"]
        assert len(ns) == 1
        assert dict(ns.items()) == {"plain": 1}
    listed = _runner().invoke(cli, ["-u", db, "ls", "karma"], catch_exceptions=False)
    assert listed.exit_code == 0, listed.stderr
    assert len(listed.stdout.rstrip("\n").split("\n")) == 3  # plain, scoped, version


def test_dump_and_load_carry_the_stamp(db: str, tmp_path: Path) -> None:
    """The version travels with the data: a loaded copy is not migrated again."""
    with plugstore.open(db) as store:
        store.namespace("karma", version=3).scope(channel="dev")["python"] = 2
    run: Any = _runner().invoke
    dumped = tmp_path / "karma.jsonl"
    assert run(cli, ["-u", db, "dump", "-o", str(dumped)]).exit_code == 0
    copy = f"sqlite:///{tmp_path / 'copy.sqlite3'}"
    loaded = run(cli, ["-u", copy, "load", str(dumped)], catch_exceptions=False)
    assert loaded.exit_code == 0, loaded.stderr
    with plugstore.open(copy) as store:
        ns = store.namespace("karma", version=3, migrations={2: _bump, 3: _bump})  # not run
        assert ns.data_version == 3
        assert ns.scope(channel="dev")["python"] == 2
