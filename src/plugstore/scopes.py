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

import threading
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

from .backend import Bucket, retry_schedule
from .errors import (
    BatchNotAtomicError,
    ConflictError,
    DecodeError,
    InvalidKeyError,
    InvalidNamespaceError,
    NotAnIntegerError,
    StoreError,
    UndeclaredKeyError,
)
from .keys import INT64_MAX, INT64_MIN, MAX_KEY_BYTES, check_counter, check_key, remaining
from .locks import DEFAULT_LEASE, DEFAULT_TIMEOUT, Lock
from .scopekeys import (
    META_LEAD,
    SCOPE_LEAD,
    ScopeId,
    ScopePath,
    check_level,
    child_id,
    level_prefix,
    own_prefix,
    parse_scoped_key,
    path_prefix,
    subtree_prefixes,
)
from .views import ScanItemsView, ScanValuesView

if TYPE_CHECKING:
    from .namespace import Namespace

_MISSING: Any = object()


class LevelDefaults:
    """The defaults registered for one scope level of one namespace (encoded once)."""

    def __init__(self) -> None:
        self.encoded: dict[str, bytes] = {}
        self.strict = False


class DefaultsRegistry:
    """Every namespace's registered defaults in one store, by namespace and level."""

    def __init__(self) -> None:
        self._levels: dict[tuple[str, tuple[str, ...]], LevelDefaults] = {}
        self._lock = threading.Lock()

    def level(self, namespace: str, levels: tuple[str, ...]) -> LevelDefaults:
        """The (shared, mutable) defaults of ``levels`` in ``namespace``."""
        found = self._levels.get((namespace, levels))
        if found is None:
            with self._lock:
                found = self._levels.setdefault((namespace, levels), LevelDefaults())
        return found


def normalise_levels(levels: str | Sequence[str]) -> tuple[str, ...]:
    """``"guild"`` or ``("guild", "member")`` as a validated tuple of level names."""
    names = (levels,) if isinstance(levels, str) else tuple(levels)
    return tuple(check_level(name) for name in names)


def merge_defaults(default: Any, stored: Any) -> Any:
    """``stored`` with the keys it lacks filled in from ``default``, recursively for dicts."""
    if type(default) is not dict or type(stored) is not dict:
        return stored
    merged = dict(default)
    for key, value in stored.items():
        merged[key] = merge_defaults(default[key], value) if key in default else value
    return merged


