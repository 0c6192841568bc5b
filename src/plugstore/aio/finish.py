"""Clean-ups that a cancelled task cannot interrupt: :func:`finish`.

Giving a connection back to ``psycopg_pool.AsyncConnectionPool`` (``putconn``) is a
coroutine.  It almost always completes without waiting, but it may wait -- for the
pool's lock while another task holds it across an ``await`` (the pool closing), for a
``reset`` callback -- and a task cancelled at that moment raises out of it with the
connection neither back in the pool nor closed: the pool counts it as in use for good,
one connection fewer each time.  ``asyncio.shield`` prevents that, but costs a task
(about 12 µs here) on every operation for a wait that almost never comes.

:func:`finish` runs the coroutine's first step in the caller: a coroutine that
completes without waiting costs no more than an ``await``.  One that must wait is
handed, where it stopped, to a task of its own, and the caller awaits that task through
``asyncio.shield``: a cancellation ends the caller's wait, not the clean-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

R = TypeVar("R")

#: Clean-ups under way in tasks of their own (referenced until done: the event loop
#: keeps only weak references to tasks).
_running: set[asyncio.Task[Any]] = set()


async def finish(coro: Coroutine[Any, Any, R]) -> R:
    """Await ``coro`` to its end even if the awaiting task is cancelled meanwhile (the
    cancellation is raised to the caller; ``coro`` goes on by itself)."""
    try:
        waiting_on = coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except BaseException:
        coro.close()
        raise
    task = asyncio.get_running_loop().create_task(_resume(coro, waiting_on))
    _running.add(task)
    task.add_done_callback(_running.discard)
    return await asyncio.shield(task)


async def _resume(coro: Coroutine[Any, Any, R], waiting_on: Any) -> R:
    """Drive ``coro``, stopped on ``waiting_on``, to its end, as its own task would:
    wait for the future it awaits (or, for a bare ``yield``, one turn of the loop), then
    send it on; the future's result or exception is what ``coro`` then receives."""
    while True:
        if waiting_on is None:
            await asyncio.sleep(0)
        else:
            waiting_on._asyncio_future_blocking = False  # what a Task does on taking it
            await asyncio.wait((waiting_on,))
        try:
            waiting_on = coro.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


__all__ = ["finish"]
