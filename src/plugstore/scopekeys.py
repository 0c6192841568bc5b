"""How scoped keys are spelled in a namespace: one stored key per (scope path, key).

A scope path is a sequence of ``(level, id)`` pairs, outermost first -- ``(("guild",
123), ("member", 456))`` -- and a scoped entry is stored under one ordinary key of the
namespace::

    US  level GS type id RS ... level GS type id RS  KM  key
    \\x1f       \\x1d         \\x1c                     \\x1e

* ``US`` (U+001F) starts every scoped key.  Plain writes through a
  :class:`~plugstore.namespace.Namespace` refuse keys that start with it, so plain keys
  and scoped keys never meet.
* each segment is the level name (an identifier, so it holds no control character),
  ``GS`` (U+001D), a type tag (``i`` for int, ``s`` for str), the id, and ``RS``
  (U+001C).  In a str id, ``ESC`` (U+001B) and ``RS`` are escaped by a preceding ``ESC``,
  so an id can hold any character, delimiters included, and ``123`` never meets ``"123"``.
* ``KM`` (U+001E) ends the path; the key follows verbatim (it is last, so it needs no
  escaping).
* ``US US`` starts the namespace's own *meta* entries (its data version): never a scoped
  key, since a scoped key's second character starts a level name or is ``KM``.

Every segment ends in an unescaped ``RS``, so no encoded path is a prefix of another one
except its own ancestors' -- which is what makes one scope a key *prefix* and lets a
backend list or clear it with a range read (SQL ``BETWEEN``, Redis ``ZRANGEBYLEX``,
DynamoDB ``begins_with``):

* ``path_prefix(path)``: the scope and every scope beneath it;
* ``own_prefix(path)``: the scope's own keys (sub-scope segments never start with ``KM``);
* ``level_prefix(path, level)``: the sub-scopes at ``level`` directly beneath it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from .errors import InvalidKeyError

#: Starts every scoped key; plain writes refuse keys that begin with it.
SCOPE_LEAD = "\x1f"
_LEVEL_END = "\x1d"
_ID_END = "\x1c"
_KEY_MARK = "\x1e"
_ESCAPE = "\x1b"
#: Starts the namespace's meta entries (see :data:`VERSION_KEY`).
META_LEAD = SCOPE_LEAD * 2
#: Where a versioned namespace keeps its data version (an int, JSON) among its entries,
#: so that dump, copy and drop carry it with the data.
VERSION_KEY = META_LEAD + "version"

_LEVEL_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}\Z")

ScopeId = int | str
ScopePath = tuple[tuple[str, ScopeId], ...]


def check_level(level: object) -> str:
    """Return ``level`` if it can name a scope level (an identifier of <= 32 characters)."""
    if type(level) is not str or not _LEVEL_RE.match(level):
        raise InvalidKeyError(
            f"invalid scope level {level!r}: an identifier of at most 32 characters"
        )
    return level


def _encode_id(level: str, value: object) -> str:
    if type(value) is int:
        return "i" + str(value)
    if type(value) is str:
        if "\x00" in value:
            raise InvalidKeyError(f"scope {level}=...: ids must not contain NUL characters")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidKeyError(
                    f"scope {level}=...: ids must be valid Unicode (no lone surrogates)"
                ) from None
        if _ESCAPE in value or _ID_END in value:
            value = value.replace(_ESCAPE, _ESCAPE + _ESCAPE).replace(_ID_END, _ESCAPE + _ID_END)
        return "s" + value
    raise InvalidKeyError(
        f"scope {level}={value!r}: ids must be int or str, not {type(value).__name__}"
    )


def encode_path(path: Sequence[tuple[str, object]]) -> str:
    """The encoded segments of ``path`` (without the leading ``US``)."""
    levels = [level for level, _ in path]
    if len(set(levels)) != len(levels):
        raise InvalidKeyError(f"a scope path names each level once, got {'/'.join(levels)}")
    return "".join(
        check_level(level) + _LEVEL_END + _encode_id(level, value) + _ID_END
        for level, value in path
    )


def path_prefix(path: Sequence[tuple[str, object]]) -> str:
    """The prefix of every key in the scope at ``path`` and in the scopes beneath it."""
    return SCOPE_LEAD + encode_path(path)


def own_prefix(path: Sequence[tuple[str, object]]) -> str:
    """The prefix of the keys stored directly in the scope at ``path``."""
    if all(type(level) is str and type(value) in (int, str) for level, value in path):
        return _cached_own_prefix(tuple(path))  # hashable, and 1 is never True or 1.0
    return SCOPE_LEAD + encode_path(path) + _KEY_MARK  # raises for the bad id or level


@lru_cache(maxsize=4096)
def _cached_own_prefix(path: tuple[tuple[str, ScopeId], ...]) -> str:
    # Scopes are made per message in a bot: encoding (and validating) a path once per
    # distinct path keeps ns.scope(...) cheap.  Errors propagate and are not cached.
    return SCOPE_LEAD + encode_path(path) + _KEY_MARK


def level_prefix(path: Sequence[tuple[str, object]], level: str) -> str:
    """The prefix of every key in the sub-scopes at ``level`` directly beneath ``path``."""
    return SCOPE_LEAD + encode_path(path) + check_level(level) + _LEVEL_END


def subtree_prefixes(path: Sequence[tuple[str, object]]) -> list[str]:
    """Prefixes that together cover the scope at ``path`` and every scope beneath it,
    and nothing else: :func:`path_prefix`, except for the global scope, whose
    ``path_prefix`` also starts the namespace's meta entries (``US US``).  There, the
    own keys' prefix and one prefix per character a level name can start with."""
    if path:
        return [path_prefix(path)]
    return [SCOPE_LEAD + _KEY_MARK] + [SCOPE_LEAD + c for c in _LEVEL_STARTS]


