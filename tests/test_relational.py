"""plugstore.relational on real SQLite, PostgreSQL and MariaDB: schemas per plugin,
independent Alembic chains, the start-up lock, failures, the guard and settings."""

from __future__ import annotations

import datetime as datetime_module
import os
import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import OperationalError

from plugstore.errors import BackendUnavailableError, ConfigurationError
from plugstore.relational import (
    InvalidPluginNameError,
    MigrationError,
    RelationalHost,
    RelationalPlugin,
    Setting,
    UndeclaredSettingError,
    plugin_metadata,
)
from plugstore.testing import release_together
from relational_helpers import (  # the fixtures url and plugin_names too
    ADD_STARS,
    CREATE_NOTES,
    DROP_NOTES,
    DROP_STARS,
    add_revision,
    load,
    plugin_names_fixture,  # noqa: F401 (a fixture)
    unique_name,
    url_fixture,  # noqa: F401 (a fixture)
    write_plugin,
)

REPO = Path(__file__).resolve().parent.parent


def new_plugin(tmp_path: Path, names: list[str], label: str, **kwargs: Any) -> Any:
    name = unique_name(label)
    names.append(name)
    return load(write_plugin(tmp_path, name, **kwargs))


def runs(host: RelationalHost, name: str) -> list[str]:
    with host[name].session() as s:
        schema = host[name].schema
        return sorted(s.execute(text(f"SELECT revision FROM {schema}.runs")).scalars())  # noqa: S608


def tables_in(host: RelationalHost, plugin: RelationalPlugin) -> set[str]:
    with host.engine_for(plugin).connect() as conn:
        return set(inspect(conn).get_table_names(schema=plugin.schema))


# -- chains ------------------------------------------------------------------------------


def test_two_plugins_independent_chains_up_and_down(
    url: str, tmp_path: Path, plugin_names: list[str]
) -> None:
    a = new_plugin(tmp_path, plugin_names, "a")
    b = new_plugin(tmp_path, plugin_names, "b", revisions=[(CREATE_NOTES, DROP_NOTES)])
    with RelationalHost(url, [a.plugin, b.plugin]) as host:
        applied = host.start()
        assert [(x.plugin, x.start, x.end, x.steps) for x in applied] == [
            (a.plugin.name, None, "r2", ("r1", "r2")),
            (b.plugin.name, None, "r1", ("r1",)),
        ]
        # Each version table is inside its own schema; both chains use the ids r1, r2.
        for module in (a, b):
            assert "alembic_version" in tables_in(host, module.plugin)
        with host.engine_for(a.plugin).connect() as conn:
            default_schema_tables = inspect(conn).get_table_names()
        assert "alembic_version" not in default_schema_tables
        assert {s.plugin: (s.current, s.head, s.pending) for s in host.status()} == {
            a.plugin.name: ("r2", "r2", 0),
            b.plugin.name: ("r1", "r1", 0),
        }
        with host[a.plugin.name].session() as s:
            s.execute(a.notes.insert().values(text="kept", stars=5))
        assert runs(host, a.plugin.name) == ["r1", "r2"]

        # Down one step for a: b does not move, a's data minus the column stays.
        back = host.downgrade(a.plugin.name, "-1")
        assert (back.start, back.end) == ("r2", "r1")
        assert {s.plugin: s.current for s in host.status()} == {
            a.plugin.name: "r1",
            b.plugin.name: "r1",
        }
        with host.engine_for(a.plugin).connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("notes", a.plugin.schema)}
            assert columns == {"id", "text"}
            assert conn.execute(text(f"SELECT text FROM {a.plugin.schema}.notes")).all() == [  # noqa: S608
                ("kept",)
            ]
        host.downgrade(a.plugin.name, "base")
        assert tables_in(host, a.plugin) == {"alembic_version"}
        assert "notes" in tables_in(host, b.plugin)
        # And up again: the chain applies from the start.
        [again] = host.upgrade([a.plugin.name])
        assert again.steps == ("r1", "r2")


