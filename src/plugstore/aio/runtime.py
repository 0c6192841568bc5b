"""Where an async store's blocking work runs, and the checks every call makes first.

An :class:`~plugstore.aio.AsyncStore` belongs to the event loop it was opened in.  Its
:class:`Runtime` owns a bounded thread pool of its own (``threads``, default 8, or the
backend's ``async_threads``) for the engines without a native async driver, and
refuses, with a plugstore error rather than a hang, to be used from another event loop,
after ``aclose()``, or in a forked child.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .. import forks
from ..errors import StoreError, StoreNotOpenError
from ..steps import Call, Sleep, Steps
from .threads import ThreadPool

R = TypeVar("R")

#: Threads of an async store's pool unless ``threads=`` or the backend's
#: ``async_threads`` says otherwise.
DEFAULT_THREADS = 8


def default_threads(backend: Any) -> int:
    """The pool size of an async store on ``backend`` opened without ``threads=``."""
    return getattr(backend, "async_threads", None) or DEFAULT_THREADS


class Runtime:
    """The event loop, thread pool and state of one async store."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threads: int, url: str) -> None:
        self.loop = loop
        self.url = url
        self.executor = ThreadPool(threads, "plugstore-aio")
        self.generation = forks.generation
        self.open = True

    @property
    def threads(self) -> int:
        """The most threads the pool runs at once (set it before they are needed: the
        pool never stops threads it started)."""
        return self.executor.max_threads

    @threads.setter
    def threads(self, threads: int) -> None:
        self.executor.max_threads = threads

    def check(self) -> None:
        """Raise unless this store may be used here and now."""
        if not self.open:
            raise StoreNotOpenError(f"store {self.url} is closed (aclose() was called)")
        if self.generation != forks.generation:
            raise StoreError(
                f"store {self.url} was opened in the parent of this forked process: "
                "open a store of your own in the child (with plugstore.aio.open)"
            )
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            raise StoreError(
                f"store {self.url} is an async store: await its methods inside the event "
                "loop it was opened in (use plugstore.open for a sync store)"
            ) from None
        if running is not self.loop:
            raise StoreError(
                f"store {self.url} belongs to the event loop it was opened in, not this "
                "one: open a store in each event loop (with plugstore.aio.open)"
            )

    async def call(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(*args)`` on the pool, awaited.  If the awaiting task is cancelled, a call
        that had started still runs to its end (a blocking call cannot be stopped
        midway), so it never leaves anything half-done; its result is dropped."""
        self.check()
        return await self.executor.run_async(self.loop, fn, *args)

    def start(self, fn: Callable[..., R], *args: Any) -> asyncio.Future[R]:
        """Start ``fn(*args)`` on the pool, unchecked: the future of its outcome (to
        shield, when a cancelled caller must still see what it did)."""
        return self.executor.run_async(self.loop, fn, *args)

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        """Start ``fn(*args)`` on the pool without awaiting it (clean-ups)."""
        return self.executor.submit(fn, *args)

    def shutdown(self) -> None:
        """Refuse further calls; let the pool's threads finish what they run."""
        self.open = False
        self.executor.shutdown(wait=False)


async def arun(steps: Steps[R]) -> R:
    """Carry out ``steps`` (see :mod:`plugstore.steps`) with awaited calls on async
    buckets and ``asyncio.sleep``, and return their result.

    A cancellation is raised inside the steps like any error, so steps that must clean
    up (a lock that may have been taken) get to run their clean-up calls; the runner
    then lets the cancellation go on.
    """
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.send(send) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        error = send = None
        try:
            if type(step) is Call:
                method = getattr(step.target, step.method)
                pending: Awaitable[Any] = (
                    method(*step.args, **step.kwargs) if step.kwargs else method(*step.args)
                )
                send = await pending
            else:
                assert type(step) is Sleep
                await asyncio.sleep(step.seconds)
        except (Exception, asyncio.CancelledError) as exc:
            error = exc


__all__ = ["DEFAULT_THREADS", "Runtime", "arun", "default_threads"]
