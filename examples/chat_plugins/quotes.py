"""A chat plugin written the way docs/chat-plugins.md explains: quotes, and a quiz.

Run it with:  plugstore chat --plugins-dir examples/chat_plugins
"""

from __future__ import annotations

from plugstore.bot import CommandError, Context, Plugin, UsageError, command
from plugstore.store import Store
from plugstore.userdata import UserData

QUIZ = "ANSWERING"


def _mine(store: Store, user: str) -> dict[str, object]:
    """What the plugin keeps about ``user``: their score and the quiz they are in."""
    data = store.namespace("chat.quotes")
    return data.get_many([f"score:{user}", f"quiz:{user}"])


def export_user(store: Store, user: str) -> dict[str, object]:
    return _mine(store, user)


def forget_user(store: Store, user: str, dry_run: bool) -> dict[str, int]:
    mine = _mine(store, user)
    if not dry_run:
        data = store.namespace("chat.quotes")
        for key in mine:
            data.pop(key, None)
    return {"scores": int(f"score:{user}" in mine), "quizzes": int(f"quiz:{user}" in mine)}


class Quotes(Plugin):
    """Collects quotes and quizzes you on who said them."""

    name = "quotes"
    # Scores and quizzes are plain keys (score:ana), which .forgetme cannot recognise on
    # its own: this hook tells it (and `plugstore user export|forget -p DIR`) about them.
    user_data = UserData("quotes", export_user, forget_user)

    @command(usage="[AUTHOR: TEXT]")
    def quote(self, ctx: Context, args: str) -> str:
        """Add a quote; without arguments, show a random one."""
        if not args:
            return self._random()
        author, sep, text = args.partition(":")
        if not sep or not author.strip() or not text.strip():
            raise UsageError("write it as AUTHOR: TEXT")
        number = self.data.incr("count")  # atomic: two consoles never get the same number
        self.data[f"quote:{number}"] = {"author": author.strip(), "text": text.strip()}
        return f"quote #{number} saved"

    @command()
    def quiz(self, ctx: Context, args: str) -> str:
        """Guess who said a random quote (your next line is the answer)."""
        number, quote = self._pick()
        self.data[f"quiz:{ctx.user}"] = number
        ctx.set_state(QUIZ)  # the host now sends this user's plain lines to converse()
        return f'Who said: "{quote["text"]}"?'

    def converse(self, ctx: Context, text: str) -> str:
        """The answer to the quiz."""
        number = self.data.pop(f"quiz:{ctx.user}", None)
        ctx.set_state("START")  # the conversation is over whatever the answer
        if number is None:
            return "that quiz has expired; .quiz asks another"
        author = self.data[f"quote:{number}"]["author"]
        if text.strip().lower() == author.lower():
            self.data.incr(f"score:{ctx.user}")
            return f"Right, it was {author}!"
        return f"No, it was {author}."

    def _pick(self) -> tuple[int, dict[str, str]]:
        count = self.data.get("count", 0)
        if not count:
            raise CommandError("no quotes yet: .quote AUTHOR: TEXT")
        number = self.rng.randint(1, count)
        return number, self.data[f"quote:{number}"]

    def _random(self) -> str:
        number, quote = self._pick()
        return f'#{number} "{quote["text"]}" - {quote["author"]}'
