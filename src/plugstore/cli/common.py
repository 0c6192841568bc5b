"""What every command shares: the state behind the global options, errors, output."""

from __future__ import annotations

import json
import os
import sys
import traceback
from dataclasses import dataclass, field, replace
from typing import IO, Any, cast
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import click

from plugstore.config import SECRET_ENV, default_url, resolve_url
from plugstore.errors import StoreError
from plugstore.store import Store
from plugstore.url import StoreURL, is_secret_option

#: Secrets shorter than this are not scrubbed from messages: replacing every "a" of an
#: error message would make it unreadable, and a 1-2 character secret protects nothing.
MIN_SCRUB_LENGTH = 3


class CliError(click.ClickException):
    """A failure the user can act on: reported as one ``error:`` line, exit code 1."""

    exit_code = 1


def load_attribute(spec: str) -> Any:
    """The object ``--load MODULE:ATTR`` names, imported with the current directory on
    ``sys.path`` (as ``python -m`` would); a :class:`CliError` saying why if it cannot."""
    import importlib

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CliError(f"--load {spec!r}: write it as MODULE:ATTRIBUTE")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise CliError(f"--load {spec}: {exc}") from None


@dataclass
class CliState:
    """The global options, shared by every command as ``ctx.obj``.

    It also remembers every secret (URL passwords, secret query options, the
    signed-pickle secret) seen in the arguments and the environment, so that
    :meth:`scrub` can remove them from anything printed -- including messages written by
    third-party backends that forgot to mask a URL.
    """

    url: str | None = None
    codec: str | None = None
    secret_env: str | None = None
    debug: bool = False
    secrets: set[str] = field(default_factory=set)

    def configure(
        self, *, url: str | None, codec: str | None, secret_env: str | None, debug: bool
    ) -> None:
        """Record the global options."""
        self.url, self.codec, self.secret_env, self.debug = url, codec, secret_env, debug
        self.note_secrets_in_text(os.environ.get("PLUGSTORE_URL", ""))
        for name in (SECRET_ENV, secret_env):
            if name and os.environ.get(name):
                self.secrets.add(os.environ[name])

    # -- secrets -------------------------------------------------------------------------

    def note_secrets_in_args(self, argv: list[str]) -> None:
        """Remember the secrets of every URL-looking argument, before parsing them."""
        for arg in argv:
            self.note_secrets_in_text(arg)

    def note_secrets_in_text(self, text: str) -> None:
        """Remember the password and secret query options of a URL (quoted and not)."""
        if "://" not in text:
            return
        try:
            parts = urlsplit(text)
            password = parts.password
        except ValueError:
            # unparsable (a bad port...): take what sits between "user:" and "@"
            netloc = text.split("://", 1)[1].split("/", 1)[0]
            password = netloc.rpartition("@")[0].partition(":")[2] or None
            parts = None
        found = [password] if password else []
        if parts is not None:
            for name, value in parse_qsl(parts.query, keep_blank_values=True):
                if is_secret_option(name) and value:
                    found.append(value)
        for secret in found:
            self.secrets.update({secret, unquote(secret), quote(secret, safe="")})

    def scrub(self, text: str) -> str:
        """Return ``text`` with every known secret replaced by ``***``."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            if len(secret) >= MIN_SCRUB_LENGTH:
                text = text.replace(secret, "***")
        return text

    def error(self, message: str) -> None:
        """Print ``error: message`` on stderr as one line, secrets scrubbed."""
        line = " ".join(self.scrub(message).split())
        click.echo(f"error: {line}", err=True)

    # -- opening stores ------------------------------------------------------------------

    def resolve_url(self, url: str | None = None) -> str:
        """The URL text to open: ``url``, else ``--url``, else the default."""
        text = url or self.url or default_url()
        self.note_secrets_in_text(text)
        return text

    def prepare(self, url: str | None = None) -> tuple[StoreURL, dict[str, Any]]:
        """The URL to open and the keyword options for :func:`plugstore.open`.

        ``--codec`` applies to every URL that does not choose its codec itself.  The
        signed-pickle secret comes from the environment variable named by the URL's
        ``?secret_env=NAME`` (a CLI-only option, so that ``copy`` can re-sign data under a
        new secret), else by ``--secret-env``, else ``PLUGSTORE_SECRET`` (read by
        :func:`plugstore.open` itself).
        """
        parsed = resolve_url(self.resolve_url(url), {})
        options: dict[str, Any] = {}
        if self.codec and "codec" not in parsed.query:
            options["codec"] = self.codec
        query = dict(parsed.query)
        env_name, flag = query.pop("secret_env", None), "?secret_env="
        if env_name is None:
            env_name, flag = self.secret_env, "--secret-env "
        if env_name:
            secret = os.environ.get(env_name)
            if not secret:
                raise CliError(f"{flag}{env_name}: that environment variable is not set")
            self.secrets.add(secret)
            options["secret"] = secret
        return replace(parsed, query=query), options

    def open(self, url: str | None = None) -> Store:
        """Open the store at ``url`` (default: the global one) with the global options."""
        import plugstore

        parsed, options = self.prepare(url)
        return plugstore.open(parsed, **options)


def describe(exc: BaseException, *, hint: bool = True) -> str:
    """A one-line description of ``exc`` for the ``error:`` line."""
    if isinstance(exc, StoreError):
        return str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    text = f"unexpected {type(exc).__name__}: {exc}"
    return text + (" (run with --debug for the traceback)" if hint else "")


def print_traceback(exc: BaseException, state: CliState) -> None:
    """Print the traceback of ``exc`` on stderr with every known secret scrubbed."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    click.echo(state.scrub(text).rstrip("\n"), err=True)


def binary_stream(name: str) -> IO[bytes]:
    """The binary side of ``sys.stdin`` or ``sys.stdout`` (looked up at call time)."""
    stream = getattr(sys, name)
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        raise CliError(f"{name} is not a binary-capable stream")
    return cast("IO[bytes]", buffer)


def stdout_is_tty() -> bool:
    """Whether stdout is a terminal (rich output) rather than a pipe or file (plain)."""
    return bool(getattr(sys.stdout, "isatty", lambda: False)())


def json_text(data: Any, *, indent: int | None = None) -> str:
    """JSON for printing: UTF-8 as is, but escapes for what UTF-8 cannot carry."""
    text = json.dumps(data, ensure_ascii=False, indent=indent)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (a pickled str can hold them)
        text = json.dumps(data, ensure_ascii=True, indent=indent)
    return text


def shown(text: str) -> str:
    """``text`` safe to show in a terminal: control characters escaped via ``repr``."""
    return text if text.isprintable() else repr(text)


def namespace_exists(store: Store, name: str) -> bool:
    """Whether namespace ``name`` holds at least one key (reads one key at most)."""
    return next(iter(store.backend.bucket(name).keys()), None) is not None
