"""The namespace rule's percent-escapes and the mapping of any name to a namespace."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugstore.errors import InvalidNamespaceError
from plugstore.keys import (
    MAX_NAMESPACE_LENGTH,
    check_namespace,
    escape_namespace,
    unescape_namespace,
)

#: The rule before escapes were accepted: every such name must keep its namespace.
OLD_RULE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}\Z")
ERRBOT_OWN = ["core", "repomgr", "text_backend", "ACLs", "Help", "Plugins", "Webserver"]


@pytest.mark.parametrize("name", [*ERRBOT_OWN, "Plugin_1.v2-x", "9lives", "a.", "A" * 128])
def test_valid_namespaces_map_to_themselves(name: str) -> None:
    assert escape_namespace(name) == name
    assert unescape_namespace(name) == name


@given(st.from_regex(OLD_RULE, fullmatch=True))
def test_every_name_valid_under_the_old_rule_keeps_its_namespace(name: str) -> None:
    assert escape_namespace(name) == name


def test_names_that_differ_get_different_namespaces() -> None:
    names = ["a b", "a_b", "A b", "a%20b", "a-b", "a.b", "a%2Db"]
    spaces = [escape_namespace(n) for n in names]
    assert spaces == ["a%20b", "a_b", "A%20b", "a%2520b", "a-b", "a.b", "a%252Db"]
    assert [unescape_namespace(s) for s in spaces] == names


@pytest.mark.parametrize(
    ("name", "namespace"),
    [
        ("Test hooks for webhooks testing", "Test%20hooks%20for%20webhooks%20testing"),
        (".hidden", "%2Ehidden"),
        ("-dash", "%2Ddash"),
        ("..", "%2E."),
        ("a/b", "a%2Fb"),
        ("%", "%25"),
        ("名前", "%E5%90%8D%E5%89%8D"),
        ("🔑", "%F0%9F%94%91"),
        ("a\x00b", "a%00b"),
        ("50% off!", "50%25%20off%21"),
    ],
)
def test_escaped_forms(name: str, namespace: str) -> None:
    assert escape_namespace(name) == namespace
    assert check_namespace(namespace) == namespace
    assert unescape_namespace(namespace) == name


@given(st.text(min_size=1, max_size=40))
def test_escaping_is_reversible_and_always_a_valid_namespace(name: str) -> None:
    data = name.encode("utf-8", "surrogatepass")
    size = sum(1 if re.match(rb"[A-Za-z0-9_.-]", bytes([b])) else 3 for b in data)
    size += 2 if name[0] in ".-" else 0
    if any(0xD800 <= ord(c) <= 0xDFFF for c in name) or size > MAX_NAMESPACE_LENGTH:
        with pytest.raises(InvalidNamespaceError, match=r"over the limit|surrogates"):
            escape_namespace(name)
        return
    escaped = escape_namespace(name)
    assert check_namespace(escaped) == escaped
    assert unescape_namespace(escaped) == name


def test_a_name_too_long_once_escaped_is_refused_never_truncated() -> None:
    fits = "x" * 124 + "é"  # 124 + 6 = 130 > 128
    with pytest.raises(InvalidNamespaceError, match="130 characters, over the limit of 128"):
        escape_namespace(fits)
    assert escape_namespace(" " * 42) == "%20" * 42  # 126: fits
    with pytest.raises(InvalidNamespaceError, match="129 characters"):
        escape_namespace(" " * 43)
    with pytest.raises(InvalidNamespaceError, match=str(MAX_NAMESPACE_LENGTH)):
        escape_namespace("y" * 129)  # already a namespace but for its length


@pytest.mark.parametrize("bad", ["", "\ud800", None, 7])
def test_names_that_have_no_namespace(bad: object) -> None:
    with pytest.raises(InvalidNamespaceError):
        escape_namespace(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "namespace",
    [
        "%41",  # 'A' needs no escape: not the spelling escape_namespace makes
        "a%2Eb",  # nor does an inner '.'
        "%FF",  # not UTF-8
        "%C3",  # a truncated UTF-8 sequence
        "a b",  # not a namespace at all
        "a%2f",  # lowercase hex is not a well-formed escape
    ],
)
def test_unescape_refuses_what_escape_never_makes(namespace: str) -> None:
    with pytest.raises(InvalidNamespaceError):
        unescape_namespace(namespace)


@pytest.mark.parametrize("bad", ["%", "a%", "a%2", "a%2f", "%g0", "a%%20", ".%20", "-%20"])
def test_the_rule_accepts_only_well_formed_escapes(bad: str) -> None:
    with pytest.raises(InvalidNamespaceError, match="percent-escapes"):
        check_namespace(bad)
