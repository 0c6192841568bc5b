"""create polls, options, votes and drafts

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "polls",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("question", sa.String(length=200), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("is_open", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_polls")),
        schema="pl_poll",
    )
    op.create_table(
        "drafts",
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("question", sa.String(length=200), nullable=True),
        sa.Column("options", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("author", name=op.f("pk_drafts")),
        schema="pl_poll",
    )
    op.create_table(
        "options",
        sa.Column("poll_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["poll_id"],
            ["pl_poll.polls.id"],
            name=op.f("fk_options_poll_id_polls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("poll_id", "position", name=op.f("pk_options")),
        schema="pl_poll",
    )
    op.create_table(
        "votes",
        sa.Column("poll_id", sa.Integer(), nullable=False),
        sa.Column("voter", sa.String(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["poll_id"],
            ["pl_poll.polls.id"],
            name=op.f("fk_votes_poll_id_polls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("poll_id", "voter", name=op.f("pk_votes")),
        schema="pl_poll",
    )


def downgrade() -> None:
    op.drop_table("votes", schema="pl_poll")
    op.drop_table("options", schema="pl_poll")
    op.drop_table("drafts", schema="pl_poll")
    op.drop_table("polls", schema="pl_poll")
