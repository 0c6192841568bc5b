"""``redis://[user:password@]host:port/db`` and ``rediss://`` (TLS) -- Redis through redis-py.

* **Layout**: one Redis string per entry, ``<prefix>{<namespace>}:k:<key>``, plus one
  sorted set per namespace, ``<prefix>{<namespace>}:i``, whose members are the keys
  (UTF-8, all scored 0, so they sort by byte -- that is, code point -- order).  Keys
  with a deadline (``ttl=``) are also members of ``<prefix>{<namespace>}:x``, scored by
  their deadline in milliseconds.  The index
  answers ``len`` (``ZCARD``/``ZLEXCOUNT``) and key listings, including by prefix
  (``ZRANGEBYLEX``), without scanning anything; namespaces are found with ``SCAN`` (never
  ``KEYS``) over the index names, the prefix's glob characters escaped.  The braces are a
  Redis Cluster hash tag: every key of a namespace lives in one slot.
* **Atomic operations**: writes touching an entry and its index run as one Lua script
  (``EVALSHA``): ``set``, ``remove``, compare-and-set, ``add`` (``SET NX``, with ``PXAT``
  for a deadline), ``expire`` (``PEXPIREAT``), ``persist`` (``PERSIST``), and ``incr``
  (native ``INCRBY``, whose integer rules are exactly plugstore's: canonical decimal
  text, signed 64-bit).
  ``set_many`` is one ``MULTI``/``EXEC`` transaction of ``MSET`` and ``ZADD``;
  ``get_many`` is ``MGET``.
* **Expiry** is Redis's own: an entry is written with ``SET ... PXAT <deadline>`` (the
  deadline computed from the store clock, rounded down to the millisecond), ``incr`` and
  compare-and-set keep it (``INCRBY`` leaves a TTL alone, ``SET ... KEEPTTL``), a plain
  ``set`` drops it.  Redis
  deletes an expired entry by *its* clock; the index members it leaves behind are
  removed by the scripts that count and list a namespace (those scored below the
  server's ``TIME`` in ``:x``) and by ``purge``.
* **Durability** is the server's: with ``appendonly yes`` and ``appendfsync always`` an
  acknowledged write survives a server crash; ``everysec`` (Redis' default once AOF is
  on) may lose the last second; without AOF a restart loses what the last snapshot did
  not hold -- everything, with ``save ""``.  A ``kill -9`` of the *client* never loses an
  acknowledged write.  ``plugstore doctor`` shows the server's setting.  The server must
  not evict keys (``maxmemory-policy noeviction``, the default), or entries could vanish
  behind the index's back.
* **Connections**: a redis-py blocking connection pool (thread-safe; a forked child gets
  fresh connections, redis-py checks the pid).  redis-py's own silent retries are off:
  plugstore retries only what is safe to repeat (reads, ``set``, ``set_many``) after a
  lost connection, until ``retry_timeout``; ``incr``, compare-and-set and ``remove``
  raise :class:`~plugstore.errors.BackendUnavailableError` instead.  A pool whose
  connections all stayed in use for ``connect_timeout`` raises
  :class:`~plugstore.errors.PoolExhaustedError` at once.

Options (query string or keywords): ``prefix`` (default ``plugstore:``), ``db`` (or the
URL path), ``connect_timeout`` (seconds, default 5), ``socket_timeout`` (default 10),
``retry_timeout`` (default 30), ``pool_max`` (default 20), ``username``, ``password``,
``unix_socket`` (a socket path instead of host and port), and for ``rediss://``:
``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs``
(``required``/``optional``/``none``), ``ssl_check_hostname``.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, TypeVar

import redis
from redis import exceptions as rx
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..backend import Backend, Backoff, Bucket, Options
from ..errors import BackendUnavailableError, ConfigurationError, PoolExhaustedError
from ..locks import TURN_GRACE, HeldLock, Waiter
from ..url import StoreURL
from .sqltable import PAGE, not_an_integer, prefix_range

T = TypeVar("T")

_PREFIX_RE = re.compile(r"[A-Za-z0-9_.:/-]{0,100}\Z")
_GLOB = re.compile(r"([*?\[\]\\])")
#: Keys per MGET / MSET / ZADD command in the bulk paths.
_CHUNK = 1000
#: What redis-py's blocking pool raises when no connection came back within its timeout.
_POOL_EMPTY = "No connection available."

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
_SCRIPTS = {
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
    "page_items": _PAGE_ITEMS,
    "write_batch": _WRITE_BATCH,
}


def _ms(deadline: float) -> int:
    """A deadline in epoch seconds as Redis's PXAT milliseconds, rounded down: read back
    (``ms / 1000``) it is never later than ``deadline``, so ``ttl()`` never reads above
    the ttl just set, and the entry leaves at most a millisecond early, never late."""
    ms = math.floor(deadline * 1000)
    if ms / 1000 > deadline:  # the product itself rounded up to the next integer
        ms -= 1
    return ms


def glob_escape(text: str) -> str:
    """``text`` as a Redis glob pattern matching exactly itself."""
    return _GLOB.sub(r"\\\1", text)


def _lex_range(prefix: str) -> tuple[bytes, bytes]:
    """ZRANGEBYLEX bounds selecting the members that start with ``prefix``."""
    if not prefix:
        return b"-", b"+"
    low, high = prefix_range(prefix)
    return b"[" + low.encode(), (b"(" + high.encode()) if high is not None else b"+"


class _RedisLock(HeldLock):
    def __init__(self, bucket: RedisBucket, name: bytes, token: bytes) -> None:
        self._bucket, self._name, self._token = bucket, name, token

    def renew(self, lease: float) -> bool:
        ms = max(1, round(lease * 1000))  # retried: extending twice is harmless
        return bool(self._bucket._run("renew", (self._name,), (self._token, ms), True))

    def release(self) -> bool:
        # Retried: deleting our own token twice is harmless.
        return bool(self._bucket._run("unlock", (self._name,), (self._token,), True))


class RedisBucket(Bucket):
    """One namespace: its entry strings and their sorted-set index."""

    backend: RedisBackend

    def __init__(self, backend: RedisBackend, namespace: str) -> None:
        super().__init__(backend, namespace)
        base = f"{backend.prefix}{{{namespace}}}:".encode()
        self._kp = base + b"k:"
        self._lp = base + b"l:"
        self._tp = base + b"t:"
        self._idx = base + b"i"
        self._x = base + b"x"
        self._r = backend.client
        self._sha = backend.shas

    # -- single keys ----------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        name = self._kp + key.encode()
        try:
            value: bytes | None = self._r.get(name)
            return value
        except rx.RedisError as exc:
            retried: bytes | None = self.backend.recover(exc, partial(self._r.get, name), True)
            return retried

    def contains(self, key: str) -> bool:
        name = self._kp + key.encode()
        try:
            return bool(self._r.exists(name))
        except rx.RedisError as exc:
            return bool(self.backend.recover(exc, lambda: self._r.exists(name), retry=True))

    def _script(self, which: str, keys: Sequence[bytes], args: Sequence[Any]) -> Any:
        # EVALSHA, never EVAL: the script text is sent once per server (re-sent after a
        # restart empties the script cache -- NOSCRIPT means nothing ran).
        return self._r.evalsha(self._sha[which], len(keys), *keys, *args)

    def _run(self, which: str, keys: Sequence[bytes], args: Sequence[Any], retry: bool) -> Any:
        try:
            return self._script(which, keys, args)
        except rx.RedisError as exc:
            return self.backend.recover(exc, lambda: self._script(which, keys, args), retry)

    def set(self, key: str, value: bytes) -> None:
        member = key.encode()
        # Setting a given value twice is harmless: retried after a lost connection.
        self._run("set", (self._kp + member, self._idx, self._x), (value, member), True)

    def set_until(self, key: str, value: bytes, deadline: float) -> None:
        member = key.encode()
        args = (value, member, _ms(deadline))
        self._run("set_until", (self._kp + member, self._idx, self._x), args, True)

    def get_with_deadline(self, key: str) -> tuple[bytes, float | None] | None:
        member = key.encode()

        def work() -> list[Any]:
            pipe = self._r.pipeline(transaction=True)
            pipe.get(self._kp + member)
            pipe.zscore(self._x, member)
            result: list[Any] = pipe.execute()
            return result

        value, at = self.backend.call(work, retry=True)
        if value is None:
            return None
        return value, (None if at is None else at / 1000)

    def remove(self, key: str) -> bool:
        member = key.encode()
        keys = (self._kp + member, self._idx, self._x)
        return bool(self._run("remove", keys, (member,), False))

    def cas(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        member = key.encode()
        args = (
            b"0" if expected is None else b"1",
            expected or b"",
            b"0" if new is None else b"1",
            new or b"",
            member,
        )
        return bool(self._run("cas", (self._kp + member, self._idx, self._x), args, False))

    def add(self, key: str, value: bytes, deadline: float | None) -> bool:
        member = key.encode()
        args = (value, member, b"" if deadline is None else _ms(deadline))
        # Not retried after a lost connection: a lost success would read as False.
        return bool(self._run("add", (self._kp + member, self._idx, self._x), args, False))

    def expire(self, key: str, deadline: float) -> bool:
        member = key.encode()
        # Retried: the same absolute deadline set twice is the same.
        args = (_ms(deadline), member)
        return bool(self._run("expire", (self._kp + member, self._x), args, True))

    def persist(self, key: str) -> bool:
        member = key.encode()
        return bool(self._run("persist", (self._kp + member, self._x), (member,), True))

    def incr(self, key: str, delta: int) -> int:
        member = key.encode()
        keys = (self._kp + member, self._idx, self._x)
        try:
            raw = self._run("incr", keys, (delta, member), False)
        except rx.ResponseError as exc:  # not an integer, or the sum would overflow
            if "integer" in str(exc) or "overflow" in str(exc):
                raise not_an_integer(key) from None
            raise
        return int(raw)

    def lock(self, key: str, timeout: float | None, lease: float) -> HeldLock | None:
        """``SET lock token NX PX lease``, tried until ``timeout``; the lock expires with
        its lease if the holder dies, and is released only while the token is ours."""
        name, turn = self._lp + key.encode(), self._tp + key.encode()
        token = secrets.token_bytes(16)
        queue = 0 if timeout == 0 else 1  # a single try never claims a turn
        args = (token, max(1, round(lease * 1000)), round(TURN_GRACE * 1000), queue)
        waiter = Waiter(timeout)
        # Retried after a lost reply: the script first asks whether the token holds it.
        while (got := self._run("lock", (name, turn), args, True)) != 1:
            if not waiter.wait(next_in_line=got == 2):
                self._run("unlock", (turn,), (token,), True)  # give our turn back
                return None
        return _RedisLock(self, name, token)

    # -- many keys ------------------------------------------------------------------------

    def _members(self, prefix: str) -> Iterator[list[bytes]]:
        """Pages of index members starting with ``prefix``, in order; each page is its
        own short script (expired members swept first), so the caller may write between
        pages."""
        low, high = _lex_range(prefix)
        while True:
            page: list[bytes] = self._run("page", (self._idx, self._x), (low, high, PAGE), True)
            if page:
                yield page
            if len(page) < PAGE:
                return
            low = b"(" + page[-1]

    def keys(self, prefix: str = "") -> Iterator[str]:
        for page in self._members(prefix):
            for member in page:
                yield member.decode()

    def items(self, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        # Members and values of a page in one script, so that a page is a snapshot.
        low, high = _lex_range(prefix)
        while True:
            args = (low, high, PAGE, self._kp)
            flat: list[Any] = self._run("page_items", (self._idx, self._x), args, True)
            for i in range(0, len(flat), 2):
                if flat[i + 1] is not None:  # expired by the server since the sweep
                    yield flat[i].decode(), flat[i + 1]
            if len(flat) < 2 * PAGE:
                return
            low = b"(" + flat[-2]

    def count(self, prefix: str = "") -> int:
        low, high = _lex_range(prefix)
        return int(self._run("count", (self._idx, self._x), (low, high), True))

    def purge(self) -> int:
        # Redis has deleted the expired entries already: their index members go.
        return int(self._run("purge", (self._idx, self._x), (), False))

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            names = [self._kp + k.encode() for k in chunk]
            values = self.backend.call(partial(self._r.mget, names), retry=True)
            for key, value in zip(chunk, values, strict=True):
                if value is not None:
                    found[key] = value
        return found

    def get_many_with_deadlines(self, keys: Sequence[str]) -> dict[str, tuple[bytes, float | None]]:
        found: dict[str, tuple[bytes, float | None]] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            members = [k.encode() for k in chunk]

            def work(members: list[bytes] = members) -> list[Any]:
                pipe = self._r.pipeline(transaction=True)
                pipe.mget([self._kp + m for m in members])
                pipe.execute_command("ZMSCORE", self._x, *members)
                result: list[Any] = pipe.execute()
                return result

            values, deadlines = self.backend.call(work, retry=True)
            for key, value, at in zip(chunk, values, deadlines, strict=True):
                if value is not None:
                    found[key] = (value, None if at is None else float(at) / 1000)
        return found

    def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        self._write_chunks("set_many", items, lambda chunk: [v for _, v in chunk])

    def set_many_until(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        self._write_chunks(
            "set_many_until",
            items,
            lambda chunk: [
                *(v for _, v, _ in chunk),
                *(b"" if d is None else _ms(d) for _, _, d in chunk),
            ],
        )

    def _write_chunks(
        self,
        script: str,
        items: Sequence[tuple[Any, ...]],
        arguments: Callable[[Sequence[tuple[Any, ...]]], list[bytes]],
    ) -> None:
        """Run a bulk-write ``script`` over ``items`` (``(key, value, ...)``) a chunk at
        a time, every chunk in one MULTI/EXEC: every entry lands, or (connection lost
        before EXEC) none.  Retried: the same upserts again are harmless."""
        if not items:
            return
        kp, head, sha = self._kp, len(self._kp), self._sha[script]

        def work() -> None:
            pipe = self._r.pipeline(transaction=True)
            for start in range(0, len(items), _CHUNK):
                chunk = items[start : start + _CHUNK]
                keys = (*(kp + item[0].encode() for item in chunk), self._idx, self._x)
                pipe.evalsha(sha, len(keys), *keys, *arguments(chunk), head)
            pipe.execute()

        self.backend.call(work, retry=True)

    def write_batch(
        self,
        sets: Sequence[tuple[str, bytes, float | None]],
        removes: Sequence[str] = (),
        clears: Sequence[str] = (),
        *,
        atomic: bool = True,
    ) -> None:
        args: list[Any] = [self._kp, len(clears)]
        for prefix in clears:
            args += _lex_range(prefix)
        args.append(len(removes))
        args += [key.encode() for key in removes]
        args.append(len(sets))
        for key, value, deadline in sets:
            args += (key.encode(), value, b"" if deadline is None else _ms(deadline))
        # Retried: the same deletes and upserts applied again give the same result.
        self._run("write_batch", (self._idx, self._x), args, True)

    def clear(self, prefix: str = "") -> int:
        removed = 0
        for page in self._members(prefix):  # each page deleted atomically
            keys = [*(self._kp + m for m in page), self._idx, self._x]
            removed += int(self._run("remove_many", keys, page, False))
        return removed


class RedisBackend(Backend):
    """Entries as Redis strings under a prefix, one sorted-set index per namespace."""

    name = "redis"
    durable = True  # a killed client loses nothing acknowledged (server persistence aside)
    multiprocess = True
    expiry = True
    atomic_batches = True
    isolated_batches = True
    expires_on_engine_clock = True  # SET ... PXAT: the server's clock decides

    def __init__(self, url: StoreURL, options: Options) -> None:
        super().__init__(url, options)
        self.prefix = options.take("prefix", "plugstore:", str)
        if not _PREFIX_RE.match(self.prefix):
            raise ConfigurationError(
                f"invalid prefix {self.prefix!r}: letters, digits and _ . : / - (at most 100)"
            )
        db_text = options.take("db", url.path or "0", str)
        if not db_text.isdigit():
            raise ConfigurationError(f"the Redis database must be a number, got {db_text!r}")
        self.db = int(db_text)
        self.connect_timeout = options.take("connect_timeout", 5.0)
        self.socket_timeout = options.take("socket_timeout", 10.0)
        self.retry_timeout = options.take("retry_timeout", 30.0)
        self.pool_max = options.take("pool_max", 20)
        if self.pool_max < 1:
            raise ConfigurationError("pool_max must be at least 1")
        self._username = options.take("username", url.username, str)
        self._password = options.take("password", url.password, str)
        self.unix_socket = options.take("unix_socket", None, str)
        self.tls = url.scheme == "rediss"
        self._ssl: dict[str, Any] = {}
        for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"):
            value = options.take(name, None, str)
            if value is not None:
                self._ssl[name] = value
        if "ssl_check_hostname" in options:
            self._ssl["ssl_check_hostname"] = options.take("ssl_check_hostname", True)
        if self._ssl and not self.tls:
            raise ConfigurationError("TLS options need a rediss:// URL")
        host, port = url.host or "localhost", url.port or 6379
        self.where = self.unix_socket or f"{host}:{port}"
        self._host, self._port = host, port
        self.client: Any = None  # a redis.Redis on the pool, set by open()
        self.shas: dict[str, str] = {}
        self._pool: redis.BlockingConnectionPool | None = None

    # -- connections ------------------------------------------------------------------

    def _make_pool(self) -> redis.BlockingConnectionPool:
        kwargs: dict[str, Any] = {
            "db": self.db,
            "username": self._username,
            "password": self._password,
            "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": self.socket_timeout,
            # redis-py would otherwise re-send any command after a lost connection,
            # incr included, and apply it twice; plugstore decides what is safe.
            "retry": Retry(NoBackoff(), 0),
            "client_name": "plugstore",
        }
        if self.unix_socket:
            kwargs["path"] = self.unix_socket
            kwargs["connection_class"] = redis.UnixDomainSocketConnection
        else:
            kwargs["host"], kwargs["port"] = self._host, self._port
            if self.tls:
                kwargs["connection_class"] = redis.SSLConnection
                kwargs.update(self._ssl)
        pool: redis.BlockingConnectionPool = redis.BlockingConnectionPool(  # type: ignore[no-untyped-call]
            max_connections=self.pool_max, timeout=self.connect_timeout, **kwargs
        )
        return pool

    def _unavailable(self, exc: BaseException) -> BackendUnavailableError:
        # redis-py's messages name host and port, never the password; keep the first line.
        text = str(exc).strip()
        detail = text.splitlines()[0] if text else type(exc).__name__
        return BackendUnavailableError(f"Redis at {self.where} is unavailable: {detail}")

    def open(self) -> None:
        # One pool and client for the backend's life: buckets handed out before a close
        # keep working after the store opens again, on the same (reconnected) pool.
        if self._pool is None:
            self._pool = self._make_pool()
            self.client = redis.Redis(connection_pool=self._pool)
        try:
            self.call(self._load_scripts, retry=False)  # fails fast if the server is down
        except BaseException:
            self.close()
            raise

    def _load_scripts(self) -> None:
        for which, text in _SCRIPTS.items():
            self.shas[which] = self.client.script_load(text)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.disconnect()  # every socket closed; reconnects lazily on reopen

    def call(self, work: Callable[[], T], *, retry: bool) -> T:
        """Run ``work()``; on failure, recover as :meth:`recover` says."""
        try:
            return work()
        except rx.RedisError as exc:
            return self.recover(exc, work, retry)

    def recover(self, exc: rx.RedisError, work: Callable[[], T], retry: bool) -> T:
        """``work()`` raised ``exc``: run it again if that is safe, or raise.

        NOSCRIPT (a restarted server forgot the scripts) and "loading the dataset" mean
        nothing ran: load the scripts / wait, then run again, whatever the operation.
        After a lost connection or a timeout, only ``retry`` work runs again, until
        ``retry_timeout``; the rest raises ``BackendUnavailableError`` at once, since
        whether the lost attempt applied is unknown.
        """
        backoff = Backoff(self.retry_timeout)
        while True:
            if isinstance(exc, rx.ConnectionError) and str(exc) == _POOL_EMPTY:
                # The blocking pool waited connect_timeout: this process's other threads
                # hold every connection.  The server may be fine; waiting more is no cure.
                raise PoolExhaustedError(
                    f"the Redis connection pool for {self.where} is exhausted: all "
                    f"{self.pool_max} connections stayed in use for {self.connect_timeout}s "
                    "by other threads of this process (raise the pool_max option)"
                ) from None
            if isinstance(exc, rx.NoScriptError):
                pass  # reload below, then run again
            elif isinstance(exc, rx.BusyLoadingError | rx.ConnectionError | rx.TimeoutError):
                if not (retry or isinstance(exc, rx.BusyLoadingError)):
                    raise self._unavailable(exc) from None
                if backoff.expired():
                    raise self._unavailable(exc) from None
                backoff.wait()
            else:
                raise exc
            try:
                if isinstance(exc, rx.NoScriptError):
                    self._load_scripts()
                return work()
            except rx.RedisError as again:
                exc = again

    # -- backend API ---------------------------------------------------------------------

    def bucket(self, namespace: str) -> RedisBucket:
        return RedisBucket(self, namespace)

    def _scan_sets(self, suffix: str) -> list[str]:
        """The namespaces with a sorted set ``{<namespace>}:<suffix>``: SCAN (never KEYS),
        the prefix's glob characters escaped; entries whose key happens to end the same
        way are strings, so TYPE leaves them out."""
        pattern = glob_escape(self.prefix) + "{*}:" + suffix
        head, tail = len(self.prefix.encode()) + 1, len(suffix) + 2

        def scan() -> list[str]:
            found = set()
            for name in self.client.scan_iter(match=pattern, count=1000, _type="zset"):
                inner = name[head:-tail]
                if b"}" not in inner:
                    found.add(inner.decode())
            return sorted(found)

        return self.call(scan, retry=True)

    def namespaces(self) -> list[str]:
        # A namespace whose members have all expired is empty (counting sweeps them).
        return [name for name in self._scan_sets("i") if self.bucket(name).count()]

    def purge(self, namespace: str | None = None) -> dict[str, int]:
        names = [namespace] if namespace is not None else self._scan_sets("x")
        counts = {name: self.bucket(name).purge() for name in names}
        return {name: n for name, n in counts.items() if n}

    def identity(self) -> tuple[object, ...]:
        host = "loopback" if self._host in ("localhost", "127.0.0.1", "::1") else self._host
        place = self.unix_socket or f"{host}:{self._port}"
        return (self.name, place, self.db, self.prefix)

    def persistence(self) -> str:
        """The server's durability setting, in words (for ``plugstore doctor``)."""
        info = self.call(lambda: self.client.info("persistence"), retry=True)
        if int(info.get("aof_enabled", 0)):
            try:
                fsync = self.client.config_get("appendfsync").get("appendfsync", "?")
            except rx.ResponseError:  # CONFIG may be disabled or renamed
                fsync = "?"
            return f"AOF, appendfsync {fsync}"
        try:
            save = self.client.config_get("save").get("save", "")
        except rx.ResponseError:
            save = "?"
        if save == "":
            return "none: a server restart loses every key"
        return f"RDB snapshots only ({save}): a restart loses writes since the last one"

    def info(self) -> dict[str, str]:
        server = self.call(lambda: self.client.info("server"), retry=True)
        return {
            **super().info(),
            "server": f"Redis {server.get('redis_version', '?')} at {self.where}",
            "driver": f"redis-py {redis.__version__}",
            "prefix": self.prefix,
            "persistence": self.persistence(),
        }