class Scope(MutableMapping[str, Any]):
    """The data of one scope (a path of ``level=id`` pairs) in one namespace.

    Made by :meth:`Namespace.scope`; behaves like ``ChainMap(stored, defaults)``: reads
    see stored values, else the defaults registered for this scope's levels; writes and
    deletes touch stored values only (deleting a key that is only a default raises
    ``KeyError``).  Keys follow the namespace's rules; a key and its scope path together
    must fit :data:`~plugstore.keys.MAX_KEY_BYTES`.
    """

    def __init__(self, namespace: Namespace, path: ScopePath, defaults: LevelDefaults) -> None:
        self._ns = namespace
        self._path = path
        self._prefix = own_prefix(path)
        self._room = MAX_KEY_BYTES - len(self._prefix.encode("utf-8"))
        if self._room < 1:
            raise InvalidKeyError(
                f"scope {self._where()} leaves no room for keys within {MAX_KEY_BYTES} bytes"
            )
        self._defaults = defaults
        self._codec = namespace.store.codec

    # -- plumbing ---------------------------------------------------------------------

    @property
    def path(self) -> ScopePath:
        """This scope's ``(level, id)`` pairs, outermost first."""
        return self._path

    @property
    def levels(self) -> tuple[str, ...]:
        """The level names of :attr:`path` (what defaults are registered against)."""
        return tuple(level for level, _ in self._path)

    @property
    def namespace(self) -> Namespace:
        """The namespace this scope lives in."""
        return self._ns

    def __repr__(self) -> str:
        return f"<Scope {self._where()} of namespace {self._ns.name!r}>"

    def scope(self, **path: ScopeId) -> Scope:
        """A scope beneath this one: ``ns.scope(guild=1).scope(member=2)``."""
        return self._ns.scope_at(self._path + tuple(path.items()))

    def _full(self, key: object) -> str:
        """The stored key of ``key``; raises ``InvalidKeyError`` for a bad or too long key."""
        if type(key) is str and 0 < len(key) <= self._room and key.isascii():
            if "\x00" in key:
                check_key(key)  # raises
        else:
            key = check_key(key)
            size = len(key.encode("utf-8"))
            if size > self._room:
                raise InvalidKeyError(
                    f"key is {size} UTF-8 bytes; in scope {self._where()} keys are limited "
                    f"to {self._room} (the scope path takes the rest of {MAX_KEY_BYTES})"
                )
        if self._defaults.strict and key not in self._defaults.encoded:
            raise UndeclaredKeyError(
                f"{key!r} is not a registered key of scope level {self._level_name()} "
                f"in namespace {self._ns.name!r} (strict mode)"
            )
        return self._prefix + key

    def _where(self) -> str:
        return ", ".join(f"{level}={value!r}" for level, value in self._path) or "global"

    def _level_name(self) -> str:
        return "/".join(self.levels) or "global"

    def _bucket(self) -> Bucket:
        return self._ns._b()

    def _read(self, key: str, full: str, raw: bytes | None) -> tuple[bytes | None, Any]:
        """``(stored bytes, value)`` for ``raw`` read at ``full``: the value a read
        returns is the stored one (merged with a dict default) or the default, and
        ``_MISSING`` when there is neither.  An undecodable value is set aside first
        when the namespace quarantines (the bytes are then ``None``)."""
        value: Any = _MISSING
        if raw is not None:
            raw, value = self._ns._load(full, raw)
        default = self._defaults.encoded.get(key)
        if raw is None:
            return None, (_MISSING if default is None else self._codec.decode(default))
        if default is not None and type(value) is dict:
            value = merge_defaults(self._codec.decode(default), value)
        return raw, value

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
        full = self._full(key)
        value = self._read(key, full, self._bucket().get(full))[1]
        return default if value is _MISSING else value

    def __setitem__(self, key: str, value: Any) -> None:
        full = self._full(key)
        raw = self._ns._encode(value)
        self._bucket().set(full, raw)

    def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """``scope[key] = value``; with ``ttl``, it expires ``ttl`` seconds from now (see
        :meth:`Namespace.set`).  Once expired, reads see the registered default again."""
        if ttl is None:
            self[key] = value
            return
        bucket = self._bucket()
        deadline = self._ns._deadline(ttl)
        full = self._full(key)
        bucket.set_until(full, self._ns._encode(value), deadline)

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
        deadline = None if ttl is None else self._ns._deadline(ttl)
        full = self._full(key)
        return bucket.add(full, self._ns._encode(value), deadline)

    def expire(self, key: str, ttl: float) -> bool:
        """Make the stored value of ``key`` expire ``ttl`` seconds from now (see
        :meth:`Namespace.expire`); False if nothing is stored (a registered default has
        no deadline to set)."""
        bucket = self._bucket()
        full = self._full(key)
        return bucket.expire(full, self._ns._deadline(ttl))

    def persist(self, key: str) -> bool:
        """Clear the deadline of the stored value of ``key`` (see
        :meth:`Namespace.persist`); False if nothing is stored."""
        return self._bucket().persist(self._full(key))

    def __delitem__(self, key: str) -> None:
        if not self._bucket().remove(self._full(key)):
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        try:
            full = self._full(key)
        except InvalidKeyError:
            return False
        return key in self._defaults.encoded or self._bucket().contains(full)

    def __iter__(self) -> Iterator[str]:
        # Stored keys come in code point order; unstored defaults are merged in place.
        cut = len(self._prefix)
        defaults, i = sorted(self._defaults.encoded), 0
        for stored in self._bucket().keys(self._prefix):
            key = stored[cut:]
            while i < len(defaults) and defaults[i] <= key:
                if defaults[i] != key:
                    yield defaults[i]
                i += 1
            yield key
        yield from defaults[i:]

    def __len__(self) -> int:
        bucket = self._bucket()
        stored = bucket.count(self._prefix)
        if not self._defaults.encoded:
            return stored
        names = list(self._defaults.encoded)
        present = bucket.get_many([self._prefix + key for key in names])
        return stored + sum(1 for key in names if self._prefix + key not in present)

    def is_stored(self, key: str) -> bool:
        """Whether ``key`` has a stored value (not only a registered default)."""
        return self._bucket().contains(self._full(key))

    def scan(self) -> Iterator[tuple[str, Any]]:
        """Stream ``(key, value)`` pairs in key order: stored values (merged over their
        defaults) and unstored defaults."""
        cut = len(self._prefix)
        defaults, i = sorted(self._defaults.encoded.items()), 0
        for stored, raw in self._bucket().items(self._prefix):
            key = stored[cut:]
            while i < len(defaults) and defaults[i][0] <= key:
                if defaults[i][0] != key:
                    yield defaults[i][0], self._codec.decode(defaults[i][1])
                i += 1
            value = self._read(key, stored, raw)[1]
            if value is not _MISSING:  # set aside as undecodable, with no default
                yield key, value
        for key, default in defaults[i:]:
            yield key, self._codec.decode(default)

    def items(self) -> ScanItemsView:
        """A view whose iteration streams ``(key, value)`` pairs (see :meth:`scan`)."""
        return ScanItemsView(self)

    def values(self) -> ScanValuesView:
        """A view whose iteration streams the values."""
        return ScanValuesView(self)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """``{key: value}`` for the keys among ``keys`` that are stored or have a default."""
        if isinstance(keys, (str, bytes)):
            raise TypeError("get_many takes an iterable of keys, not a single key")
        wanted = {self._full(key): key for key in keys}
        found = self._bucket().get_many(list(wanted))
        out = {}
        for full, key in sorted(wanted.items()):  # code point order, as every listing
            value = self._read(key, full, found.get(full))[1]
            if value is not _MISSING:
                out[key] = value
        return out

    def set_many(
        self,
        items: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        ttl: float | None = None,
    ) -> None:
        """Store many values in one bulk write (all validated and encoded first); with
        ``ttl`` each expires ``ttl`` seconds from now."""
        self._bucket()
        deadline = None if ttl is None else self._ns._deadline(ttl)
        pairs = items.items() if isinstance(items, Mapping) else items
        encoded = [(self._full(key), self._ns._encode(value)) for key, value in pairs]
        self._ns._write_many(encoded, deadline)

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """Like ``dict.update``, through :meth:`set_many` (one bulk write)."""
        pairs = dict(other.items() if isinstance(other, Mapping) else other)
        pairs.update(kwargs)
        self.set_many(pairs)

    def clear(self) -> None:
        """Delete this scope's stored keys (defaults stay; sub-scopes are untouched)."""
        self._bucket().clear(self._prefix)

    def clear_all(self) -> int:
        """Delete this scope's stored keys and every scope beneath it; return how many."""
        bucket = self._bucket()
        if self._path or not bucket.count(META_LEAD):
            return bucket.clear(path_prefix(self._path))
        # The global scope's subtree prefix also starts the namespace's meta entries
        # (its data version), which are not scoped data: keep them.
        doomed = [key for key in bucket.keys(SCOPE_LEAD) if not key.startswith(META_LEAD)]
        return sum(1 for key in doomed if bucket.remove(key))

    def children(self, level: str) -> dict[ScopeId, dict[str, Any]]:
        """The data of each scope at ``level`` directly beneath this one: ``{id: {key:
        value}}``, with that level's registered defaults filled in.

        ``ns.scope(channel="dev").children("user")`` is every user's data in channel
        dev (Red's ``all_members``), for a leaderboard.  One prefix read; a scope holding
        no keys of its own (only deeper data) is not listed.
        """
        prefix = level_prefix(self._path, level)
        depth = len(self._path) + 1
        found: dict[tuple[type, ScopeId], tuple[Scope, dict[str, Any]]] = {}
        for stored, raw in self._bucket().items(prefix):
            parsed = parse_scoped_key(stored)
            if parsed is None or len(parsed[0]) != depth:
                continue  # deeper down
            path, key = parsed
            marker = (type(path[-1][1]), path[-1][1])  # 1 and "1" are different ids
            if marker not in found:
                found[marker] = (self._ns.scope_at(path), {})
            child, values = found[marker]
            value = child._read(key, stored, raw)[1]
            if value is not _MISSING:
                values[key] = value
        out: dict[ScopeId, dict[str, Any]] = {}
        for (_, child_id_), (child, values) in found.items():
            self._fill_defaults(values, child._defaults.encoded)
            out[child_id_] = values
        return out

    def _fill_defaults(self, values: dict[str, Any], defaults: Mapping[str, bytes]) -> None:
        """Add to ``values`` (one scope's, in key order) the encoded ``defaults`` it lacks,
        decoded, keeping code point order."""
        missing = [(key, raw) for key, raw in list(defaults.items()) if key not in values]
        if missing:
            values.update((key, self._codec.decode(raw)) for key, raw in missing)
            ordered = sorted(values.items())
            values.clear()
            values.update(ordered)

    def ids(self, level: str) -> Iterator[ScopeId]:
        """The ids of the scopes at ``level`` directly beneath this one that hold data.

        ``ns.scope(guild=1).ids("member")`` yields each member of guild 1 with stored
        data, once.  One prefix read over those scopes' keys, so the ids come in the order
        of their stored keys, the same on every backend: int ids first, as decimal text
        (12 before 2), then str ids in code point order.
        """
        prefix = level_prefix(self._path, level)
        cut = len(prefix)
        seen: set[tuple[type, ScopeId]] = set()
        for stored in self._bucket().keys(prefix):
            value = child_id(stored, cut)
            marker = (type(value), value)
            if marker not in seen:  # 1 and "1" are different ids
                seen.add(marker)
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
        if not levels:
            raise InvalidKeyError("tree() needs at least one level name")
        names = tuple(check_level(level) for level in levels)
        every = self.levels + names
        if len(set(every)) != len(every):
            raise InvalidKeyError(f"a scope path names each level once, got {'/'.join(every)}")
        prefix = level_prefix(self._path, names[0])
        top, depth = len(self._path), len(every)
        # One scope reads every leaf: _read depends on the level's defaults, not the path.
        reader = self._ns.scope_at(self._path + tuple((name, 0) for name in names))
        out: dict[ScopeId, Any] = {}
        leaves: list[dict[str, Any]] = []
        last_prefix, values = "", None  # keys arrive grouped by scope: parse each once
        for stored, raw in self._bucket().items(prefix):
            if last_prefix and stored.startswith(last_prefix):
                key = stored[len(last_prefix) :]
            else:
                parsed = parse_scoped_key(stored)
                if parsed is None:
                    continue
                path, key = parsed
                last_prefix = stored[: len(stored) - len(key)]
                if len(path) != depth or tuple(lv for lv, _ in path[top:]) != names:
                    values = None  # deeper down, or another level beneath
                    continue
                node = out
                for _, value_id in path[top:-1]:
                    node = node.setdefault(value_id, {})
                values = node.get(path[-1][1])
                if values is None:
                    values = node[path[-1][1]] = {}
                    leaves.append(values)
            if values is None:
                continue
            value = reader._read(key, stored, raw)[1]
            if value is not _MISSING:
                values[key] = value
        defaults = dict(reader._defaults.encoded)
        if defaults:
            for values in leaves:  # in place: they are nested in ``out``
                self._fill_defaults(values, defaults)
        return out

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
        if type(delta) is not int:
            raise TypeError(f"incr delta must be int, not {type(delta).__name__}")
        if not INT64_MIN <= delta <= INT64_MAX:
            check_counter(delta)  # raises NotAnIntegerError
        full = self._full(key)
        bucket = self._bucket()
        default = self._defaults.encoded.get(key)
        if default is not None:
            start = self._codec.decode(default)
            if type(start) is not int:
                raise NotAnIntegerError(
                    f"the registered default of {key!r} is not an integer: {start!r:.40}"
                )
            if start:
                # Only an absent key starts from the default; once stored, native incr.
                new = check_counter(start + delta)
                if bucket.cas(full, None, str(new).encode("ascii")):
                    return new
        return bucket.incr(full, delta)

    def decr(self, key: str, delta: int = 1) -> int:
        """``incr(key, -delta)``."""
        return self.incr(key, -delta)

    def compute(self, key: str, fn: Callable[[Any], Any], default: Any = None) -> Any:
        """Atomically replace the value by ``fn(value)``; see :meth:`Namespace.compute`.

        ``fn`` gets the stored value (merged with its default), else the registered
        default, else ``default``.
        """
        full = self._full(key)
        bucket = self._bucket()
        fallback = None if default is None else self._ns._encode(default)
        for attempt in retry_schedule():
            raw, current = self._read(key, full, bucket.get(full))
            if current is _MISSING:
                current = None if fallback is None else self._codec.decode(fallback)
            new = fn(current)
            if bucket.cas(full, raw, self._ns._encode(new)):
                return new
            attempt()
        raise ConflictError(f"compute on {key!r} kept conflicting with other writers")

    def setdefault(self, key: str, default: Any = None) -> Any:
        """The value of ``key``; if it is neither stored nor defaulted, store ``default``."""
        full = self._full(key)
        bucket = self._bucket()
        new = self._ns._encode(default)
        for attempt in retry_schedule():
            current = self._read(key, full, bucket.get(full))[1]
            if current is not _MISSING:
                return current
            if bucket.cas(full, None, new):
                return self._codec.decode(new)
            attempt()
        raise ConflictError(f"setdefault of {key!r} kept conflicting with other writers")

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        """Delete the stored value and return what ``self[key]`` returned, atomically.

        When nothing is stored: ``default`` if given, else the registered default, else
        ``KeyError``.
        """
        full = self._full(key)
        bucket = self._bucket()
        for attempt in retry_schedule():
            raw, value = self._read(key, full, bucket.get(full))  # decoded before deleting
            if raw is None:
                if default is not _MISSING:
                    return default
                if value is _MISSING:
                    raise KeyError(key)
                return value
            if bucket.cas(full, raw, None):
                return value
            attempt()
        raise ConflictError(f"pop of {key!r} kept conflicting with other writers")

    @contextmanager
    def mutable(self, key: str, default: Any = _MISSING) -> Iterator[Any]:
        """Edit a value in a ``with`` block; written back atomically or ``ConflictError``.

        Starts from the stored value (merged), else the registered default, else
        ``default`` (``KeyError`` without one).  See :meth:`Namespace.mutable`.
        """
        full = self._full(key)
        bucket = self._bucket()
        raw, current = self._read(key, full, bucket.get(full))
        if current is _MISSING:
            if default is _MISSING:
                raise KeyError(key)
            current = default
        start = self._ns._encode(current)
        value = self._codec.decode(start)
        yield value
        new = self._ns._encode(value)
        if new == start:
            return
        if not self._bucket().cas(full, raw, new):
            raise ConflictError(
                f"{key!r} was changed by another writer while mutable() held it; "
                "your change was not written (retry, or use compute())"
            )


