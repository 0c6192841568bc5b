"""poll: a multi-step conversation kept in the StateStore, so it survives restarts.

``.poll`` asks for the question (state ``QUESTION``), then for the options, one per
message (state ``OPTIONS``); ``done`` opens the poll and ends the conversation (back to
``"START"``).  Each step moves the state with an atomic
:meth:`~plugstore.state.StateStore.transition`, so the same user typing in two
processes at once cannot open the same poll twice.  Votes are one key per voter
(``vote:<poll>:<user>``), counted with a prefix scan.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from typing import Any

from ..plugin import CommandError, Context, Plugin, UsageError, command

QUESTION, OPTIONS = "QUESTION", "OPTIONS"
MAX_OPTIONS = 10
MAX_TEXT = 200
FINISH = "done"


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
        if verb.isdigit() and not rest:
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
        if choice.isdigit() and 1 <= int(choice) <= len(options):
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
            self.data[draft_key(ctx.user)] = {"question": text, "options": []}
            if not ctx.transition(QUESTION, OPTIONS):
                raise CommandError("this poll moved on elsewhere; .poll shows where you are")
            return f"Send the options, one per message, then '{FINISH}'."
        if state == OPTIONS:
            if text.lower() == FINISH:
                return self._open(ctx)
            draft = self.data.compute(draft_key(ctx.user), lambda d: _add_option(d, text))
            return f"Option {len(draft['options'])}: {text}. Another, or '{FINISH}'?"
        ctx.set_state("START")  # a state this version does not know: start over
        raise CommandError(f"your poll was in an unknown step {state!r}; .poll starts again")

    def _start(self, ctx: Context) -> str:
        if not ctx.transition("START", QUESTION):
            draft = self.data.get(draft_key(ctx.user))
            where = f" ({draft['question']!r})" if draft else ""
            raise CommandError(f"you are already writing a poll{where}: continue, or .poll cancel")
        return "What is the question?"

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
        poll_id = self.data.incr("next-id")
        self.data[poll_key(poll_id)] = {
            **draft,
            "by": ctx.user,
            "open": True,
            "at": datetime.now(timezone.utc),
        }
        self.data.pop(draft_key(ctx.user), None)
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


def _add_option(draft: dict[str, Any] | None, option: str) -> dict[str, Any]:
    draft = draft or {"question": "", "options": []}
    if option.lower() in (o.lower() for o in draft["options"]):
        raise CommandError(f"{option!r} is already an option")
    if len(draft["options"]) >= MAX_OPTIONS:
        raise CommandError(f"at most {MAX_OPTIONS} options: say '{FINISH}'")
    return {**draft, "options": [*draft["options"], option]}


def _poll_id(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 2**63:
        raise UsageError("a poll ID is a number (.polls lists them)")
    return int(text)


def _listing(options: list[str]) -> str:
    return " ".join(f"[{i + 1}] {o}" for i, o in enumerate(options))


def _count(votes: int) -> str:
    return f"{votes} vote" if votes == 1 else f"{votes} votes"


def _number(line: str) -> int:
    return int(line[1:].split(" ", 1)[0])
