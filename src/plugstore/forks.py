"""Knowing, cheaply, whether this process is a fork of the one that opened a handle.

``os.getpid()`` is a system call on current C libraries; checking it on every operation
shows in per-operation benchmarks.  Instead a counter is bumped in every forked child
(``os.register_at_fork``): a backend remembers the value it opened its connection with
and compares integers.
"""

from __future__ import annotations

import os

#: Bumped in the child after every ``os.fork()`` (including multiprocessing's fork).
generation = 0


def _after_fork_in_child() -> None:
    global generation
    generation += 1


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)
