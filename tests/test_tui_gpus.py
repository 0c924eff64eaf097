"""The per-GPU view: a small fleet opens on it, any host's is one key away, its meters, charts
and process table say what the GPUs said, and the SVG snapshots at 80x24, 120x40 and 200x50.

Charts are checked on a real H200's stream (tests/fixtures/h200: idle, a training load at the
700 W power cap, idle), replayed through the collector as a live host's would arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass

import msgspec
import numpy as np
import pytest
from rich.console import Console
from rich.text import Text
from textual.content import Content
from textual.pilot import Pilot
from textual.strip import Strip
from textual.widgets import Static

from gputui.collect.history import (
    HISTORY_BUDGET,
    MAX_HISTORY,
    MIN_HISTORY,
    history_len_for,
)
from gputui.collect.host_runtime import HostRuntime
from gputui.config import ConfigError, config_from_text
from gputui.config.ui import UiSettings
from gputui.core.model import (
    Action,
    FleetEvent,
    FleetSnapshot,
    GpuProcess,
    HostSnapshot,
    HostState,
    JobRef,
    Level,
    Sample,
)
from gputui.tui.app import GpuTuiApp
from gputui.tui.jobsview import FILL_MIN
from gputui.tui.ports import HasHistory
from gputui.tui.processview import PROCESS_COLUMNS, ProcSort
from gputui.tui.screens.fleet import FleetScreen
from gputui.tui.screens.gpus import (
    DECIDE_WITHIN_S,
    GpuCard,
    GpusScreen,
    card_layout,
    opens_on_gpus,
)
from gputui.tui.screens.help import HelpScreen
from gputui.tui.screens.host import HostScreen
from gputui.tui.session import MonitorSession
from gputui.tui.widgets.history_chart import (
    ChartData,
    HistoryChart,
    braille_rows,
    bucket_max,
    chart_text,
    choose_step,
)
from gputui.tui.widgets.meter import bar_cells, meter
from tests.fake_fleet import T0, FakeFleet, FakeMonitor, HostScript, R, factory, small_fleet
from tests.test_host_text import assert_safe
from tests.test_replay_h200 import STREAM, TRAINING, Clock

pytestmark = pytest.mark.usefixtures("utc")
SnapCompare = Callable[..., bool]

# --------------------------------------------------------------------------------------------
# A fleet whose GPU processes say everything a recent agent reads
# --------------------------------------------------------------------------------------------

ALICE_JOB = JobRef(kind="slurm", id="4242", step="0")


def proc(pid: int, user: str, mem_gib: float, **extra: object) -> GpuProcess:
    return msgspec.convert(
        {"pid": pid, "name": "python3", "user": user, "used_memory_mib": mem_gib * 1024, **extra},
        GpuProcess,
    )


#: GPU -> its processes on the host "gpu001": sizes, owners and loads that differ per order.
PROCESSES: dict[int, list[GpuProcess]] = {
    0: [
        proc(
            4100,
            "alice",
            70.0,
            sm_util_pct=97,
            cpu_pct=101.5,
            rss_mib=9000,
            started_t=T0 - 7200,
            cmdline="python3 train.py --model llama-70b",
            job=ALICE_JOB,
        )
    ],
    1: [
        proc(
            5200,
            "bob",
            20.0,
            sm_util_pct=40,
            cpu_pct=12.0,
            rss_mib=3000,
            started_t=T0 - 90,
            cmdline="python3 eval.py",
        ),
        proc(
            5201,
            "carol",
            4.0,
            sm_util_pct=2,
            cpu_pct=350.0,
            rss_mib=48000,
            started_t=T0 - 600,
            cmdline="jupyter-kernel",
        ),
    ],
    3: [proc(6100, "dave", 40.0, sm_util_pct=70, cpu_pct=55.0, rss_mib=1200, started_t=T0 - 3)],
}


class ProcFleet(FakeFleet):
    """FakeFleet whose slow samples list `processes` (host -> GPU -> processes), and no
    process on the GPUs left out."""

    def __init__(
        self, scripts: list[HostScript], processes: Mapping[str, Mapping[int, list[GpuProcess]]]
    ) -> None:
        super().__init__(scripts)
        self.processes = {h: dict(gpus) for h, gpus in processes.items()}

    def _sample(self, s: HostScript, tick: int) -> Sample:
        sample = super()._sample(s, tick)
        if not sample.slow:
            return sample
        listed = self.processes.get(s.name, {})
        gpus = [
            msgspec.structs.replace(r, processes=listed.get(r.index, []))
            if r.processes is not None
            else r
            for r in sample.gpus
        ]
        return msgspec.structs.replace(sample, gpus=gpus)


def workstation(gpus: int = 8, **script: object) -> ProcFleet:
    host = HostScript("gpu001", gpus=gpus, **script)  # type: ignore[arg-type]
    listed = {i: p for i, p in PROCESSES.items() if i < gpus}
    return ProcFleet([host], {"gpu001": listed})


# --------------------------------------------------------------------------------------------
# Driving the app
# --------------------------------------------------------------------------------------------


@dataclass
class Running:
    pilot: Pilot[None]
    app: GpuTuiApp
    monitor: FakeMonitor
    fleet: FakeFleet

    async def tick(self, ticks: int = 1) -> None:
        before = self.app.ticks
        self.monitor.push(self.fleet.advance(ticks))
        await until(self.pilot, lambda: self.app.ticks > before)
        await self.pilot.pause()

    async def press(self, *keys: str) -> None:
        await self.pilot.press(*keys)
        await self.pilot.pause()

    @property
    def view(self) -> GpusScreen:
        screen = self.app.screen
        assert isinstance(screen, GpusScreen), type(screen).__name__
        return screen


async def until(pilot: Pilot[None], cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.01)


@contextlib.asynccontextmanager
async def running(
    fleet: FakeFleet, size: tuple[int, int] = (120, 40), ui: UiSettings | None = None
) -> AsyncIterator[Running]:
    monitor = FakeMonitor(fleet)
    session = MonitorSession(factory(monitor))
    app = GpuTuiApp(session, ui=ui)
    app.animation_level = "none"
    async with app.run_test(size=size) as pilot:
        r = Running(pilot, app, monitor, fleet)
        await r.tick(10)  # tick 10 carries the slow signals: the processes
        yield r
    await session.close()


def text_of(widget: Static) -> str:
    content = widget.content
    return content.plain if isinstance(content, Text) else str(content)


def card_text(card: GpuCard) -> str:
    return "\n".join(text_of(part) for part in (card.meters, card.info))


def title_of(card: GpuCard) -> str:
    """The panel's border title as drawn (Textual hands it back as markup)."""
    return Content.from_markup(card.border_title or "").plain


