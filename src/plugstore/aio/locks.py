"""Cross-process locks for the async API: ``async with ns.lock("key"): ...``.

The same locks as :mod:`plugstore.locks`, held by the engine in the same places, so a
sync process and an async one exclude each other.  Waiting never blocks the event loop
or holds a thread:

* the tasks of one store that want the same lock first queue at an asyncio *gate*,
  first come, first served, so only one of them at a time asks the engine;
* on engines with the generic lease entry (SQLite, shelf, DynamoDB, memory, third-party
  backends) the waiting is the lease-lock steps of :mod:`plugstore.locks`, run with
  awaited calls and ``asyncio.sleep``;
* on engines with a lock of their own (PostgreSQL, MariaDB, Redis), the async bucket's
  :meth:`~plugstore.aio.bucket.AsyncBucket.lock` takes it: a native async driver's own
  (PostgreSQL's advisory lock tried on an async connection), or by default the sync
  bucket's lock tried without waiting on the store's threads, sleeping between tries.

A cancelled ``acquire`` never leaves the lock taken: a try that was under way when the
task was cancelled is released as soon as it returns.  ``release`` always runs to its
end, even in a task being cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from ..backend import Bucket
from ..errors import LockLostError, LockTimeoutError, StoreError
from ..locks import (
    LOCKS_NAMESPACE,
    HeldLock,
    LeaseHold,
    Waiter,
    check_lock_args,
    lease_lock_steps,
    release_steps,
    renew_steps,
)
from .runtime import Runtime, arun

if TYPE_CHECKING:
    from .bucket import AsyncBucket
    from .namespace import AsyncNamespace


class _Gate:
    """A fair asyncio mutex: ``release`` hands it to the task that has waited longest."""

    __slots__ = ("_owned", "_waiters", "users")

    def __init__(self) -> None:
        self._owned = False
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.users = 0

    async def acquire(self, timeout: float | None) -> bool:
        if not self._owned and not self._waiters:
            self._owned = True
            return True
        if timeout == 0:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except BaseException as exc:  # timed out, or the task was cancelled
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed to us just as we gave up: pass it on
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, asyncio.TimeoutError):
                return False
            raise
        return True

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # ownership passes on: _owned stays True
                return
        self._owned = False


class Gates:
    """The gates of one async store, by (namespace, key); a gate lives while used."""

    def __init__(self) -> None:
        self._gates: dict[tuple[str, str], _Gate] = {}

    async def enter(self, name: tuple[str, str], timeout: float | None) -> _Gate | None:
        gate = self._gates.get(name)
        if gate is None:
            gate = self._gates[name] = _Gate()
        gate.users += 1
        try:
            if await gate.acquire(timeout):
                return gate
        except BaseException:
            self._drop(name, gate)
            raise
        self._drop(name, gate)
        return None

    def exit(self, name: tuple[str, str], gate: _Gate) -> None:
        gate.release()
        self._drop(name, gate)

    def _drop(self, name: tuple[str, str], gate: _Gate) -> None:
        gate.users -= 1
        if gate.users == 0 and self._gates.get(name) is gate:
            del self._gates[name]


class AsyncHeld:
    """An engine hold, released and renewed by awaiting: what
    :meth:`~plugstore.aio.bucket.AsyncBucket.lock` returns for an acquired lock (the
    async twin of :class:`~plugstore.locks.HeldLock`)."""

    async def release(self) -> bool:
        """Release the lock; return whether it was still held by us until now."""
        raise NotImplementedError

    async def renew(self, lease: float) -> bool:
        """Extend the lease to ``lease`` seconds from now; whether it was still ours
        (``True`` for locks held by a session, which have no lease)."""
        return True


class _LeaseHeld(AsyncHeld):
    def __init__(self, hold: LeaseHold) -> None:
        self._hold = hold

    async def release(self) -> bool:
        return await arun(release_steps(self._hold))

    async def renew(self, lease: float) -> bool:
        return await arun(renew_steps(self._hold, lease))


class _ThreadHeld(AsyncHeld):
    """A lock of the engine's own (a session lock, a Redis token), held by a sync
    :class:`HeldLock` whose calls run on the store's threads."""

    def __init__(self, held: HeldLock, runtime: Runtime) -> None:
        self._held = held
        self._runtime = runtime

    async def release(self) -> bool:
        return await self._runtime.call(self._held.release)

    async def renew(self, lease: float) -> bool:
        return await self._runtime.call(self._held.renew, lease)


async def thread_lock(
    bucket: Bucket, runtime: Runtime, key: str, timeout: float | None, lease: float
) -> AsyncHeld | None:
    """The engine's own lock of the sync ``bucket``, tried without waiting on the
    store's threads and waited for in the event loop (what
    :meth:`AsyncBucket.lock <plugstore.aio.bucket.AsyncBucket.lock>` does by default)."""
    waiter = Waiter(timeout)
    while True:
        held = await _try_engine(bucket, runtime, key, lease)
        if held is not None:
            return _ThreadHeld(held, runtime)
        pause = waiter.pause()
        if pause is None:
            return None
        await asyncio.sleep(pause)


