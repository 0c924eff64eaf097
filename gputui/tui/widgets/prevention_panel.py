"""The Prevention tab: the GPUs and nodes to service before they fail, ranked by the failure
probability that servicing avoids, and for the one highlighted its findings: the evidence in
words, a chart of its days at the panel's size, and the advice.

The list comes from the journal the monitor writes (gputui/ops/prevention.py): its daily
rollups judged by every trend rule. Rollups change every 5 minutes and the rules judge days,
so the journal is read at most once a minute, in a worker thread, and only while the tab is
shown (less often where a read takes long: a fleet of thousands of GPUs). The ranked list is a
keyed DataTable as in the Jobs tab; every cell and line is a rich Text, never markup (host and
group names are the operator's and the hosts' text).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import ClassVar, Protocol

from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Static

from gputui.core.model import FleetSnapshot, Level
from gputui.core.prevention import ServiceItem
from gputui.core.rollup import Rollup
from gputui.core.text import plain
from gputui.core.trends import Finding
from gputui.ops.journal import JournalError
from gputui.ops.prevention import Trends
from gputui.render.prevention import (
    day_chart,
    day_spark,
    day_text,
    percent,
    remedy_text,
    rules_text,
    subject_name,
    value_text,
)
from gputui.tui.jobsview import Column
from gputui.tui.palette import DEFAULT_PALETTE, Palette
from gputui.tui.widgets.jobs_table import KeyedTable

#: Seconds of fleet time between two reads of the journal: rollups change every 5 minutes.
REFRESH_S = 60.0
#: A read that took long (a fleet of thousands of GPUs) waits this many times as long for the
#: next one, so that judging never takes more than a tenth of the process's time.
READ_COST_FACTOR = 10.0
CHART_MAX_ROWS = 10  # a taller chart shows no more: days are its columns
CHART_MIN_ROWS = 3

COLUMNS = (
    Column("rank", "#", 3, right=True, fit=True),
    Column("service", "SERVICE", 24, fit=True, middle=True),
    Column("level", "LEVEL", 8, fit=True),
    Column("p", "P30D", 6, right=True),
    Column("benefit", "BENEFIT", 7, right=True),
    Column("remedy", "REMEDY", 17, fit=True),
    Column("rules", "RULES", 200, fill=True),
)
LEVEL = 2  # the column coloured by the item's level

NO_JOURNAL = (
    "No journal in this session: the Prevention tab judges the daily rollups the monitor "
    "writes into its journal (gputui monitor without --no-journal). `gputui prevent --demo 8` "
    "shows a simulated fleet's list."
)
NO_ROLLUPS = (
    "No rollups yet: the monitor writes one per GPU every 5 minutes, and the trend rules judge "
    "days of them (docs/prevention.md)."
)


class PreventionSource(Protocol):
    """What the live views read of the journal (gputui/ops/prevention.py JournalPrevention)."""

    def trends(self) -> Trends | None:
        """The service list; None without a journal. May raise JournalError."""
        ...

    def daily(self, host: str) -> Sequence[Rollup]:
        """A host's daily rollups, per GPU oldest first. May raise JournalError."""
        ...


def item_key(item: ServiceItem) -> str:
    s = item.subject
    return f"{s.host}\x00{'' if s.gpu is None else s.gpu}"


def item_cells(rank: int, item: ServiceItem) -> tuple[str, ...]:
    return (
        str(rank),
        subject_name(item.subject),
        item.level.label,
        percent(item.p_failure),
        percent(item.benefit),
        remedy_text(item, short=True),
        rules_text(item),
    )


def _lines(text: str, width: int) -> int:
    """Lines `text` takes wrapped at `width` (near enough: words may wrap a little sooner)."""
    return max(1, math.ceil(len(text) / max(width, 1)))


def _finding_head(f: Finding, palette: Palette) -> Text:
    text = Text.assemble((f.rule, "bold"), " ", (f.level.label, palette.chip(f.level.label)), "  ")
    text.append(plain(f.evidence.text))
    return text


