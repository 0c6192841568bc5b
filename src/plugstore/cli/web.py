"""``plugstore web``: serve the browser console on a store (extra ``plugstore[web]``)."""

from __future__ import annotations

import ipaddress
import socket
from contextlib import ExitStack
from pathlib import Path

import click

from .common import CliError, CliState
from .hooks import find_plugins, hook_options, open_tables

LOOPBACK_HOSTS = ("localhost",)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the console on this machine."""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("web")
@click.argument("url", required=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--read-only", is_flag=True, help="Refuse every write (on the server).")
@hook_options
@click.pass_obj
def web_cmd(
    state: CliState,
    url: str | None,
    host: str,
    port: int,
    read_only: bool,
    database: str | None,
    loads: tuple[str, ...],
    no_entry_points: bool,
    plugin_dirs: tuple[Path, ...],
) -> None:
    """Browse and edit the store's data in a web browser.

    Prints the address to open, with a new access token at every start; every request
    needs it.  Listens on loopback unless --host says otherwise.  URL defaults to the
    global one.  Ctrl-C stops it.

    The users page runs the plugins' user-data hooks and the plugins page shows the
    relational plugins' revisions: the plugins plugstore user export finds (-p, --db,
    -l and --no-entry-points as there).  Nothing is migrated.
    """
    try:
        import uvicorn

        from plugstore.web import Access, create_app
    except ImportError as exc:
        raise CliError(
            f"plugstore web needs the web extra ({exc.name} is missing): "
            "pip install 'plugstore[web]'"
        ) from None
    if not is_loopback(host):
        click.echo(
            f"warning: listening on {host}: anyone who can reach it and learns the token "
            "can read (and, without --read-only, change) this store's data",
            err=True,
        )
    sock = _listen(host, port)
    try:
        with state.open(url) as store, ExitStack() as stack:
            found = find_plugins(state, store, loads, no_entry_points, plugin_dirs)
            tables = open_tables(state, store, database, found.relational, no_entry_points)
            if tables is not None:
                stack.enter_context(tables)
                for problem in tables.problems:
                    click.echo(f"warning: {state.scrub(problem)}", err=True)
            access = Access(read_only=read_only)
            app = create_app(store, access, hooks=found.hooks, relational=tables)
            bound_host, bound_port = sock.getsockname()[:2]
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            mode = " (read-only)" if read_only else ""
            click.echo(f"plugstore web on {store.url}{mode}; open:")
            click.echo(f"    http://{shown}:{bound_port}/?token={access.token}")
            click.echo("Ctrl-C stops it.")
            config = uvicorn.Config(app, log_level="warning", lifespan="off")
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: any free port), or a CliError."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