def test_new_revision_is_applied_at_the_next_start(
    url: str, tmp_path: Path, plugin_names: list[str]
) -> None:
    a = new_plugin(tmp_path, plugin_names, "a", revisions=[(CREATE_NOTES, DROP_NOTES)])
    with RelationalHost(url, [a.plugin]) as host:
        assert [x.steps for x in host.start()] == [("r1",)]
    with RelationalHost(url, [a.plugin]) as host:
        assert host.start() == []  # at head: nothing to do
    add_revision(tmp_path / f"mig_{a.plugin.name}", a.plugin.schema, 2, ADD_STARS, DROP_STARS)
    with RelationalHost(url, [a.plugin]) as host:
        [applied] = host.start()
        assert (applied.start, applied.end, applied.steps) == ("r1", "r2", ("r2",))
        with host[a.plugin.name].session() as s:
            s.execute(a.notes.insert().values(text="x", stars=3))
            assert s.execute(select(a.notes.c.stars)).scalar_one() == 3


def test_two_hosts_starting_at_once_apply_each_migration_once(
    url: str, tmp_path: Path, plugin_names: list[str]
) -> None:
    modules = [new_plugin(tmp_path, plugin_names, f"p{i}") for i in range(3)]
    # Slow the first revision down so that the two starts really overlap.
    for module in modules:
        path = tmp_path / f"mig_{module.plugin.name}" / "r1.py"
        path.write_text(path.read_text().replace("def upgrade():\n", SLEEP_FIRST))
    child = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from plugstore.relational import RelationalHost
        plugins = [__import__("plug_" + n).plugin for n in {plugin_names!r}]
        print("ready", flush=True)
        sys.stdin.readline()
        with RelationalHost({url!r}, plugins) as host:
            print(sum(len(a.steps) for a in host.start()))
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", child],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = release_together(procs)
    # Between them the two processes applied each revision once: 3 plugins x 2.
    assert sorted(int(out.split()[-1]) for out in outputs) in ([0, 6], [2, 4], [3, 3], [1, 5])
    assert sum(int(out.split()[-1]) for out in outputs) == 6
    with RelationalHost(url, [m.plugin for m in modules]) as host:
        host.start()
        for module in modules:
            assert runs(host, module.plugin.name) == ["r1", "r2"]


SLEEP_FIRST = "def upgrade():\n    import time\n    time.sleep(0.3)\n"


# -- failures --------------------------------------------------------------------------

FAILING = """
    op.create_table("half", sa.Column("id", sa.Integer, primary_key=True), schema="{schema}")
    op.execute("SELECT no_such_column FROM {schema}.notes")
"""


def test_a_failing_migration_names_plugin_and_revision(
    url: str, tmp_path: Path, plugin_names: list[str]
) -> None:
    good = new_plugin(tmp_path, plugin_names, "good")
    bad = new_plugin(
        tmp_path, plugin_names, "bad", revisions=[(CREATE_NOTES, DROP_NOTES), (FAILING, "")]
    )
    with RelationalHost(url, [good.plugin, bad.plugin]) as host:
        with pytest.raises(MigrationError) as err:
            host.start()
        message = str(err.value)
        assert repr(bad.plugin.name) in message
        assert "at revision r2" in message
        assert "no_such_column" in message
        status = {s.plugin: s.current for s in host.status()}
        assert status[good.plugin.name] == "r2"  # migrated before the bad one
        if host.kind == "mysql":
            # DDL is not transactional: r1 stays applied, the version is not advanced
            # past it, and the half-made table of r2 is left for the operator.
            assert status[bad.plugin.name] == "r1"
            assert "MariaDB" in message
            assert "half" in tables_in(host, bad.plugin)
        else:
            # PostgreSQL and SQLite roll the whole run back.
            assert status[bad.plugin.name] is None
            assert "rolled back" in message
            assert tables_in(host, bad.plugin) <= {"alembic_version"}
        with pytest.raises(ConfigurationError, match="has not started"):
            host[good.plugin.name]


