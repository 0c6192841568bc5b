"""Finding a backend class by name or URL scheme.

Lookup order: backends registered in-process with :func:`register`, the built-ins
(imported only when asked for), the entry-point group ``plugstore.backends``, then
``.plug`` files (Errbot's INI plugin format) in the configured plugin directories.

A ``.plug`` file for a storage plugin looks like Errbot's::

    [Core]
    Name = Memcache
    Module = memcache_store        ; memcache_store.py beside the .plug file

    [Plugstore]                    ; optional
    Schemes = memcache, memcache+tls
    Class = MemcacheBackend        ; default: the one Backend subclass in the module

Loading a ``.plug`` module runs its code: only directories you configure are read
(``plugin_dirs=`` or ``PLUGSTORE_PLUGIN_PATH``), never anything found in the data.
"""

from __future__ import annotations

import configparser
import importlib
import importlib.util
import inspect
import os
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from .backend import Backend
from .errors import BackendNotFoundError, ConfigurationError, MissingDependencyError

ENTRY_POINT_GROUP = "plugstore.backends"
PLUGIN_PATH_ENV = "PLUGSTORE_PLUGIN_PATH"


@dataclass(frozen=True)
class BackendSpec:
    """Where a backend lives and what it needs."""

    name: str
    target: str  # "package.module:Class"
    extra: str | None = None  # the plugstore extra that installs its dependencies
    requires: tuple[str, ...] = ()  # top-level modules it imports
    source: str = "built-in"


def _builtin(name: str, module: str, cls: str, extra: str | None = None, *req: str) -> BackendSpec:
    return BackendSpec(name, f"plugstore.backends.{module}:{cls}", extra, tuple(req))


BUILTINS: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        _builtin("memory", "memory", "MemoryBackend"),
        _builtin("sqlite", "sqlite", "SQLiteBackend"),
        _builtin("shelf", "shelf", "ShelfBackend"),
        _builtin(
            "postgresql", "postgresql", "PostgreSQLBackend", "postgresql", "psycopg", "psycopg_pool"
        ),
        _builtin("mysql", "mysql", "MySQLBackend", "mysql", "pymysql"),
        _builtin("redis", "redis", "RedisBackend", "redis", "redis"),
        _builtin("redis+cluster", "redis_cluster", "RedisClusterBackend", "redis", "redis"),
        _builtin("dynamodb", "dynamodb", "DynamoDBBackend", "dynamodb", "boto3"),
    )
}
ALIASES = {
    "sqlite3": "sqlite",
    "shelve": "shelf",
    "mem": "memory",
    "postgres": "postgresql",
    "pgsql": "postgresql",
    "mariadb": "mysql",
    "rediss": "redis",
    "rediss+cluster": "redis+cluster",
}

_registered: dict[str, type[Backend] | BackendSpec] = {}
_lock = threading.Lock()


def register(name: str, backend: type[Backend] | str, *, extra: str | None = None) -> None:
    """Register a backend class (or ``"module:Class"`` target) under ``name`` in-process."""
    key = name.lower()
    with _lock:
        if isinstance(backend, str):
            _registered[key] = BackendSpec(key, backend, extra, source="register()")
        else:
            _registered[key] = backend


def unregister(name: str) -> None:
    """Forget a backend registered with :func:`register`."""
    with _lock:
        _registered.pop(name.lower(), None)


def plugin_dirs(configured: Iterable[str | os.PathLike[str]] | str | None = None) -> list[Path]:
    """The ``.plug`` directories: ``configured`` plus ``PLUGSTORE_PLUGIN_PATH`` entries."""
    dirs: list[Path] = []
    if isinstance(configured, str):
        configured = configured.split(os.pathsep)
    for item in configured or ():
        if str(item):
            dirs.append(Path(item).expanduser())
    for item in os.environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep):
        if item:
            dirs.append(Path(item).expanduser())
    return dirs


def resolve(name: str, dirs: Iterable[str | os.PathLike[str]] | str | None = None) -> type[Backend]:
    """Return the backend class for ``name`` (a backend name or URL scheme).

    A scheme ``base+variant`` names the backend registered under the whole scheme
    (``redis+cluster``) if there is one, else ``base`` (``postgresql+psycopg``)."""
    key = name.lower()
    key = ALIASES.get(key, key)
    with _lock:
        whole = key in _registered
    if not whole and key not in BUILTINS:
        key = key.split("+", 1)[0]
        key = ALIASES.get(key, key)
    with _lock:
        found = _registered.get(key)
    if isinstance(found, type):
        return found
    if found is None:
        found = BUILTINS.get(key) or _from_entry_points(key) or _from_plug_files(key, dirs)
    if found is None:
        known = ", ".join(sorted(available(dirs)))
        raise BackendNotFoundError(
            f"no storage backend named {name!r} (known: {known}); third-party backends "
            f"register in the entry-point group {ENTRY_POINT_GROUP!r} or come from .plug "
            f"files in {PLUGIN_PATH_ENV}"
        )
    return load(found)


