"""A test plugin exercising Errbot's storage API the way plugins use it."""

from __future__ import annotations

from typing import Any

from errbot import BotPlugin, botcmd

from plugstore.integrations.errbot import compute, incr


class Keepsake:
    """A custom class instance to store: pickled under this module's name."""

    def __init__(self, owner: Any, words: str) -> None:
        self.owner = owner
        self.words = words


class Memo(BotPlugin):
    """Commands over self (the plugin's storage)."""

    def get_configuration_template(self) -> dict[str, str]:
        return {"GREETING": "hello"}

    @botcmd
    def memo_set(self, msg: Any, args: str) -> str:
        key, _, value = args.partition(" ")
        self[key] = value
        return f"stored {key}"

    @botcmd
    def memo_get(self, msg: Any, args: str) -> str:
        try:
            return f"{args} = {self[args]}"
        except KeyError:
            return f"{args} is missing"

    @botcmd
    def memo_del(self, msg: Any, args: str) -> str:
        try:
            del self[args]
        except KeyError:
            return f"{args} is missing"
        return f"deleted {args}"

    @botcmd
    def memo_list(self, msg: Any, args: str) -> str:
        return "keys: " + (", ".join(sorted(self.keys())) or "(none)") + f" ({len(self)})"

    @botcmd
    def memo_clear(self, msg: Any, args: str) -> str:
        removed = 0
        for key in self.keys():  # deleting while iterating: keys() must be a snapshot
            del self[key]
            removed += 1
        return f"cleared {removed}"

    @botcmd
    def memo_keep(self, msg: Any, args: str) -> str:
        self["keepsake"] = Keepsake(msg.frm, args)
        self["last_speaker"] = msg.frm
        return "kept"

    @botcmd
    def memo_show(self, msg: Any, args: str) -> str:
        keepsake = self["keepsake"]
        return f"{type(keepsake).__name__} from {keepsake.owner}: {keepsake.words}"

    @botcmd
    def memo_append(self, msg: Any, args: str) -> str:
        with self.mutable("log", []) as log:
            log.append(args)
        return f"log has {len(self['log'])}"

    @botcmd
    def memo_count(self, msg: Any, args: str) -> str:
        return f"count {incr(self, 'count')}"

    @botcmd
    def memo_score(self, msg: Any, args: str) -> str:
        scores = compute(self, "scores", lambda s: {**s, args: s.get(args, 0) + 1}, {})
        return f"{args} has {scores[args]}"
