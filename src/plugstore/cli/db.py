"""``plugstore db``: relational plugins' schemas and migrations.

The plugins are the installed ones (entry-point group ``plugstore.relational``) plus
any named with ``--load module:attribute`` (a :class:`RelationalPlugin`, importable from
the working directory).  URL defaults to ``--url``, ``$PLUGSTORE_URL``, then the
embedded SQLite file, as for every other command.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .common import CliError, CliState, load_attribute

if TYPE_CHECKING:
    from plugstore.relational import RelationalHost, RelationalPlugin

_INIT_TEXT = '''"""Alembic revisions of the plugstore plugin {name!r} (schema {schema}).

Applied by plugstore at start-up; no env.py, alembic.ini or template is needed here.
Make a revision with:
    plugstore db revision URL --load MODULE:plugin --plugin {name} -m "what changed" \\
        --autogenerate
"""
'''

_NEXT_STEPS = """\
Created {directory} for plugin {name!r} (schema {schema}).

Next:
  1. Declare the tables on plugstore's metadata, and the plugin:

       from pathlib import Path
       from sqlalchemy import Column, Integer, String, Table
       from plugstore.relational import RelationalPlugin, plugin_metadata

       metadata = plugin_metadata("{name}")
       things = Table("things", metadata, Column("id", Integer, primary_key=True),
                      Column("label", String(100)))
       plugin = RelationalPlugin("{name}", metadata, Path(__file__).parent / "{dirname}")

  2. Make the first revision from the tables:

       plugstore db revision URL --load MODULE:plugin --plugin {name} \\
           -m "create things" --autogenerate

  3. Register it under the entry point plugstore.relational (or pass it to
     RelationalHost); the host migrates it at start-up.
"""


def _plugin_options(command: Any) -> Any:
    command = click.option(
        "-l",
        "--load",
        "loads",
        multiple=True,
        metavar="MODULE:ATTR",
        help="Also use the RelationalPlugin at MODULE:ATTR (repeatable).",
    )(command)
    command = click.option(
        "--no-entry-points",
        is_flag=True,
        help="Ignore plugins installed under the plugstore.relational entry point.",
    )(command)
    return command


@click.group("db")
def db_group() -> None:
    """Relational plugins: their schemas, tables and Alembic migrations."""


@db_group.command("init-plugin")
@click.argument("name")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init_plugin_cmd(name: str, directory: Path) -> None:
    """Create DIRECTORY, the migrations directory of plugin NAME (no env.py needed)."""
    from plugstore.relational.names import check_plugin_name, schema_for

    check_plugin_name(name)
    if directory.exists() and any(directory.iterdir()):
        raise CliError(f"{directory} already exists and is not empty")
    directory.mkdir(parents=True, exist_ok=True)
    schema = schema_for(name)
    (directory / "__init__.py").write_text(_INIT_TEXT.format(name=name, schema=schema))
    click.echo(
        _NEXT_STEPS.format(directory=directory, name=name, schema=schema, dirname=directory.name)
    )


@db_group.command("revision")
@click.argument("url", required=False)
@click.option("--plugin", "name", required=True, help="The plugin to write a revision for.")
@click.option("-m", "--message", required=True, help="What the revision does.")
@click.option(
    "--autogenerate",
    is_flag=True,
    help="Fill it with the differences between the plugin's tables and the database "
    "(which must be at the plugin's head).",
)
@_plugin_options
@click.pass_obj
def revision_cmd(
    state: CliState,
    url: str | None,
    name: str,
    message: str,
    autogenerate: bool,
    loads: tuple[str, ...],
    no_entry_points: bool,
) -> None:
    """Write a new revision file in plugin NAME's migrations directory."""
    from plugstore.relational import migrations

    with _host(state, url, loads, no_entry_points) as host:
        [plugin] = host.select([name])
        if autogenerate:
            with host.engine_for(plugin).connect() as conn:
                path = migrations.new_revision(conn, plugin, host.kind, message, autogenerate=True)
        else:
            path = migrations.new_revision(None, plugin, host.kind, message)
    click.echo(f"wrote {path}")


@db_group.command("upgrade")
@click.argument("url", required=False)
@click.argument("revision", default="heads")
@click.option("--plugin", "names", multiple=True, help="Only this plugin (repeatable).")
@click.option(
    "--sql",
    is_flag=True,
    help="Print the SQL instead of running it (from an empty schema, or REVISION as FROM:TO).",
)
@_plugin_options
@click.pass_obj
def upgrade_cmd(
    state: CliState,
    url: str | None,
    revision: str,
    names: tuple[str, ...],
    sql: bool,
    loads: tuple[str, ...],
    no_entry_points: bool,
) -> None:
    """Migrate the plugins to REVISION (default: their heads)."""
    from plugstore.relational import migrations

    with _host(state, url, loads, no_entry_points) as host:
        chosen = host.select(names or None)
        if revision != "heads" and len(chosen) != 1:
            raise CliError("a REVISION other than heads needs one --plugin")
        if sql:
            for plugin in chosen:
                migrations.offline_sql(
                    plugin,
                    host.kind,
                    revision,
                    sys.stdout,
                    sqlite_file=host.database.file_for(plugin.schema),
                )
            return
        applied = host.upgrade([p.name for p in chosen], revision)
        _report(applied, "at its head" if revision == "heads" else f"at {revision}")


