"""AsyncScope and AsyncScopeBatch: scoped views of an async namespace.

The twins of :class:`~plugstore.scopes.Scope` and :class:`~plugstore.scopes.ScopeBatch`
over the same :class:`~plugstore.scopecore.ScopeCore`: the same stored keys, defaults
and guarantees, awaited.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from ..errors import DecodeError
from ..keys import remaining
from ..locks import DEFAULT_LEASE, DEFAULT_TIMEOUT
from ..nscore import MISSING
from ..scopecore import BatchCore, IdCollector, LevelDefaults, ListingMerger, ScopeCore
from ..scopekeys import ScopeId, ScopePath, level_prefix
from .bucket import AsyncBucket
from .locks import AsyncLock
from .runtime import arun

if TYPE_CHECKING:
    from .namespace import AsyncNamespace


class AsyncScope(ScopeCore):
    """The data of one scope of an async namespace: ``ans.scope(guild=1, member=2)``.

    Reads see stored values, else the defaults registered for the scope's levels;
    writes and deletes touch stored values only.  See :class:`plugstore.scopes.Scope`
    for every method's contract: these are the same, awaited (``await scope.get(key)``,
    ``await scope.delete(key)`` for ``del scope[key]``, ``await scope.count()`` for
    ``len(scope)``, ``await scope.contains(key)`` for ``key in scope``).
    """

    _ns: AsyncNamespace

    def __init__(self, namespace: AsyncNamespace, path: ScopePath, defaults: LevelDefaults) -> None:
        super().__init__(namespace, path, defaults)

    @property
    def namespace(self) -> AsyncNamespace:
        """The namespace this scope lives in."""
        return self._ns

    def scope(self, **path: ScopeId) -> AsyncScope:
        """A scope beneath this one: ``ans.scope(guild=1).scope(member=2)``."""
        return self._ns.scope_at(self._path + tuple(path.items()))

    def _bucket(self) -> AsyncBucket:
        return self._ns._b()

    # -- single values ---------------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` (stored or registered default), else ``default``."""
        full = self._full(key)
        raw = await self._bucket().get(full)
        if raw is not None and not self._defaults.encoded:
            try:  # the common case, without the merge machinery
                return self._codec.decode(raw)
            except DecodeError:
                if not self._ns.quarantine:
                    raise
        value = (await arun(self._read_steps(key, full, raw)))[1]
        return default if value is MISSING else value

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store ``value``; with ``ttl``, it expires ``ttl`` seconds from now."""
        await arun(self._set_steps(key, value, ttl))

    async def add(self, key: str, value: Any, *, ttl: float | None = None) -> bool:
        """Store ``value`` only if nothing is stored under ``key`` (a registered default
        is not stored); whether it did (see :meth:`plugstore.scopes.Scope.add`)."""
        bucket = self._bucket()
        return await bucket.add(*self._add_args(key, value, ttl))

    async def expire(self, key: str, ttl: float) -> bool:
        """Make the stored value of ``key`` expire ``ttl`` seconds from now; False if
        nothing is stored."""
        bucket = self._bucket()
        return await bucket.expire(*self._expire_args(key, ttl))

    async def persist(self, key: str) -> bool:
        """Clear the deadline of the stored value of ``key``; False if nothing is stored."""
        return await self._bucket().persist(self._full(key))

    async def delete(self, key: str) -> None:
        """Delete the stored value of ``key``; ``KeyError`` if none is stored."""
        await arun(self._delete_steps(key))

    async def contains(self, key: object) -> bool:
        """Whether ``key`` is stored or has a registered default."""
        return await arun(self._contains_steps(key))

    async def is_stored(self, key: str) -> bool:
        """Whether ``key`` has a stored value (not only a registered default)."""
        return await self._bucket().contains(self._full(key))

    async def count(self) -> int:
        """How many keys the scope reads: stored ones and unstored defaults."""
        return await arun(self._len_steps())

    async def ttl(self, key: str) -> float | None:
        """Seconds until the stored value expires (``None``: no deadline); ``KeyError``
        if nothing is stored."""
        entry = await self._bucket().get_with_deadline(self._full(key))
        if entry is None:
            raise KeyError(key)
        return remaining(entry[1], self._ns._clock())

    # -- many values -----------------------------------------------------------------------

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """``{key: value}`` for the keys among ``keys`` that are stored or have a default."""
        return await arun(self._get_many_steps(keys))

    async def set_many(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        ttl: float | None = None,
    ) -> None:
        """Store many values in one bulk write (all validated and encoded first)."""
        await arun(self._set_many_steps(items, ttl))

    async def replace(
        self,
        values: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        ttl: float | None = None,
        atomic: bool = True,
    ) -> None:
        """Make ``values`` this scope's whole stored contents, atomically (see
        :meth:`plugstore.scopes.Scope.replace`)."""
        batch = AsyncScopeBatch(self._ns, atomic=atomic)
        batch.replace(self, values, ttl=ttl)
        await batch.commit()

    async def clear(self) -> None:
        """Delete this scope's stored keys (defaults stay; sub-scopes are untouched)."""
        await arun(self._clear_steps())

    async def clear_all(self) -> int:
        """Delete this scope's stored keys and every scope beneath it; how many."""
        return await arun(self._clear_all_steps())

    async def keys(self) -> AsyncIterator[str]:
        """The scope's keys in code point order: stored ones and unstored defaults."""
        cut = len(self._prefix)
        merger = ListingMerger(self._defaults.encoded)
        async for stored in self._bucket().keys(self._prefix):
            key = stored[cut:]
            for default, _ in merger.feed(key):
                yield default
            yield key
        for default, _ in merger.finish():
            yield default

    async def scan(self) -> AsyncIterator[tuple[str, Any]]:
        """``(key, value)`` pairs in key order: stored values (merged over their
        defaults) and unstored defaults."""
        cut = len(self._prefix)
        merger = ListingMerger(self._defaults.encoded)
        async for stored, raw in self._bucket().items(self._prefix):
            key = stored[cut:]
            for default, encoded in merger.feed(key):
                yield default, self._codec.decode(encoded)
            value = (await arun(self._read_steps(key, stored, raw)))[1]
            if value is not MISSING:  # set aside as undecodable, with no default
                yield key, value
        for default, encoded in merger.finish():
            yield default, self._codec.decode(encoded)

    async def ids(self, level: str) -> AsyncIterator[ScopeId]:
        """The ids of the scopes at ``level`` directly beneath this one that hold data,
        in stored-key order (see :meth:`plugstore.scopes.Scope.ids`)."""
        ids = IdCollector(level_prefix(self._path, level))
        async for stored in self._bucket().keys(ids.prefix):
            value = ids.feed(stored)
            if value is not None:
                yield value

    async def children(self, level: str) -> dict[ScopeId, dict[str, Any]]:
        """``{id: {key: value}}`` of each scope at ``level`` beneath this one, defaults
        filled in (see :meth:`plugstore.scopes.Scope.children`)."""
        return await arun(self._children_steps(level))

    async def tree(self, *levels: str) -> dict[ScopeId, Any]:
        """The data of every scope ``levels`` beneath this one, nested by id, in one
        prefix read (see :meth:`plugstore.scopes.Scope.tree`)."""
        return await arun(self._tree_steps(levels))

    # -- atomic helpers and locks ----------------------------------------------------------

    async def incr(self, key: str, delta: int = 1) -> int:
        """Atomically add ``delta``; an absent key starts from its default (or 0)."""
        return await arun(self._incr_steps(key, delta))

    async def decr(self, key: str, delta: int = 1) -> int:
        """``incr(key, -delta)``."""
        return await self.incr(key, -delta)

    async def compute(self, key: str, fn: Callable[[Any], Any], default: Any = None) -> Any:
        """Atomically replace the value by ``fn(value)`` (a plain function, maybe run
        more than once); see :meth:`plugstore.scopes.Scope.compute`."""
        return await arun(self._compute_steps(key, fn, default))

    async def setdefault(self, key: str, default: Any = None) -> Any:
        """The value of ``key``; if it is neither stored nor defaulted, store ``default``."""
        return await arun(self._setdefault_steps(key, default))

    async def pop(self, key: str, default: Any = MISSING) -> Any:
        """Delete the stored value and return what ``get`` returned, atomically."""
        return await arun(self._pop_steps(key, default))

    @asynccontextmanager
    async def mutable(self, key: str, default: Any = MISSING) -> AsyncIterator[Any]:
        """Edit a value in an ``async with`` block; written back atomically or
        ``ConflictError`` (see :meth:`plugstore.scopes.Scope.mutable`)."""
        full, raw, start, value = await arun(self._mutable_read_steps(key, default))
        yield value
        await arun(self._mutable_write_steps(full, raw, start, value))

    def lock(
        self, key: str, *, timeout: float | None = DEFAULT_TIMEOUT, lease: float = DEFAULT_LEASE
    ) -> AsyncLock:
        """A cross-process lock on ``key`` of this scope (the sync API's lock too)."""
        return AsyncLock(self._ns, self._full(key), timeout, lease)

    def group_lock(
        self, *, timeout: float | None = DEFAULT_TIMEOUT, lease: float = DEFAULT_LEASE
    ) -> AsyncLock:
        """A cross-process lock on this scope as a whole (see
        :meth:`plugstore.scopes.Scope.group_lock`)."""
        self._bucket()
        return AsyncLock(self._ns, self._prefix, timeout, lease)


class AsyncScopeBatch(BatchCore):
    """Writes to several scopes of one async namespace, applied together when the
    ``async with ans.batch() as batch:`` block ends (see
    :class:`plugstore.scopes.ScopeBatch`)."""

    async def commit(self) -> None:
        """Apply the batch (once); ``BatchNotAtomicError`` if it cannot be atomic."""
        await arun(self._commit_steps())

    async def __aenter__(self) -> AsyncScopeBatch:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            await self.commit()
        else:
            self.discard()


__all__ = ["AsyncScope", "AsyncScopeBatch"]
