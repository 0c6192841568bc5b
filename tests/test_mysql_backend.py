"""MariaDB/MySQL: the conformance kit and server-specific behaviour, against the real server.

Every test run works in a database of its own (dropped at the end) and every test in a
table of its own, so parallel or repeated runs never collide.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import plugstore
from plugstore.errors import (
    BackendUnavailableError,
    ConfigurationError,
    NotAnIntegerError,
    PoolExhaustedError,
    ValueTooLargeError,
)
from plugstore.testing import StoreConformance
from plugstore.testing._threads import race_threads
from servers import (
    IN_CI,
    assert_an_exhausted_lock_pool_says_so,
    assert_down_server_fails_fast,
    assert_locks_leave_statements_their_connections,
    require_server,
)

HOST, PORT, USER = "127.0.0.1", 3306, "root"
DB = f"pstest_{uuid.uuid4().hex[:12]}"
BASE = f"mysql://{USER}@{HOST}:{PORT}/{DB}"
#: How .ci/run (and this machine's setup) starts the server.
START_MARIADB = ["start-stop-daemon", "--start", "--oknodo", "--background"]
START_MARIADB += ["--exec", "/usr/sbin/mariadbd"]


def _admin(database: str | None = None) -> Any:
    import pymysql

    deadline = time.monotonic() + 60  # a restart test may have just bounced the server
    while True:
        try:
            return pymysql.connect(
                host=HOST, port=PORT, user=USER, password="", database=database, autocommit=True
            )
        except pymysql.err.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture(scope="module", autouse=True)
def _run_database() -> Iterator[None]:
    require_server("MariaDB", HOST, PORT)
    with _admin() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{DB}`")
    yield
    with _admin() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{DB}`")


def table_for(tmp_path: Path) -> str:
    name = re.sub(r"\W", "_", tmp_path.name).lower()[:40]
    return f"t_{name}_{zlib.crc32(str(tmp_path).encode()):08x}"


class TestMySQL(StoreConformance):
    def make_url(self, tmp_path: Path) -> str:
        return f"{BASE}?table={table_for(tmp_path)}"


def test_mariadb_scheme_is_the_same_backend(tmp_path: Path) -> None:
    url = f"mariadb://{USER}@{HOST}:{PORT}/{DB}?table={table_for(tmp_path)}"
    with plugstore.open(url) as store:
        assert store.backend.name == "mysql"
        store.namespace("n")["k"] = 1
    with plugstore.open(f"{BASE}?table={table_for(tmp_path)}") as store:
        assert store.namespace("n")["k"] == 1


def test_layout_one_table_binary_keys_and_version(tmp_path: Path) -> None:
    table = table_for(tmp_path)
    with plugstore.open(f"{BASE}?table={table}") as store:
        ns = store.namespace("a")
        ns["k"] = 1
        ns["k"] = 2
        ns.incr("k")
        ns["ké\U0001f600"] = "x"
        store.namespace("b")["k"] = "x"
    with _admin(DB) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT namespace, `key`, value, version FROM `{table}` ORDER BY 1, 2")
        rows = cur.fetchall()
        cur.execute(
            "SELECT column_name, column_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (DB, table),
        )
        columns = cur.fetchall()
    assert rows == (
        ("a", b"k", b"3", 3),
        ("a", "ké\U0001f600".encode(), b'"x"', 1),
        ("b", b"k", b'"x"', 1),
    )
    types = ["varchar(128)", "varbinary(1024)", "longblob", "bigint(20)", "double"]
    assert [c[1] for c in columns] == types


def test_incr_result_travels_back_for_every_sign(tmp_path: Path) -> None:
    """``incr``'s result rides on LAST_INSERT_ID, which is unsigned on the wire."""
    from plugstore.keys import INT64_MAX, INT64_MIN

    with plugstore.open(f"{BASE}?table={table_for(tmp_path)}") as store:
        ns = store.namespace("n")
        assert ns.incr("c", -5) == -5  # inserted
        assert ns.incr("c", 0) == -5  # updated, unchanged total
        assert ns.incr("c", 5) == 0
        assert ns.incr("c", INT64_MIN) == INT64_MIN
        with pytest.raises(NotAnIntegerError):
            ns.incr("c", -1)
        assert ns.incr("c", INT64_MAX) == -1
        assert ns.incr("c", INT64_MAX) == INT64_MAX - 1
        assert ns["c"] == INT64_MAX - 1


