"""A terminal that hangs up under the app (tui/hangup.py): Textual's resume on SIGCONT is
skipped once the terminal is gone, and the terminal's descriptors are pointed at /dev/null so
the app's last writes return; a terminal still there is left alone."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from gputui.tui.hangup import hung_up, ignore_resume_once_hung_up, silence_if_hung_up


@pytest.fixture
def terminal() -> Iterator[tuple[int, int]]:
    """A pseudo-terminal: (master, slave), the slave as the app's terminal."""
    master, slave = os.openpty()
    yield master, slave
    for fd in (master, slave):
        with contextlib.suppress(OSError):  # closed by the test
            os.close(fd)


@pytest.fixture
def sigcont() -> Iterator[list[int]]:
    """SIGCONT handled by a stand-in for Textual's resume, which records each call."""
    resumed: list[int] = []

    def resume(signum: int, frame: FrameType | None) -> None:
        resumed.append(signum)

    before = signal.signal(signal.SIGCONT, resume)
    yield resumed
    signal.signal(signal.SIGCONT, before)


def test_a_terminal_is_hung_up_once_its_other_end_closes(terminal: tuple[int, int]) -> None:
    master, slave = terminal
    assert not hung_up(slave)
    os.close(master)
    assert hung_up(slave)


def test_resume_runs_while_the_terminal_is_there_and_not_after(
    terminal: tuple[int, int], sigcont: list[int]
) -> None:
    master, slave = terminal
    ignore_resume_once_hung_up(slave)
    os.kill(os.getpid(), signal.SIGCONT)
    assert sigcont == [signal.SIGCONT]
    os.close(master)
    os.kill(os.getpid(), signal.SIGCONT)
    assert sigcont == [signal.SIGCONT]


def test_a_hung_up_terminal_takes_writes_again(terminal: tuple[int, int]) -> None:
    master, slave = terminal
    os.close(master)
    with pytest.raises(OSError):
        os.write(slave, b"\x1b[?1049l")  # EIO: what killed the output thread
    silence_if_hung_up((slave,))
    assert os.write(slave, b"\x1b[?1049l") == 8


def test_a_terminal_still_there_is_left_alone(terminal: tuple[int, int]) -> None:
    master, slave = terminal
    silence_if_hung_up((slave,))
    assert os.isatty(slave)
    os.write(slave, b"still here")
    assert os.read(master, 100) == b"still here"
