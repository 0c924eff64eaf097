"""Host text in the TUI: the fleet table, grid, event log, host screen, dialogs, toasts and the
triage report show it as written, never as markup or emoji, and without control characters."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from rich.text import Text
from textual.widgets import Input, Static

import tests.fake_fleet
from gputui.core.model import Action, FleetSnapshot, Level
from gputui.core.text import plain
from gputui.render.triage import triage_table
from gputui.tui.operator import ActionChoice, OnOutput, Outcome, Prepared, RequestKind
from gputui.tui.screens.dialogs import PreviewDialog, ReasonDialog
from gputui.tui.screens.host import GpuPanel, HostScreen
from gputui.tui.screens.triage import TriageScreen
from tests.fake_fleet import FakeFleet, R, small_fleet
from tests.test_host_text import MARKUP, NASTY, assert_literal, assert_safe, nasty_triage_report
from tests.test_tui_app import Running, running, static_text, until

pytestmark = pytest.mark.usefixtures("utc")

# Short enough to be seen whole in a fleet-table cell.
SHORT = ":ab: 0000:ab:00.0 [/x] [b]y[/]\x1b]0;t\x07\x9b2J"


def nasty_fleet() -> FakeFleet:
    fleet = small_fleet()
    fleet.scripts["gpu001"].reasons = [R("agent_error", Level.CRITICAL, NASTY, 0, Action.DRAIN)]
    fleet.scripts["gpu003"].reasons = [R("agent_error", Level.WARN, SHORT, 2)]
    fleet.scripts["gpu006"].state_reason = NASTY
    return fleet


def row_text(r: Running, host: str) -> str:
    """The fleet table's row of `host` as drawn on screen."""
    y = r.table.get_row_index(host) + 1 - int(r.table.scroll_y)  # under the header
    return "".join(segment.text for segment in r.table.render_line(y))


async def test_fleet_table_and_grid_show_host_text_as_written() -> None:
    async with running(nasty_fleet(), size=(200, 40)) as r:
        await r.tick()
        row = row_text(r, "gpu003")
        assert ":ab: 0000:ab:00.0 [/x] [b]y[/]" in row  # no emoji, no style
        assert_safe(row)
        row = row_text(r, "gpu001")
        assert MARKUP[:30] in row
        assert_safe(row)
        await r.press("2")
        r.app.fleet_screen.grid_panel.select_host("gpu006")
        await r.pilot.pause()
        status = static_text(r, "#grid-status")
        assert_literal(status)


async def test_event_log_and_toasts_show_host_text_as_written() -> None:
    fleet = nasty_fleet()
    async with running(fleet, size=(400, 40)) as r:
        fleet.event("gpu003", "xid", NASTY, Level.CRITICAL, gpu=2, xid=79)
        fleet.scripts["gpu002"].reasons = [R("agent_error", Level.CRITICAL, SHORT, 0)]
        await r.tick()
        log = r.app.fleet_screen.event_log
        lines = log.lines()
        assert any(MARKUP in line for line in lines)
        for line in lines:
            assert_safe(line)
        await r.press("4")
        drawn = ["".join(s.text for s in log.render_line(y)) for y in range(log.shown)]
        assert any(plain(NASTY) in line for line in drawn)
        for line in drawn:
            assert_safe(line)
        assert_safe(static_text(r, "#recent"))
        worse = [n for n in r.app._notifications if "worse" in n.message]
        assert worse and not any(n.markup for n in worse)


async def test_host_screen_shows_host_text_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tests.fake_fleet, "GPU_NAME", NASTY)
    fleet = nasty_fleet()
    async with running(fleet, size=(200, 60)) as r:
        fleet.event("gpu001", "xid", NASTY, Level.CRITICAL, gpu=0, xid=79)
        await r.tick()
        r.app.open_host("gpu001")
        await r.pilot.pause()
        screen = r.app.screen
        assert isinstance(screen, HostScreen)
        for part in ("#host-reasons", "#host-events"):
            assert_literal(static_text(screen, part))
        panel = screen.query(GpuPanel).first()
        assert panel._border_title is not None
        assert_literal(panel._border_title.plain)
        body = panel.render()
        assert isinstance(body, Text)
        assert_literal(body.plain)
        screen.show_host("gpu006")
        await r.pilot.pause()
        assert_literal(static_text(screen, "#host-title"))


@dataclass
class EchoingOperator:
    """Runs nothing; answers with the host text it was given, as a real command might."""

    runs: list[Prepared] = field(default_factory=list)

    @property
    def journaled(self) -> bool:
        return True

    @property
    def refusal(self) -> str | None:
        return None

    def actions(self, host: str) -> list[ActionChoice]:
        return [ActionChoice("drain", NASTY)]

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
        argv = f"[local] scontrol update NodeName={host} Reason={reason}"
        return Prepared(kind, host, f"mark {host} failed: {reason}", (argv, argv), commands=2)

    async def run(self, prepared: Prepared, on_output: OnOutput) -> Outcome:
        self.runs.append(prepared)
        on_output(NASTY)
        return Outcome(False, NASTY)


async def test_dialogs_and_outcomes_show_host_text_as_written() -> None:
    operator = EchoingOperator()
    async with running(nasty_fleet(), size=(200, 40), operator=operator) as r:
        r.table.select_host("gpu001")
        await r.press("x")
        dialog = r.app.screen
        assert isinstance(dialog, ReasonDialog)
        reason = dialog.query_one("#reason", Input).value
        assert reason == plain(NASTY)  # prefilled from the host's reason, as plain text
        await r.press("enter")
        await until(r.pilot, lambda: isinstance(r.app.screen, PreviewDialog))
        preview = r.app.screen
        title = static_text(preview, ".dialog-title")  # type: ignore[arg-type]
        assert MARKUP in title
        assert_literal(title)
        shown = static_text(preview, "#preview")  # type: ignore[arg-type]
        assert len(shown.splitlines()) == 2  # one line per command
        assert_literal(shown)
        await r.press("y")
        await until(r.pilot, lambda: len(operator.runs) == 1)
        await r.pilot.pause()
        toasts = [n for n in r.app._notifications if MARKUP in n.message]
        assert toasts and not any(n.markup for n in toasts)
        for n in toasts:
            assert_literal(n.message)
        for line in r.app.fleet_screen.event_log.lines(3):
            assert_safe(line)


@pytest.mark.parametrize("raw", [False, True])
async def test_triage_report_shows_host_text_as_written(raw: bool) -> None:
    async def runner(host: str, width: int) -> str:
        return NASTY if raw else triage_table(nasty_triage_report(), width)

    async with running(triage=runner) as r:
        await r.press("t")
        screen = r.app.screen
        assert isinstance(screen, TriageScreen)
        await until(r.pilot, lambda: screen.report_text is not None)
        await r.pilot.pause()
        body = screen.query_one("#triage-body", Static).content
        assert isinstance(body, Text)  # never read as markup
        assert_safe(body.plain)
        assert "[/usr/lib64/nvidia]" in body.plain and "0000:ab:00" in body.plain
