"""The conformance kit run against every built-in backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plugstore.testing import StoreConformance


class TestMemoryPrivate(StoreConformance):
    url = "memory://"


class TestMemoryShared(StoreConformance):
    persistent = True

    def make_url(self, tmp_path: Path) -> str:
        return f"memory://{tmp_path.name}"


class TestSQLite(StoreConformance):
    def make_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'conformance.db'}"


class TestShelf(StoreConformance):
    def make_url(self, tmp_path: Path) -> str:
        return f"shelf:///{tmp_path / 'data'}"


class TestShelfSQLite3Files(StoreConformance):
    """Shelf files in Python 3.13's dbm.sqlite3 format, readable on every Python."""

    options = {"dbm": "sqlite3"}  # noqa: RUF012 - read by the kit only

    def make_url(self, tmp_path: Path) -> str:
        return f"shelf:///{tmp_path / 'data'}"


def test_memory_namespaces_keep_working_and_share_one_lock_after_reopen() -> None:
    import plugstore

    store = plugstore.open("memory://")
    old = store.namespace("n")
    store.close()
    store.open()
    new = store.namespace("n")
    old["k"] = 1  # a namespace object from before the reopen is usable again
    assert new["k"] == 1
    assert old._bucket._lock is new._bucket._lock  # type: ignore[attr-defined]
    store.close()


def test_kit_children_get_the_url_outside_their_argv(monkeypatch: Any) -> None:
    """The unmasked URL (password included) must not be visible in `ps`."""
    import json

    import plugstore
    from plugstore import testing

    seen: list[tuple[list[str], dict[str, str]]] = []

    class FakePopen:
        def __init__(self, argv: list[str], env: dict[str, str], **_: Any) -> None:
            seen.append((argv, env))

    monkeypatch.setattr("plugstore.testing.subprocess.Popen", FakePopen)
    with plugstore.open("memory://user:hunter2@kit-argv") as store:
        testing.StoreConformance()._children(store, "incr", [{"key": "k", "n": 1}])
    ((argv, env),) = seen
    assert "hunter2" not in " ".join(argv)
    assert "hunter2" in json.loads(env[testing.SPEC_ENV])["url"]


class TestMemoryNearCache(StoreConformance):
    """The whole kit through the near cache (plugstore.nearcache)."""

    url = "memory://"
    options = {"cache": 1000}  # noqa: RUF012 - read by the kit only


class TestSQLiteNearCache(StoreConformance):
    """The whole kit through the near cache, coherent by PRAGMA data_version."""

    options = {"cache": 1000}  # noqa: RUF012 - read by the kit only

    def make_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'conformance.db'}"