def cells(r: Running) -> dict[str, list[str]]:
    """The process table's columns (by key) in row order, as drawn."""
    table = r.view.processes.table
    out: dict[str, list[str]] = {}
    for column in table.columns.values():
        key = str(column.key.value)
        out[key] = [table.get_cell(row, key).plain.strip() for row in table.keys]
    return out


# --------------------------------------------------------------------------------------------
# Which view the app opens on
# --------------------------------------------------------------------------------------------


async def test_a_host_of_eight_gpus_opens_on_one_panel_per_gpu() -> None:
    async with running(workstation(util=100.0)) as r:
        view = r.view
        assert view.scope is None  # the whole (small) fleet
        assert [c.index for c in view.cards.values()] == list(range(8))
        host = r.app.by_name["gpu001"]
        assert host.sample is not None
        for card, reading in zip(view.cards.values(), host.sample.gpus, strict=True):
            assert title_of(card) == f"GPU{card.index} NVIDIA H100 80GB HBM3 · ok"
            text = card_text(card)
            # Meters say the reading: utilisation, memory of the GPU's total, temperature
            # against its own slowdown limit, power against its enforced limit.
            assert reading.util_pct is not None and reading.mem_used_mib is not None
            assert f"{reading.util_pct:.0f}%]" in text
            assert f"{reading.mem_used_mib / 1024:.1f}/79.6 GiB]" in text
            assert f"{reading.temp_c:.0f}/89 C]" in text
            assert f"{reading.power_w:.0f}/700 W]" in text
            assert "SM 1980/1980 MHz, memory 2619 MHz" in text
            # Busy, the fake fleet's GPUs run at the software power cap (bit 0x4).
            assert reading.clock_events == 0x4
            assert text.endswith("clock events: software power cap")
        assert len(view.query(HistoryChart)) == 32


