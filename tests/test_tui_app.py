"""The app on a scripted fleet: every binding and flow, checked on what the widgets show."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import pytest
from rich.color import Color
from rich.console import Console
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Static, TabbedContent

from gputui.core.model import Action, FleetSnapshot, Level
from gputui.tui.app import GpuTuiApp
from gputui.tui.gridview import GridMode
from gputui.tui.operator import ActionChoice, OnOutput, OperatorPort, Outcome, Prepared, RequestKind
from gputui.tui.screens.dialogs import ActionPicker, ConfirmDialog, PreviewDialog, ReasonDialog
from gputui.tui.screens.help import HelpScreen
from gputui.tui.screens.host import GpuPanel, HostScreen
from gputui.tui.screens.triage import TriageRunner, TriageScreen
from gputui.tui.session import MonitorSession
from gputui.tui.widgets.event_log import EventLog
from gputui.tui.widgets.fleet_table import FleetTable
from gputui.tui.widgets.gpu_grid import GpuGrid
from gputui.tui.widgets.key_bar import KeyBar, KeyEntry, key_line
from tests.fake_fleet import FakeFleet, FakeMonitor, R, factory, small_fleet

WORST_FIRST = [
    "gpu005",
    "gpu004",
    "gpu006",
    "gpu007",
    "gpu003",
    "gpu010",
    "gpu001",
    "gpu002",
    "gpu009",
    "gpu008",
]


# Clock texts in UTC whatever the machine's zone (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("utc")


@dataclass
class Running:
    pilot: Pilot[None]
    app: GpuTuiApp
    monitor: FakeMonitor
    fleet: FakeFleet

    @property
    def table(self) -> FleetTable:
        return self.app.fleet_screen.table

    async def tick(self, ticks: int = 1) -> None:
        """Advance the fleet, push its snapshot, and wait until the app has applied it."""
        await self.push(lambda: self.fleet.advance(ticks))

    async def push(self, make: Callable[[], object] | None = None) -> None:
        before = self.app.ticks
        snap = make() if make is not None else self.fleet.snapshot()
        self.monitor.push(snap)  # type: ignore[arg-type]
        await until(self.pilot, lambda: self.app.ticks > before)

    async def press(self, *keys: str) -> None:
        await self.pilot.press(*keys)
        await self.pilot.pause()


async def until(pilot: Pilot[None], cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.01)


@contextlib.asynccontextmanager
async def running(
    fleet: FakeFleet | None = None,
    size: tuple[int, int] = (120, 36),
    operator: OperatorPort | None = None,
    bell: bool = False,
    triage: TriageRunner | None = None,
) -> AsyncIterator[Running]:
    fleet = fleet or small_fleet()
    monitor = FakeMonitor(fleet)
    session = MonitorSession(factory(monitor))
    app = GpuTuiApp(session, operator=operator, bell=bell, triage=triage)
    app.animation_level = "none"
    async with app.run_test(size=size) as pilot:
        r = Running(pilot, app, monitor, fleet)
        await r.tick(3)
        yield r
    await session.close()


def plain(cell: object) -> str:
    """A table cell's text (cells are markup strings)."""
    return Text.from_markup(str(cell)).plain.strip()


def cell(r: Running, host: str, column: str) -> str:
    return plain(r.table.get_cell(host, column))


def static_text(r: Running | HostScreen, selector: str) -> str:
    root = r.app.screen if isinstance(r, Running) else r
    content = root.query_one(selector, Static).content
    if isinstance(content, str):
        return content
    if isinstance(content, Text):
        return content.plain
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(content)
    return console.export_text()


# -- fleet table ------------------------------------------------------------------------------


async def test_fleet_table_lists_every_host_worst_first_with_its_figures() -> None:
    async with running() as r:
        assert r.table.shown == WORST_FIRST
        assert cell(r, "gpu005", "state") == "failed"
        assert cell(r, "gpu005", "gpus") == "7/8"  # GPU3 fell off the bus
        assert cell(r, "gpu005", "why") == "GPU3 XID 79: GPU has fallen off the bus"
        assert int(cell(r, "gpu004", "temp").rstrip("C")) >= 88  # GPU5 runs hot
        assert cell(r, "gpu009", "gpus") == "4"
        assert cell(r, "gpu010", "state") == "connecting"
        assert cell(r, "gpu008", "state") == "marked-failed"
        summary = static_text(r, "#summary")
        assert "10 hosts 68 GPUs" in summary and "1 failed" in summary and "3 ok" in summary


async def test_stale_and_unreachable_rows_keep_last_values_dimmed_with_their_age() -> None:
    async with running() as r:
        await r.tick(40)
        row = r.table.get_row("gpu006")
        assert plain(row[3]) != "-"  # last utilisation kept
        assert all(str(c).startswith("[dim]") for c in row[2:7])
        assert cell(r, "gpu006", "age") == "43s"
        assert cell(r, "gpu007", "why") == "no sample for 12 s"
        assert cell(r, "gpu001", "age") == "now"


