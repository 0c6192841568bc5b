"""The near cache: recently read values kept in process memory, coherent across processes.

``plugstore.open(url, cache=10000)`` keeps up to that many entries -- a key's stored bytes
and deadline, or the fact that it is absent -- and serves repeated reads of hot keys
(prefixes, allow lists, per-guild options read on every message) without a round trip.

Coherence is the backend's :class:`Coherence`:

* SQLite asks ``PRAGMA data_version`` before serving a cached read, so a commit of any
  other connection (another process, another store) is never missed: any change drops
  the whole cache.
* PostgreSQL hears of every committed change by ``LISTEN``: triggers on the table
  ``NOTIFY`` the namespace and key of each row written, in the writer's transaction,
  whichever plugstore process wrote it (caching or not).  A listener thread drops those
  entries as the notices arrive; while it is not connected, nothing is served from the
  cache.
* memory: one process holds the data; its own writes are all there is.

Only single-key reads are served from the cache (``ns[key]``, ``get``, ``in``, a
scope's ``get``); reads of several keys (``get_many``, listings, a scope's items) are
one snapshot of the engine's, so a batch written elsewhere is never seen in part.
Whatever the backend, this process's own writes drop what they touched before they
return (read your writes), a compare-and-set that fails drops the key it compared, and
atomic operations (``incr``, ``compute``, ``mutable``, locks, ``replace_if``) always
decide on the engine.  An expired entry is never served: each entry keeps its deadline.
plugstore's own namespaces (lock leases, quarantine) are never cached.

A read that misses registers itself before it asks the engine; an invalidation of that
key in the meantime (or of the whole cache) cancels the registration, so a value read
before a change can never be stored after the change was announced.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from time import monotonic
from typing import TYPE_CHECKING, Any, Protocol

from . import forks
from .backend import Bucket
from .errors import BackendUnavailableError
from .locks import LOCKS_NAMESPACE, HeldLock
from .quarantine import QUARANTINE_NAMESPACE

if TYPE_CHECKING:
    from .backend import Backend

#: Namespaces never cached: plugstore's own (lock leases, set-aside values).
UNCACHED = frozenset({LOCKS_NAMESPACE, QUARANTINE_NAMESPACE})

_Key = tuple[str, str]


class Coherence(Protocol):
    """How a backend keeps a near cache coherent with other writers."""

    #: What ``plugstore doctor`` says about it ("PostgreSQL LISTEN/NOTIFY on ...").
    description: str
    #: Whether the next read after another process's write returned sees it (checked
    #: before serving), rather than once the engine's notice arrives (milliseconds).
    immediate: bool

    def check(self) -> bool:
        """Called before every cached read: drop what others changed (if that can only
        be learnt now) and say whether the cache may serve at all."""
        ...

    def close(self) -> None:
        """Stop listening (the store is closing)."""
        ...


class LocalOnly:
    """No other writer exists (the memory backend): this process's writes are all."""

    description = "this process is the only writer (memory)"
    immediate = True

    def check(self) -> bool:
        return True

    def close(self) -> None:
        pass


