"""Key and namespace rules, identical on every backend.

A store must give the same answer for the same input whatever engine sits under it, so
the rules are the strictest common denominator of the engines plugstore supports:

* a **key** is a non-empty ``str`` of at most :data:`MAX_KEY_BYTES` UTF-8 bytes (DynamoDB's
  sort-key limit), encodable as UTF-8 (no lone surrogates) and free of NUL (PostgreSQL
  text cannot hold it).  Any other character, including SQL and glob metacharacters,
  round-trips exactly.
* a **namespace** is 1 to :data:`MAX_NAMESPACE_LENGTH` characters of ``[A-Za-z0-9_.-]``
  and percent-escapes (``%`` and two *uppercase* hex digits), not starting with ``.`` or
  ``-``.  Namespaces become file names (the Errbot shelf layout), key prefixes and
  partition keys, so they are kept boring on purpose: ASCII, no whitespace, no path
  separators, no SQL ``LIKE`` or glob wildcards but ``%`` (which no backend uses as one
  on a namespace).

Any other name (an Errbot plugin called "Test hooks for webhooks testing") becomes a
namespace through :func:`escape_namespace`: a stable, reversible, collision-free mapping
under which every name that is already a valid namespace stays itself.
"""

from __future__ import annotations

import math
import re

from .errors import InvalidKeyError, InvalidNamespaceError, NotAnIntegerError

MAX_KEY_BYTES = 1024
MAX_NAMESPACE_LENGTH = 128
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: Longest ``ttl`` accepted, in seconds (about 317 years): every engine's deadline
#: format (Redis milliseconds, DynamoDB numbers, SQL doubles) holds it exactly enough.
MAX_TTL = 10**10

_NAMESPACE_RE = re.compile(r"(?:[A-Za-z0-9_]|%[0-9A-F]{2})(?:[A-Za-z0-9_.\-]|%[0-9A-F]{2})*\Z")
#: Characters :func:`escape_namespace` keeps as they are (but a leading ``.`` or ``-``).
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
_ESCAPE_RE = re.compile(r"%([0-9A-F]{2})")


def check_key(key: object) -> str:
    """Return ``key`` if it is a valid key, else raise :class:`InvalidKeyError`."""
    if type(key) is not str:
        raise InvalidKeyError(f"keys must be str, not {type(key).__name__}")
    if not key:
        raise InvalidKeyError("keys must not be empty")
    if "\x00" in key:
        raise InvalidKeyError("keys must not contain NUL characters")
    if len(key) <= MAX_KEY_BYTES // 4 and key.isascii():
        return key  # fast path: short ASCII keys are always valid
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKeyError("keys must be valid Unicode (no lone surrogates)") from None
    if size > MAX_KEY_BYTES:
        raise InvalidKeyError(f"keys are limited to {MAX_KEY_BYTES} UTF-8 bytes, got {size}")
    return key


def check_namespace(name: object) -> str:
    """Return ``name`` if it is a valid namespace, else raise :class:`InvalidNamespaceError`."""
    if type(name) is not str:
        raise InvalidNamespaceError(f"namespaces must be str, not {type(name).__name__}")
    if not name:
        raise InvalidNamespaceError("namespaces must not be empty")
    if len(name) > MAX_NAMESPACE_LENGTH:
        raise InvalidNamespaceError(
            f"namespaces are limited to {MAX_NAMESPACE_LENGTH} characters, got {len(name)}"
        )
    if not _NAMESPACE_RE.match(name):
        raise InvalidNamespaceError(
            f"invalid namespace {name!r}: use letters, digits, '_', '.', '-' and "
            "percent-escapes such as '%20' (not starting with '.' or '-'); "
            "plugstore.keys.escape_namespace() maps any name to a valid namespace"
        )
    return name


