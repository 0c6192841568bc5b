"""The ``plugstore`` command line tool (``plugstore --help``).

Importing :mod:`plugstore` never imports this package, click or rich.
"""

from __future__ import annotations

from .app import COMMANDS, cli, main

__all__ = ["COMMANDS", "cli", "main"]
