"""games: play against the bot; per-channel statistics for each player and a leaderboard.

Every game adds one to exactly one counter (``wins``, ``losses`` or ``draws``) in the
player's scope ``channel=<name>, user=<player>``, with the store's atomic ``incr``, so
any number of processes playing at once on one store keep exact totals.  The
leaderboard is computed from those counters when asked (one prefix read of the
channel): there is no second copy to drift.  Data version 1 (before channels) kept
plain ``stats:<outcome>:<user>`` keys; the version 2 migration moves them into the
default channel.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from plugstore.scopes import Scope
from plugstore.versioning import Migration

from ..plugin import DEFAULT_CHANNEL, CommandError, Context, Plugin, UsageError, command

OUTCOMES = ("wins", "draws", "losses")
POINTS = {"wins": 3, "draws": 1, "losses": 0}
RPS_BEATS = {"rock": "scissors", "paper": "rock", "scissors": "paper"}
DEFAULT_TOP = 10
MAX_TOP = 100


def legacy_counter_key(outcome: str, user: str) -> str:
    """Version 1's key of a counter: ``stats:<outcome>:<user>``."""
    return f"stats:{outcome}:{user}"


def scopes_from_plain(m: Migration) -> None:
    """Version 2: version 1's counters move to the players' scopes in the default
    channel (copied, then deleted: safe to run again after a crash)."""
    for key, value in m.items():
        kind, _, rest = key.partition(":")
        outcome, _, user = rest.partition(":")
        if kind == "stats" and outcome in OUTCOMES and user:
            m.namespace.scope(channel=DEFAULT_CHANNEL, user=user)[outcome] = value
            del m.namespace[key]


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
    data_version = 2
    data_migrations: ClassVar = {2: scopes_from_plain}

    @command(usage="rps rock|paper|scissors | dice | stats [USER]")
    def play(self, ctx: Context, args: str) -> str:
        """Play rock-paper-scissors or dice against me, or show statistics."""
        game, _, rest = args.partition(" ")
        game, rest = game.lower(), rest.strip()
        if game == "rps":
            return self._rps(ctx, rest.lower())
        if game == "dice":
            if rest:
                raise UsageError("dice takes no arguments")
            return self._dice(ctx)
        if game == "stats":
            return self.stats(rest or ctx.user, ctx.channel)
        raise UsageError("choose a game: rps or dice")

    @command(usage="[N]")
    def leaderboard(self, ctx: Context, args: str) -> str:
        """The top N players of this channel (default 10) by points: 3 a win, 1 a draw."""
        if not args:
            top = DEFAULT_TOP
        elif re.fullmatch(r"[0-9]+", args) and 1 <= int(args) <= MAX_TOP:  # not "²"
            top = int(args)
        else:
            raise UsageError(f"N is a whole number from 1 to {MAX_TOP}")
        ranked = rank(self.records(ctx.channel).values())
        if not ranked:
            return "nobody has played yet: .play rps rock"
        lines = [
            f"{place:>3}. {record.player}  {record.summary()}" for place, record in ranked[:top]
        ]
        return "\n".join(lines)

    # -- games ------------------------------------------------------------------------

    def _rps(self, ctx: Context, choice: str) -> str:
        if choice not in RPS_BEATS:
            raise UsageError("choose rock, paper or scissors")
        mine = self.rng.choice(sorted(RPS_BEATS))
        outcome = "draws" if choice == mine else "wins" if RPS_BEATS[choice] == mine else "losses"
        return f"I play {mine}: {self._record(ctx, outcome)}"

    def _dice(self, ctx: Context) -> str:
        yours = self.rng.randint(1, 6) + self.rng.randint(1, 6)
        mine = self.rng.randint(1, 6) + self.rng.randint(1, 6)
        outcome = "draws" if yours == mine else ("wins" if yours > mine else "losses")
        return f"you roll {yours}, I roll {mine}: {self._record(ctx, outcome)}"

    def _record(self, ctx: Context, outcome: str) -> str:
        count = self.player(ctx.channel, ctx.user).incr(outcome)
        verdict = {"wins": "you win", "draws": "a draw", "losses": "I win"}[outcome]
        return f"{verdict} ({_plural(count, outcome)} for {ctx.user})"

    # -- statistics -------------------------------------------------------------------

    def player(self, channel: str, user: str) -> Scope:
        """The scope holding ``user``'s counters in ``channel``."""
        return self.data.scope(channel=channel, user=user)

    def stats(self, user: str, channel: str = DEFAULT_CHANNEL) -> str:
        """One player's statistics and rank in ``channel``."""
        records = self.records(channel)
        if user not in records:
            raise CommandError(f"{user} has not played in {channel} yet")
        place = next(p for p, r in rank(records.values()) if r.player == user)
        return f"{user}: {records[user].summary()}, rank {place} of {len(records)}"

    def records(self, channel: str = DEFAULT_CHANNEL) -> dict[str, Record]:
        """Every player's record in ``channel``, read with one prefix scan."""
        found = self.data.scope(channel=channel).children("user")
        return {
            str(player): Record(str(player), **{o: int(n) for o, n in c.items() if o in OUTCOMES})
            for player, c in found.items()
        }


def _plural(count: int, noun: str) -> str:
    """``1 win``, ``2 wins``, ``1 loss``, ``0 points``."""
    if count == 1:
        noun = {"losses": "loss", "wins": "win", "draws": "draw"}.get(noun, noun.rstrip("s"))
    return f"{count} {noun}"