def available(dirs: Iterable[str | os.PathLike[str]] | str | None = None) -> dict[str, BackendSpec]:
    """Every backend name known right now, mapped to its spec (nothing is imported)."""
    specs = dict(BUILTINS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        specs.setdefault(ep.name.lower(), _spec_from_entry_point(ep.name.lower(), ep))
    for path in plugin_dirs(dirs):
        for plug in sorted(path.glob("*.plug")):
            for spec in _specs_from_plug(plug):
                specs.setdefault(spec.name, spec)
    with _lock:
        for key, item in _registered.items():
            specs[key] = (
                item
                if isinstance(item, BackendSpec)
                else BackendSpec(key, f"{item.__module__}:{item.__qualname__}", source="register()")
            )
    return specs


def load(spec: BackendSpec) -> type[Backend]:
    """Import the backend class a spec points at, turning import failures into hints."""
    module_name, _, attr = spec.target.partition(":")
    try:
        if spec.source.startswith(".plug"):
            module = _import_plug_module(spec)
        else:
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing and missing != "plugstore" and missing != module_name.split(".")[0]:
            raise MissingDependencyError(_install_hint(spec, missing)) from exc
        raise
    cls = getattr(module, attr) if attr else _single_backend_class(module, spec)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise ConfigurationError(f"{spec.target} ({spec.source}) is not a plugstore Backend")
    return cls


def _install_hint(spec: BackendSpec, missing: str) -> str:
    line = f'pip install "plugstore[{spec.extra}]"' if spec.extra else f"pip install {missing}"
    return f"the {spec.name!r} backend needs the {missing!r} package: {line}"


def _spec_from_entry_point(name: str, ep: object) -> BackendSpec:
    value = getattr(ep, "value", "")
    dist = getattr(getattr(ep, "dist", None), "name", None)
    return BackendSpec(name, value, source=f"entry point from {dist or 'unknown'}")


def _from_entry_points(key: str) -> BackendSpec | None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name.lower() == key:
            return _spec_from_entry_point(key, ep)
    return None


def _from_plug_files(
    key: str, dirs: Iterable[str | os.PathLike[str]] | str | None
) -> BackendSpec | None:
    for path in plugin_dirs(dirs):
        for plug in sorted(path.glob("*.plug")):
            for spec in _specs_from_plug(plug):
                if spec.name == key:
                    return spec
    return None


def _specs_from_plug(plug: Path) -> list[BackendSpec]:
    parser = configparser.ConfigParser()
    try:
        parser.read(plug, encoding="utf-8")
        name = parser.get("Core", "Name")
        module = parser.get("Core", "Module")
    except (configparser.Error, UnicodeDecodeError):
        return []  # not a plugin file we understand; Errbot skips these too
    schemes = [name]
    if parser.has_option("Plugstore", "Schemes"):
        schemes = [s.strip() for s in parser.get("Plugstore", "Schemes").split(",") if s.strip()]
    cls = parser.get("Plugstore", "Class", fallback="")
    target = f"{plug.parent / module}:{cls}"
    return [BackendSpec(s.lower(), target, source=f".plug file {plug}") for s in schemes]


def _import_plug_module(spec: BackendSpec) -> ModuleType:
    base = spec.target.rpartition(":")[0]
    path = Path(base + ".py")
    if not path.is_file():
        package = Path(base) / "__init__.py"
        if not package.is_file():
            raise ConfigurationError(f"{spec.source}: module file {path} not found")
        path = package
    mod_name = f"plugstore_plug_{path.parent.name}_{path.stem}".replace("-", "_")
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    try:
        return import_file(mod_name, path)
    except ImportError as exc:
        raise ConfigurationError(f"{spec.source}: {exc}") from None


def import_file(module_name: str, path: Path) -> ModuleType:
    """Import the Python file ``path`` as ``module_name`` (registered in ``sys.modules``
    only if it imports without error).  Used for ``.plug`` modules and chat plugin files.
    """
    import_spec = importlib.util.spec_from_file_location(module_name, path)
    if import_spec is None or import_spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(import_spec)
    sys.modules[module_name] = module
    try:
        import_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _single_backend_class(module: ModuleType, spec: BackendSpec) -> type[Backend]:
    classes = [
        obj
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, Backend)
        and obj is not Backend
        and obj.__module__ == module.__name__
        and not inspect.isabstract(obj)
    ]
    if len(classes) != 1:
        raise ConfigurationError(
            f"{spec.source}: expected exactly one Backend subclass in {module.__name__}, "
            f"found {len(classes)}; name it with 'Class =' in a [Plugstore] section"
        )
    return classes[0]


__all__ = [
    "ALIASES",
    "BUILTINS",
    "ENTRY_POINT_GROUP",
    "BackendSpec",
    "available",
    "load",
    "register",
    "resolve",
    "unregister",
]
