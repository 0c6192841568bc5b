"""Redis Cluster: the conformance kit and the cluster's own behaviour, on a real cluster.

A module-wide local cluster (:mod:`redis_cluster`: 3 masters, 3 replicas, AOF with
``appendfsync always``, loopback ports picked at run time) serves the kit, every test
under a key prefix of its own.  Tests that move slots, kill nodes or break the cluster
start a cluster of their own, so the shared one stays whole.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import plugstore
import plugstore.aio as aio
from plugstore import registry
from plugstore.backends.redis import RedisBackend
from plugstore.backends.redis_cluster import RedisClusterBackend
from plugstore.backends.redis_cluster_aio import RedisClusterAsyncDriver
from plugstore.backends.rediscore import NamespaceOps, check_waited, waited_commands
from plugstore.errors import (
    BackendUnavailableError,
    ConfigurationError,
    NotReplicatedError,
    PoolExhaustedError,
)
from plugstore.testing import StoreConformance
from plugstore.url import StoreURL
from redis_cluster import LocalCluster, local_cluster, prefix_for, slot_of
from servers import IN_CI, assert_down_server_fails_fast, make_certs


class TestRedisCluster(StoreConformance):
    """The whole kit (sync and async behaviours) on the module's cluster."""

    @pytest.fixture(autouse=True)
    def _cluster(self, cluster: LocalCluster) -> None:
        self.cluster = cluster

    def make_url(self, tmp_path: Path) -> str:
        return self.cluster.url(prefix_for(tmp_path))


class TestRedisClusterNearCache(TestRedisCluster):
    """The whole kit through the near cache, coherent by tracking on every node."""

    options = {"cache": 1000}  # noqa: RUF012 - read by the kit only


# -- URL, registry, options -------------------------------------------------------------


def test_url_lists_seed_nodes_and_masks_the_password() -> None:
    url = StoreURL.parse("rediss+cluster://bob:s3cr3t@h1:7000,[::1]:7001,h3/?prefix=p:")
    assert url.addresses == (("h1", 7000), ("::1", 7001), ("h3", None))
    assert (url.host, url.port) == ("h1", 7000)
    assert "s3cr3t" not in str(url)
    assert "s3cr3t" not in repr(url)
    assert str(url).startswith("rediss+cluster://bob:***@h1:7000,[::1]:7001,h3")
    assert StoreURL.parse(url.render(mask=False)) == url
    for bad in ("redis+cluster://h1:7000,h2:x/", "redis+cluster://h1,,h2/"):
        with pytest.raises(ConfigurationError):
            StoreURL.parse(bad)


def test_cluster_schemes_name_the_cluster_backend() -> None:
    assert registry.resolve("redis+cluster") is RedisClusterBackend
    assert registry.resolve("rediss+cluster") is RedisClusterBackend
    assert registry.resolve("redis") is RedisBackend
    assert registry.resolve("rediss") is RedisBackend
    assert registry.resolve("postgresql+psycopg").name == "postgresql"  # a driver suffix
    assert "redis+cluster" in registry.available()


def test_options_are_validated(cluster: LocalCluster) -> None:
    for url, words in (
        (f"redis+cluster://{cluster.seeds}/1", "one database"),
        (cluster.url("p:", db="2"), "one database"),
        (cluster.url("p:", unix_socket="/tmp/r.sock"), "unix_socket"),
        (cluster.url("p:", wait="-1"), "wait"),
        (cluster.url("p:", wait_timeout="10"), "wait_timeout"),
        (cluster.url("p:", ssl_ca_certs="/x"), "rediss://"),
        (cluster.url("p:", nonsense="1"), "nonsense"),
    ):
        with pytest.raises(ConfigurationError, match=words):
            plugstore.open(url)


def test_seeds_down_at_start_fail_fast_and_clearly() -> None:
    assert_down_server_fails_fast(
        "redis+cluster://bob:s3cr3t-pw@127.0.0.1:1,127.0.0.1:2/?connect_timeout=2",
        where="127.0.0.1:1,127.0.0.1:2",
    )


