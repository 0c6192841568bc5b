"""user names compare exactly on MariaDB/MySQL

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

The author and voter columns took the server's default collation there
(``utf8mb4_general_ci`` on MariaDB): "ana", "Ana" and "ána " were one user, so one of
them could not vote after another, and forgetting one erased the others' polls and
votes.  A binary collation makes them the users they are, as on SQLite and PostgreSQL.
Other engines are left as they are.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table, column) of every column holding a user name.
USER_COLUMNS = (("polls", "author"), ("drafts", "author"), ("votes", "voter"))


def _alter(type_: sa.types.TypeEngine[str]) -> None:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return
    for table, column in USER_COLUMNS:
        op.alter_column(
            table,
            column,
            existing_type=sa.String(length=200),
            type_=type_,
            existing_nullable=False,
            schema="pl_poll",
        )


def upgrade() -> None:
    _alter(mysql.VARCHAR(200, charset="utf8mb4", collation="utf8mb4_bin"))


def downgrade() -> None:
    _alter(sa.String(length=200))
