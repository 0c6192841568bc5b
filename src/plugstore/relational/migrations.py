"""Each plugin's Alembic revision chain, run without any env.py of the plugin's own.

A plugin's migrations directory holds only its revision files.  plugstore supplies the
rest: one ``env.py`` and one ``script.py.mako`` (in ``plugstore/relational/_alembic``),
shared by every plugin, configured per run with the plugin's metadata and schema.  So
``alembic.command`` itself (upgrade, downgrade, revision, check) runs each plugin, with:

* the version table ``alembic_version`` inside the plugin's own schema, so every plugin
  has an independent chain;
* autogenerate looking only at the plugin's own schema;
* a guard on the connection while a plugin migrates: a statement that names another
  plugin's schema, or creates or changes a table outside any schema, is refused before
  it reaches the database.
"""

from __future__ import annotations

import argparse
import io
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, event, text
from sqlalchemy.schema import CreateSchema
from sqlalchemy.sql import ClauseElement, TextClause
from sqlalchemy.sql.dml import UpdateBase

from plugstore.errors import StoreError

from .names import SCHEMA_PREFIX
from .plugin import RelationalPlugin

#: plugstore's own env.py and script.py.mako, shared by every plugin.
ENVIRONMENT = Path(__file__).with_name("_alembic")
VERSION_TABLE = "alembic_version"
#: A schema-qualified reference to some plugin's schema in SQL text: ``pl_x.``,
#: ``"pl_x".`` or ```pl_x```.``.
_QUALIFIED = re.compile(r"(?<![\w$])[\"`\[]?(" + SCHEMA_PREFIX + r"[A-Za-z0-9_]+)[\"`\]]?\s*\.")


class MigrationError(StoreError):
    """A plugin's migrations could not be applied (or were refused)."""


@dataclass(frozen=True)
class Applied:
    """Revisions applied to one plugin: from ``start`` to ``end`` (``None`` = none)."""

    plugin: str
    start: str | None
    end: str | None
    steps: tuple[str, ...]


def alembic_config(
    plugin: RelationalPlugin, *, stdout: TextIO | None = None, **attributes: Any
) -> Config:
    """An Alembic :class:`~alembic.config.Config` for ``plugin``: plugstore's environment,
    the plugin's directory as the only version location, ``attributes`` for env.py."""
    # quiet: Alembic's progress lines would go to the real stdout
    config = Config(stdout=stdout or io.StringIO(), cmd_opts=argparse.Namespace(quiet=True))
    config.set_main_option("script_location", _ini(ENVIRONMENT))
    config.set_main_option("path_separator", "newline")
    config.set_main_option("version_locations", _ini(plugin.directory))
    config.attributes["plugstore_plugin"] = plugin
    config.attributes.update(attributes)
    return config


def _ini(path: Path) -> str:
    """``path`` as a config value: ``%`` is the config parser's interpolation sign."""
    return str(path).replace("%", "%%")


def script_directory(plugin: RelationalPlugin) -> ScriptDirectory:
    """The plugin's revisions, read from its directory."""
    return ScriptDirectory.from_config(alembic_config(plugin))


def heads(script: ScriptDirectory) -> tuple[str, ...]:
    return tuple(sorted(script.get_heads()))


def current(connection: Connection, plugin: RelationalPlugin) -> tuple[str, ...]:
    """The revisions ``plugin``'s schema is at (``()`` before its first migration)."""
    context = MigrationContext.configure(
        connection,
        opts={"version_table": VERSION_TABLE, "version_table_schema": plugin.schema},
    )
    return tuple(sorted(context.get_current_heads()))


def pending(script: ScriptDirectory, at: Sequence[str]) -> list[str]:
    """The revisions between ``at`` and the heads, oldest first."""
    return [revision for revision, _ in pending_revisions(script, at)]


def pending_revisions(script: ScriptDirectory, at: Sequence[str]) -> list[tuple[str, str]]:
    """The revisions between ``at`` and the heads, oldest first, with their messages."""
    revisions = script.iterate_revisions("heads", tuple(at) or "base")
    return [(r.revision, (r.doc or "").strip()) for r in reversed(list(revisions))]


def upgrade(
    connection: Connection, plugin: RelationalPlugin, kind: str, target: str = "heads"
) -> Applied:
    """Migrate ``plugin`` to ``target`` on ``connection`` (which holds the lock).

    On PostgreSQL and SQLite the whole run is one transaction: a failure rolls every
    step back.  MariaDB commits DDL as it goes, so each revision is committed with its
    version-table update: a failure leaves the plugin at the last revision that worked.
    """
    return _migrate(connection, plugin, kind, target, command.upgrade)


def downgrade(connection: Connection, plugin: RelationalPlugin, kind: str, target: str) -> Applied:
    """Migrate ``plugin`` back to ``target`` (``"base"``: before its first revision)."""
    return _migrate(connection, plugin, kind, target, command.downgrade)


