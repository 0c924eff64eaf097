"""The typer application object that command modules register on.

It knows none of them: each command module imports this one, so what bare `gputui` runs, and
the help that says so, is registered by its own module (tui_cmd.py), not named here."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="gputui",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help, as click writes it. Rich markup would read `[journal]` in a help text as a
    # style tag and drop it, and rich panels cut lines into narrow boxes and label each flag
    # `<bool>`. Sub-apps inherit this from the app they are added to.
    rich_markup_mode=None,
)