async def test_ticks_update_cells_in_place_never_rebuilding_the_table() -> None:
    async with running() as r:
        calls: dict[str, int] = {"clear": 0, "add_row": 0, "update_cell": 0}
        table = r.table
        for name in calls:
            original = getattr(table, name)

            def counted(
                *a: object, _n: str = name, _f: Callable[..., object] = original, **k: object
            ) -> object:
                calls[_n] += 1
                return _f(*a, **k)

            setattr(table, name, counted)
        await r.tick()
        assert calls["clear"] == 0 and calls["add_row"] == 0
        assert 0 < calls["update_cell"] < 10 * 9  # only the cells whose text changed
        assert r.app.tick_ms[-1] < 1000


async def test_rows_out_of_view_are_brought_up_to_date_when_scrolled_to() -> None:
    from tests.fake_fleet import big_fleet

    fleet = big_fleet(300)
    async with running(fleet, size=(100, 30)) as r:
        fleet.scripts["node0300"].util = 3.0  # an idle host at the bottom of the table
        await r.tick()
        assert r.table.shown[-1] == "node0300"
        await r.press("end")  # into view: its row shows this tick's figures
        mean = int(cell(r, "node0300", "util").split("/")[0])
        assert mean <= 11, cell(r, "node0300", "util")


async def test_sort_keys_cycle_and_reverse_and_the_header_sorts() -> None:
    async with running() as r:
        await r.press("s")
        assert r.table.sort_key.value == "host"
        assert r.table.shown == sorted(WORST_FIRST)
        await r.press("S")
        assert r.table.shown == sorted(WORST_FIRST, reverse=True)
        assert "sorted by host (reversed)" in static_text(r, "#fleet-status")
        await r.press("s")
        assert r.table.sort_key.value == "util"
        assert r.table.shown[0] == "gpu002"  # the busiest host
        # A click on a column header sorts by it.
        x = r.table.column_x("temp")
        await r.pilot.click(FleetTable, offset=(x + 2, 0))
        await r.pilot.pause()
        assert r.table.sort_key.value == "temp"
        assert r.table.shown[0] == "gpu004"


async def test_filter_by_text_state_and_label_then_clear() -> None:
    async with running() as r:
        await r.press("slash")
        box = r.app.focused
        assert box is not None and box.id == "fleet-filter"
        await r.press(*"is:cr")  # typed: the table follows each key
        assert r.table.shown == ["gpu004"]
        await r.press("enter")
        assert isinstance(r.app.focused, FleetTable)
        assert "1 of 10 hosts" in static_text(r, "#fleet-status")
        await r.tick()  # the filter holds across ticks
        assert r.table.shown == ["gpu004"]
        await r.press("slash")
        box.value = "rack=r3"  # type: ignore[attr-defined]
        await r.pilot.pause()
        assert r.table.shown == ["gpu007", "gpu009", "gpu008"]
        box.value = "xid -state:ok"  # type: ignore[attr-defined]
        await r.pilot.pause()
        assert r.table.shown == ["gpu005"]
        await r.press("escape")
        assert len(r.table.shown) == 10
        assert isinstance(r.app.focused, FleetTable)


# -- tabs, grid -------------------------------------------------------------------------------


async def test_number_keys_switch_tabs_and_focus_their_widget() -> None:
    async with running() as r:
        tabs = r.app.screen.query_one(TabbedContent)
        for key, tab in (("2", "grid"), ("3", "risk"), ("4", "events"), ("1", "fleet")):
            await r.press(key)
            assert tabs.active == tab
        assert isinstance(r.app.focused, FleetTable)


async def test_grid_draws_every_gpu_moves_host_by_host_and_opens_the_chosen_host() -> None:
    async with running() as r:
        await r.press("2")
        grid = r.app.screen.query_one(GpuGrid)
        assert r.app.focused is grid
        assert grid.selected_host == "gpu005"  # the table's selection carries over
        assert [len(grid.colors_of(i)) for i in range(len(grid.hosts))] == [8] * 8 + [4, 8]
        legend = static_text(r, "#grid-legend")
        assert "10 hosts, 68 GPUs" in legend and "verdict" in legend
        # Verdict colours: gpu005's lost GPU3 is "failed", gpu004's GPU5 "critical".
        palette = grid.palette
        assert grid.colors_of(4)[3] == palette.color("failed")
        assert grid.colors_of(3)[5] == palette.color("critical")
        assert grid.colors_of(5) == [palette.color("unreachable")] * 8
        await r.press("right", "right")
        assert grid.selected_host == "gpu007"
        assert "gpu007" in static_text(r, "#grid-status")
        await r.press("left", "home")
        assert grid.selected_host == "gpu001"
        await r.press("m")
        assert grid.mode is GridMode.UTIL and "util" in static_text(r, "#grid-legend")
        for mode in (GridMode.TEMP, GridMode.POWER, GridMode.MEMORY, GridMode.VERDICT):
            await r.press("m")
            assert grid.mode is mode
        await r.press("enter")
        assert isinstance(r.app.screen, HostScreen) and r.app.screen.host == "gpu001"