def escape_namespace(name: str) -> str:
    """The namespace of ``name``, any non-empty ``str``: itself if it is a valid namespace
    without ``%``, else its percent-escaped form.

    Every character outside ``[A-Za-z0-9_.-]``, a leading ``.`` or ``-``, and ``%`` itself
    become ``%XX`` escapes of their UTF-8 bytes (uppercase hex), so ``"a b"``, ``"a_b"``,
    ``"A b"`` and ``"a%20b"`` get four different namespaces (``a%20b``, ``a_b``,
    ``A%20b``, ``a%2520b``).  :func:`unescape_namespace` reverses it.  Raises
    :class:`InvalidNamespaceError` for an empty name, lone surrogates, or an escaped form
    longer than :data:`MAX_NAMESPACE_LENGTH` (never truncated or hashed: the error says so).
    """
    if type(name) is not str:
        raise InvalidNamespaceError(f"names must be str, not {type(name).__name__}")
    if not name:
        raise InvalidNamespaceError("names must not be empty")
    if _NAMESPACE_RE.match(name) and "%" not in name and len(name) <= MAX_NAMESPACE_LENGTH:
        return name  # the common case: already a namespace
    try:
        data = name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidNamespaceError(
            f"name {name!r} is not valid Unicode (lone surrogates)"
        ) from None
    parts = []
    for i, byte in enumerate(data):
        char = chr(byte)
        if char in _PLAIN and not (i == 0 and char in ".-"):
            parts.append(char)
        else:
            parts.append(f"%{byte:02X}")
    escaped = "".join(parts)
    if len(escaped) > MAX_NAMESPACE_LENGTH:
        raise InvalidNamespaceError(
            f"name {name!r} escapes to a namespace of {len(escaped)} characters, over the "
            f"limit of {MAX_NAMESPACE_LENGTH} (each character outside [A-Za-z0-9_.-] takes "
            "3 to 12): use a shorter name"
        )
    return escaped


def unescape_namespace(namespace: str) -> str:
    """The name whose :func:`escape_namespace` is ``namespace`` (the inverse).

    Raises :class:`InvalidNamespaceError` if ``namespace`` is not a valid namespace or not
    the escaped form of any name: escapes of UTF-8 that is not valid, or a spelling
    :func:`escape_namespace` never produces (``%41`` for ``A``).
    """
    check_namespace(namespace)
    if "%" not in namespace:
        return namespace
    data = _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), namespace).encode("latin-1")
    try:
        name = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidNamespaceError(
            f"namespace {namespace!r} is not an escaped name: its escapes are not UTF-8"
        ) from None
    if escape_namespace(name) != namespace:
        raise InvalidNamespaceError(
            f"namespace {namespace!r} is not an escaped name: the name {name!r} it spells "
            f"has the namespace {escape_namespace(name)!r}"
        )
    return name


def check_prefix(prefix: object) -> str:
    """Return ``prefix`` if it can start a key (``""`` matches every key)."""
    if type(prefix) is not str:
        raise InvalidKeyError(f"key prefixes must be str, not {type(prefix).__name__}")
    if prefix:
        if "\x00" in prefix:
            raise InvalidKeyError("key prefixes must not contain NUL characters")
        try:
            prefix.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidKeyError(
                "key prefixes must be valid Unicode (no lone surrogates)"
            ) from None
    return prefix


def check_ttl(ttl: object) -> float:
    """Return ``ttl`` (seconds until a key expires) as a float, if it is acceptable.

    An ``int`` or ``float`` greater than 0 and at most :data:`MAX_TTL`; ``bool``, zero,
    negative numbers, NaN and infinities raise ``ValueError``, other types ``TypeError``.
    """
    if type(ttl) is bool:
        raise ValueError("ttl must be a number of seconds, not a bool")
    if not isinstance(ttl, (int, float)):
        raise TypeError(f"ttl must be a number of seconds, not {type(ttl).__name__}")
    if not 0 < ttl <= MAX_TTL:  # NaN fails both comparisons
        raise ValueError(f"ttl must be more than 0 and at most {MAX_TTL} seconds, got {ttl!r}")
    return float(ttl)


def deadline_after(now: float, ttl: float) -> float:
    """``now + ttl`` as a float that is never later than the exact sum.

    The float sum rounds to the nearest double (about 0.24 µs apart at today's epoch
    seconds), up half the time: ``remaining(deadline, now)`` would then read a little
    above ``ttl``.  Then the sum steps down to the next double (once is enough: within a
    factor of two of ``now``, ``deadline - now`` is computed exactly).
    """
    deadline = now + ttl
    while deadline - now > ttl:
        deadline = math.nextafter(deadline, -math.inf)
    return deadline


def remaining(deadline: float | None, now: float) -> float | None:
    """Seconds from ``now`` to ``deadline`` (``None`` stays ``None``), never below 0.

    An entry past its deadline on the store clock is still there only on an engine that
    expires entries by its own clock (Redis), until that clock catches up.
    """
    return None if deadline is None else max(0.0, deadline - now)


def check_counter(value: int) -> int:
    """Return ``value`` if it fits a signed 64-bit counter (the range every engine shares)."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise NotAnIntegerError("counter would leave the signed 64-bit range")
    return value


def parse_counter(raw: bytes) -> int:
    """Parse a stored counter (canonical decimal text) or raise ``NotAnIntegerError``."""
    try:
        text = raw.decode("ascii")
        value = int(text)
    except (UnicodeDecodeError, ValueError):
        raise NotAnIntegerError("the stored value is not an integer") from None
    if str(value) != text:
        raise NotAnIntegerError("the stored value is not an integer")
    return check_counter(value)