def _migrate(
    connection: Connection,
    plugin: RelationalPlugin,
    kind: str,
    target: str,
    run: Callable[[Config, str], None],
) -> Applied:
    if connection.in_transaction():
        connection.commit()
    applied: list[str] = []
    config = alembic_config(
        plugin, connection=connection, plugstore_kind=kind, plugstore_applied=applied
    )
    start: tuple[str, ...] = ()
    planned: list[str] = []
    try:
        if kind == "mysql":  # DDL commits itself: each revision commits with its version
            start = current(connection, plugin)
            connection.commit()
            planned = _planned(plugin, start, target, run)
            run(config, target)
        else:  # one transaction; reading the version inside it is under the lock
            with connection.begin():
                start = current(connection, plugin)
                planned = _planned(plugin, start, target, run)
                run(config, target)
    except Exception as exc:
        failed = planned[len(applied)] if len(applied) < len(planned) else None
        raise _failure(plugin, kind, start, applied, failed, exc) from exc
    end = current(connection, plugin)
    if connection.in_transaction():
        connection.commit()
    return Applied(plugin.name, _one(start), _one(end), tuple(applied))


def _planned(
    plugin: RelationalPlugin, start: Sequence[str], target: str, run: Callable[..., None]
) -> list[str]:
    """The upgrade steps to ``heads`` (to name the one that fails); else unknown."""
    if run is command.upgrade and target == "heads":
        return pending(script_directory(plugin), start)
    return []


@dataclass(frozen=True)
class Status:
    """Where one plugin stands: a row of ``plugstore db current``."""

    plugin: str
    schema: str
    current: str | None
    head: str | None
    pending: int
    #: The pending revisions, oldest first: (revision id, message).
    pending_revisions: tuple[tuple[str, str], ...] = ()


def status(plugin: RelationalPlugin, script: ScriptDirectory, at: Sequence[str]) -> Status:
    waiting = tuple(pending_revisions(script, at))
    return Status(plugin.name, plugin.schema, _one(at), _one(heads(script)), len(waiting), waiting)


def _failure(
    plugin: RelationalPlugin,
    kind: str,
    start: Sequence[str],
    applied: Sequence[str],
    failed: str | None,
    exc: BaseException,
) -> MigrationError:
    where = f" at revision {failed}" if failed else ""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if kind == "mysql":
        now = applied[-1] if applied else _one(start)
        after = (
            f"; MariaDB commits DDL as it runs, so the plugin stays at revision {now} and "
            f"revision {failed or '?'} may have left some of its changes: undo them (or make "
            "the migration skip what exists), then start again"
        )
    else:
        after = f"; rolled back, the plugin stays at revision {_one(start)}"
    return MigrationError(
        f"migrating plugin {plugin.name!r}{where} failed: {type(exc).__name__}: {reason}{after}"
    )


def _one(revisions: Sequence[str]) -> str | None:
    return ",".join(revisions) if revisions else None


def offline_sql(
    plugin: RelationalPlugin, kind: str, target: str, out: TextIO, *, sqlite_file: str = ""
) -> None:
    """Write the SQL of upgrading ``plugin`` to ``target`` (``"heads"``, or a range
    ``"FROM:TO"``) to ``out``, without a database: for a DBA to review and apply."""
    config = alembic_config(
        plugin,
        stdout=out,
        plugstore_kind=kind,
        plugstore_output=out,
        plugstore_sqlite_file=sqlite_file,
    )
    command.upgrade(config, target, sql=True)


def new_revision(
    connection: Connection | None,
    plugin: RelationalPlugin,
    kind: str,
    message: str,
    *,
    autogenerate: bool = False,
) -> Path:
    """Write a new revision file in ``plugin``'s directory; with ``autogenerate`` its
    operations are what the plugin's tables differ by from the database (which must be
    at the plugin's head).  Returns the file's path."""
    config = alembic_config(plugin, connection=connection, plugstore_kind=kind)
    try:
        script = command.revision(config, message=message, autogenerate=autogenerate)
    except CommandError as exc:  # "Target database is not up to date."...
        raise MigrationError(f"plugin {plugin.name!r}: {exc}") from None
    if script is None or isinstance(script, list):  # not with one head and no branches
        raise MigrationError(f"plugin {plugin.name!r}: Alembic wrote no single revision")
    return Path(script.path)


def differences(connection: Connection, plugin: RelationalPlugin) -> list[str]:
    """How ``plugin``'s tables differ from its schema in the database, one line each
    (nothing when they match)."""
    from alembic.autogenerate import compare_metadata

    options = context_options(plugin)
    metadata = options.pop("target_metadata")
    options.pop("render_as_batch")
    context = MigrationContext.configure(connection, opts=options)
    return [_describe_diff(diff) for diff in compare_metadata(context, metadata)]


