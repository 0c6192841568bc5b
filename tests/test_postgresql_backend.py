"""PostgreSQL: the conformance kit and server-specific behaviour, against the real server.

Every test run works in a schema of its own (dropped at the end) and every test in a
table of its own, so parallel or repeated runs never collide.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import plugstore
from plugstore.errors import BackendUnavailableError, ConfigurationError, PoolExhaustedError
from plugstore.testing import StoreConformance
from plugstore.testing._threads import race_threads
from servers import (
    assert_an_exhausted_lock_pool_says_so,
    assert_down_server_fails_fast,
    assert_locks_leave_statements_their_connections,
    require_server,
)

HOST, PORT, DB, USER = "127.0.0.1", 5432, "test", "postgres"
SCHEMA = f"pstest_{uuid.uuid4().hex[:12]}"
BASE = f"postgresql://{USER}@{HOST}:{PORT}/{DB}"


@pytest.fixture(scope="module", autouse=True)
def _run_schema() -> Iterator[None]:
    require_server("PostgreSQL", HOST, PORT)
    yield
    import psycopg.sql

    deadline = time.monotonic() + 60  # a restart test may have just bounced the server
    while True:
        try:
            conn = psycopg.connect(f"host={HOST} port={PORT} dbname={DB} user={USER}")
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    with conn:
        drop = psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE")
        conn.execute(drop.format(psycopg.sql.Identifier(SCHEMA)))


def table_for(tmp_path: Path) -> str:
    name = re.sub(r"\W", "_", tmp_path.name).lower()[:40]
    return f"t_{name}_{zlib.crc32(str(tmp_path).encode()):08x}"


class TestPostgreSQL(StoreConformance):
    def make_url(self, tmp_path: Path) -> str:
        return f"{BASE}?schema={SCHEMA}&table={table_for(tmp_path)}"


class TestPostgreSQLNearCache(TestPostgreSQL):
    """The whole kit through the near cache, coherent by LISTEN/NOTIFY."""

    options = {"cache": 1000}  # noqa: RUF012 - read by the kit only


def test_layout_one_table_with_version_column(tmp_path: Path) -> None:
    import psycopg

    table = table_for(tmp_path)
    with plugstore.open(f"{BASE}?schema={SCHEMA}&table={table}") as store:
        ns = store.namespace("a")
        ns["k"] = 1
        ns["k"] = 2
        ns.incr("k")
        store.namespace("b")["k"] = "x"
    with psycopg.connect(f"host={HOST} port={PORT} dbname={DB} user={USER}") as conn:
        query = psycopg.sql.SQL("SELECT namespace, key, value, version FROM {} ORDER BY 1")
        rows = conn.execute(query.format(psycopg.sql.Identifier(SCHEMA, table))).fetchall()
        collation = conn.execute(
            "SELECT collation_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s AND column_name = 'key'",
            (SCHEMA, table),
        ).fetchone()
    assert rows == [("a", "k", b"3", 3), ("b", "k", b'"x"', 1)]
    assert collation == ("C",)


def _listing_plan(table: str, namespace: str, after: str) -> str:
    """EXPLAIN of a keys listing's next page (the statement plugstore sends, inlined)."""
    import psycopg

    query = psycopg.sql.SQL(
        "EXPLAIN SELECT key FROM {} WHERE namespace = %s AND (expires_at IS NULL OR "
        "expires_at > %s) AND key > %s ORDER BY key LIMIT 1000"
    ).format(psycopg.sql.Identifier(SCHEMA, table))
    with psycopg.connect(f"host={HOST} port={PORT} dbname={DB} user={USER}") as conn:
        rows = conn.execute(query, (namespace, time.time(), after)).fetchall()
    return "\n".join(row[0] for row in rows)


