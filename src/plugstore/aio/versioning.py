"""Versioned namespaces for asyncio code: ``ns = await store.namespace(name, version=2,
migrations={2: to_v2})``.

The rules are :mod:`plugstore.versioning`'s (the same stamp, the same lock, the same
decisions, written once there as steps): data stamped older is migrated step by step
under the namespace's engine-held lock, whose lease an asyncio task renews while the
migration runs.  A step may be a coroutine function, which gets an
:class:`AsyncMigration`, or a plain function written for the sync API, which gets a
:class:`~plugstore.versioning.Migration` over the sync namespace and runs on the
store's threads -- so a plugin can share its migrations between the two APIs.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..keys import check_prefix
from ..nscore import ABSENT
from ..scopekeys import META_LEAD, VERSION_KEY
from ..versioning import (
    MIGRATION_LEASE,
    Migration,
    progress,
    read_version_steps,
    stamp_steps,
    start_steps,
    too_new,
)
from .runtime import arun

if TYPE_CHECKING:
    from .locks import AsyncLock
    from .namespace import AsyncNamespace

#: Entries read per request by :meth:`AsyncMigration.items`.
_PAGE = 500

log = logging.getLogger("plugstore.versioning")


class AsyncMigration:
    """What an async migration step receives: the async namespace and the versions it
    goes between (see :class:`plugstore.versioning.Migration`)."""

    def __init__(self, namespace: AsyncNamespace, from_version: int, to_version: int) -> None:
        self.namespace = namespace
        self.from_version = from_version
        self.to_version = to_version
        self.progress = progress

    def __repr__(self) -> str:
        return (
            f"<AsyncMigration of {self.namespace.name!r} "
            f"from {self.from_version} to {self.to_version}>"
        )

    async def items(self, prefix: str = "") -> AsyncIterator[tuple[str, Any]]:
        """Every stored ``(key, value)`` whose key starts with ``prefix``, as stored when
        this call began (see :meth:`plugstore.versioning.Migration.items`)."""
        ns = self.namespace
        listed = await ns._b().keys_page(check_prefix(prefix), None)
        keys = [k for k in listed if not k.startswith(META_LEAD)]
        label = f"{ns.name}: v{self.from_version} -> v{self.to_version}"
        for start in progress(range(0, len(keys), _PAGE), len(keys), label, _PAGE):
            chunk = keys[start : start + _PAGE]
            found = await ns._b().get_many(chunk)
            for key in chunk:
                raw = found.get(key)
                if raw is not None:
                    _, value = await arun(ns._load_steps(key, raw))
                    if value is not ABSENT:
                        yield key, value


async def amigrate(
    ns: AsyncNamespace, version: int, migrations: Mapping[int, Callable[..., Any]]
) -> int:
    """Bring ``ns`` to ``version``; return the version it was at."""
    found = await arun(read_version_steps(ns))
    if found == version:
        return version
    if found is not None and found > version:
        raise too_new(ns.name, found, version)
    async with ns.lock(VERSION_KEY, timeout=None, lease=MIGRATION_LEASE) as lock:
        start = await arun(start_steps(ns, version, migrations))
        if start is None:
            return version
        async with _renewing(lock, MIGRATION_LEASE / 3):
            for step in range(start + 1, version + 1):
                log.info("migrating namespace %r from version %d to %d", ns.name, step - 1, step)
                await _run_step(migrations[step], ns, step)
                await arun(stamp_steps(ns, step))
    return start


async def _run_step(fn: Callable[..., Any], ns: AsyncNamespace, step: int) -> None:
    if inspect.iscoroutinefunction(fn):
        await fn(AsyncMigration(ns, step - 1, step))
        return
    # A step written for the sync API: on a thread, over the sync namespace.
    sync = ns.store.sync.namespace(ns.name, quarantine=ns.quarantine)
    result = await ns._runtime.call(fn, Migration(sync, step - 1, step))
    if inspect.isawaitable(result):  # an async callable that is not a coroutine function
        await result


@contextlib.asynccontextmanager
async def _renewing(lock: AsyncLock, every: float) -> AsyncIterator[None]:
    """Keep renewing ``lock``'s lease in a task while the block runs."""
    failure: list[BaseException] = []

    async def renew() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await lock.renew()
            except Exception as exc:  # reported when the block ends
                failure.append(exc)
                return

    task = asyncio.ensure_future(renew())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if failure:
        raise failure[0]


__all__ = ["AsyncMigration", "amigrate"]
