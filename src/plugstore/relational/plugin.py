"""What a relational plugin declares: its name, its tables and its migrations.

>>> from sqlalchemy import Column, Integer, String, Table
>>> metadata = plugin_metadata("notes")
>>> notes = Table("notes", metadata, Column("id", Integer, primary_key=True),
...               Column("text", String(200)))
>>> notes.fullname
'pl_notes.notes'
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from importlib import resources
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # pragma: no cover
    from importlib.abc import Traversable

from sqlalchemy import MetaData
from sqlalchemy.orm import Session

from plugstore.errors import ConfigurationError

from .names import check_plugin_name, schema_for

#: The entry-point group a package registers its :class:`RelationalPlugin` under.
ENTRY_POINT_GROUP = "plugstore.relational"

#: Constraint and index names made from table and column names, the same on every
#: engine, so that a migration written on one engine names what it drops on another
#: (and SQLite's batch mode, which rebuilds tables, can find the constraints).
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def plugin_metadata(name: str) -> MetaData:
    """A :class:`~sqlalchemy.MetaData` whose tables live in plugin ``name``'s schema
    ``pl_<name>``, with a naming convention for constraints.

    ``name`` is checked first (lowercase letters, digits and ``_``, starting with a
    letter, at most 40 characters); anything else raises
    :class:`~plugstore.relational.InvalidPluginNameError`.
    """
    return MetaData(schema=schema_for(name), naming_convention=NAMING_CONVENTION)


@dataclass(frozen=True)
class RelationalUserData:
    """How a relational plugin exports and erases one user's rows (its user-data hook).

    ``export(session, user)`` returns the plugin's data about ``user`` (the id text, as
    ``ctx.user`` or ``plugstore user export USER`` gives it) as a JSON-ready value:
    ``None``, ``{}`` or ``[]`` when there is none.  It runs in a read-only session.

    ``forget(session, user)`` deletes (or anonymises) those rows through ``session`` and
    returns what it did, counted by kind: ``{"polls": 1, "votes": 2}``.  The host
    commits the session when it returns and rolls it back if it raises, so a plugin's
    erase is all or nothing; for a dry run (``.forgetme``, ``user forget --dry-run``)
    it rolls back what ``forget`` did and reports its counts, so do every change
    through ``session`` and nothing outside it.  Run twice, it must find nothing the
    second time (``{}``).

    Both run only on tables at the plugin's head revision (the host never migrates to
    export or forget).
    """

    export: Callable[[Session, str], Any]
    forget: Callable[[Session, str], Mapping[str, int]]


@dataclass(frozen=True)
class RelationalPlugin:
    """A plugin's name, its tables (``metadata``), its migrations directory and,
    optionally, its user-data hook.

    ``migrations`` is where the plugin's revision files are: a path, an
    :mod:`importlib.resources` traversable, or ``"package:directory"`` (resolved with
    :func:`importlib.resources.files`, so an installed wheel works), e.g.
    ``RelationalPlugin("notes", metadata, "notes_plugin:migrations")``.

    ``user_data`` (a :class:`RelationalUserData`) lets ``.forgetme`` and ``plugstore
    user export|forget`` reach the rows the plugin keeps about a user.
    """

    name: str
    metadata: MetaData
    migrations: str | os.PathLike[str] | Traversable
    user_data: RelationalUserData | None = field(default=None, compare=False)
    _directory: list[Path] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        schema = schema_for(self.name)
        if self.metadata.schema != schema:
            raise ConfigurationError(
                f"plugin {self.name!r}: its metadata must be plugin_metadata({self.name!r}) "
                f"(tables in schema {schema!r}), not schema {self.metadata.schema!r}"
            )
        for table in self.metadata.tables.values():
            if table.schema != schema:
                raise ConfigurationError(
                    f"plugin {self.name!r}: table {table.fullname!r} is outside its schema "
                    f"{schema!r}"
                )

    @property
    def schema(self) -> str:
        """The plugin's schema, ``pl_<name>``."""
        return schema_for(self.name)

    @property
    def directory(self) -> Path:
        """The migrations directory on disk (a resource is looked up once)."""
        if not self._directory:
            self._directory.append(_resolve(self.migrations, self.name))
        return self._directory[0]


def _resolve(where: str | os.PathLike[str] | Traversable, plugin: str) -> Path:
    if isinstance(where, str) and ":" in where and not os.path.isabs(where):
        package, _, subdir = where.partition(":")
        try:
            where = resources.files(package).joinpath(*subdir.split("/"))
        except ModuleNotFoundError:
            raise ConfigurationError(
                f"plugin {plugin!r}: migrations package {package!r} is not installed"
            ) from None
    if isinstance(where, (str, os.PathLike)):
        path = Path(where)
    elif isinstance(where, Path):
        path = where
    else:
        # A resource inside a zip is not a directory Alembic can read.
        candidate = Path(str(where))
        if not candidate.is_dir():
            raise ConfigurationError(
                f"plugin {plugin!r}: migrations {where} are not a directory on disk "
                "(install the package unzipped)"
            )
        path = candidate
    if not path.is_dir():
        raise ConfigurationError(f"plugin {plugin!r}: no migrations directory at {path}")
    return path.resolve()


def entry_point_plugins() -> tuple[list[RelationalPlugin], list[str]]:
    """The plugins registered under the ``plugstore.relational`` entry point, and one
    line per entry that could not be loaded (the others still load)."""
    found, problems = entry_point_plugins_named()
    return found, [line for _, line in problems]


def entry_point_plugins_named() -> tuple[list[RelationalPlugin], list[tuple[str, str]]]:
    """:func:`entry_point_plugins`, with each problem's entry-point name."""
    found: list[RelationalPlugin] = []
    problems: list[tuple[str, str]] = []
    for entry in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            plugin = entry.load()
            if callable(plugin) and not isinstance(plugin, RelationalPlugin):
                plugin = plugin()
            if not isinstance(plugin, RelationalPlugin):
                raise TypeError(f"it is a {type(plugin).__name__}, not a RelationalPlugin")
            check_plugin_name(plugin.name)
        except Exception as exc:
            problems.append((entry.name, f"relational plugin {entry.value} not loaded: {exc}"))
            continue
        found.append(plugin)
    return found, problems


def unique(plugins: Iterable[RelationalPlugin]) -> list[RelationalPlugin]:
    """``plugins`` in order; :class:`ConfigurationError` if two share a name."""
    seen: dict[str, RelationalPlugin] = {}
    for plugin in plugins:
        other = seen.get(plugin.name)
        if other is not None and other is not plugin:
            raise ConfigurationError(f"two relational plugins are named {plugin.name!r}")
        seen[plugin.name] = plugin
    return list(seen.values())
