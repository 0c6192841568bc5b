"""SQLite specifics: the generic behaviour is in the conformance kit."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

import plugstore
from plugstore.backends.sqlite import prefix_range
from plugstore.errors import BackendUnavailableError, StoreDamagedError
from plugstore.testing._threads import race_threads


def url(tmp_path: Path, name: str = "store.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def test_file_layout_wal_and_info(tmp_path: Path) -> None:
    with plugstore.open(url(tmp_path, "sub/dir/store.db")) as store:
        store.namespace("a")["k"] = 1
        info = store.info()
        assert info["journal_mode"] == "wal"
        assert info["synchronous"] == "normal"
        assert info["sqlite"] == sqlite3.sqlite_version
    raw = sqlite3.connect(tmp_path / "sub/dir/store.db")
    rows = raw.execute("SELECT namespace, key, value FROM plugstore_kv").fetchall()
    assert rows == [("a", "k", b"1")]


def test_each_write_is_visible_to_another_connection_immediately(tmp_path: Path) -> None:
    with plugstore.open(url(tmp_path)) as store:
        ns = store.namespace("n")
        other = sqlite3.connect(tmp_path / "store.db")
        ns["k"] = "v"  # no close, no explicit commit
        assert other.execute("SELECT value FROM plugstore_kv").fetchone() == (b'"v"',)
        ns.set_many({"a": 1, "b": 2})
        assert other.execute("SELECT count(*) FROM plugstore_kv").fetchone() == (3,)


def test_namespaces_listing_scales_by_namespace(tmp_path: Path) -> None:
    with plugstore.open(url(tmp_path)) as store:
        for i in range(30):
            store.namespace(f"ns{i:02d}").set_many({f"k{j}": j for j in range(50)})
        assert store.namespaces() == [f"ns{i:02d}" for i in range(30)]
        assert store.drop_namespace("ns00") == 50
        assert "ns00" not in store.namespaces()


def test_locked_database_gives_backend_unavailable(tmp_path: Path) -> None:
    with plugstore.open(url(tmp_path), timeout=0.2) as store:
        ns = store.namespace("n")
        ns["k"] = 1
        blocker = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(BackendUnavailableError, match="locked"):
                ns["k"] = 2
        finally:
            blocker.execute("ROLLBACK")
        ns["k"] = 3  # recovers once the lock is gone
        assert ns["k"] == 3


def test_unusable_paths_give_backend_unavailable(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(BackendUnavailableError):
        plugstore.open(url(tmp_path, "a-file/store.db"))
    (tmp_path / "garbage.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(BackendUnavailableError):
        plugstore.open(url(tmp_path, "garbage.db"))


@pytest.mark.skipif(sys.platform == "win32", reason="fork() is POSIX")
def test_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    with plugstore.open(url(tmp_path)) as store:
        ns = store.namespace("n")
        ns["parent"] = 1
        parent_conn = store.backend._conn  # type: ignore[attr-defined]
        pid = os.fork()
        if pid == 0:  # child: must work without touching the parent's connection
            signal.alarm(20)  # a hang here must not hang the suite
            try:
                ns.incr("child")
                ok = store.backend._conn is not parent_conn  # type: ignore[attr-defined]
                os._exit(0 if ok and ns["parent"] == 1 else 3)
            except BaseException:
                os._exit(4)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert ns["child"] == 1
        ns["after-fork"] = True  # the parent's connection is intact
        assert ns["after-fork"] is True


def test_fork_while_another_thread_holds_the_lock(tmp_path: Path) -> None:
    with plugstore.open(url(tmp_path)) as store:
        ns = store.namespace("n")
        lock = store.backend._lock  # type: ignore[attr-defined]
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with lock:
                held.set()
                release.wait(10)

        t = threading.Thread(target=hold)
        t.start()
        held.wait(10)
        pid = os.fork()
        if pid == 0:
            signal.alarm(20)  # the bug this guards against is a deadlock
            try:
                ns["from-child"] = 1  # would deadlock on an inherited, held lock
                os._exit(0)
            except BaseException:
                os._exit(4)
        _, status = os.waitpid(pid, 0)
        release.set()
        t.join()
        assert os.waitstatus_to_exitcode(status) == 0
        assert ns["from-child"] == 1


def test_prefix_range() -> None:
    assert prefix_range("ab") == ("ab", "ac")
    assert prefix_range("a\U0010ffff") == ("a\U0010ffff", "b")
    assert prefix_range("\U0010ffff") == ("\U0010ffff", None)


def test_prefix_scan_with_max_code_point(tmp_path: Path) -> None:
    with plugstore.open(url(tmp_path)) as store:
        ns = store.namespace("n")
        keys = ["\U0010ffff", "\U0010ffffa", "a\U0010ffff", "a\U0010ffffz", "b"]
        ns.set_many(dict.fromkeys(keys, 1))
        assert sorted(ns.scan_keys("\U0010ffff")) == ["\U0010ffff", "\U0010ffffa"]
        assert sorted(ns.scan_keys("a\U0010ffff")) == ["a\U0010ffff", "a\U0010ffffz"]


def test_synchronous_full_option(tmp_path: Path) -> None:
    with plugstore.open(url(tmp_path), synchronous="full") as store:
        store.namespace("n")["k"] = 1
        assert store.info()["synchronous"] == "full"


def test_connections_creating_a_new_file_at_once_all_open_it(tmp_path: Path) -> None:
    """Switching a new file to WAL gets SQLITE_BUSY without the busy handler: retried.

    Separate connections (as separate processes have) opening one fresh file together:
    before the fix about 1 trial in 11 had one fail at once with "database is locked".
    """
    connections, trials = 8, 200
    for trial in range(trials):
        url = f"sqlite:///{tmp_path / f'new{trial}.db'}"

        def open_and_write(url: str = url) -> None:
            with plugstore.open(url) as store:
                store.namespace("ns").incr("opened")

        race_threads(connections, 1, open_and_write)  # together; asserts none raised
        with plugstore.open(url) as store:
            assert store.namespace("ns")["opened"] == connections


# -- expiry ------------------------------------------------------------------------------

OLD_SCHEMA = (
    "CREATE TABLE plugstore_kv (namespace TEXT NOT NULL, key TEXT NOT NULL, "
    "value BLOB NOT NULL, PRIMARY KEY (namespace, key)) WITHOUT ROWID"
)


def make_old_store(path: Path) -> None:
    """A file as the version before expiry wrote it: no expires_at column, no index."""
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA journal_mode = WAL")
    raw.execute(OLD_SCHEMA)
    raw.executemany(
        "INSERT INTO plugstore_kv VALUES (?, ?, ?)",
        [("n", "a", b'"old"'), ("n", "c", b"41"), ("m", "x", b"[1]")],
    )
    raw.commit()
    raw.close()


def test_a_file_from_before_expiry_gains_the_column_and_keeps_working(tmp_path: Path) -> None:
    make_old_store(tmp_path / "store.db")
    now = 1_700_000_000.0
    with plugstore.open(url(tmp_path), clock=lambda: now) as store:
        ns = store.namespace("n")
        assert dict(ns) == {"a": "old", "c": 41}
        assert store.namespaces() == ["m", "n"]
        assert ns.ttl("a") is None
        assert ns.incr("c") == 42
        ns.set("t", "timed", ttl=60)
        assert ns.ttl("t") == 60
        assert store.purge() == 0
    raw = sqlite3.connect(tmp_path / "store.db")
    columns = [row[1] for row in raw.execute("PRAGMA table_info(plugstore_kv)")]
    assert columns == ["namespace", "key", "value", "expires_at"]
    rows = raw.execute("SELECT key, expires_at FROM plugstore_kv ORDER BY key").fetchall()
    assert rows == [("a", None), ("c", None), ("t", now + 60), ("x", None)]
    indexes = [row[1] for row in raw.execute("PRAGMA index_list(plugstore_kv)")]
    assert indexes == ["sqlite_autoindex_plugstore_kv_1"]  # no index on expires_at: writes


def test_connections_upgrading_an_old_file_at_once_all_open_it(tmp_path: Path) -> None:
    """Separate connections (as separate processes have) adding the column together: one
    adds it, the others find it there ("duplicate column name" is not an error)."""
    connections, trials = 6, 30
    for trial in range(trials):
        path = tmp_path / f"old{trial}.db"
        make_old_store(path)

        def open_and_write(path: Path = path) -> None:
            with plugstore.open(f"sqlite:///{path}") as store:
                store.namespace("n").set("k", 1, ttl=60)

        race_threads(connections, 1, open_and_write)  # together; asserts none raised


def test_a_failed_write_batch_rolls_back_whole(tmp_path: Path) -> None:
    """write_batch is one transaction: a statement failing after the clear and the
    deletes ran (here: its table is missing) leaves the scope as it was."""
    with plugstore.open(f"sqlite:///{tmp_path / 'x.db'}") as store:
        scope = store.namespace("n").scope(guild=1)
        scope.update(a=1, b=2)
        bucket = store.backend.bucket("n")
        bucket._q = {**bucket._q, "set_until": "INSERT INTO missing VALUES (?, ?, ?, ?)"}  # type: ignore[attr-defined]
        with pytest.raises(BackendUnavailableError, match="missing"):
            bucket.write_batch([("x", b"1", None)], ["\x1fguild\x1di1\x1c\x1ea"], [scope._prefix])
        assert dict(scope) == {"a": 1, "b": 2}


def _damage_a_page(path: Path) -> None:
    """Overwrite one page in the middle of a checkpointed SQLite file with garbage."""
    page = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    size = path.stat().st_size
    assert size >= 8 * page
    assert not Path(f"{path}-wal").exists()
    with open(path, "r+b") as f:
        f.seek(size // page // 2 * page)
        f.write(b"\xff" * page)


def test_a_corrupt_page_is_a_store_damaged_error(tmp_path: Path) -> None:
    keys = [f"k{i:04d}" for i in range(400)]
    with plugstore.open(url(tmp_path)) as store:
        store.namespace("n").update(dict.fromkeys(keys, "x" * 300))
    _damage_a_page(tmp_path / "store.db")
    with plugstore.open(url(tmp_path)) as store:
        ns = store.namespace("n")
        for listing in (lambda: list(ns), lambda: list(ns.items()), ns.__len__):
            with pytest.raises(StoreDamagedError, match=r"damaged.*backup.*plugstore dump"):
                listing()
        damaged = []
        for key in keys:
            try:
                assert ns[key] == "x" * 300
            except StoreDamagedError:
                damaged.append(key)
        assert damaged  # the keys on the page are refused, never read as absent
        with pytest.raises(StoreDamagedError, match=r"sqlite3 .*\.recover"):
            ns[damaged[0]] = "y"
        with pytest.raises(StoreDamagedError):
            ns.update({key: "y" for key in damaged})
        assert isinstance(StoreDamagedError("x"), BackendUnavailableError)


def test_a_batch_on_a_corrupt_page_is_a_store_damaged_error(tmp_path: Path) -> None:
    """write_batch (scope.replace, ns.batch) maps a damaged file like every other write,
    and leaves no transaction open behind it."""
    with plugstore.open(url(tmp_path)) as store:
        scope = store.namespace("n").scope(g=1)
        scope.update({f"k{i:04d}": "x" * 300 for i in range(400)})
    _damage_a_page(tmp_path / "store.db")
    with plugstore.open(url(tmp_path)) as store:
        scope = store.namespace("n").scope(g=1)
        with pytest.raises(StoreDamagedError, match=r"damaged.*backup"):
            scope.replace({"a": 1})
        store.namespace("other")["k"] = 1  # the connection is not stuck in a transaction
        assert store.namespace("other")["k"] == 1


def test_a_file_that_is_no_database_is_a_store_damaged_error(tmp_path: Path) -> None:
    with plugstore.open(url(tmp_path)) as store:
        store.namespace("n")["k"] = 1
    with open(tmp_path / "store.db", "r+b") as f:
        f.write(b"\x00" * 100)  # the header: SQLite no longer knows the file
    with pytest.raises(StoreDamagedError, match=r"not a database.*backup"):
        plugstore.open(url(tmp_path))


def test_reads_do_not_wait_for_the_writers_lock_and_see_every_commit(tmp_path: Path) -> None:
    """Plain reads run on read-only connections: a thread holding the writer's
    connection (a long batch) does not hold them up, and a read sees a write committed
    just before on the writer's connection."""
    with plugstore.open(url(tmp_path)) as store:
        ns = store.namespace("n")
        ns["k"] = 1
        backend = store.backend
        held, release = threading.Event(), threading.Event()

        def hold_the_writer() -> None:
            with backend._locked():  # type: ignore[attr-defined]
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold_the_writer)
        holder.start()
        try:
            assert held.wait(5)
            got: list[object] = []
            reader = threading.Thread(
                target=lambda: got.extend([ns.get("k"), len(ns), list(ns.keys())])
            )
            reader.start()
            reader.join(5)
            assert not reader.is_alive(), "a read waited for the writer's lock"
            assert got == [1, 1, ["k"]]
        finally:
            release.set()
            holder.join()
        for i in range(50):  # read-your-writes across the two kinds of connection
            ns["k"] = i
            assert ns["k"] == i
            assert ns.incr("c") == i + 1  # a write returning a row stays on the writer


