"""Store: an opened backend that hands out namespaces."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from . import nearcache
from .backend import Backend
from .codecs import Codec
from .errors import StoreAlreadyOpenError, StoreNotOpenError
from .keys import check_namespace
from .locks import LOCKS_NAMESPACE
from .namespace import Namespace
from .quarantine import QUARANTINE_NAMESPACE
from .scopes import DefaultsRegistry
from .versioning import Migration, check_migrations, migrate

#: plugstore's own namespaces (lock leases, set-aside values): not plugin data.
INTERNAL_NAMESPACES = frozenset({LOCKS_NAMESPACE, QUARANTINE_NAMESPACE})


class Store:
    """An opened backend: hands out :class:`Namespace` objects and owns the connections.

    Create one with :func:`plugstore.open`.  A store is a context manager; after
    :meth:`close` every namespace raises ``StoreNotOpenError``; :meth:`open` opens it
    again.  Closing a closed store, or opening an open one, raises (Errbot's names).
    """

    def __init__(
        self,
        backend: Backend,
        codec: Codec,
        *,
        max_value_size: int | None = None,
        clock: Callable[[], float] | None = None,
        cache: int = 0,
    ):
        self._backend = backend
        self._cache_size = cache
        backend.clock = clock or time.time
        self._codec = codec
        self._requested_max = max_value_size
        self._open = False
        self._lock = threading.Lock()
        #: Defaults registered for scope levels (see Namespace.register_defaults).
        self.scope_defaults = DefaultsRegistry()
        # (namespace, version) pairs found (or brought) up to date since opening.
        self._current_versions: set[tuple[str, int]] = set()

    @property
    def backend(self) -> Backend:
        """The backend instance (for backend-specific tools)."""
        return self._backend

    @property
    def codec(self) -> Codec:
        """The codec values are encoded with."""
        return self._codec

    @property
    def url(self) -> str:
        """The store URL with its password masked."""
        return str(self._backend.url)

    @property
    def clock(self) -> Callable[[], float]:
        """The store clock (epoch seconds) that key deadlines are computed with."""
        return self._backend.clock

    @property
    def max_value_size(self) -> int:
        """Largest encoded value this store accepts.

        The smaller of the ``max_value_size`` option and the backend's limit, which a
        backend may lower when it opens and learns the server's own limit.
        """
        limit = self._backend.max_value_size
        return min(self._requested_max or limit, limit)

    @property
    def is_open(self) -> bool:
        """Whether the store is open."""
        return self._open

    def open(self) -> Store:
        """Open the backend; raise ``StoreAlreadyOpenError`` if it is already open."""
        with self._lock:
            if self._open:
                raise StoreAlreadyOpenError(f"store {self.url} is already open")
            self._backend.open()
            if self._cache_size:
                try:
                    nearcache.install(self._backend, self._cache_size)
                except BaseException:
                    self._backend.close()
                    raise
            self._current_versions.clear()
            self._open = True
        return self

    def close(self) -> None:
        """Close the backend; raise ``StoreNotOpenError`` if it is not open."""
        with self._lock:
            if not self._open:
                raise StoreNotOpenError(f"store {self.url} is not open")
            self._open = False
            nearcache.uninstall(self._backend)
            self._backend.close()

    def _check_open(self) -> None:
        if not self._open:
            raise StoreNotOpenError(f"store {self.url} is not open")

    def namespace(
        self,
        name: str,
        *,
        version: int | None = None,
        migrations: Mapping[int, Callable[[Migration], None]] | None = None,
        quarantine: bool | None = None,
    ) -> Namespace:
        """Return the namespace ``name`` (validated; created on first write).

        ``version`` declares the plugin's data version: data stamped older is migrated
        first, by ``migrations[n]`` from ``n - 1`` to ``n`` (under the namespace's lock,
        once, whichever process gets there first), and data stamped newer raises
        :class:`~plugstore.versioning.DataVersionError`; see
        :mod:`plugstore.versioning`.  ``quarantine`` (on by default for versioned
        namespaces) sets undecodable values aside instead of raising; see
        :mod:`plugstore.quarantine`.
        """
        self._check_open()
        check_namespace(name)
        if version is None:
            if migrations:
                raise ValueError("migrations need a version= to migrate to")
            return Namespace(
                self, name, self._backend.bucket(name), self._codec, quarantine=bool(quarantine)
            )
        check_migrations(version, migrations or {})
        ns = Namespace(
            self,
            name,
            self._backend.bucket(name),
            self._codec,
            quarantine=quarantine is None or quarantine,
        )
        if (name, version) not in self._current_versions:
            migrate(ns, version, migrations or {})
            self._current_versions.add((name, version))
        return ns

    __getitem__ = namespace

    def namespaces(self) -> list[str]:
        """Sorted names of the namespaces that hold data (plugstore's own aside: lock
        leases and set-aside values, :data:`INTERNAL_NAMESPACES`)."""
        self._check_open()
        return sorted(
            name for name in self._backend.namespaces() if name not in INTERNAL_NAMESPACES
        )

    def drop_namespace(self, name: str) -> int:
        """Delete namespace ``name`` entirely; return how many keys it held."""
        self._check_open()
        return self._backend.drop_namespace(check_namespace(name))

    def purge(self, namespace: str | None = None) -> int:
        """Delete expired entries for good, in ``namespace`` or in every namespace.

        Expired entries are already absent from every read; this frees their space on
        engines that keep them until then (SQL tables, shelf files, memory).  On Redis
        the engine deletes them itself and this cleans the key indexes; on DynamoDB it
        deletes them now instead of within DynamoDB's own TTL sweep.  Returns how many.
        """
        self._check_open()
        if namespace is not None:
            check_namespace(namespace)
        return sum(self._backend.purge(namespace).values())

    def info(self) -> dict[str, str]:
        """Backend facts for diagnostics (URL masked, never credentials)."""
        self._check_open()
        cache = self._backend.near_cache
        cached = (
            f"{cache.size} entries; coherent by {cache.coherence.description}"
            if cache is not None
            else "off"
        )
        return {**self._backend.info(), "codec": self._codec.name, "near cache": cached}

    def __enter__(self) -> Store:
        self._check_open()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._open:
            self.close()

    def __repr__(self) -> str:
        return f"<Store {self.url} codec={self._codec.name} {'open' if self._open else 'closed'}>"
