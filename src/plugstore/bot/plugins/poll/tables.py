"""The poll plugin's tables, in its own schema ``pl_poll``, its migration chain, and
its user-data hook (what ``.forgetme`` and ``plugstore user export|forget`` reach).

**Forgetting a user** erases, in one transaction:

* every vote they cast, in anyone's poll;
* every poll they created, with its options and *every* vote in it, other users' too:
  a poll's question and options are its author's words, and a vote means nothing
  without its poll.  The other voters' votes are counted apart (``"others' votes"``)
  so that whoever runs the forget sees what went with it;
* the poll they were writing (their draft).

Polls created by others stay, minus the forgotten user's votes.  **Exporting** a user
gives their polls (question, options, open or closed, dates and the number of votes per
option, never who cast them), the votes they cast (poll, question, option) and their
draft.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    CursorResult,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    delete,
    func,
    select,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Session

from plugstore.relational import RelationalPlugin, RelationalUserData, plugin_metadata

#: Longest question, option or user name the tables hold.
TEXT = 200
#: A user name: compared exactly on every engine ("ana" is not "Ana"; revision 0003
#: gives MariaDB/MySQL, whose default collation ignores case and accents, a binary one).
USER = String(TEXT).with_variant(
    mysql.VARCHAR(TEXT, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
)

metadata = plugin_metadata("poll")

polls = Table(
    "polls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("question", String(TEXT), nullable=False),
    Column("author", USER, nullable=False),
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
    Column("voter", USER, primary_key=True),
    Column("position", Integer, nullable=False),
)

#: The poll a user is writing: the question (``NULL`` until they send it) and the
#: options so far, as a JSON list.
drafts = Table(
    "drafts",
    metadata,
    Column("author", USER, primary_key=True),
    Column("question", String(TEXT), nullable=True),
    Column("options", Text, nullable=False),
)


def export_user(session: Session, user: str) -> dict[str, Any]:
    """What the poll plugin keeps about ``user``: ``{"polls": [...], "votes": [...],
    "draft": {...}}`` (parts with nothing left out; ``{}`` for nobody)."""
    exported: dict[str, Any] = {}
    created = []
    for poll in session.execute(select(polls).where(polls.c.author == user).order_by(polls.c.id)):
        texts = session.execute(
            select(options.c.position, options.c.text)
            .where(options.c.poll_id == poll.id)
            .order_by(options.c.position)
        ).all()
        counts: dict[int, int] = dict(
            session.execute(
                select(votes.c.position, func.count())
                .where(votes.c.poll_id == poll.id)
                .group_by(votes.c.position)
            ).all()
        )
        created.append(
            {
                "id": poll.id,
                "question": poll.question,
                "options": [{"text": t, "votes": counts.get(p, 0)} for p, t in texts],
                "is_open": poll.is_open,
                "created_at": _when(poll.created_at),
                "closed_at": _when(poll.closed_at),
            }
        )
    if created:
        exported["polls"] = created
    cast = session.execute(
        select(votes.c.poll_id, polls.c.question, votes.c.position, options.c.text)
        .join(polls, polls.c.id == votes.c.poll_id)
        .outerjoin(
            options,
            (options.c.poll_id == votes.c.poll_id) & (options.c.position == votes.c.position),
        )
        .where(votes.c.voter == user)
        .order_by(votes.c.poll_id)
    ).all()
    if cast:
        exported["votes"] = [
            {"poll": row.poll_id, "question": row.question, "option": row.text} for row in cast
        ]
    draft = session.execute(
        select(drafts.c.question, drafts.c.options).where(drafts.c.author == user)
    ).one_or_none()
    if draft is not None:
        exported["draft"] = {"question": draft.question, "options": json.loads(draft.options)}
    return exported


def forget_user(session: Session, user: str) -> dict[str, int]:
    """Erase what the poll plugin keeps about ``user`` (see the module docs); return
    how many polls, votes, others' votes and drafts went."""
    ids = list(session.execute(select(polls.c.id).where(polls.c.author == user)).scalars())
    counts = {"votes": _deleted(session, delete(votes).where(votes.c.voter == user))}
    if ids:  # explicit deletes, not ON DELETE CASCADE: SQLite may run without it
        counts["others' votes"] = _deleted(session, delete(votes).where(votes.c.poll_id.in_(ids)))
        _deleted(session, delete(options).where(options.c.poll_id.in_(ids)))
        counts["polls"] = _deleted(session, delete(polls).where(polls.c.id.in_(ids)))
    counts["drafts"] = _deleted(session, delete(drafts).where(drafts.c.author == user))
    return counts


def _deleted(session: Session, statement: Any) -> int:
    result: CursorResult[Any] = session.execute(statement)  # type: ignore[assignment]
    return result.rowcount


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


plugin = RelationalPlugin(
    "poll",
    metadata,
    Path(__file__).with_name("migrations"),
    user_data=RelationalUserData(export_user, forget_user),
)
