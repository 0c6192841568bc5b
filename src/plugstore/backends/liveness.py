"""Telling, without a round trip, whether an idle pooled connection is still usable.

An idle connection has nothing to read.  Anything there -- end of file after an idle
timeout or a server restart, or a last error message announcing the close -- means the
connection is unusable, and it is found out before anything is sent, so taking another
connection is safe for any statement, ``incr`` included.  One ``poll`` with no wait.
"""

from __future__ import annotations

import select

_EVENTS = select.POLLIN | select.POLLPRI


def watch(fd: int) -> select.poll:
    """A poll object for socket ``fd``; keep it with the connection and pass it to
    :func:`has_news` (creating it costs more than asking it)."""
    poller = select.poll()
    poller.register(fd, _EVENTS)
    return poller


def has_news(poller: select.poll) -> bool:
    """Whether the watched idle socket has something to read (or was closed)."""
    return bool(poller.poll(0))


def closed_by_server(fd: int) -> bool:
    """Whether the server closed (or wrote to) the idle connection on socket ``fd``."""
    return fd < 0 or has_news(watch(fd))
