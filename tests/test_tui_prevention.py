"""The Prevention tab (6) and the host screen's days: the journal's service list ranked with
the highlighted item's evidence charted over its days and its advice, read at most once a
minute and only while shown; enter opens the host, whose GPU panels chart their days; host text
never read as markup; SVG snapshots."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import msgspec
import pytest
from rich.console import Console
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Static, TabbedContent

from gputui.core.rollup import Rollup
from gputui.ops.journal import JournalError
from gputui.ops.prevention import Trends, judge
from gputui.tui.app import GpuTuiApp
from gputui.tui.screens.help import HelpScreen
from gputui.tui.screens.host import GpuPanel, HostScreen
from gputui.tui.session import MonitorSession
from gputui.tui.widgets.prevention_panel import REFRESH_S, PreventionPanel, PreventionTable
from tests.fake_fleet import FakeFleet, FakeMonitor, factory, small_fleet
from tests.trend_days import gpu_day

# Clock texts in UTC whatever the machine's zone (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("utc")

DAYS = 14
SnapCompare = Callable[..., bool]


def fleet_days(names: Sequence[str] = ("gpu001", "gpu002", "gpu003", "gpu004")) -> list[Rollup]:
    """Two weeks of the small fleet's first hosts, each GPU-day the recorded H200's under load,
    with four drifts: gpu002 GPU3's corrected ECC errors climbing, gpu003 GPU5 running hotter
    each day than its peers at the same power, gpu004's GPUs all braking every day of the last
    five (its power supply), gpu001 GPU1 with a remap left pending."""
    base = gpu_day(0).load_temp_mean_c
    assert base is not None
    out = []
    for host in names:
        for g in range(8):
            for d in range(DAYS):
                kw: dict[str, object] = {}
                if host == "gpu002" and g == 3:
                    kw["ecc"] = 4 * (d + 1)
                if host == "gpu003" and g == 5:
                    kw["temp_c"] = base + 1.5 * d
                if host == "gpu004" and d >= DAYS - 5:
                    kw["brake_s"] = 90.0
                if host == "gpu001" and g == 1 and d >= DAYS - 4:
                    kw.update(pending=True, remap_corrected=1)
                out.append(gpu_day(d, host=host, gpu=g, **kw))  # type: ignore[arg-type]
    return out


class FakeSource:
    """The journal's prevention side, from rollups in memory; counts its reads."""

    def __init__(self, rollups: Sequence[Rollup], error: str = "") -> None:
        self.rollups = list(rollups)
        self.error = error
        self.reads = 0
        self.daily_reads: list[str] = []

    def trends(self) -> Trends | None:
        self.reads += 1
        if self.error:
            raise JournalError(self.error)
        return judge(self.rollups)

    def daily(self, host: str) -> list[Rollup]:
        self.daily_reads.append(host)
        return [r for r in self.rollups if r.host == host]


@dataclass
class Running:
    pilot: Pilot[None]
    app: GpuTuiApp
    monitor: FakeMonitor
    fleet: FakeFleet
    source: FakeSource | None

    @property
    def panel(self) -> PreventionPanel:
        return self.app.fleet_screen.prevention_panel

    @property
    def table(self) -> PreventionTable:
        return self.panel.table

    async def tick(self, ticks: int = 1) -> None:
        before = self.app.ticks
        self.monitor.push(self.fleet.advance(ticks))
        await until(self.pilot, lambda: self.app.ticks > before)
        await self.pilot.pause()

    async def press(self, *keys: str) -> None:
        await self.pilot.press(*keys)
        await self.pilot.pause()

    async def read(self) -> None:
        """Until the panel shows what its worker read."""
        await until(self.pilot, lambda: self.panel.read_at == self.panel.read_t)
        await self.pilot.pause()

    def text(self, selector: str) -> str:
        content = self.app.screen.query_one(selector, Static).content
        return content.plain if isinstance(content, Text) else str(content)


async def until(pilot: Pilot[None], cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.01)


@contextlib.asynccontextmanager
async def running(
    source: FakeSource | None, size: tuple[int, int] = (120, 40), fleet: FakeFleet | None = None
) -> AsyncIterator[Running]:
    fleet = fleet or small_fleet()
    monitor = FakeMonitor(fleet)
    session = MonitorSession(factory(monitor))
    app = GpuTuiApp(session, prevention=source)
    app.animation_level = "none"
    async with app.run_test(size=size) as pilot:
        r = Running(pilot, app, monitor, fleet, source)
        await r.tick()
        yield r
    await session.close()