def test_value_limit_follows_the_servers_packet_size(tmp_path: Path) -> None:
    with _admin() as conn, conn.cursor() as cur:
        cur.execute("SELECT @@max_allowed_packet")
        packet = int(cur.fetchone()[0])
    with plugstore.open(f"{BASE}?table={table_for(tmp_path)}") as store:
        limit = store.max_value_size
        assert limit == min(16 * 1024 * 1024, (packet - 65536) // 2)
        ns = store.namespace("n")
        worst = b"\x00" * limit  # every byte escaped: the largest statement possible
        bucket = ns._b()
        bucket.set("worst", worst)
        assert bucket.get("worst") == worst
        bucket.set_many([("worst", worst), ("other", b"'" * limit)])
        assert bucket.get_many(["worst", "other"]) == {"worst": worst, "other": b"'" * limit}
        with pytest.raises(ValueTooLargeError):
            ns["too-big"] = b"x" * limit


def test_server_down_at_start_fails_fast_and_clearly() -> None:
    assert_down_server_fails_fast("mysql://bob:s3cr3t-pw@127.0.0.1:1/test?connect_timeout=2")


def test_wrong_database_and_bad_login_are_reported_without_password() -> None:
    missing = f"no_such_db_{uuid.uuid4().hex[:6]}"
    with pytest.raises(BackendUnavailableError, match="Unknown database"):
        plugstore.open(f"mysql://{USER}@{HOST}:{PORT}/{missing}")
    with pytest.raises(BackendUnavailableError, match="Access denied") as err:
        plugstore.open(f"mysql://nobody_{uuid.uuid4().hex[:6]}:pw-s3cr3t@{HOST}:{PORT}/{DB}")
    assert "pw-s3cr3t" not in str(err.value)


def test_credentials_never_in_repr_or_info(tmp_path: Path) -> None:
    with _admin() as conn, conn.cursor() as cur:
        user = f"ps_{uuid.uuid4().hex[:8]}"
        cur.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'hunter2-pw'")
        cur.execute(f"GRANT ALL ON `{DB}`.* TO '{user}'@'127.0.0.1'")
    try:
        url = f"mysql://{user}:hunter2-pw@{HOST}:{PORT}/{DB}?table={table_for(tmp_path)}"
        with plugstore.open(url) as store:  # a real password login
            store.namespace("n")["k"] = 1
            texts = (repr(store), store.url, str(store.info()), repr(store.namespace("n")))
            for text in texts:
                assert "hunter2" not in text
        # the password as an option (Errbot-style config dicts) works the same way
        with plugstore.open(url.replace(":hunter2-pw", ""), password="hunter2-pw") as store:
            assert store.namespace("n")["k"] == 1
    finally:
        with _admin() as conn, conn.cursor() as cur:
            cur.execute(f"DROP USER '{user}'@'127.0.0.1'")


def test_identifiers_and_options_are_validated() -> None:
    for bad in ("kv; DROP TABLE x", "1abc", "a" * 65, "q`uote"):
        with pytest.raises(ConfigurationError):
            plugstore.open(f"{BASE}?table={bad}")
    with pytest.raises(ConfigurationError, match="needs a database"):
        plugstore.open(f"mysql://{USER}@{HOST}:{PORT}")
    with pytest.raises(ConfigurationError, match="unknown option"):
        plugstore.open(f"{BASE}?ssl_verfy_cert=1")
    with pytest.raises(ConfigurationError):
        plugstore.open(f"{BASE}?pool_max=0")


def test_unix_socket_option(tmp_path: Path) -> None:
    sockets = ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock")
    path = next((p for p in sockets if os.path.exists(p)), None)
    if path is None:
        pytest.skip("no MariaDB unix socket on this machine")
    url = f"mysql://{USER}@localhost/{DB}?unix_socket={path}&table={table_for(tmp_path)}"
    with plugstore.open(url) as store:
        store.namespace("n")["k"] = "via socket"
        assert store.info()["server"].endswith(f"at {path}")
    with plugstore.open(f"{BASE}?table={table_for(tmp_path)}") as store:
        assert store.namespace("n")["k"] == "via socket"


def test_forked_child_never_touches_the_parents_connections(tmp_path: Path) -> None:
    import gc
    import signal

    with plugstore.open(f"{BASE}?table={table_for(tmp_path)}") as store:
        ns = store.namespace("n")
        # several pooled connections in the parent, all idle in the pool at fork time
        threads = [threading.Thread(target=ns.incr, args=(f"warm{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        backend: Any = store.backend
        before = {backend.one("SELECT CONNECTION_ID()", None)[0] for _ in range(8)}
        pid = os.fork()
        if pid == 0:
            signal.alarm(20)
            code = 0
            try:
                ns.incr("child")  # the child builds its own pool
                mine = backend.one("SELECT CONNECTION_ID()", None)[0]
                code = 4 if mine in before else 0
                gc.collect()  # closing the parent's pool here would send COM_QUIT on
                # the parent's sockets and end its sessions; the loop below checks
            except BaseException:
                code = 3
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        for i in range(20):  # incr is never retried: a parent connection the child
            ns.incr(f"after-{i}")  # closed or used would fail here
        assert ns["child"] == 1


def test_a_statement_interrupted_mid_reply_never_poisons_the_pool(tmp_path: Path) -> None:
    """The interrupted connection is thrown away: its unread reply must not become the
    next statement's (that would hand back another key's value)."""
    from pymysql.constants import COMMAND

    with plugstore.open(f"{BASE}?table={table_for(tmp_path)}&pool_max=1") as store:
        ns = store.namespace("n")
        ns.update(a="value of a", b="value of b")
        backend: Any = store.backend

        def interrupted(cur: Any) -> None:
            query = f"SELECT value FROM `{backend.table}` WHERE `key` = 'a'"
            cur.connection._execute_command(COMMAND.COM_QUERY, query)  # sent, not read
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            backend._execute(interrupted, False)
        assert ns["b"] == "value of b"
        assert "zzz" not in ns
        assert ns.compute("a", lambda v: v + "!") == "value of a!"


def test_idle_connections_closed_by_the_server_are_replaced(tmp_path: Path) -> None:
    """After wait_timeout (or a restart) the pooled connection is dead; even ``incr``,
    never retried, works: the dead connection is noticed before anything is sent."""
    with plugstore.open(f"{BASE}?table={table_for(tmp_path)}&pool_max=1") as store:
        ns = store.namespace("n")
        backend: Any = store.backend
        first = backend.one("SELECT CONNECTION_ID()", None)[0]
        backend.run("SET SESSION wait_timeout = 1", None)
        time.sleep(2.5)
        assert ns.incr("c") == 1
        assert ns.pop("c") == 1
        assert backend.one("SELECT CONNECTION_ID()", None)[0] != first


def test_identity_ignores_how_the_url_spells_the_default_port() -> None:
    from plugstore.backend import Options
    from plugstore.backends.mysql import MySQLBackend
    from plugstore.url import StoreURL

    def identity(url: str) -> tuple[object, ...]:
        parsed = StoreURL.parse(url)
        return MySQLBackend(parsed, Options(parsed.query)).identity()

    assert identity(f"mysql://root@localhost/{DB}") == identity(f"mysql://u@127.0.0.1:3306/{DB}")
    assert identity(f"mysql://root@localhost/{DB}") != identity(f"mysql://root@localhost:3307/{DB}")
    assert identity(f"{BASE}?table=a") != identity(f"{BASE}?table=b")


def test_copy_onto_itself_is_refused_however_spelled(tmp_path: Path) -> None:
    import sys

    table = table_for(tmp_path)
    with plugstore.open(f"{BASE}?table={table}") as store:
        store.namespace("n")["k"] = 1
    short = f"mysql://root@127.0.0.1/{DB}?table={table}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "plugstore.cli",
            "copy",
            "--replace",
            short,
            f"{BASE}?table={table}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "same" in result.stderr
    with plugstore.open(f"{BASE}?table={table}") as store:
        assert store.namespace("n")["k"] == 1


def test_a_busy_pool_says_so(tmp_path: Path) -> None:
    """An exhausted pool is reported as such -- its size and the option that raises it
    -- not as a server that is unavailable, and at once after the pool's wait (reads,
    which retry a lost connection, do not retry this)."""
    url = f"{BASE}?table={table_for(tmp_path)}&pool_max=1&connect_timeout=1"
    with plugstore.open(url) as store:
        ns = store.namespace("n")
        pool = store.backend._current_pool()  # type: ignore[attr-defined]
        held = pool.acquire()
        try:
            for op in (lambda: ns.incr("c"), lambda: ns.get("c")):
                started = time.monotonic()
                with pytest.raises(PoolExhaustedError) as err:
                    op()
                assert time.monotonic() - started < 10  # not retried for retry_timeout
                message = str(err.value)
                assert "pool" in message
                assert "all 1 connections" in message
                assert "pool_max" in message
                assert "unavailable" not in message
                assert isinstance(err.value, BackendUnavailableError)  # what callers caught
        finally:
            pool.release(held)
        assert ns.incr("c") == 1


def test_locks_never_take_the_connections_statements_use(tmp_path: Path) -> None:
    """With a one-connection pool, a lock holder still reads and writes while another
    thread waits for the same lock: lock sessions live in a pool of their own."""
    url = f"{BASE}?table={table_for(tmp_path)}&pool_max=1&connect_timeout=1"
    assert_locks_leave_statements_their_connections(url)


def test_an_exhausted_lock_pool_says_so(tmp_path: Path) -> None:
    url = f"{BASE}?table={table_for(tmp_path)}&lock_pool_max=2"
    assert_an_exhausted_lock_pool_says_so(url)


def _port_open() -> bool:
    try:
        socket.create_connection((HOST, PORT), timeout=1).close()
    except OSError:
        return False
    return True


def _restart_mariadb() -> subprocess.CompletedProcess[bytes]:
    """Stop the server (clean shutdown) and start it the way .ci/run does."""
    down = subprocess.run(
        ["mariadb-admin", "-h", HOST, "-P", str(PORT), "-u", USER, "shutdown"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    if down.returncode != 0:
        return down
    deadline = time.monotonic() + 60
    while _port_open() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # stay down a moment: clients must notice and retry
    up = subprocess.run(
        START_MARIADB,
        capture_output=True,
        timeout=60,
        check=False,
    )
    while not _port_open() and time.monotonic() < deadline + 60:
        time.sleep(0.1)
    return up


@pytest.mark.slow
def test_server_restart_mid_run_loses_nothing_acknowledged(tmp_path: Path) -> None:
    tools = all(shutil.which(t) for t in ("mariadb-admin", "start-stop-daemon"))
    if not (tools and os.path.exists("/usr/sbin/mariadbd") and os.geteuid() == 0):
        if IN_CI:
            pytest.fail("CI must be able to restart MariaDB (mariadb-admin, start-stop-daemon)")
        pytest.skip("restarting MariaDB needs mariadb-admin, start-stop-daemon and root")
    url = f"{BASE}?table={table_for(tmp_path)}&retry_timeout=60"
    restarted: list[subprocess.CompletedProcess[bytes]] = []
    restart_done: list[float] = []

    def restart() -> None:
        time.sleep(0.5)
        restarted.append(_restart_mariadb())
        restart_done.append(time.monotonic())

    with plugstore.open(url) as store:
        ns = store.namespace("n")
        worker = threading.Thread(target=restart)
        worker.start()
        acked = unavailable = 0
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
            worker.join()  # never leave the server down for the next test
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
    "CREATE TABLE `{}` (namespace VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, "
    "`key` VARBINARY(1024) NOT NULL, value LONGBLOB NOT NULL, "
    "version BIGINT NOT NULL DEFAULT 1, PRIMARY KEY (namespace, `key`)"
    ") ENGINE=InnoDB ROW_FORMAT=DYNAMIC"
)


def test_a_table_from_before_expiry_gains_the_column_and_keeps_working(tmp_path: Path) -> None:
    table = table_for(tmp_path)
    with _admin(DB) as conn, conn.cursor() as cur:
        cur.execute(OLD_TABLE.format(table))
        cur.execute(
            f"INSERT INTO `{table}` (namespace, `key`, value) VALUES "
            "('n', 'a', '\"old\"'), ('n', 'c', '41')"
        )
    # Processes starting together all find the column missing; one adds it, the others
    # get "duplicate column" / "duplicate key name" and carry on.
    opened = 6

    def open_and_incr() -> None:
        with plugstore.open(f"{BASE}?table={table}") as store:
            store.namespace("n").incr("opened")

    race_threads(opened, 1, open_and_incr)  # together; asserts that none raised
    now = 1_700_000_000.0
    with plugstore.open(f"{BASE}?table={table}", clock=lambda: now) as store:
        ns = store.namespace("n")
        assert dict(ns) == {"a": "old", "c": 41, "opened": opened}
        assert ns.incr("c") == 42
        ns.set("t", "timed", ttl=60)
        assert ns.ttl("t") == 60
    with _admin(DB) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT `key`, expires_at FROM `{table}` ORDER BY `key`")
        assert cur.fetchall() == ((b"a", None), (b"c", None), (b"opened", None), (b"t", now + 60))
        cur.execute(f"SHOW INDEX FROM `{table}` WHERE Key_name = 'expires_at'")
        assert [row[4] for row in cur.fetchall()] == ["expires_at"]  # Column_name


def test_incr_of_an_expired_counter_travels_back_for_every_sign(tmp_path: Path) -> None:
    """An expired counter starts again from the delta, handed back through LAST_INSERT_ID."""
    from plugstore.testing import FakeClock

    clock = FakeClock(1_700_000_000.0)
    with plugstore.open(f"{BASE}?table={table_for(tmp_path)}", clock=clock) as store:
        ns = store.namespace("n")
        for delta in (-5, 0, 7):
            ns.set("c", 100, ttl=10)
            clock.now += 10
            assert ns.incr("c", delta) == delta
            assert ns.ttl("c") is None


def test_a_failed_write_batch_rolls_back_whole(tmp_path: Path) -> None:
    """write_batch is one transaction: a statement failing after the clear ran (here:
    its table is missing) leaves the scope as it was."""
    import pymysql

    with plugstore.open(f"{BASE}?table={table_for(tmp_path)}") as store:
        scope = store.namespace("n").scope(guild=1)
        scope.update(a=1, b=2)
        bucket = store.backend.bucket("n")
        broken = "INSERT INTO missing VALUES (%s, %s, %s, %s)"
        bucket._q = {**bucket._q, "set_until": broken}  # type: ignore[attr-defined]
        with pytest.raises(BackendUnavailableError, match="refused") as err:
            bucket.write_batch([("x", b"1", None)], [], [scope._prefix])
        assert isinstance(err.value.__cause__, pymysql.err.ProgrammingError)
        assert dict(scope) == {"a": 1, "b": 2}
        store.backend.drop()  # type: ignore[attr-defined]


@pytest.fixture
def limited_user() -> Iterator[str]:
    """A user of its own on loopback, no password and no privileges; dropped afterwards."""
    user = f"pstest_{uuid.uuid4().hex[:8]}"
    with _admin() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE USER '{user}'@'127.0.0.1'")
    yield user
    with _admin() as conn, conn.cursor() as cur:
        cur.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")


def test_a_user_without_privileges_gets_a_plugstore_error_saying_what_to_grant(
    limited_user: str, tmp_path: Path
) -> None:
    """The server refusing a statement (CREATE on the table) is a plugstore error naming
    the fix, with the driver's error as its cause; never a raw PyMySQL one."""
    import pymysql

    with _admin() as conn, conn.cursor() as cur:
        cur.execute(f"GRANT SELECT ON `{DB}`.* TO '{limited_user}'@'127.0.0.1'")
    url = f"mysql://{limited_user}@{HOST}:{PORT}/{DB}?table={table_for(tmp_path)}"
    with pytest.raises(BackendUnavailableError, match=r"refused.*\(1142\).*denied.*grant") as e:
        plugstore.open(url)
    assert isinstance(e.value.__cause__, pymysql.err.MySQLError)


def test_a_user_who_may_not_use_the_database_is_told_what_to_grant(
    limited_user: str, tmp_path: Path
) -> None:
    url = f"mysql://{limited_user}@{HOST}:{PORT}/{DB}?table={table_for(tmp_path)}"
    with pytest.raises(BackendUnavailableError, match=r"\(1044\).*Access denied.*grant"):
        plugstore.open(url)


def test_a_statement_refused_after_open_is_a_plugstore_error(
    limited_user: str, tmp_path: Path
) -> None:
    """Privileges taken away from a running store: reads and writes (retried ones and
    not) raise BackendUnavailableError saying what to grant."""
    table = table_for(tmp_path)
    with _admin() as conn, conn.cursor() as cur:
        cur.execute(f"GRANT ALL ON `{DB}`.`{table}` TO '{limited_user}'@'127.0.0.1'")
    url = f"mysql://{limited_user}@{HOST}:{PORT}/{DB}?table={table}"
    with plugstore.open(url) as store:
        ns = store.namespace("n")
        ns["k"] = 1
        with _admin() as conn, conn.cursor() as cur:
            # Table privileges apply from a session's next statement on.
            cur.execute(f"REVOKE ALL ON `{DB}`.`{table}` FROM '{limited_user}'@'127.0.0.1'")
        for operation in (
            lambda: ns.set("k", 2),
            lambda: ns.get("k"),
            lambda: ns.incr("c"),
            lambda: list(ns),
            lambda: ns.set_many({"a": 1, "b": 2}),
        ):
            with pytest.raises(BackendUnavailableError, match=r"refused.*denied"):
                operation()