async def _try_engine(bucket: Bucket, runtime: Runtime, key: str, lease: float) -> HeldLock | None:
    """One try of the engine's own lock, on a thread; if the task is cancelled
    meanwhile, a lock the try took is released when it returns."""
    runtime.check()
    future = runtime.start(bucket.lock, key, 0, lease)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        future.add_done_callback(lambda done: _release_late(done, runtime))
        raise


class AsyncLock:
    """An engine-held lock on one key of a namespace; see :meth:`AsyncNamespace.lock`.

    ``async with ns.lock("score", timeout=5):`` waits up to ``timeout`` seconds
    (``None``: forever) and raises :class:`~plugstore.errors.LockTimeoutError` if the
    lock stayed taken; on lease-based engines the lock is held for at most ``lease``
    seconds unless renewed (:meth:`renew`).
    """

    def __init__(
        self, namespace: AsyncNamespace, key: str, timeout: float | None, lease: float
    ) -> None:
        check_lock_args(timeout, lease)
        self._ns = namespace
        self.key = key
        self.timeout = timeout
        self.lease = lease
        self._held: AsyncHeld | None = None
        self._gate: _Gate | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (as far as it knows)."""
        return self._held is not None

    async def acquire(self) -> AsyncLock:
        """Take the lock, waiting up to ``timeout``; raise ``LockTimeoutError`` if not."""
        if self._held is not None:
            raise StoreError(f"this lock on {self.key!r} is already held (locks do not nest)")
        started = time.monotonic()
        bucket = self._ns._b()
        gates = self._ns._astore._gates
        name = (self._ns.name, self.key)
        gate = await gates.enter(name, self.timeout)
        held: AsyncHeld | None = None
        try:
            if gate is not None:
                left = self.timeout
                if left is not None:
                    left = max(0.0, left - (time.monotonic() - started))
                held = await self._engine_lock(bucket, left)
        finally:
            if held is None and gate is not None:
                gates.exit(name, gate)
        if held is None:
            raise LockTimeoutError(
                f"lock on {self.key!r} in namespace {self._ns.name!r} "
                f"stayed taken for {self.timeout}s"
            )
        self._held, self._gate = held, gate
        return self

    async def _engine_lock(self, bucket: AsyncBucket, timeout: float | None) -> AsyncHeld | None:
        if type(bucket.sync).lock is Bucket.lock:  # the generic lease entry, as steps
            locks = self._ns._astore._bucket(LOCKS_NAMESPACE)
            hold = await arun(lease_lock_steps(locks, self._ns.name, self.key, timeout, self.lease))
            return None if hold is None else _LeaseHeld(hold)
        return await bucket.lock(self.key, timeout, self.lease)  # the engine's own lock

    async def renew(self, lease: float | None = None) -> None:
        """Extend the lease to ``lease`` seconds (default: the lease it was taken with)
        from now; raise ``LockLostError`` if the lock had already been taken from us."""
        if self._held is None:
            raise StoreError(f"the lock on {self.key!r} is not held")
        seconds = self.lease if lease is None else lease
        if not seconds > 0:
            raise ValueError("lease must be > 0 seconds")
        if not await self._held.renew(seconds):
            raise LockLostError(
                f"the lock on {self.key!r} in namespace {self._ns.name!r} was lost "
                "before it could be renewed: another holder may have run at the same time"
            )

    async def release(self) -> None:
        """Release the lock; raise ``LockLostError`` if it had been taken from us.

        It runs to its end even if the awaiting task is cancelled meanwhile."""
        held, self._held = self._held, None
        gate, self._gate = self._gate, None
        if held is None:
            raise StoreError(f"the lock on {self.key!r} is not held")
        task = asyncio.ensure_future(held.release())
        try:
            released = await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(lambda _: self._leave_gate(gate))
            raise
        self._leave_gate(gate)
        if not released:
            raise LockLostError(
                f"the lock on {self.key!r} in namespace {self._ns.name!r} was lost "
                f"before release (held past its {self.lease}s lease, or its connection "
                "ended): another holder may have run at the same time"
            )

    def _leave_gate(self, gate: _Gate | None) -> None:
        if gate is not None:
            self._ns._astore._gates.exit((self._ns.name, self.key), gate)

    async def __aenter__(self) -> AsyncLock:
        return await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        await self.release()

    def __repr__(self) -> str:
        state = "held" if self.held else "not held"
        return f"<AsyncLock {self.key!r} in {self._ns.name!r} ({state})>"


def _release_late(done: asyncio.Future[Any], runtime: Runtime) -> None:
    """Release a lock that a try took after its task was cancelled."""
    if done.cancelled() or done.exception() is not None:
        return
    held = done.result()
    if held is not None:
        runtime.submit(held.release)


__all__ = ["AsyncHeld", "AsyncLock", "Gates", "thread_lock"]
