"""The `gputui` command line: thin typer commands that build objects and call the packages.

Each command group lives in its own module and registers itself on `app`.
"""

from __future__ import annotations

import sys

from gputui.cli.app import app


def main() -> None:
    """Console-script entry point."""
    from gputui.cli.blas import numpy_without_blas_threads

    numpy_without_blas_threads()
    # Importing a command module registers its commands on `app`: only the one this command
    # line runs is imported (registry.py), so `gputui report` pays for no other command.
    from gputui.cli.registry import register_for

    register_for(sys.argv[1:])
    app()


__all__ = ["app", "main"]
