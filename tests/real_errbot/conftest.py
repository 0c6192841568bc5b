"""Running real Errbot (its TestBot) on plugstore storage.

These tests run in the venv built by ``make test-errbot`` (Errbot plus plugstore installed
from a wheel).  Errbot missing there is an error, not a skip.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from errbot.backends.test import TestBot

import plugstore
from servers import require_server

PLUGINS = str(Path(__file__).parent / "plugins")
RUN = uuid.uuid4().hex[:8]
PG_SCHEMA = f"errbot_{RUN}"
PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_BASE = "redis://127.0.0.1:6379/0"
#: The plugstore command of the venv running the tests (installed from the wheel).
PLUGSTORE = str(Path(sys.executable).with_name("plugstore"))
ERRBOT = str(Path(sys.executable).with_name("errbot"))


@contextmanager
def running_bot(
    data_dir: Path,
    *,
    storage: str = "Plugstore",
    storage_config: dict[str, Any] | None = None,
    **config: Any,
) -> Iterator[TestBot]:
    """A started TestBot with the memo test plugin, stopped on exit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    extra = {
        "BOT_DATA_DIR": str(data_dir),
        "STORAGE": storage,
        "STORAGE_CONFIG": dict(storage_config or {}),
        **config,
    }
    bot = TestBot(extra_plugin_dir=PLUGINS, loglevel=logging.WARNING, extra_config=extra)
    bot.start(timeout=10)
    try:
        yield bot
    finally:
        bot.stop()


def say(bot: TestBot, text: str) -> str:
    """Send a command, return the bot's first reply."""
    bot.push_message(text)
    return str(bot.pop_message(timeout=15))


def plugin(bot: TestBot, name: str = "Memo") -> Any:
    return bot.bot.plugin_manager.get_plugin_obj_by_name(name)


def run(*argv: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command of this venv; output captured as text."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)


def clear_store(url: str) -> None:
    with plugstore.open(url, codec="pickle") as store:
        for name in store.namespaces():
            store.drop_namespace(name)


@pytest.fixture(scope="session", autouse=True)
def _drop_pg_schema() -> Iterator[None]:
    yield
    try:
        import psycopg

        with psycopg.connect(PG_BASE, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE')
    except Exception:  # noqa: S110 - no server, nothing was created
        pass


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store for one test, on each backend the issue names."""
    tag = uuid.uuid4().hex[:8]
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'errbot-store.db'}"
        return
    if request.param == "postgresql":
        require_server("PostgreSQL", "127.0.0.1", 5432)
        url = f"{PG_BASE}?schema={PG_SCHEMA}&table=t_{tag}"
    else:
        require_server("Redis", "127.0.0.1", 6379)
        url = f"{REDIS_BASE}?prefix=errbot:{RUN}:{tag}:"
    yield url
    clear_store(url)


@pytest.fixture
def bot_config_file(tmp_path: Path) -> Any:
    """Write a config.py for the ``errbot`` command; return its path."""

    def write(data_dir: Path, storage_config: dict[str, Any], **extra: Any) -> Path:
        data_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            "import logging",
            'BACKEND = "Text"',
            f"BOT_DATA_DIR = {str(data_dir)!r}",
            f"BOT_EXTRA_PLUGIN_DIR = {PLUGINS!r}",
            "BOT_LOG_FILE = None",
            "BOT_LOG_LEVEL = logging.WARNING",
            'BOT_ADMINS = ("@plugstore",)',
            'STORAGE = "Plugstore"',
            f"STORAGE_CONFIG = {storage_config!r}",
            *(f"{k} = {v!r}" for k, v in extra.items()),
        ]
        path = tmp_path / "config.py"
        path.write_text("\n".join(lines) + "\n")
        return path

    return write


@pytest.fixture
def clean_env() -> Iterator[dict[str, str]]:
    """The environment for subprocesses: no PLUGSTORE_URL leaking in from the test run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLUGSTORE_")}
    return env


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