async def test_three_eight_gpu_hosts_open_on_the_fleet_table() -> None:
    fleet = FakeFleet([HostScript(f"gpu00{i}") for i in (1, 2, 3)])
    async with running(fleet) as r:
        await r.tick(15)
        assert isinstance(r.app.screen, FleetScreen)


async def test_small_hosts_open_on_the_view_by_their_gpu_count_and_hosts_toml_decides() -> None:
    def fleet() -> FakeFleet:
        return ProcFleet(
            [HostScript(f"ws{i}", gpus=4) for i in (1, 2, 3)],
            {"ws2": {1: [proc(777, "erin", 3.0)]}},
        )

    async with running(fleet()) as r:  # 12 GPUs: within the default 16
        view = r.view
        assert [(c.host, c.index) for c in view.cards.values()] == [
            (h, i) for h in ("ws1", "ws2", "ws3") for i in range(4)
        ]
        assert title_of(next(iter(view.cards.values()))).startswith("ws1 GPU0 ")
        # Several hosts: the process table says where each process runs.
        assert cells(r)["host"] == ["ws2"] and cells(r)["pid"] == ["777"]
        assert card_text(next(iter(view.cards.values()))).endswith("clock events: none")
    closed = UiSettings(per_gpu_view_max_hosts=0, per_gpu_view_max_gpus=0)
    async with running(fleet(), ui=closed) as r:
        await r.tick(3)
        assert isinstance(r.app.screen, FleetScreen)


async def test_the_choice_waits_for_the_gpus_and_a_key_press_ends_it() -> None:
    fleet = workstation()
    fleet.scripts["gpu001"].said_hello = False
    async with running(fleet) as r:
        assert isinstance(r.app.screen, FleetScreen)  # its GPUs are not counted yet
        fleet.scripts["gpu001"].said_hello = True
        await r.tick()
        assert isinstance(r.app.screen, GpusScreen)
    fleet = workstation()
    fleet.scripts["gpu001"].said_hello = False
    async with running(fleet) as r:
        await r.press("2")  # the operator is at work: the app does not move them
        fleet.scripts["gpu001"].said_hello = True
        await r.tick()
        assert isinstance(r.app.screen, FleetScreen)


def test_hosts_toml_sets_when_the_view_opens_and_says_what_is_wrong() -> None:
    config = config_from_text('hosts = ["a"]\n[ui]\nper_gpu_view_max_gpus = 4')
    assert config.ui == UiSettings(per_gpu_view_max_hosts=2, per_gpu_view_max_gpus=4)
    assert config_from_text('hosts = ["a"]').ui == UiSettings()
    for text, expected in (
        ("per_gpu_view_max_gpus = -1", "ui.per_gpu_view_max_gpus: expected a whole number of "),
        ("per_gpu_view_max_host = 1", 'ui.per_gpu_view_max_host: unknown key "per_gpu_view_max_'),
    ):
        with pytest.raises(ConfigError) as info:
            config_from_text(f'hosts = ["a"]\n[ui]\n{text}')
        assert str(info.value).startswith("hosts.toml: ") and expected in str(info.value)


def _snap(*hosts: HostSnapshot) -> FleetSnapshot:
    return FleetSnapshot(t=T0, hosts=hosts)