def _describe_diff(diff: Any) -> str:
    if isinstance(diff, list):  # a column's changes come as a list of tuples
        return "; ".join(_describe_diff(d) for d in diff)
    what, *rest = diff
    named = [getattr(x, "fullname", None) or getattr(x, "name", None) or x for x in rest]
    return f"{what.replace('_', ' ')}: " + ", ".join(str(x) for x in named if x is not None)


# -- the environment (called by _alembic/env.py) ----------------------------------------


def run_environment() -> None:
    """What every plugin's env.py would do, configured from the Alembic config."""
    from alembic import context

    config = context.config
    plugin: RelationalPlugin = config.attributes["plugstore_plugin"]
    schema = plugin.schema
    options = context_options(plugin)
    applied: list[str] | None = config.attributes.get("plugstore_applied")
    if applied is not None:
        options["on_version_apply"] = lambda *, step, **_: applied.append(step.up_revision_id)
    if context.is_offline_mode():
        kind = config.attributes["plugstore_kind"]
        context.configure(
            dialect_name={"mysql": "mysql", "postgresql": "postgresql"}.get(kind, "sqlite"),
            literal_binds=True,
            output_buffer=config.attributes.get("plugstore_output"),
            transactional_ddl=kind != "mysql",
            **options,
        )
        with context.begin_transaction():
            if kind == "sqlite":
                target = config.attributes["plugstore_sqlite_file"].replace("'", "''")
                context.execute(text(f"ATTACH DATABASE '{target}' AS \"{schema}\""))
            else:
                context.execute(CreateSchema(schema, if_not_exists=True))
            context.run_migrations()
        return
    connection: Connection = config.attributes["connection"]
    kind = config.attributes["plugstore_kind"]
    with guarded(connection, schema):
        if kind != "sqlite":  # Alembic may create the version table, even to autogenerate;
            # an SQLite schema is its attached file: it exists already
            connection.execute(CreateSchema(schema, if_not_exists=True))
        context.configure(
            connection=connection, transaction_per_migration=kind == "mysql", **options
        )
        with context.begin_transaction():
            context.run_migrations()


def context_options(plugin: RelationalPlugin) -> dict[str, Any]:
    """The migration context options of every run of ``plugin``."""
    return {
        "target_metadata": plugin.metadata,
        "version_table": VERSION_TABLE,
        "version_table_schema": plugin.schema,
        "include_schemas": True,
        "include_name": _only_schema(plugin.schema),
        "render_as_batch": True,  # ALTERs that also work on SQLite
        "compare_type": True,
    }


def _only_schema(schema: str) -> Callable[..., bool]:
    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        if type_ == "schema":
            return name == schema
        return True

    return include_name


# -- the guard --------------------------------------------------------------------------


@contextmanager
def guarded(connection: Connection, schema: str) -> Iterator[None]:
    """Refuse, on ``connection``, statements outside ``schema`` until the block ends."""

    def before_execute(conn: Any, element: Any, *args: Any) -> None:
        for touched in _schemas_of(element):
            if touched != schema:
                where = f"schema {touched!r}" if touched else "no schema"
                raise MigrationError(
                    f"refused: a migration of schema {schema!r} may only change its own "
                    f"tables, and this statement names {where}: {_short(element)}"
                )

    def before_cursor_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        for name in _QUALIFIED.findall(statement):
            if name != schema:
                raise MigrationError(
                    f"refused: a migration of schema {schema!r} may not touch schema "
                    f"{name!r}: {_short(statement)}"
                )

    event.listen(connection, "before_execute", before_execute)
    event.listen(connection, "before_cursor_execute", before_cursor_execute)
    try:
        yield
    finally:
        event.remove(connection, "before_execute", before_execute)
        event.remove(connection, "before_cursor_execute", before_cursor_execute)


def _schemas_of(element: Any) -> list[str | None]:
    """The schemas a DDL or DML statement writes to (``None``: no schema named)."""
    from sqlalchemy.sql.ddl import BaseDDLElement

    if isinstance(element, (TextClause, str)) or not isinstance(element, ClauseElement):
        return []  # SQL text: the cursor-level check reads it
    if isinstance(element, UpdateBase):  # INSERT, UPDATE, DELETE
        return [getattr(element.table, "schema", None)]
    if not isinstance(element, BaseDDLElement):
        return []  # a SELECT reads; it changes nothing
    if hasattr(element, "table_name") and hasattr(element, "schema"):  # Alembic's ALTERs
        return [element.schema]
    target = getattr(element, "element", None)
    if isinstance(target, str):  # CREATE/DROP SCHEMA
        return [target]
    table = getattr(target, "table", None)  # an index or constraint
    if table is not None:
        return [getattr(table, "schema", None)]
    if target is not None and hasattr(target, "schema"):  # a table or sequence
        return [target.schema]
    return []


def _short(element: object) -> str:
    text_ = " ".join(str(element).split())
    return text_ if len(text_) <= 120 else text_[:117] + "..."