@db_group.command("downgrade")
@click.argument("url", required=False)
@click.argument("revision")
@click.option("--plugin", "name", required=True, help="The plugin to move back.")
@click.option("--sql", is_flag=True, help="Print the SQL (REVISION as FROM:TO).")
@_plugin_options
@click.pass_obj
def downgrade_cmd(
    state: CliState,
    url: str | None,
    revision: str,
    name: str,
    sql: bool,
    loads: tuple[str, ...],
    no_entry_points: bool,
) -> None:
    """Move plugin NAME back to REVISION (a revision id, -1, or base)."""
    from alembic import command

    from plugstore.relational import migrations

    with _host(state, url, loads, no_entry_points) as host:
        [plugin] = host.select([name])
        if sql:
            if ":" not in revision:
                raise CliError("downgrade --sql needs REVISION as FROM:TO")
            config = migrations.alembic_config(
                plugin,
                stdout=sys.stdout,
                plugstore_kind=host.kind,
                plugstore_output=sys.stdout,
                plugstore_sqlite_file=host.database.file_for(plugin.schema),
            )
            command.downgrade(config, revision, sql=True)
            return
        applied = host.downgrade(name, revision)
        _report([applied] if applied.steps else [], f"at {revision}")


@db_group.command("current")
@click.argument("url", required=False)
@click.option("--plugin", "names", multiple=True, help="Only this plugin (repeatable).")
@_plugin_options
@click.pass_obj
def current_cmd(
    state: CliState,
    url: str | None,
    names: tuple[str, ...],
    loads: tuple[str, ...],
    no_entry_points: bool,
) -> None:
    """A table of each plugin's schema, revision, head and pending revisions."""
    with _host(state, url, loads, no_entry_points) as host:
        rows = host.status(names or None)
    table = [("plugin", "schema", "revision", "head", "pending")]
    table += [(r.plugin, r.schema, r.current or "-", r.head or "-", str(r.pending)) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


@db_group.command("check")
@click.argument("url", required=False)
@click.option("--plugin", "names", multiple=True, help="Only this plugin (repeatable).")
@_plugin_options
@click.pass_obj
def check_cmd(
    state: CliState,
    url: str | None,
    names: tuple[str, ...],
    loads: tuple[str, ...],
    no_entry_points: bool,
) -> int:
    """Exit 1 if a plugin's tables differ from its schema in the database, or if it
    has revisions not applied yet."""
    from plugstore.relational import migrations

    problems = 0
    with _host(state, url, loads, no_entry_points) as host:
        for plugin, status in zip(
            host.select(names or None), host.status(names or None), strict=True
        ):
            if status.pending:
                click.echo(f"{plugin.name}: {status.pending} revision(s) not applied")
                problems += 1
                continue
            with host.engine_for(plugin).connect() as conn:
                diffs = migrations.differences(conn, plugin)
            for line in diffs:
                click.echo(f"{plugin.name}: {line}")
            problems += bool(diffs)
            if not diffs:
                click.echo(f"{plugin.name}: tables match revision {status.current or 'base'}")
    if problems:
        click.echo(
            "the models and the database differ: write a revision "
            "(plugstore db revision --autogenerate) and upgrade",
            err=True,
        )
        return 1
    return 0


def _report(applied: Sequence[Any], where: str) -> None:
    if not applied:
        click.echo(f"nothing to do: every plugin is {where}")
    for a in applied:
        click.echo(f"{a.plugin}: {a.start or 'base'} -> {a.end or 'base'} ({len(a.steps)} step(s))")


@contextmanager
def _host(
    state: CliState, url: str | None, loads: Sequence[str], no_entry_points: bool
) -> Iterator[RelationalHost]:
    from plugstore.relational import RelationalHost

    parsed, _ = state.prepare(url)
    plugins = [_load(spec) for spec in loads]
    with RelationalHost(parsed, plugins, entry_points=not no_entry_points) as host:
        for problem in host.problems:
            click.echo(f"warning: {state.scrub(problem)}", err=True)
        if not host.plugins:
            raise CliError(
                "no relational plugins: install one, or name one with --load MODULE:ATTR"
            )
        yield host


def _load(spec: str) -> RelationalPlugin:
    from plugstore.relational import RelationalPlugin

    obj = load_attribute(spec)
    if callable(obj) and not isinstance(obj, RelationalPlugin):
        obj = obj()
    if not isinstance(obj, RelationalPlugin):
        raise CliError(f"--load {spec}: a {type(obj).__name__}, not a RelationalPlugin")
    return obj
