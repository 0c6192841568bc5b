"""plugstore as aiogram 3's FSM storage: ``Dispatcher(storage=PlugstoreStorage(url))``.

aiogram keeps each conversation's state and data in a ``BaseStorage``.  Its
``MemoryStorage`` forgets everything on restart, and its ``BaseStorage.update_data``
(a read, a merge, a write) loses updates that race.  :class:`PlugstoreStorage` keeps
them in any plugstore store, shared by every process using the same URL, with an
atomic ``update_data``; :meth:`PlugstoreStorage.create_isolation` serialises the
events of one chat across processes::

    from aiogram import Dispatcher
    from plugstore.integrations.aiogram import PlugstoreStorage

    storage = PlugstoreStorage("postgresql://bot@db/bot")
    dp = Dispatcher(storage=storage, events_isolation=storage.create_isolation())

The URL is opened lazily, in the running event loop, on the first call (the Dispatcher
is built before the loop exists).  Each record lives in the scope ``user=<user_id>`` of
the namespace ``aiogram-fsm``, under the key aiogram's key builder builds, so
``plugstore user export/forget`` find a user's states and data.

This is the only plugstore module that imports aiogram (MIT); plugstore never depends on
it.  See ``docs/aiogram.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncGenerator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

from aiogram.exceptions import DataNotDictLikeError
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import (
    BaseEventIsolation,
    BaseStorage,
    DefaultKeyBuilder,
    KeyBuilder,
    StateType,
    StorageKey,
)

from .. import aio
from ..aio import AsyncNamespace, AsyncScope, AsyncStore
from ..config import resolve_url
from ..errors import ConfigurationError, DecodeError, EncodeError
from ..keys import check_namespace
from ..store import Store
from ..url import StoreURL

#: The namespace holding the records unless ``namespace=`` says otherwise.
DEFAULT_NAMESPACE = "aiogram-fsm"
#: The scope level a record lives under: the StorageKey's ``user_id``.
USER_LEVEL = "user"
#: How long an isolation lock is held at most unless renewed (aiogram's Redis: 60 s).
DEFAULT_LEASE = 60.0

Ttl = float | datetime.timedelta
Part = Literal["data", "state", "lock"]


class FSMDataNotDictError(DataNotDictLikeError, EncodeError):
    """FSM data that is not a ``dict``: refused as aiogram's own storages refuse it.

    Both an ``aiogram.exceptions.DataNotDictLikeError`` (what aiogram code catches) and a
    plugstore :class:`~plugstore.errors.EncodeError`.  Nothing was written.
    """

    # DataNotDictLikeError comes first: its __init__ sets the message its __str__ reads.


class PlugstoreStorage(BaseStorage):
    """An aiogram 3 ``BaseStorage`` kept in a plugstore namespace.

    ``store`` is a URL (``None``: ``PLUGSTORE_URL``, else the embedded default SQLite
    file), opened with ``options`` (``codec=``, ``threads=``...) in the running event
    loop on first use and closed by :meth:`close`; or an open
    :class:`~plugstore.aio.AsyncStore` or :class:`~plugstore.Store`, which stays the
    caller's to close.

    Keys come from ``key_builder``, else from an aiogram ``DefaultKeyBuilder`` made with
    ``prefix``, ``separator``, ``with_bot_id``, ``with_business_connection_id`` and
    ``with_destiny`` (by default ``fsm``, ``:``, with the bot id, without the business
    connection id, with the destiny, so several bots share a store and aiogram's Scenes
    work).  ``state_ttl`` / ``data_ttl`` (seconds or a ``timedelta``) make states / data
    expire that long after their last write, as aiogram's ``RedisStorage`` does.
    """

    def __init__(
        self,
        store: str | AsyncStore | Store | None = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        key_builder: KeyBuilder | None = None,
        prefix: str | None = None,
        separator: str | None = None,
        with_bot_id: bool | None = None,
        with_business_connection_id: bool | None = None,
        with_destiny: bool | None = None,
        state_ttl: Ttl | None = None,
        data_ttl: Ttl | None = None,
        **options: Any,
    ) -> None:
        check_namespace(namespace)
        given = [
            name
            for name, value in (
                ("prefix", prefix),
                ("separator", separator),
                ("with_bot_id", with_bot_id),
                ("with_business_connection_id", with_business_connection_id),
                ("with_destiny", with_destiny),
            )
            if value is not None
        ]
        if key_builder is None:
            key_builder = DefaultKeyBuilder(
                prefix="fsm" if prefix is None else prefix,
                separator=":" if separator is None else separator,
                with_bot_id=True if with_bot_id is None else with_bot_id,
                with_business_connection_id=bool(with_business_connection_id),
                with_destiny=True if with_destiny is None else with_destiny,
            )
        elif given:
            raise ConfigurationError(
                f"{', '.join(given)} configure the default key builder: pass them to your "
                "own key_builder instead (or drop key_builder)"
            )
        elif not isinstance(key_builder, KeyBuilder):
            raise ConfigurationError(
                f"key_builder must be an aiogram KeyBuilder, not {type(key_builder).__name__}"
            )
        self.key_builder: KeyBuilder = key_builder
        self.state_ttl = _seconds("state_ttl", state_ttl)
        self.data_ttl = _seconds("data_ttl", data_ttl)
        self._namespace_name = namespace
        self._given: AsyncStore | None = None
        self._sync: Store | None = None
        self._url: StoreURL | None = None
        if isinstance(store, (AsyncStore, Store)):
            if options:
                raise TypeError("store options apply only when PlugstoreStorage opens a URL")
            if isinstance(store, AsyncStore):
                self._given = store
            else:
                self._sync = store
            self._where = store.url
        else:
            # Parsed now, so a bad URL (or PLUGSTORE_URL) fails where the bot starts.
            self._url = resolve_url(store, options)
            self._where = str(self._url)
        self._options = options
        self._opening: asyncio.Future[AsyncStore] | None = None
        self._store: AsyncStore | None = None
        self._ns: AsyncNamespace | None = None

    # -- the store ---------------------------------------------------------------------------

    @property
    def store(self) -> AsyncStore | None:
        """The async store in use, once the first call has opened (or wrapped) it."""
        return self._store

    @property
    def namespace(self) -> str:
        """The name of the namespace holding the records."""
        return self._namespace_name

    async def _namespace(self) -> AsyncNamespace:
        """The namespace, opening the store first if this storage has not yet."""
        ns = self._ns
        if ns is not None:
            return ns
        if self._given is not None:
            store = self._given
        else:
            opening = self._opening
            if opening is None:
                opening = self._opening = asyncio.ensure_future(self._open())
                opening.add_done_callback(self._opened)
            # Shielded: a caller cancelled meanwhile leaves the opening to the others.
            store = await asyncio.shield(opening)
            if self._opening is not opening:  # closed meanwhile: this call gets the error
                return store.namespace(self._namespace_name)
        ns = store.namespace(self._namespace_name)
        self._store, self._ns = store, ns
        return ns

    async def _open(self) -> AsyncStore:
        if self._sync is not None:
            return await aio.wrap(self._sync)
        assert self._url is not None
        return await aio.open(self._url, **self._options)

    def _opened(self, opening: asyncio.Future[AsyncStore]) -> None:
        # Reading the exception also spares asyncio's "never retrieved" warning.
        failed = opening.cancelled() or opening.exception() is not None
        if failed and self._opening is opening:
            self._opening = None  # the next call tries again

    async def close(self) -> None:
        """Close the store if this storage opened it (a store passed in stays open).

        aiogram calls this when the dispatcher shuts down.  A later call opens the URL
        again, as aiogram's ``RedisStorage`` reconnects after ``close()``.
        """
        opening, self._opening = self._opening, None
        self._store = self._ns = None
        if opening is None:
            return
        try:
            store = await opening
        except Exception:
            return  # it never opened: nothing to close
        if store.is_open:
            await store.aclose()

    # -- keys --------------------------------------------------------------------------------

    def _key(self, key: StorageKey, part: Part) -> str:
        try:
            return self.key_builder.build(key, part)
        except ValueError as exc:
            hint = ""
            if key.destiny != "default":
                hint = (
                    f" (destiny {key.destiny!r}, used by aiogram's Scenes, needs "
                    "with_destiny=True, the default of PlugstoreStorage)"
                )
            raise ConfigurationError(f"the key builder cannot build this key: {exc}{hint}") from exc

    async def _record(self, key: StorageKey, part: Part) -> tuple[AsyncScope, str]:
        """The scope holding ``key``'s record and the record's name in it."""
        name = self._key(key, part)
        ns = await self._namespace()
        return ns.scope(**{USER_LEVEL: key.user_id}), name

    # -- states ------------------------------------------------------------------------------

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        """Put ``key`` in ``state`` (a ``State`` is stored as its state string); ``None``
        deletes the record."""
        value = state.state if isinstance(state, State) else state
        if value is not None and not isinstance(value, str):
            raise EncodeError(f"an FSM state is a str, a State or None, not {type(value).__name__}")
        scope, name = await self._record(key, "state")
        if value is None:
            with contextlib.suppress(KeyError):
                await scope.delete(name)
        else:
            await scope.set(name, value, ttl=self.state_ttl)

    async def get_state(self, key: StorageKey) -> str | None:
        """The state string of ``key``, ``None`` if it has none."""
        scope, name = await self._record(key, "state")
        value = await scope.get(name)
        if value is not None and not isinstance(value, str):
            raise DecodeError(
                f"{self._namespace_name}: {name!r} holds a {type(value).__name__}, not an "
                "FSM state (written by other code?): delete it or set a state"
            )
        return value

    # -- data --------------------------------------------------------------------------------

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        """Replace ``key``'s data (a ``dict``, as in aiogram's storages); ``{}`` deletes
        the record."""
        if not isinstance(data, dict):
            raise FSMDataNotDictError(
                f"Data must be a dict or dict-like object, got {type(data).__name__}"
            )
        scope, name = await self._record(key, "data")
        if not data:
            with contextlib.suppress(KeyError):
                await scope.delete(name)
        else:
            await scope.set(name, data, ttl=self.data_ttl)

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        """``key``'s data: a fresh ``dict`` (``{}`` when there is none), never shared."""
        scope, name = await self._record(key, "data")
        return self._checked(name, await scope.get(name, {}))

    async def update_data(self, key: StorageKey, data: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``data`` into ``key``'s data atomically and return the result.

        aiogram's ``BaseStorage.update_data`` reads, merges and writes, so two updates
        that race lose one; here the merge is a compare-and-set retried on conflict, so
        every concurrent update is kept, across processes too.  With ``data_ttl`` the
        record's deadline is reset right after the merge.
        """
        if not isinstance(data, Mapping):
            raise FSMDataNotDictError(
                f"Data must be a dict or dict-like object, got {type(data).__name__}"
            )
        if not data:
            return await self.get_data(key)
        additions = dict(data)
        scope, name = await self._record(key, "data")

        def merge(current: Any) -> dict[str, Any]:
            return {**self._checked(name, current), **additions}

        merged: dict[str, Any] = await scope.compute(name, merge, {})
        if self.data_ttl is not None:
            # compute keeps the deadline the record had; RedisStorage resets it on write.
            await scope.expire(name, self.data_ttl)
        return dict(merged)

    def _checked(self, name: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise DecodeError(
                f"{self._namespace_name}: {name!r} holds a {type(value).__name__}, not FSM "
                "data (written by other code?): delete it or set the data"
            )
        return value

    # -- isolation ---------------------------------------------------------------------------

    def create_isolation(
        self, *, timeout: float | None = None, lease: float = DEFAULT_LEASE
    ) -> PlugstoreEventIsolation:
        """An event isolation on this storage's store: the events of one chat (one
        ``StorageKey``) are handled one at a time, across every process sharing the store.

        Pass it to the Dispatcher: ``Dispatcher(storage=s,
        events_isolation=s.create_isolation())``.  ``timeout`` is how long an event waits
        for the lock (``None``: as long as it takes, like aiogram's Redis isolation);
        ``lease`` is the longest a handler may hold it (see :class:`PlugstoreEventIsolation`).
        """
        return PlugstoreEventIsolation(self, timeout=timeout, lease=lease)

    def __repr__(self) -> str:
        state = "open" if self._ns is not None else "not opened yet"
        return f"<PlugstoreStorage {self._namespace_name!r} of {self._where} ({state})>"


class PlugstoreEventIsolation(BaseEventIsolation):
    """Serialises the events of one ``StorageKey`` with a plugstore lock (``ns.lock``),
    held by the engine, so processes sharing the store exclude each other.

    aiogram holds the lock around the whole handler, Telegram calls included.  On
    engines with a lease (all but PostgreSQL and MariaDB) the lock is held for at most
    ``lease`` seconds: a handler that runs longer loses it (another event of the chat may
    then start, and releasing raises :class:`~plugstore.errors.LockLostError`), so make
    ``lease`` longer than the slowest handler.  The lease is also how long a crashed
    process keeps the chat locked.  Waiting never blocks the event loop; after
    ``timeout`` seconds it raises :class:`~plugstore.errors.LockTimeoutError`, which
    reaches the dispatcher's error handlers.  :meth:`close` leaves the store to the storage.
    """

    def __init__(
        self,
        storage: PlugstoreStorage,
        *,
        timeout: float | None = None,
        lease: float = DEFAULT_LEASE,
    ) -> None:
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout >= 0):
            raise ConfigurationError(
                f"timeout must be seconds >= 0 (None: wait as long as it takes), not {timeout!r}"
            )
        if not (isinstance(lease, (int, float)) and lease > 0):
            raise ConfigurationError(f"lease must be seconds > 0, not {lease!r}")
        self.storage = storage
        self.timeout = timeout
        self.lease = float(lease)

    @asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncGenerator[None, None]:
        """Hold the lock of ``key`` while the block runs."""
        name = self.storage._key(key, "lock")
        ns = await self.storage._namespace()
        async with ns.lock(name, timeout=self.timeout, lease=self.lease):
            yield

    async def close(self) -> None:
        """Nothing to do: the storage owns the store (aiogram closes the storage first)."""


def _seconds(name: str, ttl: Ttl | None) -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, datetime.timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
        seconds = float(ttl)
    else:
        raise ConfigurationError(f"{name} must be seconds or a timedelta, not {ttl!r}")
    if not seconds > 0:
        raise ConfigurationError(f"{name} must be more than 0 seconds, not {ttl!r}")
    return seconds


__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_NAMESPACE",
    "FSMDataNotDictError",
    "PlugstoreEventIsolation",
    "PlugstoreStorage",
]
