"""Conformance behaviours of scoped views and registered defaults.

Mixed into :class:`plugstore.testing.StoreConformance`; the fixtures (``ns``, ``store``)
come from there.  Scopes are built on the bucket contract alone, so these tests prove
that a backend's prefix reads, counts and clears are exact for any prefix -- delimiters,
escapes and non-ASCII included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from plugstore import (
    ConflictError,
    EncodeError,
    InvalidKeyError,
    Namespace,
    NotAnIntegerError,
    Store,
    StoreNotOpenError,
    UndeclaredKeyError,
)
from plugstore.backend import Bucket
from plugstore.keys import MAX_KEY_BYTES
from plugstore.scopekeys import SCOPE_LEAD, parse_scoped_key, path_prefix

from ._threads import race_threads

#: Scope paths that a naive encoding (join with ":", str() the ids, no escaping, no
#: terminator) would mix up with one another.
TRICKY_PATHS: list[tuple[tuple[str, Any], ...]] = [
    (),
    (("guild", 1),),
    (("guild", "1"),),
    (("guild", ""),),
    (("guild", 12),),
    (("guild", -1),),
    (("guild", 0),),
    (("guild", 1), ("member", 2)),
    (("guild", 1), ("member", "2")),
    (("guild", 12), ("member", 2)),
    (("member", 2), ("guild", 1)),
    (("guild", 1), ("channel", 2)),
    (("guild", "1\x1cmember\x1di2"),),
    (("guild", "\x1b"),),
    (("guild", "\x1b\x1c"),),
    (("guild", "\x1c"),),
    (("guild", "\x1e"),),
    (("guild", "\x1f"),),
    (("guild", "ключ🔑"),),
    (("guild", "a:b"),),
    (("guild", "a"), ("b", "c")),
    (("guild", "a:b:c"),),
]
TRICKY_KEYS = ["k", "\x1ek", "\x1c", "\x1fguild", "ключ", "\x1b", "member\x1di2\x1c\x1ek"]


class _PrefixSpy:
    """A bucket stand-in that records the prefix of every listing, count and clear."""

    def __init__(self, bucket: Bucket) -> None:
        self._bucket = bucket
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._bucket, name)
        # a listing read whole (keys_page, items_page) is recorded as the listing
        kind = name.removesuffix("_page")
        if kind not in ("keys", "items", "count", "clear"):
            return attr

        def recorded(prefix: str = "", *args: Any) -> Any:
            self.calls.append((kind, prefix))
            return attr(prefix, *args)

        return recorded


class ScopeBehaviours:
    """Scoped views and registered defaults, on the backend under test."""

    def test_scopes_store_one_entry_per_key_and_never_collide(self, ns: Namespace) -> None:
        pairs = {}
        for p, path in enumerate(TRICKY_PATHS):
            scope = ns.scope_at(path)
            for k, key in enumerate(TRICKY_KEYS):
                scope[key] = [p, k]
                pairs[(path, key)] = [p, k]
        ns["k"] = "plain"
        # one stored entry per (path, key), plus the plain one; each parses back
        assert ns._bucket.count() == len(pairs) + 1
        assert list(ns) == ["k"]
        assert len(ns) == 1
        parsed = {}
        for stored in ns._bucket.keys(""):
            split = parse_scoped_key(stored)
            if split is None:
                assert stored == "k"
                continue
            parsed[split] = ns[stored]
        assert parsed == pairs
        for (path, key), value in pairs.items():
            scope = ns.scope_at(path)
            assert scope[key] == value, (path, key)
            assert len(scope) == len(TRICKY_KEYS), path
            assert list(scope) == sorted(TRICKY_KEYS), path
        assert ns["k"] == "plain"

    def test_scope_mapping_protocol(self, ns: Namespace) -> None:
        member = ns.scope(guild=1, member=2)
        assert member is not ns.scope(guild=1, member=2)
        assert member.path == (("guild", 1), ("member", 2))
        assert ns.scope(guild=1).scope(member=2).path == member.path
        with pytest.raises(KeyError):
            member["absent"]
        with pytest.raises(KeyError):
            del member["absent"]
        assert member.get("absent", 5) == 5
        assert "absent" not in member
        member["a"] = {"x": [1, 2]}
        member["b"] = None
        member.update({"c": 3}, d=4)
        assert dict(member) == {"a": {"x": [1, 2]}, "b": None, "c": 3, "d": 4}
        assert dict(member.items()) == dict(member)
        assert list(member.values()) == [{"x": [1, 2]}, None, 3, 4]
        assert member.get_many(["a", "c", "zz"]) == {"a": {"x": [1, 2]}, "c": 3}
        member.set_many([("e", 5)])
        got = member["a"]
        got["x"].append(3)  # copy semantics, as in a namespace
        assert member["a"] == {"x": [1, 2]}
        assert member.pop("e") == 5
        assert member.pop("e", "gone") == "gone"
        assert member.setdefault("f", 6) == 6
        assert member.setdefault("f", 7) == 6
        assert member.incr("n") == 1
        assert member.decr("n", 3) == -2
        assert member.compute("n", lambda v: v * 10) == -20
        with member.mutable("a") as value:
            value["y"] = 1
        assert member["a"] == {"x": [1, 2], "y": 1}
        del member["a"]
        assert "a" not in member
        assert ns.scope(guild=1, member="2").get("c") is None  # "2" is not 2

    def test_scope_clear_levels_and_ids(self, ns: Namespace) -> None:
        g1, g12 = ns.scope(guild=1), ns.scope(guild=12)
        g1["name"] = "one"
        g12["name"] = "twelve"
        for member in (2, "2", 3, "x\x1cy"):
            g1.scope(member=member)["xp"] = 1
            g1.scope(member=member).scope(role="r")["since"] = 0
        g1.scope(channel=9)["topic"] = "t"
        g12.scope(member=2)["xp"] = 12
        ns.scope()["motd"] = "hi"
        # in the order of their stored keys: int ids, then str ids (see test_scope_order)
        assert list(g1.ids("member")) == [2, 3, "2", "x\x1cy"]
        assert list(g1.ids("channel")) == [9]
        assert list(g12.ids("member")) == [2]
        assert list(ns.scope().ids("guild")) == [1, 12]
        assert list(g1.scope(member=2).ids("guild")) == []
        # clear(): own keys only
        g1.clear()
        assert "name" not in g1
        assert g1.scope(member=2)["xp"] == 1
        assert g12["name"] == "twelve"
        # clear_all(): the scope and everything beneath it, never guild 12
        assert g1.clear_all() == 4 * 2 + 1
        assert list(g1.ids("member")) == []
        assert g12["name"] == "twelve"
        assert g12.scope(member=2)["xp"] == 12
        assert ns.scope()["motd"] == "hi"
        assert ns.scope().clear_all() == 3
        assert ns._bucket.count() == 0

    def test_scope_children_lists_each_child_with_its_defaults(self, ns: Namespace) -> None:
        ns.register_defaults({"xp": 0, "rank": "new"}, levels=("channel", "user"))
        dev = ns.scope(channel="dev")
        dev.scope(user=1)["xp"] = 5
        dev.scope(user="1")["xp"] = 6  # another user than 1
        dev.scope(user=2)["rank"] = "mod"
        dev.scope(user=2, pet="rex")["age"] = 3  # deeper down: not part of user 2's data
        dev.scope(user=3, pet="x")["age"] = 1  # user 3 holds nothing of its own
        ns.scope(channel="dev2", user=9)["xp"] = 1  # a channel whose name extends "dev"
        dev["topic"] = "storage"  # the channel's own key
        assert dev.children("user") == {
            1: {"xp": 5, "rank": "new"},
            "1": {"xp": 6, "rank": "new"},
            2: {"xp": 0, "rank": "mod"},
        }
        children = dev.children("user")
        assert list(children) == [1, 2, "1"]  # stored-key order, as ids()
        assert [list(values) for values in children.values()] == [["rank", "xp"]] * 3
        assert dev.children("guild") == {}
        assert ns.scope().children("channel") == {"dev": {"topic": "storage"}}

    def test_scope_order(self, ns: Namespace) -> None:
        """A scope lists its keys in code point order, registered defaults merged in
        place; ids and children come in the order of their stored keys, the same on
        every backend: int ids first, as decimal text (12 before 2), then str ids in
        code point order."""
        ns.register_defaults({"m": 0, "\u00e9": 0, "\U0001f600": 0}, levels="guild")
        g = ns.scope(guild=1)
        written = ["z", "\ufffd", "B", "a", "\U0001f4a9x", "m", "10", "9", "\u00e9t\u00e9", "_"]
        for key in written:
            g[key] = key
        order = sorted({*written, "m", "\u00e9", "\U0001f600"})
        assert order[:4] == ["10", "9", "B", "_"]
        assert list(g) == order
        assert [key for key, _ in g.items()] == order
        assert list(g.get_many(reversed(order))) == order
        ids: list[int | str] = [12, 2, -1, "b", "B", "\u00e9", "\U0001f600", "\ufffd", "12", 100]
        for id_ in ids:
            ns.scope(guild=id_)["k"] = 1
        ids_order = [-1, 1, 100, 12, 2, "12", "B", "b", "\u00e9", "\ufffd", "\U0001f600"]
        assert list(ns.scope().ids("guild")) == ids_order
        assert list(ns.scope().children("guild")) == ids_order
        assert list(ns.scope().children("guild")[1]) == order

    def test_scope_listings_are_prefix_reads(self, ns: Namespace) -> None:
        """Every listing, count and clear of a scope reaches the backend as a prefix of
        that scope (a range read on engines that have one), never as a whole scan."""
        scope = ns.scope(guild=5, member=6)
        scope.update(a=1, b=2)
        ns.scope(guild=5, member=7)["a"] = 3
        spy = _PrefixSpy(ns._bucket)
        ns._bucket = spy  # type: ignore[assignment]
        try:
            assert list(scope) == ["a", "b"]
            assert len(scope) == 2
            assert dict(scope.items()) == {"a": 1, "b": 2}
            assert list(ns.scope(guild=5).ids("member")) == [6, 7]
            scope.clear()
            ns.scope(guild=5).clear_all()
        finally:
            ns._bucket = spy._bucket
        assert {name for name, _ in spy.calls} == {"keys", "items", "count", "clear"}
        for name, prefix in spy.calls:
            assert prefix.startswith(path_prefix([("guild", 5)])), (name, prefix)
        assert ns._bucket.count() == 0

    def test_scope_bad_input(self, ns: Namespace) -> None:
        for bad_id in (1.5, None, True, b"1", (1,), "a\x00b", "\ud800"):
            with pytest.raises(InvalidKeyError):
                ns.scope(guild=bad_id)  # type: ignore[arg-type]
        for bad_level in ("", "1x", "a-b", "a b", "é", "x" * 33):
            with pytest.raises(InvalidKeyError):
                ns.scope_at([(bad_level, 1)])
        with pytest.raises(InvalidKeyError):
            ns.scope(guild=1).scope(guild=2)
        with pytest.raises(InvalidKeyError):
            ns.scope(guild="x" * MAX_KEY_BYTES)
        scope = ns.scope(guild="g" * 100)
        room = MAX_KEY_BYTES - len(scope._prefix.encode())
        scope["k" * room] = 1
        assert scope["k" * room] == 1
        bad_keys: list[Any] = ["k" * (room + 1), "é" * room, "", "a\x00", "\ud800", 1, None]
        for bad_key in bad_keys:
            with pytest.raises(InvalidKeyError):
                scope[bad_key] = 1
            with pytest.raises(InvalidKeyError):
                scope.incr(bad_key)
            assert bad_key not in scope
        with pytest.raises(EncodeError):
            scope["x"] = object()
        assert ns._bucket.count() == 1

    def test_plain_writes_refuse_the_scope_lead(self, ns: Namespace) -> None:
        ns.scope(guild=1)["k"] = "scoped"
        (stored,) = list(ns._bucket.keys())
        assert list(ns) == []
        assert len(ns) == 0
        assert stored.startswith(SCOPE_LEAD)
        assert ns[stored] == "scoped"  # the raw view reads it
        writes: list[Callable[[], object]] = [
            lambda: ns.__setitem__(stored, "forged"),
            lambda: ns.__setitem__("\x1f", 1),
            lambda: ns.incr(stored),
            lambda: ns.set_many({stored: 1}),
            lambda: ns.update({stored: 1}),
            lambda: ns.compute(stored, lambda v: v),
            lambda: ns.setdefault(stored, 1),
            lambda: ns.replace_if(stored, None, 1),
        ]
        for write in writes:
            with pytest.raises(InvalidKeyError):
                write()
        with pytest.raises(InvalidKeyError), ns.mutable(stored):
            pass
        assert ns.scope(guild=1)["k"] == "scoped"
        ns["a\x1fb"] = "not leading: fine"
        assert ns["a\x1fb"] == "not leading: fine"

    def test_closed_scopes_raise(self, store: Store, ns: Namespace) -> None:
        scope = ns.scope(guild=1)
        scope["k"] = 1
        store.close()
        with pytest.raises(StoreNotOpenError):
            scope["k"]
        with pytest.raises(StoreNotOpenError):
            ns.scope(guild=1)
        with pytest.raises(StoreNotOpenError):
            len(scope)

    # -- registered defaults ----------------------------------------------------------

    def test_registered_defaults_are_merged_and_never_written(self, ns: Namespace) -> None:
        ns.register_defaults(
            {"xp": 10, "roles": [], "prefs": {"color": "red", "notify": {"dm": True, "at": 9}}},
            levels=("guild", "member"),
        )
        ns.register_defaults({"prefix": "!"}, levels="guild")
        member = ns.scope(guild=1, member=2)
        assert member["xp"] == 10
        assert member.get("roles") == []
        assert "xp" in member
        assert "prefix" not in member
        assert list(member) == ["prefs", "roles", "xp"]
        assert len(member) == 3
        assert member.get_many(["xp", "nope"]) == {"xp": 10}
        assert dict(member.items())["prefs"]["notify"] == {"dm": True, "at": 9}
        assert ns.scope(guild=1)["prefix"] == "!"
        assert "xp" not in ns.scope(guild=1)  # defaults are per level
        assert "xp" not in ns.scope(member=2)
        roles = member["roles"]
        roles.append("admin")  # a fresh copy per read
        assert member["roles"] == []
        assert member.setdefault("roles", ["x"]) == []  # a default counts as present
        assert ns._bucket.count() == 0, "reading defaults must never write"
        # a stored dict is merged over its default, recursively; the stored part wins
        member["prefs"] = {"notify": {"at": 22}, "lang": "fi"}
        assert member["prefs"] == {"color": "red", "notify": {"dm": True, "at": 22}, "lang": "fi"}
        assert ns[next(ns._bucket.keys())] == {"notify": {"at": 22}, "lang": "fi"}  # as written
        # a default added later shows up inside values stored before it
        ns.register_defaults({"prefs": {"theme": "dark"}}, levels=("guild", "member"))
        assert member["prefs"]["theme"] == "dark"
        # non-dict stored values replace their default
        member["roles"] = "all"
        assert member["roles"] == "all"
        # delete the stored value: the default shows through again; a default-only key
        # cannot be deleted (ChainMap semantics)
        del member["roles"]
        assert member["roles"] == []
        with pytest.raises(KeyError):
            del member["roles"]
        assert member.pop("xp") == 10
        assert member.pop("xp", "given") == "given"
        # counters start from their default, once
        assert member.incr("xp", 5) == 15
        assert member.incr("xp") == 16
        assert ns.scope(guild=1, member=3).compute("xp", lambda v: v * 2) == 20
        with ns.scope(guild=1, member=4).mutable("roles") as roles:
            pass  # unchanged: nothing written
        assert not ns.scope(guild=1, member=4).is_stored("roles")
        with ns.scope(guild=1, member=4).mutable("roles") as roles:
            roles.append("mod")
        assert ns.scope(guild=1, member=4)["roles"] == ["mod"]
        # registrations are shared by every namespace object of the store
        again = ns.store.namespace(ns.name)
        assert again.scope(guild=9, member=9)["xp"] == 10

    def test_default_counters_must_be_integers(self, ns: Namespace) -> None:
        ns.register_defaults({"name": "x", "zero": 0}, levels="user")
        user = ns.scope(user=1)
        with pytest.raises(NotAnIntegerError):
            user.incr("name")
        assert user.incr("zero", 3) == 3
        assert ns._bucket.count() == 1

    def test_strict_levels_refuse_undeclared_keys(self, ns: Namespace) -> None:
        ns.register_defaults({"xp": 0}, levels="user", strict=True)
        user = ns.scope(user=1)
        assert user["xp"] == 0
        user["xp"] = 3
        for action in (
            lambda: user["xq"],
            lambda: user.get("xq"),
            lambda: user.__setitem__("xq", 1),
            lambda: user.incr("xq"),
            lambda: user.set_many({"xp": 1, "xq": 2}),
        ):
            with pytest.raises(UndeclaredKeyError):
                action()
        assert "xq" not in user
        assert user["xp"] == 3  # the refused set_many wrote nothing
        ns.scope(guild=1)["anything"] = 1  # other levels are not strict

    def test_bad_registrations_register_nothing(self, ns: Namespace) -> None:
        with pytest.raises(EncodeError):
            ns.register_defaults({"ok": 1, "bad": object()}, levels="user")
        with pytest.raises(InvalidKeyError):
            ns.register_defaults({"": 1}, levels="user")
        with pytest.raises(InvalidKeyError):
            ns.register_defaults({"ok": 1}, levels="not a level")
        assert "ok" not in ns.scope(user=1)

    def test_scoped_compute_never_loses_an_update(self, ns: Namespace) -> None:
        ns.register_defaults({"hits": 100}, levels="user")
        user = ns.scope(user="u")

        def step() -> None:
            user.compute("hits", lambda v: v + 1)
            user.incr("n")

        race_threads(4, 25, step)
        assert user["hits"] == 200
        assert user["n"] == 100
        user["log"] = []
        log_cm = user.mutable("log")
        log = log_cm.__enter__()
        log.append("mine")
        user["log"] = ["theirs"]  # another writer, meanwhile
        with pytest.raises(ConflictError):
            log_cm.__exit__(None, None, None)
        assert user["log"] == ["theirs"]
