"""The live monitor draws a full screen and reads keys: it starts only on a terminal.

Redirected (`gputui demo > file`, a cron job, a pipe), it would fill the file with escape codes
and run until killed, since nothing could press `q`. It says so in one line instead and exits
EXIT_CANNOT_WATCH; `gputui report` is the command for files and scripts.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from gputui.cli.common import fail
from gputui.cli.exits import EXIT_CANNOT_WATCH

#: Set when another Textual driver draws the app: textual-serve's, which runs the app with its
#: output on a pipe to the browser's websocket, or a headless one.
TEXTUAL_DRIVER_ENV = "TEXTUAL_DRIVER"


def _is_terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except ValueError:  # a closed stream
        return False


def need_terminal(command: str, instead: str = "gputui report") -> None:
    """Exit with one line unless stdin and stdout are a terminal (or another driver draws);
    the line names `instead`, the command that prints what a file or a script can use."""
    if os.environ.get(TEXTUAL_DRIVER_ENV):
        return
    missing = [
        name
        for name, stream in (("output", sys.stdout), ("input", sys.stdin))
        if not _is_terminal(stream)
    ]
    if missing:
        raise fail(
            f"{command} draws a live screen and needs a terminal, and its "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not one; "
            f"for a file or a script, `{instead}` prints one snapshot",
            EXIT_CANNOT_WATCH,
        )