def test_opens_on_gpus_counts_what_said_hello_and_waits_a_while_for_the_rest() -> None:
    fleet = FakeFleet([HostScript("a", gpus=8), HostScript("b", gpus=8, said_hello=False)])
    fleet.advance()
    snap = fleet.snapshot()
    ui = UiSettings()
    assert opens_on_gpus(snap, ui, 0.0) is None  # b is connecting
    assert opens_on_gpus(snap, ui, DECIDE_WITHIN_S) is True  # two hosts: the host rule
    fleet.scripts["b"].said_hello = True
    assert opens_on_gpus(fleet.advance(), UiSettings(per_gpu_view_max_hosts=1), 0) is True
    narrow = UiSettings(per_gpu_view_max_hosts=1, per_gpu_view_max_gpus=15)
    assert opens_on_gpus(fleet.advance(), narrow, 0) is False
    many = FakeFleet([HostScript(f"n{i}", said_hello=False) for i in range(17)])
    assert opens_on_gpus(many.snapshot(), ui, 0.0) is False  # no need to wait for them
    no_gpu = msgspec.structs.replace(snap.hosts[0], hello=None, state=HostState.UNREACHABLE)
    assert opens_on_gpus(_snap(no_gpu), ui, 0.0) is False  # nothing to draw


async def test_a_lost_gpu_is_said_once_in_its_panel() -> None:
    lost = R("gpu_lost", Level.FAILED, "GPU0 is lost (fell off the bus)", 0, Action.REBOOT_NODE)
    fleet = FakeFleet(
        [HostScript("ws1", gpus=2, lost={0}, reasons=[lost]), HostScript("ws2", lost={1})]
    )
    async with running(fleet) as r:
        cards = list(r.view.cards.values())
        text = card_text(cards[0])
        assert "failed   GPU0 is lost (fell off the bus)  -> reboot node" in text
        assert "GPU is lost" not in text and "-]" in text  # no figures, no NVML words
        assert title_of(cards[0]).endswith("· failed")
        # Nothing judged it yet: NVML's words are all there is.
        assert "lost: GPU is lost" in card_text(cards[3])


# --------------------------------------------------------------------------------------------
# The view of any host, and moving about
# --------------------------------------------------------------------------------------------


async def test_g_opens_the_view_of_the_highlighted_host_and_brackets_move_on() -> None:
    async with running(small_fleet()) as r:
        assert isinstance(r.app.screen, FleetScreen)  # ten hosts
        r.app.fleet_screen.table.select_host("gpu009")
        await r.press("g")
        assert r.view.scope == "gpu009"
        assert [c.index for c in r.view.cards.values()] == [0, 1, 2, 3]  # its four GPUs
        order = r.app.fleet_screen.table.shown
        await r.press("right_square_bracket")
        following = order[(order.index("gpu009") + 1) % len(order)]
        assert r.view.scope == following
        await r.press("d")  # the host's full detail, and back to its GPUs with g
        assert isinstance(r.app.screen, HostScreen) and r.app.screen.host == following
        await r.press("g")
        assert r.view.scope == following and len(r.app.screen_stack) == 2
        await r.press("escape")
        assert isinstance(r.app.screen, FleetScreen)
        await r.press("2")  # the grid's host too
        r.app.fleet_screen.grid_panel.select_host("gpu003")
        await r.press("g")
        assert r.view.scope == "gpu003"


async def test_the_operator_keys_act_on_the_process_host() -> None:
    fleet = ProcFleet(
        [HostScript("ws1", gpus=2), HostScript("ws2", gpus=2)],
        {"ws2": {0: [proc(900, "erin", 1.0)]}},
    )
    async with running(fleet) as r:
        assert r.app.selected_host() == "ws2"  # the process under the cursor runs there


async def test_the_help_lists_the_views_keys() -> None:
    async with running(workstation()) as r:
        await r.press("question_mark")
        screen = r.app.screen
        assert isinstance(screen, HelpScreen)
        console = Console(width=100, record=True, file=io.StringIO())
        console.print(screen.query_one("#help-body", Static).content)
        text = console.export_text()
        assert "GPU view" in text and "Sort" in text and "Prev host" in text
        assert re.search(r"\bg\s+GPUs\b", text)
        assert "d opens the host screen" in text


# --------------------------------------------------------------------------------------------
# The process table
# --------------------------------------------------------------------------------------------