@pytest.mark.parametrize("api", ["sync", "async"])
def test_a_bulk_load_into_a_new_table_leaves_listings_on_the_index(
    tmp_path: Path, api: str
) -> None:
    """Right after a bulk load into a new table (autovacuum has not analyzed it yet),
    the planner still pages listings along the primary key instead of a bitmap scan
    and a sort of every key after the mark (O(n) a page): plugstore analyzes a table
    without statistics once 10,000 rows went in by batches."""
    import plugstore.aio as aio

    table = table_for(tmp_path)
    url = f"{BASE}?schema={SCHEMA}&table={table}"
    batches = [{f"k{i:07d}": i for i in range(start, start + 5000)} for start in (0, 5000, 10_000)]
    if api == "sync":
        with plugstore.open(url) as store:
            for batch in batches:
                store.namespace("bulk").set_many(batch)
    else:

        async def load() -> None:
            async with aio.open(url) as store:
                for batch in batches:
                    await store.namespace("bulk").set_many(batch)

        asyncio.run(load())
    plan = _listing_plan(table, "bulk", "k0005000")
    assert "Index Scan" in plan, plan
    assert "Sort" not in plan, plan
    with plugstore.open(url) as store:
        keys = list(store.namespace("bulk").keys())
    assert keys == [f"k{i:07d}" for i in range(15_000)]


def test_server_down_at_start_fails_fast_and_clearly() -> None:
    assert_down_server_fails_fast("postgresql://bob:s3cr3t-pw@127.0.0.1:1/test?connect_timeout=2")


def test_wrong_database_is_reported_without_password() -> None:
    url = f"postgresql://{USER}:pw-s3cr3t@{HOST}:{PORT}/no_such_db_{uuid.uuid4().hex[:6]}"
    with pytest.raises(BackendUnavailableError, match="does not exist") as err:
        plugstore.open(url)
    assert "pw-s3cr3t" not in str(err.value)


def test_credentials_never_in_repr_or_info(tmp_path: Path) -> None:
    url = f"postgresql://{USER}:hunter2@{HOST}:{PORT}/{DB}?schema={SCHEMA}&table={table_for(tmp_path)}"
    with plugstore.open(url) as store:  # trust auth: the password is sent but not checked
        for text in (repr(store), store.url, str(store.info()), repr(store.namespace("n"))):
            assert "hunter2" not in text


def test_identifiers_are_validated() -> None:
    for bad in ("kv; DROP TABLE x", "1abc", "a" * 64, 'q"uote'):
        with pytest.raises(ConfigurationError):
            plugstore.open(f"{BASE}?table={bad}")
        with pytest.raises(ConfigurationError):
            plugstore.open(f"{BASE}", schema=bad)


def test_unknown_options_are_refused_but_libpq_ones_pass() -> None:
    with pytest.raises(ConfigurationError, match="unknown option"):
        plugstore.open(f"{BASE}?sslmdoe=require")
    url = f"{BASE}?schema={SCHEMA}&table=t_libpq&application_name=plugstore-tests&sslmode=disable"
    with plugstore.open(url) as store:
        store.namespace("n")["k"] = 1
        row = store.backend.one(  # type: ignore[attr-defined]
            __import__("psycopg").sql.SQL("SELECT current_setting('application_name')"), None
        )
        assert row == ("plugstore-tests",)


def test_forked_child_never_touches_the_parents_connections(tmp_path: Path) -> None:
    import gc
    import os
    import signal

    url = f"{BASE}?schema={SCHEMA}&table={table_for(tmp_path)}&pool_min=2"
    with plugstore.open(url) as store:
        ns = store.namespace("n")
        ns["parent"] = 1
        pid = os.fork()
        if pid == 0:
            signal.alarm(20)
            code = 0
            try:
                ns.incr("child")  # the child builds its own pool
                gc.collect()  # closing or finalising the parent's pool here would
                # terminate the parent's sessions (same sockets); the next loop checks
            except BaseException:
                code = 3
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        for i in range(20):  # every pooled connection of the parent still works (incr is
            ns.incr(f"after-{i}")  # never retried: a broken connection would raise here)
        assert ns["child"] == 1
        assert len(ns) == 22


