"""Scoped views of a namespace, with registered defaults merged on read.

``ns.scope(guild=123, member=456)`` is a dict-like view of the data one plugin keeps
about member 456 of guild 123.  Each of its keys is one stored entry of the namespace
(see :mod:`plugstore.scopekeys` for the spelling), so two members never share a value
and a scope is listed or cleared with a prefix read, never a scan of the namespace.

Defaults registered for a scope *level* (``ns.register_defaults({"xp": 0},
levels=("guild", "member"))``) are merged into every read of a scope at that level and
never written: a view behaves like ``collections.ChainMap(stored, defaults)``.  A dict
default is merged key by key, recursively, beneath a stored dict, so a default added in
a later release shows up inside values stored before it existed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .backend import Bucket
from .errors import DecodeError
from .keys import remaining
from .locks import DEFAULT_LEASE, DEFAULT_TIMEOUT, Lock
from .nscore import MISSING
from .scopecore import (
    BatchCore,
    DefaultsRegistry,
    IdCollector,
    LevelDefaults,
    ListingMerger,
    ScopeCore,
    merge_defaults,
    normalise_levels,
)
from .scopekeys import ScopeId, ScopePath, level_prefix
from .steps import run
from .views import ScanItemsView, ScanValuesView

if TYPE_CHECKING:
    from .namespace import Namespace

_MISSING: Any = MISSING


class Scope(ScopeCore, MutableMapping[str, Any]):
    """The data of one scope (a path of ``level=id`` pairs) in one namespace.

    Made by :meth:`Namespace.scope`; behaves like ``ChainMap(stored, defaults)``: reads
    see stored values, else the defaults registered for this scope's levels; writes and
    deletes touch stored values only (deleting a key that is only a default raises
    ``KeyError``).  Keys follow the namespace's rules; a key and its scope path together
    must fit :data:`~plugstore.keys.MAX_KEY_BYTES`.
    """

    _ns: Namespace

    def __init__(self, namespace: Namespace, path: ScopePath, defaults: LevelDefaults) -> None:
        super().__init__(namespace, path, defaults)

    # -- plumbing ---------------------------------------------------------------------

    @property
    def namespace(self) -> Namespace:
        """The namespace this scope lives in."""
        return self._ns

    def scope(self, **path: ScopeId) -> Scope:
        """A scope beneath this one: ``ns.scope(guild=1).scope(member=2)``."""
        return self._ns.scope_at(self._path + tuple(path.items()))

    def _bucket(self) -> Bucket:
        return self._ns._b()

    def _read(self, key: str, full: str, raw: bytes | None) -> tuple[bytes | None, Any]:
        """``(stored bytes, value)`` for ``raw`` read at ``full`` (see
        :meth:`ScopeCore._read_steps`)."""
        return run(self._read_steps(key, full, raw))

    # -- mapping protocol -----------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        full = self._full(key)
        raw = self._bucket().get(full)
        if raw is not None and not self._defaults.encoded:
            try:  # the common case, without the merge machinery
                return self._codec.decode(raw)
            except DecodeError:
                if not self._ns.quarantine:
                    raise
        value = self._read(key, full, raw)[1]
        if value is _MISSING:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` (stored or registered default), else ``default``."""
        return run(self._get_steps(key, default))

    def __setitem__(self, key: str, value: Any) -> None:
        full = self._full(key)
        raw = self._ns._encode(value)
        self._bucket().set(full, raw)

    def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """``scope[key] = value``; with ``ttl``, it expires ``ttl`` seconds from now (see
        :meth:`Namespace.set`).  Once expired, reads see the registered default again."""
        run(self._set_steps(key, value, ttl))

    def ttl(self, key: str) -> float | None:
        """Seconds until the stored value of ``key`` expires (``None``: no deadline);
        ``KeyError`` if nothing is stored (a registered default has no deadline)."""
        entry = self._bucket().get_with_deadline(self._full(key))
        if entry is None:
            raise KeyError(key)
        return remaining(entry[1], self._ns.store.backend.clock())

    def add(self, key: str, value: Any, *, ttl: float | None = None) -> bool:
        """Store ``value`` only if nothing is stored under ``key``; return whether it was
        stored (atomically: see :meth:`Namespace.add`).

        A registered default is not a stored value: ``add`` on a key that only has a
        default stores the value (and reads then see it instead of the default).  An
        expired value counts as absent.  With ``ttl`` the new value expires ``ttl``
        seconds from now.  A strict level refuses undeclared keys, as :meth:`set` does.
        """
        bucket = self._bucket()
        return bucket.add(*self._add_args(key, value, ttl))

    def expire(self, key: str, ttl: float) -> bool:
        """Make the stored value of ``key`` expire ``ttl`` seconds from now (see
        :meth:`Namespace.expire`); False if nothing is stored (a registered default has
        no deadline to set)."""
        bucket = self._bucket()
        return bucket.expire(*self._expire_args(key, ttl))

    def persist(self, key: str) -> bool:
        """Clear the deadline of the stored value of ``key`` (see
        :meth:`Namespace.persist`); False if nothing is stored."""
        return self._bucket().persist(self._full(key))

    def __delitem__(self, key: str) -> None:
        run(self._delete_steps(key))

    def __contains__(self, key: object) -> bool:
        return run(self._contains_steps(key))

    def __iter__(self) -> Iterator[str]:
        # Stored keys come in code point order; unstored defaults are merged in place.
        cut = len(self._prefix)
        merger = ListingMerger(self._defaults.encoded)
        for stored in self._bucket().keys(self._prefix):
            key = stored[cut:]
            for default, _ in merger.feed(key):
                yield default
            yield key
        for default, _ in merger.finish():
            yield default

    def __len__(self) -> int:
        return run(self._len_steps())

    def is_stored(self, key: str) -> bool:
        """Whether ``key`` has a stored value (not only a registered default)."""
        return self._bucket().contains(self._full(key))

    def scan(self) -> Iterator[tuple[str, Any]]:
        """Stream ``(key, value)`` pairs in key order: stored values (merged over their
        defaults) and unstored defaults."""
        cut = len(self._prefix)
        merger = ListingMerger(self._defaults.encoded)
        for stored, raw in self._bucket().items(self._prefix):
            key = stored[cut:]
            for default, encoded in merger.feed(key):
                yield default, self._codec.decode(encoded)
            value = self._read(key, stored, raw)[1]
            if value is not _MISSING:  # set aside as undecodable, with no default
                yield key, value
        for default, encoded in merger.finish():
            yield default, self._codec.decode(encoded)

    def items(self) -> ScanItemsView:
        """A view whose iteration streams ``(key, value)`` pairs (see :meth:`scan`)."""
        return ScanItemsView(self)

    def values(self) -> ScanValuesView:
        """A view whose iteration streams the values."""
        return ScanValuesView(self)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """``{key: value}`` for the keys among ``keys`` that are stored or have a default."""
        return run(self._get_many_steps(keys))

    def set_many(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        ttl: float | None = None,
    ) -> None:
        """Store many values in one bulk write (all validated and encoded first); with
        ``ttl`` each expires ``ttl`` seconds from now."""
        run(self._set_many_steps(items, ttl))

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """Like ``dict.update``, through :meth:`set_many` (one bulk write)."""
        pairs = dict(other.items() if isinstance(other, Mapping) else other)
        pairs.update(kwargs)
        self.set_many(pairs)

    def clear(self) -> None:
        """Delete this scope's stored keys (defaults stay; sub-scopes are untouched)."""
        run(self._clear_steps())

    def clear_all(self) -> int:
        """Delete this scope's stored keys and every scope beneath it; return how many."""
        return run(self._clear_all_steps())

    def children(self, level: str) -> dict[ScopeId, dict[str, Any]]:
        """The data of each scope at ``level`` directly beneath this one: ``{id: {key:
        value}}``, with that level's registered defaults filled in.

        ``ns.scope(channel="dev").children("user")`` is every user's data in channel
        dev (Red's ``all_members``), for a leaderboard.  One prefix read; a scope holding
        no keys of its own (only deeper data) is not listed.
        """
        return run(self._children_steps(level))

    def ids(self, level: str) -> Iterator[ScopeId]:
        """The ids of the scopes at ``level`` directly beneath this one that hold data.

        ``ns.scope(guild=1).ids("member")`` yields each member of guild 1 with stored
        data, once.  One prefix read over those scopes' keys, so the ids come in the order
        of their stored keys, the same on every backend: int ids first, as decimal text
        (12 before 2), then str ids in code point order.
        """
        ids = IdCollector(level_prefix(self._path, level))
        for stored in self._bucket().keys(ids.prefix):
            value = ids.feed(stored)
            if value is not None:
                yield value

    def lock(
        self, key: str, *, timeout: float | None = DEFAULT_TIMEOUT, lease: float = DEFAULT_LEASE
    ) -> Lock:
        """A cross-process lock on ``key`` of this scope; see :meth:`Namespace.lock`."""
        return Lock(self._ns, self._full(key), timeout, lease)

    def tree(self, *levels: str) -> dict[ScopeId, Any]:
        """The data of every scope ``levels`` beneath this one, nested by id, in one
        prefix read: ``ns.scope().tree("guild", "member")`` is ``{guild: {member: {key:
        value}}}`` for every member of every guild (Red's ``all_members()``).

        Each innermost dict is what :meth:`children` gives for that scope: its stored
        values (merged) with the registered defaults of its levels filled in.  Scopes
        holding no keys of their own (only deeper data, or other levels) are not listed.
        ``tree(level)`` is ``children(level)``.
        """
        return run(self._tree_steps(levels))

    def replace(
        self,
        values: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        ttl: float | None = None,
        atomic: bool = True,
    ) -> None:
        """Make ``values`` this scope's whole stored contents, atomically: its other
        stored keys are deleted, sub-scopes are untouched (Red's ``group.set(dict)``).

        With ``atomic=True`` (the default) the replace lands whole or not at all on
        backends with ``atomic_batches`` (and readers see the old contents or the new,
        never a mix, on those with ``isolated_batches``: every built-in one but
        DynamoDB); elsewhere it raises :class:`~plugstore.errors.BatchNotAtomicError`
        and writes nothing.  With ``atomic=False`` it is a clear followed by a bulk
        write.  With ``ttl`` every value expires ``ttl`` seconds from now.  Keys without
        a value read their registered defaults afterwards.
        """
        batch = ScopeBatch(self._ns, atomic=atomic)
        batch.replace(self, values, ttl=ttl)
        batch.commit()

    def group_lock(
        self, *, timeout: float | None = DEFAULT_TIMEOUT, lease: float = DEFAULT_LEASE
    ) -> Lock:
        """A cross-process lock on this scope as a whole: ``with member.group_lock():``.

        An engine-held lock like :meth:`lock` (same timeout, lease and holder-death
        rules), named by the scope's path rather than one of its keys, for a
        read-modify-write over several keys of the scope.  It excludes other holders of
        this scope's group lock only: not key locks (``scope.lock(key)``), nor the group
        locks of scopes above or beneath it.
        """
        self._bucket()
        # The own-key prefix with an empty key: no key lock of any scope is named so.
        return Lock(self._ns, self._prefix, timeout, lease)

    # -- atomic helpers -------------------------------------------------------------------

    def incr(self, key: str, delta: int = 1) -> int:
        """Atomically add ``delta``; an absent key starts from its registered default (or 0)."""
        return run(self._incr_steps(key, delta))

    def decr(self, key: str, delta: int = 1) -> int:
        """``incr(key, -delta)``."""
        return self.incr(key, -delta)

    def compute(self, key: str, fn: Callable[[Any], Any], default: Any = None) -> Any:
        """Atomically replace the value by ``fn(value)``; see :meth:`Namespace.compute`.

        ``fn`` gets the stored value (merged with its default), else the registered
        default, else ``default``.
        """
        return run(self._compute_steps(key, fn, default))

    def setdefault(self, key: str, default: Any = None) -> Any:
        """The value of ``key``; if it is neither stored nor defaulted, store ``default``."""
        return run(self._setdefault_steps(key, default))

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        """Delete the stored value and return what ``self[key]`` returned, atomically.

        When nothing is stored: ``default`` if given, else the registered default, else
        ``KeyError``.
        """
        return run(self._pop_steps(key, default))

    @contextmanager
    def mutable(self, key: str, default: Any = _MISSING) -> Iterator[Any]:
        """Edit a value in a ``with`` block; written back atomically or ``ConflictError``.

        Starts from the stored value (merged), else the registered default, else
        ``default`` (``KeyError`` without one).  See :meth:`Namespace.mutable`.
        """
        full, raw, start, value = run(self._mutable_read_steps(key, default))
        yield value
        run(self._mutable_write_steps(full, raw, start, value))


