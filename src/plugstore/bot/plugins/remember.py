"""remember: the bot remembers facts for everyone (``.remember meeting is tomorrow``)."""

from __future__ import annotations

from datetime import datetime, timezone

from ..plugin import CommandError, Context, Plugin, UsageError, command

#: ``.memories`` lists at most this many facts.
LIST_LIMIT = 50


def fact_key(text: str) -> str:
    """The key of a fact: case and spacing do not matter, a trailing ``?`` neither."""
    key = " ".join(text.strip().rstrip("?").split()).lower()
    if not key:
        raise UsageError("what should I remember?")
    return key


class Remember(Plugin):
    """Remember facts and recall them."""

    name = "remember"

    @command(usage="KEY is VALUE")
    def remember(self, ctx: Context, args: str) -> str:
        """Remember that KEY is VALUE (for everyone)."""
        subject, sep, value = args.partition(" is ")
        if not sep or not value.strip():
            raise UsageError("say what something is: .remember meeting is tomorrow")
        key = fact_key(subject)
        self.data[key] = {
            "value": value.strip(),
            "by": ctx.user,
            "at": datetime.now(timezone.utc),
        }
        return f"OK, {key} is {value.strip()}."

    @command(usage="KEY")
    def whatis(self, ctx: Context, args: str) -> str:
        """Say what KEY is (just the value, handy in scripts)."""
        key = fact_key(args)
        fact = self.data.get(key)
        if fact is None:
            raise CommandError(f"I don't know what {key} is (.remember {key} is ...)")
        return str(fact["value"])

    @command(usage="KEY")
    def forget(self, ctx: Context, args: str) -> str:
        """Forget what KEY is."""
        key = fact_key(args)
        try:
            del self.data[key]
        except KeyError:
            raise CommandError(f"I didn't know what {key} is anyway") from None
        return f"OK, I forgot {key}."

    @command()
    def memories(self, ctx: Context, args: str) -> str:
        """List what I remember."""
        if args:
            raise UsageError("takes no arguments")
        lines = []
        total = 0
        for key, fact in sorted(self.data.items()):
            total += 1
            if total <= LIST_LIMIT:
                lines.append(f"{key} is {fact['value']} (said by {fact['by']})")
        if not lines:
            return "I don't remember anything yet (.remember meeting is tomorrow)"
        if total > LIST_LIMIT:
            lines.append(f"... and {total - LIST_LIMIT} more")
        return "\n".join(lines)
