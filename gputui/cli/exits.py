"""Exit statuses for mistakes of the user, and the command class of the monitoring commands.

Most commands exit 2 for a bad argument or a bad hosts.toml, as click does for usage errors.
`gputui report` and `gputui triage` speak the monitoring-plugin convention instead (0 OK,
1 WARNING, 2 CRITICAL, 3 UNKNOWN), where 2 means a critical fleet: Nagios, Icinga and Sensu
would page for a typo. There a command that could not judge the fleet exits 3, UNKNOWN, as
monitoring plugins do, whether click rejected the command line or gputui rejected the file.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperCommand

EXIT_USAGE = 2  # a bad argument or configuration (click's own usage errors exit 2 too)
EXIT_UNKNOWN = 3  # the same mistakes in a monitoring command: the fleet's state is unknown
# The live monitor cannot start here: nothing to watch (no hosts file, no GPU on this machine),
# or no terminal to draw on. Not a usage error: the command line was right, the place is not.
EXIT_CANNOT_WATCH = 3

# Click's UsageError (an unknown option, a bad value, a missing argument), from whichever click
# this typer parses with: click itself, or the copy typer carries from 0.2x on. Every typer
# exports BadParameter, a UsageError.
_USAGE_ERROR: type[Exception] = typer.BadParameter.__mro__[1]
assert _USAGE_ERROR.__name__ == "UsageError"


class UsageExit(typer.Exit):
    """The exit after a mistake of the user's, already explained on stderr.

    A distinct type so that a monitoring command can tell it from the exit that carries the
    fleet's status (which may be 2 as well)."""


class PluginCommand(TyperCommand):
    """A command whose exit status a monitoring system reads: every mistake exits 3.

    Register with `@app.command(cls=PluginCommand)`. Click's usage errors (an unknown option, a
    value of the wrong type, a missing argument) become one line on stderr, not click's boxed
    usage text: a monitoring system shows the first line of a plugin's output.
    """

    # The context is click's, of the same two origins as _USAGE_ERROR: typed Any to fit both.
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except _USAGE_ERROR as exc:
            message = " ".join(str(exc.format_message()).split())  # type: ignore[attr-defined]
            typer.echo(f"gputui: {message} (try '{ctx.command_path} --help')", err=True)
            raise typer.Exit(EXIT_UNKNOWN) from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UsageExit:
            raise typer.Exit(EXIT_UNKNOWN) from None