async def test_a_click_on_a_grid_cell_opens_its_host() -> None:
    async with running() as r:
        await r.press("2")
        # Blocks are a gap and 4 characters: the third host's block starts at x = 10.
        await r.pilot.click(GpuGrid, offset=(12, 0))
        await until(r.pilot, lambda: isinstance(r.app.screen, HostScreen))
        assert r.app.screen.host == "gpu003"  # type: ignore[attr-defined]


async def test_thousand_hosts_of_eight_gpus_fit_one_200x50_screen() -> None:
    from tests.fake_fleet import big_fleet

    async with running(big_fleet(1000), size=(200, 50)) as r:
        await r.press("2")
        grid = r.app.screen.query_one(GpuGrid)
        lines = len(grid._layout.lines)
        assert grid.max_scroll_y == 0 and lines <= grid.scrollable_content_region.height
        assert sum(len(grid.colors_of(i)) for i in range(len(grid.hosts))) == 8000


# -- host screen ------------------------------------------------------------------------------


async def test_enter_opens_the_host_screen_with_reasons_gpu_panels_and_history() -> None:
    async with running() as r:
        r.fleet.event(
            "gpu005", "xid", "GPU3 XID 79: GPU has fallen off the bus", Level.FAILED, 3, 79
        )
        await r.tick(7)  # tick 10 carries the slow signals (every 10th sample)
        await r.press("enter")
        screen = r.app.screen
        assert isinstance(screen, HostScreen) and screen.host == "gpu005"
        title = static_text(screen, "#host-title")
        assert "gpu005" in title and "failed" in title and "driver 550.54.15" in title
        reasons = static_text(screen, "#host-reasons")
        assert "XID 79" in reasons and "reboot node" in reasons and "latched" in reasons
        panels = list(screen.query(GpuPanel))
        assert len(panels) == 8
        lost = panels[3].render()
        assert isinstance(lost, Text) and "lost: GPU is lost" in lost.plain
        body = panels[0].render()
        assert isinstance(body, Text)
        text = body.plain
        assert "util" in text and any(ch in text for ch in "▂▃▄▅▆▇█")  # a sparkline
        assert "ECC    volatile 0 corr / 0 uncorr" in text
        assert "PCIe   gen5 x16 (max gen5 x16)" in text
        assert "NVLink 18/18 links active" in text and "4100 python" in text
        assert panels[0].border_title == "GPU0 NVIDIA H100 80GB HBM3 · ok"
        assert "XID 79" in static_text(screen, "#host-events")


async def test_clock_event_reasons_are_shown_in_words() -> None:
    async with running() as r:
        await r.press("s")  # by host: gpu002 (util 100, power capped) is the second row
        await r.press("down", "enter")
        screen = r.app.screen
        assert isinstance(screen, HostScreen) and screen.host == "gpu002"
        body = screen.query(GpuPanel).first().render()
        assert isinstance(body, Text) and "events software power cap" in body.plain


async def test_host_screen_follows_ticks_and_steps_through_hosts() -> None:
    async with running() as r:
        await r.press("enter")
        screen = r.app.screen
        assert isinstance(screen, HostScreen)
        r.fleet.scripts["gpu005"].reasons.append(
            R("temp_high", Level.WARN, "GPU1 temperature 86 C", 1)
        )
        await r.tick()
        assert "GPU1 temperature 86 C" in static_text(screen, "#host-reasons")
        await r.press("right_square_bracket")
        assert screen.host == "gpu004"
        await r.press("left_square_bracket", "left_square_bracket")
        assert screen.host == "gpu008"  # wraps round the table's order
        await r.press("escape")
        assert not isinstance(r.app.screen, HostScreen)


async def test_a_click_selects_a_row_and_a_second_click_opens_it() -> None:
    async with running() as r:
        await r.pilot.click(FleetTable, offset=(3, 3))  # header, then the third row
        await r.pilot.pause()
        assert r.table.selected_host == "gpu006"
        await r.pilot.click(FleetTable, offset=(3, 3))
        await until(r.pilot, lambda: isinstance(r.app.screen, HostScreen))
        assert r.app.screen.host == "gpu006"  # type: ignore[attr-defined]
        await r.press("backspace")
        assert not isinstance(r.app.screen, HostScreen)


# -- events and announcements -----------------------------------------------------------------


