"""A test plugin whose Errbot name ("Test hooks for webhooks testing") is no namespace."""

from __future__ import annotations

from typing import Any

from errbot import BotPlugin, botcmd

from plugstore.integrations.errbot import incr


class Hooks(BotPlugin):
    """Stores through ``self`` like any plugin."""

    @botcmd
    def hooks_set(self, msg: Any, args: str) -> str:
        key, _, value = args.partition(" ")
        self[key] = value
        return f"hooked {key}"

    @botcmd
    def hooks_get(self, msg: Any, args: str) -> str:
        try:
            return f"{args} = {self[args]}"
        except KeyError:
            return f"{args} is missing"

    @botcmd
    def hooks_count(self, msg: Any, args: str) -> str:
        return f"hooks {incr(self, 'count')}"
