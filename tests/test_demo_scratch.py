"""The demo's private scratch (keys, journal, logs): gone after SIGTERM or a closed terminal,
and swept up at the next start when a killed run left it behind."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gputui.collect.scratch import DEMO_PREFIX, PID_FILE, make_scratch, remove_stale
from tests.conftest import need_program
from tests.test_tui_tmux import Tmux, alive, descendants

START_S = 60.0


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(need_program("tmux"), tmp_path / "tmux.sock")
    yield t
    subprocess.run([t.binary, "-S", str(t.socket), "kill-server"], capture_output=True, check=False)


def scratch_dirs(tmp: Path) -> list[Path]:
    return sorted(p for p in tmp.iterdir() if p.name.startswith(DEMO_PREFIX))


def wait_until(done: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} after {timeout:g} s")
        time.sleep(0.1)


def start_demo(tmux: Tmux, tmp: Path) -> tuple[int, set[int]]:
    """`gputui demo` in tmux with its own temporary directory: its pid and its processes."""
    gputui = f"{shlex.quote(sys.executable)} -c 'from gputui.cli import main; main()'"
    # `exec`: the app is the pane's process, as when a terminal runs it.
    tmux(
        "new-session", "-d", "-s", tmux.session, "-x", "100", "-y", "30",
        f"cd {shlex.quote(os.getcwd())} && TMPDIR={shlex.quote(str(tmp))} exec {gputui} demo "
        "--hosts 2",
    )  # fmt: skip
    pid = int(tmux("display-message", "-p", "-t", tmux.session, "#{pane_pid}"))
    tmux.wait_for(lambda s: "sim-002" in s and "connecting" not in s, START_S, "two hosts")
    dirs = scratch_dirs(tmp)
    assert len(dirs) == 2, dirs  # the fleet's keys and the journal
    for d in dirs:
        assert d.stat().st_mode & 0o777 == 0o700
    return pid, descendants(pid)


@pytest.mark.system
@pytest.mark.parametrize("how", ["SIGTERM", "terminal closed"])
def test_the_demo_leaves_nothing_behind(tmux: Tmux, tmp_path: Path, how: str) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    pid, children = start_demo(tmux, scratch)
    assert children, "the demo's SSH servers and agents run below the app"
    if how == "SIGTERM":
        os.kill(pid, signal.SIGTERM)
    else:
        tmux("kill-session", "-t", tmux.session)  # the terminal hangs up: SIGHUP
    wait_until(lambda: not alive(pid), 30, "the app still runs")
    wait_until(lambda: not any(alive(c) for c in children), 15, "a demo process still runs")
    assert scratch_dirs(scratch) == []


def test_stale_scratch_of_dead_runs_is_removed_live_and_others_kept(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    def marked(name: str, pid: int) -> Path:
        path = tmp_path / f"{DEMO_PREFIX}{name}"
        path.mkdir(mode=0o700)
        (path / "client_key").write_text("secret\n")
        (path / PID_FILE).write_text(f"{pid}\n")
        return path

    gone = marked("dead", dead.pid)
    live = marked("live", os.getpid())
    fresh = tmp_path / f"{DEMO_PREFIX}being-made"  # no pid file yet
    fresh.mkdir()
    old_unmarked = tmp_path / f"{DEMO_PREFIX}old"  # left by a gputui that wrote no pid
    old_unmarked.mkdir()
    os.utime(old_unmarked, (time.time() - 86400, time.time() - 86400))
    other = tmp_path / "unrelated-dead"
    other.mkdir()
    (other / PID_FILE).write_text(f"{dead.pid}\n")
    theirs = marked("another-user", dead.pid)
    if os.getuid() == 0:
        os.chown(theirs, 65534, 65534)

    removed = remove_stale(parent=tmp_path)

    assert set(removed) == {gone, old_unmarked} | (set() if os.getuid() == 0 else {theirs})
    assert not gone.exists() and not old_unmarked.exists()
    assert live.exists() and fresh.exists() and other.exists()
    if os.getuid() == 0:
        assert theirs.exists()


def test_scratch_is_private_and_marked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    path = make_scratch()
    assert path.parent == tmp_path and path.name.startswith(DEMO_PREFIX)
    assert path.stat().st_mode & 0o777 == 0o700
    assert (path / PID_FILE).read_text().strip() == str(os.getpid())
    assert remove_stale(parent=tmp_path) == [] and path.exists()


async def test_a_demo_fleet_sweeps_up_what_a_killed_run_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gputui.collect.demo import DemoFleet

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()
    left = tmp_path / f"{DEMO_PREFIX}killed"
    left.mkdir(mode=0o700)
    (left / "client_key").write_text("secret\n")
    (left / PID_FILE).write_text(f"{killed.pid}\n")
    async with DemoFleet(1) as fleet:
        assert not left.exists()
        assert fleet.directory is not None and scratch_dirs(tmp_path) == [fleet.directory]
    assert scratch_dirs(tmp_path) == []
