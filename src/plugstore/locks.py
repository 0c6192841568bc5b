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
  an entry whose lease has run out is taken over.  Waiters queue in the entry and are
  served first come, first served.

Within one process, the threads that want the same lock first queue at a *gate*: a
fair (first come, first served) process-local mutex per store, namespace and key.  Only
the thread at its head asks the engine, so at most one thread per process and key waits
in the engine -- on PostgreSQL and MariaDB that is one connection, not one per waiting
thread -- and a release inside the process goes to the thread that has waited longest.
Time spent at the gate counts toward the lock's ``timeout``.

Leases are measured on the wall clock of the machines involved.  A holder that keeps a
lease-based lock past its lease may lose it to another process; :meth:`Lock.release`
then raises :class:`~plugstore.errors.LockLostError`, so the overlap is never silent.
Locks are not re-entrant: taking a lock you already hold waits for yourself.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import secrets
import socket
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import forks
from .errors import LockLostError, LockTimeoutError, StoreError
from .steps import Sleep, Steps, call, run

if TYPE_CHECKING:
    from .backend import Backend, Bucket
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

    def renew(self, lease: float) -> bool:
        """Extend the lease to ``lease`` seconds from now; return whether it was still
        ours.  Locks held by a session (PostgreSQL, MariaDB) have no lease: ``True``."""
        return True


def lock_digest(*parts: str, size: int = 20) -> str:
    """A stable hex digest naming a lock (``size`` bytes) from its parts."""
    h = hashlib.blake2b(digest_size=size)
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


#: The fastest a waiter the lock goes to next looks, in seconds.
NEXT_IN_LINE_POLL = 0.0002


class Waiter:
    """The polling schedule of a lock that is taken by trying: short jittered sleeps,
    growing to 50 ms, never past the deadline (``timeout=None``: no deadline)."""

    def __init__(self, timeout: float | None) -> None:
        self.deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        self._delay = 0.001
        self._next_since: float | None = None

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    def wait(self, next_in_line: bool = False, at_least: float = 0.0) -> bool:
        """Sleep before the next try; return ``False`` once the deadline has passed.

        See :meth:`pause` for how long.
        """
        pause = self.pause(next_in_line, at_least)
        if pause is None:
            return False
        time.sleep(pause)
        return True

    def pause(self, next_in_line: bool = False, at_least: float = 0.0) -> float | None:
        """How long to sleep before the next try; ``None`` once the deadline has passed.

        ``next_in_line``: the lock goes to this waiter next (it heads the queue, or holds
        the next turn), and stays idle after its release until this waiter looks again.
        So it looks often -- every 0.2 ms at first, then every tenth of the time it has
        been next (up to 50 ms), which keeps the idle time after a release under a tenth
        of the wait without polling a long-held lock thousands of times a second.
        ``at_least``: sleep no less than this (what the last look took), so that looking
        never takes more than half of a slow engine's time away from the holder.
        """
        now = time.monotonic()
        if self.deadline is not None and now >= self.deadline:
            return None
        if next_in_line:
            if self._next_since is None:
                self._next_since = now
            delay = min(max(NEXT_IN_LINE_POLL, (now - self._next_since) / 10), 0.05)
        else:
            self._next_since = None
            delay = self._delay
            self._delay = min(self._delay * 2, 0.05)
        pause = max(random.uniform(delay / 2, delay), at_least)
        if self.deadline is not None:
            pause = min(pause, self.deadline - now)
        return pause


#: How long a waiter's place in the queue, and a lock handed to it, stay valid without
#: news from that waiter (it refreshes its place while it polls).
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


def _queue(fields: dict[str, Any], now: float) -> dict[str, list[float]]:
    """The live waiters of a lease entry: ``{token: [since, until]}``."""
    found = fields.get("queue")
    live: dict[str, list[float]] = {}
    if isinstance(found, dict):
        for token, place in found.items():
            try:
                since, until = float(place[0]), float(place[1])
            except (TypeError, ValueError, IndexError, KeyError):
                continue
            if until > now:
                live[str(token)] = [since, until]
    return live


def _oldest(queue: dict[str, list[float]]) -> str | None:
    """The token of the waiter that has waited longest (``None``: nobody waits)."""
    return min(queue, key=lambda token: (queue[token][0], token)) if queue else None


