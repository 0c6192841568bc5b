"""Knowing, cheaply, whether this process is a fork of the one that opened a handle.

``os.getpid()`` is a system call on current C libraries; checking it on every operation
shows in per-operation benchmarks.  Instead a counter is bumped in every forked child
(``os.register_at_fork``): a backend remembers the value it opened its connection with
and compares integers.
"""

from __future__ import annotations

import os
import threading

#: Bumped in the child after every ``os.fork()`` (including multiprocessing's fork).
generation = 0

#: The lock a forked child takes while it replaces what it inherited.  Not a backend's
#: own lock: a parent thread may have held that one at the moment of the fork, and the
#: child's copy would then stay locked forever.  This one is made anew in every child.
child_lock = threading.Lock()

#: Handles a forked child inherited from its parent.  They are kept referenced, never
#: closed or finalised: finalising one in the child (libpq's PQfinish, sqlite3_close)
#: would act on a socket or file the parent is still using.
_inherited: list[object] = []


def keep_inherited(handle: object) -> None:
    """Keep ``handle`` (a parent's connection or pool) alive, untouched, in this child."""
    if handle is not None:
        _inherited.append(handle)


def _after_fork_in_child() -> None:
    global generation, child_lock
    child_lock = threading.Lock()
    generation += 1


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)
