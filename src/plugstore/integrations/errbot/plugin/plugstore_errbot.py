"""The module Errbot loads for ``STORAGE = "Plugstore"`` (named by ``plugstore.plug``).

Errbot imports this file as ``errbot.storage.plugstore_errbot`` and instantiates its one
``StoragePluginBase`` subclass.  It is the only plugstore module that imports Errbot; the
work is done in :mod:`plugstore.integrations.errbot.storage`.
"""

from __future__ import annotations

from typing import Any

from errbot.storage import StoreMixin
from errbot.storage import StoreNotOpenError as ErrbotStoreNotOpenError
from errbot.storage.base import StorageBase, StoragePluginBase

from plugstore.errors import StoreNotOpenError
from plugstore.integrations.errbot.storage import ErrbotStorage, ErrbotStorageFactory


class PlugstoreStoreNotOpenError(StoreNotOpenError, ErrbotStoreNotOpenError):
    """Use after close: both plugstore's and Errbot's ``StoreNotOpenError``."""


class PlugstoreStorage(ErrbotStorage, StorageBase):
    """One namespace (see :class:`~plugstore.integrations.errbot.storage.ErrbotStorage`)."""

    not_open_error = PlugstoreStoreNotOpenError


class PlugstoreStoragePlugin(StoragePluginBase):
    """Errbot's storage plugin: ``STORAGE = "Plugstore"`` with ``STORAGE_CONFIG``."""

    def __init__(self, bot_config: Any) -> None:
        super().__init__(bot_config)
        self._factory = ErrbotStorageFactory(
            self._storage_config,
            data_dir=getattr(bot_config, "BOT_DATA_DIR", None),
            storage_class=PlugstoreStorage,
            # contextmanager keeps the generator function as __wrapped__: its frame is
            # how a mutable() get/set pair is recognised.
            mutable_code=StoreMixin.mutable.__wrapped__.__code__,
        )

    def open(self, namespace: str) -> StorageBase:
        """Open the storage of one namespace (``core``, a plugin's name, ...)."""
        return self._factory.open(namespace)