class Listener:
    """Coherence told by the engine: a thread holds a connection of its own on which
    the engine announces changes, and drops the announced entries as they arrive.
    While that connection is down the cache serves nothing (every read goes to the
    engine); whenever it is (re)established the cache starts empty, since changes
    made meanwhile went unheard.  A forked child starts a listener of its own.

    Subclasses say how to connect and listen (:meth:`_open`), how to wait for and apply
    announcements (:meth:`_drain`) and how to hang up (:meth:`_hang_up`); their errors
    (``retry_on``) make the thread reconnect, with a growing pause.
    """

    immediate = False
    description = "the engine's announcements"
    #: The thread reads what has arrived at least this often (seconds), and notes when.
    POLL = 0.005
    #: The cache serves only while the thread has read within this long (seconds):
    #: an announcement that reached this process's socket is applied before any read
    #: that starts this long after it; if the thread cannot keep up (a busy GIL, a
    #: stalled connection), reads go to the engine until it does.
    BOUND = 0.025
    #: Errors of a lost or refused connection: the thread reconnects after them.
    retry_on: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, cache: NearCache, name: str, start_within: float, where: str) -> None:
        self.cache = cache
        self._name = name
        self._healthy = False
        self._read_at = 0.0  # time.monotonic() after the thread last read all that came
        self.used_at = 0.0  # time.monotonic() of the last read that asked the cache
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle: Any = None
        self._failure: BaseException | None = None  # why the last connection failed
        self._fork_gen = forks.generation
        self._start()
        if not self._listening.wait(start_within):
            self.close()
            why = f" ({type(self._failure).__name__}: {self._failure})" if self._failure else ""
            raise BackendUnavailableError(
                f"{where}: the near cache could not start listening for changes within "
                f"{start_within:g}s{why}; check the server and that the store's user may "
                "run what the near cache needs (docs/backends.md), or open the store "
                "without cache="
            )

    def _open(self) -> Any:
        """Connect and start listening; return what :meth:`_drain` reads from."""
        raise NotImplementedError

    def _drain(self, handle: Any, timeout: float) -> float | None:
        """Wait up to ``timeout`` seconds for announcements; apply those that came.
        Return the :func:`time.monotonic` time since which every change is known to
        have been applied, or ``None`` for "now" (whatever reached the socket by now)."""
        raise NotImplementedError

    def _hang_up(self, handle: Any) -> None:
        raise NotImplementedError

    def _start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._listen, name=self._name, daemon=True)
        self._thread.start()

    def check(self) -> bool:
        if self._fork_gen != forks.generation:
            self._after_fork()
        now = self.used_at = monotonic()
        return self._healthy and now - self._read_at <= self.BOUND

    def _after_fork(self) -> None:
        # A forked child has no listener thread and must not touch the parent's socket.
        with forks.child_lock:
            if self._fork_gen == forks.generation:
                return
            if self._handle is not None:
                forks.keep_inherited(self._handle)
            self._handle = None
            self._healthy = False
            self.cache.clear()
            self._listening = threading.Event()
            self._fork_gen = forks.generation
            self._start()

    def _listen(self) -> None:
        pause = 0.05
        while not self._stop.is_set():
            try:
                handle = self._open()
            except self.retry_on as exc:
                self._failure = exc
                self._stop.wait(pause)
                pause = min(pause * 2, 2.0)
                continue
            self._handle = handle
            try:
                self.cache.clear()  # anything cached before may have changed unheard
                self._read_at = monotonic()
                self._healthy = True
                self._listening.set()
                pause = 0.05
                while not self._stop.is_set():
                    known_since = self._drain(handle, self.POLL)
                    self._read_at = monotonic() if known_since is None else known_since
            except Exception:  # noqa: S110 - whatever broke the connection: connect anew
                pass
            finally:
                self._healthy = False
                self.cache.clear()
                self._handle = None
                with contextlib.suppress(*self.retry_on):
                    self._hang_up(handle)

    def close(self) -> None:
        self._stop.set()
        self._healthy = False
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.POLL * 4 + 1)


