"""``memory://`` -- process-local storage for tests and throwaway data.

``memory://`` gives a private store; ``memory://NAME`` is shared by every store opened
with the same name in this process (and outlives their ``close()``), which makes
"persistence across reopen" testable without files.  Values are stored as encoded bytes,
so copy semantics are the same as on every other backend.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from ..backend import Backend, Bucket, Options
from ..keys import check_counter, parse_counter
from ..url import StoreURL

_Data = dict[str, dict[str, bytes]]
_shared: dict[str, tuple[_Data, threading.Lock]] = {}
_shared_lock = threading.Lock()


class MemoryBucket(Bucket):
    """One namespace: a dict of bytes guarded by the store's lock."""

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

    def get(self, key: str) -> bytes | None:
        # Lock-free: a single dict read is atomic in CPython (with or without the GIL).
        # Writes keep the lock so that cas/incr stay atomic with respect to them.
        d = self.backend.data.get(self.namespace)
        return None if d is None else d.get(key)

    def set(self, key: str, value: bytes) -> None:
        data = self.backend.data
        with self._lock:
            d = data.get(self.namespace)
            if d is None:
                d = data[self.namespace] = {}
            d[key] = value

    def remove(self, key: str) -> bool:
        with self._lock:
            return self._d().pop(key, None) is not None

    def cas(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        with self._lock:
            if self._d().get(key) != expected:
                return False
            if new is None:
                self._d().pop(key, None)
            else:
                self._w()[key] = new
            return True

    def keys(self, prefix: str = "") -> Iterator[str]:
        with self._lock:
            snapshot = [k for k in self._d() if k.startswith(prefix)]
        return iter(snapshot)

    def count(self, prefix: str = "") -> int:
        with self._lock:
            if not prefix:
                return len(self._d())
            return sum(1 for k in self._d() if k.startswith(prefix))

    def contains(self, key: str) -> bool:
        return key in self._d()

    def items(self, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        with self._lock:
            snapshot = [(k, v) for k, v in self._d().items() if k.startswith(prefix)]
        return iter(snapshot)

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        with self._lock:
            d = self._d()
            return {k: d[k] for k in keys if k in d}

    def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        with self._lock:
            self._w().update(items)

    def incr(self, key: str, delta: int) -> int:
        with self._lock:
            raw = self._d().get(key)
            new = check_counter((0 if raw is None else parse_counter(raw)) + delta)
            self._w()[key] = str(new).encode("ascii")
            return new

    def clear(self, prefix: str = "") -> int:
        with self._lock:
            d = self._d()
            doomed = [k for k in d if k.startswith(prefix)]
            for k in doomed:
                del d[k]
            return len(doomed)


class MemoryBackend(Backend):
    """Process-local, thread-safe storage; nothing survives the process."""

    name = "memory"
    durable = False
    multiprocess = False

    def __init__(self, url: StoreURL, options: Options) -> None:
        super().__init__(url, options)
        self.shared_name = url.host or url.path or None
        self.data: _Data = {}
        # One lock per backend for its whole life (buckets hold on to it); a shared
        # store's lock is the one every store of that name uses.
        self.lock: threading.Lock
        if self.shared_name:
            with _shared_lock:
                self.data, self.lock = _shared.setdefault(self.shared_name, ({}, threading.Lock()))
        else:
            self.lock = threading.Lock()

    def open(self) -> None:
        if self.shared_name:
            self.data = _shared[self.shared_name][0]
        else:
            self.data = {}

    def close(self) -> None:
        self.data = {}

    def bucket(self, namespace: str) -> MemoryBucket:
        return MemoryBucket(self, namespace)

    def namespaces(self) -> list[str]:
        with self.lock:
            return [name for name, d in self.data.items() if d]

    def identity(self) -> tuple[object, ...]:
        # A private store is only ever itself; a named one is shared by name.
        return (self.name, self.shared_name or id(self))

    def info(self) -> dict[str, str]:
        return {**super().info(), "shared": self.shared_name or "no (private to this store)"}
