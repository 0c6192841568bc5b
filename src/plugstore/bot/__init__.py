"""The plugstore chat host: plugins with persistent commands, on any store.

Write a plugin as a small class (see :mod:`plugstore.bot.plugin` and docs/chat-plugins.md)::

    from plugstore.bot import Context, Plugin, command

    class Hello(Plugin):
        \"\"\"Counts greetings.\"\"\"

        @command(usage="[NAME]")
        def hello(self, ctx: Context, args: str) -> str:
            \"\"\"Say hello.\"\"\"
            count = self.data.incr(ctx.user)
            return f"hello {args or ctx.user}, greeting number {count}"

and run it with ``plugstore chat --plugins-dir DIR`` or register it under the
``plugstore.bot_plugins`` entry point.
"""

from .host import ChatHost, Reply
from .loader import builtin_plugins, directory_plugins, entry_point_plugins
from .plugin import CommandError, Context, Plugin, UsageError, command, listen

__all__ = [
    "ChatHost",
    "CommandError",
    "Context",
    "Plugin",
    "Reply",
    "UsageError",
    "builtin_plugins",
    "command",
    "directory_plugins",
    "entry_point_plugins",
    "listen",
]