def rows(r: Running) -> list[list[str]]:
    t = r.table
    return [[t.get_cell(k, c.key).plain.strip() for c in t.all_columns[:3]] for k in t.keys]


async def test_the_tab_lists_what_to_service_best_first_read_only_while_shown() -> None:
    source = FakeSource(fleet_days())
    async with running(source) as r:
        await r.tick(3)
        assert source.reads == 0  # not shown yet: the journal is not read
        await r.press("6")
        assert r.app.screen.query_one(TabbedContent).active == "prevention"
        await r.read()
        assert source.reads == 1
        assert r.app.focused is r.table
        assert rows(r) == [
            ["1", "gpu004", "critical"],
            ["2", "gpu003 GPU5", "critical"],
            ["3", "gpu001 GPU1", "warn"],
            ["4", "gpu002 GPU3", "warn"],
        ]
        status = r.text("#prevention-status")
        assert status.startswith("4 to service, 2 critical · 32 GPUs, 4 hosts, 14 days to ")
        # The highlighted item: the node whose GPUs brake together, its chart and advice.
        body = r.text("#prevention-body")
        assert body.startswith("gpu004   critical   fix power  the node's 8 GPUs")
        assert (
            "power_brake_node critical" in body and "advice: the node's GPUs brake together" in body
        )
        assert "┤" in body and "█" in body  # the chart of its days


async def test_the_journal_is_read_again_after_a_minute_of_fleet_time_or_on_r() -> None:
    source = FakeSource(fleet_days())
    async with running(source) as r:
        await r.press("6")
        await r.read()
        await r.tick(int(REFRESH_S) - 2)
        assert source.reads == 1
        await r.tick(2)
        await r.read()
        assert source.reads == 2
        await r.press("1")
        await r.tick(int(REFRESH_S) + 5)
        assert source.reads == 2  # hidden: nothing read
        await r.press("r")  # on the fleet table: not the tab's key
        assert source.reads == 2
        await r.press("6")
        await r.read()
        assert source.reads == 3  # caught up when shown again
        await r.press("r")
        await until(r.pilot, lambda: source.reads == 4)


async def test_a_read_that_took_long_waits_ten_times_as_long_for_the_next() -> None:
    source = FakeSource(fleet_days())
    async with running(source) as r:
        await r.press("6")
        await r.read()
        r.panel.read_cost_s = 12.0  # a fleet of many thousands of GPUs
        await r.tick(int(REFRESH_S) + 5)
        assert source.reads == 1
        await r.tick(60)
        await r.read()
        assert source.reads == 2


async def test_the_cursor_shows_each_items_findings_and_enter_opens_its_host() -> None:
    source = FakeSource(fleet_days())
    async with running(source) as r:
        await r.press("6")
        await r.read()
        await r.press("down")
        body = r.text("#prevention-body")
        assert body.startswith("gpu003 GPU5   critical   improve cooling")
        assert "gpu_hotter_than_peers critical  GPU5 runs" in body
        assert "advice: check this GPU's cooling" in body
        await r.press("down", "down")
        assert "ecc_corrected_rising" in r.text("#prevention-body")
        assert r.app.selected_host() == "gpu002"
        await r.press("enter")
        assert isinstance(r.app.screen, HostScreen) and r.app.screen.host == "gpu002"


async def test_without_a_journal_or_rollups_or_findings_it_says_so() -> None:
    async with running(None) as r:
        await r.press("6")
        assert "No journal in this session" in r.text("#prevention-body")
        assert not r.table.display
    async with running(FakeSource([])) as r:
        await r.press("6")
        await r.read()
        assert r.text("#prevention-body").startswith("No rollups yet")
    async with running(FakeSource(fleet_days(("gpu005", "gpu006")))) as r:
        await r.press("6")
        await r.read()
        assert r.text("#prevention-body").startswith(
            "Nothing to service: the trend rules found no GPU or node drifting in 16 GPUs on "
            "2 hosts over 14 days"
        )
    async with running(FakeSource([], error="database disk image is malformed")) as r:
        await r.press("6")
        await r.read()
        assert r.text("#prevention-body") == (
            "cannot read the journal: database disk image is malformed"
        )


