"""Conformance tests: reads see other processes' writes, near cache or not.

A store opened with ``cache=N`` (:mod:`plugstore.nearcache`) serves repeated reads from
process memory; these tests read keys until they are cached, let another process
change them, and check what the reads say next.  Where the cache's coherence is
immediate (SQLite's ``data_version``; no cache at all), the very next read sees the
change; where it is told by the engine (PostgreSQL ``NOTIFY``, Redis invalidation
messages), within a few milliseconds: the tests allow seconds, the bound itself is
measured by ``benchmarks/nearcache.py``.  They run on every backend the kit runs on,
with and without a cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..namespace import Namespace
    from ..store import Store

#: How long a told cache may take in these tests (the benchmark measures the real bound).
EVENTUALLY = 10.0


def coherent_at_once(store: Store) -> bool:
    """Whether the next read after another process's write must see it."""
    cache = store.backend.near_cache
    return cache is None or cache.coherence.immediate


class CacheBehaviours:
    """Mixed into :class:`~plugstore.testing.StoreConformance`."""

    # Provided by StoreConformance.
    _need_multiprocess: Callable[..., None]
    _children: Callable[..., list[Any]]

    def _settles(self, store: Store, check: Callable[[], bool], what: str) -> None:
        if coherent_at_once(store):
            assert check(), f"{what}: the first read after the other process's write"
            return
        deadline = time.monotonic() + EVENTUALLY
        while not check():
            assert time.monotonic() < deadline, f"{what}: still not seen after {EVENTUALLY}s"
            time.sleep(0.001)

    def test_reads_see_another_processs_writes(self, store: Store, ns: Namespace) -> None:
        from . import release_together

        self._need_multiprocess(store)
        ns.update({"hot": 1, "gone": 1})
        guild = ns.scope(guild=1)
        guild["prefix"] = "!"
        for _ in range(3):  # cached now, where there is a cache
            assert ns["hot"] == 1
            assert ns.get("new") is None
            assert "gone" in ns
            assert guild["prefix"] == "!"
        ops: list[list[Any]] = [
            ["set", "hot", 2],
            ["delete", "gone"],
            ["set", "new", {"a": [1]}],
            ["scope_set", {"guild": 1}, "prefix", "?"],
        ]
        release_together(self._children(store, "apply", [{"ops": ops}]))
        self._settles(store, lambda: ns["hot"] == 2, "a changed value")
        self._settles(store, lambda: "gone" not in ns, "a deleted key")
        self._settles(store, lambda: ns.get("new") == {"a": [1]}, "a new key")
        self._settles(store, lambda: guild["prefix"] == "?", "a scope's key")
        for _ in range(3):  # and it stays so
            assert ns["hot"] == 2
            assert ns.get("gone") is None

    def test_a_key_another_process_expires_is_not_served_after_its_deadline(
        self, store: Store, ns: Namespace
    ) -> None:
        from . import release_together

        self._need_multiprocess(store)
        if not store.backend.expiry:
            pytest.skip(f"{store.backend.name} stores cannot expire keys")
        ns["timed"] = "v"
        for _ in range(3):
            assert ns["timed"] == "v"
        release_together(self._children(store, "apply", [{"ops": [["expire", "timed", 0.3]]}]))
        time.sleep(0.35)  # past the deadline the other process set
        self._settles(store, lambda: ns.get("timed") is None, "a key expired by another")
        assert "timed" not in ns

    def test_this_processs_writes_are_read_back_at_once(self, store: Store, ns: Namespace) -> None:
        ns["k"] = 1
        assert ns["k"] == 1  # cached
        for n in range(2, 6):
            ns["k"] = n
            assert ns["k"] == n
        ns.incr("k", 10)
        assert ns["k"] == 15
        assert ns.compute("k", lambda v: v * 2) == 30
        assert ns["k"] == 30
        assert ns.replace_if("k", ns.get_raw("k"), ["x"])
        assert ns["k"] == ["x"]
        with ns.mutable("k") as value:
            value.append("y")
        assert ns["k"] == ["x", "y"]
        assert not ns.replace_if("k", b'["x"]', "stale")  # compared with the engine's value
        assert ns["k"] == ["x", "y"]
        del ns["k"]
        assert ns.get("k") is None
        ns.set_many({"k": 1, "j": 2})
        assert (ns["k"], ns["j"]) == (1, 2)
        ns.clear()
        assert ns.get("k") is None
        guild = ns.scope(guild=2)
        guild["k"] = "before"
        assert guild["k"] == "before"
        with ns.batch(atomic=store.backend.atomic_batches) as batch:
            batch.set(guild, "k", "batched")
        assert guild["k"] == "batched"