def test_a_migration_may_not_touch_another_plugins_schema(
    url: str, tmp_path: Path, plugin_names: list[str]
) -> None:
    victim = new_plugin(tmp_path, plugin_names, "victim")
    with RelationalHost(url, [victim.plugin]) as host:
        host.start()
    vschema = victim.plugin.schema
    attacks = {
        "ddl": f'op.drop_table("notes", schema="{vschema}")',
        "text": f'op.execute("DELETE FROM {vschema}.notes")',  # noqa: S608
        "dml": f'op.execute(sa.table("notes", sa.column("text"), schema="{vschema}").delete())',
        "unqualified": 'op.create_table("loose", sa.Column("id", sa.Integer, primary_key=True))',
    }
    for label, attack in attacks.items():
        evil = new_plugin(tmp_path, plugin_names, "evil", revisions=[(attack, "")])
        with RelationalHost(url, [evil.plugin]) as host, pytest.raises(MigrationError) as err:
            host.start()
        assert "refused" in str(err.value), label
        assert repr(evil.plugin.name) in str(err.value)
    with RelationalHost(url, [victim.plugin]) as host:
        host.start()
        assert "notes" in tables_in(host, victim.plugin)
        with host.engine_for(victim.plugin).connect() as conn:
            assert "loose" not in inspect(conn).get_table_names()


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Notes",
        "pl-x",
        "1abc",
        "_x",
        "a b",
        "x;drop",
        "x'",
        'x"',
        "notés",
        "a" * 41,
        "x\x00",
        None,
        7,
    ],
)
def test_hostile_plugin_names_are_refused(name: Any) -> None:
    with pytest.raises(InvalidPluginNameError, match="plugin name"):
        plugin_metadata(name)


def test_metadata_must_be_the_plugins_own(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="plugin_metadata"):
        RelationalPlugin("a", plugin_metadata("b"), tmp_path)
    with pytest.raises(ConfigurationError, match="no migrations directory"):
        RelationalPlugin("a", plugin_metadata("a"), tmp_path / "missing").directory  # noqa: B018


def test_a_dead_server_fails_fast_without_the_password(tmp_path: Path) -> None:
    for dead in ("postgresql://u:s3cr3tpw@127.0.0.1:1/test", "mysql://u:s3cr3tpw@127.0.0.1:1/t"):
        module = load(write_plugin(tmp_path, unique_name("dead")))
        with RelationalHost(dead, [module.plugin]) as host:
            with pytest.raises(BackendUnavailableError) as err:
                host.start()
            assert "127.0.0.1" in str(err.value)
            assert "s3cr3tpw" not in str(err.value)


def test_key_value_only_stores_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="no SQL database"):
        RelationalHost("redis://127.0.0.1:6379/0")


def test_sqlite_attaches_one_file_per_plugin_beyond_the_attach_limit(tmp_path: Path) -> None:
    names: list[str] = []
    modules = [new_plugin(tmp_path, names, f"n{i}") for i in range(12)]
    url = f"sqlite:///{tmp_path}/data/store.sqlite3"
    with RelationalHost(url, [m.plugin for m in modules]) as host:
        assert len(host.start()) == 12
        for m in modules:
            with host[m.plugin.name].session() as s:
                s.execute(m.notes.insert().values(text=m.plugin.name))
    for m in modules:
        assert (tmp_path / "data" / f"store.{m.plugin.schema}.sqlite3").is_file()
    with RelationalHost(url, [m.plugin for m in modules]) as host:
        assert host.start() == []
        for m in modules:
            with host[m.plugin.name].session() as s:
                assert s.execute(select(m.notes.c.text)).scalar_one() == m.plugin.name


def test_session_commits_rolls_back_and_closes(
    url: str, tmp_path: Path, plugin_names: list[str]
) -> None:
    a = new_plugin(tmp_path, plugin_names, "a")
    with RelationalHost(url, [a.plugin]) as host:
        host.start()
        db = host[a.plugin.name]

        def fail_after_insert() -> None:
            with db.session() as s:
                s.execute(a.notes.insert().values(text="lost"))
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            fail_after_insert()
        with db.session() as s:
            s.execute(a.notes.insert().values(text="kept"))
        with db.session() as s:
            assert s.execute(select(a.notes.c.text)).scalars().all() == ["kept"]
        with db.engine.connect() as conn:
            assert conn.execute(select(a.notes.c.text)).scalars().all() == ["kept"]
    with pytest.raises(Exception, match="closed"):
        host[a.plugin.name]


