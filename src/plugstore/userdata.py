"""Per-user data: find, export and forget everything a store keeps about one user.

What counts as data *about* a user, in every namespace of the store:

* **scoped entries** whose scope path has a level named ``user`` or ``member`` (or the
  ``levels`` given) with the user's id anywhere in it: ``ns.scope(user=42)``,
  ``ns.scope(guild=1, member=42)``, ``ns.scope(user=42, pet="rex")``;
* **conversation states** of a :class:`~plugstore.state.StateStore` (the chat host's
  ``chat-states``, Salmon's ``salmon-states``, any other) whose sender is the user:
  entries stored under exactly ``repr([key, user])``;
* **set-aside copies** of such entries: values moved to
  :data:`~plugstore.quarantine.QUARANTINE_NAMESPACE` because they could not be decoded
  (reported under that namespace, with the scope or state they came from).

Plain keys never count, even one spelled like the id (``ns["42"]``): a plain key says
nothing about whom it concerns.  Data a plugin keeps under plain keys or in values
(``wins:ana``, ``{"by": "ana"}``) is its own to export or forget.

**Ids.**  A user id is text, as a command line or a chat gives it.  The text ``"42"``
(canonical decimal, as ``str(int)`` writes it) matches both the int id ``42`` and the str id
``"42"``, because scopes keep them apart and a plugin may use either; any other text
(``"042"``, ``"ana"``) matches only the str id.  An ``int`` user is its decimal text.

**Cost.**  A user level may sit beneath other levels (``guild=1, member=42``), so no one
prefix holds a user's entries.  Each namespace is read with two prefix reads over the
keys only: the scoped keys (they all start with U+001F) and the keys that start with
``[`` (where StateStore keys live); plain keys are never read.  Values are fetched for
the matching keys only.  So the work grows with the number of scoped and state keys in
the whole store, not with the user's share of them: a store with millions of scoped
entries takes a full pass of their keys per call.

Nothing here decodes a value unless asked (:func:`export_user` does; :func:`forget_user`
never does, so forgetting runs no code under the pickle codec).

**Plugins' own data.**  What a plugin keeps elsewhere -- rows in its relational tables,
values that name a user under plain keys -- only the plugin can find.  It says how with
a hook, which :func:`export_user` and :func:`forget_user` run when given (``hooks=``):

* a relational plugin declares ``RelationalPlugin(..., user_data=RelationalUserData(
  export, forget))`` (see :mod:`plugstore.relational`); found through the
  ``plugstore.relational`` entry point like its tables;
* a key-value layout declares a :class:`UserData` (``export(store, user)``,
  ``forget(store, user, dry_run)``): on a chat plugin's class (``user_data = ...``), or
  registered under the :data:`ENTRY_POINT_GROUP` entry point (``plugstore.user_data``).

Both become a :class:`UserDataHook` (the plugin's name and two functions of the user).
A hook that raises is never skipped in silence: :func:`forget_user` still erases
everything else, then raises :class:`UserDataError` naming it (with the summary of what
was erased); :func:`export_user` raises it instead of returning an export with a part
missing.
"""

from __future__ import annotations

import ast
import base64
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from typing import Any

from .codecs import Codec, to_tagged_json
from .errors import DecodeError, EncodeError, InvalidKeyError, StoreError
from .scopekeys import SCOPE_LEAD, ScopeId, ScopePath, encode_path, parse_scoped_key
from .scopes import normalise_levels
from .store import Store

#: The scope levels whose id names a user.
USER_LEVELS: tuple[str, ...] = ("user", "member")
#: How every StateStore key (``repr([key, sender])``) starts.
_STATE_LEAD = "["
#: Values are fetched this many matching keys at a time.
_BATCH = 256
_CANONICAL_INT = re.compile(r"(0|-?[1-9][0-9]*)\Z")
#: The entry-point group a package registers its key-value :class:`UserData` under.
ENTRY_POINT_GROUP = "plugstore.user_data"