async def test_event_log_is_newest_first_and_filterable() -> None:
    async with running() as r:
        r.fleet.event("gpu003", "xid", "GPU2 XID 13: graphics engine exception", Level.WARN, 2, 13)
        await r.tick()
        r.fleet.event("gpu001", "state", "streaming -> stale", Level.WARN)
        await r.tick()
        await r.press("4")
        log = r.app.screen.query_one(EventLog)
        lines = log.lines()
        assert "streaming -> stale" in lines[0] and "XID 13" in lines[1]
        assert lines[0].startswith("22:13:24 warn     gpu001")
        await r.press("slash", *"kind:xid")
        assert log.shown == 1 and "XID 13" in log.lines()[0]
        assert "1 of 2 events" in static_text(r, "#events-status")
        await r.press("escape")
        assert log.shown == 2


async def test_a_host_that_gets_worse_is_announced_without_taking_focus() -> None:
    async with running(bell=True) as r:
        rang: list[bool] = []
        r.app.bell = lambda: rang.append(True)  # type: ignore[method-assign]
        focused = r.app.focused
        r.fleet.scripts["gpu001"].reasons = [
            R("hw_slowdown", Level.CRITICAL, "GPU0 hardware slowdown", 0, Action.DRAIN)
        ]
        await r.tick()
        assert r.app.focused is focused and not isinstance(r.app.screen, HostScreen)
        assert rang == [True]
        assert any("1 host worse: gpu001" in n.message for n in r.app._notifications)
        line = r.app.fleet_screen.event_log.lines()[0]
        assert "alert" in line and "worse: ok -> critical: GPU0 hardware slowdown" in line
        await r.press("b")  # bell off
        r.fleet.scripts["gpu002"].reasons = [R("temp_high", Level.WARN, "GPU0 warm", 0)]
        await r.tick()
        assert rang == [True]
        assert "gpu002" in r.app.fleet_screen.event_log.lines()[0]


# -- operator flows ---------------------------------------------------------------------------


async def test_mark_failed_asks_a_reason_prefilled_from_the_worst_one() -> None:
    async with running() as r:
        await r.press("x")  # on the top row: gpu005, XID 79
        dialog = r.app.screen
        assert isinstance(dialog, ReasonDialog) and dialog.host == "gpu005"
        box = dialog.query_one("#reason")
        assert box.value == "GPU3 XID 79: GPU has fallen off the bus"  # type: ignore[attr-defined]
        await r.press("enter")
        await until(r.pilot, lambda: cell(r, "gpu005", "state") == "marked-failed")
        assert r.table.shown[-2:] == ["gpu005", "gpu008"]  # marked hosts sort last
        assert "mark gpu005 failed" in r.app.fleet_screen.event_log.lines()[0]
        assert "this session only" in r.app.fleet_screen.event_log.lines()[0]
        # The top row is now the next worst host; the marked one needs no second mark.
        assert r.table.selected_host == "gpu004"
        r.table.select_host("gpu005")
        await r.press("x")
        assert not isinstance(r.app.screen, ReasonDialog)


async def test_mark_failed_can_be_cancelled_and_needs_a_reason() -> None:
    async with running() as r:
        await r.press("s", "down", "x")  # by host: gpu002, healthy, so no reason to prefill
        dialog = r.app.screen
        assert isinstance(dialog, ReasonDialog) and dialog.host == "gpu002"
        assert dialog.query_one("#ok").disabled  # type: ignore[attr-defined]
        await r.press("enter")  # an empty reason is not accepted
        assert r.app.screen is dialog
        await r.press("escape")
        assert not r.monitor.fleet.scripts["gpu002"].marked_failed


async def test_resume_previews_then_returns_the_host() -> None:
    async with running() as r:
        r.table.select_host("gpu008")
        await r.press("u")
        dialog = r.app.screen
        assert isinstance(dialog, PreviewDialog) and "return gpu008 to service" in dialog.question
        await r.press("y")
        await until(r.pilot, lambda: cell(r, "gpu008", "state") == "ok")
        await r.press("u")  # not marked any more
        assert not isinstance(r.app.screen, PreviewDialog)


async def test_clear_latched_reasons_after_confirmation() -> None:
    async with running() as r:
        await r.press("c")
        assert isinstance(r.app.screen, ConfirmDialog)
        await r.press("n")
        assert r.monitor.cleared == []
        await r.press("c", "y")
        await until(r.pilot, lambda: r.monitor.cleared == [("gpu005", None)])
        assert "latched reasons cleared" in r.app.fleet_screen.event_log.lines()[0]


@dataclass
class ScriptedOperator:
    """An OperatorPort that records what it is asked and prints two lines per run."""

    calls: list[tuple[str, str, str, str]] = field(default_factory=list)
    runs: list[Prepared] = field(default_factory=list)
    watch_only: str | None = None

    @property
    def journaled(self) -> bool:
        return True

    @property
    def refusal(self) -> str | None:
        return self.watch_only

    def actions(self, host: str) -> Sequence[ActionChoice]:
        return [ActionChoice("drain", "scontrol drain"), ActionChoice("requeue", "requeue jobs")]

    def spare_for(self, host: str, snapshot: FleetSnapshot | None) -> str | None:
        return None

    async def prepare(
        self,
        kind: RequestKind,
        host: str,
        *,
        reason: str = "",
        action: str = "",
        force: bool = False,
        spare: str = "",
    ) -> Prepared:
        self.calls.append((kind, host, reason, action))
        argv = f"[local] scontrol update NodeName={host} State=DRAIN Reason=gputui: {reason}"
        return Prepared(kind, host, f"run {action} on {host}", (argv,), commands=1)

    async def run(self, prepared: Prepared, on_output: OnOutput) -> Outcome:
        self.runs.append(prepared)
        on_output("[drain] $ scontrol update ...")
        on_output("[drain]   done")
        return Outcome(True, f"{prepared.summary}: done (journaled)")


