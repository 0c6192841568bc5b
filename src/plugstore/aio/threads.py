"""The bounded thread pool an async store runs blocking engine calls on.

Why not ``loop.run_in_executor`` on a ``ThreadPoolExecutor``: measured here, one awaited
round trip through them costs about 100 µs of CPU (a ``concurrent.futures.Future`` with
its own condition variable and a work item, then ``wrap_future`` chaining that future to
an asyncio one with a callback on each side), which was half of a whole SQLite ``incr``.
This pool queues ``(call, asyncio future, loop)`` and its thread hands the outcome back
with one ``call_soon_threadsafe``: about 45 µs, what aiosqlite's own thread costs.

What it keeps of ``ThreadPoolExecutor``:

* at most ``max_threads`` threads, started only when no thread is idle;
* a call whose future was cancelled before a thread picked it up is not run (as
  ``run_in_executor`` drops it); one already running runs to its end, its outcome
  dropped;
* :meth:`shutdown` lets the threads finish what was queued before it, then stop;
* at interpreter exit, what is queued still runs before the process ends.  The threads
  are daemons, so a store never closed does not keep the process alive, and an
  ``atexit`` hook stops and joins them (atexit runs before daemon threads are frozen).

It is also a :class:`concurrent.futures.Executor` (:meth:`submit`), for the clean-ups
nobody awaits and for ``loop.run_in_executor`` where the cost does not matter.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from .. import forks

R = TypeVar("R")

#: A queued call: (function, arguments, the future for its outcome, the loop that awaits
#: it or ``None`` for a concurrent future).
_Item = tuple[Callable[..., Any], tuple[Any, ...], Any, "asyncio.AbstractEventLoop | None"]


class _Shared:
    """What a pool's threads share with it (never the pool itself, so that a pool
    dropped without :meth:`ThreadPool.shutdown` is collected and its threads stop)."""

    def __init__(self) -> None:
        self.calls: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()
        self.idle = 0  # threads done with their last call and not yet given another
        self.closed = False


class ThreadPool(concurrent.futures.Executor):
    """At most ``max_threads`` threads named ``name-N`` running queued calls."""

    def __init__(self, max_threads: int, name: str) -> None:
        if max_threads < 1:
            raise ValueError("a thread pool needs at least one thread")
        self.max_threads = max_threads
        self.name = name
        self._shared = _Shared()
        self._generation = forks.generation
        _live.add(self)
        weakref.finalize(self, _stop_threads, self._shared)

    def run_async(
        self, loop: asyncio.AbstractEventLoop, fn: Callable[..., R], *args: Any
    ) -> asyncio.Future[R]:
        """``fn(*args)`` on a thread; the future for its outcome, settled in ``loop``."""
        future: asyncio.Future[R] = loop.create_future()
        self._put((fn, args, future, loop))
        return future

    def submit(
        self, fn: Callable[..., R], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[R]:
        """``fn(*args, **kwargs)`` on a thread (the :class:`Executor` API)."""
        future: concurrent.futures.Future[R] = concurrent.futures.Future()
        if kwargs:
            self._put((lambda: fn(*args, **kwargs), (), future, None))
        else:
            self._put((fn, args, future, None))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more calls; the threads stop once what was queued has run (joined
        when ``wait``).  ``cancel_futures`` is ignored: queued calls always run."""
        threads = _stop_threads(self._shared)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    def _put(self, item: _Item) -> None:
        if self._generation != forks.generation:
            raise RuntimeError("this thread pool belongs to the parent of a forked process")
        shared = self._shared
        with shared.lock:
            if shared.closed:
                raise RuntimeError("cannot run new calls after the pool was shut down")
            shared.calls.put(item)
            if shared.idle:
                shared.idle -= 1
            elif len(shared.threads) < self.max_threads:
                thread = threading.Thread(
                    target=_work, args=(shared,), name=f"{self.name}-{len(shared.threads)}"
                )
                thread.daemon = True
                shared.threads.append(thread)
                thread.start()


def _work(shared: _Shared) -> None:
    take = shared.calls.get
    while True:
        item = take()
        if item is None:
            return
        fn, args, future, loop = item
        del item
        if loop is None:
            _run_concurrent(shared, fn, args, future)
        elif future.cancelled():
            _idle(shared)
        else:
            _run_for_loop(shared, fn, args, future, loop)
        del fn, args, future, loop


def _idle(shared: _Shared) -> None:
    # Before the outcome is handed back: the caller it wakes may queue its next call at
    # once, which this thread will take, rather than start another thread for it.
    with shared.lock:
        shared.idle += 1


def _run_concurrent(
    shared: _Shared, fn: Callable[..., Any], args: tuple[Any, ...], future: Any
) -> None:
    if not future.set_running_or_notify_cancel():
        _idle(shared)
        return
    try:
        result = fn(*args)
    except BaseException as exc:
        _idle(shared)
        future.set_exception(exc)
    else:
        _idle(shared)
        future.set_result(result)


def _run_for_loop(
    shared: _Shared,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    future: Any,
    loop: asyncio.AbstractEventLoop,
) -> None:
    error: BaseException | None = None
    result: Any = None
    try:
        result = fn(*args)
    except StopIteration as exc:  # an asyncio future refuses StopIteration
        error = RuntimeError(f"{fn!r} raised StopIteration")
        error.__cause__ = exc
    except BaseException as exc:
        error = exc
    _idle(shared)
    # A closed loop has nobody left to tell.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():  # the awaiting task gave up meanwhile
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _stop_threads(shared: _Shared) -> list[threading.Thread]:
    """Close the pool and queue one stop per thread, after what is queued; its threads."""
    with shared.lock:
        shared.closed = True
        threads = list(shared.threads)
        for _ in threads:
            shared.calls.put(None)
    return threads


#: Pools whose threads the exit hook stops and joins.
_live: weakref.WeakSet[ThreadPool] = weakref.WeakSet()


@atexit.register
def _drain_at_exit() -> None:
    for pool in list(_live):
        if pool._generation == forks.generation:
            pool.shutdown(wait=True)


__all__ = ["ThreadPool"]
