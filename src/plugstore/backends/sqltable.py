"""What every SQL backend shares: one ``(namespace, key, value)`` table for all namespaces.

:class:`TableBucket` holds the contract logic that does not depend on the engine --
compare-and-set, prefix ranges, keyset paging, counting, clearing, batches -- so it is
written (and reviewed) once.  A backend supplies:

* ``queries``: named statements, already rendered to text (``get``, ``contains``, ``set``,
  ``remove``, ``insert_absent``, ``remove_if``, ``replace_if``);
* ``compose(text)``: ``text`` with ``{t}`` replaced by the quoted table name;
* ``one``/``all``/``run(query, params, *, retry=False)`` and ``run_batch(query, rows)``:
  run one statement.  ``retry=True`` marks statements that may be repeated after a lost
  connection (reads); engines without connections to lose ignore it.

and overrides what is engine-specific: ``incr`` and ``get_many``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from ..backend import Bucket
from ..errors import NotAnIntegerError

_MAX_CHAR = chr(0x10FFFF)
#: Rows per page when streaming keys or items.
PAGE = 512


def prefix_range(prefix: str) -> tuple[str, str | None]:
    """Return ``(low, high)`` such that ``low <= key < high`` iff ``key`` starts with prefix.

    ``high`` is ``None`` when no finite bound exists (prefix of only U+10FFFF).  UTF-8
    byte order (binary collations) equals code point order, so this is exact.
    """
    stem = prefix.rstrip(_MAX_CHAR)
    if not stem:
        return prefix, None
    following = ord(stem[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates are not characters: skip to U+E000
        following = 0xE000
    return prefix, stem[:-1] + chr(following)


def not_an_integer(key: str) -> NotAnIntegerError:
    """The error for an ``incr`` whose statement refused the stored value."""
    return NotAnIntegerError(
        f"cannot incr {key!r}: the stored value is not an integer or the result "
        "would leave the signed 64-bit range"
    )


class TableBucket(Bucket):
    """One namespace: the rows of the backend's table with this namespace."""

    #: The driver's parameter placeholder: ``?`` (sqlite3) or ``%s`` (psycopg, PyMySQL).
    placeholder: ClassVar[str]
    #: The key column as written in SQL (MySQL reserves ``key``, so it quotes it).
    kcol: ClassVar[str] = "key"
    #: Keys come back as UTF-8 bytes (a binary column) and are decoded on the way out.
    binary_keys: ClassVar[bool] = False
    backend: Any  # a backend with queries/compose/one/all/run/run_batch (see module doc)

    def __init__(self, backend: Any, namespace: str) -> None:
        super().__init__(backend, namespace)
        self._q: dict[str, str] = backend.queries

    def _range(self, prefix: str) -> tuple[str, tuple[Any, ...]]:
        if not prefix:
            return "", ()
        p, k = self.placeholder, self.kcol
        low, high = prefix_range(prefix)
        if high is None:
            return f" AND {k} >= {p}", (low,)
        return f" AND {k} >= {p} AND {k} < {p}", (low, high)

    def get(self, key: str) -> bytes | None:
        row = self.backend.one(self._q["get"], (self.namespace, key), retry=True)
        return None if row is None else bytes(row[0])  # drivers may hand out memoryviews

    def set(self, key: str, value: bytes) -> None:
        # An upsert of a given value: repeating it after a lost connection is harmless.
        self.backend.run(self._q["set"], (self.namespace, key, value), retry=True)

    def remove(self, key: str) -> bool:
        return bool(self.backend.run(self._q["remove"], (self.namespace, key)) > 0)

    def contains(self, key: str) -> bool:
        row = self.backend.one(self._q["contains"], (self.namespace, key), retry=True)
        return row is not None

    def cas(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        ns, run = self.namespace, self.backend.run
        if expected is None:
            if new is None:
                return not self.contains(key)
            return bool(run(self._q["insert_absent"], (ns, key, new)) > 0)
        if new is None:
            return bool(run(self._q["remove_if"], (ns, key, expected)) > 0)
        return bool(run(self._q["replace_if"], (new, ns, key, expected)) > 0)

    def keys(self, prefix: str = "") -> Iterator[str]:
        if self.binary_keys:
            for row in self._pages(False, prefix):
                yield row[0].decode()
        else:
            for row in self._pages(False, prefix):
                yield row[0]

    def items(self, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        binary = self.binary_keys
        for key, value in self._pages(True, prefix):
            yield (key.decode() if binary else key), bytes(value)

    def _pages(self, values: bool, prefix: str) -> Iterator[tuple[Any, ...]]:
        # Keyset pagination: each page is its own short query, so the caller may write
        # (or delete) between pages and no read transaction is held open.
        p, k = self.placeholder, self.kcol
        where, args = self._range(prefix)
        columns = f"{k}, value" if values else k
        base = f"SELECT {columns} FROM {{t}} WHERE namespace = {p}{where}"
        first = self.backend.compose(f"{base} ORDER BY {k} LIMIT {PAGE}")
        after = self.backend.compose(f"{base} AND {k} > {p} ORDER BY {k} LIMIT {PAGE}")
        rows = self.backend.all(first, (self.namespace, *args), retry=True)
        while True:
            yield from rows
            if len(rows) < PAGE:
                return
            rows = self.backend.all(after, (self.namespace, *args, rows[-1][0]), retry=True)

    def count(self, prefix: str = "") -> int:
        where, args = self._range(prefix)
        query = self.backend.compose(
            f"SELECT count(*) FROM {{t}} WHERE namespace = {self.placeholder}{where}"
        )
        row = self.backend.one(query, (self.namespace, *args), retry=True)
        return int(row[0]) if row else 0

    def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        ns = self.namespace
        self.backend.run_batch(self._q["set"], [(ns, k, v) for k, v in items])

    def clear(self, prefix: str = "") -> int:
        where, args = self._range(prefix)
        query = self.backend.compose(
            f"DELETE FROM {{t}} WHERE namespace = {self.placeholder}{where}"
        )
        return int(self.backend.run(query, (self.namespace, *args)))


__all__ = ["PAGE", "TableBucket", "not_an_integer", "prefix_range"]
