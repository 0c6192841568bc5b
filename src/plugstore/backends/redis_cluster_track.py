"""A near cache on Redis Cluster, kept coherent by client tracking on every node.

Redis announces changed keys only to clients of the node that changed them, so the
listener keeps one RESP3 connection to every node of the cluster (``CLUSTER NODES`` of
a seed lists them), each with ``CLIENT TRACKING ON BCAST PREFIX <prefix>``:

* a master announces every write made on it (:mod:`.redistrack` applies the messages);
* a replica is tracked too, so a replica promoted by a failover (automatic or manual)
  announces the writes it takes on a connection the cache already holds.  A replica's
  own messages about replicated writes can come late (Redis 7.0 flushes them with its
  next event): they only drop entries that its master's message dropped already.

What tracking cannot tell is a node that stops talking (stopped, cut off by the
network) while another takes its slots, or a node the listener does not know taking
slots.  So the listener also sends ``CLUSTER INFO`` to every node in rounds, every
:attr:`ClusterTrackingListener.ROUND` seconds while the cache is in use (every
:attr:`~ClusterTrackingListener.IDLE_ROUND` when no read asked it for a second), and
the cache serves only while a round sent within the bound (25 ms) has been answered by
every node.  A node's messages come before its answer on the connection, so an answered
round means every change made before the round left has been applied.  Each answer must
also say ``cluster_state:ok``, the number of known nodes the listener found and the
current epoch it first read: a node joining changes the count on every node that meets
it (a slot can move only to a node its owner knows), and a failover or a slot handed
over bumps the epoch.  On any such change, on a node not answering a round within a
second, and on any lost connection, the listener connects anew and the
cache starts empty.  Once a second, one node's whole ``CLUSTER NODES`` list is compared
with the one the listener started from, so a failed node that comes back is tracked.
"""

from __future__ import annotations

import select
from collections import deque
from time import monotonic
from typing import TYPE_CHECKING, Any

from redis import exceptions as rx
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..nearcache import Listener
from .redistrack import CLIENT_NAME, apply, track

if TYPE_CHECKING:
    from ..nearcache import NearCache
    from .redis_cluster import RedisClusterBackend

#: What a connection's invalidation handler returns: the frame read was a push.
_PUSHED = object()
#: Flags of a node that cannot be reached (yet, or any more).
_UNREACHABLE = frozenset({"fail", "noaddr", "handshake"})

#: A node as ``CLUSTER NODES`` lists it: id, host, port, whether it is unreachable.
Member = tuple[str, str, int, bool]


class TopologyChanged(Exception):
    """The cluster is not as the listener found it (or not whole): connect anew."""


def members(text: str, host_of_myself: str) -> frozenset[Member]:
    """The nodes a ``CLUSTER NODES`` reply lists (a node that does not know its own
    address yet is given ``host_of_myself``, the host the reply came from)."""
    found = set()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        flags = set(fields[2].split(","))
        if "handshake" in flags:  # being met: not a member yet
            continue
        address = fields[1].split("@", 1)[0]  # ip:port@cport[,hostname]
        host, _, port = address.rpartition(":")
        if not host and "myself" in flags:
            host = host_of_myself
        found.add((fields[0], host, int(port), bool(flags & _UNREACHABLE)))
    return frozenset(found)


def cluster_info(reply: Any) -> dict[str, str]:
    """The fields of a ``CLUSTER INFO`` reply."""
    fields = (line.partition(":") for line in _text(reply).splitlines())
    return {name: value.strip() for name, _, value in fields}


class _Node:
    """One tracked node: its connection and the replies it owes the listener."""

    __slots__ = ("address", "conn", "host", "owed", "port", "signature")

    def __init__(self, host: str, port: int, conn: Any) -> None:
        self.host, self.port = host, port
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.conn = conn
        self.owed: deque[str] = deque()  # "info" / "nodes", in the order sent
        self.signature: tuple[str, str] | None = None  # (known nodes, current epoch)

    def send(self, *command: str) -> None:
        self.conn.send_command("CLUSTER", *command)
        self.owed.append(command[0])


class _Watch:
    """The listener's view of the cluster: the nodes it tracks and its rounds."""

    def __init__(self, found: frozenset[Member], nodes: list[_Node]) -> None:
        self.members = found
        self.nodes = nodes
        self.by_socket = {node.conn._sock: node for node in nodes}
        self.round_sent: float | None = None  # while a round is out
        self.owing = 0  # nodes yet to answer it
        self.known_since = monotonic()  # when the last answered round was sent
        self.next_census = self.known_since + ClusterTrackingListener.CENSUS
        self.census_turn = 0


