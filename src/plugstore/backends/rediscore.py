"""The Redis backend's core, without I/O: what the sync shell (:mod:`.redis`, redis-py)
and the async one (:mod:`.redis_aio`, ``redis.asyncio``) send, and how they read it.

The Lua scripts, the key layout of a namespace, every command's arguments and the
parsing of every reply exist here once.  An operation is a :class:`Request` (one round
trip: a command, or a ``MULTI``/``EXEC`` transaction of several) or, when it talks to
the server more than once, *steps*: a generator yielding requests (and
:class:`~plugstore.steps.Sleep`) and receiving their parsed replies, as
:mod:`plugstore.steps` does for namespace operations.  Listings are pages, each of
which carries the request for the next.  What to do after a failed request -- run it
again, load the scripts, wait, or raise which plugstore error -- is :func:`recovery`.
The shells only send requests and sleep: the sync one blocking, the async one awaited,
so the two cannot drift.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Callable, Generator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from redis import exceptions as rx

from ..backend import Backoff
from ..errors import (
    BackendUnavailableError,
    NotReplicatedError,
    PoolExhaustedError,
    StoreDamagedError,
    StoreError,
)
from ..locks import TURN_GRACE, Waiter
from ..steps import Sleep
from .sqltable import PAGE, not_an_integer, prefix_range

if TYPE_CHECKING:
    from .redis import RedisBackend
    from .redis_cluster import RedisClusterBackend

R = TypeVar("R")
T = TypeVar("T")

#: Keys per MGET / MSET / ZADD command in the bulk paths.
CHUNK = 1000
#: Members per script of ``stored_size``: a short script each (the server serves no one
#: else while one runs) with a two-number reply, so a big namespace costs round trips
#: but never one long block or one giant reply.
SIZE_PAGE = 1000
#: What redis-py's blocking pools (sync and async) raise when no connection came back
#: within their timeout.
POOL_EMPTY = "No connection available."

# KEYS: the entry, the index, the deadlines; ARGV: the value, the member.
_SET = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 'NX', 0, ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
"""
# ARGV: the value, the member, the deadline (ms).
_SET_UNTIL = """
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[3])
redis.call('ZADD', KEYS[2], 'NX', 0, ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
"""
# The result travels back as the stored text: a Lua number is a double and would round
# counters past 2**53.  INCRBY keeps a live entry's TTL; an entry it creates (absent, or
# expired) has none, and must not stay listed with the old deadline.
_INCR = """
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 'NX', 0, ARGV[2])
if redis.call('EXISTS', KEYS[3]) == 1 and redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('ZREM', KEYS[3], ARGV[2])
end
return redis.call('GET', KEYS[1])
"""
# The members go whether or not the entry was there: an expired one leaves them behind.
_REMOVE = """
local n = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return n
"""
# ARGV: expected present ("1"/"0"), expected value, new present, new value, member.
# Replacing a live entry keeps its TTL; a new entry has none.
_CAS = """
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur ~= ARGV[2] then return 0 end
elseif cur then
  return 0
end
if ARGV[3] == '1' then
  if cur then
    redis.call('SET', KEYS[1], ARGV[4], 'KEEPTTL')
  else
    redis.call('SET', KEYS[1], ARGV[4])
    redis.call('ZREM', KEYS[3], ARGV[5])
  end
  redis.call('ZADD', KEYS[2], 'NX', 0, ARGV[5])
elseif cur then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[5])
  redis.call('ZREM', KEYS[3], ARGV[5])
end
return 1
"""
# KEYS: the entry, the index, the deadlines; ARGV: the value, the member, the deadline
# (ms, or "" for none).  SET NX: an entry Redis has expired is absent, and takes the new
# value; the index members are brought in line with the entry it leaves.
_ADD = """
if ARGV[3] == '' then
  if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 0 end
  redis.call('ZREM', KEYS[3], ARGV[2])
else
  if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PXAT', ARGV[3]) then return 0 end
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
end
redis.call('ZADD', KEYS[2], 'NX', 0, ARGV[2])
return 1
"""
# KEYS: the entry, the deadlines; ARGV: the deadline (ms), the member.  PEXPIREAT leaves
# an absent (or expired) entry alone and returns 0.
_EXPIRE = """
if redis.call('PEXPIREAT', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return 1
"""
# KEYS: the entry, the deadlines; ARGV: the member.  PERSIST returns 1 only when it
# removed a TTL: an entry without one is present all the same.
_PERSIST = """
if redis.call('PERSIST', KEYS[1]) == 1 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
return redis.call('EXISTS', KEYS[1])
"""
# KEYS: the entries, then the index and the deadlines; ARGV: the values, then the length
# of the entry names' common head (the members are the names without it: half the
# arguments to send).
_SET_MANY = """
local x = table.remove(KEYS)
local idx = table.remove(KEYS)
local head = tonumber(table.remove(ARGV))
local pairs, scored, members = {}, {}, {}
for i = 1, #KEYS do
  local member = string.sub(KEYS[i], head + 1)
  pairs[2 * i - 1] = KEYS[i]
  pairs[2 * i] = ARGV[i]
  scored[2 * i - 1] = 0
  scored[2 * i] = member
  members[i] = member
end
redis.call('MSET', unpack(pairs))
redis.call('ZADD', idx, 'NX', unpack(scored))
redis.call('ZREM', x, unpack(members))
"""
# As _SET_MANY, with each entry's deadline (ms, or "" for none) after the values.
_SET_MANY_UNTIL = """
local x = table.remove(KEYS)
local idx = table.remove(KEYS)
local head = tonumber(table.remove(ARGV))
local n = #KEYS
for i = 1, n do
  local member = string.sub(KEYS[i], head + 1)
  local at = ARGV[n + i]
  if at == '' then
    redis.call('SET', KEYS[i], ARGV[i])
    redis.call('ZREM', x, member)
  else
    redis.call('SET', KEYS[i], ARGV[i], 'PXAT', at)
    redis.call('ZADD', x, at, member)
  end
  redis.call('ZADD', idx, 'NX', 0, member)
end
"""
# KEYS: the entries, then the index and the deadlines; ARGV: the members.
_REMOVE_MANY = """
local x = table.remove(KEYS)
local idx = table.remove(KEYS)
local n = redis.call('DEL', unpack(KEYS))
redis.call('ZREM', idx, unpack(ARGV))
redis.call('ZREM', x, unpack(ARGV))
return n
"""
# Removes from the index (KEYS[1]) and the deadlines (KEYS[2]) the members whose
# deadline is past on the server's clock -- Redis itself has expired their entries
# (it expires an entry once its clock is past the deadline: the same test).  Returns
# how many.  Prepended to the scripts that count, list and purge.
_SWEEP = """
local function sweep(idx, x)
  if redis.call('EXISTS', x) == 0 then return 0 end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local swept = 0
  while true do
    local gone = redis.call('ZRANGEBYSCORE', x, '-inf', '(' .. now, 'LIMIT', 0, 1000)
    if #gone == 0 then return swept end
    redis.call('ZREM', idx, unpack(gone))
    redis.call('ZREM', x, unpack(gone))
    swept = swept + #gone
  end
end
"""
# KEYS: the index, the deadlines; ARGV: the lex range.
_COUNT = (
    _SWEEP
    + """
sweep(KEYS[1], KEYS[2])
if ARGV[1] == '-' and ARGV[2] == '+' then return redis.call('ZCARD', KEYS[1]) end
return redis.call('ZLEXCOUNT', KEYS[1], ARGV[1], ARGV[2])
"""
)
# KEYS: the index, the deadlines; ARGV: the lex range, the page size.
_PAGE = (
    _SWEEP
    + """
sweep(KEYS[1], KEYS[2])
return redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
"""
)
_PURGE = _SWEEP + "return sweep(KEYS[1], KEYS[2])\n"
# The stored bytes of a page of members: each one's length plus its entry's STRLEN (an
# entry the server expired since the sweep counts nothing; an empty value is 0 bytes
# but present).  ARGV: the lex range, the page size, the entries' prefix.  Returns
# {bytes, last member} for a full page (another may follow), {bytes} for the last.
_SIZE_PAGE = (
    _SWEEP
    + """
sweep(KEYS[1], KEYS[2])
local page = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
local total = 0
for _, member in ipairs(page) do
  local entry = ARGV[4] .. member
  local n = redis.call('STRLEN', entry)
  if n > 0 or redis.call('EXISTS', entry) == 1 then total = total + #member + n end
end
if #page == tonumber(ARGV[3]) then return {total, page[#page]} end
return {total}
"""
)
# As _PAGE, with each member's value (false: gone) after it, read in the same script:
# a page of a listing never sees part of a write_batch.  ARGV[4]: the entries' prefix.
_PAGE_ITEMS = (
    _SWEEP
    + """
sweep(KEYS[1], KEYS[2])
local page = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
local out = {}
for i, member in ipairs(page) do
  out[2 * i - 1] = member
  out[2 * i] = redis.call('GET', ARGV[4] .. member)
end
return out
"""
)
# KEYS: the index, the deadlines.  ARGV: the entries' prefix; the number of prefixes to
# clear, then each one's lex range (low, high); the number of members to remove, then
# them; the number of entries to set, then (member, value, deadline ms or "") for each.
# One script: every step lands, or (connection lost before it ran) none.  The entry names
# are built here from their prefix: they share the index's hash tag, so one slot.
_WRITE_BATCH = """
local idx, x, kp = KEYS[1], KEYS[2], ARGV[1]
local i = 3
for _ = 1, tonumber(ARGV[2]) do
  local low, high = ARGV[i], ARGV[i + 1]
  i = i + 2
  while true do
    local page = redis.call('ZRANGEBYLEX', idx, low, high, 'LIMIT', 0, 1000)
    if #page == 0 then break end
    local names = {}
    for j, member in ipairs(page) do names[j] = kp .. member end
    redis.call('DEL', unpack(names))
    redis.call('ZREM', idx, unpack(page))
    redis.call('ZREM', x, unpack(page))
  end
end
local n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  local member = ARGV[i]
  redis.call('DEL', kp .. member)
  redis.call('ZREM', idx, member)
  redis.call('ZREM', x, member)
  i = i + 1
end
n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  local member, value, at = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if at == '' then
    redis.call('SET', kp .. member, value)
    redis.call('ZREM', x, member)
  else
    redis.call('SET', kp .. member, value, 'PXAT', at)
    redis.call('ZADD', x, at, member)
  end
  redis.call('ZADD', idx, 'NX', 0, member)
  i = i + 3
end
"""
# KEYS: the lock; ARGV: the holder's token.  Deletes the lock only if it is still ours.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: the lock; ARGV: the holder's token, the new lease in ms.  Extends our lease only.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS: the lock, its next turn; ARGV: token, lease ms, turn ms, whether to queue.
# Only the waiter holding the next turn (or anyone, when no turn is claimed) may take a
# free lock; a waiter that cannot take it claims the turn, or refreshes its claim.
# Returns 1 (taken), 2 (not yet, but the next turn is ours) or 0.
_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
local turn = redis.call('GET', KEYS[2])
if (not turn) or turn == ARGV[1] then
  if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    if turn then redis.call('DEL', KEYS[2]) end
    return 1
  end
