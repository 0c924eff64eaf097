"""The risk panel: fleet failure odds from the GPUs the monitor sees, and the lemon nodes.

Figures are recomputed only when their inputs change (GPU count, verdict counts, the journal's
record per node), in a worker thread: the risk model imports scipy, and nothing of it may stall
a tick.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import RenderableType
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from gputui.core.model import FleetSnapshot
from gputui.core.risk_summary import NodeHistory, RiskInputs, risk_figures, risk_inputs
from gputui.render.risk import risk_panel
from gputui.tui.widgets.acyclic_lines import AcyclicLines

if TYPE_CHECKING:
    from gputui.core.risk import RiskSettings

RECORD_EVERY_S = 60.0

#: The journal's failures and monitored GPU-hours per node; None without a journal.
Record = Callable[[], NodeHistory | None]


class RiskPanel(AcyclicLines, VerticalScroll):
    def __init__(
        self,
        settings: RiskSettings | None = None,
        record: Record | None = None,
        *,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.settings = settings
        self._record = record
        self._inputs: RiskInputs | None = None
        self._last_record: NodeHistory | None = None
        self._record_t = -RECORD_EVERY_S

    def compose(self) -> ComposeResult:
        yield Static(Text("Waiting for the first GPUs to report...", style="dim"), id="risk-body")

    def apply(self, snapshot: FleetSnapshot) -> None:
        # The record is a journal query: once a minute of fleet time is plenty for a rate.
        if self._record is not None and snapshot.t - self._record_t >= RECORD_EVERY_S:
            self._record_t = snapshot.t
            self._last_record = self._record()
        inputs = risk_inputs(snapshot, self._last_record)
        if inputs == self._inputs or inputs.gpus == 0:
            return
        self._inputs = inputs
        self._compute(inputs)

    @work(thread=True, exclusive=True, group="risk")
    def _compute(self, inputs: RiskInputs) -> None:
        try:
            body = risk_panel(risk_figures(inputs, self.settings))
        except ValueError as exc:
            body = Text(str(exc), style="bold red")
        self.app.call_from_thread(self._show, body)

    def _show(self, body: RenderableType) -> None:
        self.query_one("#risk-body", Static).update(body)
