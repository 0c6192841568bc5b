"""A local DynamoDB-compatible server for development and tests: moto's, one request at a time.

moto's own server (``moto_server``) handles requests on parallel threads, and its
DynamoDB model checks a condition and applies an update as separate Python steps.  Two
conditional writes racing on one item can then both pass their condition: measured here
(moto 5.2.5, 10 threads x 50 compare-and-set loops with raw boto3), 488 of 500 updates
survived with ``SET ... REMOVE ...`` updates.  DynamoDB itself serialises writes to an
item.  This server runs moto's application behind one lock -- connections stay
concurrent (HTTP keep-alive), request handling is serial -- and the same loop is exact.

Needs the ``dynamodb-local`` extra (moto with its server).  Used by
``plugstore dev dynamodb`` and by plugstore's own tests.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

LOOPBACK = "127.0.0.1"


class _Serialised:
    """A WSGI application that handles one request at a time."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with self._lock:
            # Drain the body inside the lock: moto may compute it lazily.
            return list(self._iterate(environ, start_response))

    def _iterate(self, environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        result = self._app(environ, start_response)
        try:
            yield from result
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()


def make_server(host: str = LOOPBACK, port: int = 0) -> Any:
    """A threaded werkzeug server running moto's backends, requests serialised.

    ``port=0`` picks a free port (``server.server_port`` tells which).  Call
    ``serve_forever()`` (blocking) and ``shutdown()`` from another thread.
    """
    try:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server as werkzeug_server
    except ImportError as exc:
        from .errors import MissingDependencyError

        raise MissingDependencyError(
            f"a local DynamoDB needs moto's server ({exc.name} is missing): "
            'pip install "plugstore[dynamodb-local]"'
        ) from None

    class QuietHandler(MotoRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            """No access log line per request."""

    app = _Serialised(DomainDispatcherApplication(create_backend_app))
    return werkzeug_server(host, port, app, threaded=True, request_handler=QuietHandler)


#: moto measures items its own way: a Binary attribute by its base64 text (4/3 of its
#: bytes; DynamoDB counts the bytes) against 405,000 bytes, and some conditional updates
#: as old item plus new value.  Measured, compare-and-set of ~200 KB values is the most it
#: takes (DynamoDB: 408,392 here).  URLs for the local server cap values well below that.
MOTO_MAX_VALUE_SIZE = 150_000


def url_for(host: str, port: int, table: str, region: str = "us-east-1") -> str:
    """The store URL for ``table`` on a local server."""
    return (
        f"dynamodb://{table}?region={region}&endpoint_url=http://{host}:{port}"
        f"&max_value_size={MOTO_MAX_VALUE_SIZE}"
    )
