"""The Jobs tab: a table of the jobs on the fleet's GPUs and, for the job chosen (enter), its
GPUs across hosts side by side.

Both tables are Textual DataTables updated by keyed diff (dolphie's process list): a tick
rewrites only the cells that changed, and rebuilds the rows only when the jobs or their order
change (a job started or ended, or the sort moved it), which at a few hundred jobs costs a
few milliseconds. Every cell is a rich Text, never markup: job ids, users, pod names and
reasons are the hosts' text.

The jobs are built here from each snapshot (core/jobs.py), with the first time each was seen
for a run time where the scheduler gives none, and each job's risk at the fleet's rate: the
posterior mean from the journal's record, re-read once a minute as the Risk tab does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from gputui.core.jobs import (
    FirstSeen,
    Job,
    JobsBuilder,
    SchedulerJob,
    gpu_readings,
    plain_processes,
)
from gputui.core.model import FleetSnapshot
from gputui.core.risk_summary import fleet_rate_per_gpu_hour, risk_inputs
from gputui.core.text import plain
from gputui.render.jobs import cut, plain_line
from gputui.tui.jobsview import (
    GPU_COLUMNS,
    GPU_STATE,
    JOB_COLUMNS,
    SORT_OF_COLUMN,
    STATE,
    Column,
    JobRow,
    JobSort,
    detail_title,
    gpu_key,
    gpu_row,
    job_row,
    job_why,
    layout,
    sort_jobs,
)
from gputui.tui.palette import DEFAULT_PALETTE, Palette
from gputui.tui.widgets.acyclic_lines import AcyclicLines
from gputui.tui.widgets.risk_panel import RECORD_EVERY_S, Record

if TYPE_CHECKING:
    from gputui.core.risk import RiskSettings


def _cell(text: str, column: Column, width: int, style: Style | str = "") -> Text:
    """One cell: a leading space, the text cut to `width` with an ellipsis, never markup."""
    text = cut(plain(text), width, middle=column.middle)
    cell = Text(" ", justify="right" if column.right else "left", end="")
    cell.append(text, style=style)  # the leading space is the gap: never in a chip's colour
    return cell


class KeyedTable(AcyclicLines, DataTable[Text]):
    """A DataTable of keyed rows of text cells, brought up to date by diff.

    Which columns show and how wide (jobsview.layout) follows the rows and the widget's width;
    when that changes, the columns and rows are built again."""

    DEFAULT_CSS = """
    KeyedTable {
        height: 1fr;
        overflow-x: hidden;
        scrollbar-size-vertical: 1;
    }
    """

    def __init__(
        self, columns: Sequence[Column], state: int | None, *, id: str | None = None
    ) -> None:
        super().__init__(cursor_type="row", cell_padding=0, zebra_stripes=False, id=id)
        self.all_columns = tuple(columns)
        self.state_index = state  # the column coloured by the row's health word, if any
        self.palette = DEFAULT_PALETTE
        self.keys: list[str] = []
        self.rows_shown: dict[str, tuple[str, ...]] = {}
        self.shown_layout: tuple[tuple[int, int], ...] = ()

    def _cells(self, cells: tuple[str, ...]) -> list[Text]:
        state = self.state_index
        if state is None:
            return [_cell(cells[i], self.all_columns[i], w) for i, w in self.shown_layout]
        chip = self.palette.chip(cells[state])
        return [
            _cell(cells[i], self.all_columns[i], w, chip if i == self.state_index else "")
            for i, w in self.shown_layout
        ]

    def show(self, rows: Sequence[tuple[str, tuple[str, ...]]]) -> None:
        """Show `rows` (key, cells) in this order, keeping the cursor on its row's key."""
        keys = [key for key, _ in rows]
        width = self.scrollable_content_region.width or self.app.size.width
        shape = layout(self.all_columns, [cells for _, cells in rows], width - 1)
        if keys != self.keys or shape != self.shown_layout:
            self._rebuild(rows, keys, shape)
            return
        for key, cells in rows:
            old = self.rows_shown[key]
            if old == cells:
                continue
            self.rows_shown[key] = cells
            new = self._cells(cells)
            state = self.state_index
            state_changed = state is not None and old[state] != cells[state]
            for n, (i, _) in enumerate(shape):
                if old[i] != cells[i] or (state_changed and i == state):
                    self.update_cell(key, self.all_columns[i].key, new[n])

    def _rebuild(
        self,
        rows: Sequence[tuple[str, tuple[str, ...]]],
        keys: list[str],
        shape: tuple[tuple[int, int], ...],
    ) -> None:
        chosen = self.cursor_key
        if shape != self.shown_layout:
            self.clear(columns=True)
            self.shown_layout = shape
            for i, w in shape:
                column = self.all_columns[i]
                self.add_column(_cell(column.header, column, w), width=w + 1, key=column.key)
        else:
            self.clear()
        for key, cells in rows:
            self.add_row(*self._cells(cells), key=key)
        self.keys = keys
        self.rows_shown = dict(rows)
        if chosen in self.rows_shown:
            self.move_cursor(row=keys.index(chosen), animate=False, scroll=True)

    def on_resize(self) -> None:
        self.show(list(self.rows_shown.items()))

    def repaint(self) -> None:
        """Draw every row again (the palette changed)."""
        self.keys = []
        self.show(list(self.rows_shown.items()))

    @property
    def cursor_key(self) -> str | None:
        if not self.keys or not 0 <= self.cursor_row < len(self.keys):
            return None
        return self.keys[self.cursor_row]