class ScopeBatch(BatchCore):
    """Writes to several scopes of one namespace, applied together: ``ns.batch()``.

    ::

        with levels.batch() as batch:                 # applied when the block ends
            batch.replace(levels.scope(guild=1), {"prefix": "!"})
            batch.set(levels.scope(guild=1, member=2), "xp", 0)
            batch.delete(levels.scope(guild=1, member=3), "xp")
            batch.clear_all(levels.scope(guild=2))

    Every call validates and encodes at once (a bad key or value raises there, and the
    batch stays as it was); nothing is written until :meth:`commit` (the end of a
    ``with`` block without an exception).  Later calls win over earlier ones on the
    same key, as if applied in order.  With ``atomic=True`` (the default) the batch
    lands whole or not at all, and readers never see part of it where the backend says
    so (``Backend.isolated_batches``); a backend without atomic batches refuses it up
    front with :class:`~plugstore.errors.BatchNotAtomicError`, as does DynamoDB at
    commit for a batch beyond one transaction.  ``atomic=False`` applies it in steps.
    """

    def commit(self) -> None:
        """Apply the batch (once); ``BatchNotAtomicError`` if it cannot be atomic."""
        run(self._commit_steps())

    def __enter__(self) -> ScopeBatch:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()


__all__ = [
    "DefaultsRegistry",
    "LevelDefaults",
    "Scope",
    "ScopeBatch",
    "merge_defaults",
    "normalise_levels",
]
