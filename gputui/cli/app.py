"""The typer application object that command modules register on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="gputui",
    help="Terminal fleet monitor for NVIDIA GPU hosts.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback(invoke_without_command=True)
def _default(ctx: typer.Context) -> None:
    """Terminal fleet monitor for NVIDIA GPU hosts. With no command: `gputui monitor`."""
    if ctx.invoked_subcommand is None:
        from gputui.cli.tui_cmd import monitor

        monitor()
