"""poll: a multi-step conversation whose polls live in relational tables.

``.poll`` asks for the question (state ``QUESTION``), then for the options, one per
message (state ``OPTIONS``); ``done`` opens the poll and ends the conversation (back to
``"START"``).  The conversation's step is kept in the StateStore; the drafts, polls,
options and votes are rows in the plugin's own schema ``pl_poll`` (see ``tables.py`` and
its migration chain in ``migrations/``), which ``plugstore chat`` migrates at start-up.

Each step claims itself atomically, so the same user typing in two consoles at once
cannot store two questions or open the same poll twice: the question is one
``UPDATE ... WHERE question IS NULL``, ``done`` a :meth:`~plugstore.state.StateStore.
transition`, and opening the poll (its row, its options, the draft's removal) is one
transaction.
"""

from __future__ import annotations

import json
import re
from contextlib import suppress
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import CursorResult, delete, func, insert, select, update
from sqlalchemy.orm import Session

from plugstore.errors import StoreError
from plugstore.relational.upserts import dialect_of, upsert

from ...plugin import CommandError, Context, Plugin, UsageError, command
from .tables import TEXT, drafts, options, plugin, polls, votes

QUESTION, OPTIONS = "QUESTION", "OPTIONS"
MAX_OPTIONS = 10
MAX_TEXT = TEXT
FINISH = "done"
_DIGITS = re.compile(r"[0-9]+")  # not str.isdigit(): that accepts "²"


