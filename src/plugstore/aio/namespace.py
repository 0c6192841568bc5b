"""AsyncNamespace: one plugin's data, awaited."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from ..codecs import Codec
from ..errors import DecodeError, InvalidKeyError, StoreError, StoreNotOpenError
from ..keys import check_key, check_prefix, remaining
from ..locks import DEFAULT_LEASE, DEFAULT_TIMEOUT
from ..nscore import ABSENT, MISSING, NamespaceCore, check_delta, check_plain_key
from ..scopecore import register_defaults
from ..scopekeys import SCOPE_LEAD, ScopeId
from ..versioning import read_version_steps
from .bucket import AsyncBucket
from .locks import AsyncLock
from .runtime import arun
from .scopes import AsyncScope, AsyncScopeBatch
from .versioning import amigrate

if TYPE_CHECKING:
    from .store import AsyncStore


class AsyncNamespace(NamespaceCore):
    """One plugin's key-value data, awaited: the twin of
    :class:`~plugstore.namespace.Namespace`, with the same names and guarantees.

    ``await ns.get(key, default)``, ``await ns.set(key, value, ttl=...)``, ``await
    ns.delete(key)`` (``KeyError`` when absent), the atomic helpers (``incr``, ``compute``,
    ``setdefault``, ``pop``, ``replace_if``...), ``async for key in ns.keys()``, ``async
    for key, value in ns.scan()``, ``async with ns.mutable(key) as value``, ``async with
    ns.lock(key)``.  Values are encoded by the store's codec, so every read returns a
    fresh copy, and the data is stored exactly as the sync API stores it.
    """

    _bucket: AsyncBucket

    def __init__(
        self,
        store: AsyncStore,
        name: str,
        bucket: AsyncBucket,
        codec: Codec,
        *,
        quarantine: bool = False,
    ) -> None:
        self._astore = store
        self._runtime = store._runtime
        #: ``(version, migrations)`` until awaited: the data version to bring it to.
        self._pending: tuple[int, dict[int, Callable[..., Any]]] | None = None
        backend = store.backend
        self._init_core(
            name,
            bucket,
            codec,
            max_value_size=store.max_value_size,
            expiry=backend.expiry,
            clock=backend.clock,
            backend_name=backend.name,
            quarantine=quarantine,
        )

    # -- plumbing ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The namespace's name."""
        return self._name

    @property
    def store(self) -> AsyncStore:
        """The async store this namespace belongs to."""
        return self._astore

    @property
    def quarantine(self) -> bool:
        """Whether undecodable values are set aside instead of raising."""
        return self._quarantine

    def _b(self) -> AsyncBucket:
        if not self._runtime.open:
            raise StoreNotOpenError(
                f"namespace {self._name!r}: its store is closed (open a new one first)"
            )
        if self._pending is not None:
            raise StoreError(
                f"namespace {self._name!r} is versioned: await it before use "
                f"(ns = await store.namespace({self._name!r}, version=...))"
            )
        return self._bucket

    async def _ready(self) -> AsyncNamespace:
        if self._pending is not None:
            version, migrations = self._pending
            if not self._runtime.open:
                raise StoreNotOpenError(f"namespace {self._name!r}: its store is closed")
            self._pending = None
            try:
                await amigrate(self, version, migrations)
            except BaseException:
                self._pending = (version, migrations)  # not migrated: still unusable
                raise
            self._astore.sync._current_versions.add((self._name, version))
        return self

    def __await__(self) -> Generator[Any, None, AsyncNamespace]:
        """``await store.namespace(name, version=...)``: migrate first (see
        :mod:`plugstore.aio.versioning`), then the namespace itself."""
        return self._ready().__await__()

    async def data_version(self) -> int | None:
        """The data version stamped in this namespace, or ``None`` if it has none."""
        self._b()
        return await arun(read_version_steps(self))

    def _sibling(self, namespace: str) -> AsyncBucket:
        return self._astore._bucket(namespace)

    def __repr__(self) -> str:
        state = "open" if self._runtime.open else "closed"
        return f"<AsyncNamespace {self._name!r} of {self._astore.url} ({state})>"

    # -- single values ---------------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` if it is absent."""
        raw = await self._b().get(check_key(key))
        if raw is None:
            return default
        try:
            return self._codec_decode(raw)
        except DecodeError:
            if not self._quarantine:
                raise
        value = await arun(self._decode_found_steps(key, raw))
        return default if value is ABSENT else value

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``; with ``ttl``, it expires ``ttl`` seconds from now
        (see :meth:`plugstore.namespace.Namespace.set`)."""
        bucket = self._b()
        check_plain_key(key)
        if ttl is None:
            await bucket.set(key, self._encode(value))
        else:
            deadline = self._deadline(ttl)
            await bucket.set_until(key, self._encode(value), deadline)

    async def add(self, key: str, value: Any, *, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent (an expired key counts as absent);
        whether it did.  Atomic: of many racing writers exactly one gets True (see
        :meth:`plugstore.namespace.Namespace.add`)."""
        bucket = self._b()
        return await bucket.add(*self._add_args(key, value, ttl))

    async def expire(self, key: str, ttl: float) -> bool:
        """Make the existing ``key`` expire ``ttl`` seconds from now, its value untouched;
        False if it is absent or expired."""
        bucket = self._b()
        return await bucket.expire(*self._expire_args(key, ttl))

    async def persist(self, key: str) -> bool:
        """Clear the deadline of ``key``, its value untouched; False if it is absent or
        expired."""
        bucket = self._b()
        return await bucket.persist(check_plain_key(key))

    async def delete(self, key: str) -> None:
        """Delete ``key``; ``KeyError`` if it is absent."""
        if not await self._b().remove(check_key(key)):
            raise KeyError(key)

    async def contains(self, key: object) -> bool:
        """Whether ``key`` is present (``False`` for an invalid key)."""
        bucket = self._b()
        try:
            checked = check_key(key)
        except InvalidKeyError:
            return False
        return await bucket.contains(checked)

    async def count(self) -> int:
        """How many plain keys the namespace holds (``len(ns)`` of the sync API)."""
        self._b()
        return await arun(self._len_steps())

    async def ttl(self, key: str) -> float | None:
        """Seconds until ``key`` expires, ``None`` if it has no deadline; ``KeyError`` if
        it is absent."""
        entry = await self._b().get_with_deadline(check_key(key))
        if entry is None:
            raise KeyError(key)
        return remaining(entry[1], self._clock())

    async def get_raw(self, key: str) -> bytes | None:
        """The stored bytes of ``key`` (``None`` if absent), not decoded; see
        :meth:`replace_if`."""
        return await self._b().get(check_key(key))

    # -- atomic helpers --------------------------------------------------------------------

    async def pop(self, key: str, default: Any = MISSING) -> Any:
        """Remove ``key`` and return its value, atomically (``KeyError`` without a
        default when absent)."""
        self._b()
        return await arun(self._pop_steps(key, default))

    async def setdefault(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, storing ``default`` first if absent (atomically)."""
        self._b()
        return await arun(self._setdefault_steps(key, default))

    async def incr(self, key: str, delta: int = 1) -> int:
        """Atomically add ``delta`` to an integer (absent counts as 0); the result."""
        check_delta(delta)
        bucket = self._b()
        return await bucket.incr(check_plain_key(key), delta)

    async def decr(self, key: str, delta: int = 1) -> int:
        """``incr(key, -delta)``."""
        return await self.incr(key, -delta)

    async def compute(self, key: str, fn: Callable[[Any], Any], default: Any = None) -> Any:
        """Atomically replace the value at ``key`` by ``fn(value)`` and return it.

        ``fn`` is a plain function (not a coroutine) of the current value (``default``
        when absent); it may run more than once, so it should have no side effects.
        """
        self._b()
        return await arun(self._compute_steps(key, fn, default))

    async def replace_if(self, key: str, expected: bytes | None, value: Any) -> bool:
        """Store ``value`` only if ``key`` still holds the bytes ``expected`` (``None``:
        only if absent); whether it did."""
        bucket = self._b()
        check_plain_key(key)
        return await bucket.cas(key, expected, self._encode(value))

    async def remove_if(self, key: str, expected: bytes) -> bool:
        """Delete ``key`` only if it still holds the bytes ``expected``; whether it did."""
        bucket = self._b()
        return await bucket.cas(check_key(key), expected, None)

    @asynccontextmanager
    async def mutable(self, key: str, default: Any = MISSING) -> AsyncIterator[Any]:
        """Edit a value in an ``async with`` block, written back on exit by
        compare-and-set (:class:`~plugstore.errors.ConflictError` if another writer got
        there first; nothing is written if the block raises or changes nothing)."""
        self._b()
        raw, start, value = await arun(self._mutable_read_steps(key, default))
        yield value
        self._b()
        await arun(self._mutable_write_steps(key, raw, start, value))

    def lock(
        self, key: str, *, timeout: float | None = DEFAULT_TIMEOUT, lease: float = DEFAULT_LEASE
    ) -> AsyncLock:
        """A cross-process lock on ``key``: ``async with ns.lock("k", timeout=5): ...``
        (see :class:`~plugstore.aio.locks.AsyncLock` and
        :meth:`plugstore.namespace.Namespace.lock`)."""
        self._b()
        return AsyncLock(self, check_key(key), timeout, lease)

    # -- scopes ---------------------------------------------------------------------------

    def scope(self, **path: ScopeId) -> AsyncScope:
        """A view of the data of one scope: ``ans.scope(guild=123, member=456)`` (see
        :meth:`plugstore.namespace.Namespace.scope`)."""
        return self.scope_at(tuple(path.items()))

    def scope_at(self, path: Iterable[tuple[str, ScopeId]]) -> AsyncScope:
        """:meth:`scope` for a path given as ``(level, id)`` pairs."""
        self._b()
        return AsyncScope(self, *self._scope_path(self._astore.scope_defaults, path))

    def register_defaults(
        self,
        defaults: Mapping[str, Any],
        *,
        levels: str | Sequence[str] = (),
        strict: bool = False,
    ) -> None:
        """Declare the values a scope level reads when nothing is stored (see
        :meth:`plugstore.namespace.Namespace.register_defaults`)."""
        register_defaults(self._astore.scope_defaults, self, defaults, levels, strict)

    def batch(self, *, atomic: bool = True) -> AsyncScopeBatch:
        """Writes to several scopes, applied together when the ``async with`` block
        ends (see :meth:`plugstore.namespace.Namespace.batch`)."""
        return AsyncScopeBatch(self, atomic=atomic)

    # -- many keys --------------------------------------------------------------------------

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """``{key: value}`` for the present keys among ``keys`` (one bulk read)."""
        self._b()
        return await arun(self._get_many_steps(keys))

    async def set_many(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        ttl: float | None = None,
    ) -> None:
        """Store many values in one bulk write (all validated and encoded first)."""
        self._b()
        deadline = None if ttl is None else self._deadline(ttl)
        pairs = items.items() if isinstance(items, Mapping) else items
        encoded = [(check_plain_key(k), self._encode(v)) for k, v in pairs]
        await arun(self._write_many_steps(encoded, deadline))

    async def clear(self) -> None:
        """Delete every plain key (scoped data and the data version stay)."""
        self._b()
        await arun(self._clear_steps())

    async def keys(self, prefix: str = "") -> AsyncIterator[str]:
        """The keys starting with ``prefix``, in code point order, streamed (plain keys
        only for ``""``)."""
        plain_only = not check_prefix(prefix)
        async for key in self._b().keys(prefix):
            if not (plain_only and key[0] == SCOPE_LEAD):
                yield key

    async def scan(self, prefix: str = "") -> AsyncIterator[tuple[str, Any]]:
        """``(key, value)`` pairs whose key starts with ``prefix``, streamed with bounded
        memory (see :meth:`plugstore.namespace.Namespace.scan`)."""
        plain_only = not check_prefix(prefix)
        decode = self._codec_decode
        async for key, raw in self._b().items(prefix):
            if plain_only and key[0] == SCOPE_LEAD:
                continue
            try:
                value = decode(raw)
            except DecodeError:
                if not self._quarantine:
                    raise
                value = await arun(self._decode_found_steps(key, raw))
                if value is ABSENT:
                    continue
            yield key, value


__all__ = ["AsyncNamespace"]
