"""The `gputui` command line: thin typer commands that build objects and call the packages.

Each command group lives in its own module and registers itself on `app`.
"""

from __future__ import annotations

from gputui.cli.app import app


def main() -> None:
    """Console-script entry point."""
    # Importing the command modules registers their commands on `app`.
    from gputui.cli import commands  # noqa: F401

    app()


__all__ = ["app", "main"]
