"""Namespace: the dict-like view of one plugin's data."""

from __future__ import annotations

from collections.abc import (
    Callable,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    Sequence,
)
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .backend import Bucket
from .codecs import Codec
from .errors import DecodeError, InvalidKeyError, StoreNotOpenError
from .keys import (
    INT64_MAX,
    INT64_MIN,
    MAX_TTL,
    check_counter,
    check_key,
    check_prefix,
    deadline_after,
    remaining,
)
from .locks import DEFAULT_LEASE, DEFAULT_TIMEOUT, Lock
from .nscore import ABSENT, FAST_KEY_LEN, MISSING, NamespaceCore, check_plain_key
from .scopecore import register_defaults
from .scopekeys import SCOPE_LEAD, ScopeId
from .scopes import Scope, ScopeBatch
from .steps import run
from .views import ScanItemsView, ScanValuesView

if TYPE_CHECKING:
    from .store import Store

_MISSING = MISSING
_ABSENT = ABSENT
_FAST_KEY_LEN = FAST_KEY_LEN


class Namespace(NamespaceCore, MutableMapping[str, Any]):
    """One plugin's key-value data: a ``MutableMapping[str, Any]`` with atomic helpers.

    Values are encoded by the store's codec on the way in and decoded on the way out, so
    every read returns a fresh copy: mutating it never changes what is stored.  A missing
    key raises ``KeyError`` in ``ns[key]`` and ``del ns[key]`` on every backend.  Invalid
    keys raise :class:`~plugstore.errors.InvalidKeyError` (a ``ValueError``) and are
    reported as absent by ``in``.

    The mapping views (iteration, ``len``, ``items``/``values``, ``scan()``, ``clear``)
    show the plain keys: scoped data (:meth:`scope`) and the namespace's meta entries
    live under keys starting with U+001F and are reached through scopes.

    With ``quarantine`` on, a stored value the codec cannot decode is set aside (see
    :mod:`plugstore.quarantine`) and reads as absent instead of raising
    :class:`~plugstore.errors.DecodeError`.
    """

    _bucket: Bucket

    def __init__(
        self, store: Store, name: str, bucket: Bucket, codec: Codec, *, quarantine: bool = False
    ) -> None:
        self._store = store
        self._init_core(
            name,
            bucket,
            codec,
            max_value_size=store.max_value_size,
            expiry=store.backend.expiry,
            clock=store.backend.clock,
            backend_name=store.backend.name,
            quarantine=quarantine,
        )
        self._closed = False
        # Bound methods of the hot paths, looked up once.
        self._bucket_get = bucket.get
        self._bucket_set = bucket.set
        self._bucket_incr = bucket.incr
        self._bucket_set_until = bucket.set_until

    # -- plumbing ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The namespace's name."""
        return self._name

    @property
    def store(self) -> Store:
        """The store this namespace belongs to."""
        return self._store

    @property
    def closed(self) -> bool:
        """Whether this namespace (or its store) has been closed."""
        return self._closed or not self._store.is_open

    def _b(self) -> Bucket:
        if self._closed:
            raise StoreNotOpenError(f"namespace {self._name!r} is closed")
        if not self._store.is_open:
            raise StoreNotOpenError(
                f"namespace {self._name!r}: its store is closed (open it again first)"
            )
        return self._bucket

    def _sibling(self, namespace: str) -> Bucket:
        bucket: Bucket = self._store.backend.bucket(namespace)
        return bucket

    def _load(self, key: str, raw: bytes | None) -> tuple[bytes | None, Any]:
        """Decode what ``key`` holds: ``(stored bytes, value)``, or ``(None, _ABSENT)``
        when nothing is (left) there (see :meth:`NamespaceCore._load_steps`)."""
        return run(self._load_steps(key, raw))

    @property
    def quarantine(self) -> bool:
        """Whether undecodable values are set aside instead of raising."""
        return self._quarantine

    @property
    def data_version(self) -> int | None:
        """The data version stamped in this namespace (see :mod:`plugstore.versioning`),
        or ``None`` if it has none."""
        from .versioning import read_version

        return read_version(self)

    def close(self) -> None:
        """Close this namespace; further use raises ``StoreNotOpenError``.

        The store (and other namespaces) stay open.  Closing twice raises
        ``StoreNotOpenError``, like Errbot's storage.
        """
        if self.closed:
            raise StoreNotOpenError(f"namespace {self._name!r} is not open")
        self._closed = True

    def __enter__(self) -> Namespace:
        self._b()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.closed:
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Namespace {self._name!r} of {self._store.url} ({state})>"

    # -- mapping protocol ------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        if not self._store._open or self._closed:
            self._b()  # raises StoreNotOpenError
        fast = type(key) is str and 0 < len(key) <= _FAST_KEY_LEN and key.isascii()
        if not fast or "\x00" in key:
            check_key(key)  # the full rules; raises for bad keys
        raw = self._bucket_get(key)
        if raw is None:
            raise KeyError(key)
        try:
            return self._codec_decode(raw)
        except DecodeError:
            if not self._quarantine:
                raise
        value = run(self._decode_found_steps(key, raw))
        if value is _ABSENT:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        if not self._store._open or self._closed:
            self._b()  # raises StoreNotOpenError
        fast = type(key) is str and 0 < len(key) <= _FAST_KEY_LEN and key.isascii()
        if not fast or "\x00" in key or key[0] == SCOPE_LEAD:
            check_plain_key(key)
        raw = self._codec_encode(value)
        if len(raw) > self._max:
            self._encode(value)  # raises ValueTooLargeError, with the sizes
        self._bucket_set(key, raw)

    def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """``ns[key] = value``; with ``ttl``, the key expires ``ttl`` seconds from now.

        An expired key is absent from every read (``get``, ``in``, ``len``, iteration,
        scans) and every write treats it as absent.  A write without ``ttl`` (this one,
        ``ns[key] = value``, ``set_many``) clears a deadline; ``incr``, ``compute`` and
        ``mutable`` on a live key keep it.  ``ttl`` is seconds (``int`` or ``float``,
        more than 0); a backend that cannot expire keys raises
        :class:`~plugstore.errors.ExpiryNotSupportedError`.
        """
        if ttl is None:
            self[key] = value
            return
        if not self._store._open or self._closed:
            self._b()  # raises StoreNotOpenError
        kind = type(ttl)
        if (kind is int or kind is float) and 0 < ttl <= MAX_TTL and self._expiry:
            deadline = deadline_after(self._clock(), ttl)  # _deadline(), inlined: hot path
        else:
            deadline = self._deadline(ttl)  # raises, saying why
        fast = type(key) is str and 0 < len(key) <= _FAST_KEY_LEN and key.isascii()
        if not fast or "\x00" in key or key[0] == SCOPE_LEAD:
            check_plain_key(key)
        raw = self._codec_encode(value)
        if len(raw) > self._max:
            self._encode(value)  # raises ValueTooLargeError, with the sizes
        self._bucket_set_until(key, raw, deadline)

    def ttl(self, key: str) -> float | None:
        """Seconds until ``key`` expires, or ``None`` if it has no deadline.

        Raises ``KeyError`` if the key is absent (or expired).
        """
        entry = self._b().get_with_deadline(check_key(key))
        if entry is None:
            raise KeyError(key)
        return remaining(entry[1], self._clock())

    def add(self, key: str, value: Any, *, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` is absent; return whether it was stored.

        Atomic insert-if-absent on every backend: of many writers (threads or processes)
        racing to add one key, exactly one gets True.  An expired key counts as absent
        and is replaced.  With ``ttl`` the new entry expires ``ttl`` seconds from now
        (a lease, a "seen it" marker, a cooldown); without, it has no deadline.  Keys,
        values and ``ttl`` are checked as in :meth:`set`, before anything is written.
        """
        return self._b().add(*self._add_args(key, value, ttl))

    def expire(self, key: str, ttl: float) -> bool:
        """Make the existing ``key`` expire ``ttl`` seconds from now, its value untouched.

        Returns False (and changes nothing) if the key is absent or expired.  The new
        deadline replaces any earlier one; like one set by :meth:`set`, ``incr``,
        ``compute`` and ``mutable`` keep it and a write without ``ttl`` clears it.  A
        backend that cannot expire keys raises
        :class:`~plugstore.errors.ExpiryNotSupportedError`.
        """
        bucket = self._b()
        return bucket.expire(*self._expire_args(key, ttl))

    def persist(self, key: str) -> bool:
        """Clear the deadline of ``key``, its value untouched: it no longer expires.

        Returns whether the key is present (True also when it had no deadline), False if
        it is absent or expired.  On a backend without expiry it only says whether the
        key is present.
        """
        return self._b().persist(check_plain_key(key))

    def __delitem__(self, key: str) -> None:
        if not self._b().remove(check_key(key)):
            raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (key for key in self._b().keys("") if key[0] != SCOPE_LEAD)

    def __len__(self) -> int:
        self._b()
        return run(self._len_steps())

    def __contains__(self, key: object) -> bool:
        bucket = self._b()
        try:
            return bucket.contains(check_key(key))
        except InvalidKeyError:
            return False

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value for ``key``, or ``default`` if it is absent."""
        self._b()
        return run(self._get_steps(key, default))

    def items(self) -> ScanItemsView:
        """A view whose iteration streams ``(key, value)`` pairs (see :meth:`scan`)."""
        return ScanItemsView(self)

    def values(self) -> ScanValuesView:
        """A view whose iteration streams the values."""
        return ScanValuesView(self)

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its value, atomically: two racing pops never both win."""
        self._b()
        return run(self._pop_steps(key, default))

    def setdefault(self, key: str, default: Any = None) -> Any:
        """Return the value of ``key``, storing ``default`` first if absent (atomically)."""
        self._b()
        return run(self._setdefault_steps(key, default))

    def clear(self) -> None:
        """Delete every plain key of this namespace (one bulk operation where possible).

        Scoped data and the data version stay: clear scopes with
        ``ns.scope().clear_all()``.
        """
        self._b()
        run(self._clear_steps())

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """Like ``dict.update``, through :meth:`set_many` (one bulk write)."""
        pairs = dict(other.items() if isinstance(other, Mapping) else other)
        pairs.update(kwargs)
        self.set_many(pairs)

    # -- streaming and batches ---------------------------------------------------------------

    def scan(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """Stream ``(key, value)`` pairs whose key starts with ``prefix``.

        Memory use stays bounded by the backend's page size, so it suits namespaces too
        large to load at once.  Deleting keys during the scan is safe: it never fails and
        never skips a key that is still there, but a key deleted after its page was read
        can still be yielded once, with the value it had.  ``scan()`` shows the plain
        keys; a prefix starting with U+001F reaches the stored scoped keys.
        """
        plain_only = not check_prefix(prefix)
        decode = self._codec_decode
        for key, raw in self._b().items(prefix):
            if plain_only and key[0] == SCOPE_LEAD:
                continue
            try:
                yield key, decode(raw)
            except DecodeError:
                if not self._quarantine:
                    raise
                value = run(self._decode_found_steps(key, raw))
                if value is not _ABSENT:
                    yield key, value

    def scan_keys(self, prefix: str = "") -> Iterator[str]:
        """Stream the keys that start with ``prefix`` (plain keys only for ``""``)."""
        keys = self._b().keys(check_prefix(prefix))
        return keys if prefix else (key for key in keys if key[0] != SCOPE_LEAD)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return ``{key: value}`` for the present keys among ``keys`` (one bulk read)."""
        self._b()
        return run(self._get_many_steps(keys))

    def set_many(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        ttl: float | None = None,
    ) -> None:
        """Store many values in one bulk write; with ``ttl``, each expires ``ttl``
        seconds from now (see :meth:`set`), else any deadline they had is cleared.

        Every key is validated and every value encoded first: if one is refused, nothing
        is written.
        """
        self._b()
        deadline = None if ttl is None else self._deadline(ttl)
        pairs = items.items() if isinstance(items, Mapping) else items
        self._write_many([(check_plain_key(k), self._encode(v)) for k, v in pairs], deadline)

    def _write_many(self, encoded: list[tuple[str, bytes]], deadline: float | None) -> None:
        """One bulk write of validated, encoded pairs, with a deadline or without."""
        self._b()
        run(self._write_many_steps(encoded, deadline))

    # -- raw access: read now, write later only if nothing changed ----------------------------

    def get_raw(self, key: str) -> bytes | None:
        """The stored bytes of ``key`` (``None`` if absent), not decoded.

        With :meth:`replace_if` an adapter can read a value, hand it out, and write the
        caller's change later only if nobody changed it meanwhile (Errbot's ``mutable()``
        in strict mode).  Decode with ``ns.store.codec``.
        """
        return self._b().get(check_key(key))

    def replace_if(self, key: str, expected: bytes | None, value: Any) -> bool:
        """Store ``value`` only if ``key`` still holds the bytes ``expected``; return whether.

        ``expected=None`` stores only if the key is absent.  Atomic on every backend (the
        bucket's compare-and-set).
        """
        bucket = self._b()
        check_plain_key(key)
        return bucket.cas(key, expected, self._encode(value))

    def remove_if(self, key: str, expected: bytes) -> bool:
        """Delete ``key`` only if it still holds the bytes ``expected``; return whether.

        The deleting counterpart of :meth:`replace_if`, atomic on every backend.
        """
        bucket = self._b()
        check_key(key)
        return bucket.cas(key, expected, None)

    # -- atomic helpers ---------------------------------------------------------------------

    def incr(self, key: str, delta: int = 1) -> int:
        """Atomically add ``delta`` to an integer (absent counts as 0); return the result.

        Uses the engine's native counter where it has one.  Raises ``NotAnIntegerError``
        if the stored value is not an integer or the result leaves the 64-bit range.
        """
        if type(delta) is not int:
            raise TypeError(f"incr delta must be int, not {type(delta).__name__}")
        if not INT64_MIN <= delta <= INT64_MAX:
            check_counter(delta)  # raises NotAnIntegerError
        if not self._store._open or self._closed:
            self._b()  # raises StoreNotOpenError
        fast = type(key) is str and 0 < len(key) <= _FAST_KEY_LEN and key.isascii()
        if not fast or "\x00" in key or key[0] == SCOPE_LEAD:
            check_plain_key(key)
        return self._bucket_incr(key, delta)

    def decr(self, key: str, delta: int = 1) -> int:
        """``incr(key, -delta)``."""
        return self.incr(key, -delta)

    def compute(self, key: str, fn: Callable[[Any], Any], default: Any = None) -> Any:
        """Atomically replace the value at ``key`` by ``fn(value)`` and return it.

        ``fn`` receives the current value (``default`` when absent) and may be called more
        than once: it is retried whenever another writer got there first, so it should
        have no side effects.  Raises ``ConflictError`` if it never gets through.
        """
        self._b()
        return run(self._compute_steps(key, fn, default))

    @contextmanager
    def mutable(self, key: str, default: Any = _MISSING) -> Iterator[Any]:
        """Errbot's idiom, made safe: edit a value in a ``with`` block, written back on exit.

        ``with ns.mutable("scores", {}) as scores: scores["alice"] = 3``.  The write-back
        is a compare-and-set: if another writer changed the value since it was read,
        :class:`ConflictError` is raised and their update is kept, never silently lost.
        Nothing is written if the block raises or leaves the value unchanged.  Without a
        ``default`` a missing key raises ``KeyError``.
        """
        self._b()
        raw, start, value = run(self._mutable_read_steps(key, default))
        yield value
        self._b()
        run(self._mutable_write_steps(key, raw, start, value))

    def lock(
        self, key: str, *, timeout: float | None = DEFAULT_TIMEOUT, lease: float = DEFAULT_LEASE
    ) -> Lock:
        """A cross-process lock on ``key``, held by the engine: ``with ns.lock("k"): ...``.

        It excludes every thread and process using this store, for a read-modify-write
        too large for :meth:`compute`.  Entering waits up to ``timeout`` seconds (``None``:
        forever) and raises :class:`~plugstore.errors.LockTimeoutError` if it stays
        taken.  A holder that dies frees it at once on PostgreSQL and MariaDB (its
        session ends) and after ``lease`` seconds elsewhere.  Holding a lease-based lock
        longer than ``lease`` may lose it; leaving the block then raises
        :class:`~plugstore.errors.LockLostError`.  The key need not exist; locks do not
        nest.  See :mod:`plugstore.locks`.
        """
        self._b()
        return Lock(self, check_key(key), timeout, lease)

    # -- scopes ---------------------------------------------------------------------------

    def batch(self, *, atomic: bool = True) -> ScopeBatch:
        """Writes to several scopes of this namespace, applied together when the ``with``
        block ends: all or nothing with ``atomic=True`` (refused up front by a backend
        without atomic batches).  See :class:`~plugstore.scopes.ScopeBatch`."""
        return ScopeBatch(self, atomic=atomic)

    def scope(self, **path: ScopeId) -> Scope:
        """A view of the data of one scope: ``ns.scope(guild=123, member=456)``.

        The keyword order is the path, outermost first (``scope(guild=1, member=2)`` is
        ``scope(guild=1).scope(member=2)``); ids are ``int`` or ``str``, and ``1`` and
        ``"1"`` are different scopes.  ``ns.scope()`` is the global scope.  Each key of
        a scope is one stored entry of this namespace, and the defaults registered for
        its levels (:meth:`register_defaults`) are merged into its reads.
        """
        return self.scope_at(tuple(path.items()))

    def scope_at(self, path: Iterable[tuple[str, ScopeId]]) -> Scope:
        """:meth:`scope` for a path given as ``(level, id)`` pairs (a level may be any
        identifier, even one that is not a Python keyword argument)."""
        self._b()
        return Scope(self, *self._scope_path(self._store.scope_defaults, path))

    def register_defaults(
        self,
        defaults: Mapping[str, Any],
        *,
        levels: str | Sequence[str] = (),
        strict: bool = False,
    ) -> None:
        """Declare the values a scope level reads when nothing is stored.

        ``levels`` names the level (``"guild"``, ``("guild", "member")``; ``()`` is the
        global scope).  Defaults are merged into every read of a scope at that level and
        never written; a dict default is merged key by key (recursively) beneath a
        stored dict.  Registering again adds to (and overrides) earlier defaults.  With
        ``strict=True`` a key that has no default raises
        :class:`~plugstore.errors.UndeclaredKeyError` at that level.  Registrations are
        kept per store object, in memory: register at start-up, in every process.
        """
        register_defaults(self._store.scope_defaults, self, defaults, levels, strict)
