"""The Risk tab with a journal: the fleet's learnt rate and the lemon nodes, worst first."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Static

from gputui.core.model import Level
from gputui.ops.journal import Journal
from gputui.ops.records import Fault
from gputui.render.risk import PANEL_NODES
from gputui.tui.app import GpuTuiApp
from gputui.tui.session import MonitorSession
from tests.fake_fleet import FakeMonitor, factory, small_fleet

pytestmark = pytest.mark.usefixtures("utc")

HOSTILE = "[b]gpu999|x"  # a node name is host text: shown as written, never as markup


async def until(pilot: Pilot[None], cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.02)


def risk_text(app: GpuTuiApp) -> str:
    content = app.screen.query_one("#risk-body", Static).content
    console = Console(width=120, record=True, file=io.StringIO())
    console.print(content)
    return console.export_text()


def lemon_journal(path: Path, nodes: list[str]) -> Journal:
    """A month of every node watched; gpu005 lost five GPUs, gpu002 one."""
    journal = Journal.open(path)
    lost = [("gpu005", gpu) for gpu in range(5)] + [("gpu002", 0)]
    journal.record_faults(
        Fault(
            t=1000.0 + i,
            node=node,
            kind="xid",
            level=int(Level.FAILED),
            gpu=gpu,
            uuid=f"GPU-{node}-{gpu}",
            xid=79,
        )
        for i, (node, gpu) in enumerate(lost)
    )
    journal.add_exposure({(node, h): 8.0 for node in nodes for h in range(720)})
    return journal


async def test_risk_tab_ranks_the_journals_nodes_worst_first(tmp_path: Path) -> None:
    fleet = small_fleet()
    nodes = [*fleet.scripts, HOSTILE]
    assert len(nodes) > PANEL_NODES  # one node is left to the "more" line
    journal = lemon_journal(tmp_path / "journal.sqlite3", nodes)
    monitor = FakeMonitor(fleet)
    session = MonitorSession(factory(monitor))
    app = GpuTuiApp(session, record=journal.per_node_failures_and_exposure)
    app.animation_level = "none"
    try:
        async with app.run_test(size=(120, 60)) as pilot:
            for _ in range(3):
                before = app.ticks
                monitor.push(fleet.advance())
                await until(pilot, lambda b=before: app.ticks > b)  # type: ignore[misc]
            await pilot.press("3")
            await until(pilot, lambda: "Lemon nodes" in risk_text(app))
            text = risk_text(app)
    finally:
        await session.close()
        journal.close()
    # The fleet's rate is learnt from the same rows: 6 failures in 11 x 5,760 GPU-hours.
    rate = 7 / (50_000 + 11 * 5_760)
    assert f"{rate:.2e}/GPU-h (posterior, 6 failures in 63,360 GPU-h" in text
    assert f"Lemon nodes: 11 nodes against the fleet's {rate:.2e}/GPU-h (posterior" in text
    rows = [line.split() for line in text.splitlines() if line.startswith(("gpu", "[b]"))]
    assert [row[0] for row in rows[:2]] == ["gpu005", "gpu002"]
    assert rows[0][1:4] == ["5", "5,760", "0"]  # failures, GPU-h watched, times marked
    assert len(rows) == PANEL_NODES and "... and 1 more node" in text
    # Nodes with the same record tie and are listed by name: the hostile one sorts first.
    assert HOSTILE in text


async def test_without_a_journal_the_tab_has_no_ranking() -> None:
    fleet = small_fleet()
    monitor = FakeMonitor(fleet)
    session = MonitorSession(factory(monitor))
    app = GpuTuiApp(session)
    app.animation_level = "none"
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            monitor.push(fleet.advance())
            await pilot.press("3")
            await until(pilot, lambda: "P(>= 1 failure)" in risk_text(app))
            text = risk_text(app)
    finally:
        await session.close()
    assert "Lemon nodes" not in text and "(prior" in text