class NearCache:
    """At most ``size`` entries ``(namespace, key) -> [bytes | None, deadline, used]``,
    the oldest unused evicted first (second chance: a read marks an entry used, and
    eviction passes over a used entry once)."""

    def __init__(self, size: int, clock: Callable[[], float]) -> None:
        self.size = size
        self.clock = clock
        self.entries: dict[_Key, list[Any]] = {}
        self.coherence: Coherence = LocalOnly()
        self._pending: dict[_Key, object] = {}
        self._generation = 0
        self._lock = threading.Lock()

    # -- filling ---------------------------------------------------------------------------

    def begin(self, key: _Key) -> tuple[object, int]:
        """Register a read of ``key`` about to ask the engine (see :meth:`fill`)."""
        token = object()
        with self._lock:
            self._pending[key] = token
            return token, self._generation

    def fill(
        self, key: _Key, ticket: tuple[object, int], raw: bytes | None, deadline: float | None
    ) -> None:
        """Keep what the engine answered for ``key``, unless ``key`` (or everything) was
        invalidated since :meth:`begin`."""
        token, generation = ticket
        with self._lock:
            if self._pending.get(key) is not token:
                return
            del self._pending[key]
            if generation != self._generation:
                return
            entries = self.entries
            if key not in entries and len(entries) >= self.size:
                self._evict_one()
            entries[key] = [raw, deadline, False]

    def _evict_one(self) -> None:
        entries = self.entries
        while entries:
            oldest = next(iter(entries))
            entry = entries.pop(oldest)
            if not entry[2]:
                return
            entry[2] = False  # a second chance: to the back of the line
            entries[oldest] = entry

    # -- invalidating ----------------------------------------------------------------------

    def invalidate(self, namespace: str, key: str) -> None:
        """Forget ``key`` of ``namespace`` (and cancel a read of it in flight)."""
        k = (namespace, key)
        with self._lock:
            self.entries.pop(k, None)
            self._pending.pop(k, None)

    def invalidate_many(self, namespace: str, keys: Sequence[str]) -> None:
        with self._lock:
            for key in keys:
                k = (namespace, key)
                self.entries.pop(k, None)
                self._pending.pop(k, None)

    def invalidate_namespace(self, namespace: str) -> None:
        """Forget every entry of ``namespace`` (and cancel every read in flight)."""
        with self._lock:
            self._generation += 1
            for k in [k for k in self.entries if k[0] == namespace]:
                del self.entries[k]

    def clear(self) -> None:
        """Forget everything (and cancel every read in flight)."""
        with self._lock:
            self._generation += 1
            self.entries.clear()
            self._pending.clear()

    def close(self) -> None:
        self.coherence.close()
        self.clear()