@dataclass(frozen=True)
class UserEntry:
    """One stored entry about a user.

    ``path`` is the entry's scope path, or ``None`` for a conversation state; ``key`` is
    the key within that scope, or the state machine's key (a StateStore's ``key``, the
    chat plugin's name, Salmon's handler module).  ``raw`` is the stored bytes, not
    decoded.
    """

    namespace: str
    stored_key: str
    path: ScopePath | None
    key: str
    raw: bytes

    @property
    def is_state(self) -> bool:
        """Whether this is a StateStore entry (else a scoped entry)."""
        return self.path is None

    @property
    def where(self) -> str:
        """``guild=1, member=42`` (a str id quoted), or ``state`` for a state."""
        if self.path is None:
            return "state"
        return ", ".join(f"{level}={value!r}" for level, value in self.path)


@dataclass(frozen=True)
class HookResult:
    """What one :class:`UserDataHook` erased (or would erase), or why it failed.

    ``counts`` are the hook's own, by kind (``{"polls": 1, "votes": 2}``), kinds with
    nothing left out; ``error`` is one line saying why the hook failed, else ``None``.
    """

    name: str
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def total(self) -> int:
        """Everything this hook counted."""
        return sum(self.counts.values())

    def describe(self) -> str:
        """``poll (polls: 1, votes: 2)``."""
        parts = ", ".join(f"{kind}: {count}" for kind, count in self.counts.items())
        return f"{self.name} ({parts})"


