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

    def wait(self, next_in_line: bool = False) -> bool:
        """Sleep before the next try; return ``False`` once the deadline has passed.

        ``next_in_line``: this waiter holds the next turn, and the lock stays idle after
        its release until this waiter looks again, so it looks every millisecond.
        """
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            return False
        if next_in_line:
            self._delay = 0.001
        pause = random.uniform(self._delay / 2, self._delay)
        if self.deadline is not None:
            pause = min(pause, self.deadline - now)
        time.sleep(pause)
        self._delay = min(self._delay * 2, 0.05)
        return True


#: How long a waiter's claim on the next turn, and a lock handed to it, stay valid
#: without news from that waiter (it refreshes its claim while it polls).
TURN_GRACE = 2.0


def _fields(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        found = json.loads(raw)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _expiry(fields: dict[str, Any], name: str = "until") -> float:
    try:
        return float(fields[name])
    except (KeyError, TypeError, ValueError):
        return 0.0  # not a lease we understand: treat it as run out


def _dump(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, separators=(",", ":")).encode()


class _LeaseEntry(HeldLock):
    def __init__(self, bucket: Bucket, name: str, raw: bytes, token: str) -> None:
        self._bucket = bucket
        self._name = name
        self._raw = raw
        self._token = token

    def release(self) -> bool:
        if self._bucket.cas(self._name, self._raw, None):
            return True  # nobody queued behind us: one request
        while True:
            current = self._bucket.get(self._name)
            fields = _fields(current)
            if current is None or fields.get("token") != self._token:
                return False  # taken over after our lease ran out
            now = time.time()
            successor: bytes | None = None
            if fields.get("next") and _expiry(fields, "next_until") > now:
                # Hand the lock to the waiter that claimed the next turn: nobody else
                # (we included) may take it before that waiter does.
                turn = {"key": fields.get("key"), "reserved": fields["next"]}
                successor = _dump({**turn, "until": round(now + TURN_GRACE, 3)})
            if self._bucket.cas(self._name, current, successor):
                return True


def lease_lock(bucket: Bucket, key: str, timeout: float | None, lease: float) -> HeldLock | None:
    """The generic lock: a lease entry taken by compare-and-set (see the module docs).

    The entry lives in :data:`LOCKS_NAMESPACE` of ``bucket``'s backend, under the
    lock's namespace and a digest of its key; it records the key, the holder's host and
    pid and the lease's end, for ``plugstore doctor``.

    Taking turns: a waiter that finds the lock held claims the *next turn* in the entry
    (and refreshes the claim while it polls); the holder's release then hands the lock
    to that waiter instead of freeing it.  Without this, a process that releases and
    takes the lock again in a loop wins nearly every time against waiters that poll,
    and on a slow engine they time out.
    """
    locks = bucket.backend.bucket(LOCKS_NAMESPACE)
    name = f"{bucket.namespace}:{lock_digest(key)}"
    waiter = Waiter(timeout)
    holder = f"{socket.gethostname()}:{os.getpid()}"
    token = secrets.token_hex(8)
    current: bytes | None = None  # try as if free first: one request when it is
    while True:
        fields = _fields(current)
        now = time.time()
        if current is None or _expiry(fields) <= now or fields.get("reserved") == token:
            mine = _dump(
                {"key": key, "holder": holder, "token": token, "until": round(now + lease, 3)}
            )
            if locks.cas(name, current, mine):
                return _LeaseEntry(locks, name, mine, token)
        elif "token" in fields and timeout != 0:
            # Held: claim the next turn if it is free or stale; refresh it if it is ours.
            claimed_by = fields.get("next")
            turn_ends = _expiry(fields, "next_until")
            if (claimed_by == token and turn_ends - now < TURN_GRACE / 2) or (
                claimed_by != token and turn_ends <= now
            ):
                claim = {**fields, "next": token, "next_until": round(now + TURN_GRACE, 3)}
                locks.cas(name, current, _dump(claim))  # a lost race is re-read below
        current = locks.get(name)
        fields = _fields(current)
        if current is None or _expiry(fields) <= time.time() or fields.get("reserved") == token:
            continue  # free, run out, or handed to us: take it at once
        if not waiter.wait(next_in_line=fields.get("next") == token):
            if fields.get("next") == token:  # give our turn back, or the hand-off stalls
                rest = {k: v for k, v in fields.items() if k not in ("next", "next_until")}
                locks.cas(name, current, _dump(rest))
            return None


def lease_info(raw: bytes) -> dict[str, Any]:
    """The fields of a lease entry (``key``, ``holder``, ``until``), for diagnostics."""
    return _fields(raw)


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