async def test_the_process_table_lists_what_the_hosts_read_and_sorts_by_each_column() -> None:
    async with running(workstation(), size=(160, 40)) as r:
        panel = r.view.processes
        got = cells(r)
        # One host: no HOST column; every optional column someone reports is there.
        assert list(got) == [
            "gpu",
            "pid",
            "user",
            "gpu_mem",
            "sm",
            "cpu",
            "rss",
            "time",
            "job",
            "command",
        ]
        assert got["pid"] == ["4100", "6100", "5200", "5201"]  # GPU memory, biggest first
        assert got["gpu_mem"] == ["70.0 GiB", "40.0 GiB", "20.0 GiB", "4.0 GiB"]
        assert got["user"] == ["alice", "dave", "bob", "carol"]
        # Run time on the host's clock: started before T0, listed at T0 + 10 s.
        assert got["time"] == ["2h00m", "13s", "1m", "10m"]
        assert got["job"] == ["slurm:4242", "-", "-", "-"]
        assert got["command"][0] == "python3 train.py --model llama-70b"
        assert got["command"][1] == "python3"  # no command line read: the name
        status = text_of(r.view.query_one("#proc-status", Static))
        assert status.startswith("4 processes on 3 of 8 GPUs, sorted by GPU memory (s)")

        def order() -> list[str]:
            return cells(r)["pid"]

        expected = {
            ProcSort.SM: ["4100", "6100", "5200", "5201"],
            ProcSort.CPU: ["5201", "4100", "6100", "5200"],
            ProcSort.RSS: ["5201", "4100", "5200", "6100"],
            ProcSort.TIME: ["4100", "5201", "5200", "6100"],
            ProcSort.GPU: ["4100", "5200", "5201", "6100"],
            ProcSort.PID: ["4100", "5200", "5201", "6100"],
            ProcSort.USER: ["4100", "5200", "5201", "6100"],
            ProcSort.GPU_MEM: ["4100", "6100", "5200", "5201"],
        }
        for sort, pids in expected.items():
            await r.press("s")
            assert panel.sort_key is sort
            assert order() == pids, sort
        # The sorted column's header carries the arrow; S reverses.
        await r.press("s", "s", "S")  # CPU, reversed
        assert order() == ["5200", "6100", "4100", "5201"]
        headers = {str(c.key.value): c.label.plain.strip() for c in panel.table.columns.values()}
        assert headers["cpu"] == "CPU%▴" and headers["gpu_mem"] == "GPU MEM"
        # A click on a header sorts by it.
        table = panel.table
        x = sum(w + 1 for i, w in table.shown_layout[:1])  # after the GPU column: PID
        await r.pilot.click(table, offset=(x + 2, 0))
        await r.pilot.pause()
        assert panel.sort_key is ProcSort.PID and not panel.sort_reverse
        assert order() == ["4100", "5200", "5201", "6100"]


async def test_a_narrow_table_leaves_out_the_least_read_columns_for_the_command() -> None:
    async with running(workstation(), size=(80, 24)) as r:
        got = cells(r)
        assert list(got) == ["gpu", "pid", "user", "gpu_mem", "sm", "cpu", "time", "command"]
        widths = dict(r.view.processes.table.shown_layout)
        assert widths[len(PROCESS_COLUMNS) - 1] >= FILL_MIN
        assert got["command"][0].startswith("python3 train.py --model llama")
        await r.pilot.resize_terminal(160, 40)
        await r.pilot.pause()
        assert "rss" in cells(r) and "job" in cells(r)


async def test_an_older_agents_processes_leave_out_what_it_does_not_read() -> None:
    async with running(FakeFleet([HostScript("gpu001", gpus=2)])) as r:
        assert list(cells(r)) == ["gpu", "pid", "user", "gpu_mem", "command"]


async def test_process_text_from_the_host_is_plain() -> None:
    nasty = "python3 [b]x[/b] :ab: 0000:ab:00 \x1b[2J\x9b31m"
    fleet = ProcFleet(
        [HostScript("gpu001", gpus=1)],
        {"gpu001": {0: [proc(1, "[red]root[/red]", 1.0, cmdline=nasty)]}},
    )
    async with running(fleet) as r:
        got = cells(r)
        assert got["user"] == ["[red]root[/red]"]
        assert got["command"][0].startswith("python3 [b]x[/b] :ab: 0000:ab:00 ")
        assert_safe(got["command"][0])


