"""The spelling of scoped keys: injective, parseable, and prefix-exact (property tests)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugstore.keys import check_key
from plugstore.scopekeys import (
    META_LEAD,
    SCOPE_LEAD,
    VERSION_KEY,
    child_id,
    level_prefix,
    own_prefix,
    parse_scoped_key,
    path_prefix,
    scoped_key,
    subtree_prefixes,
)

# Ids and keys drawn with the delimiters and escape over-represented.
_text = st.text(
    alphabet=st.one_of(
        st.sampled_from("\x1b\x1c\x1d\x1e\x1fis:0-1"),
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    ),
    max_size=8,
)
ids = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), _text)
levels = st.sampled_from(["guild", "member", "user", "channel", "i", "s", "_"])
paths = st.lists(st.tuples(levels, ids), max_size=4, unique_by=lambda pair: pair[0]).map(tuple)
keys = _text.filter(bool)


def _is_prefix(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Whether path ``a`` is an ancestor of (or equal to) ``b``, ids compared with type."""
    typed = [(level, type(v), v) for level, v in a]
    return typed == [(level, type(v), v) for level, v in b][: len(a)]


@given(paths, keys)
def test_parse_inverts_encoding(path: tuple[Any, ...], key: str) -> None:
    stored = scoped_key(path, key)
    assert stored.startswith(SCOPE_LEAD)
    parsed_path, parsed_key = parse_scoped_key(stored)  # type: ignore[misc]
    assert parsed_key == key
    assert [(lv, type(v), v) for lv, v in parsed_path] == [(lv, type(v), v) for lv, v in path]
    check_key(stored)  # a valid key when it fits


@given(paths, keys, paths, keys)
def test_distinct_entries_never_share_a_stored_key(
    p1: tuple[Any, ...], k1: str, p2: tuple[Any, ...], k2: str
) -> None:
    same = _is_prefix(p1, p2) and len(p1) == len(p2) and k1 == k2
    assert (scoped_key(p1, k1) == scoped_key(p2, k2)) == same


@given(paths, paths, keys)
def test_prefixes_select_exactly_their_scopes(
    scope: tuple[Any, ...], other: tuple[Any, ...], key: str
) -> None:
    stored = scoped_key(other, key)
    own = _is_prefix(scope, other) and len(scope) == len(other)
    assert stored.startswith(own_prefix(scope)) == own
    assert stored.startswith(path_prefix(scope)) == _is_prefix(scope, other)


@given(paths, levels, ids, paths, keys)
def test_level_prefix_selects_direct_children(
    parent: tuple[Any, ...], level: str, child: Any, below: tuple[Any, ...], key: str
) -> None:
    if any(lv == level for lv, _ in parent):
        return  # a path names each level once
    below = tuple(pair for pair in below if pair[0] not in {lv for lv, _ in parent} | {level})
    stored = scoped_key((*parent, (level, child), *below), key)
    prefix = level_prefix(parent, level)
    assert stored.startswith(prefix)
    found = child_id(stored, len(prefix))
    assert (type(found), found) == (type(child), child)


def test_plain_keys_are_not_scoped() -> None:
    assert parse_scoped_key("plain") is None
    assert parse_scoped_key("a\x1fb") is None


@pytest.mark.parametrize(
    "broken",
    [
        SCOPE_LEAD,
        SCOPE_LEAD + "guild",
        SCOPE_LEAD + "guild\x1dx1\x1c\x1ek",
        SCOPE_LEAD + "g\x1di01\x1c\x1ek",
        SCOPE_LEAD + "g\x1ds\x1bx\x1c\x1ek",
        SCOPE_LEAD + "g\x1dsab",
        SCOPE_LEAD + "1g\x1di1\x1c\x1ek",
    ],
)
def test_malformed_scoped_keys_raise_value_error(broken: str) -> None:
    with pytest.raises(ValueError, match="malformed scoped key"):
        parse_scoped_key(broken)


_any_levels = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,31}", fullmatch=True)


@given(
    st.lists(st.tuples(_any_levels, ids), min_size=1, max_size=3, unique_by=lambda p: p[0]),
    keys,
)
def test_the_global_subtree_prefixes_cover_every_scoped_key_but_no_meta_entry(
    path: list[tuple[str, Any]], key: str
) -> None:
    """``subtree_prefixes(())`` is what a batch clears for ``clear_all()`` of the global
    scope: every scoped key of any level, and never the namespace's meta entries."""
    prefixes = tuple(subtree_prefixes(()))
    assert scoped_key(path, key).startswith(prefixes)
    assert scoped_key((), key).startswith(prefixes)
    assert not VERSION_KEY.startswith(prefixes)
    assert not (META_LEAD + key).startswith(prefixes)
    assert subtree_prefixes(path) == [path_prefix(path)]


def test_parse_path_prefix_inverts_path_prefix() -> None:
    from plugstore.scopekeys import META_LEAD, parse_path_prefix, path_prefix

    for path in ((("guild", 1),), (("guild", 1), ("member", "a\x1cb\x1bc")), (("u", -5),)):
        assert parse_path_prefix(path_prefix(path)) == path
    for text in ("", "guild", META_LEAD + "version", path_prefix((("g", 1),))[:-1], "\x1f"):
        assert parse_path_prefix(text) is None
