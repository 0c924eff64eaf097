"""The per-GPU view's process table: every GPU process of the hosts in view, sortable.

A KeyedTable (the Jobs tab's keyed diff, gputui/tui/widgets/jobs_table.py): a tick rewrites
only the cells that changed, and rebuilds the rows only when the processes or their order
change. Every cell is the host's text, plain (processview.process_cells). The sorted column's
header carries the order's arrow, as the fleet table's does: `▾` in the natural order
(biggest first for figures), `▴` reversed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from gputui.core.model import HostSnapshot
from gputui.tui.processview import (
    PROCESS_COLUMNS,
    SORT_OF_COLUMN,
    ProcessRow,
    ProcSort,
    fit_width,
    process_cells,
    process_rows,
    sort_processes,
    summary_line,
)
from gputui.tui.widgets.jobs_table import KeyedTable

#: The header of the column each order sorts by.
COLUMN_OF_SORT = {
    ProcSort.GPU_MEM: "gpu_mem",
    ProcSort.SM: "sm",
    ProcSort.CPU: "cpu",
    ProcSort.RSS: "rss",
    ProcSort.TIME: "time",
    ProcSort.GPU: "gpu",
    ProcSort.PID: "pid",
    ProcSort.USER: "user",
}


class ProcessTable(KeyedTable):
    """One row per process and GPU, in the panel's order."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(PROCESS_COLUMNS, None, id=id)

    def mark_sort(self, sort: ProcSort, reverse: bool) -> None:
        """Put the order's arrow on its column's header (the next show() rebuilds)."""
        key = COLUMN_OF_SORT[sort]
        arrow = "▴" if reverse else "▾"
        self.all_columns = tuple(
            dataclasses.replace(c, header=c.header + arrow) if c.key == key else c
            for c in PROCESS_COLUMNS
        )
        # The next show() builds the columns (their headers) and the rows again.
        self.keys = []
        self.shown_layout = ()


class ProcessPanel(Vertical):
    """A status line (how many processes, the order) over the table."""

    DEFAULT_CSS = """
    ProcessPanel {
        height: auto;
    }
    ProcessPanel #proc-status {
        height: 1;
        padding: 0 1;
        background: $panel;
    }
    ProcessPanel ProcessTable {
        height: 4;  /* the per-GPU view sizes it to its rows */
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sort_key = ProcSort.GPU_MEM
        self.sort_reverse = False
        self.rows: list[ProcessRow] = []
        self._with_host = False
        self._gpus = 0
        self._note = ""

    def compose(self) -> ComposeResult:
        yield Static(id="proc-status")
        yield ProcessTable(id="proc-table")

    def on_mount(self) -> None:
        self.table.mark_sort(self.sort_key, self.sort_reverse)

    @property
    def table(self) -> ProcessTable:
        return self.query_one(ProcessTable)

    def apply(self, hosts: Sequence[HostSnapshot], note: str = "") -> None:
        """Show the processes of `hosts` (the HOST column only when there are several);
        `note` follows the count (how old the process list is)."""
        self.rows = process_rows(hosts)
        self._with_host = len(hosts) > 1
        self._gpus = sum(len(h.hello.gpus) for h in hosts if h.hello is not None)
        self._note = note
        self._show()

    def _show(self) -> None:
        ordered = sort_processes(self.rows, self.sort_key, self.sort_reverse)
        table = self.table
        rows = [process_cells(r, with_host=self._with_host) for r in ordered]
        width = (table.scrollable_content_region.width or self.app.size.width) - 1
        fitted = fit_width(rows, width)
        table.show([(r.key, cells) for r, cells in zip(ordered, fitted, strict=True)])
        line = summary_line(self.rows, self._gpus, self.sort_key, self.sort_reverse)
        if self._note:
            line += f" · {self._note}"
        self.query_one("#proc-status", Static).update(Text(line, style="dim"))

    def on_resize(self) -> None:
        self._show()  # the columns a narrow table leaves out

    def set_sort(self, key: ProcSort, reverse: bool = False) -> None:
        self.sort_key, self.sort_reverse = key, reverse
        self.table.mark_sort(key, reverse)
        self._show()

    def selected(self) -> ProcessRow | None:
        """The process under the cursor."""
        key = self.table.cursor_key
        return next((r for r in self.rows if r.key == key), None)

    @on(DataTable.HeaderSelected, "ProcessTable")
    def _header(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        key = SORT_OF_COLUMN.get(str(event.column_key.value))
        if key is not None:
            self.set_sort(key, not self.sort_reverse if key is self.sort_key else False)
