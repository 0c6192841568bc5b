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
* ``one``/``all``/``run(query, params, retry=False)`` and ``run_batch(query, rows)``:
  run one statement; ``run_transaction(steps)``: several statements, each run for its
  rows, in one transaction (for ``write_batch``).  ``retry=True`` marks statements
  that may be repeated after a lost connection (reads); engines without connections
  to lose ignore it.

and overrides what is engine-specific: ``incr`` and ``_rows`` (the bulk read).

**One source of truth for two shells.**  Each operation's SQL, parameters and row
parsing are written once (``TableBucket.sql_*`` and ``*_of``); the sync bucket runs
them with the backend's blocking helpers, and a native async driver (PostgreSQL's,
:mod:`plugstore.backends.postgresql_aio`) runs the very same statements with awaited
ones, so the two cannot drift.

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

#: One statement to run: ``(query, params, retry)``; ``retry`` says whether it may be
#: repeated after a lost connection (reads, upserts of a given value), and is passed to
#: the backend's ``one``/``all``/``run`` as it is.
Stmt = tuple[str, Any, bool]
#: One statement to run for many rows: ``(query, rows)`` (``run_batch``, a transaction step).
Batch = tuple[str, list[tuple[Any, ...]]]


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


class Listing:
    """The statements of one keyset-paged listing (keys, or keys and values): run
    :attr:`first`, then :meth:`after` the last key of each full page until a page comes
    back short (:meth:`more`).  Each page is its own short query, so the caller may write
    (or delete) between pages and no read transaction is held open."""

    __slots__ = ("_after", "_params", "first")

    def __init__(self, first: Stmt, after: str, params: tuple[Any, ...]) -> None:
        self.first = first
        self._after = after
        self._params = params

    def after(self, rows: Sequence[tuple[Any, ...]]) -> Stmt:
        """The statement of the page after ``rows`` (a full page)."""
        return self._after, (*self._params, rows[-1][0]), True

    @staticmethod
    def more(rows: Sequence[Any]) -> bool:
        """Whether another page may follow ``rows``."""
        return len(rows) == PAGE


