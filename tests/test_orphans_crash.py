"""kill -9 of gputui while an action's command runs: the command lives on in its own session,
the journal holds its process group, and the next gputui says whether it still runs.

The process killed is the real `gputui node fail`; the command is a real `sleep`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gputui.ops.journal import Journal
from gputui.ops.records import ActionRun

GPUTUI = [sys.executable, "-c", "from gputui.cli import main; main()"]

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="the identity check reads Linux's /proc"
)


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def only_run(path: Path) -> ActionRun:
    with Journal.open(path) as j:
        (run,) = j.runs()
        return run


def journal_cmd(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GPUTUI, "journal", "--journal", str(path), *args],
        capture_output=True,
        text=True,
        check=True,
    )


def ended(pid: int) -> bool:
    """Gone, or a zombie that nobody has reaped yet (it runs no more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def test_kill_9_leaves_the_command_running_and_the_next_start_says_so(tmp_path: Path) -> None:
    pidfile = tmp_path / "command.pid"
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(
        textwrap.dedent(
            f"""
            hosts = ["gpu001"]
            [actions.slow]
            argv = ["sh", "-c", "echo $$ > {pidfile}; exec sleep 30"]
            confirm = false
            """
        )
    )
    path = tmp_path / "journal.sqlite3"
    gputui = subprocess.Popen(
        [*GPUTUI, "node", "fail", "gpu001", "--reason", "XID 79", "--action", "slow",
         "--hosts", str(hosts), "--journal", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    pid = 0
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
        pid = int(pidfile.read_text())
        wait_for(lambda: only_run(path).group is not None)
        os.kill(gputui.pid, signal.SIGKILL)
        gputui.wait(timeout=10)

        # (a) The journal holds the command's process group: its pid, as it leads its session.
        run = only_run(path)
        assert run.status == "interrupted" and run.group is not None
        assert run.group.pgid == pid and os.getpgid(pid) == pid
        assert not ended(pid)  # gputui's death did not end it

        # (b) The next start finds it running, records that, and says how to stop it.
        shown = journal_cmd(path)
        assert f"interrupted; its process group {pid} is still running" in shown.stdout
        assert f"is still running as process group {pid}" in shown.stderr
        assert f"`kill -TERM -- -{pid}`" in shown.stderr
        assert only_run(path).group_state == "running"
        (action,) = [e for e in json.loads(journal_cmd(path, "--format", "json").stdout)
                     if e["type"] == "action"]  # fmt: skip
        assert action["pgid"] == pid and action["process_group"] == "running"
        assert action["stop_with"] == f"kill -TERM -- -{pid}"
        assert not ended(pid)  # told, not killed

        # (c) Once the group is killed, the next start finds it gone, and says so once.
        os.killpg(pid, signal.SIGKILL)
        wait_for(lambda: ended(pid))
        shown = journal_cmd(path)
        assert f"interrupted; its process group {pid} is gone" in shown.stdout
        assert f"has ended: its process group {pid} is gone" in shown.stderr
        assert only_run(path).group_state == "gone"
        again = journal_cmd(path)
        assert f"its process group {pid} is gone" in again.stdout and again.stderr == ""
    finally:
        gputui.kill()
        gputui.wait(timeout=10)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
