"""Locks held by a database session: a connection of a backend's lock pool, kept out of
the pool while the lock is held (PostgreSQL advisory locks, MariaDB ``GET_LOCK``).

The server frees such a lock when its session ends, so closing the store ends the
sessions of the locks it still holds (:meth:`SessionLock.end_session`): other processes
get them at once, not when this one exits.  Each backend keeps the set of its held
locks, which the lock joins when taken and leaves when released.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ..locks import HeldLock
from .connpool import ConnectionPool


class SessionLock(HeldLock):
    """A lock held by ``conn``, a session taken from ``pool``; a member of ``held`` (the
    backend's locks held now) until :meth:`release`."""

    def __init__(self, held: set[SessionLock], pool: ConnectionPool, conn: Any) -> None:
        self._held, self._pool, self._conn = held, pool, conn
        held.add(self)

    def end_session(self) -> None:
        """Close the session (the store is closing): the server frees the lock, and
        :meth:`release` then reports it lost."""
        with contextlib.suppress(Exception):  # already broken: closed all the same
            self._conn.close()

    def release(self) -> bool:
        self._held.discard(self)
        return self._release()

    def _release(self) -> bool:
        """Free the lock on the session; whether it was still held."""
        raise NotImplementedError


def end_sessions(held: set[SessionLock]) -> None:
    """End the sessions of the locks in ``held`` (a closing store's)."""
    for lock in list(held):
        lock.end_session()


__all__ = ["SessionLock", "end_sessions"]
