"""Errbot's storage contract on a plugstore store, without importing Errbot.

Errbot (GPL) is imported only by the small plugin module Errbot itself loads
(``plugin/plugstore_errbot.py``); everything that does the work lives here, so it is
typed, tested without Errbot, and never pulls Errbot into a process that did not ask.

Errbot's side of the contract (``errbot.storage.base.StorageBase``): ``get`` and
``remove`` raise ``KeyError`` for a missing key, ``set`` stores any object, ``len``,
``keys`` and ``close``.  Errbot opens one storage per namespace (``core``, ``repomgr``,
``<mode>_backend`` and one per plugin) from one storage plugin, and calls them from its
command thread pool.  A namespace's Errbot name may be any string (a plugin called "Test
hooks"): it is stored in the namespace :func:`~.names.namespace_for` maps it to.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping
from types import CodeType, FrameType
from typing import Any, ClassVar

from ...config import URL_ENV, resolve_url
from ...errors import ConfigurationError, ConflictError, InvalidKeyError, StoreNotOpenError
from ...namespace import Namespace
from ...store import Store
from .names import namespace_for

#: Errbot stores arbitrary objects (identifiers, plugin configs, sets of ACLs), so the
#: integration pickles unless ``STORAGE_CONFIG["codec"]`` says otherwise.
DEFAULT_CODEC = "pickle"
#: The file, in ``BOT_DATA_DIR``, of the default store when ``STORAGE_CONFIG`` has no URL.
DEFAULT_FILE = "plugstore.db"

_NOT_READ: Any = object()


class ErrbotStorage:
    """One Errbot namespace: Errbot's ``StorageBase`` over a plugstore :class:`Namespace`.

    Values are decoded per ``get`` (never eagerly at open: Errbot opens its storage before
    the chat backend that defines the pickled identifiers exists), and every ``get``
    returns a fresh copy.  ``keys()`` is a snapshot, so deleting while iterating is safe.
    After ``close()`` every call raises :attr:`not_open_error`.

    Errbot's ``mutable(key)`` is a ``get`` then, after the ``with`` block, a ``set``.  The
    pair is recognised (by the calling frame being Errbot's ``mutable``), and its
    write-back is skipped when the value did not change, so a read-only ``mutable()`` never
    overwrites someone else's update.  In strict mode a changed value is written with a
    compare-and-set against what ``get`` read, and :class:`~plugstore.errors.ConflictError`
    is raised, writing nothing, if another writer got there in between -- or if the read
    can no longer be checked (see :attr:`pending_limit`).
    """

    #: Raised by every call after ``close()``.  The Errbot plugin module substitutes a
    #: subclass that is also Errbot's own ``StoreNotOpenError``.
    not_open_error: ClassVar[type[Exception]] = StoreNotOpenError
    #: ``mutable()`` reads remembered per thread.  A block that raises never writes back,
    #: so its read lingers until this many newer blocks of the same thread push it out.
    #: Only a block with more than this many blocks nested in it, or raising inside it, in
    #: its own thread loses its read: in strict mode it then raises ``ConflictError``.
    pending_limit: ClassVar[int] = 32

    def __init__(
        self,
        namespace: Namespace,
        *,
        strict: bool = False,
        mutable_code: CodeType | None = None,
        on_close: Callable[[], None] | None = None,
        name: str | None = None,
    ) -> None:
        self._ns = namespace
        self._name = namespace.name if name is None else name
        self._decode = namespace.store.codec.decode
        self._encode = namespace.store.codec.encode
        self._strict = strict
        self._mutable_code = mutable_code
        self._on_close = on_close
        self._closed = False
        # Per thread: id(frame of a running mutable()) -> (key, the bytes its get read).
        # No reference to the frame is kept: an id reused by a later frame is harmless,
        # because every mutable() calls get (which overwrites the entry) before set.
        self._local = threading.local()

    # -- plumbing ------------------------------------------------------------------------

    @property
    def namespace(self) -> Namespace:
        """The plugstore namespace behind this storage (for atomic updates)."""
        return self._open()

    @property
    def name(self) -> str:
        """The Errbot name this storage was opened under (a plugin's name, ``core``)."""
        return self._name

    @property
    def strict(self) -> bool:
        """Whether ``mutable()`` write-backs are compare-and-set (see the class docs)."""
        return self._strict

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed

    def _open(self) -> Namespace:
        if self._closed:
            raise self.not_open_error(f"Errbot storage {self._name!r} is closed")
        return self._ns

    def _called_from_mutable(self) -> FrameType | None:
        """The frame of Errbot's ``mutable()`` if it called our caller, else ``None``."""
        if self._mutable_code is None:
            return None
        frame = sys._getframe(2)  # 0: this method, 1: get/set, 2: their caller
        return frame if frame.f_code is self._mutable_code else None

    def _pending(self) -> dict[int, tuple[str, bytes | None]]:
        """This thread's remembered ``mutable()`` reads, oldest first."""
        pending: dict[int, tuple[str, bytes | None]] | None = getattr(self._local, "reads", None)
        if pending is None:
            pending = self._local.reads = {}
        return pending

    def _remember(self, frame: FrameType, key: str, raw: bytes | None) -> None:
        pending = self._pending()
        pending.pop(id(frame), None)  # re-inserted as the newest
        pending[id(frame)] = (key, raw)
        if len(pending) > self.pending_limit:
            del pending[next(iter(pending))]

    def _take(self, frame: FrameType, key: str) -> Any:
        entry = self._pending().pop(id(frame), None)
        if entry is None or entry[0] != key:
            return _NOT_READ
        return entry[1]

    # -- Errbot's StorageBase ----------------------------------------------------------------

    def get(self, key: str) -> Any:
        """The value stored at ``key``; ``KeyError`` if there is none."""
        ns = self._open()
        try:
            raw = ns.get_raw(key)
        except InvalidKeyError:
            raise KeyError(key) from None  # a key that cannot be stored is not there
        frame = self._called_from_mutable()
        if frame is not None:
            self._remember(frame, key, raw)
        if raw is None:
            raise KeyError(key)
        return self._decode(raw)

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` at ``key`` (refused before writing if it cannot be encoded)."""
        ns = self._open()
        frame = self._called_from_mutable()
        if frame is not None:
            read = self._take(frame, key)
            if read is not _NOT_READ:
                self._write_back(ns, key, read, value)
                return
            if self._strict:
                raise ConflictError(
                    f"Errbot storage {self._name!r}: the read of {key!r} by this mutable() "
                    f"block was pushed out by more than {self.pending_limit} newer blocks "
                    "of its thread, so the change cannot be checked and was not written"
                )
        ns[key] = value

    def _unchanged(self, value: Any, read: bytes) -> bool:
        """Whether ``value`` is what was ``read``.  Pickles of equal values can differ
        (set order in another process, an older protocol), hence the second look."""
        new = self._encode(value)
        return new == read or new == self._encode(self._decode(read))

    def _write_back(self, ns: Namespace, key: str, read: bytes | None, value: Any) -> None:
        """The end of a ``mutable()`` block that read ``read`` (``None``: key absent)."""
        if read is not None and self._unchanged(value, read):
            return  # unchanged: writing it back could only undo someone else's update
        if not self._strict:
            ns[key] = value
        elif not ns.replace_if(key, read, value):
            raise ConflictError(
                f"Errbot storage {self._name!r}: {key!r} was changed by another writer during "
                "mutable(); your change was not written (retry it, or use "
                "plugstore.integrations.errbot.compute for an atomic update)"
            )

    def remove(self, key: str) -> None:
        """Delete ``key``; ``KeyError`` if there is none."""
        ns = self._open()
        try:
            del ns[key]
        except InvalidKeyError:
            raise KeyError(key) from None

    def len(self) -> int:
        """The number of keys."""
        return len(self._open())

    def keys(self) -> list[str]:
        """A snapshot of the keys: safe to delete through while iterating it."""
        return list(self._open())

    def close(self) -> None:
        """Close this namespace (a second close raises :attr:`not_open_error`)."""
        self._open()
        self._closed = True
        self._local = threading.local()
        if self._on_close is not None:
            self._on_close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        where = f"{self._name!r}"
        if self._name != self._ns.name:
            where += f" (namespace {self._ns.name!r})"
        return f"<{type(self).__name__} {where} of {self._ns.store.url} ({state})>"


class ErrbotStorageFactory:
    """What Errbot's storage plugin does: open namespaces of one store from its config.

    ``config`` is Errbot's ``STORAGE_CONFIG``:

    * ``url``: the store (default: ``PLUGSTORE_URL``, else ``BOT_DATA_DIR/plugstore.db``);
    * ``codec``: ``"pickle"`` (default here), ``"signed-pickle"`` (with ``secret`` or
      ``PLUGSTORE_SECRET``) or ``"json"``;
    * ``strict``: ``True`` to make ``mutable()`` raise on a concurrent change;
    * anything else is an option of :func:`plugstore.open` or of the backend.

    The store is opened with the first namespace and closed with the last one, so a
    one-shot ``errbot --storage-get`` leaves no connection behind.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | None,
        *,
        data_dir: str | None = None,
        storage_class: type[ErrbotStorage] = ErrbotStorage,
        mutable_code: CodeType | None = None,
    ) -> None:
        options = dict(config or {})
        url: str | None = options.pop("url", None)
        if url is None and not os.environ.get(URL_ENV) and data_dir:
            url = "sqlite:///" + os.path.abspath(os.path.join(data_dir, DEFAULT_FILE))
        self._url = resolve_url(url, options)
        strict = options.pop("strict", False)
        if not isinstance(strict, bool):
            raise ConfigurationError(
                f"STORAGE_CONFIG['strict'] must be True or False, not {strict!r}"
            )
        if "codec" not in self._url.query:
            options.setdefault("codec", DEFAULT_CODEC)
        self._options = options
        self._strict = strict
        self._storage_class = storage_class
        self._mutable_code = mutable_code
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._open_count = 0

    @property
    def store(self) -> Store | None:
        """The open store, or ``None`` while no namespace is open."""
        return self._store

    def open(self, namespace: str) -> ErrbotStorage:
        """Open the storage Errbot calls ``namespace`` (``StoragePluginBase.open``): a
        plugin's name, any string, or one of Errbot's own (``core``, ``repomgr``).

        It is stored in the namespace :func:`~.names.namespace_for` gives: the name
        itself when it is a valid namespace, else its percent-escaped form.  A name
        with no namespace raises ``InvalidNamespaceError`` naming it, before the store
        is opened.
        """
        import plugstore

        name = namespace
        mapped = namespace_for(name)
        with self._lock:
            if self._store is None:
                self._store = plugstore.open(self._url, **self._options)
            try:
                ns = self._store.namespace(mapped)
            except BaseException:
                if self._open_count == 0:
                    self._close_store()
                raise
            self._open_count += 1
        return self._storage_class(
            ns,
            strict=self._strict,
            mutable_code=self._mutable_code,
            on_close=self._released,
            name=name,
        )

    def _released(self) -> None:
        with self._lock:
            self._open_count -= 1
            if self._open_count == 0:
                self._close_store()

    def _close_store(self) -> None:
        store, self._store = self._store, None
        if store is not None and store.is_open:
            store.close()


__all__ = ["DEFAULT_CODEC", "DEFAULT_FILE", "ErrbotStorage", "ErrbotStorageFactory"]
