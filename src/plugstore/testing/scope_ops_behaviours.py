"""Conformance behaviours of whole-scope operations: subtree reads, atomic replace,
batches across scopes, and group locks.

Mixed into :class:`plugstore.testing.StoreConformance`; the fixtures (``ns``, ``store``,
and the expiry ones ``clock_store``/``clock_ns``/``clock``) come from there.  What a
backend claims decides what is checked:

* ``Backend.atomic_batches``: ``scope.replace()`` and ``ns.batch()`` work with
  ``atomic=True``; otherwise they are refused with ``BatchNotAtomicError`` before
  anything is written, and ``atomic=False`` applies them in steps;
* ``Backend.isolated_batches``: a reader thread (and, on multi-process backends, a
  reader in another process) listing a scope, reading it with ``get_many`` or reading
  a subtree with ``tree()`` never sees part of a replace or a batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from plugstore import (
    BatchNotAtomicError,
    DecodeError,
    EncodeError,
    ExpiryNotSupportedError,
    InvalidKeyError,
    InvalidNamespaceError,
    LockTimeoutError,
    Namespace,
    Store,
    StoreError,
    StoreNotOpenError,
    UndeclaredKeyError,
)
from plugstore.scopekeys import VERSION_KEY, level_prefix

from ._threads import race_threads
from .scope_behaviours import _PrefixSpy

#: Keys of the two generations a replace alternates between: they overlap, so a reader
#: seeing part of a replace finds keys of both or values of both.
_OLD_KEYS = [f"k{i:02d}" for i in range(0, 20)]
_NEW_KEYS = [f"k{i:02d}" for i in range(10, 30)]


def generation(n: int) -> dict[str, int]:
    """The contents a replace writes in round ``n``: alternating key sets, value ``n``."""
    return dict.fromkeys(_OLD_KEYS if n % 2 == 0 else _NEW_KEYS, n)


def check_generation(seen: dict[str, Any]) -> None:
    """Assert that ``seen`` is exactly one round's contents (see :func:`generation`)."""
    values = set(seen.values())
    assert len(values) == 1, f"a reader saw a mix of rounds {sorted(values)}"
    (n,) = values
    assert seen == generation(n), f"a reader saw part of round {n}: {sorted(seen)}"