def test_password_login_and_masking(tmp_path: Path) -> None:
    """A cluster with ``requirepass``: the URL's password logs in on every node (the
    ones found from the seeds too); a wrong one fails at open, saying to check the
    credentials; the password appears in no message, repr or info."""
    with local_cluster(tmp_path / "cluster", password="s3cr3t-pw") as secured:
        url = f"redis+cluster://bob:s3cr3t-pw@{secured.nodes[0].address}/?prefix=p:"
        url = url.replace("bob:", "default:")
        with plugstore.open(url) as store:
            for i in range(12):  # namespaces on every master
                store.namespace(f"n{i}")["k"] = i
            assert len(store.namespaces()) == 12
            shown = f"{store!r} {store.backend.url} {store.backend.info()}"
            assert "s3cr3t" not in shown

        async def main() -> None:
            async with aio.open(url) as astore:
                assert await astore.namespace("n3").get("k") == 3

        asyncio.run(main())
        wrong = url.replace("s3cr3t-pw", "s3cr3t-wrong")
        with pytest.raises(BackendUnavailableError) as err:
            plugstore.open(wrong)
        assert "check the username and password" in str(err.value)
        assert "s3cr3t" not in str(err.value)
        assert "s3cr3t" not in repr(err.value)

        async def refused() -> None:
            async with aio.open(wrong):
                pass

        with pytest.raises(BackendUnavailableError) as aerr:
            asyncio.run(refused())
        assert "check the username and password" in str(aerr.value)
        assert "s3cr3t" not in str(aerr.value)


def test_tls_rediss_cluster_verifies_every_node(tmp_path: Path) -> None:
    """A cluster speaking TLS only (clients, bus, replication): ``rediss+cluster://``
    with the right CA reaches every master, sync and async; another CA fails the
    verification at open; plain text to a TLS port fails, as plugstore errors."""
    if shutil.which("openssl") is None:
        if IN_CI:
            pytest.fail("CI must have openssl")
        pytest.skip("needs openssl")
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, cert, key, other_ca = make_certs(certs)
    with local_cluster(tmp_path / "cluster", tls=(ca, cert, key)) as secured:
        url = f"rediss+cluster://{secured.seeds}/?prefix=p:&ssl_ca_certs={ca}"
        with plugstore.open(url) as store:
            for i in range(12):  # namespaces on every master
                store.namespace(f"n{i}")["k"] = i
            assert len(store.namespaces()) == 12

        async def main() -> None:
            async with aio.open(url) as astore:
                assert await astore.namespace("n3").get("k") == 3

        asyncio.run(main())
        with pytest.raises(BackendUnavailableError, match="certificate verify failed"):
            plugstore.open(url.replace(str(ca), str(other_ca)))
        plain = f"redis+cluster://{secured.nodes[0].address}/?connect_timeout=2&socket_timeout=2"
        with pytest.raises(BackendUnavailableError):
            plugstore.open(plain)


def test_identity_ignores_seed_order_and_names_the_prefix(cluster: LocalCluster) -> None:
    seeds = [node.address for node in cluster.nodes]
    one = plugstore.open(f"redis+cluster://{','.join(seeds)}/?prefix=a:")
    two = plugstore.open(f"redis+cluster://{','.join(reversed(seeds))}/?prefix=a:")
    three = plugstore.open(f"redis+cluster://{','.join(seeds)}/?prefix=b:")
    try:
        assert one.backend.identity() == two.backend.identity()
        assert one.backend.identity() != three.backend.identity()
    finally:
        for store in (one, two, three):
            store.close()


def test_info_reports_the_cluster_and_its_durability(cluster: LocalCluster) -> None:
    with plugstore.open(cluster.url("p:", wait="1")) as store:
        info = store.backend.info()
    assert info["backend"] == "redis+cluster"
    assert "Redis Cluster 7" in info["server"]
    assert "3 masters" in info["server"]
    assert "1 replicas" in info["server"] or "replicas 1, 1, 1" in info["server"]
    assert info["persistence"].startswith("AOF, appendfsync always")
    assert info["wait"].startswith("1 replica")


# -- layout, namespaces across masters ----------------------------------------------------


