"""Conformance behaviours of ``add`` (insert-if-absent), ``expire`` and ``persist``.

Mixed into :class:`plugstore.testing.StoreConformance`.  ``add`` without a deadline and
``persist`` run on every backend; the deadline parts use the expiry behaviours' fake
store clock (the ``clock``, ``clock_store`` and ``clock_ns`` fixtures) and are skipped
on a backend without expiry, where ``add(ttl=)`` and ``expire`` must be refused instead.
As there, an engine that expires entries by its own clock (Redis) only sees deadlines
both clocks agree on, plus one short real-time check that its engine honours them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from plugstore import (
    EncodeError,
    ExpiryNotSupportedError,
    InvalidKeyError,
    Namespace,
    Store,
    StoreNotOpenError,
    UndeclaredKeyError,
    ValueTooLargeError,
)
from plugstore.keys import MAX_TTL

from ._threads import race_threads
from .expiry_behaviours import HOUR, ExpiryBehaviours, FakeClock

_NS = "conformance"  # the kit's namespace (see __init__)
_BAD_TTLS: list[Any] = [0, 0.0, -1, math.nan, math.inf, MAX_TTL * 2, True]
_BAD_TTL_TYPES: list[Any] = ["10", b"10", Decimal(10), [10]]


class AddBehaviours:
    """``add`` stores only over an absent (or expired) key, atomically across threads and
    processes; ``expire`` and ``persist`` change a live key's deadline, never its value."""

    # provided by StoreConformance
    thread_ops: ClassVar[int]
    _children: Any
    _need_multiprocess: Any

    # -- add, on every backend --------------------------------------------------------------

    def test_add_stores_only_when_absent(self, store: Store, ns: Namespace) -> None:
        assert ns.add("k", {"v": 1}) is True
        assert ns["k"] == {"v": 1}
        raw = ns.get_raw("k")
        assert ns.add("k", {"v": 2}) is False
        assert ns.get_raw("k") == raw  # the stored bytes are untouched
        assert ns.ttl("k") is None
        falsy_values: list[Any] = [None, 0, "", [], False]
        for falsy in falsy_values:  # present, however falsy
            ns["f"] = falsy
            assert ns.add("f", "other") is False
            assert ns["f"] == falsy
        del ns["k"]
        assert ns.add("k", "again") is True  # deleted: absent again
        assert ns["k"] == "again"
        assert ns.incr("n") == 1
        assert ns.add("n", 5) is False
        assert ns.incr("n") == 2  # still the counter
        assert ns.add("int", 7) is True
        assert ns.incr("int") == 8  # an int added is a counter, as one set is
        assert len(ns) == 4
        # namespaces and scopes are separate: the same key added in each
        other = store.namespace("conformance-other")
        assert other.add("k", "other") is True
        assert ns["k"] == "again"
        assert ns.scope(guild=1).add("k", "scoped") is True
        assert ns["k"] == "again"
        assert ns.scope(guild=1)["k"] == "scoped"

    def test_add_refuses_what_set_refuses(self, store: Store, ns: Namespace) -> None:
        from . import BAD_KEYS, UNENCODABLE

        for bad in [*BAD_KEYS, "\x1freserved"]:
            with pytest.raises(InvalidKeyError):
                ns.add(bad, 1)
        for thing in UNENCODABLE:
            with pytest.raises(EncodeError):
                ns.add("k", thing)
        with pytest.raises(ValueTooLargeError):
            ns.add("k", b"\x00" * store.max_value_size)
        for bad in _BAD_TTLS:
            with pytest.raises(ValueError, match="ttl"):
                ns.add("k", 1, ttl=bad)
        for bad in _BAD_TTL_TYPES:
            with pytest.raises(TypeError, match="ttl"):
                ns.add("k", 1, ttl=bad)
        assert len(ns) == 0  # nothing was written
        ns["k"] = "kept"
        with pytest.raises(ValueError, match="ttl"):
            ns.add("k", 1, ttl=-1)
        assert ns["k"] == "kept"

    def test_threads_race_add_and_exactly_one_wins(self, store: Store, ns: Namespace) -> None:
        threads, rounds = 10, max(10, self.thread_ops // 4)
        won: list[tuple[str, int]] = []  # list.append is atomic
        local = threading.local()

        def step() -> None:
            n = getattr(local, "n", 0)
            local.n = n + 1
            me = threading.get_ident()
            if ns.add(f"race{n}", me):
                won.append((f"race{n}", me))

        race_threads(threads, rounds, step)
        winners = Counter(key for key, _ in won)
        assert sorted(winners) == sorted(f"race{n}" for n in range(rounds))
        assert set(winners.values()) == {1}, [k for k, c in winners.items() if c > 1]
        assert {key: ns[key] for key, _ in won} == dict(won)  # the winner's value stayed

    @pytest.mark.slow
    def test_processes_race_add_and_exactly_one_wins(self, store: Store, ns: Namespace) -> None:
        self._need_multiprocess(store)
        from . import release_together

        procs, keys = 4, 100
        specs = [{"prefix": "race", "n": keys, "who": who} for who in range(procs)]
        outputs = release_together(self._children(store, "add", specs))
        won = [(int(who), key) for who, out in enumerate(outputs) for key in out.split()]
        winners = Counter(key for _, key in won)
        assert sorted(winners) == sorted(f"race{n}" for n in range(keys))
        assert set(winners.values()) == {1}, [k for k, c in winners.items() if c > 1]
        assert all(ns[key] == who for who, key in won)

    # -- persist on every backend, and no expiry at all ------------------------------------

    def test_persist_says_whether_the_key_is_present(self, ns: Namespace) -> None:
        ns["k"] = [1]
        assert ns.persist("k") is True  # present without a deadline: True, and unchanged
        assert ns.get_raw("k") == ns.store.codec.encode([1])
        assert ns.ttl("k") is None
        assert ns.persist("absent") is False
        assert "absent" not in ns
        for bad in ("", "\x1freserved", None):
            with pytest.raises(InvalidKeyError):
                ns.persist(bad)  # type: ignore[arg-type]
            with pytest.raises(InvalidKeyError):
                ns.expire(bad, HOUR)  # type: ignore[arg-type]

    def test_backends_without_expiry_refuse_add_with_ttl_and_expire(self, store: Store) -> None:
        if store.backend.expiry:
            pytest.skip(f"{store.backend.name} stores can expire keys")
        ns = store.namespace(_NS)
        scope = ns.scope(guild=1)
        ns["k"] = 1
        scope["k"] = 1
        refused: list[Callable[[], object]] = [
            lambda: ns.add("new", 1, ttl=10),
            lambda: ns.expire("k", 10),
            lambda: ns.expire("absent", 10),
            lambda: scope.add("new", 1, ttl=10),
            lambda: scope.expire("k", 10),
        ]
        for call in refused:
            with pytest.raises(ExpiryNotSupportedError):
                call()
        assert "new" not in ns
        assert "new" not in scope
        assert ns.add("new", 1) is True  # without a ttl, add works everywhere
        assert ns.persist("k") is True
        assert scope.persist("k") is True
        assert scope.persist("absent") is False

    # -- scopes --------------------------------------------------------------------------

    def test_scope_add_stores_over_a_default_and_strict_levels_refuse(self, ns: Namespace) -> None:
        ns.register_defaults({"xp": 0, "prefs": {"lang": "en"}}, levels="member")
        member = ns.scope(member=1)
        assert member["xp"] == 0  # a default only: nothing stored
        assert member.add("xp", 10) is True  # a default is not a stored value
        assert member.is_stored("xp")
        assert member["xp"] == 10
        assert member.add("xp", 20) is False
        assert member["xp"] == 10
        assert member.add("prefs", {"tz": "UTC"}) is True
        assert member["prefs"] == {"lang": "en", "tz": "UTC"}  # merged on read, as set
        assert member.persist("xp") is True
        assert member.persist("absent") is False
        assert ns.scope(member=2).persist("xp") is False  # a default has nothing to persist
        ns.register_defaults({"declared": 1}, levels="strict", strict=True)
        strict = ns.scope(strict=1)
        undeclared: list[Callable[[], object]] = [
            lambda: strict.add("undeclared", 1),
            lambda: strict.persist("undeclared"),
            lambda: strict.expire("undeclared", HOUR),
        ]
        for call in undeclared:
            with pytest.raises(UndeclaredKeyError):
                call()
        assert strict.add("declared", 2) is True
        assert strict["declared"] == 2
        with pytest.raises(InvalidKeyError):
            member.add("", 1)
        with pytest.raises(ValueError, match="ttl"):
            member.add("new", 1, ttl=0)
        assert "new" not in member

    # -- deadlines -------------------------------------------------------------------------

    def test_add_replaces_an_expired_key(
        self, clock_store: Store, clock_ns: Namespace, clock: FakeClock
    ) -> None:
        ns = clock_ns
        expired = {"plain": "old", "timed": "old", "counter": 41}
        ExpiryBehaviours._write_expired(clock, lambda: ns.set_many(expired, ttl=10))
        assert ns.add("plain", "new") is True
        assert ns["plain"] == "new"
        assert ns.ttl("plain") is None  # a new entry: the old deadline is gone
        assert ns.add("timed", "new", ttl=HOUR) is True
        assert ns["timed"] == "new"
        assert ns.ttl("timed") == pytest.approx(HOUR, abs=0.01)
        assert ns.add("counter", 1) is True
        assert ns.incr("counter") == 2  # from what add stored, not from 41
        assert ns.add("timed", "newer", ttl=2 * HOUR) is False  # live now
        assert ns["timed"] == "new"
        assert ns.ttl("timed") == pytest.approx(HOUR, abs=0.01)  # and its deadline kept
        assert dict(ns) == {"plain": "new", "timed": "new", "counter": 2}

    def test_add_with_ttl_expires(
        self, clock_store: Store, clock_ns: Namespace, clock: FakeClock
    ) -> None:
        ns = clock_ns
        assert ns.add("lease", "me", ttl=HOUR) is True
        assert ns.ttl("lease") == pytest.approx(HOUR, abs=0.01)
        assert ns.add("lease", "you", ttl=HOUR) is False
        scope = ns.scope(guild=1)
        assert scope.add("cooldown", True, ttl=HOUR) is True
        assert scope.ttl("cooldown") == pytest.approx(HOUR, abs=0.01)
        ExpiryBehaviours._write_expired(clock, lambda: ns.add("gone", 1, ttl=10))
        assert "gone" not in ns
        if clock_store.backend.expires_on_engine_clock:
            return  # the store clock cannot move this engine's time
        start = clock.now
        assert ns.add("short", 1, ttl=10) is True
        clock.now = start + 9.5
        assert ns.add("short", 2) is False
        clock.now = start + 10  # the deadline itself: expired, so absent
        assert "short" not in ns
        assert ns.add("short", 3) is True
        clock.advance(HOUR)
        assert "lease" not in ns
        assert ns.add("lease", "you") is True
        assert ns["lease"] == "you"
        assert ns.ttl("lease") is None

    def test_expire_sets_a_live_keys_deadline_and_keeps_its_value(
        self, clock_store: Store, clock_ns: Namespace, clock: FakeClock
    ) -> None:
        ns = clock_ns
        ns["k"] = {"a": [1, 2]}
        raw = ns.get_raw("k")
        assert ns.expire("k", HOUR) is True
        assert ns.get_raw("k") == raw  # the same bytes
        assert ns.ttl("k") == pytest.approx(HOUR, abs=0.01)
        assert ns.expire("k", HOUR) is True  # the same deadline again is still True
        assert ns.expire("k", 2 * HOUR) is True  # later
        assert ns.ttl("k") == pytest.approx(2 * HOUR, abs=0.01)
        assert ns.expire("k", HOUR / 2) is True  # and earlier
        assert ns.ttl("k") == pytest.approx(HOUR / 2, abs=0.01)
        assert ns.get_raw("k") == raw
        # what keeps a deadline keeps this one; a plain write clears it
        ns["n"] = 5
        assert ns.expire("n", HOUR) is True
        assert ns.incr("n") == 6
        assert ns.compute("n", lambda v: v * 2) == 12
        with ns.mutable("k") as value:
            value["b"] = 3
        assert ns.ttl("n") == pytest.approx(HOUR, abs=0.01)
        assert ns.ttl("k") == pytest.approx(HOUR / 2, abs=0.01)
        ns["n"] = 0
        assert ns.ttl("n") is None
        scope = ns.scope(guild=1)
        scope["s"] = "v"
        assert scope.expire("s", HOUR) is True
        assert scope.ttl("s") == pytest.approx(HOUR, abs=0.01)
        assert scope["s"] == "v"
        if clock_store.backend.expires_on_engine_clock:
            return
        ns["gone"] = "soon"
        assert ns.expire("gone", 10) is True
        clock.advance(10)  # the deadline itself
        assert "gone" not in ns
        assert ns.get_raw("gone") is None
        assert ns.add("gone", "back") is True

    def test_expire_and_persist_leave_absent_and_expired_keys_absent(
        self, clock_store: Store, clock_ns: Namespace, clock: FakeClock
    ) -> None:
        ns = clock_ns
        ns.register_defaults({"xp": 0}, levels="guild")
        scope = ns.scope(guild=1)
        ExpiryBehaviours._write_expired(clock, lambda: ns.set("expired", 1, ttl=10))
        ExpiryBehaviours._write_expired(clock, lambda: scope.set("xp", 5, ttl=10))
        ns["deleted"] = 1
        del ns["deleted"]
        for key in ("absent", "expired", "deleted"):
            assert ns.expire(key, HOUR) is False, key
            assert ns.persist(key) is False, key
            assert key not in ns  # neither brought it back
            assert ns.get_raw(key) is None
            with pytest.raises(KeyError):
                ns.ttl(key)
        assert scope.expire("xp", HOUR) is False
        assert scope.persist("xp") is False
        assert scope["xp"] == 0  # the default shows through the expired value
        assert not scope.is_stored("xp")
        assert len(ns) == 0
        assert ns.add("expired", 2) is True  # still absent to add

    def test_persist_clears_the_deadline(
        self, clock_store: Store, clock_ns: Namespace, clock: FakeClock
    ) -> None:
        ns = clock_ns
        ns.set("k", "v", ttl=HOUR)
        raw = ns.get_raw("k")
        assert ns.persist("k") is True
        assert ns.ttl("k") is None
        assert ns.get_raw("k") == raw
        assert ns.persist("k") is True  # no deadline left: still present, still True
        ns.set("n", 1, ttl=HOUR)
        assert ns.persist("n") is True
        assert ns.incr("n") == 2
        assert ns.ttl("n") is None
        scope = ns.scope(guild=1)
        scope.set("s", 1, ttl=HOUR)
        assert scope.persist("s") is True
        assert scope.ttl("s") is None
        if not clock_store.backend.expires_on_engine_clock:
            ns.set("p", 1, ttl=10)
            assert ns.persist("p") is True
            clock.advance(HOUR)
            assert ns["p"] == 1  # the old deadline is really gone
            assert ns.ttl("p") is None
            return
        # An engine's own clock: a short deadline, on the real time, must be gone from
        # the engine after persist, and one expire set must be honoured by it.
        clock.now = time.time()
        ns.set("p", 1, ttl=1)
        ns["e"] = 1
        assert ns.persist("p") is True
        assert ns.expire("e", 1) is True
        time.sleep(1.2)
        assert ns.get("p") == 1
        assert "e" not in ns

    def test_expire_refuses_bad_ttl_and_writes_nothing(self, clock_ns: Namespace) -> None:
        ns = clock_ns
        ns["k"] = 1
        scope = ns.scope(guild=1)
        scope["k"] = 1
        for bad in _BAD_TTLS:
            with pytest.raises(ValueError, match="ttl"):
                ns.expire("k", bad)
            with pytest.raises(ValueError, match="ttl"):
                scope.expire("k", bad)
        for bad in [*_BAD_TTL_TYPES, None]:
            with pytest.raises(TypeError, match="ttl"):
                ns.expire("k", bad)
            with pytest.raises(TypeError, match="ttl"):
                scope.expire("k", bad)
        assert ns.ttl("k") is None
        assert scope.ttl("k") is None
        with pytest.raises(InvalidKeyError):
            ns.expire("\x00", HOUR)

    def test_threads_race_add_over_expired_keys(
        self, clock_ns: Namespace, clock: FakeClock
    ) -> None:
        ns = clock_ns
        threads, rounds = 10, max(10, self.thread_ops // 8)
        keys = {f"race{n}": "expired" for n in range(rounds)}
        ExpiryBehaviours._write_expired(clock, lambda: ns.set_many(keys, ttl=10))
        won: list[tuple[str, int]] = []
        local = threading.local()

        def step() -> None:
            n = getattr(local, "n", 0)
            local.n = n + 1
            me = threading.get_ident()
            if ns.add(f"race{n}", me, ttl=HOUR):
                won.append((f"race{n}", me))

        race_threads(threads, rounds, step)
        winners = Counter(key for key, _ in won)
        assert sorted(winners) == sorted(keys)
        assert set(winners.values()) == {1}, [k for k, c in winners.items() if c > 1]
        assert {key: ns[key] for key, _ in won} == dict(won)

    # -- lifecycle --------------------------------------------------------------------------

    def test_add_expire_persist_after_close_raise(self, store: Store, ns: Namespace) -> None:
        ns["k"] = 1
        scope = ns.scope(guild=1)
        store.close()
        calls: list[Callable[[], object]] = [
            lambda: ns.add("new", 1),
            lambda: ns.add("new", 1, ttl=HOUR),
            lambda: ns.expire("k", HOUR),
            lambda: ns.persist("k"),
            lambda: scope.add("new", 1),
            lambda: scope.expire("k", HOUR),
            lambda: scope.persist("k"),
        ]
        for call in calls:
            with pytest.raises(StoreNotOpenError):
                call()


__all__ = ["AddBehaviours"]
