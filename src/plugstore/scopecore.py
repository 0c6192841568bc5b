"""What a scope does, written once for :class:`~plugstore.scopes.Scope` and
:class:`~plugstore.aio.scopes.AsyncScope` (see :mod:`plugstore.scopes` for scopes and
:mod:`plugstore.steps` for how an operation is written once for both APIs).

:class:`ScopeCore` holds a scope's path, stored-key prefix and level defaults, the pure
parts of its operations (key spelling, defaults merged into reads, listings merged with
unstored defaults) and, as steps, every operation that reads and writes the engine.
:class:`BatchCore` collects a batch of writes to several scopes; the shells commit it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .backend import retry_pauses
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
from .keys import MAX_KEY_BYTES, check_counter, check_key
from .nscore import MISSING, NamespaceCore, check_delta
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
from .steps import Sleep, Steps, call


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


def register_defaults(
    registry: DefaultsRegistry,
    ns: NamespaceCore,
    defaults: Mapping[str, Any],
    levels: str | Sequence[str],
    strict: bool,
) -> None:
    """``ns.register_defaults(...)`` of either API (see the sync Namespace's docs)."""
    names = normalise_levels(levels)
    encoded = {check_key(key): ns._encode(value) for key, value in defaults.items()}
    level = registry.level(ns._name, names)
    level.encoded.update(encoded)
    level.strict = level.strict or strict


class ListingMerger:
    """Merges a scope's stored keys, arriving in code point order, with its unstored
    defaults, in place: :meth:`feed` each stored key, then :meth:`finish`; each gives
    the default keys to list before (or after) it."""

    def __init__(self, defaults: Mapping[str, bytes]) -> None:
        self._defaults = sorted(defaults.items())
        self._i = 0

    def feed(self, key: str) -> list[tuple[str, bytes]]:
        """The unstored defaults that come before stored ``key``."""
        out = []
        defaults, i = self._defaults, self._i
        while i < len(defaults) and defaults[i][0] <= key:
            if defaults[i][0] != key:
                out.append(defaults[i])
            i += 1
        self._i = i
        return out

    def finish(self) -> list[tuple[str, bytes]]:
        """The unstored defaults after the last stored key."""
        rest, self._i = self._defaults[self._i :], len(self._defaults)
        return rest


class IdCollector:
    """The distinct child ids of a level, from its stored keys in order (``ids()``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._cut = len(prefix)
        self._seen: set[tuple[type, ScopeId]] = set()

    def feed(self, stored: str) -> ScopeId | None:
        """The id of ``stored``'s scope if it is new, else ``None``."""
        value = child_id(stored, self._cut)
        marker = (type(value), value)
        if marker in self._seen:  # 1 and "1" are different ids
            return None
        self._seen.add(marker)
        return value


class ScopeCore:
    """The state and the logic of a scope, shared by the sync and async shells.

    ``self._ns`` is the scope's namespace (a :class:`~plugstore.namespace.Namespace` or
    an :class:`~plugstore.aio.namespace.AsyncNamespace`); the steps name its bucket.
    """

    def __init__(self, namespace: Any, path: ScopePath, defaults: LevelDefaults) -> None:
        self._ns = namespace
        self._path = path
        self._prefix = own_prefix(path)
        self._room = MAX_KEY_BYTES - len(self._prefix.encode("utf-8"))
        if self._room < 1:
            raise InvalidKeyError(
                f"scope {self._where()} leaves no room for keys within {MAX_KEY_BYTES} bytes"
            )
        self._defaults = defaults
        self._codec = namespace._codec

    # -- plumbing ---------------------------------------------------------------------

    @property
    def path(self) -> ScopePath:
        """This scope's ``(level, id)`` pairs, outermost first."""
        return self._path

    @property
    def levels(self) -> tuple[str, ...]:
        """The level names of :attr:`path` (what defaults are registered against)."""
        return tuple(level for level, _ in self._path)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._where()} of namespace {self._ns.name!r}>"

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

    def _bucket(self) -> Any:
        return self._ns._b()

    def _fill_defaults(self, values: dict[str, Any], defaults: Mapping[str, bytes]) -> None:
        """Add to ``values`` (one scope's, in key order) the encoded ``defaults`` it lacks,
        decoded, keeping code point order."""
        missing = [(key, raw) for key, raw in list(defaults.items()) if key not in values]
        if missing:
            values.update((key, self._codec.decode(raw)) for key, raw in missing)
            ordered = sorted(values.items())
            values.clear()
            values.update(ordered)

    def _add_args(self, key: str, value: Any, ttl: float | None) -> tuple[str, bytes, float | None]:
        """The bucket's ``add`` arguments for ``scope.add(key, value, ttl=)``."""
        deadline = None if ttl is None else self._ns._deadline(ttl)
        full = self._full(key)
        return full, self._ns._encode(value), deadline

    def _expire_args(self, key: str, ttl: float) -> tuple[str, float]:
        """The bucket's ``expire`` arguments: the key is checked before the ttl."""
        full = self._full(key)
        return full, self._ns._deadline(ttl)

    def _tree_levels(self, levels: tuple[str, ...]) -> tuple[str, ...]:
        if not levels:
            raise InvalidKeyError("tree() needs at least one level name")
        names = tuple(check_level(level) for level in levels)
        every = self.levels + names
        if len(set(every)) != len(every):
            raise InvalidKeyError(f"a scope path names each level once, got {'/'.join(every)}")
        return names

    # -- steps: reads ------------------------------------------------------------------

    def _read_steps(
        self, key: str, full: str, raw: bytes | None
    ) -> Steps[tuple[bytes | None, Any]]:
        """``(stored bytes, value)`` for ``raw`` read at ``full``: the value a read
        returns is the stored one (merged with a dict default) or the default, and
        ``MISSING`` when there is neither.  An undecodable value is set aside first
        when the namespace quarantines (the bytes are then ``None``)."""
        value: Any = MISSING
        if raw is not None:
            raw, value = yield from self._ns._load_steps(full, raw)
        default = self._defaults.encoded.get(key)
        if raw is None:
            return None, (MISSING if default is None else self._codec.decode(default))
        if default is not None and type(value) is dict:
            value = merge_defaults(self._codec.decode(default), value)
        return raw, value

    def _get_steps(self, key: str, default: Any) -> Steps[Any]:
        full = self._full(key)
        raw = yield call(self._bucket(), "get", full)
        if raw is not None and not self._defaults.encoded:
            try:  # the common case, without the merge machinery
                return self._codec.decode(raw)
            except DecodeError:
                if not self._ns._quarantine:
                    raise
        value = (yield from self._read_steps(key, full, raw))[1]
        return default if value is MISSING else value

    def _getitem_steps(self, key: str) -> Steps[Any]:
        value = yield from self._get_steps(key, MISSING)
        if value is MISSING:
            raise KeyError(key)
        return value

    def _contains_steps(self, key: object) -> Steps[bool]:
        try:
            full = self._full(key)
        except InvalidKeyError:
            return False
        if key in self._defaults.encoded:
            return True
        return bool((yield call(self._bucket(), "contains", full)))

    def _len_steps(self) -> Steps[int]:
        bucket = self._bucket()
        stored: int = yield call(bucket, "count", self._prefix)
        if not self._defaults.encoded:
            return stored
        names = list(self._defaults.encoded)
        present = yield call(bucket, "get_many", [self._prefix + key for key in names])
        return stored + sum(1 for key in names if self._prefix + key not in present)

    def _get_many_steps(self, keys: Iterable[str]) -> Steps[dict[str, Any]]:
        if isinstance(keys, (str, bytes)):
            raise TypeError("get_many takes an iterable of keys, not a single key")
        wanted = {self._full(key): key for key in keys}
        found = yield call(self._bucket(), "get_many", list(wanted))
        out = {}
        for full, key in sorted(wanted.items()):  # code point order, as every listing
            value = (yield from self._read_steps(key, full, found.get(full)))[1]
            if value is not MISSING:
                out[key] = value
        return out

    def _children_steps(self, level: str) -> Steps[dict[ScopeId, dict[str, Any]]]:
        prefix = level_prefix(self._path, level)
        depth = len(self._path) + 1
        found: dict[tuple[type, ScopeId], tuple[ScopeCore, dict[str, Any]]] = {}
        for stored, raw in (yield call(self._bucket(), "items_page", prefix, None)):
            parsed = parse_scoped_key(stored)
            if parsed is None or len(parsed[0]) != depth:
                continue  # deeper down
            path, key = parsed
            marker = (type(path[-1][1]), path[-1][1])  # 1 and "1" are different ids
            if marker not in found:
                found[marker] = (self._ns.scope_at(path), {})
            child, values = found[marker]
            value = (yield from child._read_steps(key, stored, raw))[1]
            if value is not MISSING:
                values[key] = value
        out: dict[ScopeId, dict[str, Any]] = {}
        for (_, child_id_), (child, values) in found.items():
            self._fill_defaults(values, child._defaults.encoded)
            out[child_id_] = values
        return out

    def _tree_steps(self, levels: tuple[str, ...]) -> Steps[dict[ScopeId, Any]]:
        names = self._tree_levels(levels)
        prefix = level_prefix(self._path, names[0])
        top, depth = len(self._path), len(self._path) + len(names)
        # One scope reads every leaf: _read depends on the level's defaults, not the path.
        reader: ScopeCore = self._ns.scope_at(self._path + tuple((name, 0) for name in names))
        out: dict[ScopeId, Any] = {}
        leaves: list[dict[str, Any]] = []
        last_prefix, values = "", None  # keys arrive grouped by scope: parse each once
        for stored, raw in (yield call(self._bucket(), "items_page", prefix, None)):
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
            value = (yield from reader._read_steps(key, stored, raw))[1]
            if value is not MISSING:
                values[key] = value
        defaults = dict(reader._defaults.encoded)
        if defaults:
            for values in leaves:  # in place: they are nested in ``out``
                self._fill_defaults(values, defaults)
        return out

    # -- steps: writes -------------------------------------------------------------------

    def _set_steps(self, key: str, value: Any, ttl: float | None) -> Steps[None]:
        bucket = self._bucket()
        if ttl is None:
            full = self._full(key)
            yield call(bucket, "set", full, self._ns._encode(value))
            return
        deadline = self._ns._deadline(ttl)
        full = self._full(key)
        yield call(bucket, "set_until", full, self._ns._encode(value), deadline)

    def _delete_steps(self, key: str) -> Steps[None]:
        if not (yield call(self._bucket(), "remove", self._full(key))):
            raise KeyError(key)

    def _set_many_steps(
        self, items: Mapping[str, Any] | Iterable[tuple[str, Any]], ttl: float | None
    ) -> Steps[None]:
        self._bucket()
        deadline = None if ttl is None else self._ns._deadline(ttl)
        pairs = items.items() if isinstance(items, Mapping) else items
        encoded = [(self._full(key), self._ns._encode(value)) for key, value in pairs]
        yield from self._ns._write_many_steps(encoded, deadline)

    def _clear_steps(self) -> Steps[None]:
        yield call(self._bucket(), "clear", self._prefix)

    def _clear_all_steps(self) -> Steps[int]:
        bucket = self._bucket()
        if self._path or not (yield call(bucket, "count", META_LEAD)):
            removed: int = yield call(bucket, "clear", path_prefix(self._path))
            return removed
        # The global scope's subtree prefix also starts the namespace's meta entries
        # (its data version), which are not scoped data: keep them.
        doomed = [
            key
            for key in (yield call(bucket, "keys_page", SCOPE_LEAD, None))
            if not key.startswith(META_LEAD)
        ]
        removed = 0
        for key in doomed:
            removed += bool((yield call(bucket, "remove", key)))
        return removed

    def _incr_steps(self, key: str, delta: int) -> Steps[int]:
        check_delta(delta)
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
                if (yield call(bucket, "cas", full, None, str(new).encode("ascii"))):
                    return new
        result: int = yield call(bucket, "incr", full, delta)
        return result

    def _compute_steps(self, key: str, fn: Callable[[Any], Any], default: Any) -> Steps[Any]:
        full = self._full(key)
        bucket = self._bucket()
        fallback = None if default is None else self._ns._encode(default)
        for pause in retry_pauses():
            raw = yield call(bucket, "get", full)
            raw, current = yield from self._read_steps(key, full, raw)
            if current is MISSING:
                current = None if fallback is None else self._codec.decode(fallback)
            new = fn(current)
            if (yield call(bucket, "cas", full, raw, self._ns._encode(new))):
                return new
            if pause:
                yield Sleep(pause)
        raise ConflictError(f"compute on {key!r} kept conflicting with other writers")

    def _setdefault_steps(self, key: str, default: Any) -> Steps[Any]:
        full = self._full(key)
        bucket = self._bucket()
        new = self._ns._encode(default)
        for pause in retry_pauses():
            raw = yield call(bucket, "get", full)
            current = (yield from self._read_steps(key, full, raw))[1]
            if current is not MISSING:
                return current
            if (yield call(bucket, "cas", full, None, new)):
                return self._codec.decode(new)
            if pause:
                yield Sleep(pause)
        raise ConflictError(f"setdefault of {key!r} kept conflicting with other writers")

    def _pop_steps(self, key: str, default: Any) -> Steps[Any]:
        full = self._full(key)
        bucket = self._bucket()
        for pause in retry_pauses():
            raw = yield call(bucket, "get", full)
            raw, value = yield from self._read_steps(key, full, raw)  # decoded before deleting
            if raw is None:
                if default is not MISSING:
                    return default
                if value is MISSING:
                    raise KeyError(key)
                return value
            if (yield call(bucket, "cas", full, raw, None)):
                return value
            if pause:
                yield Sleep(pause)
        raise ConflictError(f"pop of {key!r} kept conflicting with other writers")

    def _mutable_read_steps(
        self, key: str, default: Any
    ) -> Steps[tuple[str, bytes | None, bytes, Any]]:
        """The start of ``mutable``: ``(stored key, stored bytes or None, bytes to
        compare the result with, the value to hand out)``."""
        full = self._full(key)
        raw = yield call(self._bucket(), "get", full)
        raw, current = yield from self._read_steps(key, full, raw)
        if current is MISSING:
            if default is MISSING:
                raise KeyError(key)
            current = default
        start = self._ns._encode(current)
        return full, raw, start, self._codec.decode(start)

    def _mutable_write_steps(
        self, full: str, raw: bytes | None, start: bytes, value: Any
    ) -> Steps[None]:
        """The end of ``mutable``; the key is ``full`` (the stored key)."""
        new = self._ns._encode(value)
        if new == start:
            return
        if not (yield call(self._bucket(), "cas", full, raw, new)):
            raise ConflictError(
                f"{full[len(self._prefix) :]!r} was changed by another writer while "
                "mutable() held it; your change was not written (retry, or use compute())"
            )


