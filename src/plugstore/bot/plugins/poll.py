"""poll: a multi-step conversation kept in the StateStore, so it survives restarts.

``.poll`` asks for the question (state ``QUESTION``), then for the options, one per
message (state ``OPTIONS``); ``done`` opens the poll and ends the conversation (back to
``"START"``).  Each step claims itself atomically (a
:meth:`~plugstore.state.StateStore.transition`, or a compare-and-set of the draft for the
question), so the same user typing in two consoles at once cannot store two questions or
open the same poll twice, and a failure between a step's two writes is repaired by the
next line instead of losing the poll.  Votes are one key per voter
(``vote:<poll>:<user>``), counted with a prefix scan.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from typing import Any

from plugstore.errors import StoreError

from ..plugin import CommandError, Context, Plugin, UsageError, command

QUESTION, OPTIONS = "QUESTION", "OPTIONS"
MAX_OPTIONS = 10
MAX_TEXT = 200
FINISH = "done"
_DIGITS = re.compile(r"[0-9]+")  # not str.isdigit(): that accepts "²"


def draft_key(user: str) -> str:
    return f"draft:{user}"


def poll_key(poll_id: int) -> str:
    return f"poll:{poll_id}"


def vote_prefix(poll_id: int) -> str:
    return f"vote:{poll_id}:"


class Poll(Plugin):
    """Polls, written step by step."""

    name = "poll"

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
        poll = self._poll(poll_id)
        if not poll["open"]:
            raise CommandError(f"poll {poll_id} is closed")
        options: list[str] = poll["options"]
        if _DIGITS.fullmatch(choice) and 1 <= int(choice) <= len(options):
            index = int(choice) - 1
        else:
            lowered = [o.lower() for o in options]
            if choice.lower() not in lowered:
                raise CommandError(f"poll {poll_id} has no option {choice!r}: {_listing(options)}")
            index = lowered.index(choice.lower())
        self.data[vote_prefix(poll_id) + ctx.user] = index
        return f"{ctx.user} votes {options[index]!r} in poll {poll_id}"

    @command()
    def polls(self, ctx: Context, args: str) -> str:
        """List the open polls."""
        if args:
            raise UsageError("takes no arguments")
        lines = [
            f"#{key.split(':')[1]} {poll['question']} (by {poll['by']})"
            for key, poll in self.data.scan("poll:")
            if poll["open"]
        ]
        return "\n".join(sorted(lines, key=_number)) or "no open polls (.poll starts one)"

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
            draft = self.data.get(draft_key(ctx.user))
            if not draft or not draft.get("question"):
                # The draft is gone (cancelled in another console, or removed by hand):
                # ask for the question again rather than open a poll without one.
                ctx.transition(OPTIONS, QUESTION)
                raise CommandError("your question was not saved: what is the question?")
            if text.lower() == FINISH:
                return self._open(ctx)
            draft = self.data.compute(draft_key(ctx.user), lambda d: _add_option(d, text))
            return f"Option {len(draft['options'])}: {text}. Another, or '{FINISH}'?"
        ctx.set_state("START")  # a state this version does not know: start over
        raise CommandError(f"your poll was in an unknown step {state!r}; .poll starts again")

    def _start(self, ctx: Context) -> str:
        if not ctx.transition("START", QUESTION):
            draft = self.data.get(draft_key(ctx.user))
            where = f" ({draft['question']!r})" if draft and draft["question"] else ""
            raise CommandError(f"you are already writing a poll{where}: continue, or .poll cancel")
        self.data[draft_key(ctx.user)] = {"question": None, "options": []}
        return "What is the question?"

    def _question(self, ctx: Context, text: str) -> str:
        # The draft's compare-and-set is the claim: of two consoles racing this step,
        # exactly one stores its question; the state follows.  A crash in between leaves
        # the question saved and the state behind, which the next line repairs.
        key = draft_key(ctx.user)
        raw = self.data.get_raw(key)
        draft = None if raw is None else self.data.store.codec.decode(raw)
        if draft and draft.get("question"):
            ctx.transition(QUESTION, OPTIONS)
            raise CommandError(f"the question is already {draft['question']!r}: send an option")
        if not self.data.replace_if(key, raw, {"question": text, "options": []}):
            raise CommandError("this poll moved on in another console: send an option")
        ctx.transition(QUESTION, OPTIONS)
        return f"Send the options, one per message, then '{FINISH}'."

    def _cancel(self, ctx: Context) -> str:
        state = ctx.state
        if state == "START":
            raise CommandError("you are not writing a poll")
        if ctx.transition(state, "START"):
            self.data.pop(draft_key(ctx.user), None)
        return "Poll cancelled."

    def _open(self, ctx: Context) -> str:
        draft = self.data.get(draft_key(ctx.user)) or {"question": "", "options": []}
        if len(draft["options"]) < 2:
            raise CommandError("a poll needs at least 2 options: send another")
        if not ctx.transition(OPTIONS, "START"):
            raise CommandError("this poll was already opened or cancelled elsewhere")
        with _undo_on_failure(ctx, "START", OPTIONS):  # so that 'done' can be said again
            poll_id = self.data.incr("next-id")
            self.data[poll_key(poll_id)] = {
                **draft,
                "by": ctx.user,
                "open": True,
                "at": datetime.now(timezone.utc),
            }
        self.data.pop(draft_key(ctx.user), None)  # left behind, it is harmless
        return (
            f"Poll {poll_id} is open: {draft['question']} {_listing(draft['options'])}\n"
            f"Vote with: .vote {poll_id} OPTION"
        )

    # -- results ---------------------------------------------------------------------

    def _poll(self, poll_id: int) -> dict[str, Any]:
        poll = self.data.get(poll_key(poll_id))
        if poll is None:
            raise CommandError(f"there is no poll {poll_id} (.polls lists them)")
        return dict(poll)

    def _results(self, poll_id: int) -> str:
        poll = self._poll(poll_id)
        votes = Counter(index for _, index in self.data.scan(vote_prefix(poll_id)))
        status = "open" if poll["open"] else "closed"
        lines = [f"Poll {poll_id} ({status}, by {poll['by']}): {poll['question']}"]
        for index, option in enumerate(poll["options"]):
            lines.append(f"  {index + 1}. {option}: {_count(votes[index])}")
        return "\n".join(lines)

    def _close(self, ctx: Context, poll_id: int) -> str:
        poll = self._poll(poll_id)
        if poll["by"] != ctx.user:
            raise CommandError(f"only {poll['by']} can close poll {poll_id}")

        def closed(current: dict[str, Any]) -> dict[str, Any]:
            return {**current, "open": False}

        self.data.compute(poll_key(poll_id), closed)
        return self._results(poll_id)


@contextmanager
def _undo_on_failure(ctx: Context, done: str, back: str) -> Iterator[None]:
    """Move the conversation from ``done`` back to ``back`` if the block fails.

    Best effort: when the store itself is failing the undo fails too, and the original
    error is the one reported (the next step notices the missing data).
    """
    try:
        yield
    except BaseException:
        with suppress(StoreError):
            ctx.transition(done, back)
        raise


def _add_option(draft: dict[str, Any] | None, option: str) -> dict[str, Any]:
    if not draft or not draft.get("question"):
        raise CommandError("your question was not saved: .poll cancel, then .poll again")
    if option.lower() in (o.lower() for o in draft["options"]):
        raise CommandError(f"{option!r} is already an option")
    if len(draft["options"]) >= MAX_OPTIONS:
        raise CommandError(f"at most {MAX_OPTIONS} options: say '{FINISH}'")
    return {**draft, "options": [*draft["options"], option]}


def _poll_id(text: str) -> int:
    if not _DIGITS.fullmatch(text) or not 0 < int(text) < 2**63:
        raise UsageError("a poll ID is a number (.polls lists them)")
    return int(text)


def _listing(options: list[str]) -> str:
    return " ".join(f"[{i + 1}] {o}" for i, o in enumerate(options))


def _count(votes: int) -> str:
    return f"{votes} vote" if votes == 1 else f"{votes} votes"


def _number(line: str) -> int:
    return int(line[1:].split(" ", 1)[0])
