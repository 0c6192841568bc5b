"""Turning what the user gave (a URL, a backend name, options, the environment) into a store."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import registry
from .backend import Options
from .codecs import Codec, get_codec
from .errors import ConfigurationError
from .store import Store
from .url import StoreURL

URL_ENV = "PLUGSTORE_URL"
SECRET_ENV = "PLUGSTORE_SECRET"  # noqa: S105 - a variable name, not a secret
DEFAULT_FILENAME = "plugstore.sqlite3"


def default_path() -> Path:
    """Where the embedded default store lives: the user data dir (platformdirs)."""
    import platformdirs  # deferred: only needed when no URL was given

    return platformdirs.user_data_path("plugstore") / DEFAULT_FILENAME


def default_url() -> str:
    """The URL used when none is given: ``PLUGSTORE_URL`` or the embedded SQLite file."""
    return os.environ.get(URL_ENV) or f"sqlite:///{default_path()}"


def resolve_url(url_or_name: str | StoreURL | None, options: dict[str, Any]) -> StoreURL:
    """Return the URL to open, from an explicit URL, a backend name, or the defaults.

    A bare name (``"sqlite"``, ``"Shelf"``, ``"memory"``) selects a backend and takes its
    location from options (``path=``/``basedir=``), Errbot ``STORAGE_CONFIG`` style.
    """
    if isinstance(url_or_name, StoreURL):
        return url_or_name
    text = url_or_name if url_or_name is not None else default_url()
    if "://" in text:
        return StoreURL.parse(text)
    if not text or "/" in text:
        raise ConfigurationError(
            f"{text!r} is neither a store URL nor a backend name "
            "(for a file, write sqlite:///relative/path or sqlite:////absolute/path)"
        )
    name = text.lower()
    if registry.ALIASES.get(name, name) == "sqlite" and not options.get("path"):
        return StoreURL.parse(f"sqlite:///{default_path()}")
    return StoreURL(scheme=name)


def open_store(url_or_name: str | StoreURL | None = None, **options: Any) -> Store:
    """Open a store.  See :func:`plugstore.open` for the documentation."""
    url = resolve_url(url_or_name, options)
    if "plugin_dirs" in url.query:
        # Loading a .plug module runs its code: only the application (keyword argument)
        # or the operator (PLUGSTORE_PLUGIN_PATH) may name those directories, never a URL.
        raise ConfigurationError(
            "plugin_dirs cannot be set in a store URL; pass plugin_dirs=... to "
            "plugstore.open() or set PLUGSTORE_PLUGIN_PATH"
        )
    opts = Options({**url.query, **options})
    codec_opt: str | Codec | None = opts.take("codec", None, lambda v: v)
    secret = opts.take("secret", None, lambda v: v) or os.environ.get(SECRET_ENV)
    codec = get_codec(codec_opt, secret=secret)
    max_value_size: int | None = opts.take("max_value_size", None, int)
    if max_value_size is not None and max_value_size < 1:
        raise ConfigurationError("max_value_size must be a positive number of bytes")
    clock: Callable[[], float] | None = opts.take("clock", None, _clock)
    cache: int = opts.take("cache", 0, int)
    if cache < 0:
        raise ConfigurationError("cache must be a number of entries (0: no near cache)")
    dirs = opts.take("plugin_dirs", None, lambda v: v)
    backend_cls = registry.resolve(url.scheme, dirs)
    backend = backend_cls(url, opts)
    unknown = opts.leftover()
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) for the {backend_cls.name!r} backend: {', '.join(unknown)}"
        )
    return Store(backend, codec, max_value_size=max_value_size, clock=clock, cache=cache).open()


def _clock(value: Any) -> Callable[[], float]:
    """The ``clock`` option: a callable returning epoch seconds (never from a URL)."""
    if not callable(value):
        raise ValueError("clock must be a callable returning epoch seconds, like time.time")
    return value  # type: ignore[no-any-return]
