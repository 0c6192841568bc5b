"""A small bounded LIFO pool of DB-API connections, for drivers without a pool of their own.

Why not SQLAlchemy's ``QueuePool``: measured on the MariaDB backend, its checkout and
return cost 8-12 µs per operation (a fairy object, a weakref, a Python-level condition
variable), which put per-operation ``get`` at 0.80x raw PyMySQL in an A/B run where
this pool gave 0.89-0.91x: a C lock around a list, and a condition variable only touched
when someone actually waits.  It does only what the backend needs:

* at most ``max_size`` connections exist at once (idle + in use); ``acquire`` waits up to
  ``timeout`` seconds (or the ``wait`` it is given) for one, then raises
  :class:`PoolExhausted`;
* idle connections are reused last-in first-out, so a burst's extra connections age out
  of use instead of being kept warm in rotation;
* ``discard`` drops a broken (or interrupted) connection instead of returning it;
* no reset on return: the backend's connections are in autocommit and the backend rolls
  back its own failed transactions.

It knows nothing about fork: the backend builds a new pool in a forked child and never
closes the parent's.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from typing import Any


class PoolExhausted(Exception):
    """Every connection stayed in use for the whole wait (the backend turns this into a
    :class:`~plugstore.errors.PoolExhaustedError` naming its pool and option)."""

    def __init__(self, size: int, waited: float) -> None:
        super().__init__(f"all {size} connections stayed in use for {waited}s")
        self.size = size
        self.waited = waited


class ConnectionPool:
    """At most ``max_size`` connections made by ``connect``; thread-safe."""

    def __init__(self, connect: Callable[[], Any], max_size: int, timeout: float) -> None:
        self._connect = connect
        self.max_size = max_size
        self.timeout = timeout
        self._lock = threading.Lock()
        self._returned = threading.Condition(self._lock)
        self._idle: list[Any] = []
        self._size = 0  # connections that exist: idle + in use
        self._waiting = 0
        self._closed = False

    def acquire(self, wait: float | None = None) -> Any:
        """A connection: the most recently returned idle one, or a new one.

        With all ``max_size`` in use, wait up to ``wait`` seconds (default: the pool's
        ``timeout``; ``math.inf``: until one is returned) for one.
        """
        with self._lock:
            if self._idle:
                return self._idle.pop()
            if self._size >= self.max_size:
                self._wait_for_one(self.timeout if wait is None else wait)
                if self._idle:
                    return self._idle.pop()
            self._size += 1  # a slot for a new connection, made outside the lock
        try:
            return self._connect()
        except BaseException:
            self._forget_one()
            raise

    def _wait_for_one(self, wait: float) -> None:
        # Called with the lock held; returns once a connection is idle or a slot is free.
        deadline = time.monotonic() + wait
        self._waiting += 1
        try:
            while not self._idle and self._size >= self.max_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PoolExhausted(self.max_size, wait)
                self._returned.wait(None if math.isinf(remaining) else remaining)
        finally:
            self._waiting -= 1

    def release(self, conn: Any) -> None:
        """Give back a healthy connection."""
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                if self._waiting:
                    self._returned.notify()
                return
        self.discard(conn)

    def discard(self, conn: Any) -> None:
        """Close and forget a connection that must not be used again."""
        self._forget_one()
        with contextlib.suppress(Exception):  # a broken connection may fail to say goodbye
            conn.close()

    def _forget_one(self) -> None:
        with self._lock:
            self._size -= 1
            if self._waiting:
                self._returned.notify()

    def close(self) -> None:
        """Close the idle connections now and the others as they are given back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            self.discard(conn)
