"""AsyncStore, and ``plugstore.aio.open``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Mapping
from typing import Any

from ..backend import Backend
from ..codecs import Codec
from ..errors import ConfigurationError, StoreNotOpenError
from ..keys import check_namespace
from ..nearcache import CachedBucket
from ..scopes import DefaultsRegistry
from ..store import Store
from ..versioning import check_migrations
from .bucket import AsyncBucket, AsyncDriver, load_driver
from .cached import AsyncCachedBucket
from .locks import Gates
from .namespace import AsyncNamespace
from .runtime import DEFAULT_THREADS, Runtime, default_threads


class AsyncStore:
    """An opened store for asyncio code: hands out :class:`AsyncNamespace` objects.

    Open one with :func:`plugstore.aio.open` inside the running event loop; it belongs to
    that loop.  The data layout is the sync :class:`~plugstore.store.Store`'s, so a sync
    process and an async one can share a store and see each other's writes, counters
    and locks.  ``await store.aclose()`` (or leaving ``async with``) closes it.
    """

    def __init__(
        self, store: Store, runtime: Runtime, driver: AsyncDriver, *, owned: bool = True
    ) -> None:
        self._store = store
        self._runtime = runtime
        self._driver = driver
        self._owned = owned  # whether aclose() closes the sync store too
        self._gates = Gates()
        self._buckets: dict[str, AsyncBucket] = {}

    # -- facts -----------------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The backend instance."""
        return self._store.backend

    @property
    def codec(self) -> Codec:
        """The codec values are encoded with."""
        return self._store.codec

    @property
    def url(self) -> str:
        """The store URL with its password masked."""
        return self._store.url

    @property
    def max_value_size(self) -> int:
        """Largest encoded value this store accepts."""
        return self._store.max_value_size

    @property
    def scope_defaults(self) -> DefaultsRegistry:
        """Defaults registered for scope levels (see ``register_defaults``)."""
        return self._store.scope_defaults

    @property
    def is_open(self) -> bool:
        """Whether the store is open."""
        return self._runtime.open

    @property
    def sync(self) -> Store:
        """The sync store beneath: for code that must block (a script, a thread)."""
        return self._store

    # -- namespaces ------------------------------------------------------------------------

    def _bucket(self, namespace: str) -> AsyncBucket:
        bucket = self._buckets.get(namespace)
        if bucket is None:
            sync = self._store.backend.bucket(namespace)
            if isinstance(sync, CachedBucket):  # the store has a near cache
                bucket = AsyncCachedBucket(sync, self._driver.bucket(sync.inner), self._runtime)
            else:
                bucket = self._driver.bucket(sync)
            self._buckets[namespace] = bucket
        return bucket

    def namespace(
        self,
        name: str,
        *,
        version: int | None = None,
        migrations: Mapping[int, Callable[..., Any]] | None = None,
        quarantine: bool | None = None,
    ) -> AsyncNamespace:
        """The namespace ``name`` (validated; created on first write).

        With ``version`` (see :meth:`plugstore.store.Store.namespace` and
        :mod:`plugstore.aio.versioning`), await it before use: ``ns = await
        store.namespace("karma", version=2, migrations={2: to_v2})`` migrates older data
        first; using it unawaited raises :class:`~plugstore.errors.StoreError`.  Awaiting
        a namespace without a version just returns it.  ``quarantine`` (on by default for
        versioned namespaces) sets undecodable values aside instead of raising.
        """
        self._check_open()
        check_namespace(name)
        if version is None:
            if migrations:
                raise ValueError("migrations need a version= to migrate to")
            return AsyncNamespace(
                self, name, self._bucket(name), self.codec, quarantine=bool(quarantine)
            )
        check_migrations(version, migrations or {})
        ns = AsyncNamespace(
            self, name, self._bucket(name), self.codec, quarantine=quarantine is None or quarantine
        )
        if (name, version) not in self._store._current_versions:
            ns._pending = (version, dict(migrations or {}))
        return ns

    async def namespaces(self) -> list[str]:
        """Sorted names of the namespaces that hold data (plugstore's own aside)."""
        self._check_open()
        return await self._runtime.call(self._store.namespaces)

    async def drop_namespace(self, name: str) -> int:
        """Delete namespace ``name`` entirely; how many keys it held."""
        self._check_open()
        return await self._runtime.call(self._store.drop_namespace, name)

    async def purge(self, namespace: str | None = None) -> int:
        """Delete expired entries for good (see :meth:`plugstore.store.Store.purge`)."""
        self._check_open()
        return await self._runtime.call(self._store.purge, namespace)

    async def info(self) -> dict[str, str]:
        """Backend facts for diagnostics (URL masked, never credentials)."""
        self._check_open()
        return await self._runtime.call(self._store.info)

    def _check_open(self) -> None:
        if not self._runtime.open:
            raise StoreNotOpenError(f"store {self.url} is not open")
        self._runtime.check()

    # -- closing ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the store: its connections and its threads.  Closing twice raises
        ``StoreNotOpenError``, like the sync store."""
        self._check_open()
        runtime = self._runtime
        try:
            try:
                await self._driver.aclose()
            finally:
                if self._owned:
                    await runtime.call(self._store.close)
        finally:
            runtime.shutdown()

    async def __aenter__(self) -> AsyncStore:
        self._check_open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runtime.open:
            await self.aclose()

    def __repr__(self) -> str:
        state = "open" if self._runtime.open else "closed"
        return f"<AsyncStore {self.url} codec={self.codec.name} {state}>"


class _Opening:
    """What :func:`open` returns: awaitable (``store = await plugstore.aio.open(url)``)
    and an async context manager (``async with plugstore.aio.open(url) as store``)."""

    def __init__(self, url_or_name: Any, options: dict[str, Any]) -> None:
        self._url = url_or_name
        self._options = options
        self._store: AsyncStore | None = None

    async def _open(self) -> AsyncStore:
        from ..config import open_store

        options = dict(self._options)
        threads = options.pop("threads", None)
        if threads is not None:
            _check_threads(threads)
        # Opening takes one thread; the pool's size follows the backend's unless given.
        runtime = Runtime(asyncio.get_running_loop(), threads or DEFAULT_THREADS, "(opening)")
        opening = runtime.start(lambda: open_store(self._url, **options))
        try:
            store: Store = await asyncio.shield(opening)
        except asyncio.CancelledError:
            # Cancelled while the backend connects: close what it opens once it has.
            opening.add_done_callback(lambda done: _close_late(done, runtime))
            raise
        except BaseException:
            runtime.shutdown()
            raise
        runtime.url = store.url
        if threads is None:
            runtime.threads = default_threads(store.backend)
        try:
            driver = load_driver(store.backend, runtime)
            await driver.open()
        except BaseException:
            await runtime.start(store.close)
            runtime.shutdown()
            raise
        return AsyncStore(store, runtime, driver)

    def __await__(self) -> Generator[Any, None, AsyncStore]:
        return self._open().__await__()

    async def __aenter__(self) -> AsyncStore:
        self._store = await self._open()
        return self._store

    async def __aexit__(self, *exc: object) -> None:
        if self._store is not None and self._store.is_open:
            await self._store.aclose()


def _close_late(done: asyncio.Future[Store], runtime: Runtime) -> None:
    if not done.cancelled() and done.exception() is None:
        runtime.submit(done.result().close)
    runtime.shutdown()


async def wrap(store: Store, *, threads: int | None = None) -> AsyncStore:
    """An async store over an open sync ``store``, made in the running event loop: both
    see the same data (even a private ``memory://`` store's).  ``aclose()`` on it stops its
    threads and leaves ``store`` open: its owner closes it.  ``threads``: as for
    :func:`open`."""
    if threads is not None:
        _check_threads(threads)
    if not store.is_open:
        raise StoreNotOpenError(f"store {store.url} is not open")
    runtime = Runtime(
        asyncio.get_running_loop(), threads or default_threads(store.backend), store.url
    )
    try:
        driver = load_driver(store.backend, runtime)
        await driver.open()
    except BaseException:
        runtime.shutdown()
        raise
    return AsyncStore(store, runtime, driver, owned=False)


def _check_threads(threads: object) -> None:
    if type(threads) is not int or threads < 1:
        raise ConfigurationError(f"threads must be a whole number >= 1, got {threads!r}")


def open(url_or_name: Any = None, **options: Any) -> _Opening:
    """Open a store for asyncio code: ``async with plugstore.aio.open(url) as store`` or
    ``store = await plugstore.aio.open(url)``, inside the running event loop.

    The URL, its resolution and the options are :func:`plugstore.open`'s, plus
    ``threads``: the size of the store's own thread pool, on which the calls of engines
    without a native async driver run (default 8; DynamoDB's default is 3, see
    ``Backend.async_threads``).
    """
    return _Opening(url_or_name, options)


__all__ = ["AsyncStore", "open", "wrap"]
