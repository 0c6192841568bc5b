"""Conformance behaviours of per-user data: find, export and forget (``plugstore.userdata``).

Mixed into :class:`plugstore.testing.StoreConformance`; the fixtures (``ns``, ``store``)
come from there.  Finding a user's entries is two prefix reads per namespace (scoped keys,
state keys) and a batched read of the matches, so these tests prove that a backend lists
those prefixes exactly -- control characters, escapes and non-ASCII ids included -- and
that forgetting removes exactly the entries found and nothing else.  A key-value
user-data hook (:class:`~plugstore.userdata.UserData`) runs against the backend too: its
export joins the document, its forget joins the summary, a dry run changes nothing, a
second forget finds nothing, and a hook that raises is reported after everything else
was erased.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from plugstore import InvalidKeyError, Namespace, StateStore, Store
from plugstore.quarantine import QUARANTINE_NAMESPACE, entries
from plugstore.scopekeys import ScopePath, scoped_key
from plugstore.userdata import (
    UserData,
    UserDataError,
    export_user,
    find_user_data,
    forget_user,
)

#: The second namespace the kit cleans up after each test (StoreConformance's OTHER_NS).
_OTHER_NS = "conformance-other"

#: User ids that a naive matcher (substring, unescaped split, str() of ids) mixes up.
TRICKY_USERS = [
    "a\x1cb",
    "\x1b",
    "\x1b\x1c",
    "\x1e\x1f",
    "\x1duser\x1di42\x1c",
    "ключ🔑",
    "'\"",
    "', '",
    "]",
    " ",
    "-1",
]


def _snapshot(store: Store, *names: str) -> dict[tuple[str, str], bytes]:
    """Every stored entry of the namespaces ``names``, as bytes."""
    return {(name, key): raw for name in names for key, raw in store.backend.bucket(name).items()}


def _scoped(namespace: str, path: ScopePath, key: str) -> tuple[str, str]:
    return namespace, scoped_key(path, key)


def _wins_export(store: Store, user: str) -> Any:
    """A custom layout: plain keys ``wins:<user>`` and values ``{"by": <user>}``."""
    ns = store.namespace(_OTHER_NS)
    mine = {key: ns[key] for key in ns.scan_keys("wins:") if key == f"wins:{user}"}
    mine.update({key: value for key, value in ns.scan("quote:") if value.get("by") == user})
    return mine


def _wins_forget(store: Store, user: str, dry_run: bool) -> dict[str, int]:
    ns = store.namespace(_OTHER_NS)
    wins = [key for key in ns.scan_keys("wins:") if key == f"wins:{user}"]
    quotes = [key for key, value in ns.scan("quote:") if value.get("by") == user]
    if not dry_run:
        for key in wins + quotes:
            ns.pop(key, None)
    return {"wins": len(wins), "quotes": len(quotes)}


#: A user-data hook for the layout above.
WINS = UserData("wins", _wins_export, _wins_forget)


def _broken(*_: object) -> Any:
    raise RuntimeError("the hook's own bug")


class UserDataHookBehaviours:
    """A plugin's user-data hook runs against every backend with the scan (mixed into
    :class:`UserDataBehaviours`)."""

    def test_user_data_hook_exports_and_forgets_its_layout(
        self, store: Store, ns: Namespace
    ) -> None:
        other = store.namespace(_OTHER_NS)
        other["wins:ana"] = 3
        other["wins:anab"] = 1
        other["quote:1"] = {"by": "ana", "text": "hi"}
        other["quote:2"] = {"by": "bob", "text": "yo"}
        ns.scope(user="ana")["xp"] = 1
        hooks = [WINS.bind(store)]
        before = _snapshot(store, ns.name, other.name)

        exported = export_user(store, "ana", hooks=hooks)
        assert exported["plugins"] == {
            "wins": {"wins:ana": 3, "quote:1": {"by": "ana", "text": "hi"}}
        }
        assert exported["namespaces"] == {
            ns.name: [{"scope": [["user", "ana"]], "key": "xp", "value": 1}]
        }
        assert export_user(store, "nobody", hooks=hooks)["plugins"] == {}

        dry = forget_user(store, "ana", dry_run=True, hooks=hooks)
        assert [(r.name, r.counts, r.error) for r in dry.plugins] == [
            ("wins", {"wins": 1, "quotes": 1}, None)
        ]
        assert dry.total == 3
        assert _snapshot(store, ns.name, other.name) == before

        done = forget_user(store, "ana", hooks=hooks)
        assert done.counts == {ns.name: 1}
        assert [(r.name, r.counts) for r in done.plugins] == [("wins", {"wins": 1, "quotes": 1})]
        assert (
            done.describe()
            == f"1 entry (1 in {ns.name}) and plugin data: wins (wins: 1, quotes: 1)"
        )
        assert dict(other.items()) == {"wins:anab": 1, "quote:2": {"by": "bob", "text": "yo"}}
        again = forget_user(store, "ana", hooks=hooks)  # idempotent: nothing is left
        assert (again.total, again.failures) == (0, [])
        assert [r.counts for r in again.plugins] == [{}]
        assert export_user(store, "ana", hooks=hooks)["plugins"] == {}

    def test_user_data_hook_that_fails_is_reported_not_skipped(
        self, store: Store, ns: Namespace
    ) -> None:
        other = store.namespace(_OTHER_NS)
        other["wins:ana"] = 3
        ns.scope(user="ana")["xp"] = 1
        broken = UserData("broken", _broken, _broken)
        hooks = [broken.bind(store), WINS.bind(store)]

        with pytest.raises(UserDataError) as exported:
            export_user(store, "ana", hooks=hooks)
        assert "plugin 'broken' failed: RuntimeError: the hook's own bug" in str(exported.value)
        assert exported.value.summary is None
        assert [f.name for f in exported.value.failures] == ["broken"]

        with pytest.raises(UserDataError) as dry:
            forget_user(store, "ana", dry_run=True, hooks=hooks)
        assert dry.value.summary is not None
        assert dry.value.summary.dry_run
        assert other["wins:ana"] == 3  # a dry run erases nothing, failing or not

        with pytest.raises(UserDataError) as failed:
            forget_user(store, "ana", hooks=hooks)
        message = str(failed.value)
        assert message.startswith("cannot erase everything about user 'ana': plugin 'broken'")
        assert "run it again" in message
        summary = failed.value.summary
        assert summary is not None
        # everything else was erased all the same: the scan's entry and the other hook's
        assert summary.counts == {ns.name: 1}
        assert [(r.name, r.error is None, r.counts) for r in summary.plugins] == [
            ("broken", False, {}),
            ("wins", True, {"wins": 1}),
        ]
        assert "wins:ana" not in other
        assert _snapshot(store, ns.name) == {}

    def test_user_data_hooks_are_checked(self, store: Store) -> None:
        def not_json(store: Store, user: str) -> Any:
            return {"when": object()}

        def bad_counts(store: Store, user: str, dry_run: bool) -> Any:
            return {"rows": -1}

        odd = UserData("odd", not_json, bad_counts).bind(store)
        with pytest.raises(UserDataError, match="plugin 'odd' failed: TypeError"):
            export_user(store, "ana", hooks=[odd])
        with pytest.raises(UserDataError, match="not a kind and a count"):
            forget_user(store, "ana", hooks=[odd])
        with pytest.raises(InvalidKeyError, match="two user-data hooks are named 'wins'"):
            forget_user(store, "ana", hooks=[WINS.bind(store), WINS.bind(store)])


class UserDataBehaviours(UserDataHookBehaviours):
    """Everything about one user is found, exported and forgotten; nothing else is."""

    def test_user_data_found_exported_and_forgotten_exactly(
        self, store: Store, ns: Namespace
    ) -> None:
        other = store.namespace(_OTHER_NS)
        states = StateStore(other)
        # about user 42 (the id text "42" names the int id and the str id)
        ns.scope(user=42)["xp"] = 120
        ns.scope(user=42, pet="rex")["age"] = 3  # beneath the user
        ns.scope(guild=1, member=42)["roles"] = ["mod"]
        ns.scope(guild=1, member="42")["nick"] = "str id"
        other.scope(member=42)["avatar"] = b"\x00\xff"
        states.set("poll", "42", "QUESTION")
        # about others, or about nobody in particular
        ns.scope(user=7)["xp"] = 1
        ns.scope(user=420)["xp"] = 1
        ns.scope(user="042")["xp"] = 1
        ns.scope(user=4, pet=2)["age"] = 1
        ns.scope(guild=42)["name"] = "a guild, not a user"
        ns.scope(guild=1, channel=42)["topic"] = "a channel"
        ns.scope(guild="\x1cuser\x1di42\x1c")["k"] = "an id spelling a user segment"
        ns.scope(superuser=42)["k"] = "a level ending in 'user'"
        ns.scope(guild=1, member=4)["xp"] = 1
        ns.scope()["42"] = "the global scope"
        ns["42"] = "a plain key"
        ns["user:42"] = "a plain key"
        states.set("poll", "7", "OPTIONS")
        states.set("42", "7", "QUESTION")  # a machine named 42 talking to 7
        other["['poll', '42', 'x']"] = "three items"
        other['["poll", "42"]'] = "not StateStore's spelling"
        other["[poll, 42]"] = "not a literal"
        mine = {
            _scoped(ns.name, (("user", 42),), "xp"): 120,
            _scoped(ns.name, (("user", 42), ("pet", "rex")), "age"): 3,
            _scoped(ns.name, (("guild", 1), ("member", 42)), "roles"): ["mod"],
            _scoped(ns.name, (("guild", 1), ("member", "42")), "nick"): "str id",
            _scoped(other.name, (("member", 42),), "avatar"): b"\x00\xff",
            (other.name, StateStore.key("poll", "42")): "QUESTION",
        }
        before = _snapshot(store, ns.name, other.name)

        found = list(find_user_data(store, "42"))
        assert {(e.namespace, e.stored_key) for e in found} == set(mine)
        for entry in found:
            assert store.codec.decode(entry.raw) == mine[(entry.namespace, entry.stored_key)]
        (state,) = [e for e in found if e.is_state]
        assert (state.namespace, state.key, state.path) == (other.name, "poll", None)

        exported = export_user(store, "42")
        assert exported["user"] == "42"
        assert exported["states"] == [{"namespace": other.name, "key": "poll", "value": "QUESTION"}]
        by_ns = {
            name: sorted(records, key=repr) for name, records in exported["namespaces"].items()
        }
        assert by_ns == {
            ns.name: sorted(
                [
                    {"scope": [["user", 42]], "key": "xp", "value": 120},
                    {"scope": [["user", 42], ["pet", "rex"]], "key": "age", "value": 3},
                    {"scope": [["guild", 1], ["member", 42]], "key": "roles", "value": ["mod"]},
                    {"scope": [["guild", 1], ["member", "42"]], "key": "nick", "value": "str id"},
                ],
                key=repr,
            ),
            other.name: [
                {
                    "scope": [["member", 42]],
                    "key": "avatar",
                    "value": {"$t": "bytes", "v": base64.b64encode(b"\x00\xff").decode()},
                }
            ],
        }

        dry = forget_user(store, "42", dry_run=True)
        assert dry.dry_run
        assert dry.counts == {ns.name: 4, other.name: 2}
        assert _snapshot(store, ns.name, other.name) == before  # a dry run removes nothing

        done = forget_user(store, 42)  # an int user is its decimal text
        assert not done.dry_run
        assert done.counts == {ns.name: 4, other.name: 2}
        assert done.total == 6
        after = _snapshot(store, ns.name, other.name)
        assert after == {where: raw for where, raw in before.items() if where not in mine}
        assert list(find_user_data(store, "42")) == []
        assert forget_user(store, "42").total == 0
        assert states.get("poll", "7") == "OPTIONS"
        assert ns.scope(user=7)["xp"] == 1

    def test_user_ids_that_are_tricky_match_only_themselves(
        self, store: Store, ns: Namespace
    ) -> None:
        other = store.namespace(_OTHER_NS)
        states = StateStore(other)
        for user in TRICKY_USERS:
            for variant in (user, user + "x", "x" + user):
                ns.scope(user=variant)["k"] = variant
                ns.scope(guild=variant, member="m")["k"] = variant  # a guild, not a user
                states.set("m", variant, "S")
        ns.scope(user=-1)["k"] = -1  # "-1" names the int id too
        for user in TRICKY_USERS:
            expected = {
                _scoped(ns.name, (("user", user),), "k"),
                (other.name, StateStore.key("m", user)),
            }
            if user == "-1":
                expected.add(_scoped(ns.name, (("user", -1),), "k"))
            found = {(e.namespace, e.stored_key) for e in find_user_data(store, user)}
            assert found == expected, repr(user)
        before = _snapshot(store, ns.name, other.name)
        removed = forget_user(store, "\x1b\x1c")
        assert removed.total == 2
        assert len(_snapshot(store, ns.name, other.name)) == len(before) - 2
        assert states.get("m", "\x1b\x1cx") == "S"
        assert ns.scope(user="\x1b")["k"] == "\x1b"

    def test_user_values_undecodable_export_as_raw_bytes(self, store: Store, ns: Namespace) -> None:
        garbage = b"\xff\x00 not a value"
        store.backend.bucket(ns.name).set(scoped_key((("user", "ana"),), "bad"), garbage)
        ns.scope(user="ana")["good"] = 1
        exported = export_user(store, "ana")
        records = sorted(exported["namespaces"][ns.name], key=lambda r: str(r["key"]))
        assert records == [
            {
                "scope": [["user", "ana"]],
                "key": "bad",
                "raw": base64.b64encode(garbage).decode(),
                "codec": store.codec.name,
            },
            {"scope": [["user", "ana"]], "key": "good", "value": 1},
        ]
        assert forget_user(store, "ana").total == 2  # forgetting never decodes
        assert _snapshot(store, ns.name) == {}

    def test_user_values_set_aside_are_found_and_forgotten(self, store: Store) -> None:
        garbage = b"\xff\x00 not a value"
        guarded = store.namespace(_OTHER_NS, quarantine=True)
        guarded.scope(user="ana")["good"] = 1
        guarded.scope(user="bob")["good"] = 2
        for user in ("ana", "bob"):
            store.backend.bucket(_OTHER_NS).set(scoped_key((("user", user),), "bad"), garbage)
            assert guarded.scope(user=user).get("bad") is None  # set aside
        found = [e for e in find_user_data(store, "ana") if e.namespace == QUARANTINE_NAMESPACE]
        assert [(e.path, e.key, e.raw) for e in found] == [((("user", "ana"),), "bad", garbage)]
        assert forget_user(store, "ana").counts == {QUARANTINE_NAMESPACE: 1, _OTHER_NS: 1}
        assert [e.key for e in entries(store)] == [scoped_key((("user", "bob"),), "bad")]

    def test_user_levels_and_bad_ids(self, store: Store, ns: Namespace) -> None:
        ns.scope(player=42)["score"] = 1
        ns.scope(user=42)["xp"] = 1
        (entry,) = find_user_data(store, "42", levels="player")
        assert entry.path == (("player", 42),)
        assert len(list(find_user_data(store, "42", levels=("player", "user")))) == 2
        bad_users: list[Any] = ["", "a\x00b", True, 4.2, None, b"42"]
        for bad in bad_users:
            with pytest.raises(InvalidKeyError):
                find_user_data(store, bad)  # at the call, not when iterated
            with pytest.raises(InvalidKeyError):
                forget_user(store, bad)
            with pytest.raises(InvalidKeyError):
                export_user(store, bad)
        for bad_level in ("not a level", "", "é"):
            with pytest.raises(InvalidKeyError):
                find_user_data(store, "42", levels=bad_level)
        assert len(_snapshot(store, ns.name)) == 2