def test_namespaces_and_purge_span_every_master(cluster: LocalCluster, tmp_path: Path) -> None:
    """Enough namespaces that each master holds some: ``namespaces()`` SCANs them all,
    and ``purge()`` sweeps expired members on each."""
    prefix = prefix_for(tmp_path)
    names = [f"plugin{i}" for i in range(30)]
    owners = {cluster.master_of_slot(slot_of(prefix, name)).port for name in names}
    assert owners == {master.port for master in cluster.masters()}, "not on every master"
    with plugstore.open(cluster.url(prefix)) as store:
        for name in names:
            store.namespace(name)["k"] = name
            store.namespace(name).set("short", 1, ttl=0.05)
        time.sleep(0.1)  # Redis expires the entries by its own clock; their members stay
        assert store.backend.purge() == dict.fromkeys(names, 1)
        assert store.namespaces() == sorted(names)
        for name in names[:10]:
            store.drop_namespace(name)
        assert store.namespaces() == sorted(names[10:])
        raw = store.backend.client  # type: ignore[attr-defined]
        assert raw.get(f"{prefix}{{plugin12}}:k:k".encode()) == b'"plugin12"'
        assert raw.zrange(f"{prefix}{{plugin12}}:i".encode(), 0, -1) == [b"k"]


def test_scripts_a_master_forgot_are_loaded_again_there(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """``SCRIPT FLUSH`` on the master of a namespace (a promoted replica has no scripts
    either): NOSCRIPT means nothing ran, so even ``incr`` goes again, sync and async,
    for single scripts and scripts in MULTI/EXEC, with and without ``wait``."""
    prefix = prefix_for(tmp_path)
    master = cluster.master_of_slot(slot_of(prefix, "n")).client()

    async def main() -> None:
        for wait in ("0", "1"):
            async with aio.open(cluster.url(prefix, wait=wait)) as astore:
                ans, ns = astore.namespace("n"), astore.sync.namespace("n")
                await ans.delete("c") if await ans.contains("c") else None
                for step in range(2):
                    master.script_flush()
                    assert ns.incr("c") == 2 * step + 1
                    master.script_flush()
                    assert await ans.incr("c") == 2 * step + 2
                    master.script_flush()
                    ns.set_many({"a": step, "b": step})
                    master.script_flush()
                    await ans.set_many({"c2": step, "d": step})
                    assert await ans.get_many(["a", "d"]) == {"a": step, "d": step}

    try:
        asyncio.run(main())
    finally:
        master.close()


# -- redirections ---------------------------------------------------------------------------


def _exercise(ns: Any, tag: str) -> None:
    """Every kind of request: a script, a command, MULTI/EXEC reads and writes, a lock."""
    ns[f"set-{tag}"] = tag
    assert ns[f"set-{tag}"] == tag
    ns.incr(f"count-{tag}")
    ns.set_many({f"many-{tag}": 1, f"many2-{tag}": 2}, ttl=3600)
    assert ns.get_many([f"many-{tag}", f"many2-{tag}"]) == {f"many-{tag}": 1, f"many2-{tag}": 2}
    ttl = ns.ttl(f"many-{tag}")
    assert ttl is not None
    assert ttl > 3000
    with ns.lock(f"lock-{tag}", timeout=5):
        pass
    assert f"set-{tag}" in list(ns.keys())


@pytest.mark.parametrize("wait", ["0", "1"])
def test_moved_slots_are_followed(own_cluster: LocalCluster, tmp_path: Path, wait: str) -> None:
    """A namespace's slot moves to another master after the store read the slot map:
    commands, transactions and (wait=1) plugstore's own WAIT pipelines get MOVED and
    follow it, sync and async; nothing reaches the caller."""
    prefix = prefix_for(tmp_path)
    slot = slot_of(prefix, "moving")

    async def main() -> None:
        async with aio.open(own_cluster.url(prefix, wait=wait)) as astore:
            store = astore.sync
            ns, ans = store.namespace("moving"), astore.namespace("moving")
            _exercise(ns, "before")
            await ans.set("async-before", 1)
            for round_ in range(2):
                source = own_cluster.master_of_slot(slot)
                target = next(m for m in own_cluster.masters() if m is not source)
                own_cluster.migrate_slot(slot, target)
                assert own_cluster.master_of_slot(slot) is target
                _exercise(ns, f"after{round_}")
                await ans.set(f"async-after{round_}", 1)
                assert await ans.incr("count-before") == 2 + round_
                assert await ans.get_many(["set-before", "async-before"]) == {
                    "set-before": "before",
                    "async-before": 1,
                }
                async with ans.lock("alock", timeout=5):
                    pass
            assert ns["count-before"] == 3
            assert len(ns) == len(list(ns.keys()))

    asyncio.run(main())


@pytest.mark.parametrize("wait", ["0", "1"])
def test_writes_while_a_slot_migrates(own_cluster: LocalCluster, tmp_path: Path, wait: str) -> None:
    """A slot moved key by key (``ASK`` for keys already gone, ``TRYAGAIN`` for scripts
    whose keys are split, then ``MOVED``) while a thread writes to its namespace and
    another task does from the event loop: no error, nothing lost."""
    prefix = prefix_for(tmp_path)
    slot = slot_of(prefix, "busy")
    done = threading.Event()
    errors: list[BaseException] = []
    counts = {"sync": 0, "async": 0}

    with plugstore.open(own_cluster.url(prefix, wait=wait)) as store:
        ns = store.namespace("busy")
        ns.set_many({f"seed{i:04d}": i for i in range(300)})  # keys to migrate

        def writer() -> None:
            try:
                while not done.is_set():
                    i = counts["sync"]
                    ns[f"s{i}"] = i
                    ns.incr("sync-count")
                    counts["sync"] += 1
            except BaseException as exc:
                errors.append(exc)

        async def awriter() -> None:
            async with aio.open(own_cluster.url(prefix, wait=wait)) as astore:
                ans = astore.namespace("busy")
                while not done.is_set():
                    i = counts["async"]
                    await ans.set_many({f"a{i}": i})
                    await ans.incr("async-count")
                    counts["async"] += 1

        def async_writer() -> None:
            try:
                asyncio.run(awriter())
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer), threading.Thread(target=async_writer)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.3)
            source = own_cluster.master_of_slot(slot)
            target = next(m for m in own_cluster.masters() if m is not source)
            own_cluster.migrate_slot(slot, target)
            time.sleep(0.3)
        finally:
            done.set()
            for thread in threads:
                thread.join(60)
        assert [f"{type(e).__name__}: {e}" for e in errors] == []
        assert own_cluster.master_of_slot(slot) is target
        assert counts["sync"] > 0
        assert counts["async"] > 0
        assert ns["sync-count"] == counts["sync"]
        assert ns["async-count"] == counts["async"]
        assert ns.get_many([f"seed{i:04d}" for i in range(300)]) == {
            f"seed{i:04d}": i for i in range(300)
        }
        assert all(ns[f"s{i}"] == i for i in range(counts["sync"]))
        assert all(ns[f"a{i}"] == i for i in range(counts["async"]))
        assert len(ns) == 300 + 2 + counts["sync"] + counts["async"]


