"""The near cache on Redis Cluster: coherent across every master, failovers, a node that
stops answering and a slot moved to a node that joined after the cache started.

The whole conformance kit through the cache runs in test_redis_cluster.py
(``TestRedisClusterNearCache``); here are the cluster's own events.  The rule checked
everywhere: a read through the cache that starts more than the cache's bound
(``Listener.BOUND``) after a write returned shows that write.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import plugstore
from plugstore.backends.redis_cluster_track import ClusterTrackingListener, cluster_info, members
from plugstore.errors import BackendUnavailableError, NotReplicatedError
from plugstore.nearcache import Listener
from redis_cluster import LocalCluster, prefix_for, slot_of

BOUND = Listener.BOUND


def listener(store: plugstore.Store) -> ClusterTrackingListener:
    cache = store.backend.near_cache
    assert cache is not None
    assert isinstance(cache.coherence, ClusterTrackingListener)
    return cache.coherence


def tracked(store: plugstore.Store) -> int:
    """How many nodes the store's listener holds a connection to (0: reconnecting)."""
    handle = listener(store)._handle
    return 0 if handle is None else len(handle.nodes)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.01)


def cached(store: plugstore.Store, namespace: str) -> Any:
    """Read ``k`` of ``namespace``; what the cache then holds for it (decoded)."""
    store.namespace(namespace).get("k")
    cache = store.backend.near_cache
    assert cache is not None
    entry = cache.entries.get((namespace, "k"))
    return None if entry is None or entry[0] is None else store.codec.decode(entry[0])


def serving(store: plugstore.Store) -> bool:
    return listener(store).check()


class FreshReads:
    """Writes 1, 2, ... to one key through a store without a cache; after each write
    returns, waits out the cache's bound and reads the key through the cached store,
    which must show that write.  A write that raised leaves the key unknown: the read
    after it is not checked."""

    def __init__(self, reader: plugstore.Store, writer: plugstore.Store, namespace: str) -> None:
        self.reader, self.writer = reader, writer
        self.cached = reader.namespace(namespace)
        self.plain = writer.namespace(namespace)
        self.written = 0
        self.stale: list[tuple[int, Any]] = []
        self.errors: list[BaseException] = []
        self.served = 0  # checked reads the cache was allowed to answer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> None:
        self.written += 1
        try:
            self.plain["k"] = self.written
        except BackendUnavailableError as exc:
            self.errors.append(exc)
            return
        time.sleep(BOUND + 0.002)
        self.served += serving(self.reader)
        got = self.cached.get("k")
        if got != self.written:
            self.stale.append((self.written, got))

    def __enter__(self) -> FreshReads:
        def loop() -> None:
            while not self._stop.is_set():
                self.step()

        self._thread = threading.Thread(target=loop)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(120)


def test_writes_on_every_master_are_heard(cluster: LocalCluster, tmp_path: Path) -> None:
    prefix = prefix_for(tmp_path)
    url = cluster.url(prefix)
    by_master: dict[int, str] = {}
    for i in range(200):
        by_master.setdefault(cluster.master_of_slot(slot_of(prefix, f"ns{i}")).port, f"ns{i}")
        if len(by_master) == 3:
            break
    assert len(by_master) == 3, "three namespaces, one on each master"
    with plugstore.open(url, cache=100) as reader, plugstore.open(url) as writer:
        wait_until(lambda: serving(reader), 10, "the cache serves")
        assert tracked(reader) == 6  # masters and replicas
        for name in by_master.values():
            writer.namespace(name)["k"] = "old"
            # (The write's announcements -- its master's, then its replica's -- may
            # cancel the first reads' filling: read until the value is kept.)
            wait_until(lambda n=name: cached(reader, n) == "old", 5, "cached")
        for name in by_master.values():
            writer.namespace(name)["k"] = "new"
        time.sleep(BOUND)
        for name in by_master.values():
            assert reader.namespace(name).get("k") == "new"
            del writer.namespace(name)["k"]
        time.sleep(BOUND)
        for name in by_master.values():
            assert reader.namespace(name).get("k") is None


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["", "FORCE", "TAKEOVER"])
def test_a_manual_failover_serves_no_stale_read(
    own_cluster: LocalCluster, tmp_path: Path, mode: str
) -> None:
    """``CLUSTER FAILOVER [FORCE|TAKEOVER]`` on the replica of a cached namespace's
    master: the old master stays up and connected (now a replica), so only the listener's
    tracking of the promoted node and its rounds can tell the cache about later writes."""
    prefix = prefix_for(tmp_path)
    master = own_cluster.master_of_slot(slot_of(prefix, "hot"))
    replica = own_cluster.replica_of(master)
    with (
        plugstore.open(own_cluster.url(prefix), cache=100) as reader,
        plugstore.open(own_cluster.url(prefix, wait="1", retry_timeout="30")) as writer,
    ):
        wait_until(lambda: serving(reader), 10, "the cache serves")
        with FreshReads(reader, writer, "hot") as reads:
            wait_until(lambda: reads.served >= 5, 20, "reads answered by the cache")
            replica.cli("cluster", "failover", *([mode] if mode else []))
            wait_until(lambda: "role:master" in replica.cli("info", "replication"), 30, "promoted")
            own_cluster.wait_ok()
            wait_until(lambda: serving(reader), 10, "the cache serves again")
            after = reads.served
            time.sleep(0.5)
        assert reads.stale == []
        assert reads.served > after, "reads were answered by the cache after it"
        # No node died: the only errors are writes the switch left unconfirmed.
        assert [e for e in reads.errors if not isinstance(e, NotReplicatedError)] == []
        assert tracked(reader) == 6


