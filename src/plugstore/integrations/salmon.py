"""plugstore as Salmon's state storage: ``Router.STATE_STORE = PlugstoreStorage(url)``.

Salmon (the mail server, Lamson's successor) keeps each handler module's state per
sender in ``Router.STATE_STORE``.  Its ``MemoryStorage`` forgets everything on restart and
its ``ShelveStorage`` is one process only; :class:`PlugstoreStorage` puts the states in any
plugstore store, shared by every process and host using the same URL.  In the app's
boot (settings) module::

    from salmon.routing import Router
    from plugstore.integrations.salmon import PlugstoreStorage

    Router.STATE_STORE = PlugstoreStorage("sqlite:///run/states.db")

``PlugstoreStorage()`` without a URL uses ``PLUGSTORE_URL``, else plugstore's embedded
default; keyword arguments are store options (``codec=...``), and ``namespace=`` picks the
namespace (default ``"salmon-states"``).  Salmon's rules are kept exactly: a pair never set
is in ``"START"``, setting ``"START"`` deletes the entry, and the storage key is
``repr([key, sender])`` -- any ``str``, where ``ShelveStorage`` requires ASCII keys.

This is the only plugstore module that imports Salmon (GPL); plugstore never depends on
it.  See ``docs/salmon.md``.
"""

from __future__ import annotations

import ast
import shelve
from typing import Any

from salmon.routing import StateStorage

from ..config import open_store
from ..errors import StoreNotOpenError
from ..state import FIRST_STATE, StateStore
from ..store import Store

#: The namespace holding the states unless ``namespace=`` says otherwise.
DEFAULT_NAMESPACE = "salmon-states"


class PlugstoreStorage(StateStorage):
    """A ``salmon.routing.StateStorage`` kept in a plugstore namespace.

    ``store`` is a URL (``None``: ``PLUGSTORE_URL``, else the embedded default), opened
    here with ``options`` and closed by :meth:`close`; or an open :class:`~plugstore.Store`,
    which stays the caller's to close.  Every call is atomic, so one instance serves every
    thread and any number of processes share a multi-process store (SQLite, PostgreSQL,
    Redis, ...).  :meth:`transition` adds what Salmon lacks: a compare-and-set of one
    sender's state.
    """

    def __init__(
        self,
        store: str | Store | None = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        **options: Any,
    ) -> None:
        if isinstance(store, Store):
            if options:
                raise TypeError("store options apply only when PlugstoreStorage opens a URL")
            self._store, self._owns_store = store, False
        else:
            self._store, self._owns_store = open_store(store, **options), True
        try:
            self._states = StateStore(self._store.namespace(namespace))
        except BaseException:
            if self._owns_store:
                self._store.close()
            raise
        self._closed = False

    @property
    def states(self) -> StateStore:
        """The :class:`~plugstore.state.StateStore` behind this storage."""
        return self._states

    @property
    def store(self) -> Store:
        """The plugstore store holding the states."""
        return self._store

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def get(self, key: str, sender: str) -> str:
        """The state of ``(key, sender)``, or ``"START"`` if it has none."""
        return self._states.get(key, sender)

    def set(self, key: str, sender: str, state: str) -> None:
        """Put ``(key, sender)`` in ``state``; ``"START"`` deletes the entry."""
        self._states.set(key, sender, state)

    def transition(self, key: str, sender: str, expected: str, state: str) -> bool:
        """Move ``(key, sender)`` from ``expected`` to ``state`` only if it is still there.

        Returns whether it moved: of several threads or processes racing the same step,
        exactly one gets ``True``.  See :meth:`plugstore.state.StateStore.transition`.
        """
        return self._states.transition(key, sender, expected, state)

    def clear(self) -> None:
        """Forget every state (Salmon calls this from its test helpers)."""
        self._states.clear()

    def close(self) -> None:
        """Stop using the store, and close it if this storage opened it.

        Further calls raise ``StoreNotOpenError``, and so does closing twice.
        """
        if self._closed:
            raise StoreNotOpenError("this PlugstoreStorage is already closed")
        self._closed = True
        if not self._states.namespace.closed:
            self._states.namespace.close()
        if self._owns_store and self._store.is_open:
            self._store.close()

    def __enter__(self) -> PlugstoreStorage:
        if self._closed:
            raise StoreNotOpenError("this PlugstoreStorage is closed")
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._closed:
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<PlugstoreStorage {self._states.namespace.name!r} of {self._store.url} ({state})>"


def import_shelve(database_path: str, storage: PlugstoreStorage) -> int:
    """Copy the states of Salmon's ``ShelveStorage(database_path)`` into ``storage``.

    Returns how many states were copied.  ``ShelveStorage`` stores the key as
    ``repr([key.encode("ascii"), sender])``; here it becomes ``repr([key, sender])``, the
    key every other storage uses.  Every entry is read and checked before one bulk write
    (a bad entry raises ``ValueError`` and nothing is written); pairs already in
    ``storage`` are overwritten, others kept.  Stop the Salmon server first.  The shelf
    is unpickled: only import a file you trust.
    """
    states: dict[str, str] = {}
    with shelve.open(database_path, flag="r") as shelf:
        for raw_key, state in shelf.items():
            try:
                key, sender = ast.literal_eval(raw_key)
                if isinstance(key, bytes):
                    key = key.decode("ascii")
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                key = sender = None
            if type(key) is not str or not isinstance(sender, (str, type(None))):
                raise ValueError(f"{database_path}: {raw_key!r} is not a Salmon state key")
            if type(state) is not str or not state:
                raise ValueError(f"{database_path}: {raw_key!r} holds {state!r:.60}, not a state")
            if state != FIRST_STATE:
                states[repr([key, sender])] = state  # StateStore.key, None senders too
    storage.states.namespace.set_many(states)
    return len(states)
