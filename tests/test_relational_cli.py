"""``plugstore db`` on real SQLite, PostgreSQL and MariaDB: what a plugin author runs
(init-plugin, revision --autogenerate, upgrade, current, check, downgrade), the offline
SQL, one-line errors with masked URLs, and plugins found through entry points."""

from __future__ import annotations

import ast
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import inspect, text

from plugstore.cli import cli
from plugstore.relational import RelationalHost
from plugstore.relational.engines import Database
from relational_helpers import (  # the fixtures url and plugin_names too
    ADD_STARS,
    CREATE_NOTES,
    DROP_NOTES,
    DROP_STARS,
    ENGINES,
    NOTES_TABLE,
    PG_URL,
    add_revision,
    drop_schemas,
    load,
    plugin_names_fixture,  # noqa: F401 (a fixture)
    unique_name,
    url_fixture,  # noqa: F401 (a fixture)
    url_for,
    write_plugin,
)
from servers import IN_CI, require_server

PLUGSTORE = [sys.executable, "-m", "plugstore.cli"]
HEADER = ["plugin", "schema", "revision", "head", "pending"]

# -- running the command ---------------------------------------------------------------


def plugstore(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``plugstore ARGS`` in a new process started in ``cwd`` (so ``--load`` finds the
    modules there, and every run imports them afresh)."""
    environ = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    return subprocess.run(
        [*PLUGSTORE, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=environ,
        timeout=180,
        check=False,
    )


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``plugstore db ARGS`` in this process, in ``tmp_path`` (sys.path restored after)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:  # click < 8.2 mixes stderr into stdout unless told not to
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        runner = CliRunner()

    def invoke(*args: str, input: str | bytes | IO[Any] | None = None) -> Result:
        return runner.invoke(cli, ["db", *args], input=input, catch_exceptions=False)

    return invoke


def one_error_line(returncode: int, stderr: str) -> str:
    """The stderr of a failed command: exactly one ``error:`` line, no traceback."""
    assert returncode == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def ok(result: subprocess.CompletedProcess[str] | Result) -> str:
    code = (
        result.returncode if isinstance(result, subprocess.CompletedProcess) else result.exit_code
    )
    assert code == 0, result.stdout + result.stderr
    return result.stdout


def current_rows(stdout: str) -> dict[str, list[str]]:
    """The rows of ``plugstore db current`` by plugin name, after checking the header."""
    header, *rows = stdout.splitlines()
    assert header.split() == HEADER
    table = {}
    starts = [header.index(word) for word in HEADER]
    for row in rows:
        cells = row.split()
        assert len(cells) == len(HEADER), stdout
        # The columns are aligned: each cell starts where its header does.
        assert [row[start:].split()[0] for start in starts] == cells, stdout
        table[cells[0]] = cells
    return table


def revision_id(path: Path) -> str:
    match = re.search(r"^revision: str = '(\w+)'$", path.read_text(), re.MULTILINE)
    assert match, path.read_text()
    return match.group(1)


def down_revision(path: Path) -> str | None:
    match = re.search(r"^down_revision: .* = (.+)$", path.read_text(), re.MULTILINE)
    assert match, path.read_text()
    return ast.literal_eval(match.group(1))


def upgrade_body(path: Path) -> str:
    """The code of a revision's upgrade() (without its downgrade())."""
    return path.read_text().split("def upgrade()")[1].split("def downgrade()")[0]


def written(stdout: str) -> Path:
    """The file ``plugstore db revision`` says it wrote."""
    assert stdout.startswith("wrote "), stdout
    return Path(stdout.strip().removeprefix("wrote "))


def need_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed"
        if IN_CI:
            pytest.fail(f"{message}: CI must run every test")
        pytest.skip(message)
    return found


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture
def dropped() -> Iterator[list[tuple[str, str]]]:
    """(url, plugin name) pairs whose schemas are dropped after the test."""
    pairs: list[tuple[str, str]] = []
    yield pairs
    for url, name in pairs:
        drop_schemas(url, [name])


def new_plugin(
    tmp_path: Path, names: list[str], label: str, **kwargs: Any
) -> tuple[str, list[str]]:
    """A plugin module ``plug_<name>`` (revisions r1, r2 unless told) in ``tmp_path``;
    returns its name and the ``--load`` options that use it alone."""
    name = unique_name(label)
    names.append(name)
    write_plugin(tmp_path, name, **kwargs)
    return name, ["--load", f"plug_{name}:plugin", "--no-entry-points"]


# -- init-plugin -----------------------------------------------------------------------


def test_init_plugin_writes_only_an_init_file_and_prints_the_next_steps(
    run: Any, tmp_path: Path
) -> None:
    result = run("init-plugin", "notes", "notes_migrations")
    out = ok(result)
    directory = tmp_path / "notes_migrations"
    assert sorted(p.name for p in directory.iterdir()) == ["__init__.py"]
    init = (directory / "__init__.py").read_text()
    # Only a docstring: no imports at all, spatial or otherwise, and no Alembic env.
    module = ast.parse(init)
    assert len(module.body) == 1
    assert isinstance(module.body[0], ast.Expr)
    assert ast.get_docstring(module) is not None
    assert "pl_notes" in init
    for text_ in (init, out):
        assert "geoalchemy" not in text_.lower()
        assert "spatial" not in text_.lower()
    for absent in ("env.py", "alembic.ini", "script.py.mako"):
        assert not (directory / absent).exists()
    assert "pl_notes" in out
    assert 'plugin_metadata("notes")' in out
    assert "plugstore db revision URL --load MODULE:plugin --plugin notes" in out
    assert "--autogenerate" in out
    assert "plugstore.relational" in out  # how to register it
    assert result.stderr == ""

    # An existing empty directory is fine too.
    (tmp_path / "empty").mkdir()
    ok(run("init-plugin", "other", "empty"))
    assert [p.name for p in (tmp_path / "empty").iterdir()] == ["__init__.py"]


@pytest.mark.parametrize("name", ["Bad-Name", "x;drop", "1abc", "_x", "a b", "a" * 41, ""])
def test_init_plugin_refuses_a_hostile_name(run: Any, tmp_path: Path, name: str) -> None:
    result = run("init-plugin", name, "migs")
    line = one_error_line(result.exit_code, result.stderr)
    assert "invalid plugin name" in line
    assert result.stdout == ""
    assert not (tmp_path / "migs").exists()


def test_init_plugin_refuses_a_directory_that_is_not_empty(run: Any, tmp_path: Path) -> None:
    directory = tmp_path / "migs"
    directory.mkdir()
    (directory / "r1.py").write_text("# mine\n")
    result = run("init-plugin", "notes", "migs")
    line = one_error_line(result.exit_code, result.stderr)
    assert "migs" in line
    assert "not empty" in line
    assert sorted(p.name for p in directory.iterdir()) == ["r1.py"]
    assert (directory / "r1.py").read_text() == "# mine\n"


# -- the author's flow -----------------------------------------------------------------


def snippet(next_steps: str) -> str:
    """The code of step 1 of init-plugin's next steps: the models module to write."""
    block = next_steps.split("1. ", 1)[1].split("\n  2. ", 1)[0]
    code = textwrap.dedent(block.split("\n", 1)[1])
    assert "RelationalPlugin(" in code
    return code


def author_flow(url: str, root: Path, name: str) -> None:
    """What a new plugin's author does, each command in a new process."""
    next_steps = ok(plugstore("db", "init-plugin", name, "migrations", cwd=root))
    migrations = root / "migrations"
    models = root / f"models_{name}.py"
    models.write_text(snippet(next_steps))  # the models module the next steps print
    use = ["--load", f"models_{name}:plugin", "--no-entry-points"]

    def db(*args: str) -> subprocess.CompletedProcess[str]:
        return plugstore("db", args[0], url, *args[1:], *use, cwd=root)

    first = written(ok(db("revision", "--plugin", name, "-m", "create", "--autogenerate")))
    assert first.parent == migrations.resolve()
    body = upgrade_body(first)
    assert "op.create_table('things'" in body
    assert "'label'" in body
    assert f"schema='pl_{name}'" in body
    assert down_revision(first) is None
    rev1 = revision_id(first)

    assert ok(db("upgrade")) == f"{name}: base -> {rev1} (1 step(s))\n"
    assert current_rows(ok(db("current"))) == {
        name: [name, f"pl_{name}", rev1, rev1, "0"],
    }
    check = db("check")
    assert (check.returncode, check.stdout) == (0, f"{name}: tables match revision {rev1}\n")

    # A new column on the model: check sees it, a second revision adds it.
    source = models.read_text()
    models.write_text(
        source.replace(
            'Column("label", String(100))', 'Column("label", String(100)), Column("stars", Integer)'
        )
    )
    assert models.read_text() != source
    check = db("check")
    assert check.returncode == 1
    [difference] = check.stdout.splitlines()
    assert difference.startswith(f"{name}: add column")
    assert "stars" in difference
    assert "things" in difference
    assert "write a revision" in check.stderr

    second = written(ok(db("revision", "--plugin", name, "-m", "stars", "--autogenerate")))
    body = upgrade_body(second)
    assert "add_column(sa.Column('stars', sa.Integer()" in body
    assert "create_table" not in body
    assert down_revision(second) == rev1
    rev2 = revision_id(second)
    assert ok(db("upgrade")) == f"{name}: {rev1} -> {rev2} (1 step(s))\n"
    check = db("check")
    assert (check.returncode, check.stdout) == (0, f"{name}: tables match revision {rev2}\n")
    assert current_rows(ok(db("current")))[name] == [name, f"pl_{name}", rev2, rev2, "0"]
    assert sorted(p.name for p in migrations.iterdir() if p.suffix == ".py") == sorted(
        ["__init__.py", first.name, second.name]
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_author_flow(engine: str, tmp_path: Path, dropped: list[tuple[str, str]]) -> None:
    url = url_for(engine, tmp_path)
    name = unique_name("author")
    dropped.append((url, name))
    author_flow(url, tmp_path, name)


OTHER_TABLES = NOTES_TABLE + 'tags = Table("tags", metadata, Column("tag", String(30)))\n'


def test_autogenerate_ignores_other_plugins_tables(
    url: str, tmp_path: Path, plugin_names: list[str], run: Any
) -> None:
    # Both plugins have tables called notes and runs; B's are in the database.
    b, use_b = new_plugin(tmp_path, plugin_names, "b")
    a, _ = new_plugin(tmp_path, plugin_names, "a", tables=OTHER_TABLES)
    both = ["--load", f"plug_{a}:plugin", "--load", f"plug_{b}:plugin", "--no-entry-points"]
    ok(run("upgrade", url, *both))
    assert set(current_rows(ok(run("current", url, *both)))) == {a, b}

    path = written(ok(run("revision", url, "--plugin", a, "-m", "tags", "--autogenerate", *both)))
    body = upgrade_body(path)
    operations = [line.strip() for line in body.splitlines() if line.strip().startswith("op.")]
    assert operations == ["op.create_table('tags',"]
    assert f"schema='pl_{a}'" in body
    revision = path.read_text()
    assert b not in revision
    assert "drop_table" not in body
    assert "'notes'" not in revision
    assert "'runs'" not in revision
    assert set(re.findall(r"pl_\w+", revision)) == {f"pl_{a}"}

    # Applying it leaves B's tables alone.
    ok(run("upgrade", url, *both))
    check = run("check", url, *both)
    assert check.exit_code == 0, check.stdout + check.stderr
    assert current_rows(ok(run("current", url, *use_b)))[b][2:] == ["r2", "r2", "0"]


# -- offline SQL -----------------------------------------------------------------------


def statements(sql: str) -> list[str]:
    """The statements of an SQL script, comments and blank lines left out."""
    lines = [line for line in sql.splitlines() if line.strip() and not line.startswith("--")]
    return [" ".join(s.split()) for s in "\n".join(lines).split(";") if s.strip()]


@pytest.fixture
def scratch_pg_database() -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped after the test."""
    require_server("PostgreSQL", "127.0.0.1", 5432)
    psql = need_tool("psql")
    name = f"plugstore_sqltest_{uuid.uuid4().hex[:10]}"
    base = [psql, "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-d", "test"]
    subprocess.run([*base, "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(
            [*base, "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
            check=True,
            capture_output=True,
        )


def schema_dump(database: str, schema: str) -> str:
    dump = subprocess.run(
        [
            need_tool("pg_dump"),
            "--schema-only",
            "--no-owner",
            "-n",
            schema,
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            database,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    # Recent pg_dump wraps its output in "\restrict KEY" ... "\unrestrict KEY" with a
    # random KEY per run: those two lines are left out.  Nothing else is: no line of
    # the dump names the database.
    kept = [
        line for line in dump.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))
    ]
    assert not any(database in line for line in kept)
    return "\n".join(kept)


def test_offline_sql_on_postgresql_builds_the_same_schema_as_an_online_upgrade(
    tmp_path: Path, dropped: list[tuple[str, str]], scratch_pg_database: str, run: Any
) -> None:
    name = unique_name("offline")
    dropped.append((PG_URL, name))
    write_plugin(tmp_path, name)
    use = ["--load", f"plug_{name}:plugin", "--no-entry-points"]
    sql = ok(run("upgrade", PG_URL, "--sql", *use))
    assert statements(sql)[:2] == ["BEGIN", f"CREATE SCHEMA IF NOT EXISTS pl_{name}"]
    assert statements(sql)[-1] == "COMMIT"
    script = tmp_path / "upgrade.sql"
    script.write_text(sql)
    applied = subprocess.run(
        [
            need_tool("psql"),
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            scratch_pg_database,
            "-f",
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    assert ok(run("upgrade", PG_URL, *use)) == f"{name}: base -> r2 (2 step(s))\n"

    online = schema_dump("test", f"pl_{name}")
    offline = schema_dump(scratch_pg_database, f"pl_{name}")
    assert "CREATE TABLE pl_" in online
    assert "stars integer" in online
    assert offline == online

    # The database migrated offline is at the head, with each revision run once.
    scratch_url = f"postgresql://postgres@127.0.0.1:5432/{scratch_pg_database}"
    assert current_rows(ok(run("current", scratch_url, *use)))[name][2:] == ["r2", "r2", "0"]
    assert ok(run("check", scratch_url, *use)) == f"{name}: tables match revision r2\n"
    engine = Database.parse(scratch_url).engine()
    try:
        with engine.connect() as conn:
            runs = conn.execute(text(f"SELECT revision FROM pl_{name}.runs")).scalars().all()  # noqa: S608
    finally:
        engine.dispose()
    assert sorted(runs) == ["r1", "r2"]


def test_offline_sql_on_sqlite_attaches_the_plugins_file(tmp_path: Path, run: Any) -> None:
    name = unique_name("offline")
    write_plugin(tmp_path, name)
    use = ["--load", f"plug_{name}:plugin", "--no-entry-points"]
    url = f"sqlite:///{tmp_path}/data/store.sqlite3"
    sql = ok(run("upgrade", url, "--sql", *use))
    target = tmp_path / "data" / f"store.pl_{name}.sqlite3"
    attach = f"ATTACH DATABASE '{target}' AS \"pl_{name}\""
    # The script opens a transaction first; the ATTACH is its first statement.
    assert statements(sql)[:2] == ["BEGIN", attach]
    assert statements(sql)[-1] == "COMMIT"
    assert not target.exists()  # --sql touches no database

    # Applied by hand, it makes the plugin's file that plugstore then uses.
    target.parent.mkdir()
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(sql)
    finally:
        conn.close()
    assert target.is_file()
    assert current_rows(ok(run("current", url, *use)))[name][2:] == ["r2", "r2", "0"]
    assert ok(run("check", url, *use)) == f"{name}: tables match revision r2\n"


def test_offline_sql_on_mysql_creates_the_database(
    tmp_path: Path, dropped: list[tuple[str, str]], run: Any
) -> None:
    url = url_for("mysql", tmp_path)
    name = unique_name("offline")
    dropped.append((url, name))
    write_plugin(tmp_path, name)
    use = ["--load", f"plug_{name}:plugin", "--no-entry-points"]
    sql = ok(run("upgrade", url, "--sql", *use))
    first = statements(sql)[0]
    assert re.fullmatch(rf"CREATE (SCHEMA|DATABASE) IF NOT EXISTS `?pl_{name}`?", first), first
    assert "BEGIN" not in statements(sql)  # MariaDB commits DDL as it goes

    # Applied with the mysql client, the plugin is at its head.
    applied = subprocess.run(
        [need_tool("mysql"), "-h", "127.0.0.1", "-P", "3306", "-u", "root", "test"],
        input=sql,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    assert current_rows(ok(run("current", url, *use)))[name][2:] == ["r2", "r2", "0"]
    assert ok(run("check", url, *use)) == f"{name}: tables match revision r2\n"


# -- downgrade -------------------------------------------------------------------------


def test_downgrade_to_base_leaves_every_revision_pending(
    url: str, tmp_path: Path, plugin_names: list[str], run: Any
) -> None:
    name, use = new_plugin(tmp_path, plugin_names, "down")
    ok(run("upgrade", url, *use))
    assert current_rows(ok(run("current", url, *use)))[name] == [
        name,
        f"pl_{name}",
        "r2",
        "r2",
        "0",
    ]

    refused = run("downgrade", url, "base", "--plugin", name, "--sql", *use)
    line = one_error_line(refused.exit_code, refused.stderr)
    assert "FROM:TO" in line
    assert refused.stdout == ""
    if not url.startswith("sqlite"):  # SQLite's batch DROP COLUMN needs a live table
        sql = ok(run("downgrade", url, "r2:r1", "--plugin", name, "--sql", *use))
        assert f"ALTER TABLE pl_{name}.notes DROP COLUMN stars" in statements(sql)
        assert any("SET version_num='r1'" in s for s in statements(sql))
    # Printing SQL changed nothing.
    assert current_rows(ok(run("current", url, *use)))[name][2] == "r2"

    assert ok(run("downgrade", url, "base", "--plugin", name, *use)) == (
        f"{name}: r2 -> base (2 step(s))\n"
    )
    assert current_rows(ok(run("current", url, *use)))[name] == [name, f"pl_{name}", "-", "r2", "2"]
    module = load(tmp_path / f"plug_{name}.py")
    with (
        RelationalHost(url, [module.plugin]) as host,
        host.engine_for(module.plugin).connect() as conn,
    ):
        assert set(inspect(conn).get_table_names(schema=f"pl_{name}")) == {"alembic_version"}
    check = run("check", url, *use)
    assert (check.exit_code, check.stdout) == (1, f"{name}: 2 revision(s) not applied\n")
    assert ok(run("downgrade", url, "base", "--plugin", name, *use)) == (
        "nothing to do: every plugin is at base\n"
    )


# -- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dead", ["postgresql://u:s3cr3tpw@127.0.0.1:1/test", "mysql://u:s3cr3tpw@127.0.0.1:1/test"]
)
def test_an_unreachable_server_is_one_line_without_the_password(tmp_path: Path, dead: str) -> None:
    name = unique_name("dead")
    write_plugin(tmp_path, name)
    for command in ("current", "upgrade", "check"):
        result = plugstore(
            "db", command, dead, "--load", f"plug_{name}:plugin", "--no-entry-points", cwd=tmp_path
        )
        line = one_error_line(result.returncode, result.stderr)
        assert "127.0.0.1" in line
        assert "s3cr3tpw" not in result.stderr + result.stdout
        assert result.stdout == ""


def test_an_unknown_plugin_names_the_registered_ones(tmp_path: Path, run: Any) -> None:
    names: list[str] = []
    a, _ = new_plugin(tmp_path, names, "a")
    b, _ = new_plugin(tmp_path, names, "b")
    url = f"sqlite:///{tmp_path}/store.sqlite3"
    both = ["--load", f"plug_{a}:plugin", "--load", f"plug_{b}:plugin", "--no-entry-points"]
    for args in (
        ("current", url, "--plugin", "nosuch"),
        ("upgrade", url, "--plugin", "nosuch"),
        ("downgrade", url, "base", "--plugin", "nosuch"),
        ("revision", url, "--plugin", "nosuch", "-m", "x"),
    ):
        result = run(*args, *both)
        line = one_error_line(result.exit_code, result.stderr)
        assert "'nosuch'" in line, args
        assert f"registered: {', '.join(sorted([a, b]))}" in line, args
    assert not (tmp_path / "mig_nosuch").exists()


def test_no_plugins_says_how_to_add_one(tmp_path: Path, run: Any) -> None:
    url = f"sqlite:///{tmp_path}/store.sqlite3"
    for args in (("current", url), ("upgrade", url), ("check", url)):
        result = run(*args, "--no-entry-points")
        line = one_error_line(result.exit_code, result.stderr)
        assert "no relational plugins" in line
        assert "--load MODULE:ATTR" in line
        assert "install" in line


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("nosuchmodule_xyz:plugin", "nosuchmodule_xyz"),
        ("justamodule", "MODULE:ATTRIBUTE"),
        ("{module}:nothing", "nothing"),
        ("{module}:metadata", "not a RelationalPlugin"),
    ],
)
def test_a_bad_load_is_one_line(tmp_path: Path, run: Any, spec: str, says: str) -> None:
    name = unique_name("load")
    write_plugin(tmp_path, name)
    url = f"sqlite:///{tmp_path}/store.sqlite3"
    result = run("current", url, "--load", spec.format(module=f"plug_{name}"), "--no-entry-points")
    line = one_error_line(result.exit_code, result.stderr)
    assert line.startswith("error: --load ")
    assert says in line


def test_autogenerate_on_a_database_behind_the_head_is_one_line(
    url: str, tmp_path: Path, plugin_names: list[str], run: Any
) -> None:
    name, use = new_plugin(tmp_path, plugin_names, "behind", tables=OTHER_TABLES)
    ok(run("upgrade", url, "r1", "--plugin", name, *use))
    assert current_rows(ok(run("current", url, *use)))[name][2:] == ["r1", "r2", "1"]
    before = sorted(p.name for p in (tmp_path / f"mig_{name}").iterdir())
    result = run("revision", url, "--plugin", name, "-m", "tags", "--autogenerate", *use)
    line = one_error_line(result.exit_code, result.stderr)
    assert "not up to date" in line
    assert result.stdout == ""
    assert sorted(p.name for p in (tmp_path / f"mig_{name}").iterdir()) == before
    # It did not move the database either.
    assert current_rows(ok(run("current", url, *use)))[name][2:] == ["r1", "r2", "1"]


# -- entry points ----------------------------------------------------------------------

ENTRY_POINT_PACKAGE = """\
from sqlalchemy import Column, Integer, String, Table
from plugstore.relational import RelationalPlugin, plugin_metadata

metadata = plugin_metadata({name!r})
{tables}
plugin = RelationalPlugin({name!r}, metadata, "{package}:migrations")


def make_other():
    other = plugin_metadata({other!r})
    Table("runs", other, Column("revision", String(20)))
    Table("notes", other, Column("id", Integer, primary_key=True),
          Column("text", String(100), nullable=False))
    return RelationalPlugin({other!r}, other, "{package}:other_migrations")
"""


def test_installed_plugins_are_found_through_entry_points(tmp_path: Path) -> None:
    package = f"relpkg_{uuid.uuid4().hex[:8]}"
    name, other = unique_name("ep"), unique_name("epother")
    site = tmp_path / "site"
    root = site / package
    for directory, plugin, revisions in (
        ("migrations", name, [(CREATE_NOTES, DROP_NOTES), (ADD_STARS, DROP_STARS)]),
        ("other_migrations", other, [(CREATE_NOTES, DROP_NOTES)]),
    ):
        (root / directory).mkdir(parents=True)
        for number, (up, down) in enumerate(revisions, 1):
            add_revision(root / directory, f"pl_{plugin}", number, up, down)
    (root / "__init__.py").write_text(
        ENTRY_POINT_PACKAGE.format(name=name, other=other, package=package, tables=NOTES_TABLE)
    )
    dist = site / f"{package}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    # The broken entries come first: the ones after them still load.
    (dist / "entry_points.txt").write_text(
        "[plugstore.relational]\n"
        f"missing = {package}:nothing\n"
        f"wrong = {package}:metadata\n"
        f"notes = {package}:plugin\n"
        f"other = {package}:make_other\n"
    )
    env = {"PYTHONPATH": str(site)}
    url = f"sqlite:///{tmp_path}/store.sqlite3"
    work = tmp_path / "work"  # not the package's directory: found only as installed
    work.mkdir()

    def ours(result: subprocess.CompletedProcess[str]) -> dict[str, list[str]]:
        """Our two plugins' rows (other installed plugins may be listed too)."""
        rows = current_rows(ok(result))
        return {n: rows[n] for n in (name, other) if n in rows}

    def warnings(stderr: str) -> list[str]:
        """The warnings about our package's entry points; stderr has nothing else."""
        lines = stderr.strip().splitlines()
        assert all(line.startswith("warning: ") for line in lines), stderr
        return [line for line in lines if package in line]

    before = plugstore("db", "current", url, cwd=work, env=env)
    assert ours(before) == {
        name: [name, f"pl_{name}", "-", "r2", "2"],
        other: [other, f"pl_{other}", "-", "r1", "1"],
    }
    missing, wrong = warnings(before.stderr)
    assert f"{package}:nothing" in missing
    assert f"{package}:metadata" in wrong
    assert "not a RelationalPlugin" in wrong

    upgraded = plugstore(
        "db", "upgrade", url, "--plugin", name, "--plugin", other, cwd=work, env=env
    )
    assert sorted(ok(upgraded).splitlines()) == sorted(
        [f"{name}: base -> r2 (2 step(s))", f"{other}: base -> r1 (1 step(s))"]
    )
    assert len(warnings(upgraded.stderr)) == 2
    assert (tmp_path / f"store.pl_{name}.sqlite3").is_file()
    after = plugstore("db", "current", url, cwd=work, env=env)
    assert {n: row[2:] for n, row in ours(after).items()} == {
        name: ["r2", "r2", "0"],
        other: ["r1", "r1", "0"],
    }

    ignored = plugstore("db", "current", url, "--no-entry-points", cwd=work, env=env)
    assert "no relational plugins" in one_error_line(ignored.returncode, ignored.stderr)
