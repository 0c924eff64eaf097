"""The per-GPU view: a panel per GPU with bar meters and history charts, the processes below.

What nvitop shows of one box, for a host of the fleet (`g`) or for a whole small fleet, which
the app opens on (config/ui.py). Each panel has meters for utilisation, memory, temperature
(against the GPU's own slowdown limit) and power (against its limit), clocks and clock-event
reasons in words, the GPU's reasons, and braille charts of the four metrics over the history
the monitor keeps (minutes: collect/history.py). The panels flow into as many columns as the
width takes (one at 80 and 120 columns, two at 200), and the charts share out the height the
screen leaves them, so a few GPUs get tall charts and many GPUs short ones.

The data is the host screen's (hostview.gpu_views, the same GpuView per GPU), drawn
differently: the host screen is the full detail of one host (ECC, PCIe, NVLink, events), this
is the live look. Each tick updates only what changed: a panel's meters when its reading or
verdict did, a chart when a sample arrived, the process table's changed cells.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from rich.color import Color
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, ItemGrid, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from gputui.collect.history import Metric
from gputui.config.ui import UiSettings
from gputui.core.model import FleetSnapshot, HostSnapshot, HostState, Level
from gputui.core.text import plain
from gputui.tui.gridview import COOL_C, FALLBACK_SLOWDOWN_C, GridMode, metric_fraction
from gputui.tui.hostview import GpuView, clock_words, gpu_title, reason_line, title_text
from gputui.tui.palette import LABELS, Palette
from gputui.tui.widgets.history_chart import ChartData, HistoryChart
from gputui.tui.widgets.key_bar import KeyBar
from gputui.tui.widgets.meter import meter
from gputui.tui.widgets.process_table import ProcessPanel

CARD_MIN_WIDTH = 76  # one column of panels at 80 and 120 columns, two at 160 and 200
CARD_GUTTER = 1
CHART_MIN_WIDTH = 20  # four charts side by side in a panel from 86 columns of it
CHART_GUTTER = 2
CHART_MIN_HEIGHT = 3  # the caption and two rows: eight levels
CHART_MAX_HEIGHT = 12
METER_MIN_WIDTH = 32  # two meters a line from 66 columns of panel
PROCESS_SHARE = 0.35  # of the screen's height, at most, for the process table
PROCESS_MIN_ROWS = 3
METRICS = (Metric.UTIL_PCT, Metric.MEM_USED_PCT, Metric.TEMP_C, Metric.POWER_W)
#: Each chart's colour, an index into the palette's heat scale; the utilisation and memory
#: meters take their chart's.
CHART_COLORS = (3, 1, 6, 5)
METER_COLORS = CHART_COLORS[:2]


@dataclass(frozen=True)
class GpusData:
    """What the app hands the screen each tick: the hosts in view and their GPUs."""

    hosts: list[HostSnapshot]
    gpus: list[tuple[str, GpuView]]  # (host, view), host by host in inventory order
    now: float
    palette: Palette


@dataclass(frozen=True)
class CardLayout:
    """How a panel lays itself out: meters a line, charts a row (4, 2 or 1) and each chart's
    height, caption included."""

    meters_per_line: int
    charts_per_row: int
    chart_height: int


def grid_columns(width: int, min_width: int, gutter: int, items: int) -> int:
    """Columns an ItemGrid of `items` makes in `width` (Textual's own rule, so the heights
    worked out here match the columns it draws)."""
    return max(1, min(items, (width + gutter) // (min_width + gutter)))


def card_layout(
    width: int, height: int, gpus: int, procs_height: int, title_height: int
) -> tuple[int, CardLayout]:
    """The panels' columns and layout for a `width` x `height` screen showing `gpus` panels,
    with `procs_height` lines under them and `title_height` over them."""
    inner_width = max(width - 3, 1)  # the scroll area's padding and scrollbar
    columns = grid_columns(inner_width, CARD_MIN_WIDTH, CARD_GUTTER, max(gpus, 1))
    card_width = (inner_width - (columns - 1) * CARD_GUTTER) // columns
    content = card_width - 4  # border and padding
    meters_per_line = 2 if content >= 2 * METER_MIN_WIDTH + 2 else 1
    charts_per_row = next(
        (n for n in (4, 2) if content >= n * CHART_MIN_WIDTH + (n - 1) * CHART_GUTTER), 1
    )
    fixed = 2 + 4 // meters_per_line + 1  # border, meters, the clocks line
    card_rows = math.ceil(max(gpus, 1) / columns)
    room = height - title_height - procs_height - 1  # the key bar
    per_card = room // card_rows
    chart_rows = 4 // charts_per_row
    chart_height = (per_card - fixed) // chart_rows
    chart_height = min(max(chart_height, CHART_MIN_HEIGHT), CHART_MAX_HEIGHT)
    return columns, CardLayout(meters_per_line, charts_per_row, chart_height)


def _gib(mib: float | None) -> str:
    return "-" if mib is None else f"{mib / 1024:.1f}"


def meter_lines(view: GpuView, width: int, per_line: int, palette: Palette) -> Text:
    """The four meters, `per_line` to a line, in `width` columns."""
    info = view.info
    r = view.reading if view.reading is not None and view.reading.status == "ok" else None
    limit = (r.power_limit_w if r else None) or info.power_limit_w
    slowdown = info.temp_slowdown_c or FALLBACK_SLOWDOWN_C

    def fraction(mode: GridMode) -> float | None:
        return None if r is None else metric_fraction(mode, r, info)

    def figure(x: float | None, unit: str, of: float | None = None) -> str:
        if x is None:
            return "-"
        return f"{x:.0f}/{of:.0f}{unit}" if of else f"{x:.0f}{unit}"

    used, total = (r.mem_used_mib if r else None), info.memory_total_mib
    mem = f"{_gib(used)}/{_gib(total)} GiB" if used is not None else "-"
    items = [
        ("util ", fraction(GridMode.UTIL), figure(r.util_pct if r else None, "%")),
        ("mem  ", fraction(GridMode.MEMORY), mem),
        ("temp ", fraction(GridMode.TEMP), figure(r.temp_c if r else None, " C", slowdown)),
        ("power", fraction(GridMode.POWER), figure(r.power_w if r else None, " W", limit)),
    ]

    def color(n: int, frac: float | None) -> Color | None:
        # Utilisation and memory in their charts' colours (high is no alarm); temperature
        # and power on the heat scale, hotter as they near the GPU's own limits.
        if n < 2:
            return palette.heat[METER_COLORS[n]]
        return palette.heat_color(frac) if frac is not None else None

    gap = 2
    each = (width - gap * (per_line - 1)) // per_line
    text = Text(no_wrap=True, overflow="crop")
    for n, (label, frac, value) in enumerate(items):
        if n and n % per_line == 0:
            text.append("\n")
        elif n:
            text.append(" " * gap)
        text.append_text(meter(label, frac, value, each, color(n, frac)))
    return text


def info_text(view: GpuView, palette: Palette) -> Text:
    """Clocks and clock-event reasons in words, a GPU that cannot be read, and the GPU's
    active reasons; wrapped at words by the panel, never cut."""
    r = view.reading
    reasons = [x for x in view.verdict.reasons if x.level > Level.OK] if view.verdict else []
    text = Text()
    if r is None:
        text.append("no reading in the last sample", style="dim")
    elif r.status != "ok":
        # The GPU's reason says it in words (`GPU3 is lost (fell off the bus)`): NVML's
        # error only where nothing judged it yet, so it is never said twice.
        if not reasons:
            text.append(plain(f"{r.status}: {r.error or 'no detail'}"), style="bold red")
    else:
        clocks, words = clock_words(r, view.info)
        text.append(clocks)
        text.append(" · clock events: ", style="dim")
        text.append(words or "none", style="" if words else "dim")
    for reason in reasons:
        if text:
            text.append("\n")
        text.append_text(reason_line(reason, palette))
    return text


def chart_data(view: GpuView, palette: Palette) -> list[ChartData]:
    """The four charts of a GPU: utilisation and memory in %, temperature up to the GPU's
    slowdown limit, power up to its limit (the scales of the grid and the meters)."""
    info = view.info
    r = view.reading if view.reading is not None and view.reading.status == "ok" else None
    limit = (r.power_limit_w if r else None) or info.power_limit_w or 1000.0
    slowdown = info.temp_slowdown_c or FALLBACK_SLOWDOWN_C
    mem_pct = None
    if r is not None and r.mem_used_mib is not None and info.memory_total_mib:
        mem_pct = 100 * r.mem_used_mib / info.memory_total_mib

    def value(x: float | None, unit: str) -> str:
        return "-" if x is None else f"{x:.0f}{unit}"

    specs = (
        ("util", value(r.util_pct if r else None, "%"), 0.0, 100.0),
        ("memory", value(mem_pct, "%"), 0.0, 100.0),
        ("temp", value(r.temp_c if r else None, " C"), COOL_C, slowdown),
        ("power", value(r.power_w if r else None, " W"), 0.0, limit),
    )
    return [
        ChartData(
            name=name,
            value=shown,
            values=view.series.get(metric, _EMPTY),
            appended=view.appended,
            interval_s=view.interval_s,
            low=low,
            high=high,
            color=palette.heat[color],
        )
        for metric, (name, shown, low, high), color in zip(
            METRICS, specs, CHART_COLORS, strict=True
        )
    ]


_EMPTY = np.empty(0, dtype=np.float32)  # a GPU without history yet


class GpuCard(Vertical):
    """One GPU: meters, clocks and reasons, four history charts. Bordered by its level."""

    def __init__(self, host: str, index: int, *, with_host: bool) -> None:
        super().__init__(classes="gpu-panel gpu-card")
        self.host = host
        self.index = index
        self.with_host = with_host
        self.layout_of = CardLayout(2, 2, CHART_MIN_HEIGHT)
        self._shown: tuple[object, ...] | None = None
        self._pending: tuple[GpuView, Palette] | None = None  # given before it was mounted
        # Its children exist (Textual's is_mounted turns true only after on_mount).
        self.ready = False
        self._title = ""
        self._per_line = 0
        self._info_lines = 0
        # Its parts, kept rather than queried: a tick shows every panel.
        self.meters = Static(classes="card-meters")
        self.info = Static(classes="card-info")
        self.charts_grid = Grid(classes="card-charts")
        self.charts = [HistoryChart() for _ in METRICS]

    def compose(self) -> ComposeResult:
        yield self.meters
        yield self.info
        with self.charts_grid:
            yield from self.charts

    def on_mount(self) -> None:
        self.ready = True
        self._size_charts()
        if self._pending is not None:
            self.show(*self._pending)

    def set_layout(self, layout: CardLayout) -> None:
        if layout == self.layout_of:
            return
        self.layout_of = layout
        self._shown = None  # the meters are laid out again at the next show()
        if self.ready:
            self._size_charts()

    def _size_charts(self) -> None:
        # Sized here rather than by the grid's auto rows, which Textual measures before the
        # charts have a height of their own.
        layout = self.layout_of
        rows = len(METRICS) // layout.charts_per_row
        grid = self.charts_grid.styles
        grid.grid_size_columns = layout.charts_per_row
        grid.grid_size_rows = rows
        grid.grid_rows = str(layout.chart_height)
        grid.height = rows * layout.chart_height

    def show(self, view: GpuView, palette: Palette) -> None:
        if not self.ready:
            self._pending = (view, palette)
            return
        self._pending = None
        width = self.content_size.width or CARD_MIN_WIDTH - 4
        key = (view.reading, view.verdict, width, self.layout_of, palette)
        if key != self._shown:
            self._shown = key
            self._show_text(view, width, palette)
        for chart, data in zip(self.charts, chart_data(view, palette), strict=True):
            chart.show(data)

    def _show_text(self, view: GpuView, width: int, palette: Palette) -> None:
        """Title, border, meters and the clocks line. Each is set only when it changed, and
        the panel is laid out again only when its lines may have changed in number: Textual
        lays out the whole screen for that, a cost a tick must not pay for new figures."""
        title = gpu_title(view)
        title = plain(f"{self.host} {title}") if self.with_host else title
        if title != self._title:
            self._title = title
            # A str title is markup to textual, and the GPU's name is the host's text.
            self.border_title = Text(title)
        level = view.verdict.level.label if view.verdict is not None else "unknown"
        for label in LABELS:
            self.set_class(label == level, f"-{label}")
        per_line = self.layout_of.meters_per_line
        meters = meter_lines(view, width, per_line, palette)
        self.meters.update(meters, layout=per_line != self._per_line)
        self._per_line = per_line
        info = info_text(view, palette)
        lines = len(info.wrap(self.app.console, width))
        self.info.update(info, layout=lines != self._info_lines)
        self._info_lines = lines


class GpusScreen(Screen[None]):
    """The per-GPU view of one host (`scope`) or of the whole fleet (`scope` None)."""

    DEFAULT_CSS = """
    GpusScreen #gpus-title {
        height: auto;
        padding: 0 1;
    }
    GpusScreen #gpu-cards {
        height: 1fr;
        padding: 0 1;
        scrollbar-size-vertical: 1;
    }
    GpusScreen #gpu-card-grid {
        height: auto;
        grid-gutter: 0 1;
    }
    GpusScreen .gpu-card {
        height: auto;
    }
    GpusScreen .card-meters, GpusScreen .card-info {
        height: auto;
    }
    GpusScreen .card-charts {
        grid-gutter: 0 2;  /* CHART_GUTTER */
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "back", "Back"),
        Binding("s", "sort", "Sort"),
        Binding("S", "sort_reverse", "Reverse sort", show=False),
        Binding("d", "details", "Details"),
        Binding("k", "kill", "Kill"),
        # Not in the key bar, which keeps the operator's keys at 80 columns; ? lists them.
        Binding("left_square_bracket", "neighbour(-1)", "Prev host", show=False),
        Binding("right_square_bracket", "neighbour(1)", "Next host", show=False),
    ]

    def __init__(
        self,
        scope: str | None,
        source: Callable[[str | None], GpusData | None],
        neighbour: Callable[[str, int], str | None],
        open_host: Callable[[str], None],
        *,
        watch: Callable[[Collection[str]], None] = lambda hosts: None,
        kill: Callable[[str, int], None] = lambda host, pid: None,
    ) -> None:
        """`watch`: ask for the processes of these hosts every second (none: stop asking);
        `kill`: the operator's kill of a process (host, pid), confirmed and journaled."""
        super().__init__(classes="gpus-screen")
        self.scope = scope
        self._source = source
        self._neighbour = neighbour
        self._open_host = open_host
        self._watch = watch
        self._kill = kill
        self.watched: tuple[str, ...] | None = None  # the hosts asked for, while shown
        self.data: GpusData | None = None
        self.cards: dict[tuple[str, int], GpuCard] = {}
        self._title: Text | None = None
        self._layout_key: tuple[int, ...] | None = None
        self.columns = 1

    def compose(self) -> ComposeResult:
        yield Static(id="gpus-title")
        with VerticalScroll(id="gpu-cards"):
            yield ItemGrid(id="gpu-card-grid", min_column_width=CARD_MIN_WIDTH)
        yield ProcessPanel(id="gpu-procs")
        yield KeyBar()

    @property
    def processes(self) -> ProcessPanel:
        return self.query_one(ProcessPanel)

    def on_mount(self) -> None:
        self.processes.table.focus()
        self.update_data()

    def on_resize(self) -> None:
        self._layout()

    def show_scope(self, scope: str | None) -> None:
        """Show `scope` (the screen is reused from host to host)."""
        if scope != self.scope:
            self.scope = scope
            if self.is_mounted:
                self.query_one("#gpu-cards", VerticalScroll).scroll_home(animate=False)
        if self.is_mounted:
            self.update_data()

    @property
    def hosts(self) -> list[str]:
        return [h.name for h in self.data.hosts] if self.data is not None else []

    def selected_host(self) -> str | None:
        """The host of the process under the cursor, else the view's (first) host."""
        row = self.processes.selected() if self.processes.table.has_focus else None
        if row is not None:
            return row.host
        return self.scope or next(iter(self.hosts), None)

    # -- data -----------------------------------------------------------------------------

    def update_data(self) -> None:
        data = self._source(self.scope)
        self.data = data
        if data is None:
            self._set_title(Text(plain(f"{self.scope}: not in the fleet"), style="dim"))
            return
        self._set_title(self._title_text(data))
        keys = [(host, view.info.index) for host, view in data.gpus]
        if keys != list(self.cards):
            grid = self.query_one("#gpu-card-grid", ItemGrid)
            grid.remove_children()
            with_host = len(data.hosts) > 1
            self.cards = {k: GpuCard(*k, with_host=with_host) for k in keys}
            grid.mount_all(self.cards.values())
            self._layout_key = None
        self.processes.apply(data.hosts, self._process_note(data))
        self._watch_hosts(tuple(h.name for h in data.hosts))
        self._layout()
        for card, (_, view) in zip(self.cards.values(), data.gpus, strict=True):
            card.show(view, data.palette)

    def _title_text(self, data: GpusData) -> Text:
        text = Text()
        for n, host in enumerate(data.hosts):
            if n:
                text.append("\n")
            text.append_text(title_text(host, data.now, data.palette))
            for r in host.verdict.host.reasons:
                if r.level > Level.OK and r.gpu is None:
                    text.append("\n")
                    text.append_text(reason_line(r, data.palette))
        if not data.gpus:
            text.append("\n")
            text.append("No GPU reported yet.", style="dim")
        return text

    def _set_title(self, text: Text) -> None:
        if text != self._title:
            self._title = text
            self.query_one("#gpus-title", Static).update(text)

    def _watch_hosts(self, hosts: tuple[str, ...]) -> None:
        """While shown, the hosts in view list their processes every second (not with the
        slow signals only), and only they (gputui/collect/watch.py)."""
        if hosts != self.watched:
            self.watched = hosts
            self._watch(hosts)

    def on_screen_resume(self) -> None:
        if self.data is not None:
            self._watch_hosts(tuple(h.name for h in self.data.hosts))

    def on_screen_suspend(self) -> None:
        # A dialog over the view (the kill's confirmation) keeps the processes coming; another
        # screen, or leaving the view, stops them.
        if not isinstance(self.app.screen, ModalScreen) or self not in self.app.screen_stack:
            self._watch_hosts(())

    def on_unmount(self) -> None:
        self._watch_hosts(())

    @staticmethod
    def _process_note(data: GpusData) -> str:
        """How old the process list is: listed with the slow signals, or each second while
        this view asks for them."""
        ages = [
            data.now - t
            for h in data.hosts
            if (t := h.processes_t if h.processes_t is not None else h.slow_sample_t) is not None
        ]
        if not ages:
            return "processes not read yet"
        age = max(ages)
        return f"listed {age:.0f} s ago" if age >= 2 else "listed now"

    def _layout(self) -> None:
        """Share the height out: the process table's rows (up to PROCESS_SHARE of the screen),
        then the panels' charts."""
        if self.data is None or not self.is_mounted:
            return
        width, height = self.size
        rows = max(len(self.processes.rows), PROCESS_MIN_ROWS)
        table = min(rows, max(PROCESS_MIN_ROWS, int(height * PROCESS_SHARE))) + 1  # the header
        title = (self._title.plain.count("\n") + 1) if self._title is not None else 1
        key = (width, height, len(self.cards), table, title)
        if key == self._layout_key:
            return
        self._layout_key = key
        self.processes.table.styles.height = table
        self.columns, layout = card_layout(width, height, len(self.cards), table + 1, title)
        for card in self.cards.values():
            card.set_layout(layout)

    # -- actions --------------------------------------------------------------------------

    def action_back(self) -> None:
        self.dismiss()

    def action_sort(self) -> None:
        panel = self.processes
        panel.set_sort(panel.sort_key.next(), False)

    def action_sort_reverse(self) -> None:
        panel = self.processes
        panel.set_sort(panel.sort_key, not panel.sort_reverse)

    def action_details(self) -> None:
        host = self.selected_host()
        if host is not None:
            self._open_host(host)

    def action_kill(self) -> None:
        """End the process under the table's cursor (the app confirms, naming it first)."""
        row = self.processes.selected()
        if row is None:
            self.notify("no process selected (the process table's cursor picks one)", timeout=4)
            return
        self._kill(row.host, row.process.pid)

    def action_neighbour(self, step: int) -> None:
        current = self.scope or next(iter(self.hosts), None)
        if current is None:
            return
        other = self._neighbour(current, step)
        if other is not None and other != self.scope:
            self.show_scope(other)


#: Seconds the app waits for every host's first word before it picks the view it opens on
#: with the GPUs it knows of (a host that never answers must not keep it waiting).
DECIDE_WITHIN_S = 10.0


def opens_on_gpus(snapshot: FleetSnapshot, ui: UiSettings, waited_s: float) -> bool | None:
    """Whether the app opens on the per-GPU view of the whole fleet; None: not known yet,
    while a host is still connecting (its GPUs uncounted) and DECIDE_WITHIN_S has not passed."""
    hosts = snapshot.hosts
    if len(hosts) > max(ui.per_gpu_view_max_hosts, ui.per_gpu_view_max_gpus):
        return False  # too many hosts whatever their GPUs: no need to wait for them
    waiting = any(h.hello is None and h.state is HostState.CONNECTING for h in hosts)
    if waiting and waited_s < DECIDE_WITHIN_S:
        return None
    gpus = sum(len(h.hello.gpus) for h in hosts if h.hello is not None)
    return ui.opens_per_gpu_view(len(hosts), gpus)