def _with_queue(fields: dict[str, Any], queue: dict[str, list[float]]) -> dict[str, Any]:
    rest = {k: v for k, v in fields.items() if k != "queue"}
    return {**rest, "queue": queue} if queue else rest


@dataclass
class LeaseHold:
    """A lease entry this process holds: the bucket of :data:`LOCKS_NAMESPACE` it lives
    in (sync or async), its name, the bytes we last wrote there and our token."""

    locks: Any
    name: str
    raw: bytes
    token: str


def renew_steps(hold: LeaseHold, lease: float) -> Steps[bool]:
    """Extend a held lease entry to ``lease`` seconds from now; whether it was ours."""
    current: bytes | None = hold.raw
    while True:
        fields = _fields(current)
        if current is None or fields.get("token") != hold.token:
            return False
        # Waiters may have queued meanwhile: keep their places.
        renewed = _dump({**fields, "until": round(time.time() + lease, 3)})
        if (yield call(hold.locks, "cas", hold.name, current, renewed)):
            hold.raw = renewed
            return True
        current = yield call(hold.locks, "get", hold.name)


def release_steps(hold: LeaseHold) -> Steps[bool]:
    """Release a held lease entry, handing it to the longest waiter; whether it was
    still ours."""
    if not _queue(_fields(hold.raw), time.time()) and (
        yield call(hold.locks, "cas", hold.name, hold.raw, None)
    ):
        return True  # nobody queued behind us: one request
    while True:
        current = yield call(hold.locks, "get", hold.name)
        fields = _fields(current)
        if current is None or fields.get("token") != hold.token:
            return False  # taken over after our lease ran out
        now = time.time()
        queue = _queue(fields, now)
        successor: bytes | None = None
        head = _oldest(queue)
        if head is not None:
            # Hand the lock to the waiter that has waited longest: nobody else (we
            # included) may take it before that waiter does.
            del queue[head]
            turn = {"key": fields.get("key"), "reserved": head}
            successor = _dump(_with_queue({**turn, "until": round(now + TURN_GRACE, 3)}, queue))
        if (yield call(hold.locks, "cas", hold.name, current, successor)):
            return True


class _LeaseEntry(HeldLock):
    def __init__(self, hold: LeaseHold) -> None:
        self._hold = hold

    def renew(self, lease: float) -> bool:
        return run(renew_steps(self._hold, lease))

    def release(self) -> bool:
        return run(release_steps(self._hold))


def lease_lock(bucket: Bucket, key: str, timeout: float | None, lease: float) -> HeldLock | None:
    """The generic lock: a lease entry taken by compare-and-set (see the module docs and
    :func:`lease_lock_steps`)."""
    locks = bucket.backend.bucket(LOCKS_NAMESPACE)
    hold = run(lease_lock_steps(locks, bucket.namespace, key, timeout, lease))
    return None if hold is None else _LeaseEntry(hold)


def lease_lock_steps(
    locks: Any, namespace: str, key: str, timeout: float | None, lease: float
) -> Steps[LeaseHold | None]:
    """Take the lease entry of ``key`` of ``namespace`` in the bucket ``locks`` (of
    :data:`LOCKS_NAMESPACE`), waiting up to ``timeout``; ``None`` if it stayed taken.

    The entry is named by the lock's namespace and a digest of its key; it records the
    key, the holder's host and pid and the lease's end, for ``plugstore doctor``.

    First come, first served: a waiter that finds the lock taken adds itself to the
    entry's queue with the time it began to wait (and refreshes its place while it
    polls); a release hands the lock to the waiter that has waited longest, which alone
    may take it.  Without the queue, a process that releases and takes the lock again in
    a loop wins nearly every time against waiters that poll, and on a slow engine they
    time out.
    """
    name = f"{namespace}:{lock_digest(key)}"
    waiter = Waiter(timeout)
    holder = f"{socket.gethostname()}:{os.getpid()}"
    token = secrets.token_hex(8)
    since = round(time.time(), 3)
    current: bytes | None = None  # try as if free first: one request when it is
    took = 0.0
    # Each pass acts on what was just read -- take the lock, or queue up -- and sleeps
    # only when there was nothing to do: a compare-and-set made with an entry read
    # before a sleep would mostly lose to the writes made meanwhile.
    try:
        while True:
            fields = _fields(current)
            now = time.time()
            queue = _queue(fields, now)
            if _ours_to_take(current, fields, queue, token, now):
                queue.pop(token, None)
                mine = {
                    "key": key,
                    "holder": holder,
                    "token": token,
                    "until": round(now + lease, 3),
                }
                raw = _dump(_with_queue(mine, queue))
                if (yield call(locks, "cas", name, current, raw)):
                    return LeaseHold(locks, name, raw, token)
                if waiter.expired():
                    break
            elif timeout != 0 and (token not in queue or queue[token][1] - now < TURN_GRACE / 2):
                # Taken: queue up, or refresh our place before it lapses.
                queue[token] = [since, round(now + TURN_GRACE, 3)]
                queued = _dump(_with_queue(fields, queue))
                if (yield call(locks, "cas", name, current, queued)):
                    current = queued  # what the engine holds now: sleep, then look again
                    continue
                if waiter.expired():
                    break
            else:
                pause = waiter.pause(next_in_line=_oldest(queue) == token, at_least=took)
                if pause is None:
                    break
                yield Sleep(pause)
            asked = time.monotonic()
            current = yield call(locks, "get", name)
            took = time.monotonic() - asked
    except Exception:
        raise  # the engine failed: our place in the queue (or a lost take) lapses
    except BaseException:
        # Interrupted (in the async API, a cancelled task): a place in the queue lapses
        # on its own, but a lock we may have just taken must not stay taken until its
        # lease runs out.
        yield from _abandon(locks, name, token)
        raise
    yield from _leave(locks, name, token)  # or the next hand-off would wait for us in vain
    return None


