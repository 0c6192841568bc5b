"""karma: ``thing++`` and ``thing--`` anywhere in a line, ``.karma thing`` to see it."""

from __future__ import annotations

import re

from ..plugin import Context, Plugin, command, listen

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


class Karma(Plugin):
    """Give and take karma."""

    name = "karma"

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
            replies.append(f"{thing} has karma {self.data.incr(thing, delta)}")
        return replies

    @command(usage="[THING]")
    def karma(self, ctx: Context, args: str) -> str:
        """Show the karma of THING, or the top and bottom things."""
        if args:
            thing = thing_key(args)
            return f"{thing} has karma {self.data.get(thing, 0)}"
        scores = sorted(self.data.items(), key=lambda item: (-item[1], item[0]))
        if not scores:
            return "no karma yet: say thing++"
        top = ", ".join(f"{k} ({v})" for k, v in scores[:TOP])
        lines = [f"top: {top}"]
        if len(scores) > TOP:
            tail = scores[-TOP:] if len(scores) >= 2 * TOP else scores[TOP:]
            lines.append("bottom: " + ", ".join(f"{k} ({v})" for k, v in reversed(tail)))
        return "\n".join(lines)