def detail_text(
    item: ServiceItem, width: int, height: int, palette: Palette, horizon_days: float = 30.0
) -> Text:
    """The highlighted item in `width` x `height`: its title, then each finding worst first
    with its evidence; the worst finding's days as a chart in the rows left over, the others'
    as a line; the advice of each."""
    s = item.subject
    title = Text.assemble((plain(subject_name(s)), "bold"), "  ")
    title.append(f" {item.level.label} ", palette.chip(item.level.label))
    title.append(f"  {remedy_text(item)}", style="bold")
    if s.is_node:
        title.append(f"  the node's {item.gpus} GPUs", style="dim")
    # The odds are in the table's row above; the chance avoided, in words, where there is room.
    odds = f"  P(a failure in {horizon_days:g} d) {percent(item.p_failure)}, "
    odds += f"{percent(item.benefit)} avoided by servicing"
    if title.cell_len + len(odds) <= width:
        title.append(odds, style="dim")
    parts: list[Text] = [title]
    first, rest = item.findings[0], item.findings[1:]
    # Rows the words take, so that the chart gets what is left of the panel.
    words = 1 + sum(
        _lines(f"{f.rule} {f.level.label}  {f.evidence.text}", width)
        + _lines(f"advice: {f.advice}", width)
        for f in item.findings
    )
    words += len(rest) + 2  # the others' lines of days; the chart's axis and caption
    chart_rows = min(CHART_MAX_ROWS, max(CHART_MIN_ROWS, height - words - 1))
    color = palette.color(first.level.label)
    for n, f in enumerate(item.findings):
        parts.append(_finding_head(f, palette))
        series = f.evidence.series
        if n == 0 and series:
            for row in day_chart(series, width, chart_rows):
                parts.append(Text(row, style=Style(color=color)))
            caption = Text(plain(f.evidence.series_name), style="dim")
            caption.append(f", {len(series)} days to {day_text(series[-1].day)}", style="dim")
            parts.append(caption)
        elif series:
            values = [p.value for p in series]
            line = Text(plain(f.evidence.series_name) + ", by day: ", style="dim")
            line.append(day_spark(series, max(8, min(60, width // 2))), style=Style(color=color))
            line.append(f"  {value_text(min(values))} .. {value_text(max(values))}", style="dim")
            parts.append(line)
        advice = Text("advice: ", style="bold")
        advice.append(plain(f.advice))
        parts.append(advice)
    return Text("\n").join(parts)


class PreventionTable(KeyedTable):
    """The ranked list, one row per GPU or node to service."""

    DEFAULT_CSS = """
    PreventionTable {
        height: auto;
        max-height: 45%;
    }
    """


class PreventionDetail(VerticalScroll):
    """The highlighted item's findings, drawn again at each size."""

    DEFAULT_CSS = """
    PreventionDetail {
        height: 1fr;
        padding: 0 1;
        border-top: hkey $panel;
        scrollbar-size-vertical: 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.item: ServiceItem | None = None
        self.horizon_days = 30.0
        self.message: Text = Text("")
        self.palette = DEFAULT_PALETTE

    def compose(self) -> ComposeResult:
        yield Static(id="prevention-body")

    def show(self, item: ServiceItem | None, message: Text | None = None) -> None:
        self.item = item
        if message is not None:
            self.message = message
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        body = self.query_one("#prevention-body", Static)
        if self.item is None:
            body.update(self.message)
            return
        width = max(20, self.scrollable_content_region.width - 1)
        height = max(CHART_MIN_ROWS, self.scrollable_content_region.height)
        body.update(detail_text(self.item, width, height, self.palette, self.horizon_days))


class PreventionPanel(Vertical):
    """The Prevention tab."""

    DEFAULT_CSS = """
    PreventionPanel {
        height: 1fr;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "reread", "Read again", show=False),
    ]

    class HostChosen(Message):
        """Enter on an item: open its host."""

        def __init__(self, host: str) -> None:
            super().__init__()
            self.host = host

    def __init__(self, source: PreventionSource | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.source = source
        self.trends: Trends | None = None
        self.items: dict[str, ServiceItem] = {}
        self.read_t: float | None = None  # fleet time of the last read asked for
        self.read_at: float | None = None  # fleet time of the read shown
        self.read_cost_s = 0.0  # seconds the last read and judgement took
        self.error = ""
        self.palette = DEFAULT_PALETTE

    def compose(self) -> ComposeResult:
        yield Static(id="prevention-status", classes="status")
        yield PreventionTable(COLUMNS, LEVEL, id="prevention-table")
        yield PreventionDetail(id="prevention-detail")

    def on_mount(self) -> None:
        self.table.display = False
        self.detail.show(None, Text("Reading the journal...", style="dim"))

    @property
    def table(self) -> PreventionTable:
        return self.query_one(PreventionTable)

    @property
    def detail(self) -> PreventionDetail:
        return self.query_one(PreventionDetail)

    # -- data -----------------------------------------------------------------------------

    def apply(self, snapshot: FleetSnapshot) -> None:
        """A tick with the tab shown: read the journal again when a minute of fleet time has
        passed since the last read (or none was made)."""
        if self.source is None:
            self._show_message(Text(NO_JOURNAL, style="dim"))
            return
        every = max(REFRESH_S, READ_COST_FACTOR * self.read_cost_s)
        if self.read_t is not None and snapshot.t - self.read_t < every:
            return
        self.read_t = snapshot.t
        self._read()

    def action_reread(self) -> None:
        if self.source is not None:
            self._read()  # the same fleet time: the minute's pacing starts from the last tick

    @work(thread=True, exclusive=True, group="prevention")
    def _read(self) -> None:
        source = self.source
        assert source is not None
        started = time.monotonic()
        try:
            trends, error = source.trends(), ""
        except (JournalError, ValueError) as exc:
            trends, error = None, str(exc)
        self.read_cost_s = time.monotonic() - started
        self.app.call_from_thread(self._show, trends, error)

    def _show(self, trends: Trends | None, error: str = "") -> None:
        self.read_at = self.read_t
        self.trends, self.error = trends, error
        if error:
            self._show_message(Text(plain(f"cannot read the journal: {error}"), style="bold red"))
            return
        if trends is None:
            self._show_message(Text(NO_JOURNAL, style="dim"))
            return
        items = trends.service.items
        self.items = {item_key(i): i for i in items}
        if not items:
            self._show_message(Text(self._empty_text(trends), style="dim"))
            return
        self.table.display = True
        self.detail.horizon_days = trends.service.horizon_hours / 24
        self.table.show([(item_key(i), item_cells(n, i)) for n, i in enumerate(items, 1)])
        self._status()
        self._show_detail()

    def _empty_text(self, trends: Trends) -> str:
        if trends.end is None:
            return NO_ROLLUPS
        return (
            f"Nothing to service: the trend rules found no GPU or node drifting in "
            f"{trends.gpus} GPUs on {trends.hosts} hosts over {trends.days} days of rollups "
            f"to {day_text(trends.end - 86_400)}."
        )

    def _show_message(self, message: Text) -> None:
        self.items = {}
        self.table.display = False
        self.table.show([])
        self._status()
        self.detail.show(None, message)

    def _status(self) -> None:
        trends = self.trends
        parts: list[str] = []
        if trends is not None and trends.end is not None:
            items = trends.service.items
            worse = sum(1 for i in items if i.level >= Level.CRITICAL)
            parts.append(f"{len(items)} to service" + (f", {worse} critical" if worse else ""))
            # Month and day: the status line fits 80 columns with the time of the read.
            parts.append(
                f"{trends.gpus} GPUs, {trends.hosts} hosts, {trends.days} days "
                f"to {day_text(trends.end - 86_400)[5:]}"
            )
        if self.read_at is not None:
            parts.append(f"read {time.strftime('%H:%M', time.localtime(self.read_at))}")
        self.query_one("#prevention-status", Static).update(
            Text(plain(" · ".join(parts)), style="dim")
        )

    def _show_detail(self) -> None:
        self.detail.show(self.items.get(self.table.cursor_key or ""))

    def set_palette(self, palette: Palette) -> None:
        self.palette = palette
        self.table.palette = palette
        self.detail.palette = palette
        self.table.repaint()
        if self.items:
            self._show_detail()

    # -- choosing -------------------------------------------------------------------------

    def selected_host(self) -> str | None:
        item = self.items.get(self.table.cursor_key or "")
        return item.subject.host if item is not None else None

    @on(DataTable.RowHighlighted, "PreventionTable")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_detail()

    @on(DataTable.RowSelected, "PreventionTable")
    def _chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        item = self.items.get(str(event.row_key.value))
        if item is not None:
            self.post_message(self.HostChosen(item.subject.host))
