"""The small connection pool of the MariaDB backend, and of both SQL backends' lock
sessions (backends/connpool.py)."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import pytest

from plugstore.backends.connpool import ConnectionPool, PoolExhausted


class Conn:
    made = 0

    def __init__(self) -> None:
        Conn.made += 1
        self.id = Conn.made
        self.closed = False

    def close(self) -> None:
        if self.closed:
            raise RuntimeError("closed twice")
        self.closed = True


def make_pool(size: int = 2, timeout: float = 0.2) -> ConnectionPool:
    return ConnectionPool(Conn, size, timeout)


def test_reuses_the_most_recently_returned_connection() -> None:
    pool = make_pool()
    a, b = pool.acquire(), pool.acquire()
    pool.release(a)
    pool.release(b)
    assert pool.acquire() is b
    assert pool.acquire() is a


def test_never_more_than_max_size_and_waits_then_says_exhausted() -> None:
    pool = make_pool(size=2, timeout=0.2)
    held = [pool.acquire(), pool.acquire()]
    started = time.monotonic()
    with pytest.raises(PoolExhausted, match="all 2 connections"):
        pool.acquire()
    assert time.monotonic() - started >= 0.19
    threading.Timer(0.05, pool.release, args=(held[0],)).start()
    assert pool.acquire() is held[0]  # a waiter gets the connection given back


def test_discard_closes_and_frees_the_slot() -> None:
    pool = make_pool(size=1)
    conn = pool.acquire()
    pool.discard(conn)
    assert conn.closed
    fresh = pool.acquire()
    assert fresh is not conn
    assert not fresh.closed


def test_a_failed_connect_gives_its_slot_back() -> None:
    calls = {"n": 0}

    def flaky() -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("refused")
        return Conn()

    pool = ConnectionPool(flaky, 1, 0.2)
    with pytest.raises(OSError, match="refused"):
        pool.acquire()
    assert isinstance(pool.acquire(), Conn)  # the slot was not leaked


def test_close_closes_idle_now_and_busy_ones_when_returned() -> None:
    pool = make_pool()
    idle, busy = pool.acquire(), pool.acquire()
    pool.release(idle)
    pool.close()
    assert idle.closed
    assert not busy.closed
    pool.release(busy)
    assert busy.closed


def test_threads_share_it_without_exceeding_the_bound() -> None:
    pool = make_pool(size=3, timeout=5)
    in_use = 0
    peak = 0
    lock = threading.Lock()
    seen: set[int] = set()

    def work() -> None:
        nonlocal in_use, peak
        for _ in range(200):
            conn = pool.acquire()
            with lock:
                in_use += 1
                peak = max(peak, in_use)
                seen.add(conn.id)
            time.sleep(0)
            with lock:
                in_use -= 1
            pool.release(conn)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak <= 3
    assert len(seen) <= 3


def test_a_waiter_gets_a_new_connection_when_one_is_discarded() -> None:
    pool = make_pool(size=1, timeout=5)
    held = pool.acquire()
    threading.Timer(0.05, pool.discard, args=(held,)).start()
    started = time.monotonic()
    fresh = pool.acquire()
    assert time.monotonic() - started < 4
    assert fresh is not held
    assert held.closed


def test_acquire_waits_as_long_as_it_is_told() -> None:
    pool = ConnectionPool(Conn, 1, 30)
    held = pool.acquire()
    with pytest.raises(PoolExhausted, match="all 1 connections") as err:
        pool.acquire(0)  # at once, not the pool's 30 s
    assert (err.value.size, err.value.waited) == (1, 0)
    threading.Timer(0.2, pool.release, args=(held,)).start()
    assert pool.acquire(math.inf) is held  # no deadline: until one comes back
