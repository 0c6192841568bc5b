"""One upsert (insert, or update the row with the same key) on every supported engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.orm import Session

from plugstore.errors import StoreError


def upsert(table: Table, dialect: str, keys: Sequence[str], updates: Sequence[str]) -> Any:
    """An INSERT of ``table`` that, on a duplicate of the unique ``keys``, updates the
    ``updates`` columns instead: ``ON CONFLICT DO UPDATE`` on PostgreSQL and SQLite,
    ``ON DUPLICATE KEY UPDATE`` on MariaDB.  Execute it with the row's values."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        pg = pg_insert(table)
        return pg.on_conflict_do_update(
            index_elements=[table.c[k] for k in keys],
            set_={name: pg.excluded[name] for name in updates},
        )
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        lite = sqlite_insert(table)
        return lite.on_conflict_do_update(
            index_elements=[table.c[k] for k in keys],
            set_={name: lite.excluded[name] for name in updates},
        )
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        my = mysql_insert(table)
        return my.on_duplicate_key_update({name: my.inserted[name] for name in updates})
    raise StoreError(f"upserts are not supported on {dialect}")


def dialect_of(db: Session | Connection) -> str:
    """The dialect name (``"postgresql"``, ``"mysql"``, ``"sqlite"``) behind ``db``."""
    bind = db.get_bind() if isinstance(db, Session) else db
    return bind.dialect.name
