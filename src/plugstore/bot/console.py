"""The chat console: an interactive prompt, one-shot commands, or lines piped on stdin.

* Interactive (stdin is a terminal, no ``-c``): a ``user>`` prompt with readline editing
  and a history file kept between sessions; ``.quit``, Ctrl-D or Ctrl-C twice leave.
* One-shot (``-c LINE``, repeatable): each line is said in turn, the replies printed.
* Piped (stdin is not a terminal): every line read is said in turn.

``.quit`` (or ``.exit``) ends any of them; Ctrl-C at the prompt abandons a command that
is waiting on the store.

Replies go to stdout, error replies to stderr; outside interactive mode the exit status
is 1 if any reply was an error, so scripts can tell.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable
from pathlib import Path

import click

from .host import ChatHost, Reply
from .plugin import DEFAULT_CHANNEL

QUIT = frozenset({".quit", ".exit"})
HISTORY_LENGTH = 1000


def history_path() -> Path:
    """Where the interactive console keeps its readline history."""
    import platformdirs

    return platformdirs.user_state_path("plugstore") / "chat_history"


def say_lines(
    host: ChatHost, user: str, lines: Iterable[str], channel: str = DEFAULT_CHANNEL
) -> int:
    """Say each line as ``user`` in ``channel`` and print the replies; 1 if any reply
    was an error."""
    failed = False
    for line in lines:
        if line.strip().lower() in QUIT:
            break
        failed |= _show(host.handle(user, line, channel), color=False)
    return 1 if failed else 0


def interactive(host: ChatHost, user: str, banner: str, channel: str = DEFAULT_CHANNEL) -> int:
    """Run the prompt until ``.quit`` or end of input."""
    history = _start_history()
    click.echo(banner)
    prompt = f"{user}> " if channel == DEFAULT_CHANNEL else f"{user}@{channel}> "
    interrupted = False
    try:
        while True:
            try:
                line = input(prompt)
            except EOFError:
                click.echo()
                return 0
            except KeyboardInterrupt:
                if interrupted:
                    click.echo()
                    return 0
                interrupted = True
                click.echo("\n(Ctrl-C again, Ctrl-D or .quit to leave)")
                continue
            interrupted = False
            if line.strip().lower() in QUIT:
                return 0
            try:
                replies = host.handle(user, line, channel)
            except KeyboardInterrupt:  # Ctrl-C during a slow command: drop it, stay
                click.echo("\n(interrupted)")
                continue
            _show(replies, color=True)
    finally:
        _save_history(history)


def _show(replies: list[Reply], *, color: bool) -> bool:
    failed = False
    for reply in replies:
        if reply.error:
            failed = True
            click.secho(reply.text, fg="red" if color else None, err=True)
        else:
            click.echo(reply.text)
    return failed


def _start_history() -> Path | None:
    try:
        import readline
    except ImportError:  # no readline on this Python: plain input() still works
        return None
    path = history_path()
    readline.set_history_length(HISTORY_LENGTH)
    with contextlib.suppress(FileNotFoundError, OSError):
        readline.read_history_file(path)
    return path


def _save_history(path: Path | None) -> None:
    if path is None:
        return
    import readline

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        readline.write_history_file(path)
    except OSError as exc:  # a read-only home must not spoil the exit
        click.echo(f"warning: chat history not saved: {exc.strerror}: {path}", err=True)


def stdin_is_tty() -> bool:
    """Whether stdin is a terminal (interactive mode)."""
    return bool(getattr(sys.stdin, "isatty", lambda: False)())
