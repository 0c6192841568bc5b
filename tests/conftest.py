"""Shared test configuration: the user's real default store is never touched; the
local Redis Clusters the cluster tests ask for."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A local Redis Cluster shared by one module's tests (see redis_cluster.py)."""
    from redis_cluster import local_cluster

    with local_cluster(tmp_path_factory.mktemp("cluster")) as started:
        yield started


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Any]:
    """A local Redis Cluster for one test that moves slots, kills or freezes nodes."""
    from redis_cluster import local_cluster

    with local_cluster(tmp_path / "cluster") as started:
        yield started


# The tests against real Errbot run in their own venv (`make test-errbot`): Errbot pins
# dependency versions the dev tools conflict with.  Elsewhere they are not collected.
# (The folder is not called "errbot": on sys.path it would pass for the package.)
if importlib.util.find_spec("errbot") is None:
    collect_ignore = ["real_errbot"]