def test_a_busy_pool_says_so(tmp_path: Path) -> None:
    """An exhausted pool is reported as such -- its size and the option that raises it
    -- not as a server that is unavailable, and at once after the pool's wait (reads,
    which retry a lost connection for retry_timeout, do not retry this)."""
    url = f"{BASE}?schema={SCHEMA}&table={table_for(tmp_path)}&pool_max=2&connect_timeout=1"
    with plugstore.open(url) as store:
        ns = store.namespace("n")
        pool = store.backend._current_pool()  # type: ignore[attr-defined]
        held = [pool.getconn(), pool.getconn()]
        try:
            for op in (lambda: ns.incr("c"), lambda: ns.get("c")):
                started = time.monotonic()
                with pytest.raises(BackendUnavailableError) as err:
                    op()
                assert time.monotonic() - started < 10  # not retried for retry_timeout
                message = str(err.value)
                assert isinstance(err.value, PoolExhaustedError), message
                assert "pool" in message
                assert "all 2 connections" in message
                assert "pool_max" in message
                assert "unavailable" not in message
                assert isinstance(err.value, BackendUnavailableError)  # what callers caught
        finally:
            for conn in held:
                pool.putconn(conn)
        assert ns.incr("c") == 1


def test_a_down_server_is_not_reported_as_an_exhausted_pool() -> None:
    with pytest.raises(BackendUnavailableError) as err:
        plugstore.open("postgresql://bob@127.0.0.1:1/test?connect_timeout=1&pool_max=1")
    assert not isinstance(err.value, PoolExhaustedError)


def test_locks_never_take_the_connections_statements_use(tmp_path: Path) -> None:
    """With a one-connection pool, a lock holder still reads and writes while another
    thread waits for the same lock: lock sessions live in a pool of their own."""
    url = f"{BASE}?schema={SCHEMA}&table={table_for(tmp_path)}&pool_max=1&connect_timeout=1"
    assert_locks_leave_statements_their_connections(url)


def test_an_exhausted_lock_pool_says_so(tmp_path: Path) -> None:
    url = f"{BASE}?schema={SCHEMA}&table={table_for(tmp_path)}&lock_pool_max=2"
    assert_an_exhausted_lock_pool_says_so(url)


def test_connections_the_server_closed_while_idle_are_replaced(tmp_path: Path) -> None:
    """A pooled connection the server ended (a restart, idle_session_timeout, an admin)
    is noticed before anything is sent: even ``incr``, never retried, goes through."""
    import psycopg

    url = f"{BASE}?schema={SCHEMA}&table={table_for(tmp_path)}&pool_min=1&pool_max=1"
    with plugstore.open(url) as store:
        ns = store.namespace("n")
        backend: Any = store.backend
        pid = backend.one("SELECT pg_backend_pid()", None)[0]
        with psycopg.connect(f"host={HOST} port={PORT} dbname={DB} user={USER}") as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        time.sleep(0.5)  # the FATAL message and the close reach our socket
        assert ns.incr("c") == 1
        assert backend.one("SELECT pg_backend_pid()", None)[0] != pid


def _restart_command() -> list[str] | None:
    import os
    import shutil

    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions or shutil.which("pg_ctlcluster") is None or os.geteuid() != 0:
        return None
    version = max(versions, key=lambda v: [int(p) for p in v.split(".") if p.isdigit()])
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"]


