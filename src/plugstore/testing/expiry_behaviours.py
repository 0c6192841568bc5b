"""Conformance behaviours of expiry (``ns.set(key, value, ttl=...)``).

Mixed into :class:`plugstore.testing.StoreConformance`.  These tests open the store with
a fake clock (``plugstore.open(url, clock=...)``), so nothing sleeps; a clock cannot
cross into a child process, so they all run in-process.

Deadlines are computed with the store clock.  On most engines the store clock also
decides when an entry has expired, and :meth:`test_the_store_clock_decides` moves it.
An engine that expires entries by its own clock (Redis: ``Backend.expires_on_engine_clock``)
only ever sees deadlines that agree on both clocks here: "live" entries get an hour from
the real time, and "expired" ones are written with the fake clock set far in the past
(:meth:`ExpiryBehaviours._write_expired`), so their deadline has passed on every clock.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest

import plugstore
from plugstore import (
    ExpiryNotSupportedError,
    InvalidKeyError,
    Namespace,
    Store,
    StoreNotOpenError,
)
from plugstore.keys import MAX_TTL

from ._threads import race_threads

#: Seconds the fake clock is moved back to write an entry that is expired on every
#: clock: with ``ttl=10`` its deadline is this much (minus 10 s) before the real time.
PAST = 10**6
#: A ttl that cannot run out during a test on any clock.
HOUR = 3600
_NS, _OTHER = "conformance", "conformance-other"  # the kit's namespaces (see __init__)


class FakeClock:
    """A store clock that moves only when told to: ``clock()`` is ``clock.now``."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ExpiryBehaviours:
    """Expired keys are absent on every read path; writes treat them as absent; plain
    writes clear a deadline; ``incr``/``compute`` keep one; ``purge`` deletes them."""

    # provided by StoreConformance
    open_store: Any
    thread_ops: ClassVar[int]

    # -- fixtures and helpers ----------------------------------------------------------

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock(time.time())

    @pytest.fixture
    def clock_store(self, store_url: str, clock: FakeClock) -> Iterator[Store]:
        """The store under test, opened with the fake ``clock``."""
        store: Store = self.open_store(store_url, clock=clock)
        yield store
        if not store.is_open:
            store = self.open_store(store_url)
        for name in (_NS, _OTHER):
            store.drop_namespace(name)
        store.close()

    @pytest.fixture
    def clock_ns(self, clock_store: Store) -> Namespace:
        self._need_expiry(clock_store)
        return clock_store.namespace(_NS)

    @staticmethod
    def _need_expiry(store: Store) -> None:
        if not store.backend.expiry:
            pytest.skip(f"{store.backend.name} stores cannot expire keys (Backend.expiry)")

    @staticmethod
    def _write_expired(clock: FakeClock, write: Callable[[], object]) -> None:
        """Run ``write`` (a write with ``ttl=10``) with the clock far in the past, so that
        what it writes is expired on the store clock and on the engine's alike."""
        now = clock.now
        clock.now = now - PAST
        try:
            write()
        finally:
            clock.now = now

    # -- reads --------------------------------------------------------------------------

    def test_expired_keys_are_absent_on_every_read_path(
        self, clock_store: Store, clock_ns: Namespace, clock: FakeClock
    ) -> None:
        ns = clock_ns
        ns["plain"] = 1
        ns.set("live", 2, ttl=HOUR)
        self._write_expired(clock, lambda: ns.set("gone", 3, ttl=10))
        self._write_expired(clock, lambda: ns.set_many({"gone:a": 4, "gone:b": 5}, ttl=10))
        other = clock_store.namespace(_OTHER)
        self._write_expired(clock, lambda: other.set("only-expired", 1, ttl=10))
        live = {"plain": 1, "live": 2}
        bucket = ns._b()
        for key in ("gone", "gone:a", "gone:b"):
            with pytest.raises(KeyError):
                ns[key]
            assert ns.get(key, "default") == "default"
            assert key not in ns
            assert ns.get_raw(key) is None
            with pytest.raises(KeyError):
                ns.ttl(key)
            with pytest.raises(KeyError):
                del ns[key]
            with pytest.raises(KeyError):
                ns.pop(key)
            assert ns.pop(key, "default") == "default"
        assert len(ns) == 2
        assert list(ns) == ["live", "plain"]
        assert list(ns.keys()) == ["live", "plain"]
        assert list(ns.values()) == [2, 1]
        assert dict(ns.items()) == live
        assert dict(ns) == live
        assert dict(ns.scan()) == live
        assert list(ns.scan("gone")) == []
        assert list(ns.scan_keys("gone")) == []
        assert ns.get_many(["plain", "live", "gone", "gone:a"]) == live
        assert bucket.count("gone") == 0
        assert list(bucket.keys("gone")) == []
        assert list(bucket.items("gone")) == []
        assert bucket.get_many_with_deadlines(["gone", "plain"]) == {"plain": (b"1", None)}
        assert bucket.get_with_deadline("gone") is None
        # a namespace holding only expired keys holds nothing
        assert _NS in clock_store.namespaces()
        assert _OTHER not in clock_store.namespaces()
        assert len(other) == 0
        assert clock_store.drop_namespace(_OTHER) == 0
        # and the live entries are untouched by all of that
        assert dict(ns) == live
        assert ns.ttl("plain") is None
        assert ns.ttl("live") == pytest.approx(HOUR, abs=0.01)

    def test_the_store_clock_decides(
        self, clock_store: Store, clock_ns: Namespace, clock: FakeClock
    ) -> None:
        if clock_store.backend.expires_on_engine_clock:
            pytest.skip(
                f"{clock_store.backend.name} expires entries by its server's clock; the "
                "store clock only computes their deadlines"
            )
        ns, start = clock_ns, clock.now
        ns.set("k", "v", ttl=10)
        ns.set_many({"a": 1, "b": 2}, ttl=20.5)
        ns["plain"] = 0
        assert ns.ttl("k") == pytest.approx(10)
        assert ns.ttl("a") == pytest.approx(20.5)
        clock.now = start + 9.75
        assert ns["k"] == "v"
        assert ns.ttl("k") == pytest.approx(0.25)
        assert len(ns) == 4
        clock.now = start + 10  # the deadline itself: expired
        assert "k" not in ns
        assert ns.get("k") is None
        assert len(ns) == 3
        assert list(ns) == ["a", "b", "plain"]
        with pytest.raises(KeyError):
            ns.ttl("k")
        assert ns.incr("k") == 1  # absent: a fresh counter, without a deadline
        clock.now = start + 21
        assert dict(ns) == {"plain": 0, "k": 1}
        assert ns.ttl("k") is None
        assert clock_store.purge() == 2  # a and b; k was replaced

    # -- writes ---------------------------------------------------------------------------

    def test_writes_without_ttl_clear_the_deadline(
        self, clock_store: Store, clock_ns: Namespace, clock: FakeClock
    ) -> None:
        ns, scope = clock_ns, clock_ns.scope(guild=1)
        clears: list[Callable[[], object]] = [
            lambda: ns.__setitem__("k", "plain"),
            lambda: ns.set("k", "plain"),
            lambda: ns.set("k", "plain", ttl=None),
            lambda: ns.set_many({"k": "plain"}),
            lambda: ns.update(k="plain"),
        ]
        for clear in clears:
            ns.set("k", "timed", ttl=HOUR)
            assert ns.ttl("k") == pytest.approx(HOUR, abs=0.01)
            clear()
            assert ns["k"] == "plain"
            assert ns.ttl("k") is None
        scoped_clears: list[Callable[[], object]] = [
            lambda: scope.__setitem__("k", "plain"),
            lambda: scope.set("k", "plain"),
            lambda: scope.set_many({"k": "plain"}),
        ]
        for scoped_clear in scoped_clears:
            scope.set("k", "timed", ttl=HOUR)
            assert scope.ttl("k") == pytest.approx(HOUR, abs=0.01)
            scoped_clear()
            assert scope.ttl("k") is None
        # a ttl replaces the deadline (or the lack of one) of an existing key
        ns.set("k", "short", ttl=60)
        assert ns.ttl("k") == pytest.approx(60, abs=0.01)
        ns.set("k", "long", ttl=2 * HOUR)
        assert ns.ttl("k") == pytest.approx(2 * HOUR, abs=0.01)
        assert ns["k"] == "long"
        if not clock_store.backend.expires_on_engine_clock:
            ns.set("p", 1, ttl=10)
            ns["p"] = 2
            clock.advance(HOUR)
            assert ns["p"] == 2  # the cleared deadline is really gone

    def test_incr_and_compare_and_set_keep_a_live_deadline(self, clock_ns: Namespace) -> None:
        ns = clock_ns
        ns.set("hits", 0, ttl=HOUR)  # a rate-limit window
        assert ns.incr("hits") == 1
        assert ns.incr("hits", 5) == 6
        assert ns.decr("hits") == 5
        assert ns.ttl("hits") == pytest.approx(HOUR, abs=0.01)
        assert ns.compute("hits", lambda v: v * 2) == 10
        assert ns.ttl("hits") == pytest.approx(HOUR, abs=0.01)
        ns.set("doc", {"a": 1}, ttl=2 * HOUR)
        with ns.mutable("doc") as doc:
            doc["b"] = 2
        assert ns["doc"] == {"a": 1, "b": 2}
        assert ns.setdefault("doc", {}) == {"a": 1, "b": 2}
        raw = ns.get_raw("doc")
        assert raw is not None
        assert ns.replace_if("doc", raw, {"c": 3})
        assert ns["doc"] == {"c": 3}
        assert ns.ttl("doc") == pytest.approx(2 * HOUR, abs=0.01)
        assert ns.pop("doc") == {"c": 3}
        with pytest.raises(KeyError):
            ns.ttl("doc")
        ns["doc"] = 1  # written again: no deadline left over from before the pop
        assert ns.ttl("doc") is None

    def test_writes_treat_expired_keys_as_absent(
        self, clock_store: Store, clock_ns: Namespace, clock: FakeClock
    ) -> None:
        ns = clock_ns
        expired: dict[str, Any] = {
            "counter": 41,
            "text": "not a number",
            "list": [1],
            "sd": "old",
            "mut": {"a": 1},
            "ri": "old",
            "rm": "old",
        }
        self._write_expired(clock, lambda: ns.set_many(expired, ttl=10))
        assert ns.incr("counter") == 1  # from 0, not from 41
        assert ns.incr("text", 2) == 2  # absent, not "not an integer"
        assert ns.compute("list", lambda v: [*v, 2], []) == [2]
        assert ns.setdefault("sd", "new") == "new"
        with pytest.raises(KeyError), ns.mutable("mut"):
            pass
        with ns.mutable("mut", {}) as value:
            value["b"] = 2
        assert ns["mut"] == {"b": 2}
        assert ns.replace_if("ri", None, "new")
        assert not ns.remove_if("rm", clock_store.codec.encode("old"))
        assert ns._b().cas("rm", None, None)  # "only if absent" holds for an expired key
        for key in ("counter", "text", "list", "sd", "mut", "ri"):
            assert ns.ttl(key) is None, key  # new entries: the old deadline is gone
        assert dict(ns) == {
            "counter": 1,
            "text": 2,
            "list": [2],
            "sd": "new",
            "mut": {"b": 2},
            "ri": "new",
        }

    def test_set_many_with_ttl(self, clock_ns: Namespace, clock: FakeClock) -> None:
        ns = clock_ns
        ns["b"] = "plain before"
        ns.set_many({"a": 1, "b": 2}, ttl=HOUR)
        ns.set_many([("c", 3)], ttl=2 * HOUR)
        ns.set_many({}, ttl=HOUR)
        assert dict(ns) == {"a": 1, "b": 2, "c": 3}
        assert ns.ttl("a") == pytest.approx(HOUR, abs=0.01)
        assert ns.ttl("b") == pytest.approx(HOUR, abs=0.01)
        assert ns.ttl("c") == pytest.approx(2 * HOUR, abs=0.01)
        many = {f"m{i:04d}": i for i in range(1100)}  # more than one page / batch
        self._write_expired(clock, lambda: ns.set_many(many, ttl=10))
        assert len(ns) == 3
        assert ns.get_many(list(many)) == {}
        ns.set_many(many, ttl=HOUR)
        assert len(ns) == 3 + len(many)
        assert ns.get_many(list(many)) == many
        with pytest.raises(InvalidKeyError):
            ns.set_many([("fine", 1), ("", 2)], ttl=HOUR)
        assert "fine" not in ns  # a refused batch writes nothing

    def test_ttl_reports_the_time_left(self, clock_ns: Namespace) -> None:
        ns = clock_ns
        with pytest.raises(KeyError):
            ns.ttl("absent")
        ns["plain"] = 1
        assert ns.ttl("plain") is None
        ns.set("timed", 1, ttl=90.5)
        left = ns.ttl("timed")
        assert isinstance(left, float)
        assert left == pytest.approx(90.5, abs=0.01)
        ns.set("int", 1, ttl=7200)
        assert ns.ttl("int") == pytest.approx(7200, abs=0.01)
        with pytest.raises(InvalidKeyError):
            ns.ttl("")

    def test_ttl_never_reads_above_the_ttl_just_set(
        self, clock_ns: Namespace, clock: FakeClock
    ) -> None:
        """``set(k, v, ttl=t)`` then ``ttl(k) <= t`` (namespaces and scopes, one key or a
        batch), with the store clock standing still between the two: a deadline is never
        rounded later (to milliseconds, to decimal text, or by the float sum ``now + t``)
        than ``t`` from the moment it was set."""
        ns = clock_ns
        scope = ns.scope(guild=7)
        rng = random.Random(18)
        ttls = [0.0015, 1.2345, 0.001, 0.0105, 0.5005, 2.9999, 90.5, 7200.123456, 86399.9995]
        ttls += [round(rng.uniform(0.001, 10), rng.randint(3, 7)) for _ in range(21)]
        over = []
        for i in range(200):
            t = ttls[i % len(ttls)]
            # Ahead of the real time, so that an entry lives for seconds on an engine that
            # expires by its own clock, with a sub-millisecond part that varies.
            clock.now = time.time() + 5 + rng.random()
            where: Any = scope if i % 3 == 0 else ns
            if i % 5 == 0:
                where.set_many({f"t{i % 7}": i}, ttl=t)
            else:
                where.set(f"t{i % 7}", i, ttl=t)
            left = where.ttl(f"t{i % 7}")
            assert left is not None
            if left > t:
                over.append((t, left))
        assert not over, f"{len(over)} of 200 reads above the ttl set, e.g. {over[:3]}"

    def test_bad_ttl_is_refused_and_writes_nothing(self, store: Store) -> None:
        ns, scope = store.namespace(_NS), store.namespace(_NS).scope(guild=1)
        bad_values: list[Any] = [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf, MAX_TTL * 2]
        bad_values += [True, False]
        for bad in bad_values:
            with pytest.raises(ValueError, match="ttl"):
                ns.set("k", 1, ttl=bad)
            with pytest.raises(ValueError, match="ttl"):
                ns.set_many({"k": 1}, ttl=bad)
            with pytest.raises(ValueError, match="ttl"):
                scope.set("k", 1, ttl=bad)
        bad_types: list[Any] = ["10", b"10", [10], Decimal(10)]
        for bad in bad_types:
            with pytest.raises(TypeError, match="ttl"):
                ns.set("k", 1, ttl=bad)
            with pytest.raises(TypeError, match="ttl"):
                scope.set_many({"k": 1}, ttl=bad)
        assert len(ns) == 0

    def test_backends_without_expiry_refuse_ttl(self, store: Store) -> None:
        if store.backend.expiry:
            pytest.skip(f"{store.backend.name} stores can expire keys")
        ns = store.namespace(_NS)
        writes: list[Callable[[], object]] = [
            lambda: ns.set("k", 1, ttl=10),
            lambda: ns.set_many({"k": 1}, ttl=10),
            lambda: ns.scope(guild=1).set("k", 1, ttl=10),
        ]
        for write in writes:
            with pytest.raises(ExpiryNotSupportedError):
                write()
            with pytest.raises(NotImplementedError):  # what it also is
                write()
        assert len(ns) == 0
        ns["k"] = 1
        assert ns.ttl("k") is None
        with pytest.raises(KeyError):
            ns.ttl("absent")
        assert store.purge() == 0

    # -- purge, namespaces, dump and copy -------------------------------------------------------

    def test_purge_deletes_expired_entries_and_counts_them(
        self, clock_store: Store, clock_ns: Namespace, clock: FakeClock
    ) -> None:
        ns, other = clock_ns, clock_store.namespace(_OTHER)
        ns["plain"] = 1
        ns.set("live", 2, ttl=HOUR)
        self._write_expired(clock, lambda: ns.set_many({"a": 1, "b": 2, "c": 3}, ttl=10))
        self._write_expired(clock, lambda: other.set_many({"x": 1, "y": 2}, ttl=10))
        other["kept"] = 3
        assert clock_store.purge(_NS) == 3
        assert clock_store.purge() == 2
        assert clock_store.purge() == 0
        assert dict(ns) == {"plain": 1, "live": 2}
        assert dict(other) == {"kept": 3}
        assert ns.ttl("live") == pytest.approx(HOUR, abs=0.01)
        # purged keys are gone for good: written again, they start afresh
        assert ns.incr("a") == 1
        with pytest.raises(plugstore.InvalidNamespaceError):
            clock_store.purge("not a namespace")

    def test_dump_and_copy_leave_expired_keys_out_and_carry_deadlines(
        self, clock_store: Store, clock_ns: Namespace, clock: FakeClock, tmp_path: Path
    ) -> None:
        from plugstore.cli.transfer import CopyResult, DumpStats, copy_namespace, dump_records

        ns = clock_ns
        ns["plain"] = 1
        ns.set("live", 2, ttl=HOUR)
        self._write_expired(clock, lambda: ns.set("gone", 3, ttl=10))
        records = {
            r["key"]: r for r in dump_records(clock_store, [_NS], raw_only=False, stats=DumpStats())
        }
        assert list(records) == ["live", "plain"]
        assert "expires_at" not in records["plain"]
        assert records["live"]["expires_at"] == pytest.approx(clock.now + HOUR, abs=0.01)

        def copy(src: Store, dst: Store, name: str) -> CopyResult:
            result = CopyResult(name, src.backend.bucket(name).count())
            copy_namespace(
                src, dst, result, raw=True, merge=False, batch_size=2, advance=lambda n: None
            )
            return result

        # out of the store under test, into memory, and back into it
        with plugstore.open("memory://", clock=clock) as mem:
            assert copy(clock_store, mem, _NS).copied == 2
            copied = mem.namespace(_NS)
            assert dict(copied) == {"plain": 1, "live": 2}
            assert copied.ttl("plain") is None
            assert copied.ttl("live") == pytest.approx(HOUR, abs=0.01)
            mem.namespace(_OTHER).set("timed", 4, ttl=2 * HOUR)
            mem.namespace(_OTHER)["plain"] = 5
            self._write_expired(clock, lambda: mem.namespace(_OTHER).set("gone", 6, ttl=10))
            assert copy(mem, clock_store, _OTHER).copied == 2
        back = clock_store.namespace(_OTHER)
        assert dict(back) == {"timed": 4, "plain": 5}
        assert back.ttl("timed") == pytest.approx(2 * HOUR, abs=0.01)
        assert back.ttl("plain") is None

    # -- scopes, threads, lifecycle ----------------------------------------------------------

    def test_scopes_expire_too(self, clock_ns: Namespace, clock: FakeClock) -> None:
        ns = clock_ns
        ns.register_defaults({"xp": 0}, levels="guild")
        g1, g2, g3 = ns.scope(guild=1), ns.scope(guild=2), ns.scope(guild=3)
        g1.set("xp", 5, ttl=HOUR)
        g1.set_many({"a": 1, "b": 2}, ttl=2 * HOUR)
        self._write_expired(clock, lambda: g1.set("old", 1, ttl=10))
        self._write_expired(clock, lambda: g2.set("old", 1, ttl=10))
        self._write_expired(clock, lambda: g3.set("xp", 7, ttl=10))
        assert g1.ttl("xp") == pytest.approx(HOUR, abs=0.01)
        assert g1.ttl("a") == pytest.approx(2 * HOUR, abs=0.01)
        assert "old" not in g1
        assert g1.get("old") is None
        assert list(g1) == ["a", "b", "xp"]
        assert len(g1) == 3
        assert dict(g1.items()) == {"a": 1, "b": 2, "xp": 5}
        assert g1.get_many(["old", "a"]) == {"a": 1}
        assert list(ns.scope().ids("guild")) == [1]  # guilds 2 and 3 hold only expired keys
        assert len(g2) == 1  # the default only
        assert g3["xp"] == 0  # expired: the registered default shows through again
        with pytest.raises(KeyError):
            g3.ttl("xp")  # a default is not stored, so it has no deadline
        assert g3.incr("xp") == 1
        assert g3.ttl("xp") is None

    def test_threads_incr_a_counter_with_a_deadline_exactly(self, clock_ns: Namespace) -> None:
        ns = clock_ns
        threads, per_thread = 6, max(10, self.thread_ops // 4)
        ns.set("window", 0, ttl=HOUR)
        race_threads(threads, per_thread, lambda: ns.incr("window"))
        assert ns["window"] == threads * per_thread
        assert ns.ttl("window") == pytest.approx(HOUR, abs=0.01)

    def test_expiry_after_close_raises(self, clock_store: Store, clock_ns: Namespace) -> None:
        ns = clock_ns
        ns.set("k", 1, ttl=HOUR)
        scope = ns.scope(guild=1)
        clock_store.close()
        calls: list[Callable[[], object]] = [
            lambda: ns.set("k", 1, ttl=HOUR),
            lambda: ns.set_many({"k": 1}, ttl=HOUR),
            lambda: ns.ttl("k"),
            lambda: scope.set("k", 1, ttl=HOUR),
            lambda: scope.ttl("k"),
            lambda: clock_store.purge(),
        ]
        for call in calls:
            with pytest.raises(StoreNotOpenError):
                call()
