"""The contract a storage backend implements.

A backend author writes two classes:

* a :class:`Backend` -- one opened engine: connections or files, the list of namespaces,
  ``open``/``close``;
* a :class:`Bucket` -- one namespace of that engine, working on ``bytes`` only.

Values are encoded by the :class:`~plugstore.namespace.Namespace` before they get here,
so a bucket never sees Python objects, and keys arrive already validated (see
:mod:`plugstore.keys`).  Five bucket methods are required (``get``, ``set``, ``remove``,
``cas``, ``keys``); everything else has a generic version built on them that a backend
overrides where its engine has a native, faster or atomic form.

Expiry (``ns.set(key, value, ttl=...)``) is optional: a backend that implements the
expiry methods of :class:`Bucket` says so with ``Backend.expiry = True``.  Deadlines are
absolute epoch seconds by the store clock (``Backend.clock``).  Such a backend also
implements :meth:`Bucket.add` with a deadline, :meth:`Bucket.expire` and
:meth:`Bucket.persist` natively and atomically: their generic versions only serve
entries without deadlines (``add`` through ``cas``), and otherwise raise
:class:`~plugstore.errors.ExpiryNotSupportedError` naming the method to override, since
a read followed by a write could lose to a concurrent writer.

Atomic batches (``scope.replace(...)``, ``ns.batch()``) are optional too: a backend whose
:meth:`Bucket.write_batch` applies a batch all-or-nothing says so with
``Backend.atomic_batches = True`` (and ``Backend.isolated_batches = True`` if readers
never see part of one); the generic version refuses ``atomic=True``.

Thread-safety: a backend must be safe to use from many threads at once.  Backends whose
``multiprocess`` flag is true must also be safe when several processes open the same
store, and must not reuse a connection inherited across ``fork()``.
"""

from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from itertools import dropwhile, islice
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from .errors import (
    BatchNotAtomicError,
    ConfigurationError,
    ConflictError,
    ExpiryNotSupportedError,
)
from .keys import check_counter, parse_counter
from .locks import HeldLock, lease_lock
from .url import StoreURL

if TYPE_CHECKING:
    from .nearcache import Coherence, NearCache

#: Default limit on one encoded value, shared by the built-in backends so that data which
#: fits one of them fits the others.  (MySQL lowers it to what the server's
#: max_allowed_packet can carry: about 8 MiB at MariaDB's default of 16 MiB.)
DEFAULT_MAX_VALUE_SIZE = 16 * 1024 * 1024

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Options:
    """Backend options from the URL query and keyword arguments (keywords win).

    A backend ``take``s what it understands in its ``__init__``; whatever is left over is
    reported as an unknown option, so a typo never passes silently.
    """

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        self._values: dict[str, Any] = dict(values or {})

    def take(self, name: str, default: T, convert: Callable[[Any], T] | None = None) -> T:
        """Remove and return option ``name`` converted like ``default`` (or by ``convert``)."""
        if name not in self._values:
            return default
        raw = self._values.pop(name)
        if convert is not None:
            try:
                return convert(raw)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"invalid value for option {name!r}: {exc}") from None
        if isinstance(default, bool):
            return self._bool(name, raw)  # type: ignore[return-value]
        if isinstance(default, (int, float)) and not isinstance(raw, (int, float)):
            try:
                return type(default)(raw)
            except ValueError:
                raise ConfigurationError(f"option {name!r} must be a number, got {raw!r}") from None
        return raw  # type: ignore[no-any-return]

    @staticmethod
    def _bool(name: str, raw: Any) -> bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigurationError(f"option {name!r} must be true or false, got {raw!r}")

    def leftover(self) -> list[str]:
        """Names of the options nobody took."""
        return sorted(self._values)

    def __contains__(self, name: object) -> bool:
        return name in self._values


