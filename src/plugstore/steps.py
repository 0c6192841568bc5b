"""Operations written once, run by the sync API and by :mod:`plugstore.aio` alike.

An operation that talks to the engine more than once (``pop``: read, then
compare-and-set, retried; a lease lock: read, queue up, sleep, take) is a *steps*
generator.  It does no I/O itself: it yields what it needs done -- a :class:`Call` of a
bucket method, a :class:`Sleep` -- and receives each call's result (or has its exception
raised at the ``yield``).  Its return value is the operation's result.

:func:`run` carries the steps out with blocking calls on sync buckets; the async shell
(``plugstore.aio``) carries the same steps out with awaited calls on async buckets.  So
the logic of an operation (validation, codecs, retries, deadlines, lock queues) exists
once and the two APIs cannot drift: the shells only move bytes.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Call:
    """Call ``target.method(*args)``: ``target`` is a bucket (sync or async, as the
    runner expects); the result is sent back into the steps."""

    target: Any
    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds`` (``time.sleep`` in the sync API, ``asyncio.sleep`` in the async one)."""

    seconds: float


#: A steps generator returning ``R``.
Steps = Generator["Call | Sleep", Any, R]


def call(target: Any, method: str, *args: Any, **kwargs: Any) -> Call:
    """:class:`Call` ``target.method(*args, **kwargs)``, spelled like a call."""
    return Call(target, method, args, kwargs or None)


def run(steps: Steps[R]) -> R:
    """Carry ``steps`` out with blocking calls and return their result."""
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.send(send) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        error = send = None
        if type(step) is Call:
            try:
                method = getattr(step.target, step.method)
                send = method(*step.args, **step.kwargs) if step.kwargs else method(*step.args)
            except Exception as exc:  # raised inside the steps, which may handle it
                error = exc
        else:
            assert type(step) is Sleep
            time.sleep(step.seconds)


__all__ = ["Call", "Sleep", "Steps", "call", "run"]
