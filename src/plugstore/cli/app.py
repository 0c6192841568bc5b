"""The ``plugstore`` command group: global options, lazy commands, one-line errors.

Commands live one module per group (``data``, ``transfer``, ``doctor``, ...) and are
imported only when invoked or listed in ``--help``, so ``plugstore get`` does not pay for
rich's import.  To add a command, write it in its own module and add one line to
:data:`COMMANDS`; it receives the :class:`~plugstore.cli.common.CliState` as ``ctx.obj``.

Error policy: a :class:`~plugstore.errors.StoreError`, a usage error or any other failure
is reported as ONE line on stderr (``error: ...``) with a non-zero exit code; the
traceback is printed only with ``--debug``.  Every password and secret the command line or
the environment mentions is scrubbed from whatever is printed.  Ctrl-C exits with 130.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

import click

import plugstore

from .common import CliState, describe, print_traceback

#: Command name -> "module:attribute", imported on first use.
COMMANDS: dict[str, str] = {
    "ls": "plugstore.cli.data:ls_cmd",
    "get": "plugstore.cli.data:get_cmd",
    "set": "plugstore.cli.data:set_cmd",
    "rm": "plugstore.cli.data:rm_cmd",
    "dump": "plugstore.cli.transfer:dump_cmd",
    "load": "plugstore.cli.transfer:load_cmd",
    "copy": "plugstore.cli.transfer:copy_cmd",
    "purge": "plugstore.cli.purge:purge_cmd",
    "doctor": "plugstore.cli.doctor:doctor_cmd",
    "demo": "plugstore.cli.demo:demo",
    "chat": "plugstore.cli.chat:chat_cmd",
    "db": "plugstore.cli.db:db_group",
    "dynamodb": "plugstore.cli.dynamodb:dynamodb_group",
    "dev": "plugstore.cli.dynamodb:dev_group",
    "import-errbot": "plugstore.cli.errbot:import_errbot_cmd",
    "export-errbot": "plugstore.cli.errbot:export_errbot_cmd",
    "errbot-plugin-dir": "plugstore.cli.errbot:plugin_dir_cmd",
    "errbot-namespace": "plugstore.cli.errbot:errbot_namespace_cmd",
    "user": "plugstore.cli.user:user_group",
    "web": "plugstore.cli.web:web_cmd",
}

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


class PlugstoreGroup(click.Group):
    """A click group with lazily imported commands and plugstore's error policy."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in COMMANDS:
            module_name, _, attr = COMMANDS[cmd_name].partition(":")
            command = getattr(importlib.import_module(module_name), attr)
            assert isinstance(command, click.Command)
            self.add_command(command, cmd_name)
        return command

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; exit (``standalone_mode``) or return the exit code."""
        argv = list(sys.argv[1:] if args is None else args)
        state = CliState()
        state.note_secrets_in_args(argv)
        extra.setdefault("obj", state)
        code = self._run(argv, prog_name or "plugstore", complete_var, state, extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(
        self,
        argv: list[str],
        prog_name: str,
        complete_var: str | None,
        state: CliState,
        extra: dict[str, Any],
    ) -> int:
        try:
            result = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            message = exc.format_message()
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                message += f" (see '{exc.ctx.command_path} --help')"
            state.error(message)
            return exc.exit_code
        except click.Abort as exc:
            if isinstance(exc.__cause__, KeyboardInterrupt):
                return EXIT_INTERRUPTED
            state.error("aborted")
            return EXIT_ERROR
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except Exception as exc:
            return self._fail(exc, state)
        return result if isinstance(result, int) else 0

    @staticmethod
    def _fail(exc: BaseException, state: CliState) -> int:
        if state.debug:
            print_traceback(exc, state)
        state.error(describe(exc, hint=not state.debug))
        return EXIT_ERROR


@click.group(
    "plugstore", cls=PlugstoreGroup, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.option(
    "-u",
    "--url",
    metavar="URL",
    help="Store URL or backend name (default: $PLUGSTORE_URL, else the embedded SQLite file).",
)
@click.option(
    "--codec",
    type=click.Choice(["json", "pickle", "signed-pickle"]),
    help="Codec for every store URL that does not name one in ?codec= (default: json).",
)
@click.option(
    "--secret-env",
    metavar="NAME",
    help="Environment variable holding the signed-pickle secret (default: PLUGSTORE_SECRET).",
)
@click.option("--debug", is_flag=True, help="Print tracebacks of errors (secrets scrubbed).")
@click.version_option(plugstore.__version__, "-V", "--version", prog_name="plugstore")
@click.pass_context
def cli(
    ctx: click.Context,
    url: str | None,
    codec: str | None,
    secret_env: str | None,
    debug: bool,
) -> None:
    """Inspect and move the data of a plugstore store.

    The store is chosen with --url, else the PLUGSTORE_URL environment variable, else the
    embedded default SQLite file.  Secrets never go on the command line: the
    signed-pickle secret is read from PLUGSTORE_SECRET (or the variable --secret-env
    names).
    """
    state = ctx.ensure_object(CliState)
    state.configure(url=url, codec=codec, secret_env=secret_env, debug=debug)
    # Other libraries' log lines (psycopg's pool warns on every failed connection
    # attempt) would repeat the one error line; --debug shows them, secrets scrubbed.
    _configure_logging(state)


class _ScrubbingFormatter(logging.Formatter):
    def __init__(self, state: CliState) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self._state = state

    def format(self, record: logging.LogRecord) -> str:
        return self._state.scrub(super().format(record))


def _configure_logging(state: CliState) -> None:
    root = logging.getLogger()
    if root.handlers:
        return  # the embedding application (or a test runner) set logging up
    handler = logging.StreamHandler()
    handler.setFormatter(_ScrubbingFormatter(state))
    # The handler decides, not the loggers' levels (psycopg sets its own): plugstore's
    # warnings always show; other libraries' only with --debug.
    handler.setLevel(logging.WARNING)
    if not state.debug:
        handler.addFilter(lambda record: record.name.split(".", 1)[0] == "plugstore")
    root.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``plugstore`` script: run ``argv`` (default ``sys.argv[1:]``) and exit."""
    cli.main(args=argv, prog_name="plugstore")
