"""The conformance kit run against every built-in backend."""

from __future__ import annotations

from pathlib import Path

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
