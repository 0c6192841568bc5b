"""plugstore: namespaced, dict-like persistent storage for plugin-based Python apps.

>>> import plugstore
>>> with plugstore.open("memory://") as store:
...     notes = store.namespace("notes")
...     notes["meeting"] = "tomorrow"
...     notes.incr("visits")
1

Importing this package is cheap: backend libraries (SQLAlchemy, redis, boto3, ...) are
imported only when a store that needs them is opened.
"""

from __future__ import annotations

from typing import Any

from .backend import Backend, Bucket, Options
from .codecs import Codec, JSONCodec, PickleCodec, SignedPickleCodec
from .errors import (
    BackendNotFoundError,
    BackendUnavailableError,
    BatchNotAtomicError,
    CodecError,
    ConfigurationError,
    ConflictError,
    DataVersionError,
    DecodeError,
    EncodeError,
    ExpiryNotSupportedError,
    InvalidKeyError,
    InvalidNamespaceError,
    LockLostError,
    LockTimeoutError,
    MissingDependencyError,
    NotAnIntegerError,
    PoolExhaustedError,
    StoreAlreadyOpenError,
    StoreDamagedError,
    StoreError,
    StoreNotOpenError,
    UndeclaredKeyError,
    ValueTooLargeError,
)
from .locks import Lock
from .namespace import Namespace
from .registry import register
from .scopes import Scope, ScopeBatch
from .state import StateStore
from .store import Store
from .url import StoreURL
from .versioning import Migration

__version__ = "0.1.0"


def open(url_or_name: str | StoreURL | None = None, **options: Any) -> Store:
    """Open a store and return it (a context manager).

    ``url_or_name`` is, in order of precedence:

    * a URL: ``sqlite:///bot.db``, ``shelf:////var/lib/errbot/data``, ``memory://``;
    * a backend name: ``"sqlite"``, ``"shelf"``, ``"memory"`` -- with its location in
      ``options`` (``path=...``), Errbot ``STORAGE_CONFIG`` style;
    * ``None``: the ``PLUGSTORE_URL`` environment variable, else the embedded default, a
      SQLite file in the user data directory (``plugstore.config.default_path()``).

    Options (keyword arguments win over the URL query string):

    * ``codec``: ``"json"`` (default, safe), ``"pickle"`` (trusted data only) or
      ``"signed-pickle"`` with ``secret=`` (or ``PLUGSTORE_SECRET``); or a Codec instance;
    * ``max_value_size``: lower the backend's limit on one encoded value;
    * ``plugin_dirs``: directories of ``.plug`` files for third-party backends;
    * ``clock``: a callable returning epoch seconds, for key deadlines (``ttl=``);
      default ``time.time``.  Tests inject a fake one;
    * anything the backend documents (for SQLite: ``timeout``, ``synchronous``).

    Unknown options raise :class:`ConfigurationError`.
    """
    from .config import open_store

    return open_store(url_or_name, **options)


__all__ = [
    "Backend",
    "BackendNotFoundError",
    "BackendUnavailableError",
    "BatchNotAtomicError",
    "Bucket",
    "Codec",
    "CodecError",
    "ConfigurationError",
    "ConflictError",
    "DataVersionError",
    "DecodeError",
    "EncodeError",
    "ExpiryNotSupportedError",
    "InvalidKeyError",
    "InvalidNamespaceError",
    "JSONCodec",
    "Lock",
    "LockLostError",
    "LockTimeoutError",
    "Migration",
    "MissingDependencyError",
    "Namespace",
    "NotAnIntegerError",
    "Options",
    "PickleCodec",
    "PoolExhaustedError",
    "Scope",
    "ScopeBatch",
    "SignedPickleCodec",
    "StateStore",
    "Store",
    "StoreAlreadyOpenError",
    "StoreDamagedError",
    "StoreError",
    "StoreNotOpenError",
    "StoreURL",
    "UndeclaredKeyError",
    "ValueTooLargeError",
    "__version__",
    "open",
    "register",
]