def _abandon(locks: Any, name: str, token: str) -> Steps[None]:
    """After an interruption: give back the lock if a compare-and-set whose answer was
    lost did take it, and leave the queue -- best effort, the lease lapses anyway."""
    try:
        current = yield call(locks, "get", name)
        fields = _fields(current)
        if current is not None and fields.get("token") == token:
            yield from release_steps(LeaseHold(locks, name, current, token))
        else:
            yield from _leave(locks, name, token)
    except Exception:  # noqa: S110 - the original error is what the caller must see
        pass


def _leave(locks: Any, name: str, token: str) -> Steps[None]:
    """Take a waiter that gave up out of the queue (a few tries: its place lapses
    on its own anyway)."""
    for _ in range(3):
        current = yield call(locks, "get", name)
        fields = _fields(current)
        queue = _queue(fields, time.time())
        if current is None or token not in queue:
            return
        del queue[token]
        if (yield call(locks, "cas", name, current, _dump(_with_queue(fields, queue)))):
            return


def _ours_to_take(
    current: bytes | None,
    fields: dict[str, Any],
    queue: dict[str, list[float]],
    token: str,
    now: float,
) -> bool:
    """Whether the waiter ``token`` may take the lock now: it was handed to it, or it
    is free (never taken, released, or its lease or hand-off ran out) and no waiter
    that has waited longer is queued."""
    if current is None:
        return True
    if fields.get("reserved") == token:
        return True
    if _expiry(fields) > now:
        return False
    head = _oldest(queue)
    return head is None or head == token


def lease_info(raw: bytes) -> dict[str, Any]:
    """The fields of a lease entry (``key``, ``holder``, ``until``), for diagnostics."""
    return _fields(raw)


