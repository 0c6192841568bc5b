"""Who may use the console: a one-time access token, a cookie, and CSRF tokens on writes.

``plugstore web`` makes a new random token at every start and prints the address with
it (``http://127.0.0.1:8765/?token=...``, as Jupyter does).  The first request carrying
``?token=`` gets the token as a cookie (``HttpOnly``, ``SameSite=Strict``) and is sent
on to the same address without it, so the token does not linger in the address bar or
the history; every later request is let in by the cookie.  Browsers share cookies
across the ports of one host, so the cookie's name carries the port
(``plugstore_token_8765``): two consoles on one machine keep their own.  Any request with neither,
or a wrong one, gets a bare 401 whose body holds no data (not a redirect to a login
page: there is no login, only the printed address).

Writes are form POSTs carrying a per-start CSRF token in a hidden field; one without it
(or with a wrong one) is refused with 403 before anything is written, as is every write
of a read-only console (:func:`write_form`).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

#: The cookie holding the access token after the first visit (``_<port>`` is appended
#: when the address has one: see :func:`cookie_name`).
COOKIE = "plugstore_token"
#: The query parameter of the printed address (a name, not a secret).
TOKEN_PARAM = "token"  # noqa: S105
CSRF_FIELD = "csrf"

UNAUTHORIZED = (
    "401 Unauthorized: open the address `plugstore web` printed when it started "
    "(it carries ?token=...); every start makes a new token.\n"
)


@dataclass(frozen=True)
class Access:
    """The tokens of one console run, and whether it may write."""

    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    read_only: bool = False

    def admits(self, candidate: str | None) -> bool:
        """Whether ``candidate`` is this run's access token (compared in constant time)."""
        return candidate is not None and hmac.compare_digest(
            candidate.encode(), self.token.encode()
        )

    def csrf_ok(self, candidate: object) -> bool:
        """Whether ``candidate`` is this run's CSRF token (compared in constant time)."""
        return isinstance(candidate, str) and hmac.compare_digest(
            candidate.encode(), self.csrf.encode()
        )


Endpoint = Callable[[Request], Awaitable[Response]]


def cookie_name(request: Request) -> str:
    """The access cookie's name for the console ``request`` reached: one per port, since
    a browser sends a host's cookies to all its ports (one console's login would
    otherwise replace another's)."""
    port = request.url.port
    return COOKIE if port is None else f"{COOKIE}_{port}"


async def guard(access: Access, request: Request, call_next: Endpoint) -> Response:
    """Let a request through only with the access token (see the module docs)."""
    offered = request.query_params.get(TOKEN_PARAM)
    if offered is not None:
        if not access.admits(offered):
            return PlainTextResponse(UNAUTHORIZED, status_code=401)
        rest = [(k, v) for k, v in parse_qsl(request.url.query) if k != TOKEN_PARAM]
        target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
        response: Response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            cookie_name(request), access.token, httponly=True, samesite="strict", path="/"
        )
        return response
    if not access.admits(request.cookies.get(cookie_name(request))):
        return PlainTextResponse(UNAUTHORIZED, status_code=401)
    return await call_next(request)


async def write_form(access: Access, request: Request) -> FormData:
    """The form of a write, once it passed the read-only and CSRF checks (else 403)."""
    if access.read_only:
        raise HTTPException(403, "403 Forbidden: this console is read-only (--read-only)")
    form = await request.form()
    if not access.csrf_ok(form.get(CSRF_FIELD)):
        raise HTTPException(
            403,
            "403 Forbidden: the form lacks this console's CSRF token; reload the page and "
            "submit it again",
        )
    return form


__all__ = [
    "COOKIE",
    "CSRF_FIELD",
    "TOKEN_PARAM",
    "Access",
    "cookie_name",
    "guard",
    "write_form",
]
