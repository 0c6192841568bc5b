"""Cross-process locks held in the engine: ``with ns.lock("key"): ...``.

A lock is named by a namespace and a key (the key need not exist) and is held by the
engine, not by the Python process, so it excludes every thread and process using the
same store.  How each engine holds it, and what frees it when the holder dies:

* PostgreSQL: a session advisory lock on a pooled connection -- freed when that
  connection ends, a killed holder included.
* MariaDB/MySQL: ``GET_LOCK`` on a pooled connection -- likewise.
* Redis: ``SET NX PX`` with a random token, deleted on release only if the token is
  still ours -- a killed holder's lock expires with its lease.
* every other backend (SQLite, shelf, DynamoDB, memory, third-party ones): a *lease
  entry* in the namespace ``_plugstore.locks``, taken and released with the bucket's
  atomic compare-and-set (a SQLite write transaction, a DynamoDB conditional write);
  an entry whose lease has run out is taken over.

Leases are measured on the wall clock of the machines involved.  A holder that keeps a
lease-based lock past its lease may lose it to another process; :meth:`Lock.release`
then raises :class:`~plugstore.errors.LockLostError`, so the overlap is never silent.
Locks are not re-entrant: taking a lock you already hold waits for yourself.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import socket
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from .errors import LockLostError, LockTimeoutError, StoreError

if TYPE_CHECKING:
    from .backend import Bucket
    from .namespace import Namespace

#: The namespace holding lease entries of the generic lock.
LOCKS_NAMESPACE = "_plugstore.locks"
#: Defaults of :meth:`Namespace.lock`, in seconds.
DEFAULT_TIMEOUT = 10.0
DEFAULT_LEASE = 30.0


class HeldLock(ABC):
    """What a backend returns for an acquired lock."""

    @abstractmethod
    def release(self) -> bool:
        """Release the lock; return whether it was still held by us until now."""


def lock_digest(*parts: str, size: int = 20) -> str:
    """A stable hex digest naming a lock (``size`` bytes) from its parts."""
    h = hashlib.blake2b(digest_size=size)
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


class Waiter:
    """The polling schedule of a lock that is taken by trying: short jittered sleeps,
    growing to 50 ms, never past the deadline (``timeout=None``: no deadline)."""

    def __init__(self, timeout: float | None) -> None:
        self.deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        self._delay = 0.001

    def wait(self) -> bool:
        """Sleep before the next try; return ``False`` once the deadline has passed."""
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            return False
        pause = random.uniform(self._delay / 2, self._delay)
        if self.deadline is not None:
            pause = min(pause, self.deadline - now)
        time.sleep(pause)
        self._delay = min(self._delay * 2, 0.05)
        return True


class _LeaseEntry(HeldLock):
    def __init__(self, bucket: Bucket, name: str, raw: bytes) -> None:
        self._bucket = bucket
        self._name = name
        self._raw = raw

    def release(self) -> bool:
        return self._bucket.cas(self._name, self._raw, None)


def lease_lock(bucket: Bucket, key: str, timeout: float | None, lease: float) -> HeldLock | None:
    """The generic lock: a lease entry taken by compare-and-set (see the module docs).

    The entry lives in :data:`LOCKS_NAMESPACE` of ``bucket``'s backend, under the
    lock's namespace and a digest of its key; it records the key, the holder's host and
    pid and the lease's end, for ``plugstore doctor``.
    """
    locks = bucket.backend.bucket(LOCKS_NAMESPACE)
    name = f"{bucket.namespace}:{lock_digest(key)}"
    waiter = Waiter(timeout)
    holder = f"{socket.gethostname()}:{os.getpid()}"
    current: bytes | None = None  # try as if free first: one request when it is
    while True:
        if current is None or _lease_end(current) <= time.time():
            mine = json.dumps(
                {
                    "key": key,
                    "holder": holder,
                    "token": secrets.token_hex(8),
                    "until": round(time.time() + lease, 3),
                },
                separators=(",", ":"),
            ).encode()
            if locks.cas(name, current, mine):
                return _LeaseEntry(locks, name, mine)
        current = locks.get(name)
        if current is None or _lease_end(current) <= time.time():
            continue  # released or expired since: try again at once
        if not waiter.wait():
            return None


def _lease_end(raw: bytes) -> float:
    try:
        until = json.loads(raw)["until"]
        return float(until)
    except (ValueError, KeyError, TypeError):
        return 0.0  # not a lease we understand: treat as expired


def lease_info(raw: bytes) -> dict[str, Any]:
    """The fields of a lease entry (``key``, ``holder``, ``until``), for diagnostics."""
    try:
        found = json.loads(raw)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


class Lock:
    """An engine-held lock on one key of a namespace; see :meth:`Namespace.lock`.

    A context manager: ``with ns.lock("score", timeout=5):`` waits up to ``timeout``
    seconds (``None``: forever) and raises :class:`~plugstore.errors.LockTimeoutError`
    if the lock stayed taken.  On lease-based engines the lock is held for at most
    ``lease`` seconds.
    """

    def __init__(self, namespace: Namespace, key: str, timeout: float | None, lease: float) -> None:
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be >= 0 (or None to wait forever)")
        if not lease > 0:
            raise ValueError("lease must be > 0 seconds")
        self._ns = namespace
        self.key = key
        self.timeout = timeout
        self.lease = lease
        self._held: HeldLock | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (as far as it knows)."""
        return self._held is not None

    def acquire(self) -> Lock:
        """Take the lock, waiting up to ``timeout``; raise ``LockTimeoutError`` if not."""
        if self._held is not None:
            raise StoreError(f"this lock on {self.key!r} is already held (locks do not nest)")
        held = self._ns._b().lock(self.key, self.timeout, self.lease)
        if held is None:
            raise LockTimeoutError(
                f"lock on {self.key!r} in namespace {self._ns.name!r} "
                f"stayed taken for {self.timeout}s"
            )
        self._held = held
        return self

    def release(self) -> None:
        """Release the lock; raise ``LockLostError`` if it had been taken from us."""
        held, self._held = self._held, None
        if held is None:
            raise StoreError(f"the lock on {self.key!r} is not held")
        if not held.release():
            raise LockLostError(
                f"the lock on {self.key!r} in namespace {self._ns.name!r} was lost "
                f"before release (held past its {self.lease}s lease, or its connection "
                "ended): another holder may have run at the same time"
            )

    def __enter__(self) -> Lock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "held" if self.held else "not held"
        return f"<Lock {self.key!r} in {self._ns.name!r} ({state})>"


__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_TIMEOUT",
    "LOCKS_NAMESPACE",
    "HeldLock",
    "Lock",
    "Waiter",
    "lease_info",
    "lease_lock",
    "lock_digest",
]