def test_a_forked_child_uses_its_own_connections(
    url: str, tmp_path: Path, plugin_names: list[str]
) -> None:
    a = new_plugin(tmp_path, plugin_names, "a")
    with RelationalHost(url, [a.plugin]) as host:
        host.start()
        with host[a.plugin.name].session() as s:  # the parent's pool now has a connection
            s.execute(a.notes.insert().values(text="parent"))
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit code
            code = 1
            try:
                with host[a.plugin.name].session() as s:
                    s.execute(a.notes.insert().values(text="child"))
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
        with host[a.plugin.name].session() as s:  # the parent's connection still works
            texts = s.execute(select(a.notes.c.text)).scalars().all()
        assert sorted(texts) == ["child", "parent"]


# -- settings ------------------------------------------------------------------------

SETTINGS_TABLES = """
settings = Settings(metadata, {
    "greeting": Setting(str, "hello"),
    "limit": Setting(int, 10),
    "ratio": Setting(float, 0.5),
    "enabled": Setting(bool, True),
    "nothing": Setting(str, None),
    "last_run": Setting(datetime, None),
    "aliases": Setting(dict, {}),
    "tags": Setting(list, []),
    "anything": Setting("json", None),
})
"""
CREATE_SETTINGS = """
    op.create_table(
        "plugstore_settings",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        schema="{schema}",
    )
"""
DROP_SETTINGS = 'op.drop_table("plugstore_settings", schema="{schema}")'

VALUES: dict[str, Any] = {
    "greeting": "héllo \x00 wörld 🎉",
    "limit": -(2**62),
    "ratio": 1e-300,
    "enabled": False,
    "nothing": None,
    "last_run": datetime(2026, 11, 23, 12, 30, 5, 123456, tzinfo=timezone(timedelta(hours=2))),
    "aliases": {"a": [1, 2.5, None, True], "": {"nested": "x"}},
    "tags": ["x", "y", ""],
    "anything": [1, {"k": None}],
}


def settings_plugin(tmp_path: Path, names: list[str]) -> Any:
    return new_plugin(
        tmp_path,
        names,
        "cfg",
        revisions=[(CREATE_SETTINGS, DROP_SETTINGS)],
        tables=SETTINGS_TABLES,
    )


def test_settings_round_trip_every_type_and_survive_a_restart(
    url: str, tmp_path: Path, plugin_names: list[str]
) -> None:
    m = settings_plugin(tmp_path, plugin_names)
    with RelationalHost(url, [m.plugin]) as host:
        host.start()
        with host[m.plugin.name].session() as s:
            assert m.settings.all(s) == {
                "greeting": "hello",
                "limit": 10,
                "ratio": 0.5,
                "enabled": True,
                "nothing": None,
                "last_run": None,
                "aliases": {},
                "tags": [],
                "anything": None,
            }
            for key, value in VALUES.items():
                m.settings.set(s, key, value)
        with host[m.plugin.name].engine.connect() as conn:  # a Connection works too
            m.settings.set(conn, "nothing", "now set", commit=True)
    child = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from plugstore.relational import RelationalHost
        m = __import__("plug_{m.plugin.name}")
        with RelationalHost({url!r}, [m.plugin]) as host:
            host.start()
            with host["{m.plugin.name}"].session() as s:
                print(repr(m.settings.all(s)))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    restored = eval(out, {"datetime": datetime_module})  # noqa: S307 (our own child's repr)
    assert restored == {**VALUES, "nothing": "now set"}
    assert restored["last_run"].utcoffset() == timedelta(hours=2)
    with RelationalHost(url, [m.plugin]) as host:
        host.start()
        with host[m.plugin.name].session() as s:
            m.settings.reset(s, "limit")
            assert m.settings.get(s, "limit") == 10
            assert m.settings.get(s, "ratio") == 1e-300


