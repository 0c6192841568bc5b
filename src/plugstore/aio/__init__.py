"""plugstore for asyncio: the sync API's twin, with the same names, awaited.

::

    import plugstore.aio

    async with plugstore.aio.open("postgresql://bot@db/bot") as store:
        ns = store.namespace("karma")
        await ns.incr("alice")
        async with ns.lock("leaderboard"):
            ...

Everything the sync API guarantees holds here too -- atomic helpers, locks, expiry,
the same errors -- over the same data layout, so a sync process and an async one can
share a store.  The operations are written once (:mod:`plugstore.nscore`,
:mod:`plugstore.steps`) and carried out by both APIs.  Engines without a native async
driver run on the store's own bounded thread pool (``threads=``); see docs/async.md.
"""

from .bucket import AsyncBucket
from .locks import AsyncLock
from .namespace import AsyncNamespace
from .scopes import AsyncScope, AsyncScopeBatch
from .state import AsyncStateStore
from .store import AsyncStore, open, wrap

__all__ = [
    "AsyncBucket",
    "AsyncLock",
    "AsyncNamespace",
    "AsyncScope",
    "AsyncScopeBatch",
    "AsyncStateStore",
    "AsyncStore",
    "open",
    "wrap",
]