_LEVEL_STARTS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"


def scoped_key(path: Sequence[tuple[str, object]], key: str) -> str:
    """The stored key of ``key`` in the scope at ``path``."""
    return own_prefix(path) + key


def _read_id(text: str, start: int) -> tuple[ScopeId, int]:
    """Decode the id starting at ``text[start]`` (its type tag); return it and the index
    just past its ``RS``."""
    tag = text[start : start + 1]
    i = start + 1
    if tag == "i":
        end = text.index(_ID_END, i)
        digits = text[i:end]
        if not re.fullmatch(r"-?(0|[1-9][0-9]*)", digits):
            raise ValueError(f"bad int scope id {digits!r}")
        return int(digits), end + 1
    if tag != "s":
        raise ValueError(f"unknown scope id type {tag!r}")
    out: list[str] = []
    while True:
        ch = text[i]  # IndexError: unterminated
        if ch == _ID_END:
            return "".join(out), i + 1
        if ch == _ESCAPE:
            i += 1
            ch = text[i]
            if ch not in (_ESCAPE, _ID_END):
                raise ValueError("bad escape in scope id")
        out.append(ch)
        i += 1


def _read_segments(text: str, i: int, *, stop_at_key: bool) -> tuple[ScopePath, int]:
    path: list[tuple[str, ScopeId]] = []
    while i < len(text) and text[i] != _KEY_MARK:
        end = text.index(_LEVEL_END, i)
        level = check_level(text[i:end])
        value, i = _read_id(text, end + 1)
        path.append((level, value))
    if stop_at_key and (i >= len(text) or text[i] != _KEY_MARK):
        raise ValueError("no key mark")
    return tuple(path), i


def parse_scoped_key(stored: str) -> tuple[ScopePath, str] | None:
    """Split a stored key into ``(path, key)``; ``None`` for a plain key or a meta entry.

    Raises ``ValueError`` for a key that starts like a scoped key but is malformed.
    """
    if not stored.startswith(SCOPE_LEAD) or stored.startswith(META_LEAD):
        return None
    try:
        path, i = _read_segments(stored, 1, stop_at_key=True)
    except (IndexError, InvalidKeyError) as exc:
        raise ValueError(f"malformed scoped key {stored!r}") from exc
    except ValueError as exc:
        raise ValueError(f"malformed scoped key {stored!r}: {exc}") from None
    return path, stored[i + 1 :]


def parse_path_prefix(prefix: str) -> ScopePath | None:
    """The scope path whose :func:`path_prefix` is ``prefix``; ``None`` if it is not one
    (a plain prefix, a meta entry's, or one that stops inside a segment)."""
    if not prefix.startswith(SCOPE_LEAD) or prefix.startswith(META_LEAD):
        return None
    try:
        path, i = _read_segments(prefix, 1, stop_at_key=False)
    except (IndexError, ValueError, InvalidKeyError):
        return None
    return path if path and i == len(prefix) else None


def child_id(stored: str, prefix_len: int) -> ScopeId:
    """The id right after a :func:`level_prefix` of length ``prefix_len`` in ``stored``."""
    try:
        return _read_id(stored, prefix_len)[0]
    except (IndexError, ValueError) as exc:
        raise ValueError(f"malformed scoped key {stored!r}") from exc


__all__ = [
    "META_LEAD",
    "SCOPE_LEAD",
    "VERSION_KEY",
    "ScopeId",
    "ScopePath",
    "check_level",
    "child_id",
    "encode_path",
    "level_prefix",
    "own_prefix",
    "parse_path_prefix",
    "parse_scoped_key",
    "path_prefix",
    "scoped_key",
    "subtree_prefixes",
]
