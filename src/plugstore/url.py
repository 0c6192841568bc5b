"""Store URLs: one string configures a store; the password never leaves it unmasked.

``scheme://[user[:password]@]host[:port][/path][?option=value&...]``, with several
``host[:port]`` separated by commas for a server that is several machines
(``redis+cluster://h1:7000,h2:7001/``).  File-based backends follow SQLAlchemy's
convention: ``sqlite:///relative.db`` (three slashes, a path relative to the working
directory) and ``sqlite:////abs/path.db`` (four slashes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from .errors import ConfigurationError

MASK = "***"
#: Query options whose values are secrets and are masked like the password: these names,
#: and any option whose name contains one of :data:`SECRET_WORDS`.
SECRET_OPTIONS = frozenset({"password", "secret", "token", "aws_secret_access_key"})
SECRET_WORDS = ("password", "passwd", "secret", "token", "credential")


def is_secret_option(name: str) -> bool:
    """Whether a query option's value must be masked (``sslpassword``, ``api_token``...)."""
    lowered = name.lower()
    return lowered in SECRET_OPTIONS or any(word in lowered for word in SECRET_WORDS)


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL.  ``str()`` and ``repr()`` mask the password and secrets."""

    scheme: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    host: str | None = None
    port: int | None = None
    path: str = ""
    query: dict[str, str] = field(default_factory=dict)
    #: Every ``(host, port)`` of a comma-separated host list, the first one also in
    #: ``host`` and ``port``; empty for a URL naming one host (see :attr:`addresses`).
    hosts: tuple[tuple[str, int | None], ...] = ()

    @classmethod
    def parse(cls, text: str) -> StoreURL:
        """Parse ``text``; raise :class:`ConfigurationError` (with the URL masked) if bad."""
        if "://" not in text:
            raise ConfigurationError(f"not a store URL (no '://'): {mask_text(text)!r}")
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if not scheme:
            raise ConfigurationError(f"store URL has no scheme: {mask_text(text)!r}")
        hosts: tuple[tuple[str, int | None], ...] = ()
        host: str | None
        hostinfo = parts.netloc.rpartition("@")[2]
        if "," in hostinfo:
            hosts = tuple(_address(item, text) for item in hostinfo.split(","))
            host, port = hosts[0]
        else:
            try:
                port = parts.port
            except ValueError:
                raise ConfigurationError(f"invalid port in store URL {mask_text(text)!r}") from None
            host = _host(parts.netloc)
        # a path after the authority always starts with "/"; strip exactly that one
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        return cls(
            scheme=scheme,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            host=host,
            port=port,
            path=path,
            query=query,
            hosts=hosts,
        )

    @property
    def addresses(self) -> tuple[tuple[str, int | None], ...]:
        """Every ``(host, port)`` the URL names: its host list, or its one host (none
        for a URL without a host)."""
        if self.hosts:
            return self.hosts
        return ((self.host, self.port),) if self.host else ()

    @property
    def backend_name(self) -> str:
        """The registry name: the scheme without a ``+driver`` suffix."""
        return self.scheme.split("+", 1)[0]

    @property
    def file_path(self) -> str:
        """The path for file-based backends, with ``~`` expanded."""
        return os.path.expanduser(self.path)

    def render(self, *, mask: bool = True) -> str:
        """Return the URL as a string; the password and secret options masked by default."""
        netloc = ""
        if self.username is not None or self.password is not None:
            netloc = quote(self.username or "", safe="")
            if self.password is not None:
                netloc += ":" + (MASK if mask else quote(self.password, safe=""))
            netloc += "@"
        netloc += ",".join(_render_address(host, port) for host, port in self.addresses)
        text = f"{self.scheme}://{netloc}"
        if self.path:
            text += "/" + quote(self.path, safe="/~:")
        if self.query:
            shown = {
                k: (MASK if mask and is_secret_option(k) else v) for k, v in self.query.items()
            }
            text += "?" + urlencode(shown, safe="*")
        return text

    def with_query(self, **options: Any) -> StoreURL:
        """Return a copy with ``options`` merged into the query."""
        merged = dict(self.query)
        merged.update({k: str(v) for k, v in options.items()})
        return replace(self, query=merged)

    def __str__(self) -> str:
        return self.render(mask=True)

    def __repr__(self) -> str:
        return f"StoreURL({self.render(mask=True)!r})"


def _host(netloc: str) -> str | None:
    """The host part of ``netloc`` as written: case kept, since some backends put a
    case-sensitive name there (``dynamodb://MyTable``); hostnames ignore case anyway."""
    hostinfo = netloc.rpartition("@")[2]
    if hostinfo.startswith("["):  # [IPv6]:port
        return unquote(hostinfo[1:].partition("]")[0]) or None
    return unquote(hostinfo.partition(":")[0]) or None


def _address(item: str, text: str) -> tuple[str, int | None]:
    """One ``host[:port]`` (``[IPv6]:port``) of a comma-separated host list."""
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else None
        if rest and port_text is None:
            host = ""
    else:
        host, colon, port_text = item.partition(":")
        if not colon:
            port_text = None
    port = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigurationError(f"invalid port in store URL {mask_text(text)!r}")
        port = int(port_text)
    if not host:
        raise ConfigurationError(f"empty host in the host list of {mask_text(text)!r}")
    return unquote(host), port


def _render_address(host: str | None, port: int | None) -> str:
    text = (f"[{host}]" if ":" in host else host) if host else ""
    return text + (f":{port}" if port is not None else "")


def mask_text(text: str) -> str:
    """Mask a password in a URL-like string even when it does not parse."""
    try:
        parts = urlsplit(text)
        if parts.password is not None:
            userinfo, _, hostinfo = parts.netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            text = text.replace(parts.netloc, f"{user}:{MASK}@{hostinfo}", 1)
    except ValueError:
        pass
    return text


__all__ = ["MASK", "SECRET_OPTIONS", "StoreURL", "is_secret_option", "mask_text"]
