#!/usr/bin/env python
"""plugstore benchmarks: ops/s of plugstore and its peers, measured in the same run.

    python benchmarks/run.py                 # full run (minutes; see docs/benchmarks.md)
    python benchmarks/run.py --quick         # small sizes, 3 repeats
    python benchmarks/run.py --only sqlite,race --repeat 7 --json results.json

Every number is the median of ``--repeat`` (>= 3) runs.  In each repeat every contender
of a workload runs once, in alternating order, so plugstore and its peers share the same
noise; compare ratios inside one run, never numbers across runs.  See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import compileall
import dbm
import functools
import json
import multiprocessing
import os
import pickle
import platform
import shelve
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache
from sqlitedict import SqliteDict

import plugstore
from harness import (
    Bar,
    Contender,
    Result,
    Row,
    Settings,
    Value,
    bar_line,
    bar_summary,
    fmt_rate,
    format_table,
    make_data,
    measure,
    paired_ratio,
    set_get,
    span,
    timed,
    unwind_on_sigterm,
    write_json,
)
from plugstore.locks import LOCKS_NAMESPACE
from plugstore.scopekeys import level_prefix, own_prefix
from servers import (
    MYSQL_URL,
    PG_DSN,
    PG_URL,
    REDIS_URL,
    _local_dynamodb,
    _name,
    _redis_prefix,
    redis_purge,
    unavailable,
    w_dynamodb,
    w_mysql,
    w_postgresql,
    w_redis,
)

WORKLOADS = (
    "sqlite",
    "batch",
    "peers",
    "memory",
    "race",
    "postgresql",
    "mysql",
    "redis",
    "dynamodb",
    "relational",
    "scopes",
    "locks",
    "expiry",
    "tree",
    "lockwait",
)
# --------------------------------------------------------------------- sqlite and peers

RAW_SET = (
    "INSERT INTO kv (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
RAW_GET = "SELECT value FROM kv WHERE key = ?"
RAW_INCR = (
    "INSERT INTO kv (key, value) VALUES (?, 1) "
    "ON CONFLICT (key) DO UPDATE SET value = value + 1 RETURNING value"
)
TIMEOUT = 30.0  # busy timeout (seconds) for plugstore and raw sqlite3 alike


def raw_connect(path: Path, without_rowid: bool = False) -> sqlite3.Connection:
    """sqlite3 with plugstore's settings: WAL, synchronous=NORMAL, autocommit."""
    conn = sqlite3.connect(path, timeout=TIMEOUT, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    tail = " WITHOUT ROWID" if without_rowid else ""
    conn.execute(f"CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB){tail}")
    return conn


def open_plugstore_sqlite(path: Path) -> plugstore.Store:
    return plugstore.open(f"sqlite:///{path}", timeout=TIMEOUT)


#: Opens a dict-like store in a directory: returns (the mapping, how to close it).
Opener = Callable[[Path], tuple[Any, Callable[[], None]]]


def mapping_contender(open_map: Opener) -> Contender:
    """A contender for anything dict-like: ``m[k] = v`` for every key, then ``m[k]``."""

    def contender(d: Path, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:
        m, close = open_map(d)

        def sets() -> None:
            for k, v in zip(keys, values, strict=True):
                m[k] = v

        def gets() -> Any:
            for k in keys:
                out = m[k]
            return out

        try:
            return set_get(sets, gets, values[-1])
        finally:
            close()

    return contender


def open_plugstore(d: Path) -> tuple[Any, Callable[[], None]]:
    store = open_plugstore_sqlite(d / "plugstore.db")
    return store.namespace("bench"), store.close


def open_diskcache(d: Path) -> tuple[Any, Callable[[], None]]:
    cache = diskcache.Cache(str(d / "diskcache"))
    return cache, cache.close


def open_sqlitedict(d: Path) -> tuple[Any, Callable[[], None]]:
    db = SqliteDict(str(d / "sqlitedict.db"), autocommit=True)
    return db, db.close


def open_shelve(d: Path) -> tuple[Any, Callable[[], None]]:
    # writeback=False (the default): each assignment goes straight to the dbm file.
    db = shelve.open(str(d / "shelf"))  # noqa: SIM115 - closed by the contender
    return db, db.close


class ReopeningShelf:
    """The storage pattern Lamson's docs show: open the shelf on every call, under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.lock = threading.RLock()

    def __getitem__(self, key: str) -> Any:
        with self.lock, shelve.open(self.path) as db:
            return db[key]

    def __setitem__(self, key: str, value: Any) -> None:
        with self.lock, shelve.open(self.path) as db:
            db[key] = value


def open_reopening_shelf(d: Path) -> tuple[Any, Callable[[], None]]:
    return ReopeningShelf(d / "shelf"), lambda: None


plugstore_sqlite = mapping_contender(open_plugstore)


def raw_sqlite(
    d: Path, keys: Sequence[str], values: Sequence[Value], without_rowid: bool = False
) -> dict[str, float]:
    conn = raw_connect(d / "raw.db", without_rowid)

    def sets() -> None:
        for k, v in zip(keys, values, strict=True):
            conn.execute(RAW_SET, (k, json.dumps(v).encode()))

    def gets() -> Any:
        for k in keys:
            row = conn.execute(RAW_GET, (k,)).fetchone()
            if row is None:
                raise KeyError(k)
            out = json.loads(row[0])
        return out

    try:
        return set_get(sets, gets, values[-1])
    finally:
        conn.close()


# ----------------------------------------------------------------------- batched writes


def batches(
    keys: Sequence[str], values: Sequence[Value], size: int
) -> list[list[tuple[str, Value]]]:
    pairs = list(zip(keys, values, strict=True))
    return [pairs[i : i + size] for i in range(0, len(pairs), size)]


def make_batch_contenders(size: int) -> tuple[Contender, Contender, Contender]:
    def plugstore_batch(d: Path, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:
        store = open_plugstore_sqlite(d / "plugstore.db")
        ns = store.namespace("bench")
        chunks = batches(keys, values, size)

        def sets() -> None:
            for chunk in chunks:
                ns.set_many(chunk)

        try:
            secs, _ = timed(sets)
            if ns[keys[-1]] != values[-1] or len(ns) != len(keys):
                raise AssertionError("plugstore set_many did not store every item")
            return {"set_many": secs}
        finally:
            store.close()

    def raw_batch(
        d: Path, keys: Sequence[str], values: Sequence[Value], without_rowid: bool = False
    ) -> dict[str, float]:
        conn = raw_connect(d / "raw.db", without_rowid)
        chunks = batches(keys, values, size)

        def sets() -> None:
            for chunk in chunks:
                rows = [(k, json.dumps(v).encode()) for k, v in chunk]
                conn.execute("BEGIN")
                conn.executemany(RAW_SET, rows)
                conn.execute("COMMIT")

        try:
            secs, _ = timed(sets)
            if conn.execute("SELECT count(*) FROM kv").fetchone()[0] != len(keys):
                raise AssertionError("raw executemany did not store every item")
            return {"set_many": secs}
        finally:
            conn.close()

    return plugstore_batch, raw_batch, functools.partial(raw_batch, without_rowid=True)


# ------------------------------------------------------------------------------- memory


def make_memory_contender(codec: str) -> Contender:
    def plugstore_memory(d: Path, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:
        store = plugstore.open("memory://", codec=codec)
        ns = store.namespace("bench")

        def round_trips() -> Any:
            for k, v in zip(keys, values, strict=True):
                ns[k] = v
                out = ns[k]
            return out

        try:
            secs, last = timed(round_trips)
            if last != values[-1]:
                raise AssertionError("memory round trip changed the value")
            return {"set+get": secs}
        finally:
            store.close()

    return plugstore_memory


def dict_pickle(d: Path, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:
    data: dict[str, bytes] = {}

    def round_trips() -> Any:
        for k, v in zip(keys, values, strict=True):
            data[k] = pickle.dumps(v)
            out = pickle.loads(data[k])
        return out

    secs, last = timed(round_trips)
    if last != values[-1]:
        raise AssertionError("pickle round trip changed the value")
    return {"set+get": secs}


# ------------------------------------------------------------------ multi-process race

COUNTER = "counter"
RACE_KINDS = {
    "plugstore incr": "ns.incr(k) (one upsert statement)",
    "raw sqlite3 upsert": "INSERT .. ON CONFLICT DO UPDATE SET value = value + 1 RETURNING",
    "plugstore naive": "ns[k] = ns[k] + 1 (get, then set)",
    "sqlitedict naive": "d[k] = d[k] + 1 (autocommit=True)",
}
_barrier: Any = None


def _init_race_worker(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


def _race_target(kind: str, path: Path) -> tuple[Callable[[], Any], Callable[[], None]]:
    """Return (one increment, close) for ``kind``; opening happens before the clock."""
    if kind == "raw sqlite3 upsert":
        conn = raw_connect(path)
        return (lambda: conn.execute(RAW_INCR, (COUNTER,)).fetchone()), conn.close
    if kind == "sqlitedict naive":
        db = SqliteDict(str(path), autocommit=True, timeout=TIMEOUT)

        def bump_dict() -> None:
            db[COUNTER] = db[COUNTER] + 1

        return bump_dict, db.close
    store = open_plugstore_sqlite(path)
    ns = store.namespace("bench")
    if kind == "plugstore incr":
        return (lambda: ns.incr(COUNTER)), store.close

    def bump_ns() -> None:
        ns[COUNTER] = ns[COUNTER] + 1

    return bump_ns, store.close


def race_task(kind: str, path: str, n: int) -> tuple[float, float, int, int]:
    """In a worker process: ``n`` increments after the barrier -> (start, end, ok, errors)."""
    op, close = _race_target(kind, Path(path))
    ok = errors = 0
    _barrier.wait(timeout=120)
    t0 = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
    for _ in range(n):
        try:
            op()
            ok += 1
        except Exception:  # a peer giving up (e.g. "database is locked") is counted
            errors += 1
    t1 = time.perf_counter()
    close()
    return t0, t1, ok, errors


def _race_prepare(kind: str, path: Path) -> None:
    if kind == "raw sqlite3 upsert":
        raw_connect(path).close()
    elif kind == "sqlitedict naive":
        with SqliteDict(str(path), autocommit=True) as db:
            db[COUNTER] = 0
    else:
        with open_plugstore_sqlite(path) as store:
            if kind == "plugstore naive":
                store.namespace("bench")[COUNTER] = 0


def _race_final(kind: str, path: Path) -> int:
    if kind == "raw sqlite3 upsert":
        conn = raw_connect(path)
        try:
            row = conn.execute(RAW_GET, (COUNTER,)).fetchone()
            return int(row[0]) if row else 0
        finally:
            conn.close()
    if kind == "sqlitedict naive":
        with SqliteDict(str(path), flag="r") as db:
            return int(db[COUNTER])
    with open_plugstore_sqlite(path) as store:
        return int(store.namespace("bench").get(COUNTER, 0))


def run_race(
    tmp: Path, procs: int, per_proc: dict[str, int], repeat: int
) -> tuple[list[Row], dict[str, list[int]]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(procs)
    rows = {kind: Row(kind, "incr", n * procs) for kind, n in per_proc.items()}
    lost: dict[str, list[int]] = {kind: [] for kind in per_proc}
    with ctx.Pool(procs, initializer=_init_race_worker, initargs=(barrier,)) as pool:

        def once(kind: str, n: int) -> tuple[float, int, int, int]:
            d = Path(tempfile.mkdtemp(dir=tmp))
            try:
                path = d / "race.db"
                _race_prepare(kind, path)
                # chunksize=1 and the barrier: each worker takes exactly one task.
                out = pool.starmap(race_task, [(kind, str(path), n)] * procs, chunksize=1)
                final = _race_final(kind, path)
            finally:
                shutil.rmtree(d, ignore_errors=True)
            wall = max(t1 for _, t1, _, _ in out) - min(t0 for t0, _, _, _ in out)
            ok = sum(o for _, _, o, _ in out)
            errors = sum(e for _, _, _, e in out)
            return wall, ok, errors, final

        for kind in per_proc:  # warm-up: worker imports and first connections
            once(kind, 5)
        kinds = list(per_proc)
        for r in range(repeat):
            for kind in kinds if r % 2 == 0 else kinds[::-1]:
                wall, ok, errors, final = once(kind, per_proc[kind])
                row = rows[kind]
                row.seconds.append(wall)
                row.extra.setdefault("final", []).append(final)
                row.extra.setdefault("errors", []).append(errors)
                # Every successful increment must be in the final value; the rest were lost.
                lost[kind].append(ok - final)
                row.extra["lost"] = lost[kind]
    return list(rows.values()), lost


# ------------------------------------------------------------ relational plugin storage

#: Plugins a host brings up in the start-up workload (the issue's bar is for 20).
REL_PLUGINS = 20
#: The setting the settings workload reads, and the value stored for it.
REL_SETTING, REL_STORED = "max_items", 42
PEEK_LOOP = "Peek-style alembic loop"
CORE_SELECT = "Core select"
CORE_BUILT_ONCE = "Core select, built once"

#: Each plugin's two revisions, as ``alembic revision --autogenerate`` writes them for a
#: plugin_metadata() schema: a table and the settings table, then a column added.
REL_REVISIONS = {
    "0001_create_items.py": '''"""create items and plugstore_settings"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        schema="{schema}",
    )
    op.create_table(
        "plugstore_settings",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        schema="{schema}",
    )


def downgrade():
    op.drop_table("plugstore_settings", schema="{schema}")
    op.drop_table("items", schema="{schema}")
''',
    "0002_add_created.py": '''"""add items.created"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("items", schema="{schema}") as batch:
        batch.add_column(sa.Column("created", sa.DateTime, nullable=True))


def downgrade():
    with op.batch_alter_table("items", schema="{schema}") as batch:
        batch.drop_column("created")
''',
}

#: The baseline's env.py, one per plugin, after Peek's AlembicEnvBase.run(): an engine of
#: its own from the ini's URL with NullPool, one connection, the plugin's metadata and a
#: version table in the plugin's schema, the migrations in a transaction.  (Peek also
#: checks has_table and runs CREATE SCHEMA IF NOT EXISTS first; the baseline does not.)
PEEK_ENV = '''"""A plugin's env.py in Peek's style (the benchmark's baseline)."""
from alembic import context
from sqlalchemy import engine_from_config, event, pool

config = context.config
schema = config.get_main_option("plugin_schema")
# Stands for `from <plugin>.storage import metadata` (imported once per process).
target_metadata = config.attributes["target_metadata"]
engine = engine_from_config(
    config.get_section(config.config_ini_section), prefix="sqlalchemy.", poolclass=pool.NullPool
)
attach = config.get_main_option("plugin_file")
if attach:  # SQLite: the plugin's schema is a file of its own, attached under its name

    @event.listens_for(engine, "connect")
    def attach_plugin_file(dbapi_connection, connection_record):
        dbapi_connection.execute(f'ATTACH DATABASE ? AS "{schema}"', (attach,))


with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table_schema=schema,
        include_schemas=True,
    )
    with context.begin_transaction():
        context.run_migrations()
'''
PEEK_INI = """[alembic]
script_location = {script_location}
sqlalchemy.url = {url}
plugin_schema = {schema}
plugin_file = {file}
"""


@dataclass
class PeekPlugin:
    """One plugin as the baseline sees it: its alembic.ini, metadata, schema, SQLite file."""

    ini: Path
    metadata: Any
    schema: str
    file: str  # the plugin's SQLite file ("" on a server)


@dataclass
class RelFixture:
    """20 plugins at their heads in one database, for plugstore and for the baseline."""

    kind: str  # "sqlite" or "postgresql"
    url: str  # plugstore's store URL
    engine_url: str  # the SQLAlchemy URL the baseline is configured with
    plugins: list[Any]  # plugstore.relational.RelationalPlugin
    peek: list[PeekPlugin]
    settings: Any  # the first plugin's plugstore.relational.Settings


def _ini(value: object) -> str:
    return str(value).replace("%", "%%")  # "%" is the ini parser's interpolation sign


def rel_fixture(
    kind: str, url: str, engine_url: str, root: Path, names: Sequence[str]
) -> RelFixture:
    """Write every plugin's migrations (and the baseline's env.py and alembic.ini), then
    bring them all to their heads with one untimed plugstore start-up."""
    from sqlalchemy import Column, DateTime, Integer, String, Table

    from plugstore.relational import RelationalHost, RelationalPlugin, Setting, plugin_metadata
    from plugstore.relational import Settings as PluginSettings

    store = root / "store.sqlite3"
    plugins: list[Any] = []
    peek: list[PeekPlugin] = []
    settings: list[Any] = []
    for name in names:
        metadata = plugin_metadata(name)
        schema = str(metadata.schema)
        Table(
            "items",
            metadata,
            Column("id", Integer, primary_key=True),
            Column("name", String(100), nullable=False),
            Column("created", DateTime),
        )
        settings.append(PluginSettings(metadata, {REL_SETTING: Setting(int, 10)}))
        migrations, scripts = root / "migrations" / name, root / "peek" / name
        migrations.mkdir(parents=True)
        (scripts / "versions").mkdir(parents=True)
        for filename, text in REL_REVISIONS.items():
            (migrations / filename).write_text(text.format(schema=schema))
            (scripts / "versions" / filename).write_text(text.format(schema=schema))
        (scripts / "env.py").write_text(PEEK_ENV)
        # plugstore keeps a plugin's SQLite schema in <store stem>.<schema><suffix>.
        file = (
            str(store.with_name(f"{store.stem}.{schema}{store.suffix}")) if kind == "sqlite" else ""
        )
        ini = scripts / "alembic.ini"
        ini.write_text(
            PEEK_INI.format(
                script_location=_ini(scripts), url=_ini(engine_url), schema=schema, file=_ini(file)
            )
        )
        plugins.append(RelationalPlugin(name, metadata, migrations))
        peek.append(PeekPlugin(ini, metadata, schema, file))
    # An installed plugin's files are byte-compiled (pip does it), so neither side compiles
    # them on every start-up, whatever PYTHONDONTWRITEBYTECODE says here.
    compileall.compile_dir(str(root), quiet=1)
    host = RelationalHost(url, plugins)
    try:
        applied = host.start()
    finally:
        host.close()
    if sorted(a.plugin for a in applied if len(a.steps) == 2) != sorted(names):
        raise AssertionError(f"the first start-up did not apply both revisions: {applied}")
    for p in peek:
        if p.file and not Path(p.file).is_file():
            # The baseline would attach an empty file and migrate it: refuse to measure that.
            raise AssertionError(f"no SQLite file {p.file} for schema {p.schema}")
    return RelFixture(kind, url, engine_url, plugins, peek, settings[0])


def host_start_contender(fx: RelFixture, op: str) -> Contender:
    """plugstore: ``RelationalHost(url, plugins).start()`` then ``close()``, a fresh host each
    time (as a process start makes one); one op = one plugin, so 20 ops per start-up."""
    from plugstore.relational import RelationalHost

    def run(d: Path, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:
        def start_ups() -> list[Any]:
            applied: list[Any] = []
            for _ in range(max(1, len(keys) // REL_PLUGINS)):
                host = RelationalHost(fx.url, fx.plugins)
                try:
                    applied += host.start()
                finally:
                    host.close()
            return applied

        secs, applied = timed(start_ups)
        if applied:
            raise AssertionError(f"a start-up at head applied migrations: {applied}")
        return {op: secs}

    return run


def peek_engine(fx: RelFixture, p: PeekPlugin) -> Any:
    """The engine a Peek plugin makes for itself (its DbConnection.dbEngine)."""
    from sqlalchemy import create_engine, event

    engine = create_engine(fx.engine_url)
    if p.file:
        schema, file = p.schema, p.file

        @event.listens_for(engine, "connect")
        def attach_plugin_file(dbapi_connection: Any, connection_record: Any) -> None:
            dbapi_connection.execute(f'ATTACH DATABASE ? AS "{schema}"', (file,))

    return engine


def peek_start_contender(fx: RelFixture, op: str) -> Contender:
    """The baseline: for each plugin a fresh engine, then ``alembic.command.upgrade(cfg,
    "head")`` with the plugin's alembic.ini and env.py; the engines are disposed at the
    end, as plugstore's ``close()`` disposes its pools."""
    from alembic import command
    from alembic.config import Config

    def run(d: Path, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:
        def start_ups() -> None:
            for _ in range(max(1, len(keys) // REL_PLUGINS)):
                engines = []
                try:
                    for p in fx.peek:
                        engines.append(peek_engine(fx, p))
                        config = Config(str(p.ini))
                        config.attributes["target_metadata"] = p.metadata
                        # At head this finds nothing to do; an env.py that missed the
                        # plugin's version table would re-run 0001 and fail on its table.
                        command.upgrade(config, "head")
                finally:
                    for engine in engines:
                        engine.dispose()

        secs, _ = timed(start_ups)
        return {op: secs}

    return run


def settings_get_contender(settings: Any, db: Any, op: str) -> Contender:
    """plugstore: ``settings.get(db, "max_items")`` on a connection or a session."""

    def run(d: Path, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:
        def gets() -> Any:
            for _ in keys:
                out = settings.get(db, REL_SETTING)
            return out

        secs, out = timed(gets)
        if out != REL_STORED:
            raise AssertionError(f"settings.get read {out!r}, not {REL_STORED!r}")
        return {op: secs}

    return run


def core_select_contender(settings: Any, db: Any, op: str, *, built_once: bool) -> Contender:
    """The peer: a Core select of the setting's row on the same connection or session,
    written inline as plugin code does (or, ``built_once``, prepared with a bind parameter)."""
    from sqlalchemy import bindparam, select

    table = settings.table
    statement = select(table.c.value).where(table.c.name == bindparam("n"))

    def run(d: Path, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:
        def inline() -> Any:
            for _ in keys:
                out = db.execute(
                    select(table.c.value).where(table.c.name == REL_SETTING)
                ).scalar_one()
            return out

        def prepared() -> Any:
            for _ in keys:
                out = db.execute(statement, {"n": REL_SETTING}).scalar_one()
            return out

        secs, out = timed(prepared if built_once else inline)
        if json.loads(out) != REL_STORED:
            raise AssertionError(f"the Core select read {out!r}")
        return {op: secs}

    return run


def relational_rows(s: Settings, tmp: Path, kind: str, names: Sequence[str]) -> list[Row]:
    """Both measurements on one database: start-ups at head, then settings gets."""
    from plugstore.relational import RelationalHost

    root = Path(tempfile.mkdtemp(dir=tmp))
    if kind == "sqlite":
        url = engine_url = f"sqlite:///{root / 'store.sqlite3'}"
    else:
        url, engine_url = PG_URL, PG_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        fx = rel_fixture(kind, url, engine_url, root, names)
        n = max(1, s.n // 2000) * REL_PLUGINS  # ops = plugins brought up
        keys, values = make_data(n)
        op = f"{kind} start-up"
        contenders: list[tuple[str, int, Contender]] = [
            ("plugstore", n, host_start_contender(fx, op)),
            (PEEK_LOOP, n, peek_start_contender(fx, op)),
        ]
        rows = measure(contenders, keys, values, tmp, s.repeat)
        # Ratios of gets are steady, so fewer ops keep the run short (a round trip per
        # get on the server).
        n = max(1, s.n // 4 if kind == "sqlite" else s.n // 8)
        keys, values = make_data(n)
        host = RelationalHost(url, fx.plugins)
        host.start()
        try:
            db = host[fx.plugins[0].name]
            with db.engine.connect() as conn:
                fx.settings.set(conn, REL_SETTING, REL_STORED, commit=True)
                rows += measure(
                    get_contenders(fx, conn, f"{kind} get, connection", n),
                    keys,
                    values,
                    tmp,
                    s.repeat,
                )
                conn.rollback()
            with db.session() as session:
                rows += measure(
                    get_contenders(fx, session, f"{kind} get, session", n),
                    keys,
                    values,
                    tmp,
                    s.repeat,
                )
        finally:
            host.close()
        return rows
    finally:
        shutil.rmtree(root, ignore_errors=True)


def get_contenders(fx: RelFixture, db: Any, op: str, n: int) -> list[tuple[str, int, Contender]]:
    return [
        ("plugstore", n, settings_get_contender(fx.settings, db, op)),
        (CORE_SELECT, n, core_select_contender(fx.settings, db, op, built_once=False)),
        (CORE_BUILT_ONCE, n, core_select_contender(fx.settings, db, op, built_once=True)),
    ]


def drop_pg_schemas(names: Sequence[str]) -> None:
    """Drop the benchmark plugins' schemas from the PostgreSQL server."""
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP SCHEMA IF EXISTS "pl_{name}" CASCADE')


# ------------------------------------------------------------------------- scoped views

#: The scope the scopes workload uses: a member of a guild, with Discord-sized ids.
SCOPE_PATH: dict[str, int] = {"guild": 348_123_456_789_012_345, "member": 81_234_567_890_123_456}
SCOPE_LEVELS = tuple(SCOPE_PATH)
#: The default registered for every key in the defaults row: a dict, so each read decodes
#: it and merges the stored dict over it (the stored value lacks "level").
SCOPE_DEFAULT: Value = {"n": 0, "name": "", "tags": [], "level": 1}
SCOPE_VIEW = "plugstore scope"
SCOPE_PLAIN = "plugstore namespace"
SCOPE_DEFAULTS = "scope, defaults merged"
SCOPE_PER_OP = "ns.scope(...) per op"

#: Opens a store for one contender run: returns (the store, how to clean up and close it).
StoreOpener = Callable[[Path], tuple[plugstore.Store, Callable[[], None]]]


def scope_contender(kind: str, open_store: StoreOpener, how: str) -> Contender:
    """``m[k] = v`` for every key, then ``m[k]``, where ``m`` is the namespace itself
    (SCOPE_PLAIN), one scope made up front (SCOPE_VIEW, SCOPE_DEFAULTS) or a scope made
    for every op (SCOPE_PER_OP).  Ops are named "<kind> set" and "<kind> get"."""

    def run(d: Path, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:
        store, close = open_store(d)
        ns = store.namespace("bench")
        try:
            if how == SCOPE_DEFAULTS:
                ns.register_defaults({k: SCOPE_DEFAULT for k in keys}, levels=SCOPE_LEVELS)
            m: Any = ns if how == SCOPE_PLAIN else ns.scope(**SCOPE_PATH)

            def sets() -> None:
                for k, v in zip(keys, values, strict=True):
                    m[k] = v

            def gets() -> Any:
                for k in keys:
                    out = m[k]
                return out

            def sets_per_op() -> None:
                for k, v in zip(keys, values, strict=True):
                    ns.scope(**SCOPE_PATH)[k] = v

            def gets_per_op() -> Any:
                for k in keys:
                    out = ns.scope(**SCOPE_PATH)[k]
                return out

            expected = {**SCOPE_DEFAULT, **values[-1]} if how == SCOPE_DEFAULTS else values[-1]
            if how == SCOPE_PER_OP:
                times = set_get(sets_per_op, gets_per_op, expected)
            else:
                times = set_get(sets, gets, expected)
            if how != SCOPE_PLAIN and keys[-1] in ns:
                raise AssertionError("a scoped write landed on the plain key")
        finally:
            close()
        if how == SCOPE_DEFAULTS:
            del times["set"]  # writes are the scope row's; this row is about reads
        return {f"{kind} {op}": secs for op, secs in times.items()}

    return run


def sqlite_store(d: Path) -> tuple[plugstore.Store, Callable[[], None]]:
    store = open_plugstore_sqlite(d / "plugstore.db")
    return store, store.close


def redis_store(leftovers: list[int]) -> StoreOpener:
    """plugstore on Redis under a fresh key prefix; on close, ``drop_namespace("bench")``,
    then whatever is left under the prefix is counted into ``leftovers`` and deleted."""

    def open_store(d: Path) -> tuple[plugstore.Store, Callable[[], None]]:
        prefix = _redis_prefix(d)
        store = plugstore.open(f"{REDIS_URL}?prefix={prefix}")

        def close() -> None:
            try:
                store.drop_namespace("bench")
            finally:
                store.close()
                leftovers.append(redis_purge(prefix))

        return store, close

    return open_store


# ------------------------------------------------------------------------------ expiry

EXPIRY_TTL = "ns.set(k, v, ttl=3600)"
EXPIRY_PLAIN = "ns[k] = v"
EXPIRY_SECONDS = 3600


def expiry_contender(kind: str, open_store: StoreOpener, ttl: bool) -> Contender:
    """``ns.set(k, v, ttl=EXPIRY_SECONDS)`` (``ttl``) or ``ns[k] = v`` for every key, then
    ``ns[k]``: the keys read back carry a deadline in the first case and none in the
    second.  Ops are named "<kind> set" and "<kind> get"."""

    def run(d: Path, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:
        store, close = open_store(d)
        ns = store.namespace("bench")
        try:

            def sets_with_ttl() -> None:
                for k, v in zip(keys, values, strict=True):
                    ns.set(k, v, ttl=EXPIRY_SECONDS)

            def sets() -> None:
                for k, v in zip(keys, values, strict=True):
                    ns[k] = v

            def gets() -> Any:
                for k in keys:
                    out = ns[k]
                return out

            times = set_get(sets_with_ttl if ttl else sets, gets, values[-1])
            left = ns.ttl(keys[-1])  # the work was done: the deadline is there, or not
            if (left is not None) != ttl or (left is not None and not 0 < left <= 3600):
                raise AssertionError(f"{keys[-1]!r} has {left!r} seconds left")
        finally:
            close()
        return {f"{kind} {op}": secs for op, secs in times.items()}

    return run


def memory_store(d: Path) -> tuple[plugstore.Store, Callable[[], None]]:
    store = plugstore.open("memory://")
    return store, store.close


def table_store(base: str) -> StoreOpener:
    """plugstore on a SQL server, in a table of the run's own, dropped on close."""

    def open_store(d: Path) -> tuple[plugstore.Store, Callable[[], None]]:
        store = plugstore.open(f"{base}?table={_name(d)}")

        def close() -> None:
            try:
                store.backend.drop()  # type: ignore[attr-defined]
            finally:
                store.close()

        return store, close

    return open_store


# ------------------------------------------------------------------------- engine locks

LOCK_ENGINE = "ns.lock (engine lock)"
LOCK_IN_PROCESS = "threading.Lock (in-process)"
LOCK_KINDS = {
    LOCK_ENGINE: "with ns.lock(k): ns[k] = ns[k] + 1 (default timeout 10 s, lease 30 s)",
    LOCK_IN_PROCESS: "with a threading.Lock of the process: ns[k] = ns[k] + 1, as "
    "Red-DiscordBot's in-process Config locks did (across processes: no lock at all)",
}
#: Runs of each kind on each backend.  The DynamoDB emulator takes ~30 ms per locked
#: increment (three requests for the lock, two for the work), so it does one.
LOCK_RUNS = 3
LOCK_RUNS_DYNAMODB = 1


def lock_task(kind: str, url: str, n: int) -> tuple[float, float, int, list[str]]:
    """In a worker process: ``n`` get-then-set increments of one key after the barrier,
    under the engine lock or the process's own lock -> (start, end, ok, error names)."""
    store = plugstore.open(url)
    ns = store.namespace("bench")
    in_process = threading.Lock()
    ok, errors = 0, []
    _barrier.wait(timeout=120)
    t0 = time.perf_counter()
    for _ in range(n):
        try:
            with ns.lock(COUNTER) if kind == LOCK_ENGINE else in_process:
                ns[COUNTER] = ns[COUNTER] + 1
            ok += 1
        except Exception as exc:  # a lock that timed out (or was lost) is counted
            errors.append(type(exc).__name__)
    t1 = time.perf_counter()
    store.close()
    return t0, t1, ok, errors


@dataclass
class LockTarget:
    """One backend of the locks workload: its store URL and how to remove its data."""

    backend: str
    url: str
    cleanup: Callable[[], str]  # returns a note on what was left behind
    runs: int = LOCK_RUNS


def _drop_store(url: str) -> Callable[[], str]:
    """Check no lease entry was left, then drop the table (PostgreSQL, MariaDB, DynamoDB)."""

    def cleanup() -> str:
        with plugstore.open(url) as store:
            left = len(store.namespace(LOCKS_NAMESPACE))
            store.backend.drop()  # type: ignore[attr-defined]
        return f"{left} lease entries left, table dropped"

    return cleanup


def lock_targets(tmp: Path, tag: str, endpoint: str | None) -> tuple[list[LockTarget], list[str]]:
    """Every backend whose server (and driver) is here, and notes on those skipped."""
    targets: list[LockTarget] = []
    skipped: list[str] = []
    d = Path(tempfile.mkdtemp(dir=tmp))
    sqlite_url = f"sqlite:///{d / 'locks.db'}"

    def cleanup_sqlite() -> str:
        with plugstore.open(sqlite_url) as store:
            left = len(store.namespace(LOCKS_NAMESPACE))
        shutil.rmtree(d, ignore_errors=True)
        return f"{left} lease entries left, file removed"

    targets.append(LockTarget("sqlite", sqlite_url, cleanup_sqlite))
    table = f"bench_locks_{tag}"
    for backend, port, module, url in (
        ("postgresql", 5432, "psycopg", f"{PG_URL}?table={table}"),
        ("mysql", 3306, "pymysql", f"{MYSQL_URL}?table={table}"),
    ):
        problem = unavailable("127.0.0.1", port, module)
        if problem is None:
            targets.append(LockTarget(backend, url, _drop_store(url)))
        else:
            skipped.append(f"skipped on {backend}: server unavailable ({problem})")
    problem = unavailable("127.0.0.1", 6379, "redis")
    if problem is None:
        prefix = f"bench:{table}:"
        redis_url = f"{REDIS_URL}?prefix={prefix}"

        def cleanup_redis() -> str:
            with plugstore.open(redis_url) as store:
                store.drop_namespace("bench")
            return f"{redis_purge(prefix)} keys left under the prefix after drop_namespace"

        targets.append(LockTarget("redis", redis_url, cleanup_redis))
    else:
        skipped.append(f"skipped on redis: server unavailable ({problem})")
    if endpoint is not None:
        url = f"dynamodb://{table}?region=us-east-1&endpoint_url={endpoint}&create=true"
        targets.append(LockTarget("dynamodb", url, _drop_store(url), LOCK_RUNS_DYNAMODB))
    else:
        skipped.append("skipped on dynamodb: moto unavailable")
    return targets, skipped


def run_locks(targets: Sequence[LockTarget], procs: int, n: int) -> tuple[list[Row], list[str]]:
    """Every kind on every target, ``target.runs`` times, order alternating; timing notes."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(procs)
    rows: list[Row] = []
    notes: list[str] = []
    with ctx.Pool(procs, initializer=_init_race_worker, initargs=(barrier,)) as pool:

        def once(kind: str, url: str, k: int) -> tuple[float, int, list[str], int]:
            with plugstore.open(url) as store:
                store.namespace("bench")[COUNTER] = 0
            # chunksize=1 and the barrier: each worker takes exactly one task.
            out = pool.starmap(lock_task, [(kind, url, k)] * procs, chunksize=1)
            with plugstore.open(url) as store:
                final = int(store.namespace("bench")[COUNTER])
            wall = max(t1 for _, t1, _, _ in out) - min(t0 for t0, _, _, _ in out)
            return wall, sum(ok for _, _, ok, _ in out), [e for *_, es in out for e in es], final

        kinds = list(LOCK_KINDS)
        for target in targets:
            started = time.perf_counter()
            here = {kind: Row(kind, target.backend, n * procs) for kind in kinds}
            try:
                for kind in kinds:  # warm-up: the workers' imports and first connections
                    once(kind, target.url, 5)
                for r in range(target.runs):
                    for kind in kinds if r % 2 == 0 else kinds[::-1]:
                        wall, ok, errors, final = once(kind, target.url, n)
                        row = here[kind]
                        row.seconds.append(wall)
                        row.extra.setdefault("final", []).append(final)
                        # Every increment that did not raise must be in the final value.
                        row.extra.setdefault("lost", []).append(ok - final)
                        row.extra.setdefault("errors", []).append(len(errors))
                        kinds_seen = set(row.extra.get("error types", [])) | set(errors)
                        row.extra["error types"] = sorted(kinds_seen)
            finally:
                left = target.cleanup()
            took = time.perf_counter() - started
            rows += here.values()
            notes.append(
                f"{target.backend}: {took:.1f}s in all ({target.runs} "
                f"run{'s' if target.runs > 1 else ''} of each kind, warm-up and clean-up); {left}"
            )
    return rows, notes


# ----------------------------------------------------------------------------- workloads


RAW_WITHOUT_ROWID_NOTE = (
    "info: 'raw sqlite3 WITHOUT ROWID' is the same with a clustered key, as plugstore's "
    "table: one B-tree write per row instead of table + index (no bar)"
)


def w_sqlite(s: Settings, tmp: Path) -> Result:
    keys, values = make_data(s.n)
    contenders: list[tuple[str, int, Contender]] = [
        ("plugstore sqlite", s.n, plugstore_sqlite),
        ("raw sqlite3", s.n, raw_sqlite),
        ("raw sqlite3 WITHOUT ROWID", s.n, functools.partial(raw_sqlite, without_rowid=True)),
    ]
    res = Result(
        "sqlite",
        "1. sqlite backend per-op set/get vs raw sqlite3 (same pragmas, autocommit)",
        "plugstore sqlite",
        measure(contenders, keys, values, tmp, s.repeat),
    )
    res.ratio_bar("raw sqlite3", "set", 0.7)
    res.ratio_bar("raw sqlite3", "get", 0.7)
    res.notes += [
        "raw: table (key TEXT PRIMARY KEY, value BLOB), WAL, synchronous=NORMAL, "
        "isolation_level=None, json.dumps(v).encode() / json.loads in the loop",
        RAW_WITHOUT_ROWID_NOTE,
    ]
    return res


def w_batch(s: Settings, tmp: Path) -> Result:
    total = 10 * s.n
    keys, values = make_data(total)
    ps, raw, raw_wr = make_batch_contenders(s.batch)
    contenders: list[tuple[str, int, Contender]] = [
        ("plugstore sqlite", total, ps),
        ("raw sqlite3", total, raw),
        ("raw sqlite3 WITHOUT ROWID", total, raw_wr),
    ]
    res = Result(
        "batch",
        f"2. sqlite set_many (batches of {s.batch}) vs raw executemany in one transaction",
        "plugstore sqlite",
        measure(contenders, keys, values, tmp, s.repeat),
    )
    res.ratio_bar("raw sqlite3", "set_many", 0.7)
    res.notes += ["ops/s counts items written, not batches", RAW_WITHOUT_ROWID_NOTE]
    return res


def w_peers(s: Settings, tmp: Path) -> Result:
    keys, values = make_data(s.n)
    slow = max(s.n // 5, 20)
    lamson = max(s.n // 50, 20)
    contenders: list[tuple[str, int, Contender]] = [
        ("plugstore sqlite", s.n, plugstore_sqlite),
        ("diskcache.Cache", s.n, mapping_contender(open_diskcache)),
        ("sqlitedict autocommit", slow, mapping_contender(open_sqlitedict)),
        ("shelve kept open", s.n, mapping_contender(open_shelve)),
        ("shelve reopened per call", lamson, mapping_contender(open_reopening_shelf)),
    ]
    res = Result(
        "peers",
        "3. sqlite backend set/get vs diskcache, sqlitedict, shelve",
        "plugstore sqlite",
        measure(contenders, keys, values, tmp, s.repeat),
    )
    res.ratio_bar("diskcache.Cache", "set", 1.0)
    res.ratio_bar("sqlitedict autocommit", "set", 3.0)
    res.ratio_bar("sqlitedict autocommit", "get", 3.0)
    res.notes += [
        "peers store the dict itself (their own pickle encoding); plugstore uses its json codec",
        f"shelve uses dbm backend {dbm_backend()!r} on this machine",
        "'shelve reopened per call' is Lamson's documented ShelveStorage pattern "
        "(shelve.open + close on every get/set under a threading.RLock); "
        f"it slows down as the shelf grows, so it runs {lamson} ops",
    ]
    return res


def w_memory(s: Settings, tmp: Path) -> Result:
    n = 4 * s.n
    keys, values = make_data(n)
    contenders: list[tuple[str, int, Contender]] = [
        ("plugstore memory (json)", n, make_memory_contender("json")),
        ("plugstore memory (pickle)", n, make_memory_contender("pickle")),
        ("dict + pickle", n, dict_pickle),
    ]
    res = Result(
        "memory",
        "4. memory backend set+get round trips vs dict + pickle",
        "plugstore memory (json)",
        measure(contenders, keys, values, tmp, s.repeat),
    )
    res.ratio_bar("dict + pickle", "set+get", 0.5)
    r = paired_ratio(
        res.row("plugstore memory (pickle)", "set+get"), res.row("dict + pickle", "set+get")
    )
    res.notes += [
        "one op = ns[k] = v then ns[k]  vs  d[k] = pickle.dumps(v) then pickle.loads(d[k])",
        f"info: plugstore memory with codec='pickle' is {r:.2f}x dict + pickle",
    ]
    return res


def w_race(s: Settings, tmp: Path) -> Result:
    per_proc = {kind: s.race_n for kind in RACE_KINDS}
    per_proc["sqlitedict naive"] = max(s.race_n // 10, 10)  # slow: autocommit waits per write
    rows, lost = run_race(tmp, s.procs, per_proc, s.repeat)
    res = Result(
        "race",
        f"5. {s.procs}-process incr race on one key (spawned processes, busy timeout {TIMEOUT:g}s)",
        "plugstore incr",
        rows,
    )
    res.ratio_bar("raw sqlite3 upsert", "incr", 0.7)
    worst = max(lost["plugstore incr"])
    res.bars.append(
        Bar("plugstore incr loses 0 updates (every repeat)", f"lost {worst}", worst == 0)
    )
    res.notes += [
        f"{kind}: {how}; {s.procs} x {per_proc[kind]} increments"
        for kind, how in RACE_KINDS.items()
    ]
    res.notes.append("lost = successful increments - final value; errors = increments that raised")
    return res


def w_relational(s: Settings, tmp: Path) -> Result:
    key, subject = "relational", "plugstore"
    title = (
        f"10. relational plugins: host start-up ({REL_PLUGINS} plugins at head) vs Peek's "
        "engine + alembic upgrade per plugin; settings.get vs a Core select"
    )
    try:
        import plugstore.relational  # noqa: F401 - needs SQLAlchemy and Alembic
    except ImportError as exc:
        return Result(key, title, subject, [], notes=[f"skipped: plugstore.relational ({exc})"])
    tag = uuid.uuid4().hex[:6]  # unique schema names: pl_bench_<tag>_NN, dropped at the end
    names = [f"bench_{tag}_{i:02d}" for i in range(REL_PLUGINS)]
    rows = relational_rows(s, tmp, "sqlite", names)
    notes: list[str] = []
    problem = unavailable("127.0.0.1", 5432, "psycopg")
    if problem is None:
        try:
            rows += relational_rows(s, tmp, "postgresql", names)
        finally:
            drop_pg_schemas(names)
        notes.append(f"postgresql: schemas pl_{names[0]} .. pl_{names[-1]} dropped at the end")
    else:
        notes.append(f"skipped on postgresql: server unavailable ({problem})")
    res = Result(key, title, subject, rows, notes=notes)
    kinds = ["sqlite"] + (["postgresql"] if problem is None else [])
    for kind in kinds:
        res.ratio_bar(PEEK_LOOP, f"{kind} start-up", 3.0)
    for kind in kinds:
        res.ratio_bar(CORE_SELECT, f"{kind} get, connection", 0.7)
    session = ", ".join(
        f"{kind} {res.ratio(CORE_SELECT, f'{kind} get, session'):.2f}x" for kind in kinds
    )
    res.notes += [
        f"start-up: ops = plugins brought up, {REL_PLUGINS} per start-up, each at its head "
        "(2 revisions: a table and the settings table, then a column); plugstore: "
        f"RelationalHost(url, {REL_PLUGINS} plugins).start() + close(), a fresh host each time",
        f"{PEEK_LOOP}, per plugin: create_engine(url) (SQLite: ATTACH of the plugin's file on "
        "connect), Config(its alembic.ini), command.upgrade(cfg, 'head') with an env.py "
        "after Peek's AlembicEnvBase (own NullPool engine, configure(version_table_schema="
        "schema, include_schemas=True), migrations in a transaction); engines disposed at the "
        "end; Peek's own has_table check and CREATE SCHEMA IF NOT EXISTS are left out",
        "revision files and env.py are byte-compiled before timing, as pip does on install",
        f"get: settings.get(db, '{REL_SETTING}') of a stored value vs db.execute(select(t.c.value)"
        f".where(t.c.name == '{REL_SETTING}')).scalar_one() on the same connection (or the "
        "same host[name].session()), same row; gets run inside one transaction",
        f"info: through a Session, settings.get is {session} a Core select through the same "
        f"session (no bar); '{CORE_BUILT_ONCE}' prepares the statement once with a bind "
        "parameter (no bar)",
    ]
    return res


def w_scopes(s: Settings, tmp: Path) -> Result:
    key = "scopes"
    title = "11. scoped views: scope[k] = v / scope[k] vs ns[k] = v / ns[k] (sqlite, redis)"
    leftovers: list[int] = []
    kinds: list[tuple[str, int, StoreOpener]] = [("sqlite", s.n, sqlite_store)]
    notes: list[str] = []
    problem = unavailable("127.0.0.1", 6379, "redis")
    if problem is None:
        # A round trip per op: half the ops, as the redis workload.
        kinds.append(("redis", max(1, s.n // 2), redis_store(leftovers)))
    else:
        notes.append(f"skipped on redis: server unavailable ({problem})")
    rows: list[Row] = []
    for kind, n, opener in kinds:
        keys, values = make_data(n)
        contenders: list[tuple[str, int, Contender]] = [
            (SCOPE_VIEW, n, scope_contender(kind, opener, SCOPE_VIEW)),
            (SCOPE_PLAIN, n, scope_contender(kind, opener, SCOPE_PLAIN)),
            (SCOPE_DEFAULTS, n, scope_contender(kind, opener, SCOPE_DEFAULTS)),
            (SCOPE_PER_OP, n, scope_contender(kind, opener, SCOPE_PER_OP)),
        ]
        rows += measure(contenders, keys, values, tmp, s.repeat)
    res = Result(key, title, SCOPE_VIEW, rows)
    for kind, _, _ in kinds:
        res.ratio_bar(SCOPE_PLAIN, f"{kind} set", 0.9)
        res.ratio_bar(SCOPE_PLAIN, f"{kind} get", 0.9)

    def vs_plain(contender: str, op: str) -> str:
        return f"{paired_ratio(res.row(contender, op), res.row(SCOPE_PLAIN, op)):.2f}x"

    path = ", ".join(f"{level}={value}" for level, value in SCOPE_PATH.items())
    res.notes += [
        f"scope: m = ns.scope({path}) made once, then m[k] = v for every key, then m[k]; "
        "namespace: ns[k] = v, then ns[k]; same keys and values, a fresh store each run",
        "a scoped key is stored as one entry of the namespace: the encoded path "
        f"({len(own_prefix(tuple(SCOPE_PATH.items())))} characters here) + the key",
        f"'{SCOPE_DEFAULTS}': the scope's gets after ns.register_defaults() of a dict default "
        f"for every key at levels {SCOPE_LEVELS}: each read decodes the default and merges "
        "the stored dict over it (no bar)",
        f"'{SCOPE_PER_OP}': ns.scope({path})[k] made for every op, as a command handler "
        "that looks up its member's scope does (no bar)",
        *notes,
    ]
    for kind, _, _ in kinds:
        res.notes.append(
            f"info: {kind}, against the namespace: '{SCOPE_DEFAULTS}' get "
            f"{vs_plain(SCOPE_DEFAULTS, f'{kind} get')}; '{SCOPE_PER_OP}' get "
            f"{vs_plain(SCOPE_PER_OP, f'{kind} get')}, set {vs_plain(SCOPE_PER_OP, f'{kind} set')}"
        )
    if leftovers:
        res.notes.append(
            f"redis: {sum(leftovers)} keys left under the runs' prefixes after "
            "drop_namespace('bench') (then deleted)"
        )
    return res


def w_locks(s: Settings, tmp: Path) -> Result:
    key, subject = "locks", LOCK_ENGINE
    title = (
        f"12. locked get-then-set increments, {s.procs} processes x {s.lock_n} on one key: "
        "ns.lock vs an in-process threading.Lock"
    )
    try:
        server, endpoint = _local_dynamodb()
    except ImportError:
        server, endpoint = None, None
    tag = uuid.uuid4().hex[:8]
    try:
        targets, skipped = lock_targets(tmp, tag, endpoint)
        rows, timings = run_locks(targets, s.procs, s.lock_n)
    finally:
        if server is not None:
            server.shutdown()
    res = Result(key, title, subject, rows)
    expected = s.procs * s.lock_n
    for target in targets:
        row = res.row(LOCK_ENGINE, target.backend)
        lost, finals = row.extra["lost"], row.extra["final"]
        exact = max(lost) == 0 and min(finals) == expected
        measured = f"lost {max(lost)}"
        if not exact:
            measured += f", final {span(finals)}/{expected}"
        res.bars.append(
            Bar(f"ns.lock loses 0 updates, every run ({target.backend})", measured, exact)
        )
    res.notes += [f"{kind}: {how}" for kind, how in LOCK_KINDS.items()]
    res.notes += [
        f"expected = {s.procs} x {s.lock_n}; lost = increments that did not raise - final "
        "value; errors = increments that raised (a lock timeout); wall s = first start to "
        f"last finish; {LOCK_RUNS} runs of each kind per backend, "
        f"{LOCK_RUNS_DYNAMODB} on dynamodb (the emulator takes ~30 ms per locked increment)",
        "engines: postgresql pg_advisory_lock, mysql GET_LOCK, redis SET NX PX; sqlite and "
        "dynamodb a lease entry taken by compare-and-set",
        *skipped,
    ]
    for target in targets:
        row = res.row(LOCK_IN_PROCESS, target.backend)
        res.notes.append(
            f"info: {LOCK_IN_PROCESS} on {target.backend}: final {span(row.extra['final'])} "
            f"of {expected}, lost {span(row.extra['lost'])} per run (no bar)"
        )
    for row in res.rows:
        if row.extra.get("error types"):
            res.notes.append(
                f"errors: {row.contender} on {row.op}: {', '.join(row.extra['error types'])}"
            )
    res.notes += [f"time: {t}" for t in timings]
    return res


# ------------------------------------------------------------ a lock holder with waiters

WAITED = "holder, 9 waiters"
ALONE = "holder alone"
LOCK_WAITERS = 9
#: Writes the holder makes while it holds the lock: enough for a phase to outlast a
#: scheduler's hiccup, few enough for the slower engines (the DynamoDB emulator).
HOLDER_WRITES = 1000
HOLDER_WRITES_SLOW = {"postgresql": 300, "mysql": 300, "dynamodb": 50}


def holder_writes(ns: plugstore.Namespace, writes: int, waiters: int) -> tuple[float, list[str]]:
    """Take ``ns.lock``, let ``waiters`` threads of this process queue for it, then time
    ``writes`` writes of the holder -> (seconds, error names of holder and waiters).

    The waiters use the default timeout; each takes the lock in turn after the holder
    releases it and writes once.  A holder's write that fails ends its loop (the time
    until then is kept, the error named)."""
    errors: list[str] = []
    lock = ns.lock("turn").acquire()
    started = threading.Barrier(waiters + 1)

    def wait() -> None:
        started.wait()
        try:
            with ns.lock("turn"):
                ns["after"] = 1
        except Exception as exc:  # a waiter that timed out (or starved) is counted
            errors.append(type(exc).__name__)

    threads = [threading.Thread(target=wait) for _ in range(waiters)]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(0.2)  # the waiters are waiting for the lock now (alone: the same pause)

    def loop() -> None:
        try:
            for i in range(writes):
                ns["v"] = i
        except Exception as exc:  # e.g. no pooled connection left for the holder
            errors.append(f"holder: {type(exc).__name__}")

    secs, _ = timed(loop)
    lock.release()
    for t in threads:
        t.join()
    return secs, errors


def w_lockwait(s: Settings, tmp: Path) -> Result:
    key = "lockwait"
    title = (
        f"15. a lock holder's writes while {LOCK_WAITERS} threads of its process wait for "
        "its lock, vs while none waits (default pool sizes)"
    )
    try:
        server, endpoint = _local_dynamodb()
    except ImportError:
        server, endpoint = None, None
    tag = uuid.uuid4().hex[:8]
    d = Path(tempfile.mkdtemp(dir=tmp))
    rows: list[Row] = []
    notes: list[str] = []
    backends: list[str] = []
    try:
        targets, skipped = lock_targets(tmp, tag, endpoint)
        plain = [("memory", "memory://"), ("shelf", f"shelf:///{d / 'shelf'}")]
        urls = [*plain, *((t.backend, t.url) for t in targets)]
        for backend, url in urls:
            writes = min(s.n, HOLDER_WRITES_SLOW.get(backend, HOLDER_WRITES))
            here = {kind: Row(kind, backend, writes) for kind in (WAITED, ALONE)}
            errors: dict[str, list[str]] = {WAITED: [], ALONE: []}
            with plugstore.open(url) as store:
                ns = store.namespace("bench")
                holder_writes(ns, 10, LOCK_WAITERS)  # warm-up: connections, lease entries
                for r in range(s.repeat):
                    kinds = [WAITED, ALONE] if r % 2 == 0 else [ALONE, WAITED]
                    for kind in kinds:
                        waiters = LOCK_WAITERS if kind == WAITED else 0
                        secs, errs = holder_writes(ns, writes, waiters)
                        here[kind].seconds.append(secs)
                        errors[kind] += errs
            for kind, row in here.items():
                row.extra["errors"] = errors[kind]
            rows += here.values()
            backends.append(backend)
        for target in targets:
            notes.append(f"cleanup {target.backend}: {target.cleanup()}")
    finally:
        if server is not None:
            server.shutdown()
        shutil.rmtree(d, ignore_errors=True)
    res = Result(key, title, WAITED, rows)
    for backend in backends:
        res.ratio_bar(ALONE, backend, 0.8)
        errs = res.row(WAITED, backend).extra["errors"]
        measured = f"{len(errs)} errors"
        res.bars.append(Bar(f"no waiter or holder fails ({backend})", measured, not errs))
        if errs:
            notes.append(f"errors on {backend}: {', '.join(sorted(set(errs)))}")
    res.notes += [
        f"{WAITED}: the holder's writes of one key (ops) while {LOCK_WAITERS} threads wait "
        "for its lock (default timeout, default pool sizes); "
        f"{ALONE}: the same writes with no waiter; ops/s = the holder's writes per second",
        "waiters queue at the process's gate; on postgresql and mysql the one at its head "
        "waits in the engine on a lock session of its own, never a statement connection",
        *skipped,
        *notes,
    ]
    return res


def w_expiry(s: Settings, tmp: Path) -> Result:
    key = "expiry"
    title = f"13. expiry: {EXPIRY_TTL} / ns[k] of those keys vs {EXPIRY_PLAIN} / ns[k]"
    leftovers: list[int] = []
    kinds: list[tuple[str, int, StoreOpener]] = [
        ("sqlite", s.n, sqlite_store),
        ("memory", s.n, memory_store),
    ]
    notes: list[str] = []
    for kind, port, module, opener, n in (
        # a round trip per op: half the ops on Redis, a quarter on the SQL servers
        ("redis", 6379, "redis", redis_store(leftovers), max(1, s.n // 2)),
        ("postgresql", 5432, "psycopg", table_store(PG_URL), max(1, s.n // 4)),
        ("mysql", 3306, "pymysql", table_store(MYSQL_URL), max(1, s.n // 4)),
    ):
        problem = unavailable("127.0.0.1", port, module)
        if problem is None:
            kinds.append((kind, n, opener))
        else:
            notes.append(f"skipped on {kind}: server unavailable ({problem})")
    rows: list[Row] = []
    for kind, n, opener in kinds:
        keys, values = make_data(n)
        contenders: list[tuple[str, int, Contender]] = [
            (EXPIRY_TTL, n, expiry_contender(kind, opener, True)),
            (EXPIRY_PLAIN, n, expiry_contender(kind, opener, False)),
        ]
        rows += measure(contenders, keys, values, tmp, s.repeat)
    res = Result(key, title, EXPIRY_TTL, rows)
    for kind, _, _ in kinds:
        if kind != "memory":
            res.ratio_bar(EXPIRY_PLAIN, f"{kind} set", 0.9)
            res.ratio_bar(EXPIRY_PLAIN, f"{kind} get", 0.9)
    memory = []
    for op in ("set", "get"):
        ttl_row, plain_row = (
            res.row(EXPIRY_TTL, f"memory {op}"),
            res.row(EXPIRY_PLAIN, f"memory {op}"),
        )
        extra_us = 1e6 / ttl_row.median - 1e6 / plain_row.median
        memory.append(f"{op} {paired_ratio(ttl_row, plain_row):.2f}x, {extra_us:+.2f} us")
    res.notes += [
        f"info: memory (no bar): {', '.join(memory)} per op; a memory op takes 1-2 us, so "
        "the deadline check and ns.set()'s keyword call are a tenth of it by themselves",
        f"'{EXPIRY_TTL}': every key written with a deadline an hour away, then read back "
        f"with ns[k]; '{EXPIRY_PLAIN}': the same keys and values without one; a fresh store "
        "each run (a SQLite file, a memory store, a Redis key prefix, a SQL server table)",
        "gets read a key with a deadline (checked against the store clock, or by Redis "
        "itself) against a key without one; the harness checks the last key's ttl()",
        *notes,
    ]
    if leftovers:
        res.notes.append(
            f"redis: {sum(leftovers)} keys left under the runs' prefixes after "
            "drop_namespace('bench') (then deleted)"
        )
    return res


# ------------------------------------------------------------------- subtree reads

TREE_ONE_CALL = "scope().tree('guild', 'member')"
TREE_LOOP = "ids('guild') + children('member') per guild"
TREE_RAW = "bucket.items(prefix), raw"
TREE_DECODED = "bucket.items(prefix), values decoded"
#: Members per guild and keys per member of the subtree read (n entries in all).
TREE_MEMBERS, TREE_KEYS = 50, 4
#: Reads of the whole subtree per timed run (the rate is entries read per second).
TREE_READS = 5


def tree_contender(kind: str, open_store: StoreOpener, how: str) -> Contender:
    """Every member of every guild, as ``{guild: {member: {key: value}}}`` with the
    member level's defaults filled in: ``tree()`` (one prefix read), the ``ids()`` +
    ``children()`` loop a Red-style ``all_members()`` needed before it, or the raw
    prefix scan beneath both (bytes, nothing parsed or decoded).  Op "<kind> read"."""

    def run(d: Path, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:
        store, close = open_store(d)
        ns = store.namespace("bench")
        try:
            ns.register_defaults({"xp": 0, "badges": []}, levels=("guild", "member"))
            per_guild = TREE_MEMBERS * TREE_KEYS
            with ns.batch() as batch:  # not timed: the data, written once
                for i, value in enumerate(values):
                    guild, rest = divmod(i, per_guild)
                    member, key = divmod(rest, TREE_KEYS)
                    batch.set(ns.scope(guild=guild, member=member), f"k{key}", value)
            top = ns.scope()

            def one_call() -> Any:
                return top.tree("guild", "member")

            def loop() -> Any:
                return {g: ns.scope(guild=g).children("member") for g in top.ids("guild")}

            prefix = level_prefix((), "guild")

            def raw() -> Any:
                return list(ns._bucket.items(prefix))

            decode = store.codec.decode

            def decoded() -> Any:
                return [(k, decode(v)) for k, v in ns._bucket.items(prefix)]

            read = {
                TREE_ONE_CALL: one_call,
                TREE_LOOP: loop,
                TREE_RAW: raw,
                TREE_DECODED: decoded,
            }[how]
            secs, out = timed(lambda: [read() for _ in range(TREE_READS)][-1])
            if how in (TREE_RAW, TREE_DECODED):
                found = len(out)
            else:
                found = sum(len(m) - 2 for g in out.values() for m in g.values())  # - defaults
            if found != len(values):
                raise AssertionError(f"{how} read {found} entries, expected {len(values)}")
        finally:
            close()
        return {f"{kind} read": secs / TREE_READS}

    return run


def w_tree(s: Settings, tmp: Path) -> Result:
    key = "tree"
    title = (
        f"14. subtree read: every member of every guild ({TREE_MEMBERS} members x "
        f"{TREE_KEYS} keys per guild): tree() vs the ids() + children() loop vs a raw scan"
    )
    leftovers: list[int] = []
    kinds: list[tuple[str, int, StoreOpener]] = [("sqlite", s.n, sqlite_store)]
    notes: list[str] = []
    for kind, port, module, opener in (
        ("postgresql", 5432, "psycopg", table_store(PG_URL)),
        ("redis", 6379, "redis", redis_store(leftovers)),
    ):
        problem = unavailable("127.0.0.1", port, module)
        if problem is None:
            kinds.append((kind, s.n, opener))
        else:
            notes.append(f"skipped on {kind}: server unavailable ({problem})")
    rows: list[Row] = []
    for kind, n, opener in kinds:
        keys, values = make_data(n)
        contenders: list[tuple[str, int, Contender]] = [
            (how, n, tree_contender(kind, opener, how))
            for how in (TREE_ONE_CALL, TREE_LOOP, TREE_RAW, TREE_DECODED)
        ]
        rows += measure(contenders, keys, values, tmp, s.repeat)
    res = Result(key, title, TREE_ONE_CALL, rows)
    for kind, _, _ in kinds:
        res.ratio_bar(TREE_LOOP, f"{kind} read", 1.0)
    guilds = -(-s.n // (TREE_MEMBERS * TREE_KEYS))
    res.notes += [
        f"ops = entries read: {s.n} entries in {guilds} guilds, each member holding "
        f"{TREE_KEYS} keys and reading 2 registered defaults; each run reads the whole "
        f"subtree {TREE_READS} times (a fresh store per run, written by one ns.batch())",
        f"'{TREE_LOOP}': {{g: ns.scope(guild=g).children('member') for g in "
        "ns.scope().ids('guild')}, the same nested dict: a key listing of the whole subtree "
        "plus one prefix read per guild",
        f"'{TREE_RAW}': the one prefix read beneath tree(), its (key, bytes) pairs listed "
        "as the bucket returns them: no parsing, no decoding, no defaults (no bar)",
        f"'{TREE_DECODED}': the same read with every value decoded by the store's codec, "
        "flat: what tree() adds beyond it is parsing paths, nesting and defaults (no bar)",
        *notes,
    ]
    if leftovers:
        res.notes.append(
            f"redis: {sum(leftovers)} keys left under the runs' prefixes after "
            "drop_namespace('bench') (then deleted)"
        )
    return res


def plugstore_incr(d: Path, keys: Sequence[str], values: Sequence[Value]) -> dict[str, float]:
    """Single-process ``ns.incr`` on one key (for --profile; the race itself is above)."""
    store = open_plugstore_sqlite(d / "plugstore.db")
    ns = store.namespace("bench")
    try:
        secs, last = timed(lambda: [ns.incr(COUNTER) for _ in keys][-1])
        if last != len(keys):
            raise AssertionError("incr lost an update in a single process")
        return {"incr": secs}
    finally:
        store.close()


def plugstore_locked_incr(
    d: Path, keys: Sequence[str], values: Sequence[Value]
) -> dict[str, float]:
    """Single-process locked get-then-set on SQLite (for --profile; the race is above)."""
    store = open_plugstore_sqlite(d / "plugstore.db")
    ns = store.namespace("bench")
    ns[COUNTER] = 0

    def incrs() -> int:
        for _ in keys:
            with ns.lock(COUNTER):
                ns[COUNTER] = ns[COUNTER] + 1
        return int(ns[COUNTER])

    try:
        secs, last = timed(incrs)
        if last != len(keys):
            raise AssertionError("a locked increment was lost in a single process")
        return {"incr": secs}
    finally:
        store.close()


def profile(key: str, s: Settings, tmp: Path) -> str:
    """cProfile plugstore's side of workload ``key`` once; return the top functions."""
    import cProfile

    if key == "relational":
        return profile_relational(s, tmp)
    n = {"batch": 10 * s.n, "memory": 4 * s.n}.get(key, s.n)
    fn: Contender = {
        "sqlite": plugstore_sqlite,
        "peers": plugstore_sqlite,
        "batch": make_batch_contenders(s.batch)[0],
        "memory": make_memory_contender("json"),
        "race": plugstore_incr,
        "scopes": scope_contender("sqlite", sqlite_store, SCOPE_VIEW),
        "locks": plugstore_locked_incr,
        "expiry": expiry_contender("sqlite", sqlite_store, True),
    }[key]
    keys, values = make_data(n)
    d = Path(tempfile.mkdtemp(dir=tmp))
    prof = cProfile.Profile()
    prof.runcall(fn, d, keys, values)
    return top_functions(prof, "tottime", f"'{key}' ({n} ops, sorted by own time)")


def top_functions(prof: Any, sort: str, what: str, lines: int = 14) -> str:
    import io
    import pstats

    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats(sort).print_stats(lines)
    body = out.getvalue().strip().splitlines()
    start = next(i for i, line in enumerate(body) if "ncalls" in line)
    return "\n".join([f"== profile of plugstore in {what}", *body[start:]])


def profile_relational(s: Settings, tmp: Path) -> str:
    """cProfile SQLite host start-ups at head (the relational workload's slowest bar)."""
    import cProfile

    tag = uuid.uuid4().hex[:6]
    names = [f"bench_{tag}_{i:02d}" for i in range(REL_PLUGINS)]
    root = Path(tempfile.mkdtemp(dir=tmp))
    url = f"sqlite:///{root / 'store.sqlite3'}"
    fx = rel_fixture("sqlite", url, url, root, names)
    starts = 5
    fn = host_start_contender(fx, "start-up")
    keys, values = make_data(starts * REL_PLUGINS)
    fn(root, keys[:REL_PLUGINS], values)  # warm-up: imports, first connections
    prof = cProfile.Profile()
    prof.runcall(fn, root, keys, values)
    what = (
        f"'relational' ({starts} start-ups at head of {REL_PLUGINS} plugins on SQLite, "
        "sorted by cumulative time)"
    )
    return top_functions(prof, "cumulative", what, 30)


RUNNERS: dict[str, Callable[[Settings, Path], Result]] = {
    "sqlite": w_sqlite,
    "batch": w_batch,
    "peers": w_peers,
    "memory": w_memory,
    "race": w_race,
    "postgresql": w_postgresql,
    "mysql": w_mysql,
    "redis": w_redis,
    "dynamodb": w_dynamodb,
    "relational": w_relational,
    "scopes": w_scopes,
    "locks": w_locks,
    "expiry": w_expiry,
    "tree": w_tree,
    "lockwait": w_lockwait,
}


def dbm_backend() -> str:
    with tempfile.TemporaryDirectory() as d:
        with shelve.open(os.path.join(d, "probe")) as db:
            db["x"] = 1
        return dbm.whichdb(os.path.join(d, "probe")) or "?"


# ------------------------------------------------------------------------------- report


def report(res: Result) -> str:
    """The workload as a text table, its notes and its bars."""
    locks = res.key == "locks"
    race = res.key == "race" or locks
    extra_cols: tuple[str, ...] = ("final", "lost per run", "lost total", "errors") if race else ()
    if locks:
        extra_cols += ("wall s (median)",)
    ratio_head = "lock/this" if locks else "plugstore/this"
    first = ("contender", "backend", "expected") if locks else ("contender", "op", "ops")
    head = (*first, "ops/s (median)", "min .. max", ratio_head)
    table: list[tuple[str, ...]] = [head + extra_cols]
    for row in res.rows:
        ratio = "" if row.contender == res.subject else f"{res.ratio(row.contender, row.op):.2f}x"
        rates = row.rates
        line: tuple[str, ...] = (
            row.contender,
            row.op,
            str(row.n),
            fmt_rate(row.median),
            f"{fmt_rate(min(rates))} .. {fmt_rate(max(rates))}",
            ratio,
        )
        if race:  # exact counts; every run's numbers are in --json
            lost = row.extra["lost"]
            line += (span(row.extra["final"]), span(lost), str(sum(lost)))
            line += (str(sum(row.extra["errors"])),)
            if locks:
                line += (f"{statistics.median(row.seconds):.2f}",)
        table.append(line)
    out = [f"== {res.title}", *format_table(table)]
    out.append(
        f"  * {ratio_head} = median over repeats of {res.subject} ops/s / this row's "
        "ops/s in the same repeat"
    )
    out += [f"  * {note}" for note in res.notes]
    out += [bar_line(bar) for bar in res.bars]
    return "\n".join(out)


def header(s: Settings) -> str:
    return "\n".join(
        [
            "plugstore benchmarks",
            f"  python {platform.python_version()} ({platform.python_implementation()}), "
            f"sqlite {sqlite3.sqlite_version}, plugstore {plugstore.__version__}, "
            f"diskcache {diskcache.__version__}",
            f"  {platform.platform()}, cpu count {os.cpu_count()}",
            f"  n={s.n} batch={s.batch} race={s.procs}x{s.race_n} "
            f"locks={s.procs}x{s.lock_n} repeat={s.repeat} "
            "(ops/s are medians; ratios are medians of same-repeat pairs)",
        ]
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes and 3 repeats")
    p.add_argument("--n", type=int, help="ops per contender for per-op workloads (4000)")
    p.add_argument("--repeat", type=int, help="repeats per contender, >= 3 (11; --quick: 3)")
    p.add_argument("--batch", type=int, default=1000, help="set_many batch size (1000)")
    p.add_argument("--race-n", type=int, help="incr per process in the race (2500)")
    p.add_argument("--procs", type=int, default=4, help="processes in the race and locks (4)")
    p.add_argument(
        "--lock-n", type=int, help="locked get-then-set increments per process (500; --quick: 100)"
    )
    p.add_argument(
        "--only", default=",".join(WORKLOADS), help=f"comma-separated subset of {WORKLOADS}"
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="also save the results as JSON")
    p.add_argument("--check", action="store_true", help="exit with status 1 if a bar fails")
    p.add_argument(
        "--profile",
        action="store_true",
        help="instead of timing, cProfile plugstore's side of each chosen workload",
    )
    args = p.parse_args(argv)
    if args.n is None:
        args.n = 1000 if args.quick else 4000
    if args.repeat is None:
        args.repeat = 3 if args.quick else 11
    if args.race_n is None:
        args.race_n = 300 if args.quick else 2500
    if args.lock_n is None:
        args.lock_n = 100 if args.quick else 500
    only = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = sorted(set(only) - set(WORKLOADS))
    if unknown:
        p.error(f"unknown workload(s) {unknown}; choose from {', '.join(WORKLOADS)}")
    args.only = [w for w in WORKLOADS if w in only]
    if args.repeat < 3:
        p.error("--repeat must be >= 3 (results are medians)")
    if min(args.n, args.batch, args.race_n, args.procs, args.lock_n) < 1:
        p.error("sizes must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    s = Settings(args.n, args.repeat, args.batch, args.race_n, args.procs, args.lock_n)
    print(header(s), flush=True)
    started = time.perf_counter()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="plugstore-bench-") as tmp:
        for key in args.only:
            if args.profile:
                print("\n" + profile(key, s, Path(tmp)), flush=True)
                continue
            res = RUNNERS[key](s, Path(tmp))
            results.append(res)
            print("\n" + report(res), flush=True)
    if args.profile:
        return 0
    lines, failed = bar_summary(results, time.perf_counter() - started)
    print("\n" + "\n".join(lines))
    if args.json:
        write_json(args.json, s, results)
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    unwind_on_sigterm()
    sys.exit(main())