@pytest.mark.slow
def test_a_killed_master_serves_no_stale_read(own_cluster: LocalCluster, tmp_path: Path) -> None:
    """SIGKILL of a cached namespace's master while another store writes to it: reads
    through the cache stay fresh through the failover, and the cache serves again
    once the cluster is whole (the killed node back as a replica)."""
    from test_redis_cluster import Failover

    prefix = prefix_for(tmp_path)
    with (
        plugstore.open(own_cluster.url(prefix, retry_timeout="30"), cache=100) as reader,
        plugstore.open(own_cluster.url(prefix, wait="1", retry_timeout="30")) as writer,
    ):
        wait_until(lambda: serving(reader), 10, "the cache serves")
        with FreshReads(reader, writer, "hot") as reads:
            wait_until(lambda: reads.served >= 5, 20, "reads answered by the cache")
            failover = Failover(own_cluster, slot_of(prefix, "hot"), time.monotonic())
            failover.run()
            assert failover.error is None, failover.error
            wait_until(lambda: serving(reader) and tracked(reader) == 6, 15, "serving again")
            served = reads.served
            time.sleep(0.5)
        assert reads.stale == []
        assert reads.served > served
        # Besides the writes the promoted master could not have confirmed (no replica
        # until the killed node is back), only those in flight at the kill failed.
        in_flight = [e for e in reads.errors if not isinstance(e, NotReplicatedError)]
        assert len(in_flight) <= 2, in_flight


def test_a_node_that_stops_answering_stops_the_cache(
    own_cluster: LocalCluster, tmp_path: Path
) -> None:
    """A replica frozen by SIGSTOP cannot say whether it took its master's slots: the
    cache stops serving within its bound (reads go to the cluster, still fresh), serves
    again on the other nodes once the cluster flags it failed, and tracks it again once
    it answers."""
    prefix = prefix_for(tmp_path)
    url = own_cluster.url(prefix, socket_timeout="2")
    with plugstore.open(url, cache=100) as reader, plugstore.open(url) as writer:
        ns = reader.namespace("hot")
        writer.namespace("hot")["k"] = 1
        wait_until(lambda: serving(reader), 10, "the cache serves")
        frozen = own_cluster.replica_of(own_cluster.master_of_slot(slot_of(prefix, "other")))
        assert frozen.proc is not None
        os.kill(frozen.proc.pid, signal.SIGSTOP)
        try:
            stopped = time.monotonic()
            # Keep the cache in use, as a bot would, and watch it give up serving.
            wait_until(lambda: ns.get("k") == 1 and not serving(reader), 5, "stops serving")
            assert time.monotonic() - stopped < 1.0  # rounds, not a socket timeout
            writer.namespace("hot")["k"] = 2
            assert ns.get("k") == 2  # from the cluster
            wait_until(lambda: ns.get("k") and serving(reader), 30, "serves without it")
            assert tracked(reader) == 5
            writer.namespace("hot")["k"] = 3
            time.sleep(BOUND)
            assert ns.get("k") == 3
        finally:
            os.kill(frozen.proc.pid, signal.SIGCONT)
        wait_until(lambda: ns.get("k") and tracked(reader) == 6, 30, "tracks it again")
        wait_until(lambda: serving(reader), 10, "serves with it")


def test_a_slot_moved_to_a_new_node_is_heard(
    own_cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A master joins after the cache started and is given a cached namespace's slot.
    The other nodes' count of known nodes changes as they meet it, so the listener
    tracks it before a slot can move there.  (The once-a-second comparison of node
    lists is turned off here, to test the count alone.)"""
    monkeypatch.setattr(ClusterTrackingListener, "CENSUS", 3600.0)
    prefix = prefix_for(tmp_path)
    url = own_cluster.url(prefix)
    with plugstore.open(url, cache=100) as reader, plugstore.open(url) as writer:
        ns = reader.namespace("hot")
        writer.namespace("hot")["k"] = 1
        wait_until(lambda: serving(reader) and cached(reader, "hot") == 1, 10, "cached")
        newcomer = own_cluster.add_master()
        own_cluster.migrate_slot(slot_of(prefix, "hot"), newcomer)
        own_cluster.wait_ok()
        # Cached anew, read from the newcomer:
        wait_until(lambda: serving(reader) and cached(reader, "hot") == 1, 10, "serves again")
        assert tracked(reader) == 7
        writer.namespace("hot")["k"] = 2  # on the newcomer
        time.sleep(BOUND)
        assert ns.get("k") == 2


def test_node_lists_are_read_as_the_cluster_writes_them() -> None:
    """``CLUSTER NODES`` lines: an IPv6 address, a hostname after the bus port, a failed
    node (listed, flagged unreachable), a node being met (left out), and a node that
    does not know its own address yet (given the host the reply came from)."""
    text = (
        "a1 ::1:7000@17000 myself,master - 0 0 1 connected 0-5460\n"
        "b2 10.0.0.2:7001@17001,node-b.local master - 0 1 2 connected 5461-10922\n"
        "c3 10.0.0.3:7002@17002 master,fail - 0 1 3 disconnected\n"
        "d4 10.0.0.4:7003@17003 handshake - 0 0 0 connected\n"
        "e5 :7004@17004 myself,slave b2 0 0 2 connected\n"
        "\n"
    )
    assert members(text, "127.0.0.1") == {
        ("a1", "::1", 7000, False),
        ("b2", "10.0.0.2", 7001, False),
        ("c3", "10.0.0.3", 7002, True),
        ("e5", "127.0.0.1", 7004, False),
    }
    info = cluster_info(b"cluster_state:ok\r\ncluster_known_nodes:6\r\ncluster_current_epoch:7\r\n")
    assert (info["cluster_state"], info["cluster_known_nodes"]) == ("ok", "6")
    assert info["cluster_current_epoch"] == "7"
