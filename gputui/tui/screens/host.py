"""The host screen: one host in full, updated every tick while it is open; each GPU's days from
the journal's daily rollups below its live lines, read again at most once a minute."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rich.console import RenderableType
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import ItemGrid, VerticalScroll
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Static

from gputui.core.model import FleetEvent, HostSnapshot
from gputui.core.rollup import Rollup
from gputui.ops.journal import JournalError
from gputui.tui.hostview import (
    GpuView,
    daily_text,
    events_text,
    gpu_text,
    gpu_title,
    reasons_text,
    title_text,
)
from gputui.tui.palette import DEFAULT_PALETTE, LABELS, Palette
from gputui.tui.widgets.acyclic_lines import AcyclicLines
from gputui.tui.widgets.key_bar import KeyBar

if TYPE_CHECKING:
    from gputui.tui.widgets.prevention_panel import PreventionSource

#: Seconds of fleet time between two reads of a host's days: a day row changes every 5 minutes.
DAYS_EVERY_S = 60.0
PANEL_MIN_WIDTH = 78  # two panels side by side from about 160 columns


@dataclass(frozen=True)
class HostData:
    """What the app hands the screen each tick."""

    host: HostSnapshot
    gpus: list[GpuView]
    events: list[FleetEvent]  # newest first
    now: float
    palette: Palette


class HostBody(AcyclicLines, VerticalScroll):
    """The host screen's scrolling body."""


class PanelGrid(AcyclicLines, ItemGrid):
    """The GPU panels, as many side by side as fit."""


class GpuPanel(AcyclicLines, Widget):
    """One GPU: readings with sparklines, slow signals, its reasons. Bordered by its level."""

    def __init__(self, index: int) -> None:
        super().__init__(classes="gpu-panel")
        self.index = index
        self.view: GpuView | None = None
        self.days: Sequence[Rollup] = ()  # the GPU's daily rollups from the journal
        self.palette = DEFAULT_PALETTE

    def show(self, view: GpuView, palette: Palette) -> None:
        self.view, self.palette = view, palette
        # A str title is markup to textual, and the GPU's name is the host's text.
        self.border_title = Text(gpu_title(view))
        level = view.verdict.level.label if view.verdict is not None else "unknown"
        for label in LABELS:
            self.set_class(label == level, f"-{label}")
        self.refresh(layout=True)

    def render(self) -> RenderableType:
        if self.view is None:
            return ""
        width = self.content_size.width or 80
        text = gpu_text(self.view, width, self.palette)
        if self.days:
            text.append("\n")
            text.append_text(daily_text(self.days, self.view.info, width, self.palette))
        return text


#: `[` and `]` share one entry of the key bar ("[ ] Prev/next"); the help lists each.
NEIGHBOURS = Binding.Group("Prev/next")


class HostScreen(AcyclicLines, Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "back", "Back"),
        Binding("left_square_bracket", "neighbour(-1)", "Prev host", group=NEIGHBOURS),
        Binding("right_square_bracket", "neighbour(1)", "Next host", group=NEIGHBOURS),
    ]

    def __init__(
        self,
        host: str,
        source: Callable[[str], HostData | None],
        neighbour: Callable[[str, int], str | None],
        days: PreventionSource | None = None,
    ) -> None:
        super().__init__(classes="host-screen")
        self.host = host
        self._source = source
        self._neighbour = neighbour
        self._days_source = days
        self._panels: dict[int, GpuPanel] = {}
        # host -> (fleet time read, each GPU slot's days): the current GPU of each slot only
        self.days: dict[str, tuple[float, dict[int, tuple[Rollup, ...]]]] = {}

    def compose(self) -> ComposeResult:
        with HostBody(id="host-body"):
            yield Static(id="host-title")
            yield Static(id="host-reasons")
            yield PanelGrid(id="gpu-panels", min_column_width=PANEL_MIN_WIDTH)
            yield Static(id="host-events")
        yield KeyBar()

    def on_mount(self) -> None:
        self.update_data()

    def show_host(self, host: str) -> None:
        """Show `host` (the screen is reused from host to host)."""
        if host != self.host or not self.is_mounted:
            self.host = host
            if self.is_mounted:
                self.query_one("#host-body", VerticalScroll).scroll_home(animate=False)
        if self.is_mounted:
            self.update_data()

    def update_data(self) -> None:
        data = self._source(self.host)
        if data is None:
            self.query_one("#host-title", Static).update(Text(f"{self.host}: not in the fleet"))
            return
        self.query_one("#host-title", Static).update(title_text(data.host, data.now, data.palette))
        self.query_one("#host-reasons", Static).update(reasons_text(data.host, data.palette))
        self.query_one("#host-events", Static).update(events_text(data.events, data.palette))
        indices = [v.info.index for v in data.gpus]
        if indices != list(self._panels):
            grid = self.query_one("#gpu-panels", ItemGrid)
            grid.remove_children()
            self._panels = {i: GpuPanel(i) for i in indices}
            grid.mount_all(self._panels.values())
        days = self.days.get(self.host)
        if self._days_source is not None and (days is None or data.now - days[0] >= DAYS_EVERY_S):
            self.days[self.host] = (data.now, days[1] if days is not None else {})
            self._read_days(self.host)
        by_gpu = days[1] if days is not None else {}
        for view in data.gpus:
            panel = self._panels[view.info.index]
            panel.days = by_gpu.get(view.info.index, ())
            panel.show(view, data.palette)

    @work(thread=True, exclusive=True, group="host-days")
    def _read_days(self, host: str) -> None:
        source = self._days_source
        assert source is not None
        try:
            rollups = source.daily(host)
        except JournalError:
            return  # the days are extra: the live lines stand without them
        self.app.call_from_thread(self._got_days, host, current_days(rollups))

    def _got_days(self, host: str, by_gpu: dict[int, tuple[Rollup, ...]]) -> None:
        read_t = self.days.get(host, (0.0, {}))[0]
        self.days[host] = (read_t, by_gpu)
        if host == self.host and self.is_mounted:
            self.update_data()

    def action_back(self) -> None:
        self.dismiss()

    def action_neighbour(self, step: int) -> None:
        other = self._neighbour(self.host, step)
        if other is not None and other != self.host:
            self.show_host(other)


def current_days(rollups: Sequence[Rollup]) -> dict[int, tuple[Rollup, ...]]:
    """Each GPU slot's daily rollups, oldest first, of the GPU in it now (the uuid whose days
    reach furthest): a GPU replaced in the slot took its history with it."""
    by_uuid: dict[tuple[int, str], list[Rollup]] = {}
    for r in rollups:
        by_uuid.setdefault((r.gpu, r.uuid), []).append(r)
    out: dict[int, tuple[Rollup, ...]] = {}
    for (gpu, _), days in by_uuid.items():
        days.sort(key=lambda r: r.start)
        have = out.get(gpu)
        if have is None or (days[-1].start, days[0].start) > (have[-1].start, have[0].start):
            out[gpu] = tuple(days)
    return out