def test_settings_refuse_undeclared_keys_and_wrong_types(
    url: str, tmp_path: Path, plugin_names: list[str]
) -> None:
    m = settings_plugin(tmp_path, plugin_names)
    with RelationalHost(url, [m.plugin]) as host:
        host.start()
        with host[m.plugin.name].session() as s:
            with pytest.raises(UndeclaredSettingError, match="greting"):
                m.settings.get(s, "greting")
            with pytest.raises(UndeclaredSettingError):
                m.settings.set(s, "undeclared", 1)
            bad = {
                "limit": [True, "10", 1.5, None],
                "ratio": ["0.5", None, True],
                "greeting": [b"bytes", 1, None],
                "enabled": [1, "yes"],
                "last_run": ["2026-01-01", 0],
                "aliases": [{1: "int key"}, {"t": (1, 2)}, [], {"f": float("nan")}],
                "tags": [(1, 2), {"a": 1}, [object()]],
                "anything": [{1, 2}, b"x"],
            }
            for key, values in bad.items():
                for value in values:
                    with pytest.raises(TypeError):
                        m.settings.set(s, key, value)
            m.settings.set(s, "ratio", 3)  # an int is a fine float
            assert m.settings.get(s, "ratio") == 3.0
            assert isinstance(m.settings.get(s, "ratio"), float)
        with host[m.plugin.name].session() as s:
            rows = s.execute(select(m.settings.table.c.name)).scalars().all()
        assert rows == ["ratio"]  # every refused write left nothing behind
    with pytest.raises(TypeError, match="default"):
        Setting(int, "ten")
    with pytest.raises(TypeError, match="not"):
        Setting(tuple, ())  # type: ignore[arg-type]


def test_settings_do_not_commit_the_callers_transaction(
    url: str, tmp_path: Path, plugin_names: list[str]
) -> None:
    m = settings_plugin(tmp_path, plugin_names)
    with RelationalHost(url, [m.plugin]) as host:
        host.start()
        engine = host[m.plugin.name].engine
        with engine.connect() as conn:
            m.settings.set(conn, "limit", 99)
            m.settings.get(conn, "limit")
            m.settings.reset(conn, "greeting")
            m.settings.set(conn, "greeting", "pending")
            conn.rollback()
            assert m.settings.get(conn, "limit") == 10
            assert m.settings.get(conn, "greeting") == "hello"
            m.settings.set(conn, "limit", 42, commit=True)
            conn.rollback()
            assert m.settings.get(conn, "limit") == 42


def test_first_use_of_settings_by_4_processes_leaves_one_row(
    url: str, tmp_path: Path, plugin_names: list[str]
) -> None:
    m = settings_plugin(tmp_path, plugin_names)
    with RelationalHost(url, [m.plugin]) as host:
        host.start()
    child = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from plugstore.relational import RelationalHost
        m = __import__("plug_{m.plugin.name}")
        with RelationalHost({url!r}, [m.plugin]) as host:
            host.start()
            db = host["{m.plugin.name}"]
            print("ready", flush=True)
            sys.stdin.readline()
            for i in range(50):
                with db.session() as s:
                    if m.settings.get(s, "greeting") == "hello":  # first use: unset
                        m.settings.set(s, "greeting", sys.argv[1])
                    m.settings.set(s, "limit", i)
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", child, f"from {n}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    release_together(procs)
    with RelationalHost(url, [m.plugin]) as host:
        host.start()
        with host[m.plugin.name].session() as s:
            rows = s.execute(select(m.settings.table.c.name)).scalars().all()
            assert sorted(rows) == ["greeting", "limit"]
            assert m.settings.get(s, "greeting") in {f"from {n}" for n in range(4)}
            assert m.settings.get(s, "limit") == 49


def test_a_start_at_head_takes_no_lock_and_readonly_sessions_do_not_wait(
    tmp_path: Path,
) -> None:
    """A writer holding a plugin file's write lock neither blocks a host start-up with
    every plugin at its head, nor read-only sessions."""
    names: list[str] = []
    m = new_plugin(tmp_path, names, "busy")
    url = f"sqlite:///{tmp_path}/store.sqlite3?timeout=1"
    with RelationalHost(url, [m.plugin]) as host:
        host.start()
    writer = sqlite3.connect(tmp_path / f"store.{m.plugin.schema}.sqlite3", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO notes (text) VALUES ('uncommitted')")
    try:
        with RelationalHost(url, [m.plugin]) as host:
            assert host.start() == []  # read the versions without waiting for the lock
            with host[m.plugin.name].session(readonly=True) as s:
                assert s.execute(select(m.notes.c.text)).all() == []
            writing = host[m.plugin.name].session()
            with pytest.raises(OperationalError, match="locked"), writing as s:  # it waits
                s.execute(select(m.notes.c.text)).all()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
