"""The near cache (:mod:`plugstore.nearcache`) through the async API.

An async store opened with ``cache=N`` shares its sync store's near cache.  A cached
read whose coherence is told by the engine (PostgreSQL, Redis, memory) is answered in
the event loop itself, with no thread and no round trip; one whose coherence must be
asked first (SQLite's ``PRAGMA data_version``, which waits for the writer's lock) runs
on the store's threads like any SQLite call.  Misses and writes go to the backend's own
async bucket (native where the backend has a driver) and fill or drop entries exactly
as the sync :class:`~plugstore.nearcache.CachedBucket` does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from ..nearcache import CachedBucket
from .bucket import AsyncBucket
from .locks import AsyncHeld
from .runtime import Runtime


class AsyncCachedBucket(AsyncBucket):
    """``inner`` (the backend's async bucket) behind the near cache of ``cached``."""

    def __init__(self, cached: CachedBucket, inner: AsyncBucket, runtime: Runtime) -> None:
        super().__init__(cached, runtime)
        self.cached = cached
        self.inner = inner
        self._cache = cached._cache
        self._in_loop = not cached._cache.coherence.immediate

    # -- reads -----------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        found = await self.get_with_deadline(key)
        return None if found is None else found[0]

    async def get_with_deadline(self, key: str) -> tuple[bytes, float | None] | None:
        if not self._in_loop:
            return await self._do(self.cached.get_with_deadline, key)
        self.runtime.check()
        entry = self.cached._cached(key)
        if entry is not None:
            return None if entry[0] is None else (entry[0], entry[1])
        k = (self.namespace, key)
        ticket = self._cache.begin(k)
        found = await self.inner.get_with_deadline(key)
        if found is None:
            self._cache.fill(k, ticket, None, None)
        else:
            self._cache.fill(k, ticket, found[0], found[1])
        return found

    async def contains(self, key: str) -> bool:
        return await self.get(key) is not None

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return await self.inner.get_many(keys)  # one snapshot, as the sync bucket

    async def get_many_with_deadlines(
        self, keys: Sequence[str]
    ) -> dict[str, tuple[bytes, float | None]]:
        return await self.inner.get_many_with_deadlines(keys)

    async def keys_page(self, prefix: str = "", limit: int | None = None) -> list[str]:
        return await self.inner.keys_page(prefix, limit)

    async def items_page(
        self, prefix: str = "", limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        return await self.inner.items_page(prefix, limit)

    async def keys_after(self, prefix: str, after: str, limit: int) -> list[str]:
        return await self.inner.keys_after(prefix, after, limit)

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        async for key in self.inner.keys(prefix):
            yield key

    async def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        async for pair in self.inner.items(prefix):
            yield pair

    async def count(self, prefix: str = "") -> int:
        return await self.inner.count(prefix)

    async def stored_size(self, prefix: str = "") -> int:
        return await self.inner.stored_size(prefix)

    async def purge(self) -> int:
        return await self.inner.purge()

    async def lock(self, key: str, timeout: float | None, lease: float) -> AsyncHeld | None:
        return await self.inner.lock(key, timeout, lease)

    # -- writes: the backend's, then what they touched is dropped --------------------------

    def _drop(self, key: str) -> None:
        self._cache.invalidate(self.namespace, key)

    async def set(self, key: str, value: bytes) -> None:
        try:
            await self.inner.set(key, value)
        finally:
            self._drop(key)

    async def remove(self, key: str) -> bool:
        try:
            return await self.inner.remove(key)
        finally:
            self._drop(key)

    async def cas(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        try:
            return await self.inner.cas(key, expected, new)
        finally:
            self._drop(key)

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        try:
            await self.inner.set_many(items)
        finally:
            self._cache.invalidate_many(self.namespace, [key for key, _ in items])

    async def incr(self, key: str, delta: int) -> int:
        try:
            return await self.inner.incr(key, delta)
        finally:
            self._drop(key)

    async def clear(self, prefix: str = "") -> int:
        try:
            return await self.inner.clear(prefix)
        finally:
            self._cache.invalidate_namespace(self.namespace)

    async def set_until(self, key: str, value: bytes, deadline: float) -> None:
        try:
            await self.inner.set_until(key, value, deadline)
        finally:
            self._drop(key)

    async def set_many_until(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        try:
            await self.inner.set_many_until(items)
        finally:
            self._cache.invalidate_many(self.namespace, [key for key, _, _ in items])

    async def add(self, key: str, value: bytes, deadline: float | None) -> bool:
        try:
            return await self.inner.add(key, value, deadline)
        finally:
            self._drop(key)

    async def expire(self, key: str, deadline: float) -> bool:
        try:
            return await self.inner.expire(key, deadline)
        finally:
            self._drop(key)

    async def persist(self, key: str) -> bool:
        try:
            return await self.inner.persist(key)
        finally:
            self._drop(key)

    async def write_batch(self, *args: Any, **kwargs: Any) -> None:
        try:
            await self.inner.write_batch(*args, **kwargs)
        finally:
            self._cache.invalidate_namespace(self.namespace)


__all__ = ["AsyncCachedBucket"]