class CachedBucket(Bucket):
    """A bucket whose point reads go through the near cache and whose writes drop what
    they touch; everything else is the backend's own bucket's."""

    def __init__(self, inner: Bucket, cache: NearCache) -> None:
        self.backend = inner.backend
        self.namespace = inner.namespace
        self.inner = inner
        self._cache = cache
        self._entries = cache.entries
        self._check = cache.coherence.check
        self._clock = cache.clock

    def __getattr__(self, name: str) -> Any:
        # Backend-specific helpers of the wrapped bucket (tools reach for a few).
        return getattr(self.inner, name)

    # -- reads -----------------------------------------------------------------------------

    def _cached(self, key: str) -> list[Any] | None:
        """The live cached entry of ``key``, if the cache may serve it."""
        if not self._check():
            return None
        entry = self._entries.get((self.namespace, key))
        if entry is None:
            return None
        deadline = entry[1]
        if deadline is not None and deadline <= self._clock():
            return None
        entry[2] = True
        return entry

    def get(self, key: str) -> bytes | None:
        entry = self._cached(key)
        if entry is not None:
            raw: bytes | None = entry[0]
            return raw
        found = self._fetch(key)
        return None if found is None else found[0]

    def get_with_deadline(self, key: str) -> tuple[bytes, float | None] | None:
        entry = self._cached(key)
        if entry is not None:
            return None if entry[0] is None else (entry[0], entry[1])
        return self._fetch(key)

    def contains(self, key: str) -> bool:
        return self.get(key) is not None

    def _fetch(self, key: str) -> tuple[bytes, float | None] | None:
        k = (self.namespace, key)
        ticket = self._cache.begin(k)
        found = self.inner.get_with_deadline(key)
        if found is None:
            self._cache.fill(k, ticket, None, None)
        else:
            self._cache.fill(k, ticket, found[0], found[1])
        return found

    # Reads of several keys are the engine's: one snapshot of them all, so a batch written
    # by another process is never seen in part (cached entries may be a few milliseconds
    # apart in age; a single key's read cannot be torn).

    def get_many_with_deadlines(self, keys: Sequence[str]) -> dict[str, tuple[bytes, float | None]]:
        return self.inner.get_many_with_deadlines(keys)

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return self.inner.get_many(keys)

    # -- listings (always the engine's) ----------------------------------------------------

    def keys(self, prefix: str = "") -> Iterator[str]:
        return self.inner.keys(prefix)

    def keys_page(self, prefix: str = "", limit: int | None = None) -> list[str]:
        return self.inner.keys_page(prefix, limit)

    def items_page(self, prefix: str = "", limit: int | None = None) -> list[tuple[str, bytes]]:
        return self.inner.items_page(prefix, limit)

    def keys_after(self, prefix: str, after: str, limit: int) -> list[str]:
        return self.inner.keys_after(prefix, after, limit)

    def count(self, prefix: str = "") -> int:
        return self.inner.count(prefix)

    def stored_size(self, prefix: str = "") -> int:
        return self.inner.stored_size(prefix)

    def items(self, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        return self.inner.items(prefix)

    def purge(self) -> int:
        return self.inner.purge()  # only expired entries go, which are never served

    # -- writes: the engine's, then the touched keys are dropped ---------------------------

    def _drop(self, key: str) -> None:
        self._cache.invalidate(self.namespace, key)

    def set(self, key: str, value: bytes) -> None:
        try:
            self.inner.set(key, value)
        finally:
            self._drop(key)

    def remove(self, key: str) -> bool:
        try:
            return self.inner.remove(key)
        finally:
            self._drop(key)

    def cas(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        # Dropped either way: after a success the entry is old, after a failure the
        # cached value the caller compared against was (its next read asks the engine).
        try:
            return self.inner.cas(key, expected, new)
        finally:
            self._drop(key)

    def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        try:
            self.inner.set_many(items)
        finally:
            self._cache.invalidate_many(self.namespace, [key for key, _ in items])

    def incr(self, key: str, delta: int) -> int:
        try:
            return self.inner.incr(key, delta)
        finally:
            self._drop(key)

    def clear(self, prefix: str = "") -> int:
        try:
            return self.inner.clear(prefix)
        finally:
            self._cache.invalidate_namespace(self.namespace)

    def lock(self, key: str, timeout: float | None, lease: float) -> HeldLock | None:
        return self.inner.lock(key, timeout, lease)

    def set_until(self, key: str, value: bytes, deadline: float) -> None:
        try:
            self.inner.set_until(key, value, deadline)
        finally:
            self._drop(key)

    def set_many_until(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        try:
            self.inner.set_many_until(items)
        finally:
            self._cache.invalidate_many(self.namespace, [key for key, _, _ in items])

    def add(self, key: str, value: bytes, deadline: float | None) -> bool:
        try:
            return self.inner.add(key, value, deadline)
        finally:
            self._drop(key)

    def expire(self, key: str, deadline: float) -> bool:
        try:
            return self.inner.expire(key, deadline)
        finally:
            self._drop(key)

    def persist(self, key: str) -> bool:
        try:
            return self.inner.persist(key)
        finally:
            self._drop(key)

    def write_batch(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.inner.write_batch(*args, **kwargs)
        finally:
            self._cache.invalidate_namespace(self.namespace)


def install(backend: Backend, size: int) -> NearCache:
    """Give ``backend`` (just opened) a near cache of ``size`` entries: from now on its
    ``bucket(namespace)`` hands out cached buckets (plugstore's own namespaces aside)."""
    from .errors import ConfigurationError

    cache = NearCache(size, backend.clock)
    coherence = backend.near_cache_coherence(cache)
    if coherence is None:
        raise ConfigurationError(
            f"the {backend.name} backend cannot keep a near cache coherent across "
            "processes: open it without cache= (see docs/usage.md, the near cache)"
        )
    cache.coherence = coherence
    plain = type(backend).bucket.__get__(backend)

    def bucket(namespace: str) -> Bucket:
        inner = plain(namespace)
        return inner if namespace in UNCACHED else CachedBucket(inner, cache)

    # Shadow the method on this instance: every caller of backend.bucket() (namespaces,
    # scopes, quarantine, the CLI and the console) reads and writes through the cache.
    vars(backend)["bucket"] = bucket
    backend.near_cache = cache
    return cache


def uninstall(backend: Backend) -> None:
    """Undo :func:`install` (the store is closing)."""
    cache = backend.near_cache
    vars(backend).pop("bucket", None)
    backend.near_cache = None
    if cache is not None:
        cache.close()


__all__ = [
    "UNCACHED",
    "CachedBucket",
    "Coherence",
    "Listener",
    "LocalOnly",
    "NearCache",
    "install",
    "uninstall",
]
