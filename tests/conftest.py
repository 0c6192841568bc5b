"""Shared test configuration: the user's real default store is never touched."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_default_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Point PLUGSTORE_URL at a throwaway file so a test without a URL stays local."""
    old = os.environ.get("PLUGSTORE_URL")
    home: Path = tmp_path_factory.mktemp("default-store")
    os.environ["PLUGSTORE_URL"] = f"sqlite:///{home / 'default.sqlite3'}"
    yield
    if old is None:
        os.environ.pop("PLUGSTORE_URL", None)
    else:
        os.environ["PLUGSTORE_URL"] = old


# The tests against real Errbot run in their own venv (`make test-errbot`): Errbot pins
# dependency versions the dev tools conflict with.  Elsewhere they are not collected.
# (The folder is not called "errbot": on sys.path it would pass for the package.)
if importlib.util.find_spec("errbot") is None:
    collect_ignore = ["real_errbot"]
