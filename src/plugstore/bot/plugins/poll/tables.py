"""The poll plugin's tables, in its own schema ``pl_poll``, and its migration chain."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
)

from plugstore.relational import RelationalPlugin, plugin_metadata

#: Longest question, option or user name the tables hold.
TEXT = 200

metadata = plugin_metadata("poll")

polls = Table(
    "polls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("question", String(TEXT), nullable=False),
    Column("author", String(TEXT), nullable=False),
    Column("is_open", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True), nullable=True),  # revision 0002
)

options = Table(
    "options",
    metadata,
    Column("poll_id", Integer, ForeignKey(polls.c.id, ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("text", String(TEXT), nullable=False),
)

votes = Table(
    "votes",
    metadata,
    Column("poll_id", Integer, ForeignKey(polls.c.id, ondelete="CASCADE"), primary_key=True),
    Column("voter", String(TEXT), primary_key=True),
    Column("position", Integer, nullable=False),
)

#: The poll a user is writing: the question (``NULL`` until they send it) and the
#: options so far, as a JSON list.
drafts = Table(
    "drafts",
    metadata,
    Column("author", String(TEXT), primary_key=True),
    Column("question", String(TEXT), nullable=True),
    Column("options", Text, nullable=False),
)

plugin = RelationalPlugin("poll", metadata, Path(__file__).with_name("migrations"))
