"""``memory://`` -- process-local storage for tests and throwaway data.

``memory://`` gives a private store; ``memory://NAME`` is shared by every store opened
with the same name in this process (and outlives their ``close()``), which makes
"persistence across reopen" testable without files.  Values are stored as encoded bytes,
so copy semantics are the same as on every other backend.

Deadlines (``ttl=``) live in a second dict per namespace that holds only the keys which
have one; an expired entry stays in memory, invisible, until it is overwritten, deleted
or purged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from ..backend import Backend, Bucket, Options
from ..keys import check_counter, parse_counter
from ..url import StoreURL

_Data = dict[str, dict[str, bytes]]
_Deadlines = dict[str, dict[str, float]]
_shared: dict[str, tuple[_Data, _Deadlines, threading.Lock]] = {}
_shared_lock = threading.Lock()


class MemoryBucket(Bucket):
    """One namespace: a dict of bytes (and one of deadlines) guarded by the store's lock."""

    backend: MemoryBackend

    def __init__(self, backend: MemoryBackend, namespace: str) -> None:
        super().__init__(backend, namespace)
        self._lock = backend.lock  # one lock per backend instance, stable across reopen

    def _d(self) -> dict[str, bytes]:
        return self.backend.data.get(self.namespace) or {}

    def _w(self) -> dict[str, bytes]:
        data = self.backend.data
        d = data.get(self.namespace)
        if d is None:
            d = data[self.namespace] = {}
        return d

    def _dl(self) -> dict[str, float]:
        deadlines = self.backend.deadlines
        dl = deadlines.get(self.namespace)
        if dl is None:
            dl = deadlines[self.namespace] = {}
        return dl

    def _expired(self) -> set[str]:
        """The keys whose deadline has passed (call with the lock held)."""
        dl = self.backend.deadlines.get(self.namespace)
        if not dl:
            return set()
        now = self.backend.clock()
        return {k for k, when in dl.items() if when <= now}

    def _live(self, key: str) -> bytes | None:
        """The value of ``key`` unless absent or expired (call with the lock held)."""
        value = self._d().get(key)
        if value is not None:
            dl = self.backend.deadlines.get(self.namespace)
            when = dl.get(key) if dl else None
            if when is not None and when <= self.backend.clock():
                return None
        return value

    def get(self, key: str) -> bytes | None:
        # Lock-free: a single dict read is atomic in CPython (with or without the GIL).
        # Writes keep the lock so that cas/incr stay atomic with respect to them.
        d = self.backend.data.get(self.namespace)
        value = None if d is None else d.get(key)
        if value is not None:
            dl = self.backend.deadlines.get(self.namespace)
            if dl:
                when = dl.get(key)
                if when is not None and when <= self.backend.clock():
                    return None
        return value

    def set(self, key: str, value: bytes) -> None:
        data = self.backend.data
        with self._lock:
            d = data.get(self.namespace)
            if d is None:
                d = data[self.namespace] = {}
            d[key] = value
            dl = self.backend.deadlines.get(self.namespace)
            if dl:
                dl.pop(key, None)

    def set_until(self, key: str, value: bytes, deadline: float) -> None:
        with self._lock:
            self._w()[key] = value
            self._dl()[key] = deadline

    def set_many_until(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        with self._lock:
            d, dl = self._w(), self._dl()
            for key, value, deadline in items:
                d[key] = value
                if deadline is None:
                    dl.pop(key, None)
                else:
                    dl[key] = deadline

    def get_with_deadline(self, key: str) -> tuple[bytes, float | None] | None:
        with self._lock:
            value = self._live(key)
            if value is None:
                return None
            dl = self.backend.deadlines.get(self.namespace)
            return value, (dl.get(key) if dl else None)

    def get_many_with_deadlines(self, keys: Sequence[str]) -> dict[str, tuple[bytes, float | None]]:
        with self._lock:
            d, expired = self._d(), self._expired()
            dl = self.backend.deadlines.get(self.namespace) or {}
            return {k: (d[k], dl.get(k)) for k in keys if k in d and k not in expired}

    def remove(self, key: str) -> bool:
        with self._lock:
            live = self._live(key) is not None
            self._d().pop(key, None)
            self._dl().pop(key, None)
            return live

    def cas(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        with self._lock:
            current = self._live(key)
            if current != expected:
                return False
            if current is None:  # absent, or expired: a new entry, without a deadline
                self._dl().pop(key, None)
            if new is None:
                self._d().pop(key, None)
                self._dl().pop(key, None)
            else:
                self._w()[key] = new  # a live entry keeps its deadline
            return True

    def keys(self, prefix: str = "") -> Iterator[str]:
        with self._lock:
            expired = self._expired()
            snapshot = [k for k in self._d() if k.startswith(prefix) and k not in expired]
        return iter(snapshot)

    def count(self, prefix: str = "") -> int:
        with self._lock:
            expired = self._expired()
            if not prefix:
                return len(self._d()) - len(expired)
            return sum(1 for k in self._d() if k.startswith(prefix) and k not in expired)

    def contains(self, key: str) -> bool:
        return self.get(key) is not None

    def items(self, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        with self._lock:
            expired = self._expired()
            snapshot = [
                (k, v) for k, v in self._d().items() if k.startswith(prefix) and k not in expired
            ]
        return iter(snapshot)

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        with self._lock:
            d, expired = self._d(), self._expired()
            return {k: d[k] for k in keys if k in d and k not in expired}

    def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        with self._lock:
            self._w().update(items)
            dl = self.backend.deadlines.get(self.namespace)
            if dl:
                for key, _ in items:
                    dl.pop(key, None)

    def incr(self, key: str, delta: int) -> int:
        with self._lock:
            raw = self._live(key)
            new = check_counter((0 if raw is None else parse_counter(raw)) + delta)
            if raw is None:
                dl = self.backend.deadlines.get(self.namespace)
                if dl:
                    dl.pop(key, None)  # an expired entry's deadline is not the counter's
            self._w()[key] = str(new).encode("ascii")
            return new

    def clear(self, prefix: str = "") -> int:
        with self._lock:
            d, dl, expired = self._d(), self._dl(), self._expired()
            doomed = [k for k in d if k.startswith(prefix)]
            for k in doomed:
                del d[k]
                dl.pop(k, None)
            return sum(1 for k in doomed if k not in expired)

    def purge(self) -> int:
        with self._lock:
            d, dl, expired = self._d(), self._dl(), self._expired()
            for k in expired:
                d.pop(k, None)
                del dl[k]
            return len(expired)


class MemoryBackend(Backend):
    """Process-local, thread-safe storage; nothing survives the process."""

    name = "memory"
    durable = False
    multiprocess = False
    expiry = True

    def __init__(self, url: StoreURL, options: Options) -> None:
        super().__init__(url, options)
        self.shared_name = url.host or url.path or None
        self.data: _Data = {}
        self.deadlines: _Deadlines = {}
        # One lock per backend for its whole life (buckets hold on to it); a shared
        # store's lock is the one every store of that name uses.
        self.lock: threading.Lock
        if self.shared_name:
            with _shared_lock:
                self.data, self.deadlines, self.lock = _shared.setdefault(
                    self.shared_name, ({}, {}, threading.Lock())
                )
        else:
            self.lock = threading.Lock()

    def open(self) -> None:
        if self.shared_name:
            self.data, self.deadlines = _shared[self.shared_name][:2]
        else:
            self.data, self.deadlines = {}, {}

    def close(self) -> None:
        self.data, self.deadlines = {}, {}

    def bucket(self, namespace: str) -> MemoryBucket:
        return MemoryBucket(self, namespace)

    def namespaces(self) -> list[str]:
        with self.lock:
            now = self.clock()
            found = []
            for name, d in self.data.items():
                dl = self.deadlines.get(name) or {}
                if any(k not in dl or dl[k] > now for k in d):
                    found.append(name)
            return found

    def purge(self, namespace: str | None = None) -> dict[str, int]:
        names = [namespace] if namespace is not None else list(self.deadlines)
        counts = {name: self.bucket(name).purge() for name in names}
        return {name: n for name, n in counts.items() if n}

    def identity(self) -> tuple[object, ...]:
        # A private store is only ever itself; a named one is shared by name.
        return (self.name, self.shared_name or id(self))

    def info(self) -> dict[str, str]:
        return {**super().info(), "shared": self.shared_name or "no (private to this store)"}
