"""plugstore as Errbot's storage, and atomic updates for Errbot plugins.

Configure the bot (``config.py``)::

    STORAGE = "Plugstore"
    STORAGE_CONFIG = {"url": "postgresql://bot@db/errbot"}

With plugstore pip-installed (not editable) Errbot finds the plugin through the
``errbot.backend_plugins`` entry point; otherwise point ``BOT_EXTRA_STORAGE_PLUGINS_DIR``
at :func:`plugin_dir` (``plugstore errbot-plugin-dir`` prints it).

Errbot's ``mutable()`` is a read then a blind write: two commands updating one key at
once lose an update.  A plugin that needs exact updates uses :func:`incr` or
:func:`compute`, atomic on every backend::

    from plugstore.integrations.errbot import compute, incr

    incr(self, "visits")
    compute(self, "scores", lambda scores: {**scores, name: scores.get(name, 0) + 1}, {})

A plugin may have any name: its data lives in the namespace :func:`namespace_for` gives
(the name itself when it is a valid namespace, else its percent-escaped form, such as
``Test%20hooks`` for "Test hooks"); :func:`errbot_name` reverses it.

This module does not import Errbot.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import StoreNotOpenError
from ...namespace import Namespace
from .names import errbot_name, namespace_for
from .storage import DEFAULT_CODEC, ErrbotStorage, ErrbotStorageFactory

_DEFAULT: Any = None


def plugin_dir() -> Path:
    """The directory holding ``plugstore.plug``: a value for ``BOT_EXTRA_STORAGE_PLUGINS_DIR``."""
    return Path(__file__).resolve().parent / "plugin"


def namespace(plugin: object) -> Namespace:
    """The plugstore :class:`Namespace` behind an Errbot plugin's storage (``self``).

    Raises ``StoreNotOpenError`` if the plugin's storage is not open (the plugin is not
    activated) and ``TypeError`` if the bot does not store through plugstore.
    """
    storage = getattr(plugin, "_store", None)
    if isinstance(storage, ErrbotStorage):
        return storage.namespace
    if storage is None:
        raise StoreNotOpenError(
            f"{type(plugin).__name__}: its storage is not open (is the plugin activated?)"
        )
    raise TypeError(
        f"{type(plugin).__name__} stores through {type(storage).__name__}, not plugstore: "
        "set STORAGE = 'Plugstore' in the bot's config.py"
    )


def incr(plugin: object, key: str, delta: int = 1) -> int:
    """Atomically add ``delta`` to the integer at ``key`` (absent: 0); return the result."""
    return namespace(plugin).incr(key, delta)


def compute(plugin: object, key: str, fn: Callable[[Any], Any], default: Any = _DEFAULT) -> Any:
    """Atomically replace the value at ``key`` by ``fn(value)``; return the new value.

    ``fn`` gets the current value (``default`` when absent) and may run more than once
    (it is retried when another writer got there first), so it must not have side
    effects.  See :meth:`plugstore.Namespace.compute`.
    """
    return namespace(plugin).compute(key, fn, default)


__all__ = [
    "DEFAULT_CODEC",
    "ErrbotStorage",
    "ErrbotStorageFactory",
    "compute",
    "errbot_name",
    "incr",
    "namespace",
    "namespace_for",
    "plugin_dir",
]
