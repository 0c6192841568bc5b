"""What every SQL backend shares: one ``(namespace, key, value, expires_at)`` table for all
namespaces.

:class:`TableBucket` holds the contract logic that does not depend on the engine --
compare-and-set, prefix ranges, keyset paging, counting, clearing, batches, expiry -- so
it is written (and reviewed) once.  A backend supplies:

* ``queries``: named statements, already rendered to text (``get``, ``contains``, ``set``,
  ``set_until``, ``remove``, ``insert_absent``, ``remove_if``, ``replace_if``,
  ``expired_namespaces``), with the parameters in the order the methods below pass them,
  and ``add``, ``expire``, ``persist``, which take named parameters (``ns``, ``key``,
  ``v``, ``deadline``, ``now``: ``:name`` in SQLite, ``%(name)s`` in psycopg and PyMySQL);
  each must report one affected row exactly when it applied;
* ``compose(text)``: ``text`` with ``{t}`` replaced by the quoted table name;
* ``one``/``all``/``run(query, params, *, retry=False)`` and ``run_batch(query, rows)``:
  run one statement; ``run_transaction(steps)``: several statements, each run for its
  rows, in one transaction (for ``write_batch``).  ``retry=True`` marks statements
  that may be repeated after a lost connection (reads); engines without connections
  to lose ignore it.

and overrides what is engine-specific: ``incr`` and ``_rows`` (the bulk read).

**Expiry.** ``expires_at`` is a nullable double: the deadline in epoch seconds by the
store clock, ``NULL`` for "never".  A row whose deadline is reached is expired: single-row
reads check it in Python (one column more in the same query), listings and counts filter
it in SQL with the time bound as a parameter (:data:`LIVE`), writes treat it as absent.
Expired rows stay until they are overwritten or purged (``DELETE ... WHERE expires_at <=
now``, through a partial index on ``expires_at`` where the engine has them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar

from ..backend import Bucket
from ..errors import NotAnIntegerError

_MAX_CHAR = chr(0x10FFFF)
#: Rows per page when streaming keys or items.
PAGE = 512
#: The SQL condition of a live row, with ``{p}`` for the placeholder of "now".
LIVE = "(expires_at IS NULL OR expires_at > {p})"


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


def purge_table(backend: Any, namespace: str | None) -> dict[str, int]:
    """``Backend.purge`` for a table backend: the namespaces holding expired rows (one
    indexed read), then one ``DELETE`` per namespace, whose row count is exact."""
    if namespace is not None:
        names = [namespace]
    else:
        query = backend.queries["expired_namespaces"]
        names = [row[0] for row in backend.all(query, (backend.clock(),), retry=True)]
    counts = {name: backend.bucket(name).purge() for name in names}
    return {name: n for name, n in counts.items() if n}


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
        self._live = LIVE.format(p=self.placeholder)

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
        if row is None:
            return None
        if row[1] is not None and row[1] <= self.backend.clock():
            return None  # expired
        return bytes(row[0])  # drivers may hand out memoryviews

    def get_with_deadline(self, key: str) -> tuple[bytes, float | None] | None:
        row = self.backend.one(self._q["get"], (self.namespace, key), retry=True)
        if row is None or (row[1] is not None and row[1] <= self.backend.clock()):
            return None
        return bytes(row[0]), row[1]

    def set(self, key: str, value: bytes) -> None:
        # An upsert of a given value: repeating it after a lost connection is harmless.
        self.backend.run(self._q["set"], (self.namespace, key, value), retry=True)

    def set_until(self, key: str, value: bytes, deadline: float) -> None:
        self.backend.run(self._q["set_until"], (self.namespace, key, value, deadline), retry=True)

    def remove(self, key: str) -> bool:
        # An expired row is absent: it is left for purge, and the answer is False.
        params = (self.namespace, key, self.backend.clock())
        return bool(self.backend.run(self._q["remove"], params) > 0)

    def contains(self, key: str) -> bool:
        row = self.backend.one(self._q["contains"], (self.namespace, key), retry=True)
        return row is not None and (row[0] is None or row[0] > self.backend.clock())

    def cas(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        ns, run, now = self.namespace, self.backend.run, self.backend.clock()
        if expected is None:
            if new is None:
                return not self.contains(key)
            # inserts, or replaces an expired row (which then loses its deadline)
            return bool(run(self._q["insert_absent"], (ns, key, new, now)) > 0)
        if new is None:
            return bool(run(self._q["remove_if"], (ns, key, expected, now)) > 0)
        # a live row keeps its deadline
        return bool(run(self._q["replace_if"], (new, ns, key, expected, now)) > 0)

    def add(self, key: str, value: bytes, deadline: float | None) -> bool:
        # One upsert that inserts, or replaces an expired row; a live row stays as it
        # was.  Not repeated after a lost connection: a lost success would read False.
        params = {
            "ns": self.namespace,
            "key": key,
            "v": value,
            "deadline": deadline,
            "now": self.backend.clock(),
        }
        return bool(self.backend.run(self._q["add"], params) > 0)

    def expire(self, key: str, deadline: float) -> bool:
        # An UPDATE of the live row to a given deadline: harmless to repeat.
        params = {
            "ns": self.namespace,
            "key": key,
            "deadline": deadline,
            "now": self.backend.clock(),
        }
        return bool(self.backend.run(self._q["expire"], params, retry=True) > 0)

    def persist(self, key: str) -> bool:
        params = {"ns": self.namespace, "key": key, "now": self.backend.clock()}
        return bool(self.backend.run(self._q["persist"], params, retry=True) > 0)

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
        base = f"SELECT {columns} FROM {{t}} WHERE namespace = {p}{where} AND {self._live}"
        first = self.backend.compose(f"{base} ORDER BY {k} LIMIT {PAGE}")
        after = self.backend.compose(f"{base} AND {k} > {p} ORDER BY {k} LIMIT {PAGE}")
        now = self.backend.clock()  # one instant for the whole listing
        rows = self.backend.all(first, (self.namespace, *args, now), retry=True)
        while True:
            yield from rows
            if len(rows) < PAGE:
                return
            params = (self.namespace, *args, now, rows[-1][0])
            rows = self.backend.all(after, params, retry=True)

    def count(self, prefix: str = "") -> int:
        where, args = self._range(prefix)
        query = self.backend.compose(
            f"SELECT count(*) FROM {{t}} WHERE namespace = {self.placeholder}{where} "
            f"AND {self._live}"
        )
        params = (self.namespace, *args, self.backend.clock())
        row = self.backend.one(query, params, retry=True)
        return int(row[0]) if row else 0

    def _rows(self, keys: Sequence[str]) -> Iterable[tuple[Any, Any, float | None]]:
        """``(key, value, expires_at)`` of the live rows among ``keys`` (the engine's bulk
        read; keys as the driver returns them)."""
        raise NotImplementedError

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        if self.binary_keys:
            return {key.decode(): bytes(value) for key, value, _ in self._rows(keys)}
        return {key: bytes(value) for key, value, _ in self._rows(keys)}

    def get_many_with_deadlines(self, keys: Sequence[str]) -> dict[str, tuple[bytes, float | None]]:
        binary = self.binary_keys
        return {
            (key.decode() if binary else key): (bytes(value), deadline)
            for key, value, deadline in self._rows(keys)
        }

    def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        ns = self.namespace
        self.backend.run_batch(self._q["set"], [(ns, k, v) for k, v in items])

    def set_many_until(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        # set_until with a NULL deadline is a plain set: one statement for every row
        ns = self.namespace
        self.backend.run_batch(self._q["set_until"], [(ns, k, v, d) for k, v, d in items])

    def clear(self, prefix: str = "") -> int:
        p = self.placeholder
        where, args = self._range(prefix)
        now = self.backend.clock()
        live = self.backend.compose(
            f"DELETE FROM {{t}} WHERE namespace = {p}{where} AND {self._live}"
        )
        removed = int(self.backend.run(live, (self.namespace, *args, now)))
        # then the expired rows of the range, which were not counted: nothing is left
        expired = self.backend.compose(
            f"DELETE FROM {{t}} WHERE namespace = {p}{where} AND expires_at <= {p}"
        )
        self.backend.run(expired, (self.namespace, *args, now))
        return removed

    def write_batch(
        self,
        sets: Sequence[tuple[str, bytes, float | None]],
        removes: Sequence[str] = (),
        clears: Sequence[str] = (),
        *,
        atomic: bool = True,
    ) -> None:
        # One transaction, atomic or not: the engine makes it all-or-nothing for free,
        # and each reader's statement sees it whole or not at all.
        p, k, ns = self.placeholder, self.kcol, self.namespace
        steps: list[tuple[str, list[tuple[Any, ...]]]] = []
        for prefix in clears:  # expired rows too: nothing is left under the prefix
            where, args = self._range(prefix)
            query = self.backend.compose(f"DELETE FROM {{t}} WHERE namespace = {p}{where}")
            steps.append((query, [(ns, *args)]))
        if removes:
            query = self.backend.compose(f"DELETE FROM {{t}} WHERE namespace = {p} AND {k} = {p}")
            steps.append((query, [(ns, key) for key in removes]))
        if sets:
            steps.append((self._q["set_until"], [(ns, key, v, d) for key, v, d in sets]))
        self.backend.run_transaction(steps)

    def purge(self) -> int:
        p = self.placeholder
        query = self.backend.compose(
            f"DELETE FROM {{t}} WHERE namespace = {p} AND expires_at <= {p}"
        )
        return int(self.backend.run(query, (self.namespace, self.backend.clock())))


__all__ = ["LIVE", "PAGE", "TableBucket", "not_an_integer", "prefix_range", "purge_table"]