@dataclass
class ForgetSummary:
    """What :func:`forget_user` removed, or would remove (``dry_run``)."""

    user: str
    dry_run: bool
    #: The entries found, sorted by namespace and stored key.
    entries: list[UserEntry]
    #: Entries removed per namespace (what would be removed, on a dry run).
    counts: dict[str, int] = field(default_factory=dict)
    #: What each plugin's hook erased (or would), in the order the hooks ran.
    plugins: list[HookResult] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Entries removed (or that would be) in all namespaces, plus what the plugins'
        hooks counted."""
        return sum(self.counts.values()) + sum(result.total for result in self.plugins)

    @property
    def failures(self) -> list[HookResult]:
        """The hooks that failed (their data was not erased)."""
        return [result for result in self.plugins if result.error is not None]

    def describe(self) -> str:
        """``3 entries (2 in levels, 1 in chat-states)``, then the plugins' counts
        (``and plugin data: poll (polls: 1, votes: 2)``): for a message."""
        entries = sum(self.counts.values())
        noun = "entry" if entries == 1 else "entries"
        parts = ", ".join(f"{count} in {ns}" for ns, count in self.counts.items())
        text = f"{entries} {noun}" + (f" ({parts})" if parts else "")
        return self.with_plugin_data(text, entries)

    def with_plugin_data(self, entries_text: str, entries: int) -> str:
        """``entries_text`` (what a message says of the ``entries`` entries), then ``and
        plugin data: ...`` with the plugins' counts; only that part when ``entries`` is 0
        (and only ``entries_text`` when no plugin counted anything)."""
        plugins = [result.describe() for result in self.plugins if result.total]
        if not plugins:
            return entries_text
        listed = "plugin data: " + "; ".join(plugins)
        return f"{entries_text} and {listed}" if entries else listed


class UserDataError(StoreError):
    """One or more plugins' user-data hooks failed.

    ``failures`` say which and why.  From :func:`forget_user`, ``summary`` is what was
    erased all the same (everything but the failed plugins' data); from
    :func:`export_user` it is ``None`` (no export is returned with a part missing).
    """

    def __init__(
        self, message: str, failures: list[HookResult], summary: ForgetSummary | None = None
    ) -> None:
        super().__init__(message)
        self.failures = failures
        self.summary = summary


@dataclass(frozen=True)
class UserDataHook:
    """One plugin's export and erase of a user's data, ready to run: ``name`` and two
    functions of the user's id text.

    ``export(user)`` returns the plugin's data about ``user`` as a JSON-ready value
    (``None``, ``{}`` or ``[]`` when it keeps nothing); ``forget(user, dry_run)`` erases
    it (nothing on a dry run) and returns what it erased (or would), counted by kind:
    ``{"polls": 1, "votes": 2}``.  ``name`` keys the plugin's part of an export; hooks
    run together must have different names.  Made by :meth:`UserData.bind`, by a
    relational plugin's ``PluginDatabase.user_data_hook()`` (or
    ``RelationalHost.user_data_hooks()``), or directly.
    """

    name: str
    export: Callable[[str], Any]
    forget: Callable[[str, bool], Mapping[str, int]]


@dataclass(frozen=True)
class UserData:
    """A key-value layout's hook: how to export and erase one user's data that scopes
    and states do not hold (values naming the user, plain keys such as ``wins:ana``).

    ``export(store, user)`` returns a JSON-ready value; ``forget(store, user, dry_run)``
    deletes (nothing on a dry run) and returns counts by kind.  ``user`` is the id text
    (``"42"``, ``"ana"``).  Declare it on a chat plugin (``user_data = UserData(...)``)
    or register it under the ``plugstore.user_data`` entry point::

        [project.entry-points."plugstore.user_data"]
        quotes = "mybot.quotes:user_data"
    """

    name: str
    export: Callable[[Store, str], Any]
    forget: Callable[[Store, str, bool], Mapping[str, int]]

    def bind(self, store: Store) -> UserDataHook:
        """This hook on ``store``."""
        export, forget = self.export, self.forget
        return UserDataHook(
            self.name,
            lambda user: export(store, user),
            lambda user, dry_run: forget(store, user, dry_run),
        )


def failing_hook(name: str, reason: str) -> UserDataHook:
    """A hook that fails with ``reason`` (a plugin whose hook could not be loaded or
    cannot run): it is reported with the others, never left out."""

    def fail(*_: object) -> Any:
        raise UserDataError(reason, [])

    return UserDataHook(name, fail, fail)


def bind_user_data(declared: object, store: Store, owner: str) -> UserDataHook:
    """``declared`` (what ``owner`` -- a chat plugin, an entry point -- declares as its
    hook) bound to ``store``; a :func:`failing_hook` named ``owner`` if it is not a
    :class:`UserData`."""
    if isinstance(declared, UserData):
        return declared.bind(store)
    kind = type(declared).__name__
    return failing_hook(owner, f"its user_data is a {kind}, not a plugstore UserData")


def entry_point_hooks(store: Store) -> list[UserDataHook]:
    """The :class:`UserData` hooks registered under ``plugstore.user_data``, bound to
    ``store``; an entry point that cannot be loaded becomes a :func:`failing_hook`."""
    hooks: list[UserDataHook] = []
    for entry in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            found = entry.load()
            if not isinstance(found, UserData):
                raise TypeError(f"it is a {type(found).__name__}, not a plugstore UserData")
        except Exception as exc:
            hooks.append(failing_hook(entry.name, f"{entry.value} not loaded: {_why(exc)}"))
            continue
        hooks.append(found.bind(store))
    return hooks


def check_hook_names(hooks: Sequence[UserDataHook]) -> None:
    """``InvalidKeyError`` if a hook has no name, or two share one."""
    seen: set[str] = set()
    for hook in hooks:
        if not hook.name or not isinstance(hook.name, str):
            raise InvalidKeyError(f"a user-data hook needs a name, not {hook.name!r}")
        if hook.name in seen:
            raise InvalidKeyError(f"two user-data hooks are named {hook.name!r}")
        seen.add(hook.name)


def _why(exc: BaseException) -> str:
    if isinstance(exc, StoreError):
        return str(exc) or type(exc).__name__
    orig = getattr(exc, "orig", None)  # a database driver's own message, without the SQL
    text = str(orig if orig is not None else exc).strip()
    text = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def export_hooks(hooks: Sequence[UserDataHook], user: str | int) -> dict[str, Any]:
    """Every hook's export of ``user``, by hook name; those that keep nothing
    (``None``, ``{}``, ``[]``) are left out.

    Every hook runs; if any failed (raised, or returned what JSON cannot carry),
    :class:`UserDataError` names each one afterwards.
    """
    text = user_id_text(user)
    check_hook_names(hooks)
    exported: dict[str, Any] = {}
    failures: list[HookResult] = []
    for hook in hooks:
        try:
            value = hook.export(text)
            json.dumps(value, allow_nan=False)  # a hook's export must be JSON as it is
        except Exception as exc:
            failures.append(HookResult(hook.name, error=_why(exc)))
            continue
        if value not in (None, {}, []):
            exported[hook.name] = value
    if failures:
        raise UserDataError(
            f"cannot export user {text!r}: "
            + "; ".join(f"plugin {f.name!r} failed: {f.error}" for f in failures)
            + " (nothing was exported: fix the plugin and export again)",
            failures,
        )
    return exported


def forget_hooks(
    hooks: Sequence[UserDataHook], user: str | int, *, dry_run: bool = False
) -> list[HookResult]:
    """Run every hook's ``forget`` for ``user``; one :class:`HookResult` per hook.

    A hook that raises, or returns anything but counts (``str`` kinds, ``int`` counts
    of at least 0), is a result with an ``error``: the others still run.  Nothing is
    raised here; :func:`forget_user` raises for the failures.
    """
    text = user_id_text(user)
    check_hook_names(hooks)
    results: list[HookResult] = []
    for hook in hooks:
        try:
            counts = _counts(hook.forget(text, dry_run))
        except Exception as exc:
            results.append(HookResult(hook.name, error=_why(exc)))
            continue
        results.append(HookResult(hook.name, counts))
    return results


def _counts(counts: object) -> dict[str, int]:
    if not isinstance(counts, Mapping):
        raise TypeError(f"forget returned a {type(counts).__name__}, not counts by kind")
    checked: dict[str, int] = {}
    for kind, count in counts.items():
        if type(kind) is not str or type(count) is not int or count < 0:
            raise TypeError(f"forget returned {kind!r}: {count!r}, not a kind and a count")
        if count:
            checked[kind] = count
    return checked


def forget_failed(summary: ForgetSummary) -> UserDataError:
    """The error for a forget whose hooks failed (``summary.failures``)."""
    failed = "; ".join(f"plugin {f.name!r} failed: {f.error}" for f in summary.failures)
    verb = "would erase" if summary.dry_run else "erased"
    rest = f"{verb} {summary.describe()}" if summary.total else f"{verb} nothing else"
    what = "fix the plugin and run it again" + (
        "" if summary.dry_run else " (it erases only what is left)"
    )
    return UserDataError(
        f"cannot erase everything about user {summary.user!r}: {failed}; {rest}: {what}",
        summary.failures,
        summary,
    )


def user_id_text(user: str | int) -> str:
    """``user`` as id text; ``InvalidKeyError`` for an empty id, NUL, or another type."""
    if type(user) is int:
        return str(user)
    if type(user) is not str:
        raise InvalidKeyError(f"a user id is a str or an int, not {type(user).__name__}")
    if not user:
        raise InvalidKeyError("a user id must not be empty")
    if "\x00" in user:
        raise InvalidKeyError("a user id must not contain NUL characters")
    return user


def matching_ids(user: str | int) -> tuple[ScopeId, ...]:
    """The scope ids that name ``user``: its text, and the int it spells if canonical."""
    text = user_id_text(user)
    return (text, int(text)) if _CANONICAL_INT.match(text) else (text,)


def state_machine_of(stored_key: str, sender: str) -> str | None:
    """The StateStore ``key`` of ``stored_key`` if it is exactly ``repr([key, sender])``.

    The tail must be ``, <repr(sender)>]``; the head is then read with
    :func:`ast.literal_eval` (a literal parser: it never runs code) and must be a
    ``str`` that reprs back to it, so only StateStore's own spelling matches.
    """
    tail = f", {sender!r}]"
    if not (stored_key.startswith(_STATE_LEAD) and stored_key.endswith(tail)):
        return None
    head = stored_key[1 : -len(tail)]
    try:
        key = ast.literal_eval(head)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    return key if type(key) is str and repr(key) == head else None


class _Matcher:
    """Decides from a stored key alone whether it is about one user."""

    def __init__(self, user: str | int, levels: str | Sequence[str]) -> None:
        self.sender = user_id_text(user)
        ids = matching_ids(user)
        self.levels = frozenset(normalise_levels(levels))
        self.ids = {(type(value), value) for value in ids}  # 42 and "42" are both wanted
        # Every matching key holds one of these encoded segments; most keys hold none,
        # so they are skipped without being parsed.
        self.segments = [
            encode_path([(level, value)]) for level in sorted(self.levels) for value in ids
        ]

    def match(self, stored: str) -> tuple[ScopePath | None, str] | None:
        """``(path, key)`` of a matching scoped key, ``(None, machine)`` of a matching
        state, ``None`` otherwise."""
        if stored.startswith(SCOPE_LEAD):
            if not any(segment in stored for segment in self.segments):
                return None
            try:
                parsed = parse_scoped_key(stored)
            except ValueError:
                return None  # not a scoped key plugstore wrote: nobody's in particular
            if parsed is None:
                return None
            path, key = parsed
            if any(
                level in self.levels and (type(value), value) in self.ids for level, value in path
            ):
                return path, key
            return None
        machine = state_machine_of(stored, self.sender)
        return None if machine is None else (None, machine)


def find_user_data(
    store: Store, user: str | int, *, levels: str | Sequence[str] = USER_LEVELS
) -> Iterator[UserEntry]:
    """Yield every entry about ``user`` in every namespace of ``store`` (see the module
    docs for what matches and what it costs), namespace by namespace, each sorted by
    stored key.

    ``levels`` names the scope levels whose ids are user ids.  Raises
    ``InvalidKeyError`` for an empty id or a bad level name (at once, not when
    iterated).
    """
    return _find(store, _Matcher(user, levels))


def _find(store: Store, matcher: _Matcher) -> Iterator[UserEntry]:
    from .quarantine import QUARANTINE_NAMESPACE, entries

    for record in entries(store):  # few, and keyed by a digest: read them all
        where = matcher.match(record.key)
        if where is not None:
            path, key = where
            yield UserEntry(QUARANTINE_NAMESPACE, record.record_key, path, key, record.raw)
    for namespace in store.namespaces():
        bucket = store.backend.bucket(namespace)
        found: dict[str, tuple[ScopePath | None, str]] = {}
        for lead in (SCOPE_LEAD, _STATE_LEAD):
            for stored in bucket.keys(lead):
                where = matcher.match(stored)
                if where is not None:
                    found[stored] = where
        ordered = sorted(found)
        for start in range(0, len(ordered), _BATCH):
            batch = ordered[start : start + _BATCH]
            values = bucket.get_many(batch)
            for stored in batch:
                if stored in values:  # else deleted meanwhile: nothing left to report
                    path, key = found[stored]
                    yield UserEntry(namespace, stored, path, key, values[stored])


def value_record(codec: Codec, raw: bytes) -> dict[str, Any]:
    """A stored value for JSON output, as ``plugstore dump`` writes it.

    ``{"value": <tagged JSON>}``, or, for a value tagged JSON cannot carry (an object
    under the pickle codec) or bytes the codec cannot decode, ``{"raw": <base64 of the
    stored bytes>, "codec": <codec name>}``.
    """
    try:
        return {"value": to_tagged_json(codec.decode(raw))}
    except (EncodeError, DecodeError):
        return {"raw": base64.b64encode(raw).decode("ascii"), "codec": codec.name}


def export_user(
    store: Store,
    user: str | int,
    *,
    levels: str | Sequence[str] = USER_LEVELS,
    hooks: Sequence[UserDataHook] = (),
) -> dict[str, Any]:
    """Everything about ``user`` as one JSON-ready dict::

        {"user": "42",
         "namespaces": {"levels": [{"scope": [["guild", 1], ["member", 42]],
                                    "key": "xp", "value": 120}, ...]},
         "states": [{"namespace": "chat-states", "key": "poll", "value": "QUESTION"}],
         "plugins": {"poll": {"polls": [...], "votes": [...]}}}

    Values are decoded with the store's codec and written in its tagged JSON (see
    :func:`value_record` for those it cannot carry).  Namespaces without scoped data
    about the user are left out.  ``plugins`` holds each hook's export (see
    :func:`export_hooks`: hooks with nothing are left out); a hook that fails raises
    :class:`UserDataError` after every hook ran.
    """
    text = user_id_text(user)
    check_hook_names(hooks)
    namespaces: dict[str, list[dict[str, Any]]] = {}
    states: list[dict[str, Any]] = []
    for entry in find_user_data(store, text, levels=levels):
        stored = value_record(store.codec, entry.raw)
        if entry.path is None:
            states.append({"namespace": entry.namespace, "key": entry.key, **stored})
        else:
            scope = [[level, value] for level, value in entry.path]
            record = {"scope": scope, "key": entry.key, **stored}
            namespaces.setdefault(entry.namespace, []).append(record)
    plugins = export_hooks(hooks, text)
    return {"user": text, "namespaces": namespaces, "states": states, "plugins": plugins}


def remove_entries(store: Store, entries: Iterable[UserEntry]) -> dict[str, int]:
    """Delete ``entries`` (whatever they hold now); return how many went, per namespace.

    An entry already gone is not counted; a namespace with none removed is left out.
    """
    counts: dict[str, int] = {}
    for entry in entries:
        if store.backend.bucket(entry.namespace).remove(entry.stored_key):
            counts[entry.namespace] = counts.get(entry.namespace, 0) + 1
    return counts


def forget_user(
    store: Store,
    user: str | int,
    *,
    dry_run: bool = False,
    levels: str | Sequence[str] = USER_LEVELS,
    hooks: Sequence[UserDataHook] = (),
) -> ForgetSummary:
    """Delete every entry about ``user`` (what :func:`find_user_data` yields), then run
    every hook's ``forget`` (see :func:`forget_hooks`).

    With ``dry_run`` nothing is deleted and the counts say what would be.  Entries
    written while it runs may survive it (run it again); nothing is decoded.  If a hook
    fails, everything else is still erased, then :class:`UserDataError` is raised with
    the summary.
    """
    text = user_id_text(user)
    check_hook_names(hooks)
    entries = list(find_user_data(store, text, levels=levels))
    counts = _count(entries) if dry_run else remove_entries(store, entries)
    summary = ForgetSummary(
        text, dry_run, entries, counts, forget_hooks(hooks, text, dry_run=dry_run)
    )
    if summary.failures:
        raise forget_failed(summary)
    return summary


def _count(entries: Sequence[UserEntry]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.namespace] = counts.get(entry.namespace, 0) + 1
    return counts


__all__ = [
    "ENTRY_POINT_GROUP",
    "USER_LEVELS",
    "ForgetSummary",
    "HookResult",
    "UserData",
    "UserDataError",
    "UserDataHook",
    "UserEntry",
    "bind_user_data",
    "check_hook_names",
    "entry_point_hooks",
    "export_hooks",
    "export_user",
    "failing_hook",
    "find_user_data",
    "forget_failed",
    "forget_hooks",
    "forget_user",
    "matching_ids",
    "remove_entries",
    "state_machine_of",
    "user_id_text",
    "value_record",
]
