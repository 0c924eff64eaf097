"""The Jobs tab (5) on a scripted fleet running jobs: the jobs worst first with their figures,
a job's GPUs across hosts side by side, sorting, updates by diff on the visible tab only, and
the SVG snapshot of the tab."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from rich.console import Console
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Static, TabbedContent

from gputui.core.model import Level
from gputui.tui.app import GpuTuiApp
from gputui.tui.screens.help import HelpScreen
from gputui.tui.screens.host import HostScreen
from gputui.tui.session import MonitorSession
from gputui.tui.widgets.jobs_table import JobGpusTable, JobsPanel, JobsTable
from tests.fake_fleet import FakeMonitor, R, factory
from tests.jobs_fleet import ALICE, BOB, CAROL, DAVE, POD, JobsFleet, jobs_fleet

# Clock texts in UTC whatever the machine's zone (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("utc")

WORST_FIRST = [CAROL.key, BOB.key, DAVE.key, ALICE.key, POD.key]
SnapCompare = Callable[..., bool]


@dataclass
class Running:
    pilot: Pilot[None]
    app: GpuTuiApp
    monitor: FakeMonitor
    fleet: JobsFleet

    @property
    def panel(self) -> JobsPanel:
        return self.app.fleet_screen.jobs_panel

    @property
    def table(self) -> JobsTable:
        return self.panel.table

    @property
    def gpus(self) -> JobGpusTable:
        return self.panel.gpus_table

    async def tick(self, ticks: int = 1) -> None:
        before = self.app.ticks
        self.monitor.push(self.fleet.advance(ticks))
        await until(self.pilot, lambda: self.app.ticks > before)
        await self.pilot.pause()

    async def press(self, *keys: str) -> None:
        await self.pilot.press(*keys)
        await self.pilot.pause()

    def cell(self, key: str, column: str) -> str:
        return self.table.get_cell(key, column).plain.strip()

    def text(self, selector: str) -> str:
        content = self.app.screen.query_one(selector, Static).content
        return content.plain if isinstance(content, Text) else str(content)


async def until(pilot: Pilot[None], cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.01)


@contextlib.asynccontextmanager
async def running(
    fleet: JobsFleet | None = None, size: tuple[int, int] = (160, 40)
) -> AsyncIterator[Running]:
    fleet = fleet or jobs_fleet()
    monitor = FakeMonitor(fleet)
    session = MonitorSession(factory(monitor))
    app = GpuTuiApp(session)
    app.animation_level = "none"
    async with app.run_test(size=size) as pilot:
        r = Running(pilot, app, monitor, fleet)
        await r.tick(10)  # tick 10 carries the slow signals: the processes and their jobs
        yield r
    await session.close()


async def test_the_tab_lists_the_jobs_worst_first_with_their_figures() -> None:
    async with running() as r:
        assert r.panel.snapshot is None  # not shown yet: not built
        await r.press("5")
        assert r.app.screen.query_one(TabbedContent).active == "jobs"
        assert r.app.focused is r.table
        assert r.table.keys == WORST_FIRST
        assert [r.cell(k, "state") for k in WORST_FIRST] == [
            "failed",
            "critical",
            "unreachable",
            "ok",
            "ok",
        ]
        assert [r.cell(k, "user") for k in WORST_FIRST] == [
            "carol",
            "bob",
            "dave",
            "alice",
            "svc-infer",
        ]
        assert r.cell(BOB.key, "hosts") == "gpu[003-004]" and r.cell(BOB.key, "gpus") == "16"
        assert r.cell(POD.key, "job") == "k8s:infer/vllm-0"
        assert r.cell(CAROL.key, "why") == "GPU3 XID 79: GPU has fallen off the bus -> reboot node"
        assert r.cell(ALICE.key, "p24h") == "0.992" and r.cell(POD.key, "p24h") == "0.998"
        assert r.cell(ALICE.key, "run") == ">0s"  # first seen now: at least that long
        # The highlighted job's reason in full under the table; the tab's counts below it.
        assert r.text("#job-why") == (
            "slurm:4250 failed  gpu005 GPU3 XID 79: GPU has fallen off the bus -> reboot node"
        )
        status = r.text("#jobs-status")
        assert status.startswith("5 jobs on 48 GPUs, sorted by worst (s)")
        assert "20 GPU processes serve no job, on gpu005 (4), gpu007 (8), gpu008 (8)" in status
        # Nobody reports a step rate yet, and no Slurm job has a name: no column for them.
        assert {"steps", "name"}.isdisjoint(str(k.value) for k in r.table.columns)
        await r.tick(7)
        assert r.cell(ALICE.key, "run") == ">7s"


async def test_enter_shows_a_jobs_gpus_across_hosts_and_they_follow_the_cursor() -> None:
    async with running() as r:
        await r.press("5", "down", "enter")
        assert r.panel.chosen == BOB.key and r.panel.has_class("-detail")
        assert r.gpus.display and r.app.screen.query_one("#job-title").display
        rows = [r.gpus.get_row(k) for k in r.gpus.keys]
        cells = [[c.plain.strip() for c in row] for row in rows]
        assert [(c[0], c[1]) for c in cells] == [
            (h, str(i)) for h in ("gpu003", "gpu004") for i in range(8)
        ]
        gpu5 = cells[13]
        host = next(h for h in r.fleet.snapshot().hosts if h.name == "gpu004")
        assert host.sample is not None
        reading = host.sample.gpus[5]
        assert gpu5[2:6] == [
            f"{reading.util_pct:.0f}",
            f"{reading.sm_clock_mhz}",
            f"{reading.power_w:.0f}",
            f"{reading.temp_c:.0f}C",
        ]
        assert gpu5[7] == "critical" and gpu5[8].endswith("-> drain")
        assert cells[2][7] == "warn"  # gpu003 GPU2
        assert r.text("#job-title").startswith(
            "slurm:4243 · bob · 16 GPUs on gpu[003-004] · run >0s · P24H 0.992 · CKPT 10.2 h"
        )
        await r.press("down")  # the GPUs follow the cursor to dave's job
        assert r.panel.chosen == DAVE.key and len(r.gpus.keys) == 8
        assert {r.gpus.get_row(k)[7].plain.strip() for k in r.gpus.keys} == {"unreachable"}
        await r.press("up", "up")  # carol's: GPU3 fell off the bus and lists no process now
        last = [c.plain.strip() for c in r.gpus.get_row(r.gpus.keys[-1])]
        assert last[1] == "3" and last[2:7] == ["-"] * 5 and last[7] == "failed"
        await r.press("escape")
        assert r.panel.chosen is None and not r.gpus.display
        assert r.app.focused is r.table


async def test_a_gpu_row_opens_its_host_and_x_targets_the_jobs_worst_host() -> None:
    async with running() as r:
        await r.press("5", "down")
        assert r.app.selected_host() == "gpu004"  # where bob's job is worst
        await r.press("enter", "tab")
        assert r.app.focused is r.gpus
        await r.press("down", "down")
        assert r.app.selected_host() == "gpu003"  # the GPU under the cursor
        await r.press("enter")
        assert isinstance(r.app.screen, HostScreen) and r.app.screen.host == "gpu003"


async def test_sort_cycles_and_reverses() -> None:
    async with running() as r:
        fleet_order = r.app.fleet_screen.table.sort_key
        await r.press("5", "s")
        assert r.panel.sort_key.value == "GPUs"
        # The largest first; of equal size, the worst first.
        assert r.table.keys == [BOB.key, ALICE.key, DAVE.key, CAROL.key, POD.key]
        assert "sorted by GPUs (s)" in r.text("#jobs-status")
        await r.press("S")
        assert r.table.keys == [POD.key, CAROL.key, DAVE.key, ALICE.key, BOB.key]
        assert "sorted by GPUs (reversed)" in r.text("#jobs-status")
        await r.press("s", "s")
        assert r.panel.sort_key.value == "risk"  # the least likely to see tomorrow first
        assert r.table.keys[:2] == [BOB.key, ALICE.key]
        # The fleet table keeps its own order.
        assert r.app.fleet_screen.table.sort_key is fleet_order
        # A click on a header sorts by its column; a second click reverses.
        x = 0
        for i, w in r.table.shown_layout:
            if r.table.all_columns[i].key == "user":
                break
            x += w + 1
        await r.pilot.click(JobsTable, offset=(x + 2, 0))
        await r.pilot.pause()
        assert r.panel.sort_key.value == "user" and not r.panel.sort_reverse
        assert [r.cell(k, "user") for k in r.table.keys] == [
            "alice",
            "bob",
            "carol",
            "dave",
            "svc-infer",
        ]
        await r.pilot.click(JobsTable, offset=(x + 2, 0))
        await r.pilot.pause()
        assert r.panel.sort_reverse and r.table.keys[0] == POD.key


async def test_ticks_update_cells_in_place_and_only_the_tab_shown() -> None:
    async with running() as r:
        await r.press("5")
        table = r.table
        calls = {"clear": 0, "add_row": 0, "update_cell": 0}
        originals = {name: getattr(table, name) for name in calls}

        def counting(name: str) -> Callable[..., object]:
            def call(*a: object, **k: object) -> object:
                calls[name] += 1
                return originals[name](*a, **k)

            return call

        for name in calls:
            setattr(table, name, counting(name))
        await r.tick(3)
        assert calls["clear"] == 0 and calls["add_row"] == 0
        assert 0 < calls["update_cell"] <= 5  # the run times, nothing else changed
        # gpu004 GPU5 cools down: bob's job falls to gpu003's warning, below dave's.
        r.fleet.scripts["gpu004"].reasons = []
        await r.tick()
        assert r.cell(BOB.key, "state") == "warn"
        assert table.keys == [CAROL.key, DAVE.key, BOB.key, ALICE.key, POD.key]
        assert table.cursor_key == CAROL.key  # the cursor stays on its job
        # Another tab shown: the jobs are not rebuilt on a tick.
        await r.press("1")
        seen = r.panel.snapshot
        r.fleet.scripts["gpu001"].reasons = [R("xid_48", Level.CRITICAL, "GPU0 XID 48", 0)]
        await r.tick()
        assert r.panel.snapshot is seen
        await r.press("5")  # shown again: caught up at once
        assert r.panel.snapshot is not seen and r.cell(ALICE.key, "state") == "critical"


async def test_job_text_from_hosts_is_never_markup() -> None:
    fleet = jobs_fleet()
    fleet.placement["gpu001"] = {i: (ALICE, "[i]al[/i]") for i in range(8)}
    fleet.scripts["gpu002"].reasons = [R("x", Level.WARN, "bad [red]thing[/] :thumbs_up:", 1)]
    async with running(fleet) as r:
        await r.press("5")
        assert r.cell(ALICE.key, "user") == "[i]al[/i]"
        assert r.cell(ALICE.key, "why") == "gpu002: bad [red]thing[/] :thumbs_up:"
        await r.press("down", "down", "down")
        assert r.text("#job-why").endswith("gpu002 bad [red]thing[/] :thumbs_up:")


async def test_help_names_the_tab_and_its_keys() -> None:
    async with running() as r:
        await r.press("question_mark")
        assert isinstance(r.app.screen, HelpScreen)
        console = Console(width=120, color_system=None)
        with console.capture() as out:
            console.print(r.app.screen.query_one("#help-body", Static).content)
        text = out.get()
        assert re.search(r"^ 5 +Jobs *$", text, re.M), text
        assert "enter shows the job's GPUs across hosts side by side" in " ".join(text.split())


def scripted(ticks: int = 12) -> tuple[GpuTuiApp, Callable[[Pilot[None]], Awaitable[None]]]:
    fleet = jobs_fleet()
    monitor = FakeMonitor(fleet)
    app = GpuTuiApp(MonitorSession(factory(monitor)))
    app.animation_level = "none"

    async def feed(pilot: Pilot[None]) -> None:
        for _ in range(ticks):
            before = app.ticks
            monitor.push(fleet.advance())
            while app.ticks == before:
                await pilot.pause(0.01)
        await pilot.press("5", "down", "enter")
        before = app.ticks
        monitor.push(fleet.advance())  # one tick with the tab shown: the run times move
        while app.ticks == before:
            await pilot.pause(0.01)
        await pilot.pause()

    return app, feed


def test_jobs_tab_80x24(snap_compare: SnapCompare) -> None:
    app, feed = scripted()
    assert snap_compare(app, terminal_size=(80, 24), run_before=feed)


async def test_the_schedulers_job_list_names_the_jobs_in_the_tab() -> None:
    """The app hands the scheduler's latest list (read beside the monitor, at most once per
    period) to the Jobs tab each tick: its name and user win over the hosts' attribution, and
    how the list was read is said under the table."""
    from gputui.core.jobs import SchedulerJob

    said = (
        {ALICE.key: SchedulerJob(id=ALICE.id, name="llama-pretrain", user="alice-sched")},
        "squeue: 1 job holding nodes, read 5 s ago",
    )
    fleet = jobs_fleet()
    monitor = FakeMonitor(fleet)
    session = MonitorSession(factory(monitor))
    app = GpuTuiApp(session, scheduler=lambda: said)
    app.animation_level = "none"
    async with app.run_test(size=(160, 40)) as pilot:
        r = Running(pilot, app, monitor, fleet)
        await r.tick(10)
        await r.press("5")
        assert r.cell(ALICE.key, "name") == "llama-pretrain"
        assert r.cell(ALICE.key, "user") == "alice-sched"
        assert "squeue: 1 job holding nodes, read 5 s ago" in r.text("#jobs-status")
    await session.close()
