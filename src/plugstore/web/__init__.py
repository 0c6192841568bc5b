"""``plugstore web``: a browser console for the data a store holds (extra ``plugstore[web]``).

:func:`create_app` makes the ASGI app over an open sync store; the ``plugstore web``
command serves it with uvicorn on loopback and prints its address with a one-time
access token.  See docs/web.md.
"""

from __future__ import annotations

from .access import Access
from .app import create_app

__all__ = ["Access", "create_app"]