async def test_run_action_picks_previews_the_argv_confirms_and_streams_output() -> None:
    operator = ScriptedOperator()
    async with running(operator=operator) as r:
        await r.press("a")
        picker = r.app.screen
        assert isinstance(picker, ActionPicker) and [c.name for c in picker.choices] == [
            "drain",
            "requeue",
        ]
        await r.press("enter")  # the first action, with the prefilled reason
        preview = r.app.screen
        assert isinstance(preview, PreviewDialog)
        assert operator.calls == [
            ("action", "gpu005", "GPU3 XID 79: GPU has fallen off the bus", "drain")
        ]
        shown = str(preview.query_one("#preview", Static).content)
        assert "scontrol update NodeName=gpu005 State=DRAIN Reason=gputui: GPU3 XID 79" in shown
        await r.press("n")  # cancelled: nothing runs
        assert operator.runs == []
        await r.press("a", "down", "enter", "y")
        await until(r.pilot, lambda: len(operator.runs) == 1)
        await r.pilot.pause()
        lines = r.app.fleet_screen.event_log.lines()
        assert "run requeue on gpu005: done (journaled)" in lines[0]
        assert "[drain]   done" in lines[1] and "output" in lines[1]


async def test_watch_only_refuses_at_once_before_any_dialog() -> None:
    """Read-only: x, u and a say why at once; no reason, picker or preview is asked first."""
    operator = ScriptedOperator(watch_only="read-only: this gputui only watches")
    async with running(operator=operator) as r:
        for key in ("x", "u", "a"):
            await r.press(key)
            assert r.app.screen is r.app.fleet_screen, key
        assert operator.calls == [] and operator.runs == []
        toasts = [str(n.message) for n in r.app._notifications]
        assert toasts.count("read-only: this gputui only watches") == 3


async def test_actions_without_an_ops_layer_are_refused_with_a_reason() -> None:
    async with running() as r:
        await r.press("a")
        assert not isinstance(r.app.screen, ActionPicker)
        assert any("no actions are configured" in n.message for n in r.app._notifications)