# --------------------------------------------------------------------------------------------
# Charts, on a real H200's stream
# --------------------------------------------------------------------------------------------


class ReplayMonitor:
    """The app's view of a monitor over one HostRuntime fed by hand."""

    def __init__(self, runtime: HostRuntime) -> None:
        self.runtime = runtime
        self.events: deque[FleetEvent] = deque()
        self._queue: asyncio.Queue[FleetSnapshot | None] = asyncio.Queue()

    @property
    def hosts(self) -> Mapping[str, HasHistory]:
        return {self.runtime.name: self.runtime}

    def push(self, snapshot: FleetSnapshot) -> None:
        self._queue.put_nowait(snapshot)

    async def snapshots(self) -> AsyncIterator[FleetSnapshot]:
        while (snap := await self._queue.get()) is not None:
            yield snap

    def set_marked_failed(self, host: str, marked: bool) -> None: ...

    def clear(self, host: str, gpu: int | None = None) -> None: ...

    def watch_processes(self, hosts: Collection[str]) -> None: ...

    async def stop(self) -> None:
        self._queue.put_nowait(None)


def caption(chart: HistoryChart) -> str:
    assert chart.data is not None
    size = chart.content_size
    return chart_text(chart.data, size.width, size.height).plain.split("\n")[0]


def chart_columns(chart: HistoryChart) -> int:
    """Character columns of the chart with at least one dot."""
    assert chart.data is not None
    size = chart.content_size
    rows = chart_text(chart.data, size.width, size.height).plain.split("\n")[1:]
    return sum(1 for col in zip(*rows, strict=True) if any(ch != " " for ch in col))


async def test_charts_grow_with_the_history_of_a_real_h200() -> None:
    lines = STREAM.read_bytes().splitlines()
    messages = [json.loads(line) for line in lines]
    clock = Clock(messages[1]["t"] - 0.5)
    runtime = HostRuntime(
        "h200-vm", interval_s=1.0, emit=lambda e, u: None, clock=clock, monotonic=clock
    )
    runtime.stream_started()
    monitor = ReplayMonitor(runtime)

    @contextlib.asynccontextmanager
    async def open_monitor() -> AsyncIterator[ReplayMonitor]:
        try:
            yield monitor
        finally:
            await monitor.stop()

    session = MonitorSession(open_monitor)
    app = GpuTuiApp(session)
    app.animation_level = "none"
    fed = 0

    async def feed_to(seq: int, pilot: Pilot[None]) -> None:
        nonlocal fed
        while fed < len(lines) and (fed == 0 or messages[fed].get("seq", -1) < seq):
            clock.t = messages[fed].get("t", clock.t)
            runtime.on_line(lines[fed])
            fed += 1
        before = app.ticks
        monitor.push(FleetSnapshot(t=clock.t, hosts=(runtime.snapshot(),)))
        await until(pilot, lambda: app.ticks > before)
        await pilot.pause()

    async with app.run_test(size=(120, 40)) as pilot:
        await feed_to(10, pilot)  # ten idle seconds
        screen = app.screen
        assert isinstance(screen, GpusScreen)  # one host, one GPU
        (card,) = screen.cards.values()
        util, _, _, power = card.query(HistoryChart)
        assert chart_columns(util) == 0  # idle: nothing to draw
        assert chart_columns(power) == 5  # 81 W of 700: ten samples, two dots a column
        assert caption(power).endswith("last 10s")
        await feed_to(60, pilot)  # forty seconds of the matmul at the power cap
        # More history than the chart's dots: two samples a dot, and it spans the minute.
        assert 2 * 2 * power.content_size.width >= 60 > 2 * power.content_size.width
        assert chart_columns(power) == 15 and caption(power).endswith("last 1m")
        assert 0 < chart_columns(util) < chart_columns(power)  # the load's samples only
        text = card_text(card)
        assert "software power cap" in text and "/700 W]" in text and "/89 C]" in text
        assert screen.processes.rows[0].process == TRAINING
        assert power.data is not None and power.data.value.endswith(" W")
        # The load fills the util chart's top row over its columns, right-aligned: now is
        # the right edge.
        rows = chart_text(util.data, util.content_size.width, util.content_size.height)  # type: ignore[arg-type]
        top = rows.plain.split("\n")[1]
        assert top.rstrip().endswith("⣿") and top.startswith(" ")
        await feed_to(200, pilot)  # the rest: idle again as it cools
        assert chart_columns(power) == 22  # 131 samples, three a dot
        assert caption(power).endswith("last 2m")
        await pilot.press("q")
    await session.close()


