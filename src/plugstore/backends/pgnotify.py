"""A near cache kept coherent by PostgreSQL ``LISTEN``/``NOTIFY``.

Three triggers on the store's table announce every change on a channel of the table's
own, in the writer's transaction -- so only committed changes are heard, the moment
they commit, and whichever plugstore process (caching or not, or any other client)
wrote them.  Each row inserted or updated announces its ``namespace``/``key`` (a row
trigger); a delete statement announces each deleted key, or, when it deleted more than
:data:`PER_KEY_LIMIT` rows (``clear``, dropping a namespace), each namespace it touched
once, and caches drop that whole namespace.  The triggers are made when a store first
opens the table with a cache; they stay, and cost a writer about 5% on a single write
and 10-15% on ``set_many`` (measured on loopback).

A caching process listens on a connection of its own, in a thread that drops the
announced entries as they arrive.  While that connection is down the cache serves
nothing (every read goes to the table); once it is back the cache starts empty.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from ..errors import BackendUnavailableError
from ..nearcache import Listener

if TYPE_CHECKING:
    from ..nearcache import NearCache
    from .postgresql import PostgreSQLBackend

#: A statement changing more rows than this announces their namespaces, not each key.
PER_KEY_LIMIT = 100
#: The listening connection's ``application_name`` (``pg_stat_activity`` shows it).
APPLICATION_NAME = "plugstore near cache"

# Rows written (upserts, one row a statement, and updates of a deadline) are announced by
# a row trigger: the cheapest way per statement.  Deletions by a statement trigger over
# the deleted rows, which can announce a namespace once when a statement deletes many.
_ROW_FUNCTION = """
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
  PERFORM pg_notify(TG_ARGV[0], length(NEW.namespace) || ':' || NEW.namespace || NEW.key);
  RETURN NULL;
END
$body$
"""
_DELETED_FUNCTION = """
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
  IF (SELECT count(*) FROM changed) <= {limit} THEN
    PERFORM pg_notify(TG_ARGV[0], length(namespace) || ':' || namespace || key) FROM changed;
  ELSE
    PERFORM pg_notify(TG_ARGV[0], '*' || namespace) FROM (SELECT DISTINCT namespace FROM changed) n;
  END IF;
  RETURN NULL;
END
$body$
"""
#: (trigger name suffix, when, how, function): what each of the table's triggers does.
_TRIGGERS = (
    ("insert", "INSERT", "FOR EACH ROW", "plugstore_announce_row"),
    ("update", "UPDATE", "FOR EACH ROW", "plugstore_announce_row"),
    (
        "delete",
        "DELETE",
        "REFERENCING OLD TABLE AS changed FOR EACH STATEMENT",
        "plugstore_announce_deleted",
    ),
)


def channel_of(schema: str, table: str) -> str:
    """The channel a table's changes are announced on (an identifier of 26 characters:
    PostgreSQL cuts channel names at 63 bytes, so it is a digest of the names)."""
    return "plugstore_" + hashlib.sha256(f"{schema}.{table}".encode()).hexdigest()[:16]


def parse(payload: str) -> tuple[str, str | None]:
    """``(namespace, key)`` of an announcement; ``key`` is ``None`` for a whole namespace."""
    if payload.startswith("*"):
        return payload[1:], None
    length, _, rest = payload.partition(":")
    n = int(length)
    return rest[:n], rest[n:]


def install_triggers(backend: PostgreSQLBackend) -> None:
    """Make the table's announcing triggers unless they exist (catalog read first: a
    ``CREATE TRIGGER`` takes a lock that would wait for every writer of the table)."""
    names = [f"{backend.table[:40]}_plugstore_{suffix}" for suffix, _, _, _ in _TRIGGERS]
    channel = channel_of(backend.schema, backend.table)
    try:
        with backend._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (backend.table_lock_id,))
            present = conn.execute(
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = ANY(%s)",
                (backend.compose("{t}"), names),
            ).fetchone()
            if present and present[0] == len(names):
                return
            # The functions are the schema's, shared by its tables: stores making triggers
            # on two tables at once would otherwise replace them together and fail
            # ("tuple concurrently updated").
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s)",
                (zlib.crc32(f"plugstore-announce:{backend.schema}".encode()),),
            )
            for name, body in (
                ("plugstore_announce_row", _ROW_FUNCTION),
                ("plugstore_announce_deleted", _DELETED_FUNCTION),
            ):
                conn.execute(
                    sql.SQL(body).format(
                        function=sql.Identifier(backend.schema, name),
                        limit=sql.Literal(PER_KEY_LIMIT),
                    )
                )
            for name, (_, event, how, function) in zip(names, _TRIGGERS, strict=True):
                conn.execute(
                    sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                        sql.Identifier(name), backend._qualified
                    )
                )
                conn.execute(
                    sql.SQL(
                        "CREATE TRIGGER {name} AFTER {event} ON {table} {how} "
                        "EXECUTE FUNCTION {function}({channel})"
                    ).format(
                        name=sql.Identifier(name),
                        event=sql.SQL(event),
                        table=backend._qualified,
                        how=sql.SQL(how),
                        function=sql.Identifier(backend.schema, function),
                        channel=sql.Literal(channel),
                    )
                )
    except psycopg.OperationalError as exc:
        raise backend._unavailable(exc) from exc
    except psycopg.Error as exc:
        raise BackendUnavailableError(
            f"PostgreSQL at {backend.where}: the near cache needs triggers on "
            f"{backend.schema}.{backend.table} that announce changes, and making them "
            f"failed ({str(exc).strip().splitlines()[0]}): let this user own the table "
            "(or have the TRIGGER privilege and CREATE on the schema), or open the store "
            "without cache="
        ) from exc


class NotifyListener(Listener):
    """A near cache's coherence on PostgreSQL: a thread listening to the table's channel
    drops each announced entry (see the module docs)."""

    retry_on = (psycopg.Error, OSError)

    def __init__(self, backend: PostgreSQLBackend, cache: NearCache) -> None:
        self._backend = backend
        self.channel = channel_of(backend.schema, backend.table)
        self.description = f"PostgreSQL LISTEN {self.channel} (triggers announce every change)"
        super().__init__(
            cache,
            f"plugstore near cache {self.channel}",
            backend.connect_timeout + 1,
            f"PostgreSQL at {backend.where}",
        )

    def _open(self) -> Any:
        conn = psycopg.connect(
            self._backend._conninfo(),
            autocommit=True,
            connect_timeout=max(1, int(self._backend.connect_timeout)),
            application_name=APPLICATION_NAME,
        )
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except BaseException:
            conn.close()
            raise
        return conn

    def _drain(self, handle: Any, timeout: float) -> None:
        for notice in handle.notifies(timeout=timeout):
            self._heard(notice.payload)

    def _hang_up(self, handle: Any) -> None:
        handle.close()

    def _heard(self, payload: str) -> None:
        try:
            namespace, key = parse(payload)
        except ValueError:
            self.cache.clear()  # not ours to read: drop everything, to be safe
            return
        if key is None:
            self.cache.invalidate_namespace(namespace)
        else:
            self.cache.invalidate(namespace, key)


__all__ = ["PER_KEY_LIMIT", "NotifyListener", "channel_of", "install_triggers", "parse"]