@pytest.mark.slow
def test_server_restart_mid_run_loses_nothing_acknowledged(tmp_path: Path) -> None:
    import subprocess

    from servers import IN_CI

    command = _restart_command()
    if command is None:
        if IN_CI:
            pytest.fail("CI must be able to restart PostgreSQL (pg_ctlcluster as root)")
        pytest.skip("restarting PostgreSQL needs pg_ctlcluster and root")
    url = f"{BASE}?schema={SCHEMA}&table={table_for(tmp_path)}&retry_timeout=60"
    restarted: list[subprocess.CompletedProcess[bytes]] = []

    restart_done: list[float] = []

    def restart() -> None:
        time.sleep(0.5)
        restarted.append(subprocess.run(command, capture_output=True, timeout=120, check=False))
        restart_done.append(time.monotonic())

    with plugstore.open(url) as store:
        ns = store.namespace("n")
        worker = threading.Thread(target=restart)
        worker.start()
        acked = 0
        unavailable = 0
        try:
            for i in range(10_000):
                ns[f"k{i}"] = {"i": i}  # an upsert: retried through the restart
                acked += 1
                try:
                    ns.incr("counter")  # never retried: may fail while the server is away
                except BackendUnavailableError:
                    unavailable += 1
            loop_done = time.monotonic()
        finally:
            worker.join()  # never leave the server mid-restart for the next test
        assert restarted, "the restart did not run"
        assert restarted[0].returncode == 0, restarted
        assert restart_done[0] < loop_done, "the restart must land while writes are running"
        assert acked == 10_000
        assert len(ns) == 10_001
        missing = [i for i in range(10_000) if ns.get(f"k{i}") != {"i": i}]
        assert missing == []
        # every incr that returned is counted; one that raised may or may not have landed
        assert 10_000 - unavailable <= ns["counter"] <= 10_000
        ns.incr("counter")  # and the store works normally again


# -- expiry ------------------------------------------------------------------------------

OLD_TABLE = (
    'CREATE TABLE {} (namespace text NOT NULL, key text COLLATE "C" NOT NULL, '
    "value bytea NOT NULL, version bigint NOT NULL DEFAULT 1, PRIMARY KEY (namespace, key))"
)


def test_a_table_from_before_expiry_gains_the_column_and_keeps_working(tmp_path: Path) -> None:

    import psycopg
    from psycopg import sql

    table = table_for(tmp_path)
    qualified = sql.Identifier(SCHEMA, table)
    with psycopg.connect(f"host={HOST} port={PORT} dbname={DB} user={USER}") as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        conn.execute(sql.SQL(OLD_TABLE).format(qualified))
        insert = sql.SQL("INSERT INTO {} (namespace, key, value) VALUES (%s, %s, %s)")
        conn.execute(insert.format(qualified), ("n", "a", b'"old"'))
        conn.execute(insert.format(qualified), ("n", "c", b"41"))
    url = f"{BASE}?schema={SCHEMA}&table={table}"
    opened = 6

    def open_and_incr() -> None:
        with plugstore.open(url) as store:
            store.namespace("n").incr("opened")

    race_threads(opened, 1, open_and_incr)  # together; asserts that none raised
    now = 1_700_000_000.0
    with plugstore.open(url, clock=lambda: now) as store:
        ns = store.namespace("n")
        assert dict(ns) == {"a": "old", "c": 41, "opened": opened}
        assert ns.incr("c") == 42
        ns.set("t", "timed", ttl=60)
        assert ns.ttl("t") == 60
    with psycopg.connect(f"host={HOST} port={PORT} dbname={DB} user={USER}") as conn:
        select = sql.SQL("SELECT key, expires_at FROM {} ORDER BY key").format(qualified)
        rows = conn.execute(select).fetchall()
        column = conn.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s AND column_name = 'expires_at'",
            (SCHEMA, table),
        ).fetchone()
        index = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s "
            "AND indexname = %s",
            (SCHEMA, table, f"{table}_expires_at"),
        ).fetchone()
    assert rows == [("a", None), ("c", None), ("opened", None), ("t", now + 60)]
    assert column == ("double precision",)
    assert index is not None
    assert index[0].endswith("(expires_at) WHERE (expires_at IS NOT NULL)")


def test_a_failed_write_batch_rolls_back_whole(tmp_path: Path) -> None:
    """write_batch is one transaction: a statement failing after the clear ran (here:
    its table is missing) leaves the scope as it was."""
    import psycopg

    with plugstore.open(f"{BASE}?schema={SCHEMA}&table={table_for(tmp_path)}") as store:
        scope = store.namespace("n").scope(guild=1)
        scope.update(a=1, b=2)
        bucket = store.backend.bucket("n")
        broken = "INSERT INTO missing VALUES (%s, %s, %s, %s)"
        bucket._q = {**bucket._q, "set_until": broken}  # type: ignore[attr-defined]
        with pytest.raises(BackendUnavailableError, match="refused") as err:
            bucket.write_batch([("x", b"1", None)], [], [scope._prefix])
        assert isinstance(err.value.__cause__, psycopg.errors.UndefinedTable)
        assert dict(scope) == {"a": 1, "b": 2}
        store.backend.drop()  # type: ignore[attr-defined]


