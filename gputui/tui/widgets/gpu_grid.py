"""The GPU grid: every GPU of the fleet as half a character, drawn with the Line API.

Like toolong's log view, the widget keeps its data in plain lists and renders only the lines
in view; a tick drops the colours and the cached strips, and the colours of a host are worked
out again when a line in view draws it.
"""

from __future__ import annotations

from typing import ClassVar

from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Static

from gputui.core.model import FleetSnapshot, HostSnapshot
from gputui.core.text import plain
from gputui.core.words import counted
from gputui.render.report import host_label, host_why
from gputui.tui.gridview import (
    SCALE_ENDS,
    GridLayout,
    GridMode,
    gpu_count,
    host_colors,
)
from gputui.tui.palette import DEFAULT_PALETTE, LEGEND_LABELS, Palette
from gputui.tui.widgets.acyclic_lines import AcyclicLines

UPPER_HALF = "▀"
CURSOR = ">"

#: The grid's keys as the help screen lists them.
GRID_HELP = [
    Binding("left,right,up,down", "", "move host by host (home, end: first, last)"),
    Binding("enter", "", "open the host (or click it; hovering shows it below)"),
    Binding("m", "", "colour by verdict, util, temp, power, memory"),
]


class GpuGrid(AcyclicLines, ScrollView, can_focus=True):
    """Host blocks in fleet order; the cursor moves host by host."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "move(-1, 0)", "Left", show=False),
        Binding("right", "move(1, 0)", "Right", show=False),
        Binding("up", "move(0, -1)", "Up", show=False),
        Binding("down", "move(0, 1)", "Down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("enter", "choose", "Open"),  # the help says more (GRID_HELP)
    ]

    cursor: reactive[int] = reactive(0, init=False)

    class Highlighted(Message):
        """The cursor (or the mouse) is on `host`."""

        def __init__(self, host: HostSnapshot) -> None:
            super().__init__()
            self.host = host

    class Chosen(Message):
        """Enter or a click on `host`: open it."""

        def __init__(self, host: str) -> None:
            super().__init__()
            self.host = host

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.mode = GridMode.VERDICT
        self.palette: Palette = DEFAULT_PALETTE
        self.hosts: list[HostSnapshot] = []
        self._index: dict[str, int] = {}
        # Each host's GPU colours, worked out when its line is first drawn after a tick or a
        # mode change (None: not yet): the lines out of view cost nothing.
        self._colors: list[list[Color] | None] = []
        self._widths: list[int] = []
        self._layout = GridLayout.flow([], 1)
        self._flow_width = -1  # the width the layout was flowed for
        self._strips: dict[int, Strip] = {}
        self._styles: dict[tuple[Color, Color | None], Style] = {}

    # -- data -----------------------------------------------------------------------------

    def apply(self, snapshot: FleetSnapshot) -> None:
        self.hosts = list(snapshot.hosts)
        self._index = {h.name: i for i, h in enumerate(self.hosts)}
        self._recolor()
        widths = [(gpu_count(h) + 1) // 2 for h in self.hosts]
        if widths != self._widths:
            self._widths = widths
            self._relayout()
        self.cursor = min(self.cursor, max(len(self.hosts) - 1, 0))
        self._strips.clear()
        self.refresh()
        if self.hosts:
            self.post_message(self.Highlighted(self.hosts[self.cursor]))

    def set_mode(self, mode: GridMode) -> None:
        self.mode = mode
        self._recolor()
        self._strips.clear()
        self.refresh()

    def set_palette(self, palette: Palette) -> None:
        self.palette = palette
        self._styles.clear()
        self.set_mode(self.mode)

    def select_host(self, name: str) -> None:
        if name in self._index:
            self.cursor = self._index[name]

    @property
    def selected_host(self) -> str | None:
        return self.hosts[self.cursor].name if self.hosts else None

    def _recolor(self) -> None:
        self._colors = [None] * len(self.hosts)

    def colors_of(self, index: int) -> list[Color]:
        """The colour of each GPU of the host at `index`, in inventory order."""
        colors = self._colors[index]
        if colors is None:
            colors = self._colors[index] = host_colors(self.hosts[index], self.mode, self.palette)
        return colors

    def _relayout(self) -> None:
        width = self._content_width()
        if width <= 0 < self._flow_width:
            # Hidden (another tab is shown, so no size): flow for the width it had, which is
            # the width it comes back with; a flow for no width would be redone on showing.
            width = self._flow_width
        self._flow_width = width
        self._layout = GridLayout.flow(self._widths, max(width, 8))
        self.virtual_size = Size(self._layout.width, len(self._layout.lines))
        self._strips.clear()

    def _content_width(self) -> int:
        """The width to flow for, worked out from the widget's size alone.

        Not scrollable_content_region's: right after the grid is shown again, that is one
        column wider until the scrollbar is back, and a flow for it would be redone (and the
        grid redrawn) an update later.
        """
        width = self.size.width - self.styles.gutter.width
        if width <= 0:
            return 0
        height = self.size.height - self.styles.gutter.height
        if len(GridLayout.flow(self._widths, max(width, 8)).lines) > height:
            width -= self.styles.scrollbar_size_vertical
        return width

    def on_resize(self, event: events.Resize) -> None:
        # Every time the grid's tab is shown it gets a Resize, mostly of the same size: the
        # flow (and the strips drawn for it) only change with the width.
        if self._content_width() != self._flow_width:
            self._relayout()
            self.refresh()

    # -- drawing --------------------------------------------------------------------------

    def _style(self, top: Color, bottom: Color | None) -> Style:
        key = (top, bottom)
        style = self._styles.get(key)
        if style is None:
            style = Style(color=top, bgcolor=bottom)
            self._styles[key] = style
        return style

    def render_line(self, y: int) -> Strip:
        line = y + int(self.scroll_y)
        strip = self._strips.get(line)
        if strip is None:
            strip = self._render_grid_line(line)
            self._strips[line] = strip
        return strip.crop(int(self.scroll_x), int(self.scroll_x) + self.size.width)

    def _render_grid_line(self, line: int) -> Strip:
        if line >= len(self._layout.lines):
            return Strip.blank(self.size.width)
        segments: list[Segment] = []
        cursor_style = Style(bold=True, color=self.palette.color("marked-failed"))
        for index in self._layout.lines[line]:
            mark = CURSOR if index == self.cursor else " "
            segments.append(Segment(mark, cursor_style if mark == CURSOR else None))
            colors = self.colors_of(index)
            half = self._widths[index]
            run_style: Style | None = None
            run = 0
            for column in range(half):
                bottom = colors[column + half] if column + half < len(colors) else None
                style = self._style(colors[column], bottom)
                if style is run_style:
                    run += 1
                    continue
                if run:
                    segments.append(Segment(UPPER_HALF * run, run_style))
                run_style, run = style, 1
            if run:
                segments.append(Segment(UPPER_HALF * run, run_style))
        return Strip(segments).extend_cell_length(self.size.width)

    def watch_cursor(self, old: int, new: int) -> None:
        for index in (old, new):
            if 0 <= index < len(self._layout.line_of):
                self._strips.pop(self._layout.line_of[index], None)
        if 0 <= new < len(self.hosts):
            line = self._layout.line_of[new]
            self.scroll_to_region_line(line)
            self.post_message(self.Highlighted(self.hosts[new]))
        self.refresh()

    def scroll_to_region_line(self, line: int) -> None:
        top = int(self.scroll_y)
        height = self.scrollable_content_region.height
        if line < top:
            self.scroll_to(y=line, animate=False)
        elif height and line >= top + height:
            self.scroll_to(y=line - height + 1, animate=False)

    # -- keys and mouse -------------------------------------------------------------------

    def action_move(self, dx: int, dy: int) -> None:
        if not self.hosts:
            return
        if dx:
            self.cursor = min(max(self.cursor + dx, 0), len(self.hosts) - 1)
            return
        line = self._layout.line_of[self.cursor] + dy
        target = self._layout.nearest_on(line, self._layout.x_of[self.cursor])
        if target is not None:
            self.cursor = target

    def action_jump(self, where: int) -> None:
        if self.hosts:
            self.cursor = where % len(self.hosts)

    def action_choose(self) -> None:
        if self.hosts:
            self.post_message(self.Chosen(self.hosts[self.cursor].name))

    def _host_at(self, event: events.MouseEvent) -> int | None:
        offset = event.get_content_offset(self)
        if offset is None:
            return None
        x = offset.x + int(self.scroll_x)
        index = self._layout.host_at(x, offset.y + int(self.scroll_y))
        if index is None or x > self._layout.x_of[index] + self._widths[index]:
            return None
        return index

    def on_click(self, event: events.Click) -> None:
        index = self._host_at(event)
        if index is not None:
            self.cursor = index
            self.post_message(self.Chosen(self.hosts[index].name))

    def on_mouse_move(self, event: events.MouseMove) -> None:
        index = self._host_at(event)
        if index is not None:
            self.post_message(self.Highlighted(self.hosts[index]))


class GridPanel(AcyclicLines, Vertical):
    """The grid with its legend above and the highlighted host's summary below."""

    def compose(self) -> ComposeResult:
        yield Static(id="grid-legend")
        yield GpuGrid(id="grid")
        yield Static(id="grid-status")

    @property
    def grid(self) -> GpuGrid:
        return self.query_one(GpuGrid)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._status_shown: tuple[object, ...] | None = None

    def apply(self, snapshot: FleetSnapshot) -> None:
        grid = self.grid
        grid.apply(snapshot)
        self._legend()
        # The status line now rather than on the grid's Highlighted message: that comes
        # after a screen update, and a second update of its own is a second full redraw when
        # the grid's tab has just been shown.
        if grid.hosts:
            self._status(grid.hosts[grid.cursor])

    def select_host(self, name: str) -> None:
        grid = self.grid
        grid.select_host(name)
        if grid.hosts:
            self._status(grid.hosts[grid.cursor])

    def cycle_mode(self) -> GridMode:
        mode = self.grid.mode.next()
        self.grid.set_mode(mode)
        self._legend()
        return mode

    def set_palette(self, palette: Palette) -> None:
        self.grid.set_palette(palette)
        self._legend()

    def _legend(self) -> None:
        grid = self.grid
        n_gpus = sum(gpu_count(h) for h in grid.hosts if h.hello is not None)
        text = Text.assemble(
            (f"{counted(len(grid.hosts), 'host')}, {counted(n_gpus, 'GPU')}", "bold"),
            "  colour: ",
            (grid.mode.value, "bold"),
            " (m)  ",
        )
        palette = grid.palette
        if grid.mode is GridMode.VERDICT:
            for label in LEGEND_LABELS:
                text.append("█", style=Style(color=palette.color(label)))
                text.append(f"{label} ")
        else:
            low, high = SCALE_ENDS[grid.mode]
            text.append(f"{low} ")
            for color in palette.heat:
                text.append("█", style=Style(color=color))
            text.append(f" {high}  ")
            for label in ("unknown", "failed", "unreachable"):
                text.append("█", style=Style(color=palette.color(label)))
                text.append(f"{label} ")
        self.query_one("#grid-legend", Static).update(text)

    def on_gpu_grid_highlighted(self, message: GpuGrid.Highlighted) -> None:
        self._status(message.host)

    def _status(self, host: HostSnapshot) -> None:
        label = host_label(host)
        why = host_why(host) or "GPUs 0-3 on top, 4-7 below; enter or click opens the host"
        shown = (host.name, label, why, self.grid.palette)
        if shown == self._status_shown:
            return  # the same line again (it is sized to fit: an update is a layout)
        self._status_shown = shown
        status = Text.assemble(
            (plain(host.name), "bold"),
            "  ",
            (label, self.grid.palette.chip(label)),
            "  ",
            plain(why),  # the host's own words: no control character reaches the terminal
        )
        self.query_one("#grid-status", Static).update(status)
