"""games: play against the bot; per-user statistics and a leaderboard.

Every game adds one to exactly one counter (``wins``, ``losses`` or ``draws`` of the
player) with the store's atomic ``incr``, so any number of processes playing at once on
one store keep exact totals.  The leaderboard is computed from those counters when asked:
there is no second copy to drift.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..plugin import CommandError, Context, Plugin, UsageError, command

OUTCOMES = ("wins", "draws", "losses")
POINTS = {"wins": 3, "draws": 1, "losses": 0}
RPS_BEATS = {"rock": "scissors", "paper": "rock", "scissors": "paper"}
DEFAULT_TOP = 10
MAX_TOP = 100


def counter_key(outcome: str, user: str) -> str:
    """``stats:<outcome>:<user>``: the outcome has no ``:``, so any user name is safe."""
    return f"stats:{outcome}:{user}"


@dataclass(frozen=True)
class Record:
    """One player's results."""

    player: str
    wins: int = 0
    draws: int = 0
    losses: int = 0

    @property
    def games(self) -> int:
        """Games played."""
        return self.wins + self.draws + self.losses

    @property
    def points(self) -> int:
        """3 per win, 1 per draw."""
        return sum(POINTS[o] * getattr(self, o) for o in OUTCOMES)

    def summary(self) -> str:
        """``5 games: 2 wins, 1 draw, 2 losses, 7 points``."""
        parts = ", ".join(_plural(getattr(self, o), o) for o in OUTCOMES)
        return f"{_plural(self.games, 'games')}: {parts}, {_plural(self.points, 'points')}"


def rank(records: Iterable[Record]) -> list[tuple[int, Record]]:
    """Rank by points, then wins; equal players share a rank (1, 2, 2, 4), listed by name."""
    ordered = sorted(records, key=lambda r: (-r.points, -r.wins, r.player))
    ranked: list[tuple[int, Record]] = []
    for index, record in enumerate(ordered):
        previous = ranked[-1] if ranked else None
        if previous and (previous[1].points, previous[1].wins) == (record.points, record.wins):
            ranked.append((previous[0], record))
        else:
            ranked.append((index + 1, record))
    return ranked


class Games(Plugin):
    """Games against the bot, with statistics and a leaderboard."""

    name = "games"

    @command(usage="rps rock|paper|scissors | dice | stats [USER]")
    def play(self, ctx: Context, args: str) -> str:
        """Play rock-paper-scissors or dice against me, or show statistics."""
        game, _, rest = args.partition(" ")
        game, rest = game.lower(), rest.strip()
        if game == "rps":
            return self._rps(ctx.user, rest.lower())
        if game == "dice":
            if rest:
                raise UsageError("dice takes no arguments")
            return self._dice(ctx.user)
        if game == "stats":
            return self.stats(rest or ctx.user)
        raise UsageError("choose a game: rps or dice")

    @command(usage="[N]")
    def leaderboard(self, ctx: Context, args: str) -> str:
        """The top N players (default 10) by points: 3 a win, 1 a draw."""
        if not args:
            top = DEFAULT_TOP
        elif re.fullmatch(r"[0-9]+", args) and 1 <= int(args) <= MAX_TOP:  # not "²"
            top = int(args)
        else:
            raise UsageError(f"N is a whole number from 1 to {MAX_TOP}")
        ranked = rank(self.records().values())
        if not ranked:
            return "nobody has played yet: .play rps rock"
        lines = [
            f"{place:>3}. {record.player}  {record.summary()}" for place, record in ranked[:top]
        ]
        return "\n".join(lines)

    # -- games ------------------------------------------------------------------------

    def _rps(self, user: str, choice: str) -> str:
        if choice not in RPS_BEATS:
            raise UsageError("choose rock, paper or scissors")
        mine = self.rng.choice(sorted(RPS_BEATS))
        outcome = "draws" if choice == mine else "wins" if RPS_BEATS[choice] == mine else "losses"
        return f"I play {mine}: {self._record(user, outcome)}"

    def _dice(self, user: str) -> str:
        yours = self.rng.randint(1, 6) + self.rng.randint(1, 6)
        mine = self.rng.randint(1, 6) + self.rng.randint(1, 6)
        outcome = "draws" if yours == mine else ("wins" if yours > mine else "losses")
        return f"you roll {yours}, I roll {mine}: {self._record(user, outcome)}"

    def _record(self, user: str, outcome: str) -> str:
        count = self.data.incr(counter_key(outcome, user))
        verdict = {"wins": "you win", "draws": "a draw", "losses": "I win"}[outcome]
        return f"{verdict} ({_plural(count, outcome)} for {user})"

    # -- statistics -------------------------------------------------------------------

    def stats(self, user: str) -> str:
        """One player's statistics and rank."""
        records = self.records()
        if user not in records:
            raise CommandError(f"{user} has not played yet")
        place = next(p for p, r in rank(records.values()) if r.player == user)
        return f"{user}: {records[user].summary()}, rank {place} of {len(records)}"

    def records(self) -> dict[str, Record]:
        """Every player's record, read with one prefix scan per outcome."""
        counts: dict[str, dict[str, int]] = {}
        for outcome in OUTCOMES:
            prefix = counter_key(outcome, "")
            for key, value in self.data.scan(prefix):
                counts.setdefault(key[len(prefix) :], {})[outcome] = int(value)
        return {player: Record(player, **c) for player, c in counts.items()}


def _plural(count: int, noun: str) -> str:
    """``1 win``, ``2 wins``, ``1 loss``, ``0 points``."""
    if count == 1:
        noun = {"losses": "loss", "wins": "win", "draws": "draw"}.get(noun, noun.rstrip("s"))
    return f"{count} {noun}"
