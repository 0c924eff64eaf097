"""A terminal that closes under the app: end it without waiting on the terminal.

When a terminal hangs up (its window closed, `tmux kill-session`, an SSH session dropped), the
kernel sends its foreground processes SIGHUP and SIGCONT together. Textual answers SIGCONT by
resuming its screen, as after Ctrl+Z: on a hung-up terminal that starts an output thread which
dies at its first write (EIO), and the app's exit then waits forever for that thread to take
its last writes. So the app ignores SIGCONT once its terminal is gone, and on SIGHUP points the
terminal's descriptors at /dev/null before it ends, so every last write returns at once."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def terminal_fd() -> int | None:
    """The descriptor Textual draws on (its driver writes to the process's original stderr)."""
    stream = sys.__stderr__
    if stream is None:
        return None
    try:
        return stream.fileno()
    except (OSError, ValueError):
        return None


def hung_up(fd: int) -> bool:
    """Whether `fd` was a terminal that is gone: a hung-up terminal answers no terminal
    request, so it is no longer a tty."""
    return not os.isatty(fd)


def ignore_resume_once_hung_up(fd: int) -> None:
    """Wrap the SIGCONT handler in place (Textual's, set when its driver starts) so that it
    runs only while `fd` is still a terminal."""
    previous = signal.getsignal(signal.SIGCONT)
    if not callable(previous):
        return

    def on_continue(signum: int, frame: FrameType | None) -> None:
        if not hung_up(fd):
            previous(signum, frame)

    signal.signal(signal.SIGCONT, on_continue)


def silence_if_hung_up(fds: tuple[int, ...]) -> None:
    """Point each of `fds` that was a terminal and is hung up at /dev/null. A SIGHUP sent by
    hand to an app whose terminal is still there leaves the terminal alone, so the app's exit
    restores it."""
    gone = [fd for fd in fds if _was_open(fd) and hung_up(fd)]
    if not gone:
        return
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in gone:
            os.dup2(null, fd)
    finally:
        os.close(null)


def _was_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
