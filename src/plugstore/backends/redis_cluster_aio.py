"""The Redis Cluster backend's native async driver, on ``redis.asyncio``'s ``RedisCluster``.

The Redis async driver (:mod:`.redis_aio`) with the client swapped: the same requests
(:mod:`.rediscore`), buckets, locks and cancellation handling, and the cluster rules of
:mod:`.redis_cluster` -- scripts loaded on every master at open and on the one that
answered ``NOSCRIPT`` after that, a transaction's ``MOVED`` and ``ASK`` followed, and
with ``wait=N`` each write followed by ``WAIT`` on its connection.

At most ``pool_max`` commands of one async store are in flight at once (``redis.asyncio``'s
cluster nodes refuse a command when all their connections are in use, rather than queue
it): other tasks wait for a turn up to ``connect_timeout``, then get
:class:`~plugstore.errors.PoolExhaustedError`, as on the Redis backend's blocking pool.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis import exceptions as rx
from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..aio.runtime import Runtime
from ..backend import Backend
from .redis_aio import RedisAsyncDriver
from .redis_cluster import REDIRECTS, RedisClusterBackend
from .rediscore import (
    ERRORS,
    POOL_EMPTY,
    SCRIPTS,
    Request,
    check_waited,
    unavailable,
    waited_commands,
)


class RedisClusterAsyncDriver(RedisAsyncDriver):
    """One async store's ``redis.asyncio`` cluster client (made in its event loop)."""

    backend: RedisClusterBackend

    def __init__(self, backend: Backend, runtime: Runtime) -> None:
        if not isinstance(backend, RedisClusterBackend):
            raise TypeError(
                f"RedisClusterAsyncDriver drives a RedisClusterBackend, not {backend!r}"
            )
        super().__init__(backend, runtime)
        self._slots = asyncio.Semaphore(backend.pool_max)

    async def open(self) -> None:
        """Find the cluster's nodes and load the scripts on every master: a cluster
        none of whose seeds answers raises ``BackendUnavailableError`` at once."""
        backend = self.backend
        client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in backend.seeds],
            retry=Retry(NoBackoff(), 0),  # plugstore decides what is sent again
            **backend.cluster_kwargs(),
        )
        self._client = client
        try:
            try:
                await client.initialize()
            except ERRORS as exc:
                raise unavailable(backend, exc) from None
            await self.call_loading(None)
        except BaseException:
            await self.aclose()
            raise

    async def call_loading(self, failed: Request[Any] | None) -> None:
        """Load the scripts (see :meth:`load_scripts`), a failure raised as the
        plugstore error the recovery rules give (not retried: fails fast at open)."""
        try:
            await self.load_scripts(failed)
        except ERRORS as exc:
            raise unavailable(self.backend, exc) from None

    async def aclose(self) -> None:
        """Let lock clean-ups under way finish, then close every node's connections."""
        if self._undoing:
            await asyncio.wait(self._undoing, timeout=self.backend.socket_timeout)
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def load_scripts(self, failed: Request[Any] | None) -> None:
        """Load the scripts on the master of ``failed``'s slot (every master for
        ``None``): one pipeline per node."""
        key = failed.key if failed is not None else None
        nodes = self._client.get_primaries() if key is None else [self._node(key)]
        try:
            for node in nodes:
                commands = [
                    PipelineCommand(i, "SCRIPT LOAD", text)
                    for i, text in enumerate(SCRIPTS.values())
                ]
                await node.execute_pipeline(commands)
                for command in commands:
                    if isinstance(command.result, Exception):
                        raise command.result
        except (rx.ConnectionError, rx.TimeoutError):
            await self.refresh()
            raise

    def _node(self, key: bytes) -> Any:
        return self._client.get_node_from_key(key)

    async def _send(self, request: Request[Any]) -> Any:
        # A cluster node of redis.asyncio refuses a command when all its connections are
        # in use: the store's pool_max slots make tasks queue as on a blocking pool.
        try:
            await asyncio.wait_for(self._slots.acquire(), self.backend.connect_timeout)
        except asyncio.TimeoutError:  # not yet the builtin TimeoutError on Python 3.10
            raise rx.ConnectionError(POOL_EMPTY) from None
        waited = bool(self.backend.wait and request.write)
        try:
            if waited:
                return await self._send_waited(request)
            return await super()._send(request)
        except (rx.ConnectionError, rx.TimeoutError):
            if waited or request.multi is not None:
                await self.refresh()
            raise
        finally:
            self._slots.release()

    async def refresh(self) -> None:
        """Read the slot map again after a lost connection (as the sync backend's
        :meth:`~.redis_cluster.RedisClusterBackend.refresh`)."""
        with contextlib.suppress(*ERRORS):  # no node answers: the next attempt says so
            await self._client.nodes_manager.initialize()

    async def _send_waited(self, request: Request[Any]) -> Any:
        """As the sync backend's: ``request`` and ``WAIT`` on one connection to its
        slot's master, ASK redirections followed, a MOVED one raised after the slot
        map is updated."""
        backend = self.backend
        key = request.key
        assert key is not None  # every write names its namespace's keys
        node, asking = self._node(key), False
        for _ in range(REDIRECTS):
            commands = [
                PipelineCommand(i, *command)
                for i, command in enumerate(
                    waited_commands(request, backend.wait, backend.wait_timeout, asking)
                )
            ]
            await node.execute_pipeline(commands)
            replies = [command.result for command in commands]
            lost = [r for r in replies if isinstance(r, rx.ConnectionError | rx.TimeoutError)]
            if lost:
                raise lost[0]
            try:
                return check_waited(backend, request, replies, asking)
            except rx.MovedError as moved:
                await self._client.nodes_manager.move_slot(moved)
                raise
            except rx.AskError as ask:
                node = self._client.get_node(host=ask.host or node.host, port=ask.port)
                if node is None:
                    raise
                asking = True
        raise rx.TryAgainError("the slot kept moving")


__all__ = ["RedisClusterAsyncDriver"]