class Bucket(ABC):
    """One namespace of one backend.  Keys are ``str``, values ``bytes``."""

    def __init__(self, backend: Backend, namespace: str) -> None:
        self.backend = backend
        self.namespace = namespace

    # -- required -------------------------------------------------------------------

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """Return the stored bytes, or ``None`` if the key is absent."""

    @abstractmethod
    def set(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``, durably if the backend is durable."""

    @abstractmethod
    def remove(self, key: str) -> bool:
        """Delete ``key``; return whether it existed."""

    @abstractmethod
    def cas(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        """Atomically replace ``expected`` by ``new``; return whether it happened.

        ``expected=None`` means "only if absent"; ``new=None`` means delete.  This is the
        primitive the generic ``incr``/``compute``/``mutable`` are built on, so it must be
        atomic across threads (and processes, for multi-process backends).
        """

    @abstractmethod
    def keys(self, prefix: str = "") -> Iterator[str]:
        """Yield the keys starting with ``prefix``, streaming.

        Must tolerate deletions while the caller iterates (a snapshot, or a cursor that
        pages by key).  Keys come in code point order (Python's ``sorted`` order for
        ``str``, which is also their UTF-8 byte order), as on every backend.
        """

    # -- generic, override where the engine does better ----------------------------------

    def keys_page(self, prefix: str = "", limit: int | None = None) -> list[str]:
        """The first ``limit`` keys starting with ``prefix`` (``None``: all of them), as a
        list: what steps shared with the async API read (see :mod:`plugstore.steps`)."""
        return list(islice(self.keys(prefix), limit))

    def items_page(self, prefix: str = "", limit: int | None = None) -> list[tuple[str, bytes]]:
        """The first ``limit`` pairs of :meth:`items` (``None``: all of them), as a list."""
        return list(islice(self.items(prefix), limit))

    def keys_after(self, prefix: str, after: str, limit: int) -> list[str]:
        """Up to ``limit`` keys starting with ``prefix`` that sort after ``after`` (which
        need not exist), in order: the next page of a listing a tool resumes after the
        last key it showed (``plugstore web``).  This version reads through the keys
        before ``after``; a backend whose engine can seek overrides it."""
        later = dropwhile(lambda key: key <= after, self.keys(prefix))
        return list(islice(later, max(0, limit)))

    def count(self, prefix: str = "") -> int:
        """Number of keys starting with ``prefix``."""
        return sum(1 for _ in self.keys(prefix))

    def stored_size(self, prefix: str = "") -> int:
        """Bytes stored under keys starting with ``prefix``: each live key's UTF-8 length
        plus its value's length, expired entries left out (as in :meth:`count`).

        Approximate: bytes of keys and values as stored by plugstore, not the engine's
        on-disk overhead (indexes, pages, deadlines, compression).  This version reads
        every value through :meth:`items`; a backend whose engine can add up lengths
        without sending the values overrides it."""
        return sum(len(key.encode()) + len(value) for key, value in self.items(prefix))

    def contains(self, key: str) -> bool:
        """Whether ``key`` is present."""
        return self.get(key) is not None

    def items(self, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        """Yield ``(key, value)`` pairs starting with ``prefix`` in key order, skipping
        vanished keys."""
        for key in self.keys(prefix):
            value = self.get(key)
            if value is not None:
                yield key, value

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Return the present keys among ``keys`` with their values."""
        found = {}
        for key in keys:
            value = self.get(key)
            if value is not None:
                found[key] = value
        return found

    def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store many pairs; atomically where the engine allows it."""
        for key, value in items:
            self.set(key, value)

    def incr(self, key: str, delta: int) -> int:
        """Add ``delta`` to the integer at ``key`` (absent counts as 0); return the result."""
        for attempt in retry_schedule():
            raw = self.get(key)
            new = check_counter((0 if raw is None else parse_counter(raw)) + delta)
            if self.cas(key, raw, str(new).encode("ascii")):
                return new
            attempt()
        raise ConflictError(f"incr on {key!r} kept conflicting with other writers")

    def clear(self, prefix: str = "") -> int:
        """Delete every key starting with ``prefix``; return how many were deleted."""
        return sum(1 for key in list(self.keys(prefix)) if self.remove(key))

    def lock(self, key: str, timeout: float | None, lease: float) -> HeldLock | None:
        """Take the cross-process lock named by this namespace and ``key``.

        Wait up to ``timeout`` seconds (``None``: forever); return the held lock, or
        ``None`` if it stayed taken.  It must exclude every holder using the same store
        (other threads, other processes) and be freed when its holder dies: at the end
        of its session, or after ``lease`` seconds.  The generic version is a lease
        entry taken by :meth:`cas` (see :mod:`plugstore.locks`); engines with a native
        lock override it.
        """
        return lease_lock(self, key, timeout, lease)

    # -- expiry: backends whose class sets ``expiry = True`` implement these -----------------
    #
    # A deadline is absolute epoch seconds by the store clock (``self.backend.clock``); an
    # entry whose deadline is reached (``deadline <= clock()``) is absent on every read
    # path above, and every write path treats it as absent: ``cas`` with ``expected=None``
    # replaces it, ``incr`` starts from 0, ``remove`` reports False.  ``set`` (and
    # ``set_many``) store an entry without a deadline, clearing any it had; ``cas`` and
    # ``incr`` on a live entry keep its deadline.  The versions below are right for a
    # backend without expiry: nothing it holds has a deadline.

    def set_until(self, key: str, value: bytes, deadline: float) -> None:
        """Store ``value`` under ``key`` until ``deadline`` (epoch seconds, store clock)."""
        raise ExpiryNotSupportedError(
            f"the {self.backend.name!r} backend cannot expire keys (Backend.expiry is false)"
        )

    def set_many_until(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        """Store ``(key, value, deadline)`` triples (``None``: no deadline), atomically
        where the engine allows it."""
        if all(deadline is None for _, _, deadline in items):
            self.set_many([(key, value) for key, value, _ in items])
            return
        for key, value, deadline in items:
            if deadline is None:
                self.set(key, value)
            else:
                self.set_until(key, value, deadline)

    def get_with_deadline(self, key: str) -> tuple[bytes, float | None] | None:
        """``(value, deadline)`` of a live entry (deadline ``None``: it never expires),
        or ``None`` if the key is absent or expired."""
        value = self.get(key)
        return None if value is None else (value, None)

    def get_many_with_deadlines(self, keys: Sequence[str]) -> dict[str, tuple[bytes, float | None]]:
        """:meth:`get_with_deadline` for many keys: the live ones, with their deadlines."""
        if not self.backend.expiry:
            return {key: (value, None) for key, value in self.get_many(keys).items()}
        found = {}
        for key in keys:
            entry = self.get_with_deadline(key)
            if entry is not None:
                found[key] = entry
        return found

    def purge(self) -> int:
        """Delete the expired entries of this namespace for good; return how many."""
        return 0

    # -- insert-if-absent, and the deadline of an existing entry ------------------------------
    #
    # Atomic on every backend: of writers racing to ``add`` one key exactly one gets True,
    # and ``expire``/``persist`` never act on an entry another writer deleted or replaced
    # meanwhile.  The generic versions below are right for a backend without expiry (and
    # for ``add`` without a deadline anywhere); a backend with ``expiry = True`` overrides
    # all three, and the deadline forms refuse to run without an override.

    def add(self, key: str, value: bytes, deadline: float | None) -> bool:
        """Store ``value`` under ``key`` only if the key is absent or expired, until
        ``deadline`` (``None``: no deadline); return whether it was stored.

        A key that was expired starts afresh: the new entry has ``deadline`` and nothing
        of the old one.  The generic version is ``cas(key, None, value)`` without a
        deadline; with one it raises (see the section comment above).
        """
        if deadline is None:
            return self.cas(key, None, value)
        raise self._no_native("add")

    def expire(self, key: str, deadline: float) -> bool:
        """Give the live entry at ``key`` the deadline ``deadline``, its value untouched;
        return False (and change nothing) if the key is absent or expired."""
        raise self._no_native("expire")

    def persist(self, key: str) -> bool:
        """Clear the deadline of the live entry at ``key``; return whether the key is
        present (True for an entry without a deadline too), False if it is absent or
        expired.  On a backend without expiry this is :meth:`contains`."""
        if not self.backend.expiry:
            return self.contains(key)
        raise self._no_native("persist")

    def _no_native(self, method: str) -> ExpiryNotSupportedError:
        """The error of a deadline operation the backend has no atomic form of."""
        name = self.backend.name
        if not self.backend.expiry:
            return ExpiryNotSupportedError(
                f"the {name!r} backend cannot expire keys (Backend.expiry is false)"
            )
        return ExpiryNotSupportedError(
            f"the {name!r} backend sets Backend.expiry but its bucket "
            f"({type(self).__name__}) does not implement Bucket.{method}: its author must "
            "override it with an atomic operation of the engine (plugstore does not emulate "
            "it with a read and a separate write, which could lose a concurrent update)"
        )

    # -- batches: backends whose class sets ``atomic_batches = True`` override this ------------

    def write_batch(
        self,
        sets: Sequence[tuple[str, bytes, float | None]],
        removes: Sequence[str] = (),
        clears: Sequence[str] = (),
        *,
        atomic: bool = True,
    ) -> None:
        """Apply a batch, as if in this order: delete every key starting with a prefix of
        ``clears``, delete each key of ``removes``, then store each ``(key, value,
        deadline)`` of ``sets`` (deadline ``None``: none, as :meth:`set`).

        The caller passes distinct keys in ``sets``, and ``removes`` holds none of them.
        With ``atomic=True`` the batch lands whole or not at all, or the method raises
        :class:`~plugstore.errors.BatchNotAtomicError` before writing anything (the
        engine cannot: too large for one transaction, or no transactions at all).  With
        ``atomic=False`` it may be applied in steps, and a failure can leave part of it.

        The generic version has no atomic form: it refuses ``atomic=True``, and applies
        ``atomic=False`` step by step through :meth:`clear`, :meth:`remove` and
        :meth:`set_many_until`.  A backend that overrides it sets ``atomic_batches``.
        """
        if atomic:
            raise BatchNotAtomicError(
                f"the {self.backend.name!r} backend cannot write a batch atomically "
                "(Backend.atomic_batches is false); nothing was written: pass atomic=False "
                "to apply it in steps"
            )
        for prefix in clears:
            self.clear(prefix)
        for key in removes:
            self.remove(key)
        if sets:
            self.set_many_until(sets)


class Backend(ABC):
    """An engine plugstore can store namespaces in.

    Subclasses set the class attributes, read their options in ``__init__`` (which must
    not connect: ``open`` does) and hand out buckets.
    """

    #: Registry name (also the URL scheme).
    name: ClassVar[str] = "?"
    #: Acknowledged writes survive a ``kill -9`` of the writing process.
    durable: ClassVar[bool] = False
    #: Several processes may open the same store at once, safely.
    multiprocess: ClassVar[bool] = False
    #: The server port a URL without one means (for :meth:`identity`); None for files.
    default_port: ClassVar[int | None] = None
    #: Whether a lock outlives its holder's death until its lease runs out (``True``,
    #: the generic lease entry) or ends with the holder's session (``False``).
    lease_locks: ClassVar[bool] = True
    #: Whether buckets implement expiry (``set_until`` and friends, see :class:`Bucket`).
    expiry: ClassVar[bool] = False
    #: Whether the engine expires entries by its own clock (Redis) rather than by the
    #: store clock: the store clock still computes every deadline, but an entry leaves
    #: the read paths when the *server's* clock reaches it.
    expires_on_engine_clock: ClassVar[bool] = False
    #: Whether :meth:`Bucket.write_batch` is all-or-nothing (``atomic=True`` works).
    atomic_batches: ClassVar[bool] = False
    #: Whether readers never see part of an atomic batch: a ``get_many``, or a prefix
    #: listing of up to 256 entries (one page on every built-in backend), sees all of it
    #: or none of it.
    isolated_batches: ClassVar[bool] = False
    #: Whether bucket calls may block (on I/O, or on other processes): the async API
    #: (:mod:`plugstore.aio`) runs them on a thread pool.  ``False`` only for engines that
    #: answer at once from process memory; those are called in the event loop itself.
    blocking: ClassVar[bool] = True
    #: ``"module:Class"`` of the :class:`~plugstore.aio.bucket.AsyncDriver` subclass that
    #: gives this backend's buckets a native async driver in :mod:`plugstore.aio`
    #: (imported only when an async store opens); ``None``: every call on threads.
    async_driver: ClassVar[str | None] = None
    #: Threads an async store runs this backend's blocking calls on unless its
    #: ``threads=`` option says otherwise (``None``: the async API's default, 8).  Lower
    #: for a driver that computes much in Python: past a few threads its calls only
    #: queue for the GIL, and the event loop waits in that queue too.
    async_threads: ClassVar[int | None] = None
    #: Largest encoded value accepted; larger ones raise ``ValueTooLargeError`` up front.
    #: A backend may lower it in ``open`` once it knows the server's own limit.
    max_value_size: int = DEFAULT_MAX_VALUE_SIZE

    def __init__(self, url: StoreURL, options: Options) -> None:
        self.url = url
        #: The store clock: epoch seconds now.  Deadlines are computed and (except on
        #: engines that expire by their own clock) checked with it; ``plugstore.open(...,
        #: clock=...)`` replaces it, for tests.
        self.clock: Callable[[], float] = time.time
        #: The store's near cache (:mod:`plugstore.nearcache`) while it has one.
        self.near_cache: NearCache | None = None

    @abstractmethod
    def open(self) -> None:
        """Connect / open files.  Raise ``BackendUnavailableError`` if that fails."""

    @abstractmethod
    def close(self) -> None:
        """Release every connection, file and lock."""

    @abstractmethod
    def bucket(self, namespace: str) -> Bucket:
        """Return the bucket for ``namespace`` (cheap; may be cached)."""

    @abstractmethod
    def namespaces(self) -> Iterable[str]:
        """Names of the namespaces holding data."""

    def drop_namespace(self, namespace: str) -> int:
        """Delete a whole namespace; return how many keys it held."""
        return self.bucket(namespace).clear()

    def purge(self, namespace: str | None = None) -> dict[str, int]:
        """Delete expired entries for good, in ``namespace`` or everywhere.

        Returns ``{namespace: entries deleted}`` for the namespaces that had any.  The
        generic version asks each bucket of :meth:`namespaces`; a backend whose
        ``namespaces()`` leaves out namespaces holding only expired entries overrides it.
        """
        if not self.expiry:
            return {}
        names = [namespace] if namespace is not None else list(self.namespaces())
        counts = {name: self.bucket(name).purge() for name in names}
        return {name: n for name, n in counts.items() if n}

    def identity(self) -> tuple[object, ...]:
        """Where the data lives, normalised: equal identities mean the same stored data.

        Tools use it to refuse copying a store onto itself however its URL is spelled.
        The default is conservative (options are ignored, loopback names are unified);
        backends refine it (a SQLite file's resolved path and table, for instance).
        """
        host = (self.url.host or "").lower()
        if host in ("localhost", "127.0.0.1", "::1", ""):
            host = "loopback"
        return (self.name, host, self.url.port or self.default_port, self.url.path)

    def info(self) -> dict[str, str]:
        """Facts for ``plugstore doctor``: engine and library versions (never secrets)."""
        return {"backend": self.name, "url": str(self.url)}

    def near_cache_coherence(self, cache: NearCache) -> Coherence | None:
        """How this backend keeps ``cache`` (the store's near cache, see
        :mod:`plugstore.nearcache`) coherent with other writers, started now; ``None``
        (the default): it cannot, and ``cache=`` is refused."""
        return None


def retry_pauses(attempts: int = 2000, base: float = 0.0005, cap: float = 0.02) -> Iterator[float]:
    """Yield the pauses (seconds) after each of ``attempts`` tries of an optimistic
    retry loop.

    The first retry is immediate (0); later ones wait a jittered, growing delay so that
    writers racing on one key spread out instead of colliding again in lock-step.
    """
    delay = base
    for n in range(attempts):
        if n == 0:
            yield 0.0
        else:
            yield random.uniform(0, delay)
            delay = min(cap, delay * 2)


def retry_schedule(
    attempts: int = 2000, base: float = 0.0005, cap: float = 0.02
) -> Iterator[Callable[[], None]]:
    """Yield ``attempts`` back-off callables for optimistic retry loops: each sleeps the
    pause :func:`retry_pauses` gives."""

    def immediate() -> None:
        return None

    for pause in retry_pauses(attempts, base, cap):
        yield immediate if not pause else partial(time.sleep, pause)


class Backoff:
    """The waits between retries after a lost connection, until a deadline.

    The clock starts when it is made (at the first failure): ``expired()`` says whether
    ``seconds`` have passed; ``wait()`` sleeps the next step (``pause()`` says how long)
    -- 50 ms, doubling up to 1 s -- never past the deadline.
    """

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self._delay = 0.05

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def pause(self) -> float:
        """The next wait in seconds (an async caller sleeps it in its event loop)."""
        pause = max(0.0, min(self._delay, self.deadline - time.monotonic()))
        self._delay = min(self._delay * 2, 1.0)
        return pause

    def wait(self) -> None:
        time.sleep(self.pause())


__all__ = [
    "DEFAULT_MAX_VALUE_SIZE",
    "Backend",
    "Backoff",
    "Bucket",
    "Options",
    "retry_pauses",
    "retry_schedule",
]
