"""``plugstore demo``: the README's main job, run on the default store.

Two tiny "plugins" use their namespaces the way bot plugins do: one remembers notes,
one keeps karma and a dice leaderboard with atomic updates from several threads.  Each
run adds to what the previous runs stored, which is the point: the data persists.
"""

from __future__ import annotations

import functools
import random
import threading
from typing import Any

import click
from rich.console import Console
from rich.table import Table

import plugstore
from plugstore.errors import ConflictError

from .common import CliState

NOTES = "demo-notes"
KARMA = "demo-karma"
GAME = "demo-game"
PLAYERS = ("alice", "bob", "carol")


def run_demo(store: plugstore.Store, console: Console, *, rolls: int = 50) -> int:
    """Run the demo on ``store``; return the run number recorded in the store."""
    console.print(f"[bold]store[/] {store.url}")
    console.print(f"backend {store.backend.name}, codec {store.codec.name}")

    # 1. A "remember" plugin: plain dict-like use, any JSON-ish value.
    notes = store.namespace(NOTES)
    run = notes.incr("runs")
    notes["last-run"] = {"run": run, "players": PLAYERS, "tags": {"demo", "persistent"}}
    notes.setdefault("meeting", "tomorrow at 10")
    console.print(f"\n[bold]run #{run}[/] on this store (run it again: the numbers carry over)")
    console.print(f"remember: meeting -> {notes['meeting']!r}; last-run -> {notes['last-run']}")

    # 2. A karma plugin: atomic increments from several threads at once.
    karma = store.namespace(KARMA)
    before = karma.get("plugstore", 0)
    threads = [
        threading.Thread(target=lambda: [karma.incr("plugstore") for _ in range(250)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = karma["plugstore"]
    verdict = "[green]exact[/]" if after - before == 1000 else "[red]LOST UPDATES[/]"
    console.print(
        f"karma: 4 threads x 250 plugstore++ -> {before} + {after - before} = {after} ({verdict})"
    )

    # 3. A dice game: per-player totals updated with compute(), read-modify-write done
    #    atomically; a leaderboard kept with mutable(), which refuses to lose an update.
    game = store.namespace(GAME)
    rng = random.Random()
    for _ in range(rolls):
        player = rng.choice(PLAYERS)
        roll = rng.randint(1, 6)
        game.compute(player, functools.partial(_add_roll, roll=roll), default=None)
    try:
        with game.mutable("leaderboard", default=[]) as board:
            board[:] = sorted(
                ((p, game.get(p, {}).get("points", 0)) for p in PLAYERS),
                key=lambda item: (-item[1], item[0]),
            )
    except ConflictError:  # another demo wrote the board meanwhile: theirs is kept
        console.print("leaderboard: another writer got there first; kept theirs")
    table = Table(title=f"dice leaderboard after {run * rolls} rolls")
    for column in ("rank", "player", "points", "rolls", "best"):
        table.add_column(column, justify="right" if column != "player" else "left")
    for rank, (player, points) in enumerate(game["leaderboard"], 1):
        stats = game.get(player, {})
        table.add_row(
            str(rank), player, str(points), str(stats.get("rolls", 0)), str(stats.get("best", "-"))
        )
    console.print(table)

    # 4. What is stored now.
    summary = Table(title="namespaces in this store")
    summary.add_column("namespace")
    summary.add_column("keys", justify="right")
    for name in store.namespaces():
        summary.add_row(name, str(len(store.namespace(name))))
    console.print(summary)
    console.print(
        "next: [bold]plugstore ls demo-game[/], "
        "[bold]plugstore get demo-karma plugstore[/], [bold]plugstore dump[/]"
    )
    return run


def _add_roll(stats: dict[str, Any] | None, roll: int) -> dict[str, Any]:
    stats = dict(stats or {"points": 0, "rolls": 0, "best": 0})
    stats["points"] += roll
    stats["rolls"] += 1
    stats["best"] = max(stats["best"], roll)
    return stats


@click.command("demo")
@click.option("--rolls", default=50, show_default=True, help="Dice rolls per run.")
@click.pass_context
def demo(ctx: click.Context, rolls: int) -> None:
    """Run the demo plugins on the store (default: the embedded SQLite file)."""
    state: CliState = ctx.ensure_object(CliState)
    with state.open() as store:
        run_demo(store, Console(), rolls=rolls)
