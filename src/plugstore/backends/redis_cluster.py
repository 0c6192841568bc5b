"""``redis+cluster://host:7000,host:7001/`` and ``rediss+cluster://`` (TLS) -- Redis Cluster
through redis-py's ``RedisCluster``.

The layout, scripts and requests are the Redis backend's (:mod:`.redis`, built by
:mod:`.rediscore`): every key of a namespace carries the hash tag ``{<namespace>}``, so a
namespace lives in one hash slot, on one master, and every script, ``MULTI``/``EXEC``
transaction, ``MGET`` and lock of it is a single-slot command that the cluster client
routes by its keys.  Only what spans namespaces or nodes differs, and is overridden here:

* **Namespaces** and ``purge`` across namespaces ``SCAN`` every master (redis-py's
  ``scan_iter`` walks each one's cursor); a listing that meets a failover starts again.
* **Scripts** are loaded on every master when the store opens, and on the master that
  answered ``NOSCRIPT`` after that: a replica promoted by a failover (or a master added
  by resharding) has none, as Redis does not replicate its script cache.
* **Redirections and failovers**: ``MOVED`` and ``ASK`` are followed (by redis-py for a
  command, by plugstore for a transaction, whose redirection comes back to it); a
  ``CLUSTERDOWN``, a ``TRYAGAIN`` during a migration, and a node that refuses the
  connection mean nothing ran, so any request waits and is sent again, until
  ``retry_timeout``.  A connection lost after a request went out follows the Redis
  backend's rule: only what is safe to repeat is sent again.
* **wait=N**: every write is followed, on the same connection, by ``WAIT N
  wait_timeout`` on the master that ran it; fewer than N replicas confirming raises
  :class:`~plugstore.errors.NotReplicatedError` (the write was applied on the master but
  may not survive its failure).
* **Connections**: a blocking pool of ``pool_max`` connections per node.

Options: those of the Redis backend but ``db`` (a cluster has database 0 only) and
``unix_socket``, plus ``wait`` (replicas that must confirm each write, default 0) and
``wait_timeout`` (seconds WAIT waits for them, default 1).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import redis
from redis import exceptions as rx
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from ..backend import Options
from ..errors import ConfigurationError
from ..url import StoreURL
from .redis import RedisBackend

if TYPE_CHECKING:
    from ..nearcache import Coherence, NearCache
from .rediscore import (
    ERRORS,
    SCRIPTS,
    Request,
    check_waited,
    never_sent,
    unavailable,
    waited_commands,
)

#: MOVED/ASK redirections one request follows before it gives up and waits for the
#: cluster's map to settle (plugstore's retry rules then apply).
REDIRECTS = 5


def address_text(host: str, port: int) -> str:
    """``host:port``, an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class RedisClusterBackend(RedisBackend):
    """The Redis backend on a Redis Cluster: the same layout and requests, sent by
    redis-py's ``RedisCluster`` to the master of each namespace's hash slot."""

    name = "redis+cluster"
    async_driver = "plugstore.backends.redis_cluster_aio:RedisClusterAsyncDriver"
    engine = "Redis Cluster"
    pool_scope = " to one node"

    def __init__(self, url: StoreURL, options: Options) -> None:
        if url.path not in ("", "0"):
            raise ConfigurationError(
                f"a Redis Cluster has one database, 0: remove /{url.path} from the URL "
                "(use the prefix option to keep stores apart)"
            )
        if "db" in options and str(options.take("db", "0", str)) != "0":
            raise ConfigurationError("a Redis Cluster has one database, 0: drop the db option")
        if "unix_socket" in options:
            raise ConfigurationError(
                "Redis Cluster nodes are reached over TCP (they announce host and port to "
                "each other): drop the unix_socket option"
            )
        super().__init__(url, options)
        self.wait = options.take("wait", 0)
        if self.wait < 0:
            raise ConfigurationError("wait must be a number of replicas, 0 or more")
        self.wait_timeout = options.take("wait_timeout", 1.0)
        if not 0 < self.wait_timeout < self.socket_timeout:
            raise ConfigurationError(
                f"wait_timeout must be above 0 and below socket_timeout "
                f"({self.socket_timeout}s), or every WAIT would read as a lost connection"
            )
        self.seeds = [(host or "localhost", port or 6379) for host, port in url.addresses]
        if not self.seeds:
            self.seeds = [("localhost", 6379)]
        self.where = ",".join(address_text(host, port) for host, port in self.seeds)

    def near_cache_coherence(self, cache: NearCache) -> Coherence:
        from .redis_cluster_track import ClusterTrackingListener

        return ClusterTrackingListener(self, cache)

    # -- connections --------------------------------------------------------------------

    def cluster_kwargs(self) -> dict[str, Any]:
        """The cluster client's arguments (sync and async alike), without its retry
        policy and pool class, which are each flavor's own."""
        kwargs: dict[str, Any] = {
            "max_connections": self.pool_max,  # per node
            "username": self._username,
            "password": self._password,
            "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": self.socket_timeout,
            "client_name": "plugstore",
        }
        if self.tls:
            kwargs["ssl"] = True
            kwargs.update(self._ssl)
        return kwargs

    def node_connection(self) -> tuple[type[redis.Connection], dict[str, Any]]:
        """The class and arguments (but host and port) of a connection of one's own to
        one node, as the cluster client makes them (the near cache's listener)."""
        kwargs: dict[str, Any] = {
            "username": self._username,
            "password": self._password,
            "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": self.socket_timeout,
        }
        if self.tls:
            kwargs.update(self._ssl)
            return redis.SSLConnection, kwargs
        return redis.Connection, kwargs

    def open(self) -> None:
        # One client for the backend's life, as the Redis backend keeps one pool.
        if self.client is None:
            try:
                self.client = RedisCluster(
                    startup_nodes=[
                        ClusterNode(host, port)  # type: ignore[no-untyped-call]
                        for host, port in self.seeds
                    ],
                    # plugstore decides what is sent again (see rediscore.recovery):
                    # redis-py would re-send any command after a lost connection.
                    retry=Retry(NoBackoff(), 0),
                    connection_pool_class=redis.BlockingConnectionPool,
                    timeout=self.connect_timeout,  # waiting for a pooled connection
                    **self.cluster_kwargs(),
                )
            except ERRORS as exc:
                raise unavailable(self, exc) from None
        try:
            self.call(lambda: self.load_scripts(None), retry=False)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect_connection_pools()  # reconnects lazily on reopen

    def advice(self, exc: BaseException) -> str:
        text = str(exc)
        if isinstance(exc, rx.AuthenticationError) or "password" in text or "NOAUTH" in text:
            return " (check the username and password the URL gives)"
        if "cannot be connected" in text:  # no seed node answered the first map
            return " (no seed node answered: check the host:port list of the URL)"
        return (
            " (while a master is down the cluster is not whole: its replica takes over "
            "after the cluster's cluster-node-timeout; check the cluster with `redis-cli "
            "--cluster check HOST:PORT`, and raise retry_timeout to wait longer)"
        )

    def unsent(self, exc: Exception) -> bool:
        # A node that refuses connections (a master killed, its replica not yet
        # promoted) ran nothing: any request waits for the failover and goes again.
        return never_sent(exc)

    def refresh(self) -> None:
        """Read the cluster's slot map again (after a lost connection: a failover may
        have moved the slot).  redis-py does so itself after a command, not after a
        transaction, nor after plugstore's own ``WAIT`` pipelines."""
        with contextlib.suppress(*ERRORS):  # no node answers: the next attempt says so
            self.client.nodes_manager.initialize()

    def load_scripts(self, failed: Request[Any] | None) -> None:
        """Load the scripts on the master of ``failed``'s slot (every master for
        ``None``): one pipeline per node."""
        key = failed.key if failed is not None else None
        nodes = self.client.get_primaries() if key is None else [self._node(key)]
        try:
            for node in nodes:
                pipe = self.client.get_redis_connection(node).pipeline(transaction=False)
                for text in SCRIPTS.values():
                    pipe.execute_command("SCRIPT LOAD", text)
                pipe.execute()
        except (rx.ConnectionError, rx.TimeoutError):
            self.refresh()
            raise

    def _node(self, key: bytes) -> Any:
        return self.client.get_node_from_key(key)

    # -- requests ------------------------------------------------------------------------

    def send(self, request: Request[Any]) -> Any:
        waited = bool(self.wait and request.write)
        try:
            return self._send_waited(request) if waited else super().send(request)
        except (rx.ConnectionError, rx.TimeoutError):
            if waited or request.multi is not None:  # redis-py refreshes after a command
                self.refresh()
            raise

    def _send_waited(self, request: Request[Any]) -> Any:
        """Send ``request`` and ``WAIT`` on one connection to its slot's master,
        following ASK redirections; a MOVED one updates the slot map and is raised
        (nothing ran: the request is sent again)."""
        key = request.key
        assert key is not None  # every write names its namespace's keys
        node, asking = self._node(key), False
        for _ in range(REDIRECTS):
            pipe = self.client.get_redis_connection(node).pipeline(transaction=False)
            commands = waited_commands(request, self.wait, self.wait_timeout, asking)
            for command in commands:
                pipe.execute_command(*command)
            replies = pipe.execute(raise_on_error=False)
            try:
                return check_waited(self, request, replies, asking)
            except rx.MovedError as moved:
                self.client.nodes_manager.move_slot(moved)
                raise
            except rx.AskError as ask:
                node = self.client.get_node(host=ask.host or node.host, port=ask.port)
                if node is None:
                    raise
                asking = True
        raise rx.TryAgainError("the slot kept moving")

    # -- backend API ---------------------------------------------------------------------

    def identity(self) -> tuple[object, ...]:
        loopback = ("localhost", "127.0.0.1", "::1")
        seeds = sorted(("loopback" if h in loopback else h.lower(), p) for h, p in self.seeds)
        return (self.name, tuple(seeds), self.prefix)

    def _masters_info(self, section: str) -> dict[str, dict[str, Any]]:
        """``INFO section`` of every master, by node name (redis-py's cluster client
        knows the masters; their replicas are in their ``INFO replication``)."""

        def ask() -> dict[str, dict[str, Any]]:
            replies = self.client.info(section, target_nodes=RedisCluster.PRIMARIES)
            return {name: dict(reply) for name, reply in replies.items()}

        return self.call(ask, retry=True)

    def persistence(self) -> str:
        """The masters' durability setting, in words (for ``plugstore doctor``)."""
        infos = self._masters_info("persistence")
        try:
            replies = self.client.config_get("appendfsync", target_nodes=RedisCluster.PRIMARIES)
            fsyncs = {name: reply.get("appendfsync", "?") for name, reply in replies.items()}
        except ERRORS:  # CONFIG may be disabled or renamed
            fsyncs = {}
        settings = {
            f"AOF, appendfsync {fsyncs.get(name, '?')}"
            if int(info.get("aof_enabled", 0))
            else "no AOF: a master's restart loses what its last snapshot missed"
            for name, info in infos.items()
        }
        text = "; ".join(sorted(settings))
        return f"{text} (all {len(infos)} masters)" if len(settings) == 1 else f"mixed: {text}"

    def info(self) -> dict[str, str]:
        servers = self._masters_info("server")
        replication = self._masters_info("replication")
        versions = sorted({str(info.get("redis_version", "?")) for info in servers.values()})
        replicas = ", ".join(
            str(replication[name].get("connected_slaves", "?")) for name in sorted(replication)
        )
        facts = super(RedisBackend, self).info()
        return {
            **facts,
            "server": (
                f"Redis Cluster {', '.join(versions)}: {len(servers)} masters, replicas "
                f"{replicas} (seeds {self.where})"
            ),
            "driver": f"redis-py {redis.__version__} (RedisCluster)",
            "prefix": self.prefix,
            "wait": f"{self.wait} replicas per write" if self.wait else "0 (asynchronous)",
            "persistence": self.persistence(),
        }


__all__ = ["RedisClusterBackend", "address_text"]
