"""The Redis backend's native async driver for :mod:`plugstore.aio`, on ``redis.asyncio``.

An async store on Redis sends the very requests the sync backend sends -- built, and
their replies read, by :mod:`.rediscore` -- over a ``redis.asyncio`` blocking pool of
its own (the store's ``pool_max`` connections, ``connect_timeout`` to wait for one,
and every other connection option of the sync pool: db, credentials, TLS, unix
socket).  Nothing runs on the store's threads, locks included: a lock waits in the
event loop (``asyncio.sleep`` between tries).

Failures follow the sync rules (:func:`.rediscore.recovery`): what is safe to repeat is
sent again after a lost connection until ``retry_timeout``, the rest raises
:class:`~plugstore.errors.BackendUnavailableError`; a pool whose connections all
stayed in use raises :class:`~plugstore.errors.PoolExhaustedError`.

Cancellation: ``redis.asyncio`` drops (disconnects) a connection whose command a
cancelled task left half sent or half read, and still gives it back to its pool, so a
cancelled call never leaves a connection the next caller would read a stale reply
from.  Whether a cancelled write was applied is unknown, as after a lost connection.
A lock try is never left unknown: it runs to its end in a task of its own, and an
acquisition given up midway (cancelled, or failed) is undone -- the lock, if a try
took it, and the waiter's turn -- before the cancellation goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as rx
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..aio.bucket import AsyncBucket, AsyncDriver
from ..aio.locks import AsyncHeld
from ..aio.runtime import Runtime
from ..backend import Backend, Backoff, Bucket
from ..steps import Sleep
from .redis import RedisBackend, RedisBucket
from .rediscore import ERRORS, LOAD_SCRIPTS, LockAttempt, Page, Request, Steps, recovery, refused

R = TypeVar("R")
T = TypeVar("T")

log = logging.getLogger("plugstore.backends.redis")


class RedisAsyncDriver(AsyncDriver):
    """One async store's ``redis.asyncio`` client and pool (made in its event loop)."""

    backend: RedisBackend

    def __init__(self, backend: Backend, runtime: Runtime) -> None:
        if not isinstance(backend, RedisBackend):
            raise TypeError(f"RedisAsyncDriver drives a RedisBackend, not {backend!r}")
        super().__init__(backend, runtime)
        self.pool: aioredis.BlockingConnectionPool | None = None
        self._client: Any = None
        self._undoing: set[asyncio.Future[None]] = set()

    async def open(self) -> None:
        """Make the pool and load the scripts: a server that cannot be reached raises
        ``BackendUnavailableError`` at once."""
        kwargs = self.backend.pool_kwargs(aioredis, Retry(NoBackoff(), 0))
        self.pool = aioredis.BlockingConnectionPool(**kwargs)
        self._client = aioredis.Redis(connection_pool=self.pool)
        try:
            await self.run(LOAD_SCRIPTS)
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Let lock clean-ups under way finish, then close every connection."""
        if self._undoing:
            await asyncio.wait(self._undoing, timeout=self.backend.socket_timeout)
        client, self._client = self._client, None
        pool, self.pool = self.pool, None
        if client is not None:
            await client.aclose()  # the pool is ours, not the client's: closed next
        if pool is not None:
            await pool.aclose()

    def bucket(self, sync: Bucket) -> RedisAsyncBucket:
        if not isinstance(sync, RedisBucket):
            raise TypeError(f"a Redis async bucket wraps a RedisBucket, not {sync!r}")
        return RedisAsyncBucket(sync, self)

    # -- requests (see plugstore.backends.rediscore) -------------------------------------

    async def _send(self, request: Request[Any]) -> Any:
        if request.multi is None:
            return await self._client.execute_command(*request.command)  # type: ignore[misc]
        pipe = self._client.pipeline(transaction=True)
        for command in request.multi:
            pipe.execute_command(*command)
        return await pipe.execute()

    async def run(self, request: Request[R]) -> R:
        """Send ``request`` (after the store's loop, close and fork checks), recovering
        from failures as the sync backend does; its parsed reply."""
        self.runtime.check()
        try:
            try:
                reply = await self._send(request)
            except ERRORS as exc:
                reply = await self._recover(exc, request)
        except rx.ResponseError as exc:
            known = None if request.refuse is None else request.refuse(exc)
            raise (known or refused(self.backend, exc)) from None
        return request.parse(reply)

    async def load_scripts(self, failed: Request[Any] | None) -> None:
        """Load the scripts where ``failed`` (a request answered NOSCRIPT) runs."""
        await self._send(LOAD_SCRIPTS)

    async def _recover(self, exc: Exception, request: Request[Any]) -> Any:
        backoff = Backoff(self.backend.retry_timeout)
        while True:
            pause = recovery(self.backend, exc, request.retry, backoff, "tasks")
            try:
                if pause is None:
                    await self.load_scripts(request)
                else:
                    await asyncio.sleep(pause)
                return await self._send(request)
            except ERRORS as again:
                exc = again

    async def drive(self, steps: Steps[R]) -> R:
        """Carry out ``steps``: await each request they yield, sleep each pause."""
        reply: Any = None
        while True:
            try:
                step = steps.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                reply = None
            else:
                reply = await self.run(step)

    async def pages(self, first: Request[Page[T]] | None) -> AsyncIterator[T]:
        """The items of a listing, a page (one request) at a time."""
        while first is not None:
            page = await self.run(first)
            for item in page.items:
                yield item
            first = page.next

    # -- locks ---------------------------------------------------------------------------

    async def lock(self, attempt: LockAttempt) -> RedisAsyncLock | None:
        """Carry out ``attempt``'s steps in the event loop.  Each try runs to its end in
        a task of its own, even if this one is cancelled meanwhile; an acquisition given
        up midway is undone (:meth:`_abandon`) before the error goes on."""
        steps = attempt.steps()
        trying: asyncio.Future[Any] | None = None
        reply: Any = None
        try:
            while True:
                try:
                    step = steps.send(reply)
                except StopIteration as done:
                    return RedisAsyncLock(self, attempt) if done.value else None
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    reply = None
                else:
                    trying = asyncio.ensure_future(self.run(step))
                    reply = await asyncio.shield(trying)
                    trying = None
        except (Exception, asyncio.CancelledError):
            await self._abandon(attempt, trying)
            raise

    async def _abandon(self, attempt: LockAttempt, trying: asyncio.Future[Any] | None) -> None:
        """Undo ``attempt`` once its try under way (``trying``) has returned, and wait for
        that; if this task is cancelled (again) meanwhile, the undoing goes on alone
        (:meth:`aclose` waits for it)."""
        undo = asyncio.ensure_future(self._undo(attempt, trying))
        self._undoing.add(undo)
        undo.add_done_callback(self._undoing.discard)
        await asyncio.shield(undo)

    async def _undo(self, attempt: LockAttempt, trying: asyncio.Future[Any] | None) -> None:
        if trying is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await trying  # its outcome is what is undone next
        try:
            await self.run(attempt.abandon())
        except Exception as exc:  # the lock still ends with its lease
            log.warning("could not undo an abandoned Redis lock attempt: %s", exc)


class RedisAsyncLock(AsyncHeld):
    """A Redis lock held by an async store: released and renewed by awaiting."""

    def __init__(self, driver: RedisAsyncDriver, attempt: LockAttempt) -> None:
        self._driver = driver
        self._attempt = attempt

    async def release(self) -> bool:
        """Release the lock; whether it was still ours until now."""
        return await self._driver.run(self._attempt.release())

    async def renew(self, lease: float) -> bool:
        """Extend the lease to ``lease`` seconds from now; whether it was still ours."""
        return await self._driver.run(self._attempt.renew(lease))


class RedisAsyncBucket(AsyncBucket):
    """One namespace of an async store on Redis: every bucket method native, on
    ``redis.asyncio`` (see the module docs)."""

    def __init__(self, sync: RedisBucket, driver: RedisAsyncDriver) -> None:
        super().__init__(sync, driver.runtime)
        self.ops = sync.ops
        self._driver = driver
        self._run = driver.run

    # -- single keys ------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        return await self._run(self.ops.get(key))

    async def contains(self, key: str) -> bool:
        return await self._run(self.ops.contains(key))

    async def set(self, key: str, value: bytes) -> None:
        await self._run(self.ops.set(key, value))

    async def set_until(self, key: str, value: bytes, deadline: float) -> None:
        await self._run(self.ops.set_until(key, value, deadline))

    async def get_with_deadline(self, key: str) -> tuple[bytes, float | None] | None:
        return await self._run(self.ops.get_with_deadline(key))

    async def remove(self, key: str) -> bool:
        return await self._run(self.ops.remove(key))

    async def cas(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        return await self._run(self.ops.cas(key, expected, new))

    async def add(self, key: str, value: bytes, deadline: float | None) -> bool:
        return await self._run(self.ops.add(key, value, deadline))

    async def expire(self, key: str, deadline: float) -> bool:
        return await self._run(self.ops.expire(key, deadline))

    async def persist(self, key: str) -> bool:
        return await self._run(self.ops.persist(key))

    async def incr(self, key: str, delta: int) -> int:
        return await self._run(self.ops.incr(key, delta))

    async def lock(self, key: str, timeout: float | None, lease: float) -> RedisAsyncLock | None:
        """Take the Redis lock on ``key``, waiting in the event loop up to ``timeout``
        (see :class:`~.rediscore.LockAttempt`); ``None`` if it stayed taken."""
        self.runtime.check()
        return await self._driver.lock(self.ops.lock(key, timeout, lease))

    # -- listings ---------------------------------------------------------------------------

    def keys(self, prefix: str = "") -> AsyncIterator[str]:
        return self._driver.pages(self.ops.keys(prefix))

    def items(self, prefix: str = "") -> AsyncIterator[tuple[str, bytes]]:
        return self._driver.pages(self.ops.items(prefix))

    async def keys_page(self, prefix: str = "", limit: int | None = None) -> list[str]:
        return [key async for key in self._driver.pages(self.ops.keys(prefix, limit))]

    async def keys_after(self, prefix: str, after: str, limit: int) -> list[str]:
        pages = self._driver.pages(self.ops.keys_after(prefix, after, limit))
        return [key async for key in pages]

    async def items_page(
        self, prefix: str = "", limit: int | None = None
    ) -> list[tuple[str, bytes]]:
        return [pair async for pair in self._driver.pages(self.ops.items(prefix, limit))]

    async def count(self, prefix: str = "") -> int:
        return await self._run(self.ops.count(prefix))

    async def stored_size(self, prefix: str = "") -> int:
        return await self._driver.drive(self.ops.stored_size(prefix))

    async def purge(self) -> int:
        return await self._run(self.ops.purge())

    # -- many keys ---------------------------------------------------------------------------

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return await self._driver.drive(self.ops.get_many(keys))

    async def get_many_with_deadlines(
        self, keys: Sequence[str]
    ) -> dict[str, tuple[bytes, float | None]]:
        return await self._driver.drive(self.ops.get_many_with_deadlines(keys))

    async def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        request = self.ops.set_many(items)
        if request is not None:
            await self._run(request)

    async def set_many_until(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        request = self.ops.set_many_until(items)
        if request is not None:
            await self._run(request)

    async def write_batch(
        self,
        sets: Sequence[tuple[str, bytes, float | None]],
        removes: Sequence[str] = (),
        clears: Sequence[str] = (),
        *,
        atomic: bool = True,
    ) -> None:
        await self._run(self.ops.write_batch(sets, removes, clears))  # one script: atomic

    async def clear(self, prefix: str = "") -> int:
        return await self._driver.drive(self.ops.clear(prefix))


__all__ = ["RedisAsyncBucket", "RedisAsyncDriver", "RedisAsyncLock"]
