"""``memory://`` -- process-local storage for tests and throwaway data.

``memory://`` gives a private store; ``memory://NAME`` is shared by every store opened
with the same name in this process (and outlives their ``close()``), which makes
"persistence across reopen" testable without files.  Values are stored as encoded bytes,
so copy semantics are the same as on every other backend.

A key with a deadline (``ttl=``) is stored as a ``(value, deadline)`` tuple instead of
the bare bytes, in the same dict: a read costs one type check more, a plain write
replaces the tuple (and so the deadline) for free.  An expired entry stays in memory,
invisible, until it is overwritten, deleted or purged.

Listings are in code point order, as on every backend.  Each namespace keeps its keys
sorted in a list built on the first listing after keys were added or deleted (a write
that only replaces a value keeps it), so repeated listings cost no sort and a prefix
listing is a binary search plus the keys it returns.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Union

from ..backend import Backend, Bucket, Options
from ..keys import check_counter, parse_counter
from ..url import StoreURL

if TYPE_CHECKING:
    from ..nearcache import Coherence, NearCache

#: A stored entry: the value, or the value and its deadline.
_Entry = Union[bytes, tuple[bytes, float]]  # noqa: UP007 - a runtime alias on Python 3.10
_Data = dict[str, dict[str, _Entry]]
#: Per namespace, its keys in code point order: valid while it has as many keys as the
#: namespace (adding keys changes the count; every deletion drops the list).
_Order = dict[str, list[str]]
_shared: dict[str, tuple[_Data, set[str], _Order, threading.Lock]] = {}
_shared_lock = threading.Lock()


def _live(entry: _Entry | None, now: float) -> bytes | None:
    """The value of ``entry`` unless it is absent or expired at ``now``."""
    if entry.__class__ is tuple:
        value, deadline = entry
        return None if deadline <= now else value
    return entry  # type: ignore[return-value]


class MemoryBucket(Bucket):
    """One namespace: a dict of entries guarded by the store's lock."""

    backend: MemoryBackend

    def __init__(self, backend: MemoryBackend, namespace: str) -> None:
        super().__init__(backend, namespace)
        self._lock = backend.lock  # one lock per backend instance, stable across reopen

    def _d(self) -> dict[str, _Entry]:
        return self.backend.data.get(self.namespace) or {}

    def _w(self) -> dict[str, _Entry]:
        data = self.backend.data
        d = data.get(self.namespace)
        if d is None:
            d = data[self.namespace] = {}
        return d

    def _sorted(self, d: dict[str, _Entry], prefix: str) -> list[str]:
        """The keys of ``d`` (this namespace's dict) starting with ``prefix``, in code
        point order, expired ones included (lock held).  Never changed in place."""
        if not d:
            return []
        order = self.backend.order.get(self.namespace)
        if order is None or len(order) != len(d):
            order = self.backend.order[self.namespace] = sorted(d)
        if not prefix:
            return order
        found = []
        for i in range(bisect_left(order, prefix), len(order)):
            key = order[i]
            if not key.startswith(prefix):
                break
            found.append(key)
        return found

    def _forget_order(self) -> None:
        """Keys were deleted: the sorted list is rebuilt on the next listing (lock held)."""
        self.backend.order.pop(self.namespace, None)

    def _live_items(self, prefix: str) -> list[tuple[str, bytes]]:
        """The live ``(key, value)`` pairs starting with ``prefix``, in order (lock held)."""
        d = self._d()
        keys = self._sorted(d, prefix)
        if self.namespace not in self.backend.timed:
            return [(k, d[k]) for k in keys]  # type: ignore[misc]
        now = self.backend.clock()
        found = []
        for key in keys:
            value = _live(d[key], now)
            if value is not None:
                found.append((key, value))
        return found

    def get(self, key: str) -> bytes | None:
        # Lock-free: a single dict read is atomic in CPython (with or without the GIL).
        # Writes keep the lock so that cas/incr stay atomic with respect to them.
        d = self.backend.data.get(self.namespace)
        entry = None if d is None else d.get(key)
        if entry.__class__ is tuple:
            value, deadline = entry
            return None if deadline <= self.backend.clock() else value
        return entry  # type: ignore[return-value]

    def set(self, key: str, value: bytes) -> None:
        data = self.backend.data
        with self._lock:
            d = data.get(self.namespace)
            if d is None:
                d = data[self.namespace] = {}
            d[key] = value  # replaces a (value, deadline) entry too

    def set_until(self, key: str, value: bytes, deadline: float) -> None:
        backend = self.backend
        with self._lock:
            d = backend.data.get(self.namespace)
            if d is None:
                d = backend.data[self.namespace] = {}
            d[key] = (value, deadline)
            backend.timed.add(self.namespace)

    def set_many_until(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        with self._lock:
            d = self._w()
            for key, value, deadline in items:
                d[key] = value if deadline is None else (value, deadline)
            self.backend.timed.add(self.namespace)

    def get_with_deadline(self, key: str) -> tuple[bytes, float | None] | None:
        entry = self._d().get(key)  # one read: value and deadline agree
        if _live(entry, self.backend.clock()) is None:
            return None
        return entry if entry.__class__ is tuple else (entry, None)  # type: ignore[return-value]

    def get_many_with_deadlines(self, keys: Sequence[str]) -> dict[str, tuple[bytes, float | None]]:
        with self._lock:
            d, now, found = self._d(), self.backend.clock(), {}
            for key in keys:
                entry = d.get(key)
                if _live(entry, now) is not None:
                    found[key] = entry if entry.__class__ is tuple else (entry, None)
            return found  # type: ignore[return-value]

    def remove(self, key: str) -> bool:
        with self._lock:
            entry = self._d().pop(key, None)
            if entry is None:
                return False
            self._forget_order()
            return _live(entry, self.backend.clock()) is not None

    def cas(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        with self._lock:
            entry = self._d().get(key)
            current = _live(entry, self.backend.clock())
            if current != expected:
                return False
            if new is None:
                if self._d().pop(key, None) is not None:
                    self._forget_order()
            elif current is not None and entry.__class__ is tuple:
                self._w()[key] = (new, entry[1])  # a live entry keeps its deadline
            else:
                self._w()[key] = new  # absent, or expired: a new entry, without one
            return True

    def add(self, key: str, value: bytes, deadline: float | None) -> bool:
        with self._lock:
            d = self._w()
            if _live(d.get(key), self.backend.clock()) is not None:
                return False
            # absent, or expired: a new entry, with this deadline or none
            if deadline is None:
                d[key] = value
            else:
                d[key] = (value, deadline)
                self.backend.timed.add(self.namespace)
            return True

    def expire(self, key: str, deadline: float) -> bool:
        with self._lock:
            d = self._d()
            value = _live(d.get(key), self.backend.clock())
            if value is None:
                return False
            d[key] = (value, deadline)  # the same bytes, a new deadline
            self.backend.timed.add(self.namespace)
            return True

    def persist(self, key: str) -> bool:
        with self._lock:
            d = self._d()
            entry = d.get(key)
            value = _live(entry, self.backend.clock())
            if value is None:
                return False
            if entry.__class__ is tuple:
                d[key] = value
            return True

    def keys(self, prefix: str = "") -> Iterator[str]:
        with self._lock:
            if self.namespace not in self.backend.timed:
                snapshot = self._sorted(self._d(), prefix)  # never changed in place
            else:
                snapshot = [k for k, _ in self._live_items(prefix)]
        return iter(snapshot)

    def count(self, prefix: str = "") -> int:
        with self._lock:
            if self.namespace in self.backend.timed:
                return len(self._live_items(prefix))
            if not prefix:
                return len(self._d())
            return len(self._sorted(self._d(), prefix))

    def contains(self, key: str) -> bool:
        return self.get(key) is not None

    def items(self, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        with self._lock:
            snapshot = self._live_items(prefix)
        return iter(snapshot)

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        with self._lock:
            d, now, found = self._d(), self.backend.clock(), {}
            for key in keys:
                value = _live(d.get(key), now)
                if value is not None:
                    found[key] = value
            return found

    def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        with self._lock:
            self._w().update(items)

    def incr(self, key: str, delta: int) -> int:
        with self._lock:
            d = self._w()
            entry = d.get(key)
            if entry.__class__ is not tuple:  # no deadline: the common case
                new = check_counter((0 if entry is None else parse_counter(entry)) + delta)  # type: ignore[arg-type]
                d[key] = str(new).encode("ascii")
                return new
            raw = _live(entry, self.backend.clock())
            new = check_counter((0 if raw is None else parse_counter(raw)) + delta)
            text = str(new).encode("ascii")
            # a live counter keeps its deadline; an expired one starts afresh without
            d[key] = text if raw is None else (text, entry[1])
            return new

    def clear(self, prefix: str = "") -> int:
        with self._lock:
            d, now = self._d(), self.backend.clock()
            doomed = self._sorted(d, prefix)
            if doomed:
                self._forget_order()
            return sum(1 for k in doomed if _live(d.pop(k), now) is not None)

    def write_batch(
        self,
        sets: Sequence[tuple[str, bytes, float | None]],
        removes: Sequence[str] = (),
        clears: Sequence[str] = (),
        *,
        atomic: bool = True,
    ) -> None:
        # One hold of the store's lock: every reader (they take it too, or read one key)
        # sees the batch whole or not at all.
        with self._lock:
            d = self._w()
            for prefix in clears:  # each lookup sees the deletions before it (the count)
                for key in self._sorted(d, prefix):
                    del d[key]
            for key in removes:
                d.pop(key, None)
            if clears or removes:
                self._forget_order()  # a delete and an add could keep the count
            for key, value, deadline in sets:
                d[key] = value if deadline is None else (value, deadline)
            if any(deadline is not None for _, _, deadline in sets):
                self.backend.timed.add(self.namespace)

    def purge(self) -> int:
        with self._lock:
            d, now = self._d(), self.backend.clock()
            expired = [k for k, e in d.items() if e.__class__ is tuple and e[1] <= now]
            for key in expired:
                del d[key]
            if expired:
                self._forget_order()
            return len(expired)


class MemoryBackend(Backend):
    """Process-local, thread-safe storage; nothing survives the process."""

    name = "memory"
    durable = False
    multiprocess = False
    expiry = True
    atomic_batches = True
    isolated_batches = True
    blocking = False  # answers from process memory: the async API calls it in the loop

    def __init__(self, url: StoreURL, options: Options) -> None:
        super().__init__(url, options)
        self.shared_name = url.host or url.path or None
        self.data: _Data = {}
        #: Namespaces that have held a key with a deadline: the others skip the checks.
        self.timed: set[str] = set()
        self.order: _Order = {}
        # One lock per backend for its whole life (buckets hold on to it); a shared
        # store's lock is the one every store of that name uses.
        self.lock: threading.Lock
        if self.shared_name:
            with _shared_lock:
                self.data, self.timed, self.order, self.lock = _shared.setdefault(
                    self.shared_name, ({}, set(), {}, threading.Lock())
                )
        else:
            self.lock = threading.Lock()

    def open(self) -> None:
        if self.shared_name:
            self.data, self.timed, self.order = _shared[self.shared_name][:3]
        else:
            self.data, self.timed, self.order = {}, set(), {}

    def close(self) -> None:
        self.data, self.timed, self.order = {}, set(), {}

    def bucket(self, namespace: str) -> MemoryBucket:
        return MemoryBucket(self, namespace)

    def near_cache_coherence(self, cache: NearCache) -> Coherence | None:
        # A private store has one writer, this process's store; a named one is shared
        # with other stores whose writes this one's cache would not hear of.
        from ..nearcache import LocalOnly

        return None if self.shared_name else LocalOnly()

    def namespaces(self) -> list[str]:
        with self.lock:
            now = self.clock()
            return sorted(
                name
                for name, d in self.data.items()
                if any(_live(entry, now) is not None for entry in d.values())
            )

    def purge(self, namespace: str | None = None) -> dict[str, int]:
        names = [namespace] if namespace is not None else list(self.timed)
        counts = {name: self.bucket(name).purge() for name in names}
        return {name: n for name, n in counts.items() if n}

    def identity(self) -> tuple[object, ...]:
        # A private store is only ever itself; a named one is shared by name.
        return (self.name, self.shared_name or id(self))

    def info(self) -> dict[str, str]:
        return {**super().info(), "shared": self.shared_name or "no (private to this store)"}
