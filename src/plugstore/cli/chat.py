"""``plugstore chat``: the chat host, on the default store or any other."""

from __future__ import annotations

import getpass
import os
import random
import sys
from pathlib import Path

import click

from .common import CliError, CliState

USER_ENV = "PLUGSTORE_CHAT_USER"


def default_user() -> str:
    """``$PLUGSTORE_CHAT_USER``, else the login name, else ``"me"``."""
    try:
        return os.environ.get(USER_ENV) or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "me"


@click.command("chat")
@click.option(
    "-c",
    "--command",
    "commands",
    multiple=True,
    metavar="LINE",
    help="Say LINE, print the replies and exit (repeatable).  Without it, lines are read "
    "from stdin when it is not a terminal, else an interactive prompt opens.",
)
@click.option(
    "-s",
    "--storage",
    metavar="URL",
    help="Store URL (default: --url, $PLUGSTORE_URL, else the embedded SQLite file).",
)
@click.option(
    "--user",
    metavar="NAME",
    default=default_user,
    show_default="$PLUGSTORE_CHAT_USER or your login name",
    help="Speak as NAME.",
)
@click.option(
    "--channel",
    metavar="NAME",
    default="general",
    show_default=True,
    help="Speak in channel NAME (karma and game statistics are kept per channel).",
)
@click.option(
    "-p",
    "--plugins-dir",
    "plugin_dirs",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Also load the plugins in DIR/*.py (repeatable).",
)
@click.option(
    "--no-entry-points",
    is_flag=True,
    help="Do not load plugins installed under the plugstore.bot_plugins entry point.",
)
@click.option(
    "--db",
    "database",
    metavar="URL",
    help="Database for plugins' tables (default: the store's own when it is SQLite, "
    "PostgreSQL or MariaDB, else the embedded SQLite file).",
)
@click.option("--seed", type=int, help="Seed the games' random numbers (reproducible runs).")
@click.pass_context
def chat_cmd(
    ctx: click.Context,
    commands: tuple[str, ...],
    storage: str | None,
    user: str,
    channel: str,
    plugin_dirs: tuple[Path, ...],
    no_entry_points: bool,
    database: str | None,
    seed: int | None,
) -> int:
    """Chat with the plugstore bot: commands start with '.', try .help.

    Everything the plugins store lives in the store, so it is still there in the next
    session, and several consoles on one store share it.
    """
    from plugstore.bot import ChatHost, builtin_plugins, directory_plugins, entry_point_plugins
    from plugstore.bot.console import interactive, say_lines, stdin_is_tty
    from plugstore.bot.host import check_channel, check_user

    state: CliState = ctx.ensure_object(CliState)
    user, channel = user.strip(), channel.strip()
    problem = check_user(user)
    if problem:
        raise CliError(f"--user: {problem}")
    problem = check_channel(channel)
    if problem:
        raise CliError(f"--channel: {problem}")
    plugins = builtin_plugins()
    problems: list[str] = []
    if not no_entry_points:
        found, trouble = entry_point_plugins()
        plugins += found
        problems += trouble
    for directory in plugin_dirs:
        found, trouble = directory_plugins(directory)
        plugins += found
        problems += trouble
    if database:
        state.note_secrets_in_text(database)
    with (
        state.open(storage) as store,
        ChatHost(
            store,
            plugins,
            rng=random.Random(seed) if seed is not None else None,
            debug=state.debug,
            scrub=state.scrub,
            database=database,
        ) as host,
    ):
        for problem in problems + host.problems:
            click.echo(f"warning: {state.scrub(problem)}", err=True)
        if commands:
            return say_lines(host, user, commands, channel)
        if not stdin_is_tty():  # piped; a closed stdin (None) says nothing
            lines = (line.rstrip("\n") for line in sys.stdin or ())
            return say_lines(host, user, lines, channel)
        loaded = ", ".join(p.name for p in host.plugins)
        tables = ""
        if host.relational is not None:
            tables = f"tables: {host.relational.url}\n"
        banner = (
            f"plugstore chat on {store.url} as {user} in {channel}\n"
            f"plugins: {loaded}\n{tables}"
            "commands start with '.': try .help; .quit or Ctrl-D leaves"
        )
        return interactive(host, user, banner, channel)