@pytest.fixture
def limited_role() -> Iterator[str]:
    """A login role of its own (trust auth on loopback), dropped afterwards."""
    import psycopg

    role = f"pstest_role_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"host={HOST} port={PORT} dbname={DB} user={USER}", autocommit=True) as c:
        c.execute(f'CREATE ROLE "{role}" LOGIN')
    yield role
    with psycopg.connect(f"host={HOST} port={PORT} dbname={DB} user={USER}", autocommit=True) as c:
        c.execute(f'DROP OWNED BY "{role}" CASCADE')
        c.execute(f'DROP ROLE "{role}"')


def test_a_user_without_privileges_gets_a_plugstore_error_saying_what_to_grant(
    limited_role: str, tmp_path: Path
) -> None:
    """The server refusing a statement (here: CREATE on the database) is a plugstore
    error naming the fix, with the driver's error as its cause; never a raw psycopg one."""
    import psycopg

    url = f"postgresql://{limited_role}:pw-s3cr3t@{HOST}:{PORT}/{DB}?schema={SCHEMA}_x"
    with pytest.raises(BackendUnavailableError, match=r"refused.*permission denied.*grant") as e:
        plugstore.open(url)
    assert isinstance(e.value.__cause__, psycopg.errors.InsufficientPrivilege)
    assert "s3cr3t" not in str(e.value)


def test_a_statement_refused_after_open_is_a_plugstore_error(
    limited_role: str, tmp_path: Path
) -> None:
    """Privileges taken away from a running store: reads and writes (retried ones and
    not) raise BackendUnavailableError saying what to grant."""
    import psycopg

    table = table_for(tmp_path)
    with psycopg.connect(f"host={HOST} port={PORT} dbname={DB} user={USER}", autocommit=True) as c:
        c.execute(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"')
        c.execute(f'GRANT USAGE, CREATE ON SCHEMA "{SCHEMA}" TO "{limited_role}"')
        c.execute(f'GRANT CREATE ON DATABASE "{DB}" TO "{limited_role}"')
    url = f"postgresql://{limited_role}@{HOST}:{PORT}/{DB}?schema={SCHEMA}&table={table}"
    with plugstore.open(url) as store:
        ns = store.namespace("n")
        ns["k"] = 1
        with psycopg.connect(
            f"host={HOST} port={PORT} dbname={DB} user={USER}", autocommit=True
        ) as c:
            c.execute(f'REVOKE ALL ON TABLE "{SCHEMA}"."{table}" FROM "{limited_role}"')
        for operation in (
            lambda: ns.set("k", 2),
            lambda: ns.get("k"),
            lambda: ns.incr("c"),
            lambda: list(ns),
            lambda: ns.set_many({"a": 1, "b": 2}),
        ):
            with pytest.raises(BackendUnavailableError, match=r"refused.*permission denied"):
                operation()
    with psycopg.connect(f"host={HOST} port={PORT} dbname={DB} user={USER}", autocommit=True) as c:
        c.execute(f'REVOKE CREATE ON DATABASE "{DB}" FROM "{limited_role}"')
        c.execute(f'REVOKE ALL ON SCHEMA "{SCHEMA}" FROM "{limited_role}"')


# -- the near cache: LISTEN/NOTIFY ------------------------------------------------------------


def _listener_pids(conn: Any, table: str) -> list[int]:
    """The backends listening for ``table``'s changes (other tests' listeners aside)."""
    from plugstore.backends.pgnotify import APPLICATION_NAME, channel_of

    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND query = %s",
        (APPLICATION_NAME, f'LISTEN "{channel_of(SCHEMA, table)}"'),
    ).fetchall()
    return [row[0] for row in rows]


def _until(check: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.005)