class JobsTable(KeyedTable):
    """The jobs, one row each."""


class JobGpusTable(KeyedTable):
    """The chosen job's GPUs, host by host."""


class JobsPanel(AcyclicLines, Vertical):
    """The Jobs tab."""

    DEFAULT_CSS = """
    JobsPanel {
        height: 1fr;
    }
    JobsPanel #job-title {
        display: none;
        height: 1;
        padding: 0 1;
        background: $panel;
    }
    JobsPanel JobGpusTable {
        display: none;
    }
    JobsPanel.-detail #job-title, JobsPanel.-detail JobGpusTable {
        display: block;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close_gpus", "Close GPUs", show=False),
    ]

    class HostChosen(Message):
        """Enter on a GPU of the chosen job: open its host."""

        def __init__(self, host: str) -> None:
            super().__init__()
            self.host = host

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
        self._record_t = -RECORD_EVERY_S
        self._rate: float | None = None
        self._first_seen = FirstSeen()
        self._builder = JobsBuilder()  # remembers each host's part between ticks
        self._scheduler: Mapping[str, SchedulerJob] = {}
        self._scheduler_note = ""
        self.snapshot: FleetSnapshot | None = None
        self.jobs: dict[str, Job] = {}
        self.order: list[str] = []
        self.sort_key = JobSort.WORST
        self.sort_reverse = False
        self.chosen: str | None = None  # the job whose GPUs are shown (None: closed)
        self.palette = DEFAULT_PALETTE
        self._status_text = ""

    def compose(self) -> ComposeResult:
        yield JobsTable(JOB_COLUMNS, STATE, id="jobs-table")
        yield Static(id="job-why", classes="status")
        yield Static(id="jobs-status", classes="status")
        yield Static(id="job-title")
        yield JobGpusTable(GPU_COLUMNS, GPU_STATE, id="job-gpus")

    @property
    def table(self) -> JobsTable:
        return self.query_one(JobsTable)

    @property
    def gpus_table(self) -> JobGpusTable:
        return self.query_one(JobGpusTable)

    # -- data -----------------------------------------------------------------------------

    def set_scheduler(self, jobs: Mapping[str, SchedulerJob], note: str = "") -> None:
        """What the scheduler said of the jobs (names, users, start times, sizes), and how it
        was read; used from the next snapshot on."""
        self._scheduler = jobs
        self._scheduler_note = note

    def rate(self, snapshot: FleetSnapshot) -> float:
        """The fleet's rate per GPU-hour, with the journal's record re-read once a minute."""
        if self._rate is None or snapshot.t - self._record_t >= RECORD_EVERY_S:
            self._record_t = snapshot.t
            record = self._record() if self._record is not None else None
            inputs = risk_inputs(snapshot, record)
            self._rate = fleet_rate_per_gpu_hour(
                self.settings, inputs.failures, inputs.exposure_gpu_hours
            )
        return self._rate

    def apply(self, snapshot: FleetSnapshot) -> None:
        self.snapshot = snapshot
        write_s = (self.settings.checkpoint_minutes if self.settings else 1.0) * 60
        jobs = self._builder.build(
            snapshot,
            self._scheduler,
            rate_per_gpu_hour=self.rate(snapshot),
            checkpoint_write_s=write_s,
        )
        jobs = self._first_seen.apply(jobs, snapshot.t)
        self.jobs = {j.key: j for j in jobs}
        self._show_jobs()
        self._status(plain_line(plain_processes(snapshot)))
        if self.chosen is not None:
            self._show_gpus()

    def _show_jobs(self) -> None:
        snapshot = self.snapshot
        if snapshot is None:
            return
        ordered = sort_jobs(list(self.jobs.values()), self.sort_key, self.sort_reverse, snapshot.t)
        rows: list[JobRow] = [job_row(j, snapshot.t) for j in ordered]
        self.order = [r.key for r in rows]
        self.table.show([(r.key, r.cells) for r in rows])
        self._show_why()

    def _show_why(self) -> None:
        job = self.jobs.get(self.table.cursor_key or "")
        line = Text()
        if job is not None:
            title, label, why = job_why(job)
            line = Text.assemble(
                (plain(title), "bold"), " ", (label, self.palette.chip(label)), plain(f"  {why}")
            )
        self.query_one("#job-why", Static).update(line)

    def _show_gpus(self) -> None:
        snapshot = self.snapshot
        job = self.jobs.get(self.chosen) if self.chosen is not None else None
        title = self.query_one("#job-title", Static)
        if job is None or snapshot is None:
            title.update(Text("The job is gone from the fleet's GPUs. (esc closes)", style="dim"))
            self.gpus_table.show([])
            return
        text = Text(plain(detail_title(job, snapshot.t)), style="bold")
        text.append("   esc closes, enter opens a GPU's host", style="dim")
        title.update(text)
        readings = gpu_readings(job, snapshot)
        self.gpus_table.show(
            [(gpu_key(g), gpu_row(g, r)) for g, r in zip(job.gpus, readings, strict=True)]
        )

    def _status(self, leftover: str | None = None) -> None:
        if leftover is not None:
            self._status_text = leftover
        n = len(self.jobs)
        gpus = sum(len(j.gpus) for j in self.jobs.values())
        order = self.sort_key.value + (" (reversed)" if self.sort_reverse else "")
        text = f"{n} job{'' if n == 1 else 's'} on {gpus} GPUs, sorted by {order} (s)"
        text += ", enter shows a job's GPUs"
        for extra in (self._status_text, self._scheduler_note):
            if extra:
                text += f" · {extra}"
        self.query_one("#jobs-status", Static).update(Text(plain(text), style="dim"))

    def set_palette(self, palette: Palette) -> None:
        self.palette = palette
        for table in (self.table, self.gpus_table):
            table.palette = palette
            table.repaint()

    # -- choosing -------------------------------------------------------------------------

    def selected_host(self) -> str | None:
        """The host the operator points at: the GPU's under the cursor of the GPU table when
        it has the focus, else where the highlighted job is worst (or its first host)."""
        gpus = self.gpus_table
        if self.chosen is not None and gpus.has_focus and (key := gpus.cursor_key) is not None:
            return key.split("\x00", 1)[0]
        job = self.jobs.get(self.table.cursor_key or "")
        if job is None:
            return None
        return job.health.host or (job.hosts[0] if job.hosts else None)

    def set_sort(self, key: JobSort, reverse: bool = False) -> None:
        self.sort_key, self.sort_reverse = key, reverse
        self._show_jobs()
        self._status()

    @on(DataTable.RowSelected, "JobsTable")
    def _job_chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.chosen = str(event.row_key.value)
        self.add_class("-detail")
        self._show_gpus()

    @on(DataTable.RowHighlighted, "JobsTable")
    def _job_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_why()
        # With the GPUs shown, they follow the cursor from job to job.
        if self.chosen is not None and event.row_key.value is not None:
            self.chosen = str(event.row_key.value)
            self._show_gpus()

    @on(DataTable.RowSelected, "JobGpusTable")
    def _gpu_chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        host = str(event.row_key.value).split("\x00", 1)[0]
        self.post_message(self.HostChosen(host))

    @on(DataTable.HeaderSelected, "JobsTable")
    def _header(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        key = SORT_OF_COLUMN.get(str(event.column_key.value))
        if key is not None:
            self.set_sort(key, not self.sort_reverse if key is self.sort_key else False)

    def action_close_gpus(self) -> None:
        if self.chosen is None:
            return
        self.chosen = None
        self.remove_class("-detail")
        self.table.focus()