async def test_host_text_is_never_markup() -> None:
    nasty = "[red]gpu[/red] :thumbs_up:"
    days = [msgspec.structs.replace(x, host=nasty) for x in fleet_days(("gpu002",))]
    async with running(FakeSource(days)) as r:
        await r.press("6")
        await r.read()
        assert rows(r)[0][1] == "[red]gpu[/red] :thumbs_up: GPU3"
        assert r.text("#prevention-body").startswith(nasty + " GPU3")


async def test_the_host_screen_charts_each_gpus_days_from_the_journal() -> None:
    source = FakeSource(fleet_days())
    async with running(source) as r:
        await r.press("6")
        await r.read()
        await r.press("down", "enter")
        screen = r.app.screen
        assert isinstance(screen, HostScreen) and screen.host == "gpu003"
        await until(r.pilot, lambda: "gpu003" in screen.days and bool(screen.days["gpu003"][1]))
        await r.pilot.pause()
        panels = {p.index: p for p in screen.query(GpuPanel)}
        assert len(panels[5].days) == DAYS and len(panels[0].days) == DAYS
        console = Console(width=120, color_system=None)
        with console.capture() as out:
            console.print(panels[5].render())
        text = out.get()
        assert re.search(r"^load/d +\d+ C at load +[▁▂▃▄▅▆▇█]{14}$", text, re.M), text
        assert re.search(r"^ECC/d +0 corrected +▁{14}$", text, re.M), text
        assert "14 days to" in text and "a day each (journal)" in text
        # The hot GPU's line climbs; a peer's stays level.
        hot = re.search(r"^load/d .* ([▁-█]{14})$", text, re.M)
        assert hot is not None and hot.group(1)[-1] > hot.group(1)[0]
        await r.tick()
        assert source.daily_reads == ["gpu003"]  # once a minute, not every tick


async def test_help_names_the_tab() -> None:
    async with running(None) as r:
        await r.press("question_mark")
        assert isinstance(r.app.screen, HelpScreen)
        console = Console(width=120, color_system=None)
        with console.capture() as out:
            console.print(r.app.screen.query_one("#help-body", Static).content)
        text = out.get()
        assert re.search(r"^ 6 +Prevention *$", text, re.M), text
        assert "Prevention tab (6)" in " ".join(text.split())


def scripted(
    size: tuple[int, int], keys: Sequence[str]
) -> tuple[GpuTuiApp, Callable[[Pilot[None]], Awaitable[None]]]:
    fleet = small_fleet()
    monitor = FakeMonitor(fleet)
    app = GpuTuiApp(MonitorSession(factory(monitor)), prevention=FakeSource(fleet_days()))
    app.animation_level = "none"

    async def feed(pilot: Pilot[None]) -> None:
        before = app.ticks
        monitor.push(fleet.advance())
        while app.ticks == before:
            await pilot.pause(0.01)
        await pilot.press("6")
        panel = app.fleet_screen.prevention_panel
        while panel.read_at is None:
            await pilot.pause(0.01)
        await pilot.press(*keys)
        await pilot.pause()

    return app, feed


def test_prevention_tab_80x24(snap_compare: SnapCompare) -> None:
    app, feed = scripted((80, 24), ["down"])
    assert snap_compare(app, terminal_size=(80, 24), run_before=feed)


def test_prevention_tab_200x50(snap_compare: SnapCompare) -> None:
    app, feed = scripted((200, 50), [])
    assert snap_compare(app, terminal_size=(200, 50), run_before=feed)


def test_host_screen_days_160x50(snap_compare: SnapCompare) -> None:
    fleet = small_fleet()
    monitor = FakeMonitor(fleet)
    app = GpuTuiApp(MonitorSession(factory(monitor)), prevention=FakeSource(fleet_days()))
    app.animation_level = "none"

    async def feed(pilot: Pilot[None]) -> None:
        before = app.ticks
        monitor.push(fleet.advance())
        while app.ticks == before:
            await pilot.pause(0.01)
        app.open_host("gpu003")
        screen = app.screen
        assert isinstance(screen, HostScreen)
        while not screen.days.get("gpu003", (0, {}))[1]:
            await pilot.pause(0.01)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(160, 50), run_before=feed)
