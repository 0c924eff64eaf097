"""SVG snapshots of the main views on a scripted fleet (fixed times: no clock, no SSH).

Update after a deliberate change of the look with `pytest tests/test_tui_snapshots.py
--snapshot-update`, and review the SVGs in tests/__snapshots__ before committing them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from textual.pilot import Pilot

from gputui.tui.app import GpuTuiApp
from gputui.tui.session import MonitorSession
from tests.fake_fleet import FakeFleet, FakeMonitor, big_fleet, factory, small_fleet

SnapCompare = Callable[..., bool]


# Clock texts in UTC whatever the machine's zone (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("utc")


def scripted(
    fleet: FakeFleet, ticks: int = 10
) -> tuple[GpuTuiApp, Callable[[Pilot[None]], Awaitable[None]]]:
    """An app on `fleet`, and the run_before that feeds it `ticks` seconds of history."""
    monitor = FakeMonitor(fleet)
    app = GpuTuiApp(MonitorSession(factory(monitor)))
    app.animation_level = "none"

    async def feed(pilot: Pilot[None]) -> None:
        for _ in range(ticks):  # one snapshot per tick, as the monitor publishes them
            before = app.ticks
            monitor.push(fleet.advance())
            while app.ticks == before:
                await pilot.pause(0.01)
        await pilot.pause()

    return app, feed


def test_fleet_table_80x24(snap_compare: SnapCompare) -> None:
    app, feed = scripted(small_fleet())
    assert snap_compare(app, terminal_size=(80, 24), run_before=feed)


def test_gpu_grid_thousand_hosts_200x50(snap_compare: SnapCompare) -> None:
    app, feed = scripted(big_fleet(1000), ticks=2)
    assert snap_compare(app, press=["2"], terminal_size=(200, 50), run_before=feed)


def test_host_detail_120x40(snap_compare: SnapCompare) -> None:
    app, feed = scripted(small_fleet(), ticks=30)
    assert snap_compare(app, press=["enter"], terminal_size=(120, 40), run_before=feed)


def test_risk_panel_100x30(snap_compare: SnapCompare) -> None:
    app, feed = scripted(small_fleet(), ticks=2)

    async def show_risk(pilot: Pilot[None]) -> None:
        await feed(pilot)
        await pilot.press("3")
        await app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=show_risk)