class _Gate:
    """A fair process-local mutex: ``release`` hands it to the thread that has waited
    longest, which alone may take it.  Owned by a token, not a thread: any thread may
    release it (a :class:`Lock` may be released by another thread than the one that
    took it).

    Its owner may set the end of its lease (:meth:`hold_until`): past it the engine
    lets a waiter take the lock over, so the gate lets the longest waiter through too,
    and the late owner's release then leaves the gate alone.
    """

    __slots__ = ("_cond", "_owner", "_queue", "_until", "users")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: object | None = None
        self._until: float | None = None  # the owner's lease end (monotonic); None: none
        self._queue: deque[object] = deque()  # empty whenever there is no owner
        self.users = 0  # owner and waiters: the gate is dropped when none is left

    def _lapsed(self, now: float) -> bool:
        return self._until is not None and now >= self._until

    def acquire(self, token: object, timeout: float | None) -> bool:
        """Take the gate for ``token``, waiting up to ``timeout`` seconds (``None``:
        forever); ``False`` if it stayed taken."""
        with self._cond:
            now = time.monotonic()
            if self._owner is None or (not self._queue and self._lapsed(now)):
                self._owner, self._until = token, None
                return True
            if timeout == 0:
                return False
            deadline = None if timeout is None else now + timeout
            self._queue.append(token)
            try:
                while self._owner is not token:  # release() hands over to the head
                    if self._queue[0] is token and self._lapsed(now):
                        self._queue.popleft()  # the owner's lease ran out: take over
                        self._owner, self._until = token, None
                        break
                    if deadline is not None and now >= deadline:
                        self._leave(token)
                        return False
                    wait = None if deadline is None else deadline - now
                    if self._queue[0] is token and self._until is not None:
                        wait = min(wait or math.inf, self._until - now)
                    self._cond.wait(wait)
                    now = time.monotonic()
            except BaseException:  # interrupted: leave the queue, or pass on what we got
                if self._owner is token:
                    self._release(token)
                else:
                    self._leave(token)
                raise
            return True

    def _leave(self, token: object) -> None:
        head = self._queue[0] is token
        self._queue.remove(token)
        if head:
            self._cond.notify_all()  # the new head may have a lapsed owner to pass

    def hold_until(self, token: object, until: float | None) -> None:
        """The owner's lease ends at ``until`` (``time.monotonic()``; ``None``: never)."""
        with self._cond:
            if self._owner is token:
                self._until = until
                self._cond.notify_all()  # the head waiter recomputes its wait

    def release(self, token: object) -> None:
        """Hand the gate to the longest waiter, or free it (no-op if taken over)."""
        with self._cond:
            self._release(token)

    def _release(self, token: object) -> None:
        if self._owner is not token:
            return  # taken over after our lease ran out: the gate is someone else's
        self._owner = self._queue.popleft() if self._queue else None
        self._until = None
        self._cond.notify_all()