class Poll(Plugin):
    """Polls, written step by step."""

    name = "poll"
    tables = plugin

    @command(usage="[cancel | ID | close ID]")
    def poll(self, ctx: Context, args: str) -> str:
        """Start writing a poll; with an ID show its results; close or cancel one."""
        verb, _, rest = args.partition(" ")
        verb, rest = verb.lower(), rest.strip()
        if not verb:
            return self._start(ctx)
        if verb == "cancel" and not rest:
            return self._cancel(ctx)
        if verb == "close":
            return self._close(ctx, _poll_id(rest))
        if _DIGITS.fullmatch(verb) and not rest:
            return self._results(_poll_id(verb))
        raise UsageError()

    @command(usage="ID OPTION")
    def vote(self, ctx: Context, args: str) -> str:
        """Vote in poll ID for OPTION (its number or its text); voting again changes it."""
        number, _, choice = args.partition(" ")
        poll_id = _poll_id(number)
        choice = choice.strip()
        if not choice:
            raise UsageError("say which option")
        with self.session() as s:
            poll = self._poll(s, poll_id)
            if not poll.is_open:
                raise CommandError(f"poll {poll_id} is closed")
            texts = self._options(s, poll_id)
            if _DIGITS.fullmatch(choice) and 1 <= int(choice) <= len(texts):
                position = int(choice)
            else:
                lowered = [o.lower() for o in texts]
                if choice.lower() not in lowered:
                    raise CommandError(
                        f"poll {poll_id} has no option {choice!r}: {_listing(texts)}"
                    )
                position = lowered.index(choice.lower()) + 1
            # One row per voter: a second vote replaces the first.
            vote = upsert(votes, dialect_of(s), ["poll_id", "voter"], ["position"])
            s.execute(vote, {"poll_id": poll_id, "voter": ctx.user, "position": position})
        return f"{ctx.user} votes {texts[position - 1]!r} in poll {poll_id}"

    @command()
    def polls(self, ctx: Context, args: str) -> str:
        """List the open polls."""
        if args:
            raise UsageError("takes no arguments")
        with self.session() as s:
            rows = s.execute(
                select(polls.c.id, polls.c.question, polls.c.author)
                .where(polls.c.is_open)
                .order_by(polls.c.id)
            ).all()
        lines = [f"#{row.id} {row.question} (by {row.author})" for row in rows]
        return "\n".join(lines) or "no open polls (.poll starts one)"

    # -- the conversation ---------------------------------------------------------------

    def converse(self, ctx: Context, text: str) -> str:
        """The next step of the poll the user is writing."""
        state = ctx.state
        text = text.strip()
        if len(text) > MAX_TEXT:
            raise CommandError(f"keep it under {MAX_TEXT} characters")
        if state == QUESTION:
            return self._question(ctx, text)
        if state == OPTIONS:
            if text.lower() == FINISH:
                return self._open(ctx)
            return self._add_option(ctx, text)
        ctx.set_state("START")  # a state this version does not know: start over
        raise CommandError(f"your poll was in an unknown step {state!r}; .poll starts again")

    def _start(self, ctx: Context) -> str:
        if not ctx.transition("START", QUESTION):
            with self.session() as s:
                draft = self._draft(s, ctx.user)
            where = f" ({draft.question!r})" if draft is not None and draft.question else ""
            raise CommandError(f"you are already writing a poll{where}: continue, or .poll cancel")
        with self.session() as s:
            s.execute(delete(drafts).where(drafts.c.author == ctx.user))
            s.execute(insert(drafts).values(author=ctx.user, question=None, options="[]"))
        return "What is the question?"

    def _question(self, ctx: Context, text: str) -> str:
        # The UPDATE is the claim: of two consoles racing this step, exactly one stores
        # its question; the state follows.  A crash in between leaves the question saved
        # and the state behind, which the next line repairs.
        with self.session() as s:
            result: CursorResult[Any] = s.execute(  # type: ignore[assignment]
                update(drafts)
                .where(drafts.c.author == ctx.user, drafts.c.question.is_(None))
                .values(question=text)
            )
            claimed = result.rowcount
            draft = None if claimed else self._draft(s, ctx.user)
        if not claimed:
            if draft is None:  # cancelled in another console, or removed by hand
                ctx.transition(QUESTION, "START")
                raise CommandError("your poll was cancelled: .poll starts a new one")
            ctx.transition(QUESTION, OPTIONS)
            raise CommandError(f"the question is already {draft.question!r}: send an option")
        ctx.transition(QUESTION, OPTIONS)
        return f"Send the options, one per message, then '{FINISH}'."

    def _add_option(self, ctx: Context, text: str) -> str:
        with self.session() as s:
            draft = self._draft(s, ctx.user, lock=True)
            if draft is None or not draft.question:
                # The draft is gone (cancelled in another console, or removed by hand):
                # ask for the question again rather than open a poll without one.
                if draft is None:
                    s.execute(insert(drafts).values(author=ctx.user, question=None, options="[]"))
                ctx.transition(OPTIONS, QUESTION)
                raise CommandError("your question was not saved: what is the question?")
            texts: list[str] = json.loads(draft.options)
            if text.lower() in (o.lower() for o in texts):
                raise CommandError(f"{text!r} is already an option")
            if len(texts) >= MAX_OPTIONS:
                raise CommandError(f"at most {MAX_OPTIONS} options: say '{FINISH}'")
            texts.append(text)
            s.execute(
                update(drafts)
                .where(drafts.c.author == ctx.user)
                .values(options=json.dumps(texts, ensure_ascii=False))
            )
        return f"Option {len(texts)}: {text}. Another, or '{FINISH}'?"

    def _cancel(self, ctx: Context) -> str:
        state = ctx.state
        if state == "START":
            raise CommandError("you are not writing a poll")
        if ctx.transition(state, "START"):
            with self.session() as s:
                s.execute(delete(drafts).where(drafts.c.author == ctx.user))
        return "Poll cancelled."

    def _open(self, ctx: Context) -> str:
        with self.session() as s:
            draft = self._draft(s, ctx.user)
        texts: list[str] = json.loads(draft.options) if draft is not None else []
        if draft is None or len(texts) < 2:
            raise CommandError("a poll needs at least 2 options: send another")
        if not ctx.transition(OPTIONS, "START"):
            raise CommandError("this poll was already opened or cancelled elsewhere")
        try:  # the poll, its options and the draft's removal: one transaction
            with self.session() as s:
                poll_id = s.execute(
                    insert(polls)
                    .values(
                        question=draft.question,
                        author=ctx.user,
                        is_open=True,
                        created_at=datetime.now(timezone.utc),
                    )
                    .returning(polls.c.id)
                ).scalar_one()
                s.execute(
                    insert(options),
                    [
                        {"poll_id": poll_id, "position": i, "text": t}
                        for i, t in enumerate(texts, 1)
                    ],
                )
                s.execute(delete(drafts).where(drafts.c.author == ctx.user))
        except BaseException:
            # Back a step, so that 'done' can be said again; if the store fails too, the
            # original error is the one reported.
            with suppress(StoreError):
                ctx.transition("START", OPTIONS)
            raise
        return (
            f"Poll {poll_id} is open: {draft.question} {_listing(texts)}\n"
            f"Vote with: .vote {poll_id} OPTION"
        )

    # -- results ---------------------------------------------------------------------

    def _draft(self, s: Session, user: str, *, lock: bool = False) -> Any:
        query = select(drafts.c.question, drafts.c.options).where(drafts.c.author == user)
        return s.execute(query.with_for_update() if lock else query).one_or_none()

    def _poll(self, s: Session, poll_id: int) -> Any:
        poll = s.execute(select(polls).where(polls.c.id == poll_id)).one_or_none()
        if poll is None:
            raise CommandError(f"there is no poll {poll_id} (.polls lists them)")
        return poll

    def _options(self, s: Session, poll_id: int) -> list[str]:
        query = select(options.c.text).where(options.c.poll_id == poll_id)
        return list(s.execute(query.order_by(options.c.position)).scalars())

    def _results(self, poll_id: int) -> str:
        with self.session() as s:
            poll = self._poll(s, poll_id)
            texts = self._options(s, poll_id)
            counts: dict[int, int] = dict(
                s.execute(
                    select(votes.c.position, func.count())
                    .where(votes.c.poll_id == poll_id)
                    .group_by(votes.c.position)
                ).all()
            )
        status = "open" if poll.is_open else "closed"
        lines = [f"Poll {poll_id} ({status}, by {poll.author}): {poll.question}"]
        for position, text in enumerate(texts, 1):
            lines.append(f"  {position}. {text}: {_count(counts.get(position, 0))}")
        return "\n".join(lines)

    def _close(self, ctx: Context, poll_id: int) -> str:
        with self.session() as s:
            poll = self._poll(s, poll_id)
            if poll.author != ctx.user:
                raise CommandError(f"only {poll.author} can close poll {poll_id}")
            s.execute(
                update(polls)
                .where(polls.c.id == poll_id, polls.c.is_open)
                .values(is_open=False, closed_at=datetime.now(timezone.utc))
            )
        return self._results(poll_id)


def _poll_id(text: str) -> int:
    if not _DIGITS.fullmatch(text) or not 0 < int(text) < 2**31:
        raise UsageError("a poll ID is a number (.polls lists them)")
    return int(text)


def _listing(texts: list[str]) -> str:
    return " ".join(f"[{i + 1}] {o}" for i, o in enumerate(texts))


def _count(votes: int) -> str:
    return f"{votes} vote" if votes == 1 else f"{votes} votes"