class BatchCore:
    """The writes of a batch over several scopes of one namespace, collected (see
    :class:`~plugstore.scopes.ScopeBatch`); the shells commit them."""

    def __init__(self, namespace: Any, *, atomic: bool = True) -> None:
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

    def _scope(self, scope: ScopeCore) -> ScopeCore:
        if self._done:
            raise StoreError("this batch was already committed or discarded; start another")
        if not isinstance(scope, ScopeCore):
            raise TypeError(f"expected a scope, not {type(scope).__name__}")
        ns = scope._ns
        if ns.name != self._ns.name or ns.store is not self._ns.store:
            raise InvalidNamespaceError(
                f"a batch of namespace {self._ns.name!r} cannot write a scope of namespace "
                f"{ns.name!r} (of this or another store): use one batch per namespace"
            )
        return scope

    def _deadline(self, ttl: float | None) -> float | None:
        return None if ttl is None else self._ns._deadline(ttl)

    def set(self, scope: ScopeCore, key: str, value: Any, *, ttl: float | None = None) -> None:
        """``scope[key] = value`` (with ``ttl``: ``scope.set(key, value, ttl=ttl)``)."""
        full = self._scope(scope)._full(key)
        entry = (self._ns._encode(value), self._deadline(ttl))
        self._removes.pop(full, None)
        self._sets[full] = entry

    def delete(self, scope: ScopeCore, key: str) -> None:
        """Delete the stored value of ``key`` in ``scope``; absent is not an error."""
        full = self._scope(scope)._full(key)
        self._sets.pop(full, None)
        self._removes[full] = None

    def replace(
        self,
        scope: ScopeCore,
        values: Mapping[str, Any] | Iterable[tuple[str, Any]],
        *,
        ttl: float | None = None,
    ) -> None:
        """Make ``values`` the whole stored contents of ``scope`` (see ``Scope.replace``)."""
        self._scope(scope)
        pairs = values.items() if isinstance(values, Mapping) else values
        deadline = self._deadline(ttl)
        encoded = [(scope._full(key), self._ns._encode(value)) for key, value in pairs]
        self._clear(scope._prefix)
        for full, raw in encoded:
            self._removes.pop(full, None)
            self._sets[full] = (raw, deadline)

    def clear(self, scope: ScopeCore) -> None:
        """Delete the stored keys of ``scope`` (sub-scopes stay), like ``Scope.clear``."""
        self._clear(self._scope(scope)._prefix)

    def clear_all(self, scope: ScopeCore) -> None:
        """Delete ``scope`` and every scope beneath it, like ``Scope.clear_all``."""
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

    def _commit_steps(self) -> Steps[None]:
        """Apply the batch (once)."""
        if self._done:
            raise StoreError("this batch was already committed or discarded; start another")
        bucket = self._ns._b()
        self._done = True
        sets = [(key, raw, deadline) for key, (raw, deadline) in self._sets.items()]
        if sets or self._removes or self._clears:
            clears, removes = list(self._clears), list(self._removes)
            yield call(bucket, "write_batch", sets, removes, clears, atomic=self.atomic)

    def discard(self) -> None:
        """Drop the batch unwritten."""
        self._done = True


__all__ = [
    "BatchCore",
    "DefaultsRegistry",
    "IdCollector",
    "LevelDefaults",
    "ListingMerger",
    "ScopeCore",
    "merge_defaults",
    "normalise_levels",
    "register_defaults",
]