class ScopeBatch:
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

    def __init__(self, namespace: Namespace, *, atomic: bool = True) -> None:
        namespace._b()
        backend = namespace.store.backend
        if atomic and not backend.atomic_batches:
            raise BatchNotAtomicError(
                f"the {backend.name!r} backend cannot write a batch atomically "
                "(Backend.atomic_batches is false): pass atomic=False to apply it in steps"
            )
        self._ns = namespace
        self.atomic = atomic
        self._clears: list[str] = []
        self._removes: dict[str, None] = {}
        self._sets: dict[str, tuple[bytes, float | None]] = {}
        self._done = False

    def _scope(self, scope: Scope) -> Scope:
        if self._done:
            raise StoreError("this batch was already committed or discarded; start another")
        if not isinstance(scope, Scope):
            raise TypeError(f"expected a Scope, not {type(scope).__name__}")
        ns = scope.namespace
        if ns.name != self._ns.name or ns.store is not self._ns.store:
            raise InvalidNamespaceError(
                f"a batch of namespace {self._ns.name!r} cannot write a scope of namespace "
                f"{ns.name!r} (of this or another store): use one batch per namespace"
            )
        return scope

    def _deadline(self, ttl: float | None) -> float | None:
        return None if ttl is None else self._ns._deadline(ttl)

    def set(self, scope: Scope, key: str, value: Any, *, ttl: float | None = None) -> None:
        """``scope[key] = value`` (with ``ttl``: ``scope.set(key, value, ttl=ttl)``)."""
        full = self._scope(scope)._full(key)
        entry = (self._ns._encode(value), self._deadline(ttl))
        self._removes.pop(full, None)
        self._sets[full] = entry

    def delete(self, scope: Scope, key: str) -> None:
        """Delete the stored value of ``key`` in ``scope``; absent is not an error."""
        full = self._scope(scope)._full(key)
        self._sets.pop(full, None)
        self._removes[full] = None

    def replace(
        self,
        scope: Scope,
        values: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        ttl: float | None = None,
    ) -> None:
        """Make ``values`` the whole stored contents of ``scope`` (see :meth:`Scope.replace`)."""
        self._scope(scope)
        pairs = values.items() if isinstance(values, Mapping) else values
        deadline = self._deadline(ttl)
        encoded = [(scope._full(key), self._ns._encode(value)) for key, value in pairs]
        self._clear(scope._prefix)
        for full, raw in encoded:
            self._removes.pop(full, None)
            self._sets[full] = (raw, deadline)

    def clear(self, scope: Scope) -> None:
        """Delete the stored keys of ``scope`` (sub-scopes stay), like :meth:`Scope.clear`."""
        self._clear(self._scope(scope)._prefix)

    def clear_all(self, scope: Scope) -> None:
        """Delete ``scope`` and every scope beneath it, like :meth:`Scope.clear_all`."""
        for prefix in subtree_prefixes(self._scope(scope).path):
            self._clear(prefix)

    def _clear(self, prefix: str) -> None:
        if not any(prefix.startswith(done) for done in self._clears):
            self._clears = [done for done in self._clears if not done.startswith(prefix)]
            self._clears.append(prefix)
        # what the batch wrote there before is cleared too; later writes survive
        for doomed in [k for k in self._sets if k.startswith(prefix)]:
            del self._sets[doomed]
        for doomed in [k for k in self._removes if k.startswith(prefix)]:
            del self._removes[doomed]

    def commit(self) -> None:
        """Apply the batch (once); ``BatchNotAtomicError`` if it cannot be atomic."""
        if self._done:
            raise StoreError("this batch was already committed or discarded; start another")
        bucket = self._ns._b()
        self._done = True
        sets = [(key, raw, deadline) for key, (raw, deadline) in self._sets.items()]
        if sets or self._removes or self._clears:
            bucket.write_batch(sets, list(self._removes), list(self._clears), atomic=self.atomic)

    def discard(self) -> None:
        """Drop the batch unwritten."""
        self._done = True

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
