"""A near cache kept coherent by Redis server-assisted client-side caching.

A caching process keeps one connection of its own in RESP3 with ``CLIENT TRACKING ON
BCAST PREFIX <prefix>``: the server then announces on it every key under the store's
prefix that any client changes, deletes or expires (``invalidate`` push messages),
after the change is made.  A thread reads them and drops the named entries; the
namespaces' index keys (``:i``, ``:x``) are announced too and ignored.  A
``FLUSHDB``/``FLUSHALL`` is announced without keys: everything is dropped.  Nothing
needs installing on the server, and writers (caching or not) do nothing extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis
from redis import exceptions as rx
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..nearcache import Listener

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..nearcache import NearCache
    from .redis import RedisBackend

#: The listening connection's ``CLIENT SETNAME`` (``CLIENT LIST`` shows it).
CLIENT_NAME = "plugstore-near-cache"
_ENTRY = b"}:k:"


class TrackingListener(Listener):
    """A near cache's coherence on Redis: a RESP3 connection tracking the store's prefix
    in broadcast mode (see the module docs)."""

    retry_on = (rx.ConnectionError, rx.TimeoutError, rx.ResponseError, OSError)

    def __init__(self, backend: RedisBackend, cache: NearCache) -> None:
        self._backend = backend
        self._prefix = backend.prefix.encode()
        self.description = (
            f"Redis CLIENT TRACKING (RESP3, broadcast) on the prefix {backend.prefix!r}"
        )
        super().__init__(
            cache,
            f"plugstore near cache {backend.where}",
            backend.connect_timeout + 1,
            f"Redis at {backend.where}",
        )

    def _open(self) -> Any:
        kwargs = self._backend.pool_kwargs(redis, Retry(NoBackoff(), 0))
        for pool_only in ("max_connections", "timeout"):
            kwargs.pop(pool_only, None)
        connection_class = kwargs.pop("connection_class", redis.Connection)
        kwargs.update(protocol=3, client_name=CLIENT_NAME, socket_timeout=None)
        conn = connection_class(**kwargs)
        try:
            conn.connect()
            # redis-py hands RESP3 "invalidate" pushes to this handler (else it drops
            # them); returning the message makes read_response(push_request=True) give it.
            track(conn, self._prefix, lambda message: message)
        except BaseException:
            conn.disconnect()
            raise
        return conn

    def _drain(self, handle: Any, timeout: float) -> None:
        if not handle.can_read(timeout=timeout):
            return None
        message = handle.read_response(push_request=True)
        while True:
            self._heard(message)
            if not handle.can_read(timeout=0):
                return None
            message = handle.read_response(push_request=True)

    def _hang_up(self, handle: Any) -> None:
        handle.disconnect()

    def _heard(self, message: Any) -> None:
        apply(self.cache, self._prefix, message)


def track(conn: Any, prefix: bytes, on_push: Callable[[Any], Any]) -> None:
    """Have the server announce on ``conn`` (connected, RESP3) every change of a key under
    ``prefix`` (``CLIENT TRACKING ON BCAST``); redis-py hands each announcement to
    ``on_push`` (else it drops them), and ``read_response(push_request=True)`` returns
    what ``on_push`` returns."""
    conn._parser.set_invalidation_push_handler(on_push)
    conn.send_command("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", prefix)
    reply = conn.read_response()
    if reply not in (b"OK", "OK"):
        raise rx.ResponseError(f"CLIENT TRACKING answered {reply!r}")


def apply(cache: NearCache, prefix: bytes, message: Any) -> None:
    """Drop from ``cache`` what an ``invalidate`` push message names (every key of
    ``prefix`` it names; everything for a flush, which names none)."""
    if not isinstance(message, list) or len(message) != 2:
        return
    kind, keys = message
    if kind not in (b"invalidate", "invalidate"):
        return
    if keys is None:  # FLUSHDB, FLUSHALL: every key went
        cache.clear()
        return
    for raw in keys:
        found = parse(raw if isinstance(raw, bytes) else str(raw).encode(), prefix)
        if found is not None:
            cache.invalidate(*found)


def parse(raw: bytes, prefix: bytes) -> tuple[str, str] | None:
    """``(namespace, key)`` of an entry string's name; ``None`` for an index key or a
    name that is not one of this store's."""
    if not raw.startswith(prefix + b"{"):
        return None
    rest = raw[len(prefix) + 1 :]
    end = rest.find(_ENTRY)  # namespaces hold no "}" (check_namespace)
    if end < 0:
        return None
    try:
        return rest[:end].decode(), rest[end + len(_ENTRY) :].decode()
    except UnicodeDecodeError:
        return None


__all__ = ["CLIENT_NAME", "TrackingListener", "apply", "parse", "track"]