class TableBucket(Bucket):
    """One namespace: the rows of the backend's table with this namespace.

    Each operation is written in two parts shared by every shell that runs it (this
    sync bucket, and a backend's native async bucket): the *statement* -- ``sql_*``
    methods returning ``(query, params, retry)`` (:data:`Stmt`), where ``retry`` says
    whether the statement may be repeated after a lost connection -- and the *parsing*
    of what it returned (the ``*_of`` methods).  The shells only execute: they never
    spell SQL, order parameters or read rows themselves.
    """

    #: The driver's parameter placeholder: ``?`` (sqlite3) or ``%s`` (psycopg, PyMySQL).
    placeholder: ClassVar[str]
    #: The key column as written in SQL (MySQL reserves ``key``, so it quotes it).
    kcol: ClassVar[str] = "key"
    #: Keys come back as UTF-8 bytes (a binary column) and are decoded on the way out.
    binary_keys: ClassVar[bool] = False
    #: One row's stored bytes in SQL, ``{k}`` for the key column: the key's UTF-8 length
    #: plus the value's (in bytes: ``length`` of text counts characters on PostgreSQL
    #: and SQLite).  Summed by the engine, so no value travels to Python.
    size_sql: ClassVar[str] = "octet_length({k}) + octet_length(value)"
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

    # -- statements and parsing, shared by the sync and async shells ------------------------

    def sql_get(self, key: str) -> Stmt:
        """The row of ``key``: ``(value, expires_at)`` (see :meth:`value_of`)."""
        return self._q["get"], (self.namespace, key), True

    def value_of(self, row: Any) -> bytes | None:
        """The value in a :meth:`sql_get` row, ``None`` if absent or expired."""
        if row is None:
            return None
        if row[1] is not None and row[1] <= self.backend.clock():
            return None  # expired
        return bytes(row[0])  # drivers may hand out memoryviews

    def entry_of(self, row: Any) -> tuple[bytes, float | None] | None:
        """``(value, deadline)`` in a :meth:`sql_get` row, ``None`` if absent or expired."""
        if row is None or (row[1] is not None and row[1] <= self.backend.clock()):
            return None
        return bytes(row[0]), row[1]

    def sql_set(self, key: str, value: bytes) -> Stmt:
        # An upsert of a given value: repeating it after a lost connection is harmless.
        return self._q["set"], (self.namespace, key, value), True

    def sql_set_until(self, key: str, value: bytes, deadline: float) -> Stmt:
        return self._q["set_until"], (self.namespace, key, value, deadline), True

    def sql_remove(self, key: str) -> Stmt:
        # An expired row is absent: it is left for purge, and the answer is False.
        return self._q["remove"], (self.namespace, key, self.backend.clock()), False

    def sql_contains(self, key: str) -> Stmt:
        return self._q["contains"], (self.namespace, key), True

    def present_of(self, row: Any) -> bool:
        """Whether a :meth:`sql_contains` row is a live entry."""
        return row is not None and (row[0] is None or row[0] > self.backend.clock())

    def sql_cas(self, key: str, expected: bytes | None, new: bytes | None) -> Stmt | None:
        """The compare-and-set statement, whose row count says whether it applied;
        ``None`` for ``expected=new=None``, whose answer is ``not contains(key)``."""
        ns, now = self.namespace, self.backend.clock()
        if expected is None:
            if new is None:
                return None
            # inserts, or replaces an expired row (which then loses its deadline)
            return self._q["insert_absent"], (ns, key, new, now), False
        if new is None:
            return self._q["remove_if"], (ns, key, expected, now), False
        # a live row keeps its deadline
        return self._q["replace_if"], (new, ns, key, expected, now), False

    def sql_add(self, key: str, value: bytes, deadline: float | None) -> Stmt:
        # One upsert that inserts, or replaces an expired row; a live row stays as it
        # was.  Not repeated after a lost connection: a lost success would read False.
        params = {
            "ns": self.namespace,
            "key": key,
            "v": value,
            "deadline": deadline,
            "now": self.backend.clock(),
        }
        return self._q["add"], params, False

    def sql_expire(self, key: str, deadline: float) -> Stmt:
        # An UPDATE of the live row to a given deadline: harmless to repeat.
        params = {
            "ns": self.namespace,
            "key": key,
            "deadline": deadline,
            "now": self.backend.clock(),
        }
        return self._q["expire"], params, True

    def sql_persist(self, key: str) -> Stmt:
        params = {"ns": self.namespace, "key": key, "now": self.backend.clock()}
        return self._q["persist"], params, True

    def listing(self, values: bool, prefix: str) -> Listing:
        """The statements listing the live keys (and values) under ``prefix``."""
        p, k = self.placeholder, self.kcol
        where, args = self._range(prefix)
        columns = f"{k}, value" if values else k
        base = f"SELECT {columns} FROM {{t}} WHERE namespace = {p}{where} AND {self._live}"
        first = self.backend.compose(f"{base} ORDER BY {k} LIMIT {PAGE}")
        after = self.backend.compose(f"{base} AND {k} > {p} ORDER BY {k} LIMIT {PAGE}")
        params = (self.namespace, *args, self.backend.clock())  # one instant for it all
        return Listing((first, params, True), after, params)

    def sql_keys_after(self, prefix: str, after: str, limit: int) -> Stmt:
        """Up to ``limit`` live keys starting with ``prefix`` that sort after ``after``, by
        an index seek (see :meth:`keys_of`)."""
        p, k = self.placeholder, self.kcol
        where, args = self._range(prefix)
        query = self.backend.compose(
            f"SELECT {k} FROM {{t}} WHERE namespace = {p}{where} AND {self._live} "
            f"AND {k} > {p} ORDER BY {k} LIMIT {int(limit)}"
        )
        mark = after.encode() if self.binary_keys else after
        return query, (self.namespace, *args, self.backend.clock(), mark), True

    def keys_of(self, rows: Iterable[tuple[Any, ...]]) -> list[str]:
        """The keys of a page of a keys :meth:`listing`."""
        if self.binary_keys:
            return [row[0].decode() for row in rows]
        return [row[0] for row in rows]

    def items_of(self, rows: Iterable[tuple[Any, ...]]) -> list[tuple[str, bytes]]:
        """The pairs of a page of an items :meth:`listing`."""
        if self.binary_keys:
            return [(key.decode(), bytes(value)) for key, value in rows]
        return [(key, bytes(value)) for key, value in rows]

    def sql_count(self, prefix: str) -> Stmt:
        where, args = self._range(prefix)
        query = self.backend.compose(
            f"SELECT count(*) FROM {{t}} WHERE namespace = {self.placeholder}{where} "
            f"AND {self._live}"
        )
        return query, (self.namespace, *args, self.backend.clock()), True

    @staticmethod
    def count_of(row: Any) -> int:
        """The number in a one-row aggregate (:meth:`sql_count`, :meth:`sql_stored_size`)."""
        return int(row[0]) if row else 0  # MySQL's SUM is a Decimal

    def sql_stored_size(self, prefix: str) -> Stmt:
        """The bytes of the live rows under ``prefix`` (:data:`size_sql` summed; see
        :meth:`count_of`), with :meth:`sql_count`'s range and expiry filter."""
        where, args = self._range(prefix)
        query = self.backend.compose(
            f"SELECT COALESCE(SUM({self.size_sql.format(k=self.kcol)}), 0) FROM {{t}} "
            f"WHERE namespace = {self.placeholder}{where} AND {self._live}"
        )
        return query, (self.namespace, *args, self.backend.clock()), True

    def many_of(self, rows: Iterable[tuple[Any, Any, float | None]]) -> dict[str, bytes]:
        """``{key: value}`` of bulk-read rows ``(key, value, expires_at)``."""
        if self.binary_keys:
            return {key.decode(): bytes(value) for key, value, _ in rows}
        return {key: bytes(value) for key, value, _ in rows}

    def many_with_deadlines_of(
        self, rows: Iterable[tuple[Any, Any, float | None]]
    ) -> dict[str, tuple[bytes, float | None]]:
        """``{key: (value, deadline)}`` of bulk-read rows."""
        binary = self.binary_keys
        return {
            (key.decode() if binary else key): (bytes(value), deadline)
            for key, value, deadline in rows
        }

    def batch_set(self, items: Sequence[tuple[str, bytes]]) -> Batch:
        ns = self.namespace
        return self._q["set"], [(ns, k, v) for k, v in items]

    def batch_set_until(self, items: Sequence[tuple[str, bytes, float | None]]) -> Batch:
        # set_until with a NULL deadline is a plain set: one statement for every row
        ns = self.namespace
        return self._q["set_until"], [(ns, k, v, d) for k, v, d in items]

    def sql_clear(self, prefix: str) -> tuple[Stmt, Stmt]:
        """Deleting the live rows under ``prefix`` (its row count is the answer), then the
        expired ones, which are not counted: nothing is left."""
        p = self.placeholder
        where, args = self._range(prefix)
        params = (self.namespace, *args, self.backend.clock())
        live = self.backend.compose(
            f"DELETE FROM {{t}} WHERE namespace = {p}{where} AND {self._live}"
        )
        expired = self.backend.compose(
            f"DELETE FROM {{t}} WHERE namespace = {p}{where} AND expires_at <= {p}"
        )
        return (live, params, False), (expired, params, False)

    def batch_steps(
        self,
        sets: Sequence[tuple[str, bytes, float | None]],
        removes: Sequence[str],
        clears: Sequence[str],
    ) -> list[Batch]:
        """The steps of :meth:`write_batch`, to run in one transaction."""
        p, k, ns = self.placeholder, self.kcol, self.namespace
        steps: list[Batch] = []
        for prefix in clears:  # expired rows too: nothing is left under the prefix
            where, args = self._range(prefix)
            query = self.backend.compose(f"DELETE FROM {{t}} WHERE namespace = {p}{where}")
            steps.append((query, [(ns, *args)]))
        if removes:
            query = self.backend.compose(f"DELETE FROM {{t}} WHERE namespace = {p} AND {k} = {p}")
            steps.append((query, [(ns, key) for key in removes]))
        if sets:
            steps.append((self._q["set_until"], [(ns, key, v, d) for key, v, d in sets]))
        return steps

    def sql_purge(self) -> Stmt:
        p = self.placeholder
        query = self.backend.compose(
            f"DELETE FROM {{t}} WHERE namespace = {p} AND expires_at <= {p}"
        )
        return query, (self.namespace, self.backend.clock()), False

    # -- the sync shell: run the statements above ---------------------------------------

    def get(self, key: str) -> bytes | None:
        return self.value_of(self.backend.one(*self.sql_get(key)))

    def get_with_deadline(self, key: str) -> tuple[bytes, float | None] | None:
        return self.entry_of(self.backend.one(*self.sql_get(key)))

    def set(self, key: str, value: bytes) -> None:
        self.backend.run(*self.sql_set(key, value))

    def set_until(self, key: str, value: bytes, deadline: float) -> None:
        self.backend.run(*self.sql_set_until(key, value, deadline))

    def remove(self, key: str) -> bool:
        return bool(self.backend.run(*self.sql_remove(key)) > 0)

    def contains(self, key: str) -> bool:
        return self.present_of(self.backend.one(*self.sql_contains(key)))

    def cas(self, key: str, expected: bytes | None, new: bytes | None) -> bool:
        stmt = self.sql_cas(key, expected, new)
        if stmt is None:
            return not self.contains(key)
        return bool(self.backend.run(*stmt) > 0)

    def add(self, key: str, value: bytes, deadline: float | None) -> bool:
        return bool(self.backend.run(*self.sql_add(key, value, deadline)) > 0)

    def expire(self, key: str, deadline: float) -> bool:
        return bool(self.backend.run(*self.sql_expire(key, deadline)) > 0)

    def persist(self, key: str) -> bool:
        return bool(self.backend.run(*self.sql_persist(key)) > 0)

    def keys(self, prefix: str = "") -> Iterator[str]:
        for rows in self._pages(False, prefix):
            yield from self.keys_of(rows)

    def items(self, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        for rows in self._pages(True, prefix):
            yield from self.items_of(rows)

    def _pages(self, values: bool, prefix: str) -> Iterator[list[tuple[Any, ...]]]:
        listing = self.listing(values, prefix)
        rows = self.backend.all(*listing.first)
        while True:
            yield rows
            if not listing.more(rows):
                return
            rows = self.backend.all(*listing.after(rows))

    def count(self, prefix: str = "") -> int:
        return self.count_of(self.backend.one(*self.sql_count(prefix)))

    def stored_size(self, prefix: str = "") -> int:
        return self.count_of(self.backend.one(*self.sql_stored_size(prefix)))

    def keys_after(self, prefix: str, after: str, limit: int) -> list[str]:
        if limit <= 0:
            return []
        return self.keys_of(self.backend.all(*self.sql_keys_after(prefix, after, limit)))

    def _rows(self, keys: Sequence[str]) -> Iterable[tuple[Any, Any, float | None]]:
        """``(key, value, expires_at)`` of the live rows among ``keys`` (the engine's bulk
        read; keys as the driver returns them)."""
        raise NotImplementedError

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        return self.many_of(self._rows(keys))

    def get_many_with_deadlines(self, keys: Sequence[str]) -> dict[str, tuple[bytes, float | None]]:
        return self.many_with_deadlines_of(self._rows(keys))

    def set_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        self.backend.run_batch(*self.batch_set(items))

    def set_many_until(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        self.backend.run_batch(*self.batch_set_until(items))

    def clear(self, prefix: str = "") -> int:
        live, expired = self.sql_clear(prefix)
        removed = int(self.backend.run(*live))
        self.backend.run(*expired)
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
        self.backend.run_transaction(self.batch_steps(sets, removes, clears))

    def purge(self) -> int:
        return int(self.backend.run(*self.sql_purge()))


__all__ = [
    "LIVE",
    "PAGE",
    "Batch",
    "Listing",
    "Stmt",
    "TableBucket",
    "not_an_integer",
    "prefix_range",
    "purge_table",
]