async def test_ops_layer_journals_the_mark_and_runs_the_on_fail_action(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    from gputui.config import Config, HostGroup, HostSpec
    from gputui.ops.actions import OperatorActions
    from gputui.ops.journal import Journal
    from gputui.tui.ops_operator import OpsOperator

    fleet = small_fleet()
    names = tuple(n for n in fleet.scripts if n != "gpu009")
    config = Config(
        path=Path("test"),
        hosts=[HostSpec(name=n, group="train") for n in names]
        + [HostSpec(name="gpu009", group="train", spare=True)],
        groups={"train": HostGroup(name="train", hosts=names, spares=("gpu009",))},
        actions={"note": {"argv": ["echo", "drained {node}: {reason}"], "on_fail": True}},
    )
    journal = Journal.open(tmp_path / "journal.sqlite3")
    holder: list[OperatorActions] = []
    async with running(fleet, operator=OpsOperator(lambda: holder[0] if holder else None)) as r:
        holder.append(OperatorActions(config, journal, monitor=r.monitor))  # type: ignore[arg-type]
        await r.press("x", "enter")  # prefilled reason; then the on_fail action's preview
        preview = r.app.screen
        assert isinstance(preview, PreviewDialog)
        assert "echo 'drained gpu005: GPU3 XID 79: GPU has fallen off the bus'" in str(
            preview.query_one("#preview", Static).content
        )
        await r.press("y")
        await until(r.pilot, lambda: cell(r, "gpu005", "state") == "marked-failed")
        # Then the group's healthy spare is offered.
        await until(r.pilot, lambda: isinstance(r.app.screen, PreviewDialog))
        offer = r.app.screen
        assert isinstance(offer, PreviewDialog)
        assert offer.question == "Bring spare gpu009 into service in place of gpu005?"
        await r.press("y")
        await until(r.pilot, lambda: "spare gpu009" in r.app.fleet_screen.event_log.lines()[0])
        lines = r.app.fleet_screen.event_log.lines()
        assert any("drained gpu005" in line for line in lines)
        assert any("mark gpu005 failed" in line and "done (journaled)" in line for line in lines)
        assert journal.marked_failed() == {"gpu005"}
        assert journal.node_states()["gpu009"].state == "spare_active"
        await holder[0].aclose()
    journal.close()


async def test_demo_brings_a_spare_in_and_the_table_shows_the_spares(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`gputui demo`'s config and actions on the scripted fleet: its last two hosts are spares,
    recognisable in the table; marking a host failed drains it, then brings the healthy spare
    in through the demo's activate-spare, both written to the stand-in scheduler's log."""
    from gputui.cli.demo_setup import demo_config
    from gputui.ops.actions import OperatorActions
    from gputui.ops.journal import Journal
    from gputui.tui.ops_operator import OpsOperator

    fleet = small_fleet()
    log = tmp_path / "scheduler.log"
    config = demo_config(list(fleet.scripts), log)
    assert config.groups["demo"].spares == ("gpu009", "gpu010")
    for name in config.groups["demo"].spares:
        fleet.scripts[name].spare = True
    journal = Journal.open(tmp_path / "journal.sqlite3")
    holder: list[OperatorActions] = []
    async with running(fleet, operator=OpsOperator(lambda: holder[0] if holder else None)) as r:
        holder.append(OperatorActions(config, journal, monitor=r.monitor))  # type: ignore[arg-type]
        assert cell(r, "gpu009", "state") == "ok" and cell(r, "gpu009", "why") == "spare"
        assert cell(r, "gpu010", "state") == "connecting" and cell(r, "gpu010", "why") == "spare"
        assert cell(r, "gpu001", "why") == ""
        await r.press("slash", *"spare", "enter")  # the word finds the spares
        assert sorted(r.table.shown) == ["gpu009", "gpu010"]
        await r.press("slash", "escape")
        await r.press("x", "enter")  # the prefilled reason; then the drain's preview
        assert isinstance(r.app.screen, PreviewDialog)
        await r.press("y")
        await until(r.pilot, lambda: cell(r, "gpu005", "state") == "marked-failed")
        # gpu010 has not said hello: the first healthy spare is gpu009.
        await until(r.pilot, lambda: isinstance(r.app.screen, PreviewDialog))
        offer = r.app.screen
        assert isinstance(offer, PreviewDialog)
        assert offer.question == "Bring spare gpu009 into service in place of gpu005?"
        shown = str(offer.query_one("#preview", Static).content)
        # The command the demo stands for, not its stand-in's workings; on the spare it names.
        assert "demo-slurm/scontrol update NodeName=gpu009 State=RESUME" in shown
        assert "sh -c" not in shown and "printf" not in shown
        assert "activate-spare on gpu009 in place of gpu005" in shown
        await r.press("y")
        await until(r.pilot, lambda: "spare gpu009" in r.app.fleet_screen.event_log.lines()[0])
        assert "done (journaled)" in r.app.fleet_screen.event_log.lines()[0]
        assert journal.node_states()["gpu009"].state == "spare_active"
        await r.tick()
        assert cell(r, "gpu009", "state") == "ok"
        assert cell(r, "gpu009", "why") == "spare for gpu005"  # in service in its place
        assert cell(r, "gpu010", "why") == "spare"
        r.table.select_host("gpu009")
        await r.press("enter")
        assert isinstance(r.app.screen, HostScreen)
        assert "spare in service for gpu005" in static_text(r.app.screen, "#host-title")
        await holder[0].aclose()
    assert log.read_text().splitlines() == [
        "demo scheduler: scontrol update NodeName=gpu005 State=DRAIN "
        "Reason=gputui: GPU3 XID 79: GPU has fallen off the bus",
        "demo scheduler: scontrol update NodeName=gpu009 State=RESUME",
    ]
    journal.close()


# -- help, palette, theme, risk, quit ---------------------------------------------------------


async def test_a_new_theme_recolours_the_states() -> None:
    async with running() as r:
        r.app.theme = "nord"
        await r.pilot.pause()
        nord = r.app.current_theme
        assert nord.success is not None
        assert r.app.palette.color("ok").triplet == Color.parse(nord.success).triplet
        ok_cell = str(r.table.get_cell("gpu001", "state"))
        assert Color.parse(nord.success).name.lower() in ok_cell.lower()


async def test_help_lists_the_keys_of_every_screen() -> None:
    async with running() as r:
        await r.press("question_mark")
        assert isinstance(r.app.screen, HelpScreen)
        text = static_text(r, "#help-body")
        for key, does in (
            ("q", "Quit"),
            ("x", "Mark failed"),
            ("/", "Filter"),
            ("2", "Grid"),
            ("[", "Prev host"),
            ("m", "colour by verdict"),
            ("ctrl+p", "open any host"),
        ):
            assert key in text and does in text, does
        await r.press("escape")
        assert not isinstance(r.app.screen, HelpScreen)


async def test_command_palette_has_every_action_and_opens_hosts_by_name() -> None:
    async with running() as r:
        titles = [c.title for c in r.app.get_system_commands(r.app.screen)]
        for title in (
            "Show Fleet table",
            "Show GPU grid",
            "Show Risk panel",
            "Show Event log",
            "Filter",
            "Sort",
            "Reverse sort",
            "Grid colour",
            "Open selected host",
            "Mark host failed",
            "Resume host",
            "Run action",
            "Clear latched reasons",
            "Toggle bell",
            "Help",
            "Quit",
        ):
            assert title in titles
        await r.press("ctrl+p")
        await r.press(*"gpu009")
        await r.pilot.pause(0.3)
        await r.press("enter")
        await until(r.pilot, lambda: isinstance(r.app.screen, HostScreen))
        assert r.app.screen.host == "gpu009"  # type: ignore[attr-defined]


async def test_risk_panel_shows_the_fleet_odds_and_the_heuristic_apart() -> None:
    async with running() as r:
        await r.press("3")
        await until(r.pilot, lambda: "P(>= 1 failure)" in static_text(r, "#risk-body"))
        text = static_text(r, "#risk-body")
        assert "60 GPUs monitored on 8 hosts" in text  # marked-failed and unseen hosts left out
        assert "2.00e-05/GPU-h (prior" in text
        assert "P(>= 1 failure) in 24 h     0.028" in text  # 1 - exp(-60 x 2e-5 x 24)
        assert "Health-adjusted (heuristic, not calibrated)" in text


async def test_q_stops_the_monitor_and_exits() -> None:
    async with running() as r:
        await r.pilot.press("q")
        await until(r.pilot, lambda: r.monitor.stopped)
        assert r.app.session.closing


async def test_a_monitor_that_cannot_start_is_shown_not_raised() -> None:
    @contextlib.asynccontextmanager
    async def broken() -> AsyncIterator[FakeMonitor]:
        raise OSError("demo SSH servers failed to start")
        yield  # pragma: no cover

    session = MonitorSession(broken)  # type: ignore[arg-type]
    app = GpuTuiApp(session)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: session.error is not None)
        await pilot.pause()
        assert "demo SSH servers failed to start" in app.fleet_screen.note
        assert "the monitor stopped" in app.fleet_screen.event_log.lines()[0]
    await session.close()


async def test_demo_mark_failed_writes_the_scheduler_log_journals_and_leaves_risk(
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    """Marking a node failed runs the demo's file-writing drain, the journal records it, and
    the risk panel stops counting the node's GPUs."""
    from pathlib import Path

    from gputui.cli.demo_setup import demo_actions
    from gputui.config import Config, HostGroup, HostSpec
    from gputui.ops.actions import OperatorActions
    from gputui.ops.journal import Journal
    from gputui.tui.ops_operator import OpsOperator

    fleet = small_fleet()
    names = tuple(fleet.scripts)
    log = tmp_path / "scheduler.log"
    config = Config(
        path=Path("demo"),
        hosts=[HostSpec(name=n, group="demo") for n in names],
        groups={"demo": HostGroup(name="demo", hosts=names)},
        actions=demo_actions(log),
    )
    journal = Journal.open(tmp_path / "journal.sqlite3")
    holder: list[OperatorActions] = []
    async with running(fleet, operator=OpsOperator(lambda: holder[0] if holder else None)) as r:
        holder.append(OperatorActions(config, journal, monitor=r.monitor))  # type: ignore[arg-type]
        await r.press("3")
        await until(r.pilot, lambda: "GPUs monitored" in static_text(r, "#risk-body"))
        before = static_text(r, "#risk-body")
        await r.press("1", "x", "enter")  # reason prefilled from the worst reason
        assert isinstance(r.app.screen, PreviewDialog)
        await r.press("y")
        await until(r.pilot, lambda: cell(r, "gpu005", "state") == "marked-failed")
        await until(r.pilot, lambda: log.exists())
        await r.press("3")
        await until(r.pilot, lambda: static_text(r, "#risk-body") != before)
        after = static_text(r, "#risk-body")
        await holder[0].aclose()
    assert log.read_text() == (
        "demo scheduler: scontrol update NodeName=gpu005 State=DRAIN "
        "Reason=gputui: GPU3 XID 79: GPU has fallen off the bus\n"
    )
    assert journal.marked_failed() == {"gpu005"}
    runs = journal.runs(node="gpu005")
    assert runs and runs[0].exit_code == 0 and runs[0].argv[-1].startswith("Reason=gputui: ")
    assert "60 GPUs monitored on 8 hosts" in before and "52 GPUs monitored on 7 hosts" in after
    journal.close()


async def test_t_opens_the_selected_hosts_triage_report() -> None:
    asked: list[tuple[str, int]] = []

    async def runner(host: str, width: int) -> str:
        asked.append((host, width))
        return f"TRIAGE {host}: failed -> drain and reboot"

    async with running(triage=runner) as r:
        await r.press("t")
        assert isinstance(r.app.screen, TriageScreen)
        await until(r.pilot, lambda: r.app.screen.report_text is not None)  # type: ignore[attr-defined]
        body = static_text(r, "#triage-body")
        host = r.app.screen.host  # type: ignore[attr-defined]
        assert body == f"TRIAGE {host}: failed -> drain and reboot"
        # The report is rendered for the width it is shown in (less the scrollbar's column).
        assert asked == [(host, r.app.screen.query_one("#triage-body").size.width)]
        assert asked[0][1] == 107  # 120 columns: 95% of them, less border, padding, scrollbar
        await r.press("escape")
        assert not isinstance(r.app.screen, TriageScreen)


async def test_t_without_triage_says_so() -> None:
    async with running() as r:
        await r.press("t")
        assert not isinstance(r.app.screen, TriageScreen)
        assert any("triage is not available" in n.message for n in r.app._notifications)


async def test_a_wide_triage_report_fits_an_80_column_screen_unwrapped() -> None:
    async def runner(host: str, width: int) -> str:
        return "\n".join(f"{i:<{width}}".replace(" ", "-") for i in range(30))

    async with running(size=(80, 24), triage=runner) as r:
        await r.press("t")
        screen = r.app.screen
        assert isinstance(screen, TriageScreen)
        await until(r.pilot, lambda: screen.report_text is not None)
        await r.pilot.pause()
        body = screen.query_one("#triage-body", Static)
        assert body.size.width == screen.report_width() == 69
        assert body.size.height == 30  # one screen line per report line: none wrapped


# -- the key bar ------------------------------------------------------------------------------


def key_bar(r: Running) -> str:
    return r.app.screen.query_one(KeyBar).content.plain  # type: ignore[union-attr]


HOST_KEYS = ("esc Back", "[ ] Prev/next", "q Quit", "? Help", "x Mark failed", "u Resume")
FLEET_KEYS = ("/ Filter", "s Sort", "q Quit", "? Help", "x Mark failed", "u Resume")


@pytest.mark.parametrize("width", [80, 120])
async def test_every_key_of_every_screen_is_in_the_key_bar(width: int) -> None:
    async with running(size=(width, 24)) as r:
        for keys, where in (
            (FLEET_KEYS, "fleet"),
            # The grid keeps fleet order: no sort to offer there.
            (("⏎ Open", *(k for k in FLEET_KEYS if k != "s Sort")), "grid"),
            (HOST_KEYS, "host"),
        ):
            if where == "grid":
                await r.press("2")
            elif where == "host":
                await r.press("1", "enter")
                assert isinstance(r.app.screen, HostScreen)
            bar = key_bar(r).rstrip()  # a last space past the edge is left out
            assert len(bar) <= width, (where, bar)
            for shown in (*keys, "a Action", "^p palette"):
                assert shown in bar, (where, shown, bar)
            if where == "grid":
                assert "Sort" not in bar, bar
            if width == 120:  # room for the padded form: entries two spaces apart
                assert "Mark failed  u Resume" in bar


async def test_a_click_on_a_grouped_key_presses_that_key() -> None:
    async with running(size=(80, 24)) as r:
        await r.press("enter")
        screen = r.app.screen
        assert isinstance(screen, HostScreen) and screen.host == "gpu005"
        offset = key_bar(r).index("]")
        await r.pilot.click(KeyBar, offset=(offset, 0))
        await until(r.pilot, lambda: screen.host == "gpu004")  # the next host


def test_the_key_line_closes_up_then_leaves_the_palette_out() -> None:
    entries = (
        KeyEntry((("escape", "esc"),), "Back"),
        KeyEntry((("left_square_bracket", "["), ("right_square_bracket", "]")), "Prev/next"),
        KeyEntry((("x", "x"),), "Mark failed", enabled=False),
    )
    padded = " esc Back  [ ] Prev/next  x Mark failed  ^p palette "
    assert key_line(entries, 80).plain == padded
    assert key_line(entries, len(padded) - 1).plain == padded  # less the last space: it fits
    compact = " esc Back [ ] Prev/next x Mark failed ^p palette"
    assert key_line(entries, len(padded) - 2).plain == compact
    assert key_line(entries, len(compact) - 1).plain == " esc Back [ ] Prev/next x Mark failed"
    assert key_line(entries, 80, palette=False).plain == " esc Back  [ ] Prev/next  x Mark failed "


def test_light_sort_keys_order_as_the_rows_do() -> None:
    # A tick orders the table by light_sort_key (no more than the order needs) and shows rows
    # worked out by host_row: both must agree, or rows scrolled into view would be misplaced.
    from gputui.render.report import host_label
    from gputui.tui.fleetview import SORT_KEYS, SortKey, host_row, light_sort_key
    from tests.fake_fleet import big_fleet

    snapshot = big_fleet(300).advance(2)
    now = snapshot.t + 4.0
    for key in SortKey:
        for host in snapshot.hosts:
            row = host_row(host, now)
            assert light_sort_key(key, host, host_label(host), now) == SORT_KEYS[key](row), (
                key,
                host.name,
            )
