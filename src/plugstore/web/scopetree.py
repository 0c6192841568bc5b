"""The scope tree of a namespace one level at a time, read by seeks, never by a scan.

A scope's sub-scopes are found by asking the store for the first key after the last
sub-scope seen (``Bucket.keys_after``): one seek finds the next sub-scope, one range
count sizes it, and the next seek starts past its whole subtree.  So a level of N
sub-scopes costs 2N short queries however many keys lie beneath them, and a page
asks for at most :data:`MAX_CHILDREN` of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..backend import Bucket
from ..scopekeys import META_LEAD, ScopeId, ScopePath, parse_scoped_key, path_prefix

#: Sub-scopes one page lists (each costs a seek and a count).
MAX_CHILDREN = 50
#: Sorts after every character, so ``prefix + _LAST`` is past every key under ``prefix``
#: that continues with a character of a scope segment or the key mark.
_LAST = "\U0010ffff"
_KEY_MARK = "\x1e"


@dataclass(frozen=True)
class Child:
    """A sub-scope: its id at its level, the prefix of its subtree, and its key count."""

    id: ScopeId
    prefix: str
    keys: int

    @property
    def label(self) -> str:
        """The id as the page shows it: ``42`` for an int, ``'42'`` for a str."""
        return repr(self.id)


@dataclass
class Level:
    """The sub-scopes found at one level beneath a scope."""

    name: str
    children: list[Child] = field(default_factory=list)


@dataclass
class Subscopes:
    """The sub-scopes directly beneath one scope, grouped by level; ``more`` when the
    listing stopped at :data:`MAX_CHILDREN`."""

    levels: list[Level]
    more: bool

    @property
    def count(self) -> int:
        return sum(len(level.children) for level in self.levels)


def subscopes(bucket: Bucket, path: ScopePath, limit: int = MAX_CHILDREN) -> Subscopes:
    """The scopes directly beneath the scope at ``path`` (``()``: the namespace's top
    scopes), each with the number of keys in its subtree, in key order."""
    base = path_prefix(path)
    levels: dict[str, Level] = {}
    found = 0
    after = base
    while True:
        page = bucket.keys_after(base, after, 1)
        if not page:
            return Subscopes(list(levels.values()), more=False)
        stored = page[0]
        rest = stored[len(base) :]
        if rest[:1] == _KEY_MARK or (not path and stored.startswith(META_LEAD)):
            # The scope's own keys (``KM``) or, at the top, the meta entries (``US US``):
            # skip them all at once; a key that still sorts after the skip mark (one
            # holding U+10FFFF) is stepped over on its own.
            skip = stored[: len(base) + 1] + _LAST
            after = max(skip, stored)
            continue
        child = _child_of(stored, path)
        if child is None:  # malformed: stepped over
            after = stored
            continue
        if found == limit:
            return Subscopes(list(levels.values()), more=True)
        level, value, prefix = child
        levels.setdefault(level, Level(level)).children.append(
            Child(value, prefix, bucket.count(prefix))
        )
        found += 1
        after = prefix + _LAST  # past this sub-scope's whole subtree


def _child_of(stored: str, path: ScopePath) -> tuple[str, ScopeId, str] | None:
    """The (level, id, subtree prefix) of the sub-scope of ``path`` that holds
    ``stored``, or ``None`` for a malformed key."""
    try:
        parsed = parse_scoped_key(stored)
    except ValueError:
        return None
    if parsed is None or len(parsed[0]) <= len(path):
        return None
    level, value = parsed[0][len(path)]
    return level, value, path_prefix((*path, (level, value)))


__all__ = ["MAX_CHILDREN", "Child", "Level", "Subscopes", "subscopes"]
