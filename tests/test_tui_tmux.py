"""The real `gputui demo` in a real terminal (tmux), read back as a person would read it.

Starts 8 simulated hosts behind local SSH servers, waits for them to appear, presses keys,
reads the screen with capture-pane, then quits with `q` and checks that the app exited and
that none of its processes (the demo's SSH servers, the agents) outlived it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import need_program

pytestmark = pytest.mark.system

COLS, ROWS = 100, 30


class Tmux:
    def __init__(self, binary: str, socket: Path) -> None:
        self.binary = binary
        self.socket = socket
        self.session = "gputui"

    def __call__(self, *args: str) -> str:
        out = subprocess.run(
            [self.binary, "-S", str(self.socket), *args],
            check=True, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        return out.stdout

    def screen(self, colours: bool = False) -> str:
        return self("capture-pane", "-p", *(["-e"] if colours else []), "-t", self.session)

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", self.session, *keys)

    def escape(self) -> None:
        """A lone Escape: a key that follows it too soon makes the pair read as Alt+key."""
        self.keys("Escape")
        time.sleep(0.5)

    def wait_for(self, ready: Callable[[str], bool], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if ready(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not on screen after {timeout:g} s:\n{screen}")
            time.sleep(0.1)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(need_program("tmux"), tmp_path / "tmux.sock")
    yield t
    subprocess.run([t.binary, "-S", str(t.socket), "kill-server"], capture_output=True, check=False)


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_demo_shows_the_fleet_answers_keys_and_quits_leaving_nothing_running(tmux: Tmux) -> None:
    gputui = f"{shlex.quote(sys.executable)} -c 'from gputui.cli import main; main()'"
    started = time.monotonic()
    tmux(
        "new-session", "-d", "-s", tmux.session, "-x", str(COLS), "-y", str(ROWS),
        f"cd {shlex.quote(os.getcwd())} && {gputui} demo --hosts 8; echo GPUTUI_EXIT=$?; sleep 60",
    )  # fmt: skip
    pane_pid = int(tmux("display-message", "-p", "-t", tmux.session, "#{pane_pid}"))

    # The fleet: a header and eight hosts, each with a state and its figures.
    screen = tmux.wait_for(
        lambda s: len(re.findall(r"^ sim-00\d +(ok|warn|critical|failed|unknown) ", s, re.M)) == 8,
        30, "eight streaming hosts",
    )  # fmt: skip
    shown_after = time.monotonic() - started
    assert "HOST" in screen and "STATE" in screen and "8 hosts 64 GPUs" in screen
    assert re.search(r"^ sim-001 +\w+ +8 +\d+/\d+ +\d+C", screen, re.M), screen
    assert "q Quit" in screen and "? Help" in screen
    # The demo's last two hosts are its spares, idle, and say so.
    for spare in ("sim-007", "sim-008"):
        assert re.search(rf"^ {spare} +ok +8 +0/0 .* spare *$", screen, re.M), screen
    # State words are coloured (a 256-colour or truecolour foreground right before them).
    assert re.search(r"\x1b\[38;[25];[\d;]+m ?ok", tmux.screen(colours=True))

    tmux.keys("2")
    tmux.wait_for(lambda s: "8 hosts, 64 GPUs  colour: verdict" in s, 15, "the GPU grid")
    tmux.keys("m")
    tmux.wait_for(lambda s: "colour: util" in s, 15, "the grid coloured by utilisation")
    tmux.keys("4")
    tmux.wait_for(lambda s: "connecting -> streaming" in s, 15, "the event log")
    tmux.keys("1")
    tmux.wait_for(lambda s: "sorted by state" in s, 15, "the fleet table again")
    tmux.keys("Enter")
    screen = tmux.wait_for(lambda s: "GPU0 " in s and "Back" in s, 15, "the host screen")
    assert re.search(r"util +\d+%", screen) and "seen now" in screen
    assert "[ ] Prev/next" in screen and "^p palette" in screen  # the whole key bar
    tmux.escape()
    tmux.wait_for(lambda s: "sorted by state" in s, 15, "the fleet table after the host")
    tmux.keys("?")
    tmux.wait_for(lambda s: "Everywhere" in s and "Mark failed" in s, 15, "the help screen")
    tmux.escape()
    tmux.wait_for(
        lambda s: "Everywhere" not in s and "sorted by state" in s, 15, "the help screen closed"
    )
    tmux.keys("/")
    tmux.keys(*"sim-003")
    screen = tmux.wait_for(lambda s: "1 of 8 hosts" in s, 15, "the filtered table")
    assert "sim-003" in screen and "sim-004" not in screen

    tmux.escape()
    tmux.wait_for(lambda s: "\n 8 hosts, sorted by state" in s, 15, "the filter cleared")
    processes = descendants(pane_pid)
    assert len(processes) >= 10, "expected gputui, the demo servers and eight agents"
    tmux.keys("q")
    tmux.wait_for(lambda s: "GPUTUI_EXIT=0" in s, 20, "a clean exit")
    deadline = time.monotonic() + 5
    while (left := {p for p in processes if alive(p)} - descendants(pane_pid)) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    left = {p for p in processes if alive(p)} - {pane_pid} - descendants(pane_pid)
    assert not left, f"processes left behind: {left}"
    assert shown_after < 20, f"the fleet took {shown_after:.1f} s to appear"
