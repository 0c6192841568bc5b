"""What a namespace does, written once for :class:`~plugstore.namespace.Namespace` and
:class:`~plugstore.aio.AsyncNamespace`.

:class:`NamespaceCore` holds the state both share (codec, size limit, clock, quarantine)
and the pure parts of every operation -- key checks, encoding, deadlines -- and writes
each operation that reads and writes the engine more than once as *steps* (see
:mod:`plugstore.steps`): the sync shell runs them with blocking bucket calls, the async
shell with awaited ones.  A shell's own code is one bucket call per method, between the
checks and conversions defined here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .backend import retry_pauses
from .codecs import Codec
from .errors import (
    ConflictError,
    DecodeError,
    ExpiryNotSupportedError,
    InvalidKeyError,
    ValueTooLargeError,
)
from .keys import MAX_KEY_BYTES, MAX_TTL, check_counter, check_key, check_ttl, deadline_after
from .scopekeys import SCOPE_LEAD, ScopeId, ScopePath
from .steps import Sleep, Steps, call

if TYPE_CHECKING:
    from .scopecore import DefaultsRegistry, LevelDefaults

#: A missing argument (``pop`` without a default, ``mutable`` without one).
MISSING: Any = object()
#: What :meth:`NamespaceCore._load_steps` gives for a value that is not (or no longer) there.
ABSENT: Any = object()
#: Short ASCII keys are valid unless they hold NUL: checked inline on the hot paths.
FAST_KEY_LEN = MAX_KEY_BYTES // 4


def check_plain_key(key: object) -> str:
    """:func:`~plugstore.keys.check_key`, and refuse the reserved scoped-key lead.

    Keys starting with U+001F are how scoped entries are stored; a plain write of one
    could forge or overwrite another scope's entry, so only a scope writes them.
    """
    check_key(key)
    assert isinstance(key, str)
    if key[0] == SCOPE_LEAD:
        raise InvalidKeyError(
            "keys starting with U+001F are reserved for scoped data: use ns.scope(...)"
        )
    return key


def check_delta(delta: object) -> int:
    """An ``incr`` delta: an ``int`` within the 64-bit counter range."""
    if type(delta) is not int:
        raise TypeError(f"incr delta must be int, not {type(delta).__name__}")
    return check_counter(delta)


def keys_argument(keys: Iterable[str]) -> list[str]:
    """The validated keys of a ``get_many`` call."""
    if isinstance(keys, (str, bytes)):
        raise TypeError("get_many takes an iterable of keys, not a single key")
    return [check_key(k) for k in keys]


class NamespaceCore:
    """The state and the I/O-free logic of a namespace, shared by the sync and async
    shells.  ``self._bucket`` is a sync bucket in the one, an async bucket in the other;
    the steps below only name it in their calls."""

    _bucket: Any

    def _init_core(
        self,
        name: str,
        bucket: Any,
        codec: Codec,
        *,
        max_value_size: int,
        expiry: bool,
        clock: Callable[[], float],
        backend_name: str,
        quarantine: bool,
    ) -> None:
        self._name = name
        self._bucket = bucket
        self._codec = codec
        self._quarantine = quarantine
        self._max = max_value_size
        self._expiry = expiry
        self._clock = clock  # fixed when the store was made
        self._backend_name = backend_name
        self._codec_encode = codec.encode
        self._codec_decode = codec.decode

    def _b(self) -> Any:
        """This namespace's bucket, once checked that it may be used (the shells say
        how: a closed store raises ``StoreNotOpenError``)."""
        raise NotImplementedError

    def _sibling(self, namespace: str) -> Any:
        """The bucket of another namespace of the same store, of this shell's kind."""
        raise NotImplementedError

    # -- pure parts ---------------------------------------------------------------------

    def _scope_path(
        self, registry: DefaultsRegistry, path: Iterable[tuple[str, ScopeId]]
    ) -> tuple[ScopePath, LevelDefaults]:
        """A scope's ``(level, id)`` path as a tuple, and the defaults of its levels."""
        steps = tuple((level, value) for level, value in path)
        levels = tuple(level for level, _ in steps)
        return steps, registry.level(self._name, levels)

    def _encode(self, value: Any) -> bytes:
        raw = self._codec_encode(value)
        if len(raw) > self._max:
            raise ValueTooLargeError(
                f"encoded value is {len(raw)} bytes; this store accepts at most {self._max}"
            )
        return raw

    def _deadline(self, ttl: object) -> float:
        """The deadline (epoch seconds by the store clock) of a write with ``ttl``."""
        kind = type(ttl)
        if (kind is not int and kind is not float) or not 0 < ttl <= MAX_TTL:  # type: ignore[operator]
            check_ttl(ttl)  # raises, saying why
        if not self._expiry:
            raise ExpiryNotSupportedError(
                f"the {self._backend_name!r} backend cannot expire keys: write without "
                "ttl, or use a backend that can (every built-in one does)"
            )
        return deadline_after(self._clock(), ttl)  # type: ignore[arg-type]

    def _add_args(self, key: str, value: Any, ttl: float | None) -> tuple[str, bytes, float | None]:
        """The bucket's ``add`` arguments for ``add(key, value, ttl=)``, checked in the
        order ``set`` checks them (ttl, key, value)."""
        deadline = None if ttl is None else self._deadline(ttl)
        check_plain_key(key)
        return key, self._encode(value), deadline

    def _expire_args(self, key: str, ttl: float) -> tuple[str, float]:
        """The bucket's ``expire`` arguments: the key is checked before the ttl."""
        check_plain_key(key)
        return key, self._deadline(ttl)

    def _decoded_many(self, found: dict[str, bytes]) -> Steps[dict[str, Any]]:
        """``get_many``'s answer from what the bucket found: decoded, in code point order
        (whatever order the engine answered in), values set aside left out."""
        out = {}
        for key in sorted(found):
            value = yield from self._decode_found_steps(key, found[key])
            if value is not ABSENT:
                out[key] = value
        return out

    # -- steps: reads that may set an undecodable value aside ------------------------------

    def _load_steps(self, key: str, raw: bytes | None) -> Steps[tuple[bytes | None, Any]]:
        """Decode what ``key`` holds: ``(stored bytes, value)``, or ``(None, ABSENT)``
        when nothing is (left) there.  An undecodable value raises ``DecodeError``, or
        with quarantine on is set aside, after which the key is read again."""
        while raw is not None:
            try:
                return raw, self._codec_decode(raw)
            except DecodeError as exc:
                if not self._quarantine:
                    raise
                from .quarantine import set_aside_steps

                raw = yield from set_aside_steps(self, key, raw, exc)
        return None, ABSENT

    def _decode_found_steps(self, key: str, raw: bytes) -> Steps[Any]:
        """The value of ``raw`` read at ``key``, or ``ABSENT`` once set aside."""
        try:
            return self._codec_decode(raw)
        except DecodeError:
            if not self._quarantine:
                raise
        return (yield from self._load_steps(key, raw))[1]

    def _get_steps(self, key: str, default: Any) -> Steps[Any]:
        raw = yield call(self._bucket, "get", check_key(key))
        if raw is None:
            return default
        value = yield from self._decode_found_steps(key, raw)
        return default if value is ABSENT else value

    def _getitem_steps(self, key: str) -> Steps[Any]:
        value = yield from self._get_steps(key, ABSENT)
        if value is ABSENT:
            raise KeyError(key)
        return value

    def _get_many_steps(self, keys: Iterable[str]) -> Steps[dict[str, Any]]:
        found = yield call(self._bucket, "get_many", keys_argument(keys))
        return (yield from self._decoded_many(found))

    # -- steps: atomic read-modify-writes --------------------------------------------------

    def _pop_steps(self, key: str, default: Any) -> Steps[Any]:
        check_key(key)
        for pause in retry_pauses():
            raw = yield call(self._bucket, "get", key)
            raw, value = yield from self._load_steps(key, raw)  # decoded before deleted
            if raw is None:
                if default is MISSING:
                    raise KeyError(key)
                return default
            if (yield call(self._bucket, "cas", key, raw, None)):
                return value
            if pause:
                yield Sleep(pause)
        raise ConflictError(f"pop of {key!r} kept conflicting with other writers")

    def _setdefault_steps(self, key: str, default: Any) -> Steps[Any]:
        check_plain_key(key)
        new = self._encode(default)
        for pause in retry_pauses():
            raw = yield call(self._bucket, "get", key)
            raw, value = yield from self._load_steps(key, raw)
            if raw is not None:
                return value
            if (yield call(self._bucket, "cas", key, None, new)):
                return self._codec_decode(new)
            if pause:
                yield Sleep(pause)
        raise ConflictError(f"setdefault of {key!r} kept conflicting with other writers")

    def _compute_steps(self, key: str, fn: Callable[[Any], Any], default: Any) -> Steps[Any]:
        check_plain_key(key)
        default_raw = None if default is None else self._encode(default)
        for pause in retry_pauses():
            raw = yield call(self._bucket, "get", key)
            raw, current = yield from self._load_steps(key, raw)
            if raw is None:  # a fresh copy each time: fn may mutate it, and the caller owns it
                current = None if default_raw is None else self._codec_decode(default_raw)
            new = fn(current)
            if (yield call(self._bucket, "cas", key, raw, self._encode(new))):
                return new
            if pause:
                yield Sleep(pause)
        raise ConflictError(f"compute on {key!r} kept conflicting with other writers")

    def _mutable_read_steps(self, key: str, default: Any) -> Steps[tuple[bytes | None, bytes, Any]]:
        """The start of ``mutable``: ``(stored bytes or None, bytes to compare the result
        with, the value to hand out)``."""
        raw = yield call(self._bucket, "get", check_plain_key(key))
        raw, _ = yield from self._load_steps(key, raw)
        if raw is None and default is MISSING:
            raise KeyError(key)
        # Decoded from bytes either way, so the caller's default object is never mutated.
        start: bytes = raw if raw is not None else self._encode(default)
        return raw, start, self._codec_decode(start)

    def _mutable_write_steps(
        self, key: str, raw: bytes | None, start: bytes, value: Any
    ) -> Steps[None]:
        """The end of ``mutable``: write ``value`` back if it changed and nobody else
        wrote meanwhile."""
        new = self._encode(value)
        if new == start:
            return  # unchanged (including an untouched default): nothing to write
        if not (yield call(self._bucket, "cas", key, raw, new)):
            raise ConflictError(
                f"{key!r} was changed by another writer while mutable() held it; "
                "your change was not written (retry, or use compute())"
            )

    # -- steps: listings and bulk deletes -------------------------------------------------

    def _len_steps(self) -> Steps[int]:
        everything = yield call(self._bucket, "count", "")
        scoped = yield call(self._bucket, "count", SCOPE_LEAD)
        return int(everything - scoped)

    def _clear_steps(self) -> Steps[None]:
        if not (yield call(self._bucket, "count", SCOPE_LEAD)):
            yield call(self._bucket, "clear", "")  # the common case: nothing else there
            return
        for key in (yield call(self._bucket, "keys_page", "", None)):
            if key[0] != SCOPE_LEAD:
                yield call(self._bucket, "remove", key)

    def _write_many_steps(
        self, encoded: list[tuple[str, bytes]], deadline: float | None
    ) -> Steps[None]:
        """One bulk write of validated, encoded pairs, with a deadline or without."""
        if not encoded:
            return
        if deadline is None:
            yield call(self._bucket, "set_many", encoded)
        else:
            yield call(self._bucket, "set_many_until", [(k, v, deadline) for k, v in encoded])


__all__ = [
    "ABSENT",
    "FAST_KEY_LEN",
    "MISSING",
    "NamespaceCore",
    "check_delta",
    "check_plain_key",
    "keys_argument",
]