class ScopeOpsBehaviours:
    """``tree``, ``replace``, ``ns.batch()`` and ``group_lock`` on the backend under test."""

    # provided by StoreConformance
    _children: Any
    _need_multiprocess: Any

    @staticmethod
    def _need_atomic(store: Store) -> None:
        if not store.backend.atomic_batches:
            pytest.skip(f"{store.backend.name} has no atomic batches (Backend.atomic_batches)")

    # -- tree ---------------------------------------------------------------------------

    def test_tree_reads_a_whole_subtree_in_one_prefix_read(self, ns: Namespace) -> None:
        ns.register_defaults({"xp": 0, "rank": "new"}, levels=("guild", "member"))
        ns.register_defaults({"prefix": "!"}, levels="guild")
        ns.scope(guild=1, member=2)["xp"] = 5
        ns.scope(guild=1, member="2")["xp"] = 6  # another member than 2
        ns.scope(guild=1, member=3)["rank"] = "mod"
        ns.scope(guild=1, member="x\x1cy\x1b")["xp"] = 7
        ns.scope(guild="1", member=2)["xp"] = 8  # another guild than 1
        ns.scope(guild=12, member=5).update(xp=9, rank="vip", extra=[1])
        ns.scope(guild=1, member=2, role="r")["since"] = 0  # deeper: not member 2's data
        ns.scope(guild=1, channel=9)["topic"] = "t"  # another level beneath guild 1
        ns.scope(guild=7, channel=1)["topic"] = "u"  # guild 7 has no members
        ns.scope(guild=1)["prefix"] = "?"  # the guild's own key
        ns.scope(member=2)["xp"] = 1  # member as the outer level: another tree
        ns.scope()["motd"] = "hi"
        ns["plain"] = 1
        expected = {
            1: {
                2: {"xp": 5, "rank": "new"},
                "2": {"xp": 6, "rank": "new"},
                3: {"xp": 0, "rank": "mod"},
                "x\x1cy\x1b": {"xp": 7, "rank": "new"},
            },
            "1": {2: {"xp": 8, "rank": "new"}},
            12: {5: {"xp": 9, "rank": "vip", "extra": [1]}},
        }
        spy = _PrefixSpy(ns._bucket)
        ns._bucket = spy  # type: ignore[assignment]
        try:
            assert ns.scope().tree("guild", "member") == expected
        finally:
            ns._bucket = spy._bucket
        assert spy.calls == [("items", level_prefix((), "guild"))], "one prefix read"
        assert ns.scope().tree("guild") == ns.scope().children("guild")
        assert ns.scope().tree("guild") == {1: {"prefix": "?"}}  # guild 7: no own keys
        assert ns.scope(guild=1).tree("member") == ns.scope(guild=1).children("member")
        assert ns.scope(guild=1).tree("member", "role") == {2: {"r": {"since": 0}}}
        assert ns.scope(guild=1).tree("channel") == {9: {"topic": "t"}}
        assert ns.scope(guild=99).tree("member") == {}
        assert ns.scope().tree("member") == {2: {"xp": 1}}
        # what is returned is a copy
        tree = ns.scope().tree("guild", "member")
        tree[12][5]["extra"].append(2)
        assert ns.scope(guild=12, member=5)["extra"] == [1]

    def test_tree_bad_input_and_closed_store(self, store: Store, ns: Namespace) -> None:
        scope = ns.scope(guild=1)
        bad: list[Callable[[], object]] = [
            lambda: ns.scope().tree(),
            lambda: ns.scope().tree("guild", "guild"),
            lambda: scope.tree("guild"),
            lambda: scope.tree("member", "guild"),
            lambda: scope.tree("not a level"),
            lambda: scope.tree(""),
            lambda: scope.tree(1),  # type: ignore[arg-type]
        ]
        for call in bad:
            with pytest.raises(InvalidKeyError):
                call()
        store.close()
        with pytest.raises(StoreNotOpenError):
            scope.tree("member")

    def test_tree_fills_defaults_in_order(self, ns: Namespace) -> None:
        """Each leaf of tree() is exactly what children() gives, key order included:
        registered defaults are filled in code point order, not after the stored keys."""
        ns.register_defaults({"a": 0, "z": 0}, levels=("guild", "member"))
        ns.scope(guild=1, member=2).update({"b": 5, "y": 1})
        leaf = ns.scope().tree("guild", "member")[1][2]
        assert list(leaf.items()) == [("a", 0), ("b", 5), ("y", 1), ("z", 0)]
        assert list(leaf.items()) == list(ns.scope(guild=1).children("member")[2].items())

    def test_tree_sees_expiry_and_defaults(
        self, clock_store: Store, clock_ns: Namespace, clock: Any
    ) -> None:
        from .expiry_behaviours import HOUR, ExpiryBehaviours

        ns = clock_ns
        ns.register_defaults({"xp": 0}, levels=("guild", "member"))
        ns.scope(guild=1, member=2).set("xp", 5, ttl=HOUR)
        ns.scope(guild=1, member=2)["name"] = "ana"
        ExpiryBehaviours._write_expired(
            clock, lambda: ns.scope(guild=1, member=3).set("xp", 1, ttl=10)
        )
        # member 3 holds only an expired key: absent; member 2's xp is live
        assert ns.scope().tree("guild", "member") == {1: {2: {"xp": 5, "name": "ana"}}}

    def test_tree_sets_undecodable_values_aside_or_raises(
        self, store: Store, ns: Namespace
    ) -> None:
        from .version_behaviours import GARBAGE, VERSIONED

        for target, quarantine in (
            (store.namespace(VERSIONED, quarantine=True), True),
            (ns, False),
        ):
            member = target.scope(guild=1, member=2)
            member["fine"] = "yes"
            target._bucket.set(member._full("bad"), GARBAGE)
            if quarantine:  # set aside, and read as absent
                assert target.scope().tree("guild", "member") == {1: {2: {"fine": "yes"}}}
                assert target._bucket.get(member._full("bad")) is None
            else:  # the read fails, and the value stays
                with pytest.raises(DecodeError):
                    target.scope().tree("guild", "member")
                assert target._bucket.get(member._full("bad")) == GARBAGE

    # -- replace --------------------------------------------------------------------------

    def test_replace_makes_a_scope_hold_exactly_the_new_contents(
        self, store: Store, ns: Namespace
    ) -> None:
        if not store.backend.atomic_batches:
            member = ns.scope(guild=1, member=2)
            member["old"] = 1
            with pytest.raises(BatchNotAtomicError):
                member.replace({"new": 2})
            with pytest.raises(BatchNotAtomicError):
                ns.batch()
            assert dict(member) == {"old": 1}, "a refused replace wrote nothing"
            member.replace({"new": 2}, atomic=False)
            assert dict(member) == {"new": 2}
            return
        ns.register_defaults({"xp": 0, "badges": []}, levels=("guild", "member"))
        member = ns.scope(guild=1, member=2)
        member.update(xp=10, badges=["a"], note="x", **{"\x1ek": 1})
        member.scope(role="r")["since"] = 1  # a sub-scope: untouched
        ns.scope(guild=1, member=20)["xp"] = 20  # a sibling whose id extends 2's
        ns.scope(guild=1)["prefix"] = "!"  # the parent: untouched
        member.replace({"xp": 11, "new": {"n": 1}})
        assert dict(member) == {"xp": 11, "new": {"n": 1}, "badges": []}  # badges: default
        assert not member.is_stored("badges")
        assert member.scope(role="r")["since"] == 1
        assert ns.scope(guild=1, member=20)["xp"] == 20
        assert ns.scope(guild=1)["prefix"] == "!"
        member.replace([("note", "pairs work")])
        assert dict(member) == {"note": "pairs work", "xp": 0, "badges": []}
        member.replace({})
        assert len(list(ns._bucket.keys(member._prefix))) == 0
        # the global scope: plain keys and the data version stay
        ns["plain"] = 1
        ns._bucket.set(VERSION_KEY, b"3")
        ns.scope()["motd"] = "hi"
        ns.scope().replace({"motd": "bye"})
        assert dict(ns.scope()) == {"motd": "bye"}
        assert ns["plain"] == 1
        assert ns._bucket.get(VERSION_KEY) == b"3"
        assert ns.scope(guild=1)["prefix"] == "!"

    def test_replace_bad_input_writes_nothing(self, store: Store, ns: Namespace) -> None:
        atomic = store.backend.atomic_batches
        ns.register_defaults({"xp": 0}, levels="user", strict=True)
        user, other = ns.scope(user=1), ns.scope(guild=1)
        user["xp"] = 5
        other["k"] = "v"
        bad: list[Callable[[], object]] = [
            lambda: user.replace({"xp": 1, "xq": 2}, atomic=atomic),  # strict level
            lambda: other.replace({"a": 1, "b": object()}, atomic=atomic),
            lambda: other.replace({"a": 1, "": 2}, atomic=atomic),
            lambda: other.replace({"a": 1, 3: 2}, atomic=atomic),  # type: ignore[arg-type]
            lambda: other.replace({"a": 1}, ttl=-1, atomic=atomic),
            lambda: other.replace({"a": 1}, ttl="soon", atomic=atomic),  # type: ignore[arg-type]
        ]
        errors = (UndeclaredKeyError, EncodeError, InvalidKeyError, ValueError, TypeError)
        for call in bad:
            with pytest.raises(errors):
                call()
        assert dict(user) == {"xp": 5}
        assert dict(other) == {"k": "v"}
        if not store.backend.expiry:
            with pytest.raises(ExpiryNotSupportedError):
                other.replace({"a": 1}, ttl=60, atomic=atomic)
            assert dict(other) == {"k": "v"}

    def test_replace_and_batch_with_expiry(
        self, clock_store: Store, clock_ns: Namespace, clock: Any
    ) -> None:
        from .expiry_behaviours import HOUR, ExpiryBehaviours

        self._need_atomic(clock_store)
        ns = clock_ns
        ns.register_defaults({"xp": 0}, levels="user")
        user = ns.scope(user=1)
        ExpiryBehaviours._write_expired(clock, lambda: user.set("gone", 1, ttl=10))
        user.set("cooldown", True, ttl=HOUR)
        user.replace({"xp": 3, "temp": "t"}, ttl=HOUR)
        assert dict(user) == {"xp": 3, "temp": "t"}
        assert user.ttl("xp") == pytest.approx(HOUR, abs=1)
        with ns.batch() as batch:
            batch.set(user, "xp", 4)  # without ttl: no deadline
            batch.set(ns.scope(user=2), "cooldown", True, ttl=HOUR)
        assert user.ttl("xp") is None
        assert ns.scope(user=2).ttl("cooldown") == pytest.approx(HOUR, abs=1)
        ExpiryBehaviours._write_expired(clock, lambda: user.replace({"xp": 9}, ttl=10))
        assert dict(user) == {"xp": 0}  # replaced by an expired entry: the default shows
        assert ns._bucket.count(user._prefix) == 0

    # -- batches --------------------------------------------------------------------------

    def test_batch_writes_several_scopes_together(self, store: Store, ns: Namespace) -> None:
        atomic = store.backend.atomic_batches
        g1, g2 = ns.scope(guild=1), ns.scope(guild=2)
        m2, m3 = g1.scope(member=2), g1.scope(member=3)
        g1["prefix"] = "!"
        m2.update(xp=1, note="n")
        m3["xp"] = 3
        g2.scope(member=9)["xp"] = 9
        g2["prefix"] = "?"
        ns.scope()["motd"] = "hi"
        ns["plain"] = 1
        with ns.batch(atomic=atomic) as batch:
            assert batch.atomic is atomic
            batch.set(g1, "prefix", "$")
            batch.set(m2, "xp", 2)
            batch.delete(m2, "note")
            batch.delete(m2, "never-stored")  # absent: not an error
            batch.set(m3, "gone", 1)
            batch.delete(m3, "gone")  # later calls win
            batch.set(m3, "back", 1)
            batch.clear(m3)  # clears what the batch wrote there too
            batch.set(m3, "between", 3)
            batch.clear(g1.scope(member=3))  # again: the same prefix
            batch.set(m3, "after", 3)  # written after the clears
            batch.replace(ns.scope(guild=3), {"new": True})
            batch.clear_all(g2)
            assert g1["prefix"] == "!", "nothing is written before the batch ends"
        assert g1["prefix"] == "$"
        assert dict(m2) == {"xp": 2}
        assert dict(m3) == {"after": 3}
        assert dict(ns.scope(guild=3)) == {"new": True}
        assert list(g2.ids("member")) == []
        assert "prefix" not in g2

        # an exception inside the block: nothing is written
        def fail_inside() -> None:
            with ns.batch(atomic=atomic) as batch:
                batch.set(g1, "prefix", "never")
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            fail_inside()
        assert g1["prefix"] == "$"
        # clear_all of the global scope: every scope goes; plain keys and meta entries stay
        ns._bucket.set(VERSION_KEY, b"2")
        with ns.batch(atomic=atomic) as batch:
            batch.clear_all(ns.scope())
            batch.set(ns.scope(guild="A"), "k", 1)
        assert ns.scope().tree("guild") == {"A": {"k": 1}}
        assert ns._bucket.get(VERSION_KEY) == b"2"
        assert ns["plain"] == 1
        assert "motd" not in ns.scope()
        # an empty batch writes nothing and is fine
        with ns.batch(atomic=atomic):
            pass

    def test_batch_bad_input(self, store: Store, ns: Namespace) -> None:
        atomic = store.backend.atomic_batches
        other = store.namespace("conformance-other")
        ns.register_defaults({"xp": 0}, levels="user", strict=True)
        scope = ns.scope(guild=1)
        scope["k"] = "v"
        batch = ns.batch(atomic=atomic)
        batch.set(scope, "k", "new")
        bad: list[tuple[type[BaseException], Callable[[], object]]] = [
            (InvalidNamespaceError, lambda: batch.set(other.scope(guild=1), "k", 1)),
            (InvalidKeyError, lambda: batch.set(scope, "", 1)),
            (InvalidKeyError, lambda: batch.delete(scope, "a\x00")),
            (UndeclaredKeyError, lambda: batch.set(ns.scope(user=1), "xq", 1)),
            (EncodeError, lambda: batch.set(scope, "k", object())),
            (EncodeError, lambda: batch.replace(scope, {"a": 1, "b": object()})),
            (ValueError, lambda: batch.set(scope, "k", 1, ttl=0)),
            (TypeError, lambda: batch.set("guild=1", "k", 1)),  # type: ignore[arg-type]
        ]
        for error, call in bad:
            with pytest.raises(error):
                call()
        batch.commit()  # what was refused never joined the batch
        assert dict(scope) == {"k": "new"}
        assert len(other) == 0
        with pytest.raises(StoreError):
            batch.commit()  # once only
        with pytest.raises(StoreError):
            batch.set(scope, "k", 1)
        store.close()
        with pytest.raises(StoreNotOpenError):
            ns.batch(atomic=atomic)
        with pytest.raises(StoreNotOpenError):
            scope.replace({"k": 1}, atomic=atomic)

    def test_batch_commit_on_a_closed_store_raises(self, store: Store, ns: Namespace) -> None:
        batch = ns.batch(atomic=store.backend.atomic_batches)
        batch.set(ns.scope(guild=1), "k", 1)
        store.close()
        with pytest.raises(StoreNotOpenError):
            batch.commit()

    def test_a_batch_beyond_the_engine_lands_whole_or_not_at_all(
        self, store: Store, ns: Namespace
    ) -> None:
        """150 sets and a clear: more than one DynamoDB transaction holds.  Either all
        of it lands, or ``BatchNotAtomicError`` and nothing changed."""
        self._need_atomic(store)
        old = ns.scope(guild=1)
        old.update({f"o{i}": i for i in range(10)})
        refused: list[BatchNotAtomicError] = []
        try:
            with ns.batch() as batch:
                batch.clear(old)
                for i in range(150):
                    batch.set(ns.scope(guild=2, member=i), "xp", i)
        except BatchNotAtomicError as exc:
            refused.append(exc)
        if refused:
            assert "atomic=False" in str(refused[0])
            assert dict(old) == {f"o{i}": i for i in range(10)}
            assert ns.scope().tree("guild", "member") == {}
            with ns.batch(atomic=False) as batch:  # in steps, as asked
                batch.clear(old)
                for i in range(150):
                    batch.set(ns.scope(guild=2, member=i), "xp", i)
        assert len(old) == 0
        assert len(ns.scope().tree("guild", "member")[2]) == 150

    def test_readers_never_see_part_of_a_replace_or_batch(
        self, store: Store, ns: Namespace
    ) -> None:
        if not store.backend.isolated_batches:
            pytest.skip(f"{store.backend.name} readers may see part of a batch")
        scope, twin = ns.scope(guild=1, member=1), ns.scope(guild=1, member=2)
        scope.replace(generation(0))
        twin.replace(generation(0))
        done = threading.Event()
        errors: list[BaseException] = []
        reads = [0]

        def writer() -> None:
            # Odd rounds replace one scope, then the other; even rounds are one batch of
            # both.  At least 60 rounds, and until the reader has read 30 times.
            try:
                n, until = 0, time.monotonic() + 60
                while (n < 60 or reads[0] < 30) and time.monotonic() < until and not errors:
                    n += 1
                    if n % 2:
                        scope.replace(generation(n))
                        twin.replace(generation(n))
                    else:
                        with ns.batch() as batch:
                            batch.replace(scope, generation(n))
                            batch.replace(twin, generation(n))
            except BaseException as exc:  # reported below
                errors.append(exc)
            finally:
                done.set()

        def reader() -> None:
            try:
                while not done.is_set():
                    check_generation(dict(scope.items()))
                    got = scope.get_many(_OLD_KEYS + _NEW_KEYS)
                    check_generation(got)
                    both = ns.scope(guild=1).tree("member")
                    check_generation(both[1])
                    check_generation(both[2])
                    n = both[1]["k10"]
                    if n % 2 == 0:  # a batch wrote both scopes: the twin is there too
                        assert both[2]["k10"] == n, f"a reader saw half of batch {n}"
                    reads[0] += 1
            except BaseException as exc:  # reported below
                errors.append(exc)
                done.set()

        threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert reads[0] > 0
        check_generation(dict(scope))
        assert dict(scope) == dict(twin)

    @pytest.mark.slow
    def test_a_reader_process_never_sees_part_of_a_replace(
        self, store: Store, ns: Namespace
    ) -> None:
        """A child process replacing scopes (odd rounds: one scope, then the other; even
        rounds: one batch of both) against this process's reads (its own connection, or
        file handle): isolation by the engine, not by a lock of one process."""
        self._need_multiprocess(store)
        if not store.backend.isolated_batches:
            pytest.skip(f"{store.backend.name} readers may see part of a batch")
        scope = ns.scope(guild=1, member=1)
        scope.replace(generation(0))
        ns.scope(guild=1, member=2).replace(generation(0))
        (child,) = self._children(store, "replacer", [{"n": 80}])
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
            rounds: set[int] = set()
            deadline = time.monotonic() + 120
            while child.poll() is None and time.monotonic() < deadline:
                seen = dict(scope.items())
                check_generation(seen)
                rounds.add(seen["k10"])
                both = ns.scope(guild=1).tree("member")
                check_generation(both[1])
                check_generation(both[2])
                if both[1]["k10"] % 2 == 0:  # a batch wrote both: the twin is there too
                    assert both[2]["k10"] == both[1]["k10"], "a reader saw half a batch"
            _, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
        finally:
            if child.poll() is None:
                child.kill()
        check_generation(dict(scope))
        assert scope["k10"] == 80
        assert len(rounds) > 1, "the reader ran alongside the replaces"

    # -- group locks ----------------------------------------------------------------------

    def test_group_lock_excludes_holders_of_the_same_scope(self, ns: Namespace) -> None:
        member = ns.scope(guild=1, member=2)
        with member.group_lock(timeout=5):
            with pytest.raises(LockTimeoutError):
                ns.scope(guild=1, member=2).group_lock(timeout=0).acquire()
            # other names: a key of the scope, another scope, the parent, a plain key
            for other in (
                member.lock("xp", timeout=0),
                ns.scope(guild=1, member=3).group_lock(timeout=0),
                ns.scope(guild=1).group_lock(timeout=0),
                ns.scope(guild=1, member="2").group_lock(timeout=0),
                ns.lock("xp", timeout=0),
            ):
                with other:
                    pass
        with member.group_lock(timeout=0):  # released
            pass

    def test_group_lock_makes_multi_key_updates_exact(self, ns: Namespace) -> None:
        member = ns.scope(guild=1, member=2)
        member.update(a=0, b=0)

        def step() -> None:
            with member.group_lock(timeout=60):
                a, b = member["a"], member["b"]
                member.update(a=a + 1, b=b + a + 1)

        race_threads(4, 15, step)
        assert member["a"] == 60
        assert member["b"] == 60 * 61 // 2

    def test_group_lock_bad_input_and_closed_store(self, store: Store, ns: Namespace) -> None:
        member = ns.scope(guild=1, member=2)
        with pytest.raises(ValueError, match="timeout"):
            member.group_lock(timeout=-1)
        with pytest.raises(ValueError, match="lease"):
            member.group_lock(lease=0)
        store.close()
        with pytest.raises(StoreNotOpenError):
            member.group_lock()
