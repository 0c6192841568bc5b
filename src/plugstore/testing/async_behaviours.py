"""Conformance behaviours of the async API (:mod:`plugstore.aio`).

Mixed into :class:`plugstore.testing.StoreConformance`, so every backend that runs the
kit runs these too: the async twin keeps the sync API's promises on that backend, and a
sync and an async user of one store see each other's writes, counters and locks.  Each
test runs its own event loop (``asyncio.run``): the kit needs no pytest plugin.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import pytest

import plugstore.aio as aio
from plugstore import (
    BatchNotAtomicError,
    ConfigurationError,
    ConflictError,
    DataVersionError,
    DecodeError,
    EncodeError,
    ExpiryNotSupportedError,
    InvalidKeyError,
    LockLostError,
    LockTimeoutError,
    Namespace,
    Store,
    StoreError,
    StoreNotOpenError,
    ValueTooLargeError,
)
from plugstore.aio import AsyncNamespace, AsyncStateStore, AsyncStore
from plugstore.aio.versioning import AsyncMigration
from plugstore.quarantine import QUARANTINE_NAMESPACE, entries
from plugstore.scopekeys import VERSION_KEY
from plugstore.state import StateStore
from plugstore.versioning import Migration

from .version_behaviours import VERSIONED

NS = "conformance"  # the kit's namespace: the store fixture drops it after each test

Body = Callable[[AsyncStore, AsyncNamespace], Awaitable[None]]


def run_async(store: Store, body: Body, *, quarantine: bool = False) -> None:
    """Run ``body(async store, its namespace NS)`` in a new event loop, over ``store``."""

    async def main() -> None:
        astore = await aio.wrap(store)
        try:
            await body(astore, astore.namespace(NS, quarantine=quarantine))
        finally:
            if astore.is_open:
                await astore.aclose()

    asyncio.run(main())


class AsyncBehaviours:
    """The async twin keeps the sync API's promises on this backend."""

    #: Increments per task in the async multi-process races (8 tasks x 4 processes).
    async_ops: ClassVar[int] = 50

    # provided by StoreConformance
    _need_multiprocess: Any
    _children: Any
    _child_url: Any
    open_store: Any
    options: ClassVar[dict[str, Any]]

    # -- values and keys ----------------------------------------------------------------

    def test_async_get_set_delete(self, store: Store, ns: Namespace) -> None:
        async def body(astore: AsyncStore, ans: AsyncNamespace) -> None:
            assert await ans.get("absent") is None
            assert await ans.get("absent", 7) == 7
            with pytest.raises(KeyError):
                await ans.delete("absent")
            await ans.set("k", {"a": [1, 2], "b": None})
            assert await ans.get("k") == {"a": [1, 2], "b": None}
            assert await ans.contains("k")
            assert not await ans.contains("nope")
            assert not await ans.contains("")  # invalid: absent, not an error
            await ans.set("k", 0)
            assert await ans.get("k", 9) == 0  # falsy values are present
            await ans.delete("k")
            assert not await ans.contains("k")
            with pytest.raises(KeyError):
                await ans.pop("k")
            assert await ans.pop("k", "d") == "d"

        run_async(store, body)

    def test_async_writes_are_the_sync_layout(self, store: Store, ns: Namespace) -> None:
        """What one API writes, the other reads, byte for byte."""
        values: list[Any] = [1, "two", [3.5, None], {"x": {"y": True}}, b"\x00bytes"]

        async def body(astore: AsyncStore, ans: AsyncNamespace) -> None:
            for i, value in enumerate(values):
                await ans.set(f"a{i}", value)
            ns["from-sync"] = {"n": 1}
            assert await ans.get("from-sync") == {"n": 1}
            for i, value in enumerate(values):
                assert ns[f"a{i}"] == value
                assert await ans.get_raw(f"a{i}") == ns.get_raw(f"a{i}")
            ns.incr("counter", 5)
            assert await ans.incr("counter", 2) == 7
            assert ns["counter"] == 7

        run_async(store, body)

    def test_async_listings(self, store: Store, ns: Namespace) -> None:
        keys = ["b", "a", "é", "a/1", "Z", "a/0", "\U0001f600", "~"]

        async def body(astore: AsyncStore, ans: AsyncNamespace) -> None:
            await ans.set_many({key: key.upper() for key in keys})
            ns.scope(guild=1)["hidden"] = 1  # scoped data is not a plain key
            assert [k async for k in ans.keys()] == sorted(keys)  # noqa: SIM118 - an async listing, not dict.keys()
            assert [k async for k in ans.keys("a/")] == ["a/0", "a/1"]
            assert [kv async for kv in ans.scan("a")] == [
                ("a", "A"),
                ("a/0", "A/0"),
                ("a/1", "A/1"),
            ]
            assert await ans.count() == len(keys)
            found = await ans.get_many(["~", "b", "missing", "a"])
            assert list(found.items()) == [("a", "A"), ("b", "B"), ("~", "~")]
            with pytest.raises(TypeError):
                await ans.get_many("ab")
            many = {f"p{i:04d}": i for i in range(600)}  # more than one page
            await ans.set_many(many)
            assert [k async for k in ans.keys("p")] == sorted(many)
            # a bucket's seek resumes a listing after any key, as the sync one does
            bucket = ans._b()
            assert await bucket.keys_after("p", "p0299", 2) == ["p0300", "p0301"]
            assert await bucket.keys_after("p", "p02995", 1) == ["p0300"]
            assert await bucket.keys_after("p", "p0599", 3) == []
            assert await bucket.keys_after("", "p0599", 2) == ["~", "é"]
            # and adds up stored bytes as the sync one does: keys of 5 bytes, values the
            # decimal text of 0-599 (10 of 1 digit, 90 of 2, 500 of 3)
            assert await bucket.stored_size("p") == 600 * 5 + 10 + 180 + 1500
            assert await bucket.stored_size("p00") == 100 * 5 + 10 + 180
            assert await bucket.stored_size("q") == 0
            assert await bucket.stored_size() == ns._b().stored_size()
            await ans.clear()
            assert await ans.count() == 0
            assert ns.scope(guild=1)["hidden"] == 1  # clear() keeps scoped data

        run_async(store, body)

    def test_async_bad_input_raises_plugstore_errors(self, store: Store, ns: Namespace) -> None:
        async def body(astore: AsyncStore, ans: AsyncNamespace) -> None:
            for bad in ["", "a\x00b", "x" * 2000, 5, None]:
                with pytest.raises(InvalidKeyError):
                    await ans.set(bad, 1)  # type: ignore[arg-type]
                with pytest.raises(InvalidKeyError):
                    await ans.get(bad)  # type: ignore[arg-type]
            with pytest.raises(InvalidKeyError):
                await ans.set("\x1fforged", 1)  # scoped keys are reserved
            with pytest.raises(EncodeError):
                await ans.set("k", object())
            with pytest.raises(ValueTooLargeError):
                await ans.set("k", "x" * (astore.max_value_size + 1))
            with pytest.raises(TypeError):
                await ans.incr("n", 1.5)  # type: ignore[arg-type]
            for ttl in (0, -1, "1", float("nan")):
                with pytest.raises((ValueError, TypeError)):
                    await ans.set("k", 1, ttl=ttl)  # type: ignore[arg-type]
            assert not await ans.contains("k")  # nothing was written
            with pytest.raises(ValueError, match="timeout"):
                ans.lock("k", timeout=-1)

        run_async(store, body)

    # -- atomics ----------------------------------------------------------------------------

    def test_async_concurrent_atomics(self, store: Store, ns: Namespace) -> None:
        async def body(astore: AsyncStore, ans: AsyncNamespace) -> None:
            await asyncio.gather(*(ans.incr("n") for _ in range(50)))
            assert await ans.get("n") == 50
            await asyncio.gather(*(ans.compute("c", lambda v: [*v, 1], []) for _ in range(20)))
            assert await ans.get("c") == [1] * 20
            got = await asyncio.gather(*(ans.setdefault("s", i) for i in range(20)))
            assert len(set(got)) == 1
            assert await ans.get("s") == got[0]
            popped = await asyncio.gather(*(ans.pop("s", None) for _ in range(20)))
            assert [p for p in popped if p is not None] == [got[0]]  # exactly one won
            assert await ans.decr("n", 10) == 40

        run_async(store, body)

    def test_async_replace_if_remove_if_and_mutable(self, store: Store, ns: Namespace) -> None:
        async def body(astore: AsyncStore, ans: AsyncNamespace) -> None:
            assert await ans.replace_if("k", None, 1)
            assert not await ans.replace_if("k", None, 2)
            raw = await ans.get_raw("k")
            assert raw is not None
            assert await ans.replace_if("k", raw, 3)
            assert not await ans.remove_if("k", raw)  # no longer those bytes
            assert await ans.remove_if("k", ns.get_raw("k") or b"")
            async with ans.mutable("m", {}) as value:
                value["a"] = 1
            assert await ans.get("m") == {"a": 1}
            with pytest.raises(KeyError):
                async with ans.mutable("absent"):
                    pass
            with pytest.raises(ConflictError):  # noqa: PT012 - the block is the test
                async with ans.mutable("m") as value:
                    value["a"] = 2
                    ns["m"] = {"a": "theirs"}  # another writer got there first
            assert await ans.get("m") == {"a": "theirs"}  # theirs is kept
            with pytest.raises(RuntimeError):  # noqa: PT012 - the block is the test
                async with ans.mutable("m") as value:
                    value["a"] = "lost"
                    raise RuntimeError("the block failed")
            assert await ans.get("m") == {"a": "theirs"}  # nothing written

        run_async(store, body)

    # -- locks ----------------------------------------------------------------------------

    def test_async_lock_excludes_tasks_and_threads(self, store: Store, ns: Namespace) -> None:
        async def body(astore: AsyncStore, ans: AsyncNamespace) -> None:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            tick = asyncio.ensure_future(ticker())
            async with ans.lock("k", timeout=5) as lock:
                assert lock.held
                with pytest.raises(LockTimeoutError):
                    await ans.lock("k", timeout=0).acquire()
                started = time.monotonic()
                with pytest.raises(LockTimeoutError):
                    await ans.lock("k", timeout=0.3).acquire()
                assert time.monotonic() - started >= 0.25
                assert ticks >= 5  # the loop ran while the waiter waited

                def sync_try() -> None:
                    with pytest.raises(LockTimeoutError):
                        ns.lock("k", timeout=0).acquire()

                await asyncio.get_running_loop().run_in_executor(None, sync_try)
                async with ans.lock("other", timeout=0):
                    pass
            assert not lock.held
            tick.cancel()
            with ns.lock("k", timeout=0):  # released: the sync API takes it at once
                pass
            async with ans.lock("k", timeout=0):
                pass

        run_async(store, body)

    def test_async_closing_a_store_frees_the_session_locks_it_holds(
        self, store: Store, ns: Namespace, store_url: str
    ) -> None:
        """The async twin of the lock kit's close test: where locks are sessions,
        ``aclose()`` ends those of the locks the store still holds."""
        if store.backend.lease_locks:
            pytest.skip(f"{store.backend.name} locks are leases: they run out, closed or not")

        async def main() -> None:
            astore = await aio.open(store_url, **self.options)
            lock = await astore.namespace(NS).lock("k", timeout=0).acquire()
            with pytest.raises(LockTimeoutError):
                ns.lock("k", timeout=0).acquire()
            await astore.aclose()
            with ns.lock("k", timeout=5) as taken:
                assert taken.held
            # Lost with its session; or, where the lock's calls run on the store's
            # threads, refused: they stopped with aclose().
            with pytest.raises((LockLostError, StoreNotOpenError)):
                await lock.release()

        asyncio.run(main())

    def test_async_locked_increments_from_tasks_and_threads(
        self, store: Store, ns: Namespace
    ) -> None:
        tasks, threads, turns = 8, 2, 15

        async def body(astore: AsyncStore, ans: AsyncNamespace) -> None:
            async def task_turns() -> None:
                for _ in range(turns):
                    async with ans.lock("total", timeout=60):
                        value = await ans.get("total", 0)
                        await asyncio.sleep(0)  # let the others run in between
                        await ans.set("total", value + 1)

            def thread_turns() -> None:
                for _ in range(turns):
                    with ns.lock("total", timeout=60):
                        ns["total"] = ns.get("total", 0) + 1

            loop = asyncio.get_running_loop()
            await asyncio.gather(
                *(task_turns() for _ in range(tasks)),
                *(loop.run_in_executor(None, thread_turns) for _ in range(threads)),
            )
            assert await ans.get("total") == (tasks + threads) * turns

        run_async(store, body)

    def test_async_cancelled_lock_waiter_leaves_nothing_taken(
        self, store: Store, ns: Namespace
    ) -> None:
        async def body(astore: AsyncStore, ans: AsyncNamespace) -> None:
            # Held by the sync API, so that the first async waiter waits in the engine
            # (queued in a lease entry, or trying the engine's own lock) and the others
            # at the async store's gate.
            holder = ns.lock("k", timeout=5).acquire()
            waiters = [
                asyncio.ensure_future(ans.lock("k", timeout=None).acquire()) for _ in range(3)
            ]
            await asyncio.sleep(0.3)
            for waiter in waiters:
                waiter.cancel()
            for waiter in waiters:
                with pytest.raises(asyncio.CancelledError):
                    await waiter
            holder.release()
            # Nobody holds it, in the engine or at the store's gate.  (A try that was
            # under way on a thread when its task was cancelled may take it just after
            # the release, and gives it back as soon as it returns: hence the timeout.)
            async with ans.lock("k", timeout=2):
                pass
            with ns.lock("k", timeout=2):
                pass
            assert not astore._gates._gates

            # Cancelled while holding: leaving the block still releases it.
            entered = asyncio.Event()

            async def hold_forever() -> None:
                async with ans.lock("k", timeout=5):
                    entered.set()
                    await asyncio.sleep(3600)

            task = asyncio.ensure_future(hold_forever())
            await entered.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            async with ans.lock("k", timeout=0):
                pass

        run_async(store, body)

    def test_async_add_expire_persist(self, store: Store, ns: Namespace) -> None:
        async def body(astore: AsyncStore, ans: AsyncNamespace) -> None:
            won = await asyncio.gather(*(ans.add("k", i) for i in range(30)))
            assert won.count(True) == 1  # exactly one task inserted it
            assert await ans.get("k") == won.index(True)
            assert not await ans.add("k", "again")
            with pytest.raises(InvalidKeyError):
                await ans.add("\x1fforged", 1)
            scope = ans.scope(user=1)
            assert await scope.add("s", 1)
            assert not await scope.add("s", 2)
            assert ns.scope(user=1)["s"] == 1
            if not store.backend.expiry:
                with pytest.raises(ExpiryNotSupportedError):
                    await ans.expire("k", 10)
                assert await ans.persist("k")
                return
            raw = await ans.get_raw("k")
            assert await ans.expire("k", 3600)
            assert await ans.get_raw("k") == raw  # the value is untouched
            left = await ans.ttl("k")
            assert left is not None
            assert 3590 < left <= 3600
            assert await ans.persist("k")
            assert await ans.ttl("k") is None
            assert not await ans.expire("absent", 10)
            assert not await ans.persist("absent")
            assert await ans.add("short", 1, ttl=0.3)
            assert await scope.expire("s", 0.3)
            await asyncio.sleep(0.6)
            assert await ans.add("short", 2)  # the expired key counted as absent
            assert await ans.get("short") == 2
            assert not await scope.persist("s")  # expired: absent
            assert await scope.add("s", 3)

        run_async(store, body)

    # -- scopes ----------------------------------------------------------------------------

    def test_async_scopes_read_and_write_the_sync_entries(
        self, store: Store, ns: Namespace
    ) -> None:
        async def body(astore: AsyncStore, ans: AsyncNamespace) -> None:
            ans.register_defaults(
                {"xp": 0, "prefs": {"lang": "en", "tz": "UTC"}}, levels=("guild", "member")
            )
            member = ans.scope(guild=1).scope(member=2)
            assert member.path == (("guild", 1), ("member", 2))
            assert await member.get("xp") == 0  # a default, never written
            assert not await member.is_stored("xp")
            assert await member.contains("xp")
            with pytest.raises(KeyError):
                await member.delete("xp")  # only a default
            await member.set("prefs", {"lang": "fr"})
            assert await member.get("prefs") == {"lang": "fr", "tz": "UTC"}  # merged
            assert await member.incr("xp", 5) == 5
            assert ns.scope(guild=1, member=2)["xp"] == 5  # the sync API's entry
            ns.scope(guild=1, member=2)["a"] = "sync"
            assert [k async for k in member.keys()] == ["a", "prefs", "xp"]  # noqa: SIM118
            assert [kv async for kv in member.scan()][:1] == [("a", "sync")]
            assert await member.count() == 3
            assert await member.get_many(["xp", "a", "zz"]) == {"a": "sync", "xp": 5}
            assert await member.compute("xp", lambda v: v * 2) == 10
            assert await member.setdefault("new", [1]) == [1]
            assert await member.pop("new") == [1]
            assert await member.pop("absent", "d") == "d"
            async with member.mutable("prefs") as prefs:
                prefs["tz"] = "CET"
            assert ns.scope(guild=1, member=2)["prefs"] == {"lang": "fr", "tz": "CET"}
            for member_id in (12, 2, "b", "a"):
                await ans.scope(guild=1, member=member_id).set("seen", True)
            guild = ans.scope(guild=1)
            assert [i async for i in guild.ids("member")] == [12, 2, "a", "b"]
            children = await guild.children("member")
            assert list(children) == [12, 2, "a", "b"]
            assert children[12] == {"prefs": {"lang": "en", "tz": "UTC"}, "seen": True, "xp": 0}
            tree = await ans.scope().tree("guild", "member")
            assert tree[1][2]["xp"] == 10
            assert await ans.count() == 0  # scoped entries are not plain keys
            await member.clear()
            assert await member.get("xp") == 0
            assert await guild.clear_all() == 3  # member 2's own keys were cleared above
            assert [i async for i in guild.ids("member")] == []

        run_async(store, body)

    def test_async_scope_replace_batch_and_locks(self, store: Store, ns: Namespace) -> None:
        async def body(astore: AsyncStore, ans: AsyncNamespace) -> None:
            one, two = ans.scope(guild=1, member=1), ans.scope(guild=1, member=2)
            await one.set_many({"a": 1, "b": 2})
            if not store.backend.atomic_batches:
                with pytest.raises(BatchNotAtomicError):
                    await one.replace({"c": 3})
                await one.replace({"c": 3}, atomic=False)
            else:
                await one.replace({"c": 3})
                async with ans.batch() as batch:
                    batch.set(two, "x", 1)
                    batch.delete(one, "c")
                assert [k async for k in two.keys()] == ["x"]  # noqa: SIM118
                with pytest.raises(RuntimeError):  # noqa: PT012 - the block is the test
                    async with ans.batch() as batch:
                        batch.set(two, "y", 1)
                        raise RuntimeError("abandoned")
                assert not await two.contains("y")  # nothing written
            assert ns.scope(guild=1, member=1).get("a") is None
            async with one.group_lock(timeout=5):
                with pytest.raises(LockTimeoutError):
                    ns.scope(guild=1, member=1).group_lock(timeout=0).acquire()
                async with one.lock("a", timeout=0):  # a key lock is another lock
                    pass

        run_async(store, body)

    # -- versions and states ----------------------------------------------------------

    def test_async_versioned_namespace_migrates_once_and_stamps(self, store: Store) -> None:
        store.namespace(VERSIONED).update(alice=1, bob=2)
        runs: list[str] = []

        async def to_channels(m: AsyncMigration) -> None:  # an async step
            runs.append(f"{m.from_version}->{m.to_version}")
            general = m.namespace.scope(channel="general")
            async for key, value in m.items():
                if not key.startswith("\x1f"):
                    await general.set(key, value)
                    await m.namespace.delete(key)

        def doubled(m: Migration) -> None:  # a step written for the sync API
            runs.append(f"{m.from_version}->{m.to_version}")
            general = m.namespace.scope(channel="general")
            for key, value in list(general.items()):
                general[key] = value * 2

        async def body(astore: AsyncStore, ans: AsyncNamespace) -> None:
            unawaited = astore.namespace(VERSIONED, version=3, migrations={2: to_channels})
            with pytest.raises(StoreError, match="await"):
                await unawaited.get("alice")
            migrations: dict[int, Callable[..., Any]] = {2: to_channels, 3: doubled}
            versioned = await astore.namespace(VERSIONED, version=3, migrations=migrations)
            assert await versioned.data_version() == 3
            assert await versioned.scope(channel="general").get("alice") == 2
            assert [k async for k in versioned.keys()] == []  # noqa: SIM118
            again = await astore.namespace(VERSIONED, version=3, migrations=migrations)
            assert await again.data_version() == 3
            with pytest.raises(DataVersionError):
                await astore.namespace(VERSIONED, version=2, migrations={2: to_channels})
            with pytest.raises(ConfigurationError):
                await astore.namespace(VERSIONED, version=5, migrations={9: doubled})
            plain = await astore.namespace(VERSIONED)  # awaiting a plain namespace is fine
            assert await plain.data_version() == 3

        run_async(store, body)
        assert runs == ["1->2", "2->3"]  # each step ran once
        assert store.namespace(VERSIONED).data_version == 3  # the sync API sees the stamp

    def test_async_failed_migration_keeps_the_stamp_and_frees_the_lock(self, store: Store) -> None:
        store.namespace(VERSIONED).update(alice=1)

        async def to_v2(m: AsyncMigration) -> None:
            await m.namespace.set("v2", True)

        async def broken(m: AsyncMigration) -> None:
            raise RuntimeError("step 3 broke")

        async def body(astore: AsyncStore, ans: AsyncNamespace) -> None:
            ns = astore.namespace(VERSIONED, version=3, migrations={2: to_v2, 3: broken})
            with pytest.raises(RuntimeError, match="step 3 broke"):
                await ns
            with pytest.raises(StoreError, match="await"):
                await ns.get("alice")  # still not migrated: still refused
            assert await astore.namespace(VERSIONED).data_version() == 2
            async with astore.namespace(VERSIONED).lock(VERSION_KEY, timeout=0):
                pass  # the migration lock was released

        run_async(store, body)

    def test_async_state_store_shares_the_sync_states(self, store: Store, ns: Namespace) -> None:
        sync_states = StateStore(ns)

        async def body(astore: AsyncStore, ans: AsyncNamespace) -> None:
            states = AsyncStateStore(ans)
            assert await states.get("h", "ana") == "START"
            await states.set("h", "ana", "ASKED")
            assert sync_states.get("h", "ana") == "ASKED"
            results = await asyncio.gather(
                *(states.transition("h", "ana", "ASKED", f"S{i}") for i in range(10))
            )
            assert results.count(True) == 1  # exactly one task took the step
            assert await states.count() == 1
            moved = [f"S{i}" for i, won in enumerate(results) if won]
            assert [pair async for pair in states.states()] == [(states.key("h", "ana"), *moved)]
            await states.set("h", "ana", "START")  # back to START: the entry goes
            assert await states.count() == 0
            with pytest.raises(TypeError):
                await states.set("h", "ana", "")

        run_async(store, body)

    # -- cancellation, closing, loops, forks ----------------------------------------------

    def test_async_cancelled_writes_land_whole_or_not_at_all(
        self, store: Store, ns: Namespace
    ) -> None:
        values = {f"k{i}": {"i": i, "pad": "x" * 5000} for i in range(40)}

        async def body(astore: AsyncStore, ans: AsyncNamespace) -> None:
            rng = random.Random(7)
            for round_ in range(3):
                writes = [
                    asyncio.ensure_future(
                        ans.compute(k, lambda _, v=v, r=round_: {**v, "r": r})  # type: ignore[misc]
                        if rng.random() < 0.5
                        else ans.set(k, {**v, "r": round_})
                    )
                    for k, v in values.items()
                ]
                await asyncio.sleep(rng.random() * 0.01)
                for write in writes:
                    write.cancel()
                await asyncio.gather(*writes, return_exceptions=True)
            await asyncio.sleep(0.2)  # calls under way in threads finish
            for key, value in values.items():
                stored = ns.get(key)
                if stored is not None:  # landed whole
                    assert (stored["i"], stored["pad"]) == (value["i"], value["pad"])
            # Nothing leaked: the store still serves many concurrent calls, then closes.
            await asyncio.gather(*(ans.incr("after") for _ in range(50)))
            assert await ans.get("after") == 50

        run_async(store, body)

    def test_async_closed_store_refuses_every_call(self, store: Store) -> None:
        async def main() -> None:
            astore = await aio.wrap(store)
            ans = astore.namespace(NS)
            await ans.set("k", 1)
            await astore.aclose()
            assert not astore.is_open
            for call in (
                lambda: ans.get("k"),
                lambda: ans.set("k", 2),
                lambda: ans.incr("n"),
                lambda: ans.count(),
                lambda: astore.namespaces(),
            ):
                with pytest.raises(StoreNotOpenError):
                    await call()
            with pytest.raises(StoreNotOpenError):
                astore.namespace(NS)
            with pytest.raises(StoreNotOpenError):
                await astore.aclose()  # closing twice raises, as the sync store does

        asyncio.run(main())
        assert store.is_open  # a wrapped store stays its owner's to close
        assert store.namespace(NS)["k"] == 1

    def test_async_store_belongs_to_its_event_loop(self, store: Store) -> None:
        holder: dict[str, AsyncStore] = {}

        async def first() -> None:
            holder["store"] = await aio.wrap(store)
            await holder["store"].namespace(NS).set("k", 1)

        async def second() -> None:
            with pytest.raises(StoreError, match="event loop"):
                await holder["store"].namespace(NS).get("k")

        asyncio.run(first())
        done = threading.Event()

        def other_thread() -> None:
            asyncio.run(asyncio.wait_for(second(), 10))  # never hangs
            done.set()

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(20)
        assert done.is_set()
        with pytest.raises(StoreError, match="async store"):
            holder["store"]._runtime.check()  # outside any loop

    def test_async_store_refused_in_a_forked_child(self, store: Store) -> None:
        if not hasattr(os, "fork"):
            pytest.skip("no fork() on this platform")

        async def main() -> None:
            astore = await aio.wrap(store)
            ans = astore.namespace(NS)
            await ans.set("k", 1)
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: the parent's store must refuse, not hang
                os.close(read)
                verdict = b"no error"
                try:
                    asyncio.run(asyncio.wait_for(astore.namespace(NS).get("k"), 10))
                except StoreError as exc:
                    verdict = b"forked" if "forked" in str(exc) else str(exc).encode()
                except BaseException as exc:
                    verdict = repr(exc).encode()
                os.write(write, verdict)
                os._exit(0)
            os.close(write)
            with os.fdopen(read, "rb") as pipe:
                verdict = pipe.read()
            os.waitpid(pid, 0)
            assert verdict == b"forked"
            assert await ans.get("k") == 1  # the parent's store works on
            await astore.aclose()

        asyncio.run(main())

    # -- expiry and quarantine ------------------------------------------------------------

    def test_async_expiry(self, store: Store, ns: Namespace) -> None:
        if not store.backend.expiry:
            pytest.skip(f"{store.backend.name} stores cannot expire keys")

        async def body(astore: AsyncStore, ans: AsyncNamespace) -> None:
            await ans.set("short", 1, ttl=0.4)
            await ans.set("long", 2, ttl=3600)
            await ans.set_many({"m1": 1, "m2": 2}, ttl=0.4)
            await ans.set("plain", 3)
            long_ttl = await ans.ttl("long")
            assert long_ttl is not None
            assert 3590 < long_ttl <= 3600
            assert await ans.ttl("plain") is None
            with pytest.raises(KeyError):
                await ans.ttl("absent")
            await asyncio.sleep(0.8)
            assert await ans.get("short") is None
            assert not await ans.contains("m1")
            assert [k async for k in ans.keys()] == ["long", "plain"]  # noqa: SIM118 - an async listing, not dict.keys()
            assert await ans.incr("short") == 1  # an expired key counts as absent
            assert ns["long"] == 2

        run_async(store, body)

    def test_async_quarantine_sets_undecodable_values_aside(
        self, store: Store, ns: Namespace
    ) -> None:
        for i in range(3):
            ns[f"good{i}"] = i
        ns._bucket.set("bad", b"\xff not a value")

        async def body(astore: AsyncStore, ans: AsyncNamespace) -> None:
            assert await ans.get("bad", "gone") == "gone"
            assert not await ans.contains("bad")
            assert [k async for k in ans.keys()] == ["good0", "good1", "good2"]  # noqa: SIM118 - an async listing, not dict.keys()

        run_async(store, body, quarantine=True)
        (entry,) = [e for e in entries(store, NS) if e.key == "bad"]
        assert entry.raw == b"\xff not a value"
        ns._bucket.set("bad", b"\xff again")

        async def strict(astore: AsyncStore, ans: AsyncNamespace) -> None:
            with pytest.raises(DecodeError):
                await ans.get("bad")

        run_async(store, strict)
        store.drop_namespace(QUARANTINE_NAMESPACE)

    # -- other processes ----------------------------------------------------------------

    def test_async_store_opened_apart_shares_data_and_locks(
        self, store: Store, ns: Namespace, store_url: str
    ) -> None:
        """``plugstore.aio.open`` on the URL: another opener of the same data."""
        if not (store.backend.multiprocess or store.backend.url.host):
            pytest.skip(f"each {store.backend.name} store opened by URL is a store of its own")

        async def main() -> None:
            async with aio.open(self._child_url(store), **self.options) as astore:
                ans = astore.namespace(NS)
                ns["sync"] = 1
                assert await ans.get("sync") == 1
                await ans.set("async", 2)
                assert ns["async"] == 2
                with ns.lock("k", timeout=5), pytest.raises(LockTimeoutError):
                    await ans.lock("k", timeout=0.2).acquire()
                async with ans.lock("k", timeout=5):
                    with pytest.raises(LockTimeoutError):
                        ns.lock("k", timeout=0.2).acquire()
            assert not astore.is_open

        asyncio.run(main())

    def test_async_processes_lose_no_update(self, store: Store, ns: Namespace) -> None:
        """8 tasks in each of 4 processes: ``incr`` and locked get-then-set."""
        self._need_multiprocess(store)
        for mode, key in (("async_incr", "hits"), ("async_locked", "locked")):
            specs = [{"key": key, "n": self.async_ops, "tasks": 8} for _ in range(4)]
            procs = self._children(store, mode, specs)
            for proc in procs:
                assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
            for proc in procs:
                proc.stdin.write("go\n")
                proc.stdin.flush()
            for proc in procs:
                out, err = proc.communicate(timeout=300)
                assert proc.returncode == 0, err
                assert "done" in out, err
            assert ns[key] == 4 * 8 * self.async_ops, mode
