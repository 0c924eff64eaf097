"""Killing a GPU process from the per-GPU view's process table, in the app (Pilot).

The host `localhost` lists a real `sleep` on its GPU 0; `k` on its row asks first, naming the
process, its user and its host, and `y` ends it through the operator's journaled kill
(gputui/ops/kill.py). Read-only and a session without a journal refuse in one line. While the
view is shown, and only then, the monitor is asked for its hosts' processes every second.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gputui.config.local import local_config
from gputui.ops.actions import READONLY_REFUSAL, OperatorActions
from gputui.ops.journal import Journal
from gputui.ops.kill import KILL_ACTION
from gputui.tui.app import GpuTuiApp
from gputui.tui.ops_operator import OpsOperator
from gputui.tui.palette import Palette
from gputui.tui.processview import process_rows
from gputui.tui.screens.dialogs import PreviewDialog
from gputui.tui.screens.gpus import GpusData, GpusScreen
from gputui.tui.screens.host import HostScreen
from gputui.tui.session import MonitorSession
from tests.fake_fleet import FakeMonitor, HostScript, factory
from tests.test_tui_gpus import ProcFleet, Running, proc, until

pytestmark = pytest.mark.usefixtures("utc")


def me() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(["sleep", "300"])
    yield child
    if child.poll() is None:
        child.kill()
    child.wait()


def fleet_running(pid: int) -> ProcFleet:
    """localhost with `pid` on GPU 0 (no start time: the host script then checks the pid
    alone) and a made-up process on GPU 1."""
    listed = {
        0: [proc(pid, me(), 1.0, cmdline="sleep 300", cpu_pct=0.0)],
        1: [proc(999_999, "bob", 2.0, cmdline="python3 eval.py")],
    }
    return ProcFleet([HostScript("localhost", gpus=2)], {"localhost": listed})


@contextlib.asynccontextmanager
async def running(
    fleet: ProcFleet, tmp_path: Path, *, journal: bool = True, **config: Any
) -> AsyncIterator[tuple[Running, Journal]]:
    monitor = FakeMonitor(fleet)
    session = MonitorSession(factory(monitor))
    with Journal.open(tmp_path / "journal.sqlite3") as j:
        ops = OperatorActions(
            msgspec.structs.replace(local_config("sim"), **config),
            j,
            monitor=monitor,  # type: ignore[arg-type]  # the app's fake, as the live monitor
        )
        app = GpuTuiApp(session, operator=OpsOperator(lambda: ops) if journal else None)
        app.animation_level = "none"
        async with app.run_test(size=(120, 40)) as pilot:
            r = Running(pilot, app, monitor, fleet)
            await r.tick(10)  # tick 10 carries the slow signals: the processes
            yield r, j
        await session.close()
        await ops.aclose()


async def select(r: Running, pid: int) -> None:
    """Put the process table's cursor on `pid`'s row."""
    table = r.view.processes.table
    table.focus()
    for _ in range(len(table.keys)):
        row = r.view.processes.selected()
        if row is not None and row.process.pid == pid:
            return
        await r.press("down")
    raise AssertionError(f"pid {pid} is not in the table")


def messages(r: Running) -> list[str]:
    return [n.message for n in r.app._notifications]


async def test_k_asks_naming_the_process_its_user_and_host_then_kills_it(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    async with running(fleet_running(sleeper.pid), tmp_path) as (r, journal):
        await select(r, sleeper.pid)
        await r.press("k")
        await until(r.pilot, lambda: isinstance(r.app.screen, PreviewDialog))
        dialog = r.app.screen
        assert isinstance(dialog, PreviewDialog)
        assert (
            dialog.question == f"Kill pid {sleeper.pid} (sleep 300) of {me()} on localhost (GPU0)?"
        )
        preview = "\n".join(dialog.prepared.preview)
        assert (
            "SIGTERM to pid" in preview and "SIGKILL if it is still running 10 s later" in preview
        )
        await r.press("n")  # no: nothing sent, nothing journaled
        assert not isinstance(r.app.screen, PreviewDialog)
        assert sleeper.poll() is None and journal.runs() == []

        await r.press("k")
        await until(r.pilot, lambda: isinstance(r.app.screen, PreviewDialog))
        await r.press("y")
        await until(r.pilot, lambda: any("ended (journaled)" in m for m in messages(r)), 15)
        assert sleeper.wait(timeout=5) == -signal.SIGTERM
        [run] = journal.runs()
        assert (run.action, run.node, run.exit_code) == (KILL_ACTION, "localhost", 0)
        logged = [e.text for e in r.app._host_events["localhost"]]
        assert any(f"SIGTERM sent to pid {sleeper.pid}" in t for t in logged)


async def test_read_only_refuses_in_one_line_with_nothing_asked(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    async with running(fleet_running(sleeper.pid), tmp_path, readonly=True) as (r, journal):
        await select(r, sleeper.pid)
        await r.press("k")
        await until(r.pilot, lambda: READONLY_REFUSAL in messages(r))
        assert not isinstance(r.app.screen, PreviewDialog)
        assert sleeper.poll() is None and journal.runs() == []


async def test_without_a_journal_nothing_is_killed(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    async with running(fleet_running(sleeper.pid), tmp_path, journal=False) as (r, _):
        await select(r, sleeper.pid)
        await r.press("k")
        await until(r.pilot, lambda: any("no journal is open" in m for m in messages(r)))
        assert sleeper.poll() is None


async def test_the_view_asks_for_its_hosts_processes_only_while_shown(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    async with running(fleet_running(sleeper.pid), tmp_path) as (r, _):
        monitor = r.monitor
        assert monitor.watched[-1] == ("localhost",)  # the small fleet opened on the view
        calls = len(monitor.watched)
        await r.tick(2)
        assert len(monitor.watched) == calls  # asked once, not at every tick
        await select(r, sleeper.pid)
        await r.press("k")  # the confirmation over the view keeps the processes coming
        await until(r.pilot, lambda: isinstance(r.app.screen, PreviewDialog))
        assert monitor.watched[-1] == ("localhost",)
        await r.press("n")
        await r.press("d")  # the host screen: the view is no longer shown
        await until(r.pilot, lambda: isinstance(r.app.screen, HostScreen))
        await until(r.pilot, lambda: monitor.watched[-1] == ())
        await r.press("g")  # back on the view
        await until(r.pilot, lambda: monitor.watched[-1] == ("localhost",))
        await r.press("escape")  # the fleet screen
        await until(r.pilot, lambda: monitor.watched[-1] == ())


def test_the_list_says_how_fresh_it_is_and_run_times_move_each_second() -> None:
    """Lists refreshed each second arrive in fast samples; the slow sample that holds them
    keeps its own time (gputui/collect/watch.py): freshness and run time must not read it."""
    snap = FakeMonitor(fleet_running(4242)).fleet.advance(10).hosts[0]
    assert snap.slow_sample is not None and snap.sample is not None and snap.sample_t is not None
    now = snap.sample_t
    later = msgspec.structs.replace(snap.sample, t=snap.slow_sample.t + 8.0)
    listed = msgspec.structs.replace(snap, slow_sample_t=now - 8.0, processes_t=now, sample=later)
    data = GpusData(hosts=[listed], gpus=[], now=now, palette=Palette.from_theme(None))
    assert GpusScreen._process_note(data) == "listed now"
    stale = msgspec.structs.replace(listed, processes_t=None)
    assert GpusScreen._process_note(dataclasses.replace(data, hosts=[stale])) == ("listed 8 s ago")
    started = snap.slow_sample.t - 100.0
    gpus = [
        msgspec.structs.replace(
            r, processes=[msgspec.structs.replace(p, started_t=started) for p in r.processes or ()]
        )
        for r in snap.slow_sample.gpus
    ]
    with_start = msgspec.structs.replace(
        listed, slow_sample=msgspec.structs.replace(snap.slow_sample, gpus=gpus)
    )
    assert {row.elapsed_s for row in process_rows([with_start])} == {108.0}
