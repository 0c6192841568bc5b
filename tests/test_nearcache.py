"""The near cache's own rules (plugstore.nearcache); the conformance kit runs whole through
it on every backend that supports it (see the ``...NearCache`` kit classes)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import plugstore
from plugstore.errors import ConfigurationError
from plugstore.locks import LOCKS_NAMESPACE
from plugstore.nearcache import CachedBucket, Listener, NearCache


def test_the_option_is_read_from_the_url_and_shown_by_info(tmp_path: Path) -> None:
    with plugstore.open(f"sqlite:///{tmp_path / 'c.db'}?cache=50") as store:
        assert store.backend.near_cache is not None
        assert store.backend.near_cache.size == 50
        assert store.info()["near cache"].startswith("50 entries; coherent by PRAGMA data_version")
    with plugstore.open("memory://") as plain:
        assert plain.info()["near cache"] == "off"
        assert plain.backend.near_cache is None


@pytest.mark.parametrize("value", ["-1", "many"])
def test_a_bad_size_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match="cache"):
        plugstore.open(f"memory://?cache={value}")


def test_backends_that_cannot_stay_coherent_refuse_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot keep a near cache coherent"):
        plugstore.open(f"shelf:///{tmp_path / 'data'}", cache=10)
    # A named memory store is shared with other stores, whose writes it would not hear of.
    with pytest.raises(ConfigurationError, match="memory backend cannot keep"):
        plugstore.open("memory://shared-near-cache", cache=10)


def test_reads_are_served_from_memory_and_writes_drop_them() -> None:
    with plugstore.open("memory://", cache=10) as store:
        ns = store.namespace("n")
        ns["k"] = 1
        assert ns["k"] == 1
        bucket = store.backend.bucket("n")
        assert isinstance(bucket, CachedBucket)
        # Change the engine behind the cache's back: the cached value is what reads see,
        # which shows they come from the cache.
        bucket.inner.set("k", b"2")
        assert ns["k"] == 1
        ns["k"] = 3  # a write through the store drops the entry
        assert ns["k"] == 3
        assert not isinstance(store.backend.bucket(LOCKS_NAMESPACE), CachedBucket)
    store.open()
    assert store.backend.near_cache is not None  # reinstalled, empty
    assert store.backend.near_cache.entries == {}
    store.close()


def test_an_entry_is_not_served_after_its_deadline() -> None:
    now = [1000.0]
    with plugstore.open("memory://", cache=10, clock=lambda: now[0]) as store:
        ns = store.namespace("n")
        ns.set("k", "v", ttl=5)
        assert ns["k"] == "v"
        assert store.backend.near_cache is not None
        assert store.backend.near_cache.entries[("n", "k")][1] == 1005.0  # its deadline
        now[0] = 1005.0
        assert ns.get("k") is None


def test_the_size_is_a_bound_and_used_entries_get_a_second_chance() -> None:
    cache = NearCache(3, clock=lambda: 0.0)
    for key in "abc":
        cache.fill(("n", key), cache.begin(("n", key)), b"1", None)
    cache.entries[("n", "a")][2] = True  # "a" was read since
    cache.fill(("n", "d"), cache.begin(("n", "d")), b"1", None)
    assert set(cache.entries) == {("n", "a"), ("n", "c"), ("n", "d")}  # "b" went, not "a"
    assert len(cache.entries) == 3


def test_a_read_racing_an_invalidation_does_not_store_the_old_value() -> None:
    cache = NearCache(10, clock=lambda: 0.0)
    key = ("n", "k")
    ticket = cache.begin(key)  # a read asks the engine...
    cache.invalidate("n", "k")  # ...another writer's change is announced meanwhile...
    cache.fill(key, ticket, b"old", None)  # ...and the answer (maybe older) arrives
    assert key not in cache.entries
    ticket = cache.begin(key)
    cache.clear()
    cache.fill(key, ticket, b"old", None)
    assert key not in cache.entries
    ticket = cache.begin(key)
    cache.invalidate_namespace("n")
    cache.fill(key, ticket, b"old", None)
    assert key not in cache.entries
    ticket = cache.begin(key)
    cache.invalidate("n", "other")  # another key's change does not matter
    cache.fill(key, ticket, b"new", None)
    assert cache.entries[key][0] == b"new"


def test_threads_reading_and_writing_one_key_never_read_a_value_back_in_time() -> None:
    with plugstore.open("memory://", cache=100) as store:
        ns = store.namespace("n")
        ns["k"] = 0
        stop = threading.Event()
        errors: list[str] = []

        def reader() -> None:
            last = 0
            while not stop.is_set():
                value = ns["k"]
                if value < last:
                    errors.append(f"read {value} after {last}")
                last = value

        readers = [threading.Thread(target=reader) for _ in range(3)]
        for thread in readers:
            thread.start()
        for n in range(1, 3001):
            ns["k"] = n
            assert ns["k"] == n  # read your writes
        stop.set()
        for thread in readers:
            thread.join()
        assert errors == []


class _Stallable(Listener):
    """A listener on no engine at all, whose thread can be held up at will."""

    def __init__(self, cache: NearCache) -> None:
        self.go = threading.Event()
        self.go.set()
        self.opened = 0
        super().__init__(cache, "test listener", 5, "nowhere")

    def _open(self) -> object:
        self.opened += 1
        return object()

    def _drain(self, handle: object, timeout: float) -> None:
        time.sleep(timeout)
        self.go.wait()  # held up here: a busy GIL, a stalled socket

    def _hang_up(self, handle: object) -> None:
        pass


def test_a_listener_that_falls_behind_stops_the_cache_serving_until_it_catches_up() -> None:
    cache = NearCache(10, clock=time.time)
    listener = _Stallable(cache)
    try:
        assert listener.check()
        listener.go.clear()
        time.sleep(Listener.BOUND + Listener.POLL * 2)
        assert not listener.check()  # reads go to the engine meanwhile
        listener.go.set()
        deadline = time.monotonic() + 5
        while not listener.check():
            assert time.monotonic() < deadline
            time.sleep(0.001)
        assert listener.opened == 1  # the same connection: nothing was missed
    finally:
        listener.go.set()
        listener.close()
    assert not listener.check()