class ClusterTrackingListener(Listener):
    """A near cache's coherence on Redis Cluster: every node tracked, and asked in
    rounds whether the cluster is still the one the listener tracks (module docs)."""

    #: Seconds between two rounds while reads ask the cache (then ``BOUND`` leaves
    #: room for a round trip and a busy thread).
    ROUND = 0.005
    #: Seconds between two rounds once no read asked the cache for ``IDLE_AFTER``.
    IDLE_ROUND = 0.25
    IDLE_AFTER = 1.0
    #: Seconds between two comparisons of the whole node list.
    CENSUS = 1.0
    #: Seconds a round may go unanswered before the listener connects anew (at most
    #: ``socket_timeout``): a stopped node, once the cluster flags it failed, is left out.
    ROUND_TIMEOUT = 1.0

    retry_on = (rx.ConnectionError, rx.TimeoutError, rx.ResponseError, OSError, TopologyChanged)

    def __init__(self, backend: RedisClusterBackend, cache: NearCache) -> None:
        self._backend = backend
        self._prefix = backend.prefix.encode()
        self._last: list[tuple[str, int]] = []  # the nodes last tracked: asked first
        self.description = (
            f"Redis CLIENT TRACKING (RESP3, broadcast) on every node of the cluster, "
            f"prefix {backend.prefix!r}; the nodes are asked every {self.ROUND * 1000:g} ms "
            "whether the cluster changed"
        )
        super().__init__(
            cache,
            f"plugstore near cache {backend.where}",
            backend.connect_timeout * 2 + 1,
            f"Redis Cluster at {backend.where}",
        )

    # -- connecting ----------------------------------------------------------------------

    def _connect(self, host: str, port: int) -> Any:
        connection_class, kwargs = self._backend.node_connection()
        conn: Any = connection_class(
            host=host,
            port=port,
            protocol=3,
            client_name=CLIENT_NAME,
            retry=Retry(NoBackoff(), 0),
            **kwargs,
        )
        try:
            conn.connect()
        except BaseException:
            conn.disconnect()
            raise
        return conn

    def _census(self) -> frozenset[Member]:
        """The node list of the first node that answers (the nodes tracked last, then
        the URL's seeds)."""
        tried = self._last + [s for s in self._backend.seeds if s not in self._last]
        error: BaseException | None = None
        for host, port in tried:
            try:
                conn = self._connect(host, port)
            except self.retry_on as exc:
                error = exc
                continue
            try:
                conn.send_command("CLUSTER", "NODES")
                return members(_text(conn.read_response()), host)
            except self.retry_on as exc:
                error = exc
            finally:
                conn.disconnect()
        raise TopologyChanged(f"no node answered CLUSTER NODES ({error})")

    def _open(self) -> _Watch:
        found = self._census()
        nodes: list[_Node] = []
        try:
            for _, host, port, unreachable in sorted(found):
                if unreachable:
                    continue
                conn = self._connect(host, port)
                nodes.append(_Node(host, port, conn))
                track(conn, self._prefix, self._heard)
            watch = _Watch(found, nodes)
            # The first round sets each node's signature; a node that knows another
            # number of nodes than the list read says the list is already out of date.
            started = monotonic()
            self._send_round(watch, started)
            for node in nodes:  # the last answer sets watch.known_since to started
                while node.owed:
                    self._read(watch, node)
        except BaseException:
            for node in nodes:
                node.conn.disconnect()
            raise
        self._last = [(node.host, node.port) for node in nodes]
        return watch

    def _hang_up(self, handle: Any) -> None:
        for node in handle.nodes:
            node.conn.disconnect()

    # -- listening -----------------------------------------------------------------------

    def _heard(self, message: Any) -> object:
        apply(self.cache, self._prefix, message)
        return _PUSHED

    def _send_round(self, watch: _Watch, now: float) -> None:
        census = now >= watch.next_census
        for node in watch.nodes:
            node.send("INFO")
        if census:
            watch.census_turn = (watch.census_turn + 1) % len(watch.nodes)
            watch.nodes[watch.census_turn].send("NODES")
            watch.next_census = now + self.CENSUS
        watch.round_sent = now
        watch.owing = len(watch.nodes)

    def _drain(self, handle: Any, timeout: float) -> float:
        watch: _Watch = handle
        now = monotonic()
        if watch.round_sent is None:
            idle = now - self.used_at > self.IDLE_AFTER
            if now - watch.known_since >= (self.IDLE_ROUND if idle else self.ROUND):
                self._send_round(watch, now)
        elif now - watch.round_sent > min(self.ROUND_TIMEOUT, self._backend.socket_timeout):
            late = [node.address for node in watch.nodes if node.owed]
            raise TopologyChanged(f"{', '.join(late)} did not answer CLUSTER INFO")
        readable, _, _ = select.select(list(watch.by_socket), [], [], timeout)
        for sock in readable:
            node = watch.by_socket[sock]
            while node.conn.can_read(timeout=0):
                self._read(watch, node)
        return watch.known_since

    def _read(self, watch: _Watch, node: _Node) -> None:
        """Read one frame from ``node``: a push (applied by :meth:`_heard`) or the
        answer it owes."""
        reply = node.conn.read_response(push_request=True)
        if reply is _PUSHED:
            return
        if not node.owed:
            raise rx.ResponseError(f"{node.address} answered what was not asked: {reply!r}")
        if node.owed.popleft() == "NODES":
            if members(_text(reply), node.host) != watch.members:
                raise TopologyChanged("the cluster's node list changed")
            return
        info = cluster_info(reply)
        if info.get("cluster_state") != "ok":
            raise TopologyChanged(f"{node.address} says cluster_state:{info.get('cluster_state')}")
        signature = (info.get("cluster_known_nodes", "?"), info.get("cluster_current_epoch", "?"))
        if node.signature is None:
            if signature[0] != str(len(watch.members)):
                raise TopologyChanged(f"{node.address} knows another list of nodes")
            node.signature = signature
        elif signature != node.signature:
            raise TopologyChanged(f"{node.address}: nodes or epoch changed")
        watch.owing -= 1
        if watch.owing == 0 and watch.round_sent is not None:
            watch.known_since = watch.round_sent
            watch.round_sent = None


def _text(reply: Any) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


__all__ = ["ClusterTrackingListener", "TopologyChanged", "cluster_info", "members"]
