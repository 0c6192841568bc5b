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
"""

from __future__ import annotations

import ast
import base64
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .codecs import Codec, to_tagged_json
from .errors import DecodeError, EncodeError, InvalidKeyError
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


@dataclass
class ForgetSummary:
    """What :func:`forget_user` removed, or would remove (``dry_run``)."""

    user: str
    dry_run: bool
    #: The entries found, sorted by namespace and stored key.
    entries: list[UserEntry]
    #: Entries removed per namespace (what would be removed, on a dry run).
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Entries removed (or that would be) in all namespaces."""
        return sum(self.counts.values())

    def describe(self) -> str:
        """``3 entries (2 in levels, 1 in chat-states)``: the counts, for a message."""
        noun = "entry" if self.total == 1 else "entries"
        parts = ", ".join(f"{count} in {ns}" for ns, count in self.counts.items())
        return f"{self.total} {noun}" + (f" ({parts})" if parts else "")


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
    store: Store, user: str | int, *, levels: str | Sequence[str] = USER_LEVELS
) -> dict[str, Any]:
    """Everything about ``user`` as one JSON-ready dict::

        {"user": "42",
         "namespaces": {"levels": [{"scope": [["guild", 1], ["member", 42]],
                                    "key": "xp", "value": 120}, ...]},
         "states": [{"namespace": "chat-states", "key": "poll", "value": "QUESTION"}]}

    Values are decoded with the store's codec and written in its tagged JSON (see
    :func:`value_record` for those it cannot carry).  Namespaces without scoped data
    about the user are left out.
    """
    text = user_id_text(user)
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
    return {"user": text, "namespaces": namespaces, "states": states}


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
) -> ForgetSummary:
    """Delete every entry about ``user`` (what :func:`find_user_data` yields).

    With ``dry_run`` nothing is deleted and the counts say what would be.  Entries
    written while it runs may survive it (run it again); nothing is decoded.
    """
    text = user_id_text(user)
    entries = list(find_user_data(store, text, levels=levels))
    if dry_run:
        return ForgetSummary(text, True, entries, _count(entries))
    return ForgetSummary(text, False, entries, remove_entries(store, entries))


def _count(entries: Sequence[UserEntry]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.namespace] = counts.get(entry.namespace, 0) + 1
    return counts


__all__ = [
    "USER_LEVELS",
    "ForgetSummary",
    "UserEntry",
    "export_user",
    "find_user_data",
    "forget_user",
    "matching_ids",
    "remove_entries",
    "state_machine_of",
    "user_id_text",
    "value_record",
]
