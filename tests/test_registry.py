"""Backend discovery: built-ins, register(), entry points, .plug files, missing extras."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

import plugstore
from plugstore import registry
from plugstore.backends.memory import MemoryBackend
from plugstore.errors import BackendNotFoundError, ConfigurationError, MissingDependencyError


def test_import_plugstore_is_light() -> None:
    code = (
        "import sys, plugstore, plugstore.store, plugstore.registry;"
        "heavy = {'sqlalchemy', 'redis', 'boto3', 'botocore', 'psycopg', 'click', 'rich',"
        " 'hypothesis', 'pytest', 'sqlite3', 'platformdirs'};"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_builtins_and_aliases_resolve_lazily() -> None:
    assert registry.resolve("memory") is MemoryBackend
    assert registry.resolve("SQLITE3").name == "sqlite"
    assert registry.resolve("sqlite+pysqlite").name == "sqlite"
    assert {"memory", "sqlite", "shelf"} <= set(registry.available())


def test_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(BackendNotFoundError, match=r"known: .*memory.*sqlite"):
        plugstore.open("nosuchdb://x")


def test_missing_extra_names_the_pip_line(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = registry.BackendSpec("fakedb", "plugstore.backends.memory:MemoryBackend", extra="fakedb")
    monkeypatch.setitem(registry.BUILTINS, "fakedb", spec)
    real_import = registry.importlib.import_module

    def import_module(name: str, *args: Any) -> Any:
        if name == "plugstore.backends.memory":
            raise ModuleNotFoundError("No module named 'fakedb_driver'", name="fakedb_driver")
        return real_import(name, *args)

    monkeypatch.setattr(registry.importlib, "import_module", import_module)
    with pytest.raises(MissingDependencyError) as err:
        plugstore.open("fakedb://host")
    assert 'pip install "plugstore[fakedb]"' in str(err.value)
    assert isinstance(err.value, ImportError)


def test_register_in_process() -> None:
    class Custom(MemoryBackend):
        name = "custom"

    plugstore.register("custom", Custom)
    try:
        with plugstore.open("custom://") as store:
            assert isinstance(store.backend, Custom)
    finally:
        registry.unregister("custom")
    with pytest.raises(BackendNotFoundError):
        plugstore.open("custom://")


def test_entry_point_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint(
        name="viaep",
        value="plugstore.backends.memory:MemoryBackend",
        group=registry.ENTRY_POINT_GROUP,
    )
    monkeypatch.setattr(
        registry, "entry_points", lambda group: [ep] if group == registry.ENTRY_POINT_GROUP else []
    )
    assert "viaep" in registry.available()
    with plugstore.open("viaep://") as store:
        assert isinstance(store.backend, MemoryBackend)


PLUG_MODULE = '''
from plugstore.backends.memory import MemoryBackend


class TinyBackend(MemoryBackend):
    """A third-party backend shipped as a .plug directory."""

    name = "tiny"
'''


def _write_plug(directory: Path, plug: str, module: str = PLUG_MODULE) -> None:
    directory.mkdir(exist_ok=True)
    (directory / "tiny.plug").write_text(textwrap.dedent(plug))
    (directory / "tiny_store.py").write_text(module)


def test_plug_files_in_errbot_format(tmp_path: Path) -> None:
    _write_plug(
        tmp_path / "plugins",
        """
        [Core]
        Name = Tiny
        Module = tiny_store

        [Documentation]
        Description = a test storage plugin
        """,
    )
    with plugstore.open("tiny://", plugin_dirs=[str(tmp_path / "plugins")]) as store:
        store.namespace("n")["k"] = 1
        assert type(store.backend).__name__ == "TinyBackend"
    assert "tiny" in registry.available([tmp_path / "plugins"])
    with pytest.raises(BackendNotFoundError):
        plugstore.open("tiny://")  # not without the directory


def test_plug_schemes_class_and_env_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_plug(
        tmp_path / "p2",
        """
        [Core]
        Name = Whatever
        Module = tiny_store

        [Plugstore]
        Schemes = tiny2, tiny2+tls
        Class = TinyBackend
        """,
    )
    monkeypatch.setenv("PLUGSTORE_PLUGIN_PATH", str(tmp_path / "p2"))
    with plugstore.open("tiny2+tls://") as store:
        assert type(store.backend).__name__ == "TinyBackend"


def test_bad_plug_files(tmp_path: Path) -> None:
    _write_plug(
        tmp_path / "p3",
        "[Core]\nName = broken\nModule = tiny_store\n",
        module="X = 1\n",
    )
    with pytest.raises(ConfigurationError, match="exactly one Backend"):
        plugstore.open("broken://", plugin_dirs=[str(tmp_path / "p3")])
    (tmp_path / "p4").mkdir()
    (tmp_path / "p4" / "junk.plug").write_text("not an ini file at all")
    with pytest.raises(BackendNotFoundError):
        plugstore.open("junk://", plugin_dirs=[str(tmp_path / "p4")])


def test_real_backend_without_its_driver_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """The PostgreSQL backend with psycopg uninstalled (None in sys.modules blocks it)."""
    monkeypatch.setitem(sys.modules, "psycopg", None)  # type: ignore[arg-type]
    monkeypatch.delitem(sys.modules, "plugstore.backends.postgresql", raising=False)
    with pytest.raises(MissingDependencyError) as err:
        plugstore.open("postgresql://localhost/db")
    assert 'pip install "plugstore[postgresql]"' in str(err.value)
