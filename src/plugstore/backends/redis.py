"""``redis://[user:password@]host:port/db`` and ``rediss://`` (TLS) -- Redis through redis-py.

* **Layout**: one Redis string per entry, ``<prefix>{<namespace>}:k:<key>``, plus one
  sorted set per namespace, ``<prefix>{<namespace>}:i``, whose members are the keys
  (UTF-8, all scored 0, so they sort by byte -- that is, code point -- order).  Keys
  with a deadline (``ttl=``) are also members of ``<prefix>{<namespace>}:x``, scored by
  their deadline in milliseconds.  The index
  answers ``len`` (``ZCARD``/``ZLEXCOUNT``) and key listings, including by prefix
  (``ZRANGEBYLEX``), without scanning anything; namespaces are found with ``SCAN`` (never
  ``KEYS``) over the index names, the prefix's glob characters escaped.  The braces are a
  Redis Cluster hash tag: every key of a namespace lives in one slot.
* **Atomic operations**: writes touching an entry and its index run as one Lua script
  (``EVALSHA``): ``set``, ``remove``, compare-and-set, ``add`` (``SET NX``, with ``PXAT``
  for a deadline), ``expire`` (``PEXPIREAT``), ``persist`` (``PERSIST``), and ``incr``
  (native ``INCRBY``, whose integer rules are exactly plugstore's: canonical decimal
  text, signed 64-bit).
  ``set_many`` is one ``MULTI``/``EXEC`` transaction of ``MSET`` and ``ZADD``;
  ``get_many`` is ``MGET``.
* **Expiry** is Redis's own: an entry is written with ``SET ... PXAT <deadline>`` (the
  deadline computed from the store clock, rounded down to the millisecond), ``incr`` and
  compare-and-set keep it (``INCRBY`` leaves a TTL alone, ``SET ... KEEPTTL``), a plain
  ``set`` drops it.  Redis
  deletes an expired entry by *its* clock; the index members it leaves behind are
  removed by the scripts that count and list a namespace (those scored below the
  server's ``TIME`` in ``:x``) and by ``purge``.
* **Durability** is the server's: with ``appendonly yes`` and ``appendfsync always`` an
  acknowledged write survives a server crash; ``everysec`` (Redis' default once AOF is
  on) may lose the last second; without AOF a restart loses what the last snapshot did
  not hold -- everything, with ``save ""``.  A ``kill -9`` of the *client* never loses an
  acknowledged write.  ``plugstore doctor`` shows the server's setting.  The server must
  not evict keys (``maxmemory-policy noeviction``, the default), or entries could vanish
  behind the index's back.
* **Connections**: a redis-py blocking connection pool (thread-safe; a forked child gets
  fresh connections, redis-py checks the pid).  redis-py's own silent retries are off:
  plugstore retries only what is safe to repeat (reads, ``set``, ``set_many``) after a
  lost connection, until ``retry_timeout``; ``incr``, compare-and-set and ``remove``
  raise :class:`~plugstore.errors.BackendUnavailableError` instead.  A pool whose
  connections all stayed in use for ``connect_timeout`` raises
  :class:`~plugstore.errors.PoolExhaustedError` at once.
* **Async** (:mod:`plugstore.aio`): a native driver on ``redis.asyncio``
  (:mod:`.redis_aio`), with a pool of its own per async store (the same options and
  size), sending the same requests (:mod:`.rediscore`: scripts, layout, arguments and
  replies exist once) under the same retry rules; nothing runs on threads.

Options (query string or keywords): ``prefix`` (default ``plugstore:``), ``db`` (or the
URL path), ``connect_timeout`` (seconds, default 5), ``socket_timeout`` (default 10),
``retry_timeout`` (default 30), ``pool_max`` (default 20), ``username``, ``password``,
``unix_socket`` (a socket path instead of host and port), and for ``rediss://``:
``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs``
(``required``/``optional``/``none``), ``ssl_check_hostname``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from redis import exceptions as rx
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..backend import Backend, Backoff, Bucket, Options
from ..errors import ConfigurationError
from ..locks import HeldLock
from ..steps import Sleep
from ..url import StoreURL
from .rediscore import (
    ERRORS,
    LOAD_SCRIPTS,
    LockAttempt,
    NamespaceOps,
    Page,
    Request,
    Steps,
    recovery,
    refused,
)

if TYPE_CHECKING:
    from ..nearcache import Coherence, NearCache

R = TypeVar("R")
T = TypeVar("T")

_PREFIX_RE = re.compile(r"[A-Za-z0-9_.:/-]{0,100}\Z")
_GLOB = re.compile(r"([*?\[\]\\])")


def glob_escape(text: str) -> str:
    """``text`` as a Redis glob pattern matching exactly itself."""
    return _GLOB.sub(r"\\\1", text)


class _RedisLock(HeldLock):
    def __init__(self, backend: RedisBackend, attempt: LockAttempt) -> None:
        self._backend, self._attempt = backend, attempt

    def renew(self, lease: float) -> bool:
        return self._backend.run(self._attempt.renew(lease))

    def release(self) -> bool:
        return self._backend.run(self._attempt.release())


class RedisBucket(Bucket):
    """One namespace: its entry strings and their sorted-set index.  The requests come
    from :class:`~.rediscore.NamespaceOps` (shared with the async driver); this shell
    sends them with redis-py."""

    backend: RedisBackend

    def __init__(self, backend: RedisBackend, namespace: str) -> None:
        super().__init__(backend, namespace)
        self.ops = NamespaceOps(backend.prefix, namespace)
        self._run = backend.run

    # -- single keys ----------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        return self._run(self.ops.get(key))

    def contains(self, key: str) -> bool:
        return self._run(self.ops.contains(key))

    def set(self, key: str, value: bytes) -> None:
        self._run(self.ops.set(key, value))

    def set_until(self, key: str, value: bytes, deadline: float) -> None:
        self._run(self.ops.set_until(key, value, deadline))

    def get_with_deadline(self, key: str) -> tuple[bytes, float | None] | None:
        return self._run(self.ops.get_with_deadline(key))

    def remove(self, key: str) -> bool:
        return self._run(self.ops.remove(key))

    def cas(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        return self._run(self.ops.cas(key, expected, new))

    def add(self, key: str, value: bytes, deadline: float | None) -> bool:
        return self._run(self.ops.add(key, value, deadline))

    def expire(self, key: str, deadline: float) -> bool:
        return self._run(self.ops.expire(key, deadline))

    def persist(self, key: str) -> bool:
        return self._run(self.ops.persist(key))

    def incr(self, key: str, delta: int) -> int:
        return self._run(self.ops.incr(key, delta))

    def lock(self, key: str, timeout: float | None, lease: float) -> HeldLock | None:
        """The lock of :class:`~.rediscore.LockAttempt`, waited for with ``time.sleep``."""
        attempt = self.ops.lock(key, timeout, lease)
        if not self.backend.drive(attempt.steps()):
            return None
        return _RedisLock(self.backend, attempt)

    # -- many keys ------------------------------------------------------------------------

    def _pages(self, first: Request[Page[T]] | None) -> Iterator[T]:
        while first is not None:
            page = self._run(first)
            yield from page.items
            first = page.next

    def keys(self, prefix: str = "") -> Iterator[str]:
        return self._pages(self.ops.keys(prefix))

    def keys_page(self, prefix: str = "", limit: int | None = None) -> list[str]:
        return list(self._pages(self.ops.keys(prefix, limit)))

    def keys_after(self, prefix: str, after: str, limit: int) -> list[str]:
        return list(self._pages(self.ops.keys_after(prefix, after, limit)))

    def items(self, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        return self._pages(self.ops.items(prefix))

    def items_page(self, prefix: str = "", limit: int | None = None) -> list[tuple[str, bytes]]:
        return list(self._pages(self.ops.items(prefix, limit)))

    def count(self, prefix: str = "") -> int:
        return self._run(self.ops.count(prefix))

    def stored_size(self, prefix: str = "") -> int:
        return self.backend.drive(self.ops.stored_size(prefix))

    def purge(self) -> int:
        return self._run(self.ops.purge())

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return self.backend.drive(self.ops.get_many(keys))

    def get_many_with_deadlines(self, keys: Sequence[str]) -> dict[str, tuple[bytes, float | None]]:
        return self.backend.drive(self.ops.get_many_with_deadlines(keys))

    def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        request = self.ops.set_many(items)
        if request is not None:
            self._run(request)

    def set_many_until(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        request = self.ops.set_many_until(items)
        if request is not None:
            self._run(request)

    def write_batch(
        self,
        sets: Sequence[tuple[str, bytes, float | None]],
        removes: Sequence[str] = (),
        clears: Sequence[str] = (),
        *,
        atomic: bool = True,
    ) -> None:
        self._run(self.ops.write_batch(sets, removes, clears))  # one script: always atomic

    def clear(self, prefix: str = "") -> int:
        return self.backend.drive(self.ops.clear(prefix))


class RedisBackend(Backend):
    """Entries as Redis strings under a prefix, one sorted-set index per namespace."""

    name = "redis"
    durable = True  # a killed client loses nothing acknowledged (server persistence aside)
    multiprocess = True
    expiry = True
    atomic_batches = True
    isolated_batches = True
    expires_on_engine_clock = True  # SET ... PXAT: the server's clock decides
    async_driver = "plugstore.backends.redis_aio:RedisAsyncDriver"
    #: What the error messages call the server.
    engine = "Redis"
    #: What ``pool_max`` counts, in the pool-exhausted message ("": the one pool).
    pool_scope = ""

    def __init__(self, url: StoreURL, options: Options) -> None:
        super().__init__(url, options)
        self.prefix = options.take("prefix", "plugstore:", str)
        if not _PREFIX_RE.match(self.prefix):
            raise ConfigurationError(
                f"invalid prefix {self.prefix!r}: letters, digits and _ . : / - (at most 100)"
            )
        db_text = options.take("db", url.path or "0", str)
        if not db_text.isdigit():
            raise ConfigurationError(f"the Redis database must be a number, got {db_text!r}")
        self.db = int(db_text)
        self.connect_timeout = options.take("connect_timeout", 5.0)
        self.socket_timeout = options.take("socket_timeout", 10.0)
        self.retry_timeout = options.take("retry_timeout", 30.0)
        self.pool_max = options.take("pool_max", 20)
        if self.pool_max < 1:
            raise ConfigurationError("pool_max must be at least 1")
        self._username = options.take("username", url.username, str)
        self._password = options.take("password", url.password, str)
        self.unix_socket = options.take("unix_socket", None, str)
        self.tls = url.scheme.split("+", 1)[0] == "rediss"
        self._ssl: dict[str, Any] = {}
        for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"):
            value = options.take(name, None, str)
            if value is not None:
                self._ssl[name] = value
        if "ssl_check_hostname" in options:
            self._ssl["ssl_check_hostname"] = options.take("ssl_check_hostname", True)
        if self._ssl and not self.tls:
            raise ConfigurationError("TLS options need a rediss:// URL")
        host, port = url.host or "localhost", url.port or 6379
        self.where = self.unix_socket or f"{host}:{port}"
        self._host, self._port = host, port
        self.client: Any = None  # a redis.Redis on the pool, set by open()
        self._pool: redis.BlockingConnectionPool | None = None

    # -- connections ------------------------------------------------------------------

    def pool_kwargs(self, flavor: Any, retry: Any) -> dict[str, Any]:
        """The connection pool's arguments, for redis-py's sync classes (``flavor``
        ``redis``) or its async ones (``redis.asyncio``), whose module names the
        connection classes; ``retry`` is that flavor's ``Retry(NoBackoff(), 0)``."""
        kwargs: dict[str, Any] = {
            "max_connections": self.pool_max,
            "timeout": self.connect_timeout,  # waiting for a pooled connection
            "db": self.db,
            "username": self._username,
            "password": self._password,
            "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": self.socket_timeout,
            # redis-py would otherwise re-send any command after a lost connection,
            # incr included, and apply it twice; plugstore decides what is safe.
            "retry": retry,
            "client_name": "plugstore",
        }
        if self.unix_socket:
            kwargs["path"] = self.unix_socket
            kwargs["connection_class"] = flavor.UnixDomainSocketConnection
        else:
            kwargs["host"], kwargs["port"] = self._host, self._port
            if self.tls:
                kwargs["connection_class"] = flavor.SSLConnection
                kwargs.update(self._ssl)
        return kwargs

    def _make_pool(self) -> redis.BlockingConnectionPool:
        kwargs = self.pool_kwargs(redis, Retry(NoBackoff(), 0))
        pool: redis.BlockingConnectionPool = redis.BlockingConnectionPool(**kwargs)  # type: ignore[no-untyped-call]
        return pool

    def open(self) -> None:
        # One pool and client for the backend's life: buckets handed out before a close
        # keep working after the store opens again, on the same (reconnected) pool.
        if self._pool is None:
            self._pool = self._make_pool()
            self.client = redis.Redis(connection_pool=self._pool)
        try:
            self.run(LOAD_SCRIPTS)  # fails fast if the server is down
        except BaseException:
            self.close()
            raise

    def near_cache_coherence(self, cache: NearCache) -> Coherence | None:
        from .redistrack import TrackingListener

        return TrackingListener(self, cache)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.disconnect()  # every socket closed; reconnects lazily on reopen

    def advice(self, exc: BaseException) -> str:
        """What an unavailable-server message adds after ``exc`` to say what to do."""
        return ""

    def unsent(self, exc: Exception) -> bool:
        """Whether ``exc`` says for sure that the failed request never left this process
        (so it may be sent again, whatever it does).  A single server: never known."""
        return False

    def load_scripts(self, failed: Request[Any] | None) -> None:
        """Load the scripts where ``failed`` (a request answered NOSCRIPT) runs."""
        self.send(LOAD_SCRIPTS)

    def call(self, work: Callable[[], T], *, retry: bool) -> T:
        """Run ``work()``; on failure, recover as :meth:`recover` says."""
        try:
            try:
                return work()
            except ERRORS as exc:
                return self.recover(exc, work, retry)
        except rx.ResponseError as exc:
            raise refused(self, exc) from None

    def recover(
        self,
        exc: Exception,
        work: Callable[[], T],
        retry: bool,
        request: Request[Any] | None = None,
    ) -> T:
        """``work()`` (sending ``request``, if one) raised ``exc``: run it again if that
        is safe, or raise (see :func:`~.rediscore.recovery`)."""
        backoff = Backoff(self.retry_timeout)
        while True:
            pause = recovery(self, exc, retry, backoff, "threads")
            try:
                if pause is None:
                    self.load_scripts(request)
                else:
                    time.sleep(pause)
                return work()
            except ERRORS as again:
                exc = again

    # -- requests (see plugstore.backends.rediscore) -------------------------------------

    def send(self, request: Request[Any]) -> Any:
        """Send ``request`` once; its raw reply."""
        if request.multi is None:
            return self.client.execute_command(*request.command)  # type: ignore[misc]
        pipe = self.client.pipeline(transaction=True)
        for command in request.multi:
            pipe.execute_command(*command)
        return pipe.execute()

    def run(self, request: Request[R]) -> R:
        """Send ``request``, recovering from failures as :meth:`recover` says; its parsed
        reply."""
        try:
            try:
                reply = self.send(request)
            except ERRORS as exc:
                reply = self.recover(exc, lambda: self.send(request), request.retry, request)
        except rx.ResponseError as exc:
            known = None if request.refuse is None else request.refuse(exc)
            raise (known or refused(self, exc)) from None
        return request.parse(reply)

    def drive(self, steps: Steps[R]) -> R:
        """Carry out ``steps``: run each request they yield, sleep each pause."""
        reply: Any = None
        while True:
            try:
                step = steps.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
                reply = None
            else:
                reply = self.run(step)

    # -- backend API ---------------------------------------------------------------------

    def bucket(self, namespace: str) -> RedisBucket:
        return RedisBucket(self, namespace)

    def _scan_sets(self, suffix: str) -> list[str]:
        """The namespaces with a sorted set ``{<namespace>}:<suffix>``: SCAN (never KEYS),
        the prefix's glob characters escaped; entries whose key happens to end the same
        way are strings, so TYPE leaves them out."""
        pattern = glob_escape(self.prefix) + "{*}:" + suffix
        head, tail = len(self.prefix.encode()) + 1, len(suffix) + 2

        def scan() -> list[str]:
            found = set()
            for name in self.client.scan_iter(match=pattern, count=1000, _type="zset"):
                inner = name[head:-tail]
                if b"}" not in inner:
                    found.add(inner.decode())
            return sorted(found)

        return self.call(scan, retry=True)

    def namespaces(self) -> list[str]:
        # A namespace whose members have all expired is empty (counting sweeps them).
        return [name for name in self._scan_sets("i") if self.bucket(name).count()]

    def purge(self, namespace: str | None = None) -> dict[str, int]:
        names = [namespace] if namespace is not None else self._scan_sets("x")
        counts = {name: self.bucket(name).purge() for name in names}
        return {name: n for name, n in counts.items() if n}

    def identity(self) -> tuple[object, ...]:
        host = "loopback" if self._host in ("localhost", "127.0.0.1", "::1") else self._host
        place = self.unix_socket or f"{host}:{self._port}"
        return (self.name, place, self.db, self.prefix)

    def persistence(self) -> str:
        """The server's durability setting, in words (for ``plugstore doctor``)."""
        info = self.call(lambda: self.client.info("persistence"), retry=True)
        if int(info.get("aof_enabled", 0)):
            try:
                fsync = self.client.config_get("appendfsync").get("appendfsync", "?")
            except rx.ResponseError:  # CONFIG may be disabled or renamed
                fsync = "?"
            return f"AOF, appendfsync {fsync}"
        try:
            save = self.client.config_get("save").get("save", "")
        except rx.ResponseError:
            save = "?"
        if save == "":
            return "none: a server restart loses every key"
        return f"RDB snapshots only ({save}): a restart loses writes since the last one"

    def info(self) -> dict[str, str]:
        server = self.call(lambda: self.client.info("server"), retry=True)
        return {
            **super().info(),
            "server": f"Redis {server.get('redis_version', '?')} at {self.where}",
            "driver": f"redis-py {redis.__version__}",
            "prefix": self.prefix,
            "persistence": self.persistence(),
        }
