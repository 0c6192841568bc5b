"""help: every command and listener, with a one-line description."""

from __future__ import annotations

from ..plugin import CommandError, Context, Plugin, command

#: Synopses longer than this put their description on the next line.
WIDE = 32


class Help(Plugin):
    """Lists what the bot understands."""

    name = "help"

    @command(usage="[COMMAND]")
    def help(self, ctx: Context, args: str) -> str:
        """List every command, or show how to use one."""
        commands = self.host.commands
        if args:
            name = args.strip().lstrip(".").lower()
            spec = commands.get(name)
            if spec is None:
                raise CommandError(f"there is no command .{name} (.help lists them)")
            return f"{spec.synopsis}\n  {spec.description} (plugin {spec.plugin.name})"
        rows = [(spec.synopsis, spec.description) for _, spec in sorted(commands.items())]
        rows += [(lst.synopsis, lst.description) for lst in self.host.listeners]
        rows.append((".quit, .exit", "Leave the console (plugstore chat)."))
        width = min(max(len(left) for left, _ in rows), WIDE)
        lines = []
        for left, right in rows:
            if len(left) > width:  # a long synopsis gets the description on its own line
                lines += [left, f"{'':<{width}}  {right}"]
            else:
                lines.append(f"{left:<{width}}  {right}")
        return "\n".join(lines)