class _Gates:
    """The gates of one backend object, by (namespace, key); a gate lives while used."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._gates: dict[tuple[str, str], _Gate] = {}

    def enter(self, name: tuple[str, str], token: object, timeout: float | None) -> _Gate | None:
        """Take the gate of ``name`` for ``token`` within ``timeout``; ``None`` if it
        stayed taken."""
        with self._mutex:
            gate = self._gates.get(name)
            if gate is None:
                gate = self._gates[name] = _Gate()
            gate.users += 1
        try:
            if gate.acquire(token, timeout):
                return gate
        except BaseException:
            self._drop(name, gate)
            raise
        self._drop(name, gate)
        return None

    def exit(self, name: tuple[str, str], gate: _Gate, token: object) -> None:
        """Release a gate taken by :meth:`enter`."""
        gate.release(token)
        self._drop(name, gate)

    def _drop(self, name: tuple[str, str], gate: _Gate) -> None:
        with self._mutex:
            gate.users -= 1
            if gate.users == 0:
                del self._gates[name]


# The gates of every backend object in this process.  Replaced, lock included, in a
# forked child before first use (checked before the lock is taken: a parent thread may
# have held it at the fork): the parent's waiting threads do not exist in the child.
_all_gates: weakref.WeakKeyDictionary[Backend, _Gates] = weakref.WeakKeyDictionary()
_all_gates_lock = threading.Lock()
_all_gates_generation = forks.generation


def _gates_of(backend: Backend) -> _Gates:
    global _all_gates, _all_gates_lock, _all_gates_generation
    if _all_gates_generation != forks.generation:
        with forks.child_lock:
            if _all_gates_generation != forks.generation:
                _all_gates = weakref.WeakKeyDictionary()
                _all_gates_lock = threading.Lock()
                _all_gates_generation = forks.generation
    with _all_gates_lock:
        gates = _all_gates.get(backend)
        if gates is None:
            gates = _all_gates[backend] = _Gates()
        return gates


def check_lock_args(timeout: float | None, lease: float) -> None:
    """Refuse a negative ``timeout`` and a lease that is not positive (both lock APIs)."""
    if timeout is not None and timeout < 0:
        raise ValueError("timeout must be >= 0 (or None to wait forever)")
    if not lease > 0:
        raise ValueError("lease must be > 0 seconds")


class Lock:
    """An engine-held lock on one key of a namespace; see :meth:`Namespace.lock`.

    A context manager: ``with ns.lock("score", timeout=5):`` waits up to ``timeout``
    seconds (``None``: forever) and raises :class:`~plugstore.errors.LockTimeoutError`
    if the lock stayed taken.  On lease-based engines the lock is held for at most
    ``lease`` seconds.
    """

    def __init__(self, namespace: Namespace, key: str, timeout: float | None, lease: float) -> None:
        check_lock_args(timeout, lease)
        self._ns = namespace
        self.key = key
        self.timeout = timeout
        self.lease = lease
        self._held: HeldLock | None = None
        # The process-local gate taken before the engine lock, while held: its table,
        # itself, our token and the fork generation it belongs to.
        self._gate: tuple[_Gates, _Gate, object, int] | None = None
        self._lease_based = False  # whether the engine hold ends with its lease

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (as far as it knows)."""
        return self._held is not None

    def acquire(self) -> Lock:
        """Take the lock, waiting up to ``timeout``; raise ``LockTimeoutError`` if not."""
        if self._held is not None:
            raise StoreError(f"this lock on {self.key!r} is already held (locks do not nest)")
        started = time.monotonic()
        bucket = self._ns._b()
        # First the process-local gate, so that the other threads of this process that
        # want this lock wait here, not in the engine (where each would hold a pooled
        # connection on PostgreSQL and MariaDB), and are served in arrival order.
        backend = bucket.backend
        gates = _gates_of(backend)
        name = (self._ns.name, self.key)
        token = object()
        gate = gates.enter(name, token, self.timeout)
        held: HeldLock | None = None
        try:
            if gate is not None:
                left = self.timeout
                if left is not None:
                    left = max(0.0, left - (time.monotonic() - started))
                held = bucket.lock(self.key, left, self.lease)
        finally:
            if held is None and gate is not None:
                gates.exit(name, gate, token)
        if held is None:
            raise LockTimeoutError(
                f"lock on {self.key!r} in namespace {self._ns.name!r} "
                f"stayed taken for {self.timeout}s"
            )
        assert gate is not None
        self._lease_based = backend.lease_locks
        if self._lease_based:  # past its lease, the engine lets a waiter take over
            gate.hold_until(token, time.monotonic() + self.lease)
        self._held = held
        self._gate = (gates, gate, token, forks.generation)
        return self

    def _leave_gate(self) -> None:
        # Only in the process that entered it (release() returns before this in a forked
        # child: the gate belongs to the parent's threads).
        entered, self._gate = self._gate, None
        if entered is not None:
            gates, gate, token, _ = entered
            gates.exit((self._ns.name, self.key), gate, token)

    def _inherited(self) -> bool:
        """Whether this process is a child forked while the lock was held: the hold
        (a session on the parent's connection, the parent's token) is the parent's."""
        return self._gate is not None and self._gate[3] != forks.generation

    def renew(self, lease: float | None = None) -> None:
        """Extend the lease: the lock stays ours ``lease`` seconds (default: the lease
        it was taken with) from now.  For holders that work longer than one lease;
        raises ``LockLostError`` if the lock had already been taken from us."""
        if self._held is None or self._inherited():
            raise StoreError(f"the lock on {self.key!r} is not held by this process")
        seconds = self.lease if lease is None else lease
        if not seconds > 0:
            raise ValueError("lease must be > 0 seconds")
        renewed_at = time.monotonic()
        if self._held.renew(seconds):
            if self._gate is not None and self._lease_based:
                self._gate[1].hold_until(self._gate[2], renewed_at + seconds)
        else:
            raise LockLostError(
                f"the lock on {self.key!r} in namespace {self._ns.name!r} was lost "
                "before it could be renewed: another holder may have run at the same time"
            )

    def release(self) -> None:
        """Release the lock; raise ``LockLostError`` if it had been taken from us."""
        held, self._held = self._held, None
        if held is None:
            raise StoreError(f"the lock on {self.key!r} is not held")
        if self._inherited():
            # A forked child leaving a `with` block its parent entered: the lock stays
            # the parent's.  Releasing it here would free it (over the parent's own
            # connection, or with the parent's token) while the parent works on.
            forks.keep_inherited(held)  # never closed, nor sent anything, from here
            self._gate = None
            return
        try:
            released = held.release()
        finally:
            self._leave_gate()
        if not released:
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
    "LeaseHold",
    "Lock",
    "Waiter",
    "lease_info",
    "lease_lock",
    "lease_lock_steps",
    "lock_digest",
    "release_steps",
    "renew_steps",
]
