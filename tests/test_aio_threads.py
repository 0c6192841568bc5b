"""The thread pool async stores run blocking engine calls on (plugstore.aio.threads):
bounded, lazy, cancellable before a call starts, drained on shutdown and at exit."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from plugstore.aio.threads import ThreadPool
from plugstore.errors import StoreError


def _thread_name() -> str:
    return threading.current_thread().name


def test_calls_return_their_result_or_raise_their_own_error() -> None:
    pool = ThreadPool(2, "t")

    def fails() -> None:
        raise StoreError("the engine said no")

    def stops() -> None:
        raise StopIteration

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert await pool.run_async(loop, pow, 2, 10) == 1024
        with pytest.raises(StoreError, match="the engine said no"):
            await pool.run_async(loop, fails)
        # an asyncio future cannot hold StopIteration: it arrives as a RuntimeError
        with pytest.raises(RuntimeError, match="StopIteration"):
            await pool.run_async(loop, stops)

    try:
        asyncio.run(main())
        assert pool.submit(pow, 3, 2).result(5) == 9
        assert pool.submit(int, "ff", base=16).result(5) == 255
        with pytest.raises(StoreError):
            pool.submit(fails).result(5)
    finally:
        pool.shutdown()


def test_threads_start_only_when_none_is_idle_and_never_past_the_bound() -> None:
    pool = ThreadPool(3, "bound")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        # one call at a time: one thread does them all
        names = {await pool.run_async(loop, _thread_name) for _ in range(20)}
        assert names == {"bound-0"}
        # ten at once, the first ones held until released: 3 threads, no more
        release = threading.Event()

        def held() -> str:
            release.wait(5)
            return _thread_name()

        calls = [pool.run_async(loop, held) for _ in range(10)]
        await asyncio.sleep(0.1)
        release.set()
        names = set(await asyncio.gather(*calls))
        assert names == {"bound-0", "bound-1", "bound-2"}

    try:
        asyncio.run(main())
        assert len(pool._shared.threads) == 3
    finally:
        pool.shutdown()


def test_a_call_cancelled_before_it_started_never_runs() -> None:
    pool = ThreadPool(1, "cancel")
    ran: list[str] = []
    gate = threading.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        blocking = pool.run_async(loop, gate.wait, 5)
        queued = pool.run_async(loop, ran.append, "queued")
        queued.cancel()
        gate.set()
        assert await blocking is True
        # the next call runs after the cancelled one would have
        await pool.run_async(loop, ran.append, "next")

    try:
        asyncio.run(main())
        assert ran == ["next"]
    finally:
        pool.shutdown()


def test_a_call_cancelled_while_running_runs_to_its_end() -> None:
    pool = ThreadPool(1, "running")
    ran: list[str] = []
    started = threading.Event()

    def slow() -> str:
        started.set()
        time.sleep(0.2)
        ran.append("done")
        return "result nobody reads"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(pool.run_async(loop, slow))
        await loop.run_in_executor(None, started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the pool's one thread is free again once the call has ended
        assert await pool.run_async(loop, _thread_name) == "running-0"

    try:
        asyncio.run(main())
        assert ran == ["done"]
    finally:
        pool.shutdown()


def test_shutdown_runs_what_was_queued_then_refuses_calls() -> None:
    pool = ThreadPool(1, "drain")
    done: list[int] = []

    def slow_append(i: int) -> None:
        time.sleep(0.01)
        done.append(i)

    futures = [pool.submit(slow_append, i) for i in range(5)]
    pool.shutdown(wait=True)
    assert done == [0, 1, 2, 3, 4]
    assert all(f.done() for f in futures)
    assert not any(t.is_alive() for t in pool._shared.threads)
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(print)
    pool.shutdown()  # twice is harmless


def test_a_pool_dropped_without_shutdown_lets_its_threads_go() -> None:
    pool = ThreadPool(2, "dropped")
    assert pool.submit(_thread_name).result(5) == "dropped-0"
    threads = list(pool._shared.threads)
    del pool
    gc.collect()
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive()


def test_a_loop_closed_before_the_call_ends_is_not_an_error() -> None:
    pool = ThreadPool(1, "closed-loop")
    gate = threading.Event()
    hooked: list[Any] = []
    previous = threading.excepthook
    threading.excepthook = hooked.append
    try:

        async def main() -> None:
            pool.run_async(asyncio.get_running_loop(), gate.wait, 5)

        asyncio.run(main())  # closes its loop with the call still waiting
        gate.set()
        pool.shutdown(wait=True)
    finally:
        threading.excepthook = previous
    assert hooked == []


def test_queued_calls_run_before_the_process_exits_and_idle_threads_do_not_hold_it(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "written"
    script = textwrap.dedent(
        f"""
        import time
        from plugstore.aio.threads import ThreadPool

        idle = ThreadPool(2, "idle")
        idle.submit(print, "warm").result()  # a thread left idle, never shut down
        pool = ThreadPool(1, "exiting")

        def write():
            time.sleep(0.3)
            open({str(marker)!r}, "w").write("done")

        pool.submit(time.sleep, 0.1)
        pool.submit(write)  # queued behind the first when the script ends
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert marker.read_text() == "done"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_a_forked_child_cannot_queue_on_its_parents_pool() -> None:
    pool = ThreadPool(1, "forked")
    try:
        assert pool.submit(_thread_name).result(5) == "forked-0"
        pid = os.fork()
        if pid == 0:  # the child: its parent's threads are not here
            try:
                pool.submit(print)
            except RuntimeError as exc:
                os._exit(0 if "forked" in str(exc) else 2)
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert pool.submit(_thread_name).result(5) == "forked-0"
    finally:
        pool.shutdown()


def test_a_stores_pool_size_is_threads_or_its_backends_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``threads=`` sizes the pool; without it the backend's ``async_threads`` does (a
    driver computing much in Python asks for fewer), else 8; ``wrap`` alike."""
    import plugstore
    from plugstore import aio
    from plugstore.backends.sqlite import SQLiteBackend

    url = f"sqlite:///{tmp_path / 'pool.db'}"

    async def main() -> None:
        async with aio.open(url) as astore:
            assert astore._runtime.threads == 8
        async with aio.open(url, threads=2) as astore:
            assert astore._runtime.threads == 2
        monkeypatch.setattr(SQLiteBackend, "async_threads", 3)
        async with aio.open(url) as astore:
            assert astore._runtime.threads == 3
            ns = astore.namespace("n")
            await asyncio.gather(*(ns.set(f"k{i}", i) for i in range(50)))
            assert len(astore._runtime.executor._shared.threads) <= 3
        async with aio.open(url, threads=5) as astore:
            assert astore._runtime.threads == 5
        with plugstore.open(url) as store:
            wrapped = await aio.wrap(store)
            assert wrapped._runtime.threads == 3
            await wrapped.aclose()
            wrapped = await aio.wrap(store, threads=4)
            assert wrapped._runtime.threads == 4
            await wrapped.aclose()

    asyncio.run(main())
