"""The async bucket: one namespace of a backend, awaited.

:class:`AsyncBucket` has every method of :class:`~plugstore.backend.Bucket`, awaited,
with the same contract.  By default each runs the sync bucket's method on the store's
thread pool (see :mod:`plugstore.aio.runtime`); a backend with a native async driver
subclasses it and overrides what its driver does natively, leaving the rest on threads.
A backend whose operations never block (``Backend.blocking = False``: memory) is called
directly in the event loop.

Locks: a subclass whose driver takes the engine's lock natively overrides ``async def
lock(self, key, timeout, lease) -> AsyncHeld | None`` (the contract of
:meth:`plugstore.backend.Bucket.lock`, awaited: wait in the event loop up to
``timeout``, ``None`` if the lock stayed taken, and leave nothing taken when
cancelled); :class:`~plugstore.aio.locks.AsyncLock` calls it after its gate.  The
default tries the sync bucket's lock on the store's threads (see
:mod:`plugstore.aio.locks`).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable, Sequence
from itertools import islice
from typing import Any, TypeVar

from ..backend import Backend, Bucket
from .locks import AsyncHeld, thread_lock
from .runtime import Runtime

R = TypeVar("R")

#: Keys or pairs fetched per thread hop when streaming a listing.
PAGE = 256


class AsyncBucket:
    """One namespace of one backend, awaited (see the module docs)."""

    def __init__(self, bucket: Bucket, runtime: Runtime) -> None:
        self.sync = bucket
        self.backend: Backend = bucket.backend
        self.namespace = bucket.namespace
        self.runtime = runtime
        self._inline = not getattr(bucket.backend, "blocking", True)

    async def _do(self, fn: Callable[..., R], *args: Any) -> R:
        if self._inline:
            self.runtime.check()
            return fn(*args)
        return await self.runtime.call(fn, *args)

    # -- the Bucket contract, awaited ------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        return await self._do(self.sync.get, key)

    async def set(self, key: str, value: bytes) -> None:
        await self._do(self.sync.set, key, value)

    async def remove(self, key: str) -> bool:
        return await self._do(self.sync.remove, key)

    async def cas(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        return await self._do(self.sync.cas, key, expected, new)

    async def keys_page(self, prefix: str = "", limit: int | None = None) -> list[str]:
        return await self._do(self.sync.keys_page, prefix, limit)

    async def items_page(
        self, prefix: str = "", limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        return await self._do(self.sync.items_page, prefix, limit)

    async def keys_after(self, prefix: str, after: str, limit: int) -> list[str]:
        return await self._do(self.sync.keys_after, prefix, after, limit)

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """The keys starting with ``prefix`` in code point order, fetched a page at a
        time (the sync listing pages by key, so it may be resumed on any thread)."""
        listing = self.sync.keys(prefix)
        while True:
            page = await self._do(_take, listing)
            for key in page:
                yield key
            if len(page) < PAGE:
                return

    async def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        """``(key, value)`` pairs starting with ``prefix``, a page at a time."""
        listing = self.sync.items(prefix)
        while True:
            page = await self._do(_take, listing)
            for pair in page:
                yield pair
            if len(page) < PAGE:
                return

    async def count(self, prefix: str = "") -> int:
        return await self._do(self.sync.count, prefix)

    async def stored_size(self, prefix: str = "") -> int:
        return await self._do(self.sync.stored_size, prefix)

    async def contains(self, key: str) -> bool:
        return await self._do(self.sync.contains, key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return await self._do(self.sync.get_many, keys)

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        await self._do(self.sync.set_many, items)

    async def incr(self, key: str, delta: int) -> int:
        return await self._do(self.sync.incr, key, delta)

    async def clear(self, prefix: str = "") -> int:
        return await self._do(self.sync.clear, prefix)

    async def set_until(self, key: str, value: bytes, deadline: float) -> None:
        await self._do(self.sync.set_until, key, value, deadline)

    async def set_many_until(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        await self._do(self.sync.set_many_until, items)

    async def get_with_deadline(self, key: str) -> tuple[bytes, float | None] | None:
        return await self._do(self.sync.get_with_deadline, key)

    async def get_many_with_deadlines(
        self, keys: Sequence[str]
    ) -> dict[str, tuple[bytes, float | None]]:
        return await self._do(self.sync.get_many_with_deadlines, keys)

    async def purge(self) -> int:
        return await self._do(self.sync.purge)

    async def add(self, key: str, value: bytes, deadline: float | None) -> bool:
        return await self._do(self.sync.add, key, value, deadline)

    async def expire(self, key: str, deadline: float) -> bool:
        return await self._do(self.sync.expire, key, deadline)

    async def persist(self, key: str) -> bool:
        return await self._do(self.sync.persist, key)

    async def lock(self, key: str, timeout: float | None, lease: float) -> AsyncHeld | None:
        """Take the engine's own lock on ``key`` (the sync bucket overrides
        :meth:`Bucket.lock <plugstore.backend.Bucket.lock>`), waiting up to ``timeout``
        seconds (``None``: forever) without blocking the event loop; return the held
        lock, or ``None`` if it stayed taken.  A cancelled call leaves nothing taken.

        :class:`~plugstore.aio.locks.AsyncLock` calls it after the store's own gate; the
        generic lease entry never gets here (it runs as steps).  By default the sync
        bucket's lock is tried without waiting on the store's threads, with sleeps in
        the event loop between tries; a native driver overrides it.
        """
        return await thread_lock(self.sync, self.runtime, key, timeout, lease)

    async def write_batch(
        self,
        sets: Sequence[tuple[str, bytes, float | None]],
        removes: Sequence[str] = (),
        clears: Sequence[str] = (),
        *,
        atomic: bool = True,
    ) -> None:
        await self._do(lambda: self.sync.write_batch(sets, removes, clears, atomic=atomic))


class AsyncDriver:
    """A backend's native async driver, one per async store.

    A backend names its subclass in ``Backend.async_driver``.  The async store makes it
    once the sync backend has opened (in the event loop, so it may create loop-bound
    clients and pools in :meth:`open`), asks it for each namespace's bucket, and closes
    it (:meth:`aclose`) before the sync backend.  This base class drives nothing
    natively: every call runs on the store's threads.
    """

    def __init__(self, backend: Backend, runtime: Runtime) -> None:
        self.backend = backend
        self.runtime = runtime

    async def open(self) -> None:
        """Create the driver's clients or pools; raise a plugstore error if that fails."""

    async def aclose(self) -> None:
        """Release what :meth:`open` created."""

    def bucket(self, sync: Bucket) -> AsyncBucket:
        """The async bucket of ``sync`` (an :class:`AsyncBucket` subclass overriding what
        the driver does natively)."""
        return AsyncBucket(sync, self.runtime)


def load_driver(backend: Backend, runtime: Runtime) -> AsyncDriver:
    """The async driver ``backend`` names, or the threads-only base."""
    target = getattr(backend, "async_driver", None)
    if not target:
        return AsyncDriver(backend, runtime)
    module_name, _, attribute = target.partition(":")
    driver_class: type[AsyncDriver] = getattr(importlib.import_module(module_name), attribute)
    return driver_class(backend, runtime)


def _take(listing: Any) -> list[Any]:
    return list(islice(listing, PAGE))


__all__ = ["PAGE", "AsyncBucket", "AsyncDriver", "load_driver"]