# --------------------------------------------------------------------------------------------
# The pure parts
# --------------------------------------------------------------------------------------------


def test_history_is_sized_by_the_fleet_and_bounded() -> None:
    assert history_len_for(1) == MAX_HISTORY == 3600  # an hour at 1 s
    assert history_len_for(10) == 3600
    assert history_len_for(32) == 1125  # the demo: about 19 minutes
    assert history_len_for(120) == MIN_HISTORY == 300
    assert history_len_for(1000) == 300
    point_bytes = 8 * 4 * 4 + 8  # an 8-GPU host: four float32 metrics each, a float64 time
    for hosts in (1, 5, 10, 50, 100, 119, 120, 1000):
        total = hosts * history_len_for(hosts) * point_bytes
        assert total <= max(HISTORY_BUDGET, hosts * MIN_HISTORY) * point_bytes
    assert 1000 * 300 * point_bytes < 41 * 2**20  # 1,000 hosts: the rings as before


def test_buckets_keep_their_samples_while_new_ones_arrive() -> None:
    values = np.arange(40, dtype=np.float32)
    before = bucket_max(values[:-1], 39, 5, 10)
    after = bucket_max(values, 40, 5, 10)
    # Eight buckets of five, the two oldest dots empty; sample 39 completes the bucket 35-39
    # and changes no other.
    assert np.isnan(after[:2]).all() and list(after[2:]) == [4, 9, 14, 19, 24, 29, 34, 39]
    np.testing.assert_array_equal(before[:-1], after[:-1])
    assert before[-1] == 38
    nxt = bucket_max(np.arange(41, dtype=np.float32), 41, 5, 10)
    np.testing.assert_array_equal(nxt[:-1], after[1:])  # a new bucket: one dot on
    assert nxt[-1] == 40
    # A ring that dropped its oldest samples keeps the numbering of what it holds.
    assert list(bucket_max(values[-7:], 40, 5, 2)) == [34.0, 39.0]
    gap = values.copy()
    gap[10:15] = np.nan
    assert math.isnan(bucket_max(gap, 40, 5, 8)[2])


def test_steps_grow_with_the_history() -> None:
    assert choose_step(0, 60) == 1
    assert choose_step(60, 60) == 1
    assert choose_step(61, 60) == 2
    assert choose_step(3600, 60) == 60  # an hour on a 30-column chart: a minute a dot


def test_braille_area_rows() -> None:
    full, right_full, left_one = "⣿", "⢸", "⡀"
    assert braille_rows(np.array([0.0, 100.0]), 1, 0, 100) == [right_full]
    assert braille_rows(np.array([50.0, 50.0]), 2, 0, 100) == [" ", full]
    assert braille_rows(np.array([1.0, np.nan]), 1, 0, 100) == [left_one]  # above low: a dot
    assert braille_rows(np.array([100.0]), 1, 0, 100) == [right_full]  # odd: padded before
    assert braille_rows(np.array([150.0, -5.0]), 2, 0, 100) == ["⡇", "⡇"]  # clamped


def test_chart_text_is_a_caption_and_rows_of_the_widgets_size() -> None:
    data = ChartData(
        name="util",
        value="87%",
        values=np.full(30, 50.0, dtype=np.float32),
        appended=30,
        interval_s=1.0,
        low=0,
        high=100,
        color=None,  # type: ignore[arg-type]
    )
    rows = chart_text(data, 24, 4).plain.split("\n")
    assert rows[0] == "util 87%" + " " * 8 + "last 30s"
    assert [len(r) for r in rows[1:]] == [24, 24, 24]
    assert rows[1].strip() == "" and rows[3] == " " * 9 + "⣿" * 15


