"""karma: ``thing++`` and ``thing--`` anywhere in a line, ``.karma thing`` to see it.

Karma is kept per channel: one counter per thing in the scope ``channel=<name>`` of the
plugin's namespace.  Data version 1 (before channels) held one plain key per thing; the
version 2 migration moves those into the default channel.
"""

from __future__ import annotations

import re
from typing import ClassVar

from plugstore.scopekeys import SCOPE_LEAD
from plugstore.versioning import Migration

from ..plugin import DEFAULT_CHANNEL, Context, Plugin, command, listen

#: ``.karma`` without arguments lists this many things.
TOP = 5

# thing++ / thing-- as a word starting with a letter or digit, or (several words)++,
# before a space, the end or closing punctuation ("thanks alice++!"); not "<--", "x++y".
_KARMA = r"(?:\(([^()]+)\)|(?<!\S)(\w[^\s()]*?))(\+\+|--)(?=[.,;:!?]*(?:\s|\Z))"


def thing_key(text: str) -> str:
    """The key of a thing: case, spacing and surrounding parentheses do not matter."""
    text = text.strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    return " ".join(text.split()).lower()


def channels_from_plain(m: Migration) -> None:
    """Version 2: the karma of version 1 (plain keys) belongs to the default channel.

    Each thing is copied, then deleted: run again after a crash, it finds the things
    already moved gone and copies the rest."""
    general = m.namespace.scope(channel=DEFAULT_CHANNEL)
    for key, value in m.items():
        if not key.startswith(SCOPE_LEAD):
            general[key] = value
            del m.namespace[key]


class Karma(Plugin):
    """Give and take karma."""

    name = "karma"
    data_version = 2
    data_migrations: ClassVar = {2: channels_from_plain}

    @listen(_KARMA, synopsis="thing++, thing--, (two words)++")
    def vote(self, ctx: Context, matches: list[re.Match[str]]) -> list[str]:
        """Give or take a point of karma (not to yourself; once a line per thing)."""
        replies = []
        seen: set[str] = set()
        for match in matches:
            thing = thing_key(match.group(1) or match.group(2))
            if not thing or thing in seen:
                continue
            seen.add(thing)
            if thing == thing_key(ctx.user):
                replies.append(f"nice try, {ctx.user}: no karma for yourself")
                continue
            delta = 1 if match.group(3) == "++" else -1
            score = self.data.scope(channel=ctx.channel).incr(thing, delta)
            replies.append(f"{thing} has karma {score}")
        return replies

    @command(usage="[THING]")
    def karma(self, ctx: Context, args: str) -> str:
        """Show the karma of THING in this channel, or its top and bottom things."""
        here = self.data.scope(channel=ctx.channel)
        if args:
            thing = thing_key(args)
            return f"{thing} has karma {here.get(thing, 0)}"
        scores = sorted(here.items(), key=lambda item: (-item[1], item[0]))
        if not scores:
            return "no karma here yet: say thing++"
        top = ", ".join(f"{k} ({v})" for k, v in scores[:TOP])
        lines = [f"top: {top}"]
        if len(scores) > TOP:
            tail = scores[-TOP:] if len(scores) >= 2 * TOP else scores[TOP:]
            lines.append("bottom: " + ", ".join(f"{k} ({v})" for k, v in reversed(tail)))
        return "\n".join(lines)