def test_near_cache_triggers_announce_keys_and_big_statements_their_namespace(
    tmp_path: Path,
) -> None:
    import psycopg

    url = f"{BASE}?schema={SCHEMA}&table={table_for(tmp_path)}"
    with plugstore.open(url, cache=100) as cached, plugstore.open(url) as plain:
        ns, other = cached.namespace("n"), plain.namespace("n")
        other.update({"a": 1, "b": 1})
        cache = cached.backend.near_cache
        assert cache is not None

        def both_cached() -> bool:
            # (the notices of the update may still be arriving, and drop what they name)
            assert (ns["a"], ns["b"]) == (1, 1)
            return ("n", "a") in cache.entries and ("n", "b") in cache.entries

        _until(both_cached)
        other["a"] = 2  # one row: its key is announced
        _until(lambda: ("n", "a") not in cache.entries)
        assert ("n", "b") in cache.entries  # the other key stays cached
        assert ns["a"] == 2
        other.set_many({f"bulk{i}": i for i in range(150)})
        assert ns["bulk7"] == 7
        other.clear()  # one statement deleting 152 rows: the namespace is announced
        _until(lambda: not any(k[0] == "n" for k in cache.entries))
        assert ns.get("b") is None
        assert "PostgreSQL LISTEN plugstore_" in cached.info()["near cache"]
    with plugstore.open(url, cache=100) as again:  # the triggers are made once
        again.namespace("n")["c"] = 1
    with psycopg.connect(f"host={HOST} port={PORT} dbname={DB} user={USER}") as conn:
        names = conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass ORDER BY 1",
            (f"{SCHEMA}.{table_for(tmp_path)}",),
        ).fetchall()
    assert [name for (name,) in names] == [
        f"{table_for(tmp_path)[:40]}_plugstore_{event}" for event in ("delete", "insert", "update")
    ]


def test_near_cache_survives_its_listener_being_cut_off(tmp_path: Path) -> None:
    import psycopg

    table = table_for(tmp_path)
    url = f"{BASE}?schema={SCHEMA}&table={table}"
    with plugstore.open(url, cache=100) as cached, plugstore.open(url) as plain:
        ns, other = cached.namespace("n"), plain.namespace("n")
        other["k"] = 1
        assert ns["k"] == 1
        with psycopg.connect(
            f"host={HOST} port={PORT} dbname={DB} user={USER}", autocommit=True
        ) as admin:
            (pid,) = _listener_pids(admin, table)
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            other["k"] = 2  # made while nobody listens for this store
            _until(lambda: ns["k"] == 2)
            _until(lambda: len(_listener_pids(admin, table)) == 1)  # listening again
            assert _listener_pids(admin, table) != [pid]
        other["k"] = 3
        _until(lambda: ns["k"] == 3)  # heard by the new listener
    with psycopg.connect(f"host={HOST} port={PORT} dbname={DB} user={USER}") as admin:
        _until(lambda: _listener_pids(admin, table) == [])  # closing the store stops it


def test_near_caches_on_several_tables_of_one_schema_start_together(tmp_path: Path) -> None:
    """Stores opening tables of a new schema at once all open: none fails on the schema
    being created twice, nor on the triggers' shared functions being replaced together."""
    import psycopg

    schema = f"{SCHEMA}_{uuid.uuid4().hex[:8]}"
    tables = [f"{table_for(tmp_path)[:40]}_{i}" for i in range(6)]
    opened: list[plugstore.Store] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def start(table: str) -> None:
        try:
            store = plugstore.open(f"{BASE}?schema={schema}&table={table}", cache=10)
        except BaseException as exc:  # reported below
            failures.append(exc)
            return
        with lock:
            opened.append(store)

    barrier = threading.Barrier(len(tables))

    def together(table: str) -> None:
        barrier.wait()
        start(table)

    threads = [threading.Thread(target=together, args=(table,)) for table in tables]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert len(opened) == len(tables)
    finally:
        for store in opened:
            store.close()
        with psycopg.connect(
            f"host={HOST} port={PORT} dbname={DB} user={USER}", autocommit=True
        ) as admin:
            admin.execute(
                psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    psycopg.sql.Identifier(schema)
                )
            )
