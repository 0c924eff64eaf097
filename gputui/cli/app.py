"""The typer application object that command modules register on.

It knows none of them: each command module imports this one, so what bare `gputui` runs is
registered by its own module (tui_cmd.py), not named here."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="gputui",
    help="Terminal fleet monitor for NVIDIA GPU hosts.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