def test_meters_are_exactly_their_width_and_say_what_was_not_read() -> None:
    line = meter("util", 0.5, "50%", 30)
    assert line.plain == "util [" + bar_cells(0.5, 19) + " 50%]"
    assert len(line.plain) == 30
    assert bar_cells(0.5, 19) == "█" * 9 + "▌" + " " * 9
    assert bar_cells(0.001, 10).startswith("▏")  # above zero shows
    assert bar_cells(0.0, 4) == "    " and bar_cells(2.0, 4) == "████"
    assert meter("util", None, "-", 20).plain == "util [" + " " * 11 + " -]"
    assert meter("power", 0.8, "560/700 W", 12).plain == "power 560/700 W"[:12]


def test_panels_reflow_and_charts_share_the_height() -> None:
    cols, layout = card_layout(80, 24, 8, 9, 2)
    assert (cols, layout.meters_per_line, layout.charts_per_row) == (1, 2, 2)
    cols, layout = card_layout(120, 40, 8, 9, 1)
    assert (cols, layout.charts_per_row) == (1, 4)
    cols, layout = card_layout(200, 50, 8, 9, 1)
    assert (cols, layout.charts_per_row) == (2, 4)
    one = card_layout(120, 40, 1, 2, 1)[1].chart_height
    many = card_layout(120, 40, 8, 9, 1)[1].chart_height
    assert one > many >= 3  # a workstation's GPU gets tall charts
    assert card_layout(60, 20, 1, 2, 1)[1].meters_per_line == 1


async def test_a_tick_redraws_only_the_chart_lines_that_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn: list[tuple[HistoryChart, int]] = []
    render_line = HistoryChart.render_line

    def counting(self: HistoryChart, y: int) -> Strip:
        drawn.append((self, y))
        return render_line(self, y)

    monkeypatch.setattr(HistoryChart, "render_line", counting)
    fleet = workstation(gpus=2)
    async with running(fleet) as r:
        await r.tick()
        await r.pilot.pause(0.05)
        assert {y for _, y in drawn} >= {0, 1}  # a new sample: the captions and the rows
        fleet.scripts["gpu001"].last_tick = fleet.tick  # the host falls silent
        await r.tick()
        await r.pilot.pause(0.05)
        drawn.clear()
        await r.tick(3)
        await r.pilot.pause(0.05)
        assert drawn == []  # no sample, the same figures: nothing to draw


# --------------------------------------------------------------------------------------------
# Snapshots
# --------------------------------------------------------------------------------------------


def scripted(
    fleet: FakeFleet, ticks: int
) -> tuple[GpuTuiApp, Callable[[Pilot[None]], Awaitable[None]]]:
    monitor = FakeMonitor(fleet)
    app = GpuTuiApp(MonitorSession(factory(monitor)))
    app.animation_level = "none"

    async def feed(pilot: Pilot[None]) -> None:
        for _ in range(ticks):
            before = app.ticks
            monitor.push(fleet.advance())
            while app.ticks == before:
                await pilot.pause(0.01)
        await pilot.pause()

    return app, feed


def test_gpu_view_of_a_two_gpu_workstation_80x24(snap_compare: SnapCompare) -> None:
    app, feed = scripted(workstation(gpus=2), ticks=90)
    assert snap_compare(app, terminal_size=(80, 24), run_before=feed)


def test_gpu_view_of_an_eight_gpu_host_120x40(snap_compare: SnapCompare) -> None:
    app, feed = scripted(workstation(util=100.0), ticks=130)
    assert snap_compare(app, terminal_size=(120, 40), run_before=feed)


def test_gpu_view_of_an_eight_gpu_host_200x50(snap_compare: SnapCompare) -> None:
    app, feed = scripted(workstation(), ticks=250)
    assert snap_compare(app, terminal_size=(200, 50), run_before=feed)