# -- wait=N --------------------------------------------------------------------------------


def test_wait_counts_the_replicas_of_this_connections_write(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """WAIT counts the replicas that have this write: with the master's replica frozen,
    a write with wait=1 raises NotReplicatedError (the write is on the master), though
    the replica was in sync before; thawed, writes are confirmed again.  wait=2 with
    one replica per master can never be confirmed, and says so."""
    prefix = prefix_for(tmp_path)
    replica = cluster.replica_of(cluster.master_of_slot(slot_of(prefix, "n")))
    assert replica.proc is not None
    with plugstore.open(cluster.url(prefix, wait="1", wait_timeout="0.5")) as store:
        ns = store.namespace("n")
        ns["k"] = 0
        replica.proc.send_signal(signal.SIGSTOP)
        try:
            for write in (
                lambda: ns.__setitem__("k", 1),
                lambda: ns.incr("c"),
                lambda: ns.set_many({"m": 1}),
            ):
                with pytest.raises(NotReplicatedError) as err:
                    write()
                assert "0 of the 1 replicas" in str(err.value)
                assert "wait_timeout=0.5s" in str(err.value)
        finally:
            replica.proc.send_signal(signal.SIGCONT)
        assert ns.get_many(["k", "c", "m"]) == {"k": 1, "c": 1, "m": 1}  # on the master
        ns["k"] = 2
        assert ns.incr("c") == 2
    with plugstore.open(cluster.url(prefix, wait="2", wait_timeout="0.2")) as store:
        with pytest.raises(NotReplicatedError, match="1 of the 2 replicas"):
            store.namespace("n")["k"] = 3
        assert store.namespace("n")["k"] == 3
        assert store.namespace("n")["c"] == 2  # reads never wait


# -- connections ---------------------------------------------------------------------------


def test_a_busy_node_pool_says_so(cluster: LocalCluster, tmp_path: Path) -> None:
    """Every connection to a namespace's master held elsewhere: PoolExhaustedError
    naming the option, at once (async) or after connect_timeout (sync), not retried."""
    prefix = prefix_for(tmp_path)
    url = cluster.url(prefix, pool_max="1", connect_timeout="1")
    key = f"{prefix}{{n}}:i".encode()

    async def main() -> None:
        async with aio.open(url) as astore:
            driver = astore._driver
            assert isinstance(driver, RedisClusterAsyncDriver)
            node = driver._client.get_node_from_key(key)
            held = node.acquire_connection()
            try:
                with pytest.raises(PoolExhaustedError, match="all 1 connections to one node"):
                    await astore.namespace("n").set("k", 1)
            finally:
                node.release(held)
            await astore.namespace("n").set("k", 2)

    with plugstore.open(url) as store:
        client = store.backend.client  # type: ignore[attr-defined]
        pool = client.get_redis_connection(client.get_node_from_key(key)).connection_pool
        held = pool.get_connection()
        try:
            started = time.monotonic()
            with pytest.raises(PoolExhaustedError) as err:
                store.namespace("n")["k"] = 1
            assert time.monotonic() - started < 10
            assert "all 1 connections to one node stayed in use" in str(err.value)
            assert "pool_max" in str(err.value)
        finally:
            pool.release(held)
        store.namespace("n")["k"] = 1
        asyncio.run(main())
        assert store.namespace("n")["k"] == 2


def test_wait_rides_in_the_writes_pipeline() -> None:
    """WAIT follows the write in the same pipeline (so on its connection: WAIT counts
    the replicas that have that connection's last write), after MULTI/EXEC for a
    transaction, after ASKING and the write for an ASK redirection; reads carry none."""
    ops = NamespaceOps("p:", "n")
    single, many = ops.set("k", b"1"), ops.set_many([("a", b"1"), ("b", b"2")])
    assert single.write
    assert many.write
    assert not ops.get("k").write
    assert single.key == b"p:{n}:k:k"
    assert waited_commands(single, 1, 0.25, False) == [single.command, ("WAIT", 1, 250)]
    assert waited_commands(many, 2, 1, True) == [
        ("ASKING",),
        ("MULTI",),
        *(many.multi or ()),
        ("EXEC",),
        ("WAIT", 2, 1000),
    ]


def test_a_wait_that_fails_after_its_write_ran_is_not_replicated() -> None:
    """WAIT answered by an error after the write succeeded (a master turned replica
    while WAIT waited, which Redis unblocks with ``UNBLOCKED``): the write ran and may be
    lost, which is what NotReplicatedError says; a failed write is raised as it is."""
    from redis import exceptions as rx

    backend = RedisClusterBackend.__new__(RedisClusterBackend)
    backend.wait, backend.wait_timeout = 1, 1.0
    request = NamespaceOps("p:", "n").set("k", b"1")
    unblocked = rx.ResponseError("UNBLOCKED force unblock from blocking operation")
    with pytest.raises(NotReplicatedError, match="may have been replaced by a failover"):
        check_waited(backend, request, [1, unblocked], asking=False)
    with pytest.raises(rx.ResponseError, match="WRONGTYPE"):
        check_waited(backend, request, [rx.ResponseError("WRONGTYPE x"), unblocked], False)
    with pytest.raises(NotReplicatedError, match="0 of the 1 replicas"):
        check_waited(backend, request, [1, 0], asking=False)
    assert check_waited(backend, request, [1, 1], asking=False) == 1


# -- a cluster that is not whole --------------------------------------------------------------


def test_a_slot_nobody_serves_raises_plugstore_errors(
    own_cluster: LocalCluster, tmp_path: Path
) -> None:
    """A master and its replica both down: the cluster is not whole (CLUSTERDOWN), and
    every operation on it, sync and async, raises BackendUnavailableError within
    retry_timeout, saying what to do -- never a redis-py exception.  Once both are back
    the same store works again."""
    prefix = prefix_for(tmp_path)
    url = own_cluster.url(prefix, retry_timeout="2")
    master = own_cluster.master_of_slot(slot_of(prefix, "n"))
    replica = own_cluster.replica_of(master)

    async def main() -> None:
        async with aio.open(url) as astore:
            store, ans = astore.sync, astore.namespace("n")
            ns = store.namespace("n")
            ns["k"] = 1
            master.kill()
            replica.kill()
            operations: list[Callable[[], Any]] = [
                lambda: ns["k"],
                lambda: ns.__setitem__("k", 2),
                lambda: ns.incr("c"),
                lambda: ns.set_many({"a": 1}),
                lambda: list(ns.keys()),
                lambda: store.namespaces(),
            ]
            for operation in operations:
                started = time.monotonic()
                with pytest.raises(BackendUnavailableError) as err:
                    operation()
                assert time.monotonic() - started < 15
                assert "Redis Cluster at" in str(err.value)
                assert "redis-cli --cluster check" in str(err.value)
            for coroutine in (ans.get("k"), ans.set("k", 2), ans.incr("c")):
                with pytest.raises(BackendUnavailableError, match="redis-cli --cluster check"):
                    await coroutine
            master.start()
            replica.start()
            deadline = time.monotonic() + 60
            master.wait_listening(deadline)
            replica.wait_listening(deadline)
            own_cluster.wait_ok()
            ns["k"] = 3
            assert await ans.get("k") == 3
            assert store.namespaces() == ["n"]

    asyncio.run(main())


# -- failover ------------------------------------------------------------------------------


class Failover:
    """Kill the master of ``slot`` now, wait for its replica's promotion, start the
    killed node again (it comes back as a replica) and wait until the cluster is whole;
    the times of each step, from ``t0``."""

    def __init__(self, cluster: LocalCluster, slot: int, t0: float) -> None:
        self.cluster, self.slot, self.t0 = cluster, slot, t0
        self.times: dict[str, float] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            victim = self.cluster.master_of_slot(self.slot)
            victim.kill()
            self.times["killed"] = time.monotonic() - self.t0
            deadline = time.monotonic() + 60
            while True:
                try:
                    if self.cluster.master_of_slot(self.slot) is not victim:
                        break
                except LookupError:
                    pass
                assert time.monotonic() < deadline, "no replica was promoted"
                time.sleep(0.02)
            self.times["promoted"] = time.monotonic() - self.t0
            victim.start()
            victim.wait_listening(time.monotonic() + 30)
            self.cluster.wait_ok()
            self.times["whole"] = time.monotonic() - self.t0
        except BaseException as exc:
            self.error = exc


@pytest.mark.slow
def test_failover_loses_no_acknowledged_write(own_cluster: LocalCluster, tmp_path: Path) -> None:
    """10,000 writes -- ``incr`` of one counter and sets across namespaces on every
    master -- while the master of the counter's namespace is SIGKILLed mid-way and its
    replica takes over.  With wait=1 and appendfsync always: every acknowledged write
    is there afterwards; the only errors come while the cluster is not whole (between
    the kill and the killed node's return as a replica), and are plugstore's."""
    prefix = prefix_for(tmp_path)
    url = own_cluster.url(prefix, wait="1", retry_timeout="30")
    names = [f"ns{i}" for i in range(6)]
    victim_slot = slot_of(prefix, "counter")
    errors: list[tuple[float, BaseException]] = []
    acked_incrs = unknown_incrs = 0
    acked_sets: list[tuple[str, str, int]] = []
    first_ok_after_kill: float | None = None
    with plugstore.open(url) as store:
        counter = store.namespace("counter")
        t0 = time.monotonic()
        failover = Failover(own_cluster, victim_slot, t0)
        killer = threading.Timer(2.0, failover.run)
        killer.start()
        try:
            for i in range(5_000):
                try:
                    counter.incr("n")
                    acked_incrs += 1
                    if "killed" in failover.times and first_ok_after_kill is None:
                        first_ok_after_kill = time.monotonic() - t0
                except BackendUnavailableError as exc:
                    errors.append((time.monotonic() - t0, exc))
                    unknown_incrs += 1
                name = names[i % len(names)]
                try:
                    store.namespace(name)[f"k{i}"] = i
                    acked_sets.append((name, f"k{i}", i))
                except BackendUnavailableError as exc:
                    errors.append((time.monotonic() - t0, exc))
            loop_done = time.monotonic() - t0
        finally:
            killer.join(120)
        assert failover.error is None, failover.error
        times = failover.times
        assert times["whole"] < loop_done, "the failover must land while writes run"
        late = [(at, exc) for at, exc in errors if not times["killed"] <= at <= times["whole"]]
        assert late == []
        assert first_ok_after_kill is not None
        # A refused connection (the dead master, before the promotion) ran nothing, so
        # even incr waits for the failover: only what was in flight at the kill is
        # unknown, besides the writes the promoted master could not have confirmed.
        in_flight = [e for _, e in errors if not isinstance(e, NotReplicatedError)]
        assert len(in_flight) <= 2, in_flight
        lost = [(n, k) for n, k, v in acked_sets if store.namespace(n).get(k) != v]
        assert lost == []
        assert acked_incrs <= counter["n"] <= acked_incrs + unknown_incrs
        print(
            f"\nfailover: {acked_incrs} incrs + {len(acked_sets)} sets acknowledged, "
            f"{len(errors)} errors ({unknown_incrs} incrs unknown), counter {counter['n']}; "
            f"killed at {times['killed']:.2f}s, promoted {times['promoted']:.2f}s, "
            f"first incr after the kill {first_ok_after_kill:.2f}s, whole "
            f"{times['whole']:.2f}s, lost 0"
        )


@pytest.mark.slow
def test_async_failover_loses_no_acknowledged_write(
    own_cluster: LocalCluster, tmp_path: Path
) -> None:
    """The failover test through ``plugstore.aio``: 3,000 incrs and 3,000 sets."""
    prefix = prefix_for(tmp_path)
    url = own_cluster.url(prefix, wait="1", retry_timeout="30")
    victim_slot = slot_of(prefix, "counter")

    async def main() -> None:
        errors: list[tuple[float, BaseException]] = []
        acked_incrs = unknown_incrs = 0
        acked_sets: list[int] = []
        async with aio.open(url) as astore:
            assert isinstance(astore._driver, RedisClusterAsyncDriver)
            counter, other = astore.namespace("counter"), astore.namespace("other")
            t0 = time.monotonic()
            failover = Failover(own_cluster, victim_slot, t0)
            killer = threading.Timer(1.0, failover.run)
            killer.start()
            try:
                for i in range(3_000):
                    try:
                        await counter.incr("n")
                        acked_incrs += 1
                    except BackendUnavailableError as exc:
                        errors.append((time.monotonic() - t0, exc))
                        unknown_incrs += 1
                    try:
                        await counter.set(f"k{i}", i)
                        await other.set(f"k{i}", i)
                        acked_sets.append(i)
                    except BackendUnavailableError as exc:
                        errors.append((time.monotonic() - t0, exc))
                loop_done = time.monotonic() - t0
            finally:
                await asyncio.to_thread(killer.join, 120)
            assert failover.error is None, failover.error
            times = failover.times
            assert times["whole"] < loop_done, "the failover must land while writes run"
            assert [e for at, e in errors if not times["killed"] <= at <= times["whole"]] == []
            found = await counter.get_many([f"k{i}" for i in acked_sets])
            assert found == {f"k{i}": i for i in acked_sets}
            assert acked_incrs <= await counter.get("n") <= acked_incrs + unknown_incrs
            in_flight = [e for _, e in errors if not isinstance(e, NotReplicatedError)]
            assert len(in_flight) <= 2, in_flight
            print(
                f"\nasync failover: {acked_incrs} incrs + {len(acked_sets)} set pairs "
                f"acknowledged, {len(errors)} errors, counter {await counter.get('n')}; "
                f"killed {times['killed']:.2f}s, promoted {times['promoted']:.2f}s, whole "
                f"{times['whole']:.2f}s, lost 0"
            )

    asyncio.run(main())