def test_read_connections_are_bounded_and_closed_with_the_store(tmp_path: Path) -> None:
    with plugstore.open(url(tmp_path), read_connections=2) as store:
        ns = store.namespace("n")
        ns.update({f"k{i}": i for i in range(100)})
        backend = store.backend

        def read_all() -> None:
            assert ns.get("k7") == 7
            assert len(list(ns.keys())) == 100

        race_threads(8, 20, read_all)
        assert backend._reader_count <= 2  # type: ignore[attr-defined]
        assert len(backend._readers) == backend._reader_count  # type: ignore[attr-defined]
        readers = list(backend._readers)  # type: ignore[attr-defined]
    assert backend._reader_count == 0  # type: ignore[attr-defined]
    for reader in readers:
        with pytest.raises(sqlite3.ProgrammingError):  # closed
            reader.execute("SELECT 1")
    with plugstore.open(url(tmp_path), read_connections=0) as store:
        assert store.namespace("n")["k3"] == 3
        assert store.backend._reader_count == 0  # type: ignore[attr-defined]
    for bad in (-1, 1.5, "many"):
        with pytest.raises(plugstore.ConfigurationError, match="read_connections"):
            plugstore.open(url(tmp_path), read_connections=bad)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_a_forked_child_reads_on_connections_of_its_own(tmp_path: Path) -> None:
    with plugstore.open(url(tmp_path)) as store:
        ns = store.namespace("n")
        ns["k"] = "parent"
        assert ns["k"] == "parent"  # the parent now has an idle read connection
        parents = list(store.backend._readers)  # type: ignore[attr-defined]
        assert parents
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                ok = ns["k"] == "parent"
                ns["k"] = "child"
                mine = store.backend._readers  # type: ignore[attr-defined]
                ok = ok and ns["k"] == "child" and not set(map(id, mine)) & set(map(id, parents))
                code = 0 if ok else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert ns["k"] == "child"
        assert parents[0].execute("SELECT 1").fetchone() == (1,)  # still the parent's, open