end
if ARGV[4] == '1' then
  if not turn then
    redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
    return 2
  elseif turn == ARGV[1] then
    redis.call('PEXPIRE', KEYS[2], ARGV[3])
    return 2
  end
end
return 0
"""

SCRIPTS = {
    "set": _SET,
    "set_until": _SET_UNTIL,
    "lock": _LOCK,
    "unlock": _UNLOCK,
    "renew": _RENEW,
    "incr": _INCR,
    "remove": _REMOVE,
    "cas": _CAS,
    "add": _ADD,
    "expire": _EXPIRE,
    "persist": _PERSIST,
    "set_many": _SET_MANY,
    "set_many_until": _SET_MANY_UNTIL,
    "remove_many": _REMOVE_MANY,
    "count": _COUNT,
    "page": _PAGE,
    "purge": _PURGE,
    "size_page": _SIZE_PAGE,
    "page_items": _PAGE_ITEMS,
    "write_batch": _WRITE_BATCH,
}
#: Each script's SHA1, as ``SCRIPT LOAD`` answers it: what ``EVALSHA`` names.
SHAS = {
    which: hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
    for which, text in SCRIPTS.items()
}


def ms(deadline: float) -> int:
    """A deadline in epoch seconds as Redis's PXAT milliseconds, rounded down: read back
    (``ms / 1000``) it is never later than ``deadline``, so ``ttl()`` never reads above
    the ttl just set, and the entry leaves at most a millisecond early, never late."""
    at = math.floor(deadline * 1000)
    if at / 1000 > deadline:  # the product itself rounded up to the next integer
        at -= 1
    return at


def lex_range(prefix: str) -> tuple[bytes, bytes]:
    """ZRANGEBYLEX bounds selecting the members that start with ``prefix``."""
    if not prefix:
        return b"-", b"+"
    low, high = prefix_range(prefix)
    return b"[" + low.encode(), (b"(" + high.encode()) if high is not None else b"+"


# -- requests ------------------------------------------------------------------------------


Command = tuple[Any, ...]


class Request(Generic[R]):
    """One round trip: ``command`` (the arguments of one Redis command), or ``multi``
    (commands sent as one ``MULTI``/``EXEC`` transaction: all of them run, or -- the
    connection lost before ``EXEC`` -- none).

    ``retry``: whether the request may be sent again after a lost connection (running it
    twice is harmless).  ``write``: whether it changes stored data or a lock (a Redis
    Cluster store with ``wait=N`` has each of those confirmed by N replicas).
    ``parse`` turns the reply into the operation's result; ``refuse``, if set, turns a
    ``ResponseError`` reply it recognises into the plugstore error the caller gets
    (``None``: not one of its own, :func:`refused` says what it is).
    """

    __slots__ = ("command", "multi", "parse", "refuse", "retry", "write")

    def __init__(
        self,
        command: Command | None,
        parse: Callable[[Any], R],
        *,
        retry: bool,
        multi: tuple[Command, ...] | None = None,
        refuse: Callable[[rx.ResponseError], Exception | None] | None = None,
        write: bool = False,
    ) -> None:
        self.command = command
        self.multi = multi
        self.parse = parse
        self.retry = retry
        self.refuse = refuse
        self.write = write

    @property
    def commands(self) -> tuple[Command, ...]:
        """The commands sent: the one command, or those of the transaction."""
        return (self.command,) if self.command is not None else self.multi or ()

    @property
    def key(self) -> bytes | None:
        """The first key the request names (every key of a request shares its hash
        slot: a namespace's); ``None`` for a request without keys."""
        for command in self.commands:
            if command[0] == "EVALSHA":
                if command[2]:
                    return command[3]  # type: ignore[no-any-return]
            elif len(command) > 1 and not command[0].startswith("SCRIPT"):
                return command[1]  # type: ignore[no-any-return]
        return None

    def __repr__(self) -> str:
        what = self.command[0] if self.command is not None else "MULTI"
        return f"<Request {what} retry={self.retry}>"


#: Operations of several round trips: they yield requests (and sleeps) and receive each
#: request's parsed reply.
Steps = Generator["Request[Any] | Sleep", Any, R]


def evalsha(which: str, keys: Sequence[bytes], args: Sequence[Any]) -> Command:
    """``EVALSHA`` of script ``which``, never ``EVAL``: the script text is sent once per
    server (again after a restart empties its script cache: NOSCRIPT means nothing
    ran)."""
    return ("EVALSHA", SHAS[which], len(keys), *keys, *args)


def _nothing(reply: Any) -> None:
    return None


def _flag(reply: Any) -> bool:
    return bool(reply)


def _number(reply: Any) -> int:
    return int(reply)


def _value(reply: Any) -> bytes | None:
    value: bytes | None = reply
    return value


def _with_deadline(reply: Any) -> tuple[bytes, float | None] | None:
    value, at = reply
    if value is None:
        return None
    return value, (None if at is None else at / 1000)


def _found(keys: Sequence[str], reply: Any) -> dict[str, bytes]:
    return {key: value for key, value in zip(keys, reply, strict=True) if value is not None}


def _found_with_deadlines(keys: Sequence[str], reply: Any) -> dict[str, tuple[bytes, float | None]]:
    values, deadlines = reply
    return {
        key: (value, None if at is None else float(at) / 1000)
        for key, value, at in zip(keys, values, deadlines, strict=True)
        if value is not None
    }


def _size_page(reply: Any) -> tuple[int, bytes | None]:
    """A ``size_page`` reply: the page's bytes, and its last member if it was full."""
    return int(reply[0]), (reply[1] if len(reply) > 1 else None)


def _incr_refused(key: str, exc: rx.ResponseError) -> Exception | None:
    if "integer" in str(exc) or "overflow" in str(exc):  # not an integer, or would overflow
        return not_an_integer(key)
    return None


#: Loads every script: one transaction, one round trip.  Sent when a store opens (not
#: retried: a server that is down fails the opening at once) and after NOSCRIPT.
LOAD_SCRIPTS: Request[None] = Request(
    None, _nothing, retry=False, multi=tuple(("SCRIPT LOAD", text) for text in SCRIPTS.values())
)


class Page(Generic[T]):
    """A page of a listing: its items, and the request for the next page (``None``:
    this was the last)."""

    __slots__ = ("items", "next")

    def __init__(self, items: list[T], next: Request[Page[T]] | None) -> None:
        self.items = items
        self.next = next


# -- one namespace ---------------------------------------------------------------------------


class NamespaceOps:
    """The requests of one namespace: its entry strings ``<prefix>{<ns>}:k:<key>``, its
    index ``:i``, its deadlines ``:x``, its locks ``:l:<key>`` and their turns
    ``:t:<key>`` (see :mod:`.redis` for the layout).

    Each method builds what the :class:`~plugstore.backend.Bucket` method of the same
    name sends: a :class:`Request`, steps (``get_many``, ``clear``...), the first
    :class:`Page` of a listing, or a :class:`LockAttempt`."""

    def __init__(self, prefix: str, namespace: str) -> None:
        base = f"{prefix}{{{namespace}}}:".encode()
        self.kp = base + b"k:"
        self.lp = base + b"l:"
        self.tp = base + b"t:"
        self.idx = base + b"i"
        self.x = base + b"x"

    # -- single keys --------------------------------------------------------------------

    def get(self, key: str) -> Request[bytes | None]:
        return Request(("GET", self.kp + key.encode()), _value, retry=True)

    def contains(self, key: str) -> Request[bool]:
        return Request(("EXISTS", self.kp + key.encode()), _flag, retry=True)

    def set(self, key: str, value: bytes) -> Request[None]:
        member = key.encode()
        # Setting a given value twice is harmless: retried after a lost connection.
        command = evalsha("set", (self.kp + member, self.idx, self.x), (value, member))
        return Request(command, _nothing, retry=True, write=True)

    def set_until(self, key: str, value: bytes, deadline: float) -> Request[None]:
        member = key.encode()
        args = (value, member, ms(deadline))
        command = evalsha("set_until", (self.kp + member, self.idx, self.x), args)
        return Request(command, _nothing, retry=True, write=True)

    def get_with_deadline(self, key: str) -> Request[tuple[bytes, float | None] | None]:
        member = key.encode()
        multi = (("GET", self.kp + member), ("ZSCORE", self.x, member))
        return Request(None, _with_deadline, retry=True, multi=multi)

    def remove(self, key: str) -> Request[bool]:
        member = key.encode()
        command = evalsha("remove", (self.kp + member, self.idx, self.x), (member,))
        return Request(command, _flag, retry=False, write=True)

    def cas(self, key: str, expected: bytes | None, new: bytes | None) -> Request[bool]:
        member = key.encode()
        args = (
            b"0" if expected is None else b"1",
            expected or b"",
            b"0" if new is None else b"1",
            new or b"",
            member,
        )
        command = evalsha("cas", (self.kp + member, self.idx, self.x), args)
        return Request(command, _flag, retry=False, write=True)

    def add(self, key: str, value: bytes, deadline: float | None) -> Request[bool]:
        member = key.encode()
        args = (value, member, b"" if deadline is None else ms(deadline))
        command = evalsha("add", (self.kp + member, self.idx, self.x), args)
        # Not retried after a lost connection: a lost success would read as False.
        return Request(command, _flag, retry=False, write=True)

    def expire(self, key: str, deadline: float) -> Request[bool]:
        member = key.encode()
        command = evalsha("expire", (self.kp + member, self.x), (ms(deadline), member))
        # Retried: the same absolute deadline set twice is the same.
        return Request(command, _flag, retry=True, write=True)

    def persist(self, key: str) -> Request[bool]:
        member = key.encode()
        command = evalsha("persist", (self.kp + member, self.x), (member,))
        return Request(command, _flag, retry=True, write=True)

    def incr(self, key: str, delta: int) -> Request[int]:
        member = key.encode()
        command = evalsha("incr", (self.kp + member, self.idx, self.x), (delta, member))
        refuse = partial(_incr_refused, key)
        return Request(command, _number, retry=False, refuse=refuse, write=True)

    def lock(self, key: str, timeout: float | None, lease: float) -> LockAttempt:
        """An attempt to take the lock on ``key`` (see :class:`LockAttempt`)."""
        return LockAttempt(self, key, timeout, lease)

    # -- listings -----------------------------------------------------------------------

    def keys(self, prefix: str = "", limit: int | None = None) -> Request[Page[str]] | None:
        """The first page of the keys starting with ``prefix`` (at most ``limit`` in all;
        ``None`` if that is none)."""
        low, high = lex_range(prefix)
        return self._member_page(low, high, limit, _decode_all)

    def keys_after(self, prefix: str, after: str, limit: int) -> Request[Page[str]] | None:
        """The first page of at most ``limit`` keys starting with ``prefix`` that sort
        after ``after`` (a seek in the index); ``None`` if that is none."""
        low, high = lex_range(prefix)
        mark = after.encode()
        if low == b"-" or mark >= low[1:]:
            low = b"(" + mark
        return self._member_page(low, high, max(0, limit), _decode_all)

    def _members(self, prefix: str) -> Request[Page[bytes]] | None:
        low, high = lex_range(prefix)
        return self._member_page(low, high, None, _as_is)

    def _member_page(
        self,
        low: bytes,
        high: bytes,
        left: int | None,
        convert: Callable[[list[bytes]], list[T]],
    ) -> Request[Page[T]] | None:
        # Each page is its own short script (expired members swept first), so the caller
        # may write between pages; the next starts after the last member read.
        count = PAGE if left is None else min(PAGE, left)
        if count <= 0:
            return None
        command = evalsha("page", (self.idx, self.x), (low, high, count))
        parse = partial(self._parse_members, high, left, count, convert)
        return Request(command, parse, retry=True)

    def _parse_members(
        self,
        high: bytes,
        left: int | None,
        count: int,
        convert: Callable[[list[bytes]], list[T]],
        reply: list[bytes],
    ) -> Page[T]:
        following = None
        if len(reply) == count:
            rest = None if left is None else left - count
            following = self._member_page(b"(" + reply[-1], high, rest, convert)
        return Page(convert(reply), following)

    def items(
        self, prefix: str = "", limit: int | None = None
    ) -> Request[Page[tuple[str, bytes]]] | None:
        """The first page of ``(key, value)`` pairs starting with ``prefix``: members and
        values of a page are read in one script, so a page is a snapshot."""
        low, high = lex_range(prefix)
        return self._item_page(low, high, limit)

    def _item_page(
        self, low: bytes, high: bytes, left: int | None
    ) -> Request[Page[tuple[str, bytes]]] | None:
        count = PAGE if left is None else min(PAGE, left)
        if count <= 0:
            return None
        command = evalsha("page_items", (self.idx, self.x), (low, high, count, self.kp))
        return Request(command, partial(self._parse_items, high, left, count), retry=True)

    def _parse_items(
        self, high: bytes, left: int | None, count: int, flat: list[Any]
    ) -> Page[tuple[str, bytes]]:
        pairs = [
            (flat[i].decode(), flat[i + 1])
            for i in range(0, len(flat), 2)
            if flat[i + 1] is not None  # expired by the server since the sweep
        ]
        following = None
        if len(flat) == 2 * count:
            rest = None if left is None else left - count
            following = self._item_page(b"(" + flat[-2], high, rest)
        return Page(pairs, following)

    def count(self, prefix: str = "") -> Request[int]:
        low, high = lex_range(prefix)
        return Request(evalsha("count", (self.idx, self.x), (low, high)), _number, retry=True)

    def stored_size(self, prefix: str = "") -> Steps[int]:
        """The bytes of the live keys starting with ``prefix`` and their values, added
        up by the server a page of :data:`SIZE_PAGE` members per script."""
        low, high = lex_range(prefix)
        total = 0
        while True:
            command = evalsha("size_page", (self.idx, self.x), (low, high, SIZE_PAGE, self.kp))
            page: tuple[int, bytes | None] = yield Request(command, _size_page, retry=True)
            size, last = page
            total += size
            if last is None:
                return total
            low = b"(" + last

    def purge(self) -> Request[int]:
        # Redis has deleted the expired entries already: their index members go.
        return Request(evalsha("purge", (self.idx, self.x), ()), _number, retry=False, write=True)

    # -- many keys -----------------------------------------------------------------------

    def get_many(self, keys: Sequence[str]) -> Steps[dict[str, bytes]]:
        found: dict[str, bytes] = {}
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            command = ("MGET", *(self.kp + k.encode() for k in chunk))
            found.update((yield Request(command, partial(_found, chunk), retry=True)))
        return found

    def get_many_with_deadlines(
        self, keys: Sequence[str]
    ) -> Steps[dict[str, tuple[bytes, float | None]]]:
        found: dict[str, tuple[bytes, float | None]] = {}
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            members = [k.encode() for k in chunk]
            multi = (("MGET", *(self.kp + m for m in members)), ("ZMSCORE", self.x, *members))
            parse = partial(_found_with_deadlines, chunk)
            found.update((yield Request(None, parse, retry=True, multi=multi)))
        return found

    def set_many(self, items: Sequence[tuple[str, bytes]]) -> Request[None] | None:
        return self._write_chunks("set_many", items, lambda chunk: [v for _, v in chunk])

    def set_many_until(
        self, items: Sequence[tuple[str, bytes, float | None]]
    ) -> Request[None] | None:
        return self._write_chunks(
            "set_many_until",
            items,
            lambda chunk: [
                *(v for _, v, _ in chunk),
                *(b"" if d is None else ms(d) for _, _, d in chunk),
            ],
        )

    def _write_chunks(
        self,
        script: str,
        items: Sequence[tuple[Any, ...]],
        arguments: Callable[[Sequence[tuple[Any, ...]]], list[Any]],
    ) -> Request[None] | None:
        """A bulk-write ``script`` over ``items`` (``(key, value, ...)``) a chunk at a
        time, every chunk in one MULTI/EXEC: every entry lands, or (connection lost
        before EXEC) none.  Retried: the same upserts again are harmless.  ``None`` for
        no items."""
        if not items:
            return None
        multi = []
        for start in range(0, len(items), CHUNK):
            chunk = items[start : start + CHUNK]
            keys = (*(self.kp + item[0].encode() for item in chunk), self.idx, self.x)
            multi.append(evalsha(script, keys, [*arguments(chunk), len(self.kp)]))
        return Request(None, _nothing, retry=True, multi=tuple(multi), write=True)

    def write_batch(
        self,
        sets: Sequence[tuple[str, bytes, float | None]],
        removes: Sequence[str] = (),
        clears: Sequence[str] = (),
    ) -> Request[None]:
        args: list[Any] = [self.kp, len(clears)]
        for prefix in clears:
            args += lex_range(prefix)
        args.append(len(removes))
        args += [key.encode() for key in removes]
        args.append(len(sets))
        for key, value, deadline in sets:
            args += (key.encode(), value, b"" if deadline is None else ms(deadline))
        # Retried: the same deletes and upserts applied again give the same result.
        return Request(
            evalsha("write_batch", (self.idx, self.x), args), _nothing, retry=True, write=True
        )

    def clear(self, prefix: str = "") -> Steps[int]:
        removed = 0
        page_request = self._members(prefix)
        while page_request is not None:
            page: Page[bytes] = yield page_request
            if page.items:  # each page deleted atomically
                keys = [*(self.kp + m for m in page.items), self.idx, self.x]
                command = evalsha("remove_many", keys, page.items)
                removed += yield Request(command, _number, retry=False, write=True)
            page_request = page.next
        return removed


def _decode_all(members: list[bytes]) -> list[str]:
    return [member.decode() for member in members]


def _as_is(members: list[bytes]) -> list[bytes]:
    return members


# -- locks ---------------------------------------------------------------------------------

#: Replies of the lock script: taken; not yet, but the next turn is ours; not yet.
TAKEN, NEXT_IN_LINE = 1, 2


class LockAttempt:
    """Taking the lock on a key: ``SET lock token NX PX lease``, tried until ``timeout``
    (:meth:`steps`); the lock expires with its lease if the holder dies, and is released
    (:meth:`release`) or renewed only while the token is ours.  A waiter claims the
    key's next *turn* (a second key, expiring after :data:`~plugstore.locks.TURN_GRACE`
    unless refreshed) so that waiters of every process are served in turn."""

    def __init__(self, ops: NamespaceOps, key: str, timeout: float | None, lease: float) -> None:
        self.name = ops.lp + key.encode()
        self.turn = ops.tp + key.encode()
        self.token = secrets.token_bytes(16)
        self.timeout = timeout
        queue = 0 if timeout == 0 else 1  # a single try never claims a turn
        args = (self.token, max(1, round(lease * 1000)), round(TURN_GRACE * 1000), queue)
        # Retried after a lost reply: the script first asks whether the token holds it.
        self.attempt = Request(
            evalsha("lock", (self.name, self.turn), args), _number, retry=True, write=True
        )

    def steps(self) -> Steps[bool]:
        """Try until the lock is ours (``True``) or ``timeout`` has passed (``False``,
        the turn given back)."""
        waiter = Waiter(self.timeout)
        while (got := (yield self.attempt)) != TAKEN:
            pause = waiter.pause(next_in_line=got == NEXT_IN_LINE)
            if pause is None:
                yield self._unlock(self.turn)  # give our turn back
                return False
            yield Sleep(pause)
        return True

    def _unlock(self, name: bytes) -> Request[bool]:
        # Retried: deleting our own token twice is harmless.
        return Request(evalsha("unlock", (name,), (self.token,)), _flag, retry=True, write=True)

    def release(self) -> Request[bool]:
        """Release the lock; the reply says whether it was still ours."""
        return self._unlock(self.name)

    def renew(self, lease: float) -> Request[bool]:
        """Extend our lease to ``lease`` seconds from now; whether it was still ours."""
        args = (self.token, max(1, round(lease * 1000)))  # retried: extending twice is harmless
        return Request(evalsha("renew", (self.name,), args), _flag, retry=True, write=True)

    def abandon(self) -> Request[None]:
        """Undo an attempt given up midway (its task cancelled): the lock, if a try took
        it, and the turn, if one claimed it -- each only while the token is ours."""
        multi = (
            evalsha("unlock", (self.name,), (self.token,)),
            evalsha("unlock", (self.turn,), (self.token,)),
        )
        return Request(None, _nothing, retry=True, multi=multi, write=True)


# -- writes confirmed by replicas (Redis Cluster, wait=N) -------------------------------------


def waited_commands(
    request: Request[Any], replicas: int, timeout: float, asking: bool
) -> list[Command]:
    """What carries ``request`` to its master when ``replicas`` must confirm it: the
    command (or ``MULTI``, the commands, ``EXEC``), then ``WAIT replicas timeout_ms`` --
    on one connection, as WAIT counts the replicas that have this connection's last
    write.  ``ASKING`` first when an ``ASK`` redirection sent it to this node."""
    if request.command is not None:
        commands: list[Command] = [request.command]
    else:
        commands = [("MULTI",), *(request.multi or ()), ("EXEC",)]
    if asking:  # it lets the next command only (MULTI) in: an ASK'd slot's node
        commands.insert(0, ("ASKING",))
    commands.append(("WAIT", replicas, max(1, round(timeout * 1000))))
    return commands


def check_waited(
    backend: RedisClusterBackend, request: Request[Any], replies: list[Any], asking: bool
) -> Any:
    """The reply of ``request`` among ``replies`` (those of :func:`waited_commands`,
    errors as values): the first error raised (a redirection first: then nothing ran);
    :class:`~plugstore.errors.NotReplicatedError` if WAIT counted fewer replicas than
    ``backend.wait``."""
    if asking:
        replies = replies[1:]
    *answers, confirmed = replies
    errors = [reply for reply in answers if isinstance(reply, Exception)]
    redirects = [error for error in errors if isinstance(error, NOT_RUN)]
    if redirects or errors:
        raise (redirects or errors)[0]
    reply = answers[0] if request.command is not None else answers[-1]
    if request.command is None:
        failed = [item for item in reply if isinstance(item, Exception)]
        if failed:
            raise failed[0]
    if isinstance(confirmed, Exception):
        # The write ran, then WAIT failed: the master turned replica while WAIT waited
        # (a failover: Redis unblocks it with an error), so the write may be lost.
        raise NotReplicatedError(
            f"a write was applied on its {backend.engine} master but WAIT failed "
            f"({confirmed}): that master may have been replaced by a failover, and the "
            f"write may be lost. Read it back once the cluster is whole (`redis-cli "
            f"--cluster check HOST:PORT`), or repeat it if repeating is safe"
        )
    if int(confirmed) < backend.wait:
        raise NotReplicatedError(
            f"a write was applied on its {backend.engine} master but {confirmed} of the "
            f"{backend.wait} replicas asked for (wait={backend.wait}) confirmed it within "
            f"wait_timeout={backend.wait_timeout}s: it may be lost if that master fails "
            f"before its replicas catch up. Check the master's replicas (INFO replication "
            f"on it, or `redis-cli --cluster check HOST:PORT`), raise wait_timeout, or "
            f"lower wait"
        )
    return reply


# -- failures ----------------------------------------------------------------------------------

#: What the shells catch: redis-py's errors, and those of its cluster client that are not
#: ``RedisError``s (an uncovered slot, a cluster no node of which answers).
ERRORS = (rx.RedisError, rx.RedisClusterException)
#: Redis Cluster replies that mean the request did not run: the slot moved (``MOVED``,
#: ``ASK``: a transaction's redirection comes back to plugstore), is being migrated
#: (``TRYAGAIN``), or the cluster is down (``CLUSTERDOWN``, ``MASTERDOWN``); redis-py
#: giving up after 16 of those in a row ("TTL exhausted", a bare ``ClusterError``); and
#: a slot no node serves in the client's map.  Safe to send again, whatever it does.
NOT_RUN = (rx.AskError, rx.TryAgainError, rx.ClusterError, rx.SlotNotCoveredError)


def never_sent(exc: Exception) -> bool:
    """Whether ``exc`` is redis-py failing to make a connection ("Error 111 connecting
    to ...", "Timeout connecting to server"): the request never left this process.
    (redis-py's own retries are off, so no connection made again carries a resend.)"""
    text = str(exc)
    return isinstance(exc, rx.ConnectionError | rx.TimeoutError) and (
        " connecting to " in text or "Timeout connecting" in text
    )


def unavailable(backend: RedisBackend, exc: BaseException) -> BackendUnavailableError:
    """The error for a server that could not be reached or answered too late."""
    # redis-py's messages name host and port, never the password; keep the first line.
    text = str(exc).strip()
    detail = text.splitlines()[0] if text else type(exc).__name__
    return BackendUnavailableError(
        f"{backend.engine} at {backend.where} is unavailable: {detail}{backend.advice(exc)}"
    )


#: What to do about a Redis error reply, by its first word.
_REFUSAL_ADVICE = {
    "OOM": "the server reached maxmemory and refuses writes: raise maxmemory, set an "
    "eviction policy, or free space",
    "READONLY": "the server is a read-only replica: point the URL at the master",
    "MISCONF": "the server cannot save its snapshot and refuses writes: check its disk "
    "and logs (stop-writes-on-bgsave-error)",
    "NOPERM": "the store's user lacks a permission: grant it the commands plugstore runs "
    "(docs/backends.md)",
    "BUSY": "a script runs too long on the server: wait, or stop it (SCRIPT KILL)",
}


#: Error codes redis-py drops from the message of the replies it has a class for.
_CODES = (
    (rx.OutOfMemoryError, "OOM"),
    (rx.ReadOnlyError, "READONLY"),
    (rx.NoPermissionError, "NOPERM"),
)


def refused(backend: RedisBackend, exc: rx.RedisError) -> StoreError:
    """The plugstore error for an error reply no operation handles itself: a key of the
    store's holding something plugstore did not write (``WRONGTYPE``), or the server
    refusing work (out of memory, a read-only replica, a missing permission...)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    code = next((code for cls, code in _CODES if isinstance(exc, cls)), "")
    if code:
        text = f"{code} {text}"
    word = text.split(" ", 1)[0]
    if word == "WRONGTYPE":
        return StoreDamagedError(
            f"{backend.engine} at {backend.where}: a key under the prefix "
            f"{backend.prefix!r} holds a value plugstore did not write ({text}): another "
            "program writes under this prefix. Give the store a prefix of its own, or "
            "delete the foreign keys (`plugstore doctor` names the prefix)"
        )
    advice = _REFUSAL_ADVICE.get(word, "see the server's log")
    return BackendUnavailableError(
        f"{backend.engine} at {backend.where} refused the request: {text} ({advice})"
    )


def recovery(
    backend: RedisBackend, exc: Exception, retry: bool, backoff: Backoff, holders: str
) -> float | None:
    """A request failed with ``exc``: raise the error the caller gets, or say how to go
    on -- ``None``: load the scripts, then send it again; a number: wait that long, then
    send it again.

    NOSCRIPT (a restarted server, or a replica promoted, does not have the scripts),
    "loading the dataset", a cluster's redirections and outages (:data:`NOT_RUN`) and a
    connection that could not be made (``backend.unsent``) mean nothing ran: load the
    scripts / wait, then run again, whatever the operation, until ``backoff`` expires
    (``retry_timeout``).  After a lost connection or a timeout, only ``retry`` requests
    run again; the rest raise ``BackendUnavailableError`` at once, since whether the
    lost attempt applied is unknown.  A pool whose connections all stayed in use raises
    ``PoolExhaustedError``: ``holders`` (threads, tasks) of this process hold them,
    and waiting more is no cure.
    """
    if isinstance(exc, rx.MaxConnectionsError) or (
        isinstance(exc, rx.ConnectionError) and str(exc) == POOL_EMPTY
    ):
        # redis.asyncio's cluster nodes do not queue for a connection (MaxConnectionsError)
        held = (
            "were in use"
            if isinstance(exc, rx.MaxConnectionsError)
            else f"stayed in use for {backend.connect_timeout}s"
        )
        raise PoolExhaustedError(
            f"the Redis connection pool for {backend.where} is exhausted: all "
            f"{backend.pool_max} connections{backend.pool_scope} {held} by other {holders} "
            f"of this process (raise the pool_max option)"
        ) from None
    if isinstance(exc, rx.NoScriptError):
        return None
    if isinstance(exc, (*NOT_RUN, rx.BusyLoadingError)) or backend.unsent(exc):
        if backoff.expired():
            raise unavailable(backend, exc) from None
        if isinstance(exc, rx.MovedError):  # the slot map was just corrected: go again now
            return 0.0
        return backoff.pause()
    lost = rx.ConnectionError | rx.TimeoutError | rx.RedisClusterUnreachableError
    if isinstance(exc, lost):
        if not retry or backoff.expired():
            raise unavailable(backend, exc) from None
        return backoff.pause()
    if isinstance(exc, rx.RedisClusterException):  # the client found no way to route it
        raise unavailable(backend, exc) from None
    if isinstance(exc, rx.ResponseError):
        raise exc  # an error reply: the operation may say what it means (Request.refuse)
    raise unavailable(backend, exc) from None  # a reply redis-py could not read


__all__ = [
    "CHUNK",
    "ERRORS",
    "LOAD_SCRIPTS",
    "NEXT_IN_LINE",
    "NOT_RUN",
    "POOL_EMPTY",
    "SCRIPTS",
    "SHAS",
    "SIZE_PAGE",
    "TAKEN",
    "LockAttempt",
    "NamespaceOps",
    "Page",
    "Request",
    "Steps",
    "check_waited",
    "evalsha",
    "lex_range",
    "ms",
    "never_sent",
    "recovery",
    "refused",
    "unavailable",
    "waited_commands",
]
