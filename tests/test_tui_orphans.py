"""The monitor's start tells of interrupted actions' commands: in the event log, with a toast
while one still runs, and never stops them itself."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gputui.cli.tui_cmd import Wiring
from gputui.config import Config, HostGroup, HostSpec
from gputui.core.model import Level
from gputui.ops.journal import Journal
from gputui.ops.orphans import orphan_events, process_group_of
from gputui.tui.app import GpuTuiApp
from gputui.tui.session import MonitorSession
from tests.fake_fleet import FakeMonitor, factory, small_fleet
from tests.test_tui_app import until

pytestmark = [
    pytest.mark.usefixtures("utc"),
    pytest.mark.skipif(
        not Path("/proc/self/stat").exists(), reason="the identity check reads Linux's /proc"
    ),
]


@pytest.fixture
def left_running(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A journal whose `slow` action was cut short while its `sleep` runs on: (path, pgid)."""
    path = tmp_path / "journal.sqlite3"
    sleep = subprocess.Popen(["sleep", "30"], start_new_session=True)
    with Journal.open(path) as j:
        run = j.begin_run("r", "slow", "gpu005", 0, ["sleep", "30"], "local")
        j.record_process_group(run, process_group_of(sleep.pid))
    raw = sqlite3.connect(path)
    with raw:  # its writer: a pid above any pid_max, so a gputui that is gone
        raw.execute("UPDATE action_runs SET pid = ? WHERE id = ?", (2**22 + 1, run.id))
    raw.close()
    yield path, sleep.pid
    os.killpg(sleep.pid, signal.SIGKILL)
    sleep.wait(timeout=10)


async def test_the_event_log_says_an_interrupted_command_still_runs(
    left_running: tuple[Path, int],
) -> None:
    path, pgid = left_running
    journal = Journal.open(path)
    monitor = FakeMonitor(small_fleet())
    session = MonitorSession(factory(monitor))
    app = GpuTuiApp(
        session, notices=lambda: orphan_events(journal.check_interrupted(), time.time())
    )
    app.animation_level = "none"
    async with app.run_test(size=(120, 36)) as pilot:
        monitor.push(monitor.fleet.advance(1))
        await until(pilot, lambda: app.ticks > 0)
        lines = app.fleet_screen.event_log.lines()
        (line,) = [ln for ln in lines if "interrupted" in ln]
        assert "gpu005" in line and "`sleep 30` (action slow on gpu005, interrupted)" in line
        assert f"still running as process group {pgid}" in line
        assert f"stop it with `kill -TERM -- -{pgid}`" in line
        (toast,) = [n for n in app._notifications if "interrupted" in n.message]
        assert toast.severity == "warning" and f"kill -TERM -- -{pgid}" in toast.message
        monitor.push(monitor.fleet.advance(1))  # told once, at the start
        await until(pilot, lambda: app.ticks > 1)
        assert sum("interrupted" in ln for ln in app.fleet_screen.event_log.lines()) == 1
    await session.close()
    journal.close()
    os.killpg(pgid, 0)  # still there: the app told, and left it alone


async def test_the_monitor_wiring_checks_the_journal_it_opens(
    left_running: tuple[Path, int],
) -> None:
    path, pgid = left_running
    fleet = small_fleet()
    names = tuple(fleet.scripts)
    config = Config(
        path=Path("test"),
        hosts=[HostSpec(name=n, group="all") for n in names],
        groups={"all": HostGroup(name="all", hosts=names)},
    )
    wiring = Wiring(path, use_journal=True)
    async with wiring.attach(FakeMonitor(fleet), config):  # type: ignore[arg-type]
        (notice,) = wiring.notices()
        assert notice.host == "gpu005" and notice.kind == "interrupted"
        assert notice.level == Level.WARN and f"process group {pgid}" in notice.text
        assert wiring.notices() == []  # handed over once
    with Journal.open(path) as j:
        assert [r.group_state for r in j.runs()] == ["running"]
