"""The start-up fast path: is every plugin at its head, found without Alembic?

A host that starts with every plugin already migrated (every start but the first after
an upgrade) should cost almost nothing.  Two things make Alembic slow for that question,
and both are avoided here:

* **Heads.** Alembic imports every revision file to find the heads.  The heads of a
  migrations directory are cached (in the user cache directory) under a fingerprint of
  its files: names, sizes and modification times.  A changed, added or removed file
  changes the fingerprint and the revisions are read again.
* **Versions.** Alembic reads one plugin's version table per migration context, after
  checking that the table exists.  Here all plugins' versions are read with one query on
  a server, and on SQLite with one connection attaching several plugin files at a time.

When anything is behind, the host takes its lock and lets Alembic decide (and re-read
everything) as usual; a stale answer here can only cost a slower start, never a wrong one.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import Connection, bindparam, text

from .engines import Database
from .migrations import VERSION_TABLE, heads, script_directory
from .plugin import RelationalPlugin

#: Files an SQLite connection may attach at once (10 in common builds), one spare.
_ATTACH_AT_ONCE = 9


def fingerprint(directory: Path) -> str:
    """Names, sizes and modification times of the revision files in ``directory``."""
    parts = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.endswith(".py") and entry.is_file():
                st = entry.stat()
                parts.append(f"{entry.name}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(sorted(parts))


def _cache_file() -> Path:
    import platformdirs

    return platformdirs.user_cache_path("plugstore") / "revision-heads.json"


def cached_heads(plugin: RelationalPlugin, cache: dict[str, list[str]]) -> tuple[str, ...]:
    """The heads of ``plugin``'s chain: from ``cache`` when its directory's fingerprint
    is there, else read by Alembic (and added to ``cache``)."""
    key = f"{plugin.directory}\n{fingerprint(plugin.directory)}"
    found = cache.get(key)
    if found is None:
        found = list(heads(script_directory(plugin)))
        cache[key] = found
    return tuple(found)


def load_cache() -> dict[str, list[str]]:
    try:
        data = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_cache(cache: dict[str, list[str]], before: dict[str, list[str]]) -> None:
    """Write ``cache`` if it grew (atomically; a cache that cannot be written is skipped)."""
    if cache == before:
        return
    path = _cache_file()
    live = {k: v for k, v in cache.items() if Path(k.split("\n", 1)[0]).is_dir()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".heads-")
        with os.fdopen(fd, "w") as out:
            json.dump(live, out)
        os.replace(tmp, path)
    except OSError:
        pass


def read_versions(
    database: Database,
    plugins: Sequence[RelationalPlugin],
    connect: Callable[[], Connection] | None,
) -> dict[str, tuple[str, ...]]:
    """Each plugin's current revisions (``()`` before its first migration)."""
    if database.kind == "sqlite":
        return _sqlite_versions(database, plugins)
    assert connect is not None
    return _server_versions(connect, plugins)


def _sqlite_versions(
    database: Database, plugins: Sequence[RelationalPlugin]
) -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {p.name: () for p in plugins}
    if database.path is None:  # in memory: nothing survives to be read
        return found
    on_disk = [p for p in plugins if os.path.exists(database.file_for(p.schema))]
    for start in range(0, len(on_disk), _ATTACH_AT_ONCE):
        chunk = on_disk[start : start + _ATTACH_AT_ONCE]
        conn = sqlite3.connect(":memory:", timeout=database.timeout, isolation_level=None)
        try:
            for plugin in chunk:  # a checked schema name; the file name is bound
                conn.execute(
                    f'ATTACH DATABASE ? AS "{plugin.schema}"', (database.file_for(plugin.schema),)
                )
            for plugin in chunk:
                schema = plugin.schema
                exists = conn.execute(
                    f'SELECT 1 FROM "{schema}".sqlite_master WHERE type = ? AND name = ?',
                    ("table", VERSION_TABLE),
                ).fetchone()
                if exists:
                    rows = conn.execute(f'SELECT version_num FROM "{schema}".{VERSION_TABLE}')
                    found[plugin.name] = tuple(sorted(r[0] for r in rows))
        finally:
            conn.close()
    return found


def _server_versions(
    connect: Callable[[], Connection], plugins: Sequence[RelationalPlugin]
) -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {p.name: () for p in plugins}
    by_schema = {p.schema: p.name for p in plugins}
    with connect() as conn:
        tables = text(
            "SELECT table_schema FROM information_schema.tables "
            "WHERE table_name = :table AND table_schema IN :schemas"
        ).bindparams(bindparam("schemas", expanding=True))
        schemas = [
            row[0]
            for row in conn.execute(tables, {"table": VERSION_TABLE, "schemas": list(by_schema)})
        ]
        if schemas:
            quote = conn.dialect.identifier_preparer.quote_identifier
            union = " UNION ALL ".join(
                f"SELECT '{s}' AS owner, version_num FROM {quote(s)}.{VERSION_TABLE}"
                for s in schemas
                if s in by_schema  # checked names only, never a name the server sent
            )
            versions: dict[str, list[str]] = {}
            for owner, version in conn.execute(text(union)):
                versions.setdefault(owner, []).append(version)
            for schema, revs in versions.items():
                found[by_schema[schema]] = tuple(sorted(revs))
        conn.rollback()
    return found
