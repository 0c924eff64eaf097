"""The fleet table: one row per host, updated in place by keyed diff once per tick.

Following dolphie's process list: rows are keyed by host name; each tick only the cells whose
text changed are updated, hosts that newly match are added and hosts that no longer match are
removed. The table is never cleared and rebuilt on a tick (that costs 10-30x more at 1,000
rows); a filter change that removes most rows is the one case where rebuilding is cheaper.
Column widths are fixed, so no update ever asks the table to re-measure.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from gputui.core.model import FleetSnapshot
from gputui.tui.fleetview import (
    COLUMNS,
    SORT_KEYS,
    Column,
    FleetFilter,
    HostRow,
    SortKey,
    host_row,
)
from gputui.tui.palette import DEFAULT_PALETTE, Palette

_DIM = Style(dim=True)
_PLAIN = Style()
# Rebuild instead of removing row by row past this many removals (each removal is O(rows)).
_REBUILD_AFTER_REMOVALS = 64


class FleetTable(DataTable[Text]):
    """Hosts of the fleet, sorted (state first by default) and filtered."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", cell_padding=0, zebra_stripes=False, id=id)
        self.sort_key = SortKey.STATE
        self.sort_reverse = False
        self.filter = FleetFilter()
        self.palette: Palette = DEFAULT_PALETTE
        self.total = 0  # hosts in the fleet, matching or not
        self._snapshot: FleetSnapshot | None = None
        self._shown: dict[str, tuple[Text, ...]] = {}  # host -> cells on screen
        self._rows: dict[str, HostRow] = {}  # host -> its row data, for sorting
        self._order: list[str] = []  # hosts in screen order
        self._host_width = 0
        # The cursor follows its host when rows move, but only once the operator has put it
        # somewhere: until then it stays on the top row, the worst host.
        self._pinned = False
        self._moving = False

    # -- public ---------------------------------------------------------------------------

    @property
    def selected_host(self) -> str | None:
        if not self._order or not 0 <= self.cursor_row < self.row_count:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return row_key.value

    @property
    def shown(self) -> list[str]:
        """Hosts in the order the table shows them."""
        return list(self._order)

    def select_host(self, name: str) -> bool:
        if name not in self._shown:
            return False
        self.move_cursor(row=self.get_row_index(name))
        self._pinned = True
        return True

    def watch_cursor_coordinate(self, old: Coordinate, new: Coordinate) -> None:
        super().watch_cursor_coordinate(old, new)
        if not self._moving and old != new:
            self._pinned = True

    def apply(self, snapshot: FleetSnapshot) -> None:
        """Bring the table to `snapshot`: changed cells, new rows, gone rows, order."""
        self._moving = True
        try:
            self._apply(snapshot)
        finally:
            self._moving = False

    def _apply(self, snapshot: FleetSnapshot) -> None:
        self._snapshot = snapshot
        self.total = len(snapshot.hosts)
        if not self.columns:
            self._add_columns(snapshot)
        selected = self.selected_host if self._pinned else None
        was_visible = self._cursor_in_view()
        wanted: dict[str, tuple[HostRow, tuple[Text, ...]]] = {}
        for host in snapshot.hosts:
            row = host_row(host, snapshot.t)
            if self.filter and not self.filter.matches(host, row):
                continue
            wanted[host.name] = (row, self._cells(row))
        gone = [name for name in self._shown if name not in wanted]
        if len(gone) > _REBUILD_AFTER_REMOVALS and len(gone) * 4 > len(self._shown):
            self.clear()
            self._shown.clear()
            self._order = []
            gone = []
        for name in gone:
            self.remove_row(name)
            del self._shown[name]
            self._rows.pop(name, None)
        for name, (row, cells) in wanted.items():
            self._rows[name] = row
            old = self._shown.get(name)
            if old is None:
                self.add_row(*cells, key=name)
            else:
                row_key = RowKey(name)
                for column, before, after in zip(COLUMNS, old, cells, strict=True):
                    if before != after:
                        self.update_cell(row_key, ColumnKey(column.key), after)
            self._shown[name] = cells
        self._resort()
        self._follow(selected, was_visible)

    def set_filter(self, text: str) -> None:
        self.filter = FleetFilter(text)
        self._reapply()

    def set_sort(self, key: SortKey, reverse: bool = False) -> None:
        self.sort_key, self.sort_reverse = key, reverse
        self._label_columns()
        selected = self.selected_host if self._pinned else None
        self._moving = True
        try:
            self._resort()
            self._follow(selected, True)
        finally:
            self._moving = False

    def set_palette(self, palette: Palette) -> None:
        self.palette = palette
        self._shown_styles_stale()
        self._reapply()

    # -- internals ------------------------------------------------------------------------

    def _reapply(self) -> None:
        if self._snapshot is not None:
            self.apply(self._snapshot)

    def _shown_styles_stale(self) -> None:
        # Cells compare by text and style, so a new palette makes every cell differ; forget
        # what is shown so the next apply writes every cell once.
        self._shown = {name: tuple(Text() for _ in COLUMNS) for name in self._shown}

    def _add_columns(self, snapshot: FleetSnapshot) -> None:
        longest = max((len(h.name) for h in snapshot.hosts), default=6)
        self._host_width = min(max(longest, 6), 24)
        for column in COLUMNS:
            width = self._host_width if column.key == "host" else column.width
            self.add_column(self._header(column, width), width=width + 1, key=column.key)

    def _width(self, column: Column) -> int:
        return self._host_width if column.key == "host" else column.width

    def _header(self, column: Column, width: int) -> Text:
        label = column.header
        if column.key == self.sort_key.value:
            label += "▴" if self.sort_reverse else "▾"
        text = f"{label:>{width}}" if column.right else label
        return Text(" " + text, style="bold")

    def _label_columns(self) -> None:
        for column in COLUMNS:
            key = ColumnKey(column.key)
            if key in self.columns:
                self.columns[key].label = self._header(column, self._width(column))
        self._update_count += 1  # the header row is cached by this count
        self.refresh()

    def _cells(self, row: HostRow) -> tuple[Text, ...]:
        base = _DIM if row.dimmed or row.label == "connecting" else _PLAIN
        chip = self.palette.chip(row.label)
        why_style = base + Style(color=self.palette.color(row.label))
        out: list[Text] = []
        for column, value in zip(COLUMNS, row.cells, strict=True):
            width = self._width(column)
            text = f"{value:>{width}}" if column.right else value
            style = chip if column.key == "state" else why_style if column.key == "why" else base
            if column.key == "age" and row.dimmed:
                style = _PLAIN  # the age is the point of a stale row: keep it legible
            out.append(Text(" " + text, style=style, no_wrap=True, overflow="crop"))
        return tuple(out)

    def _resort(self) -> None:
        key = SORT_KEYS[self.sort_key]
        order = sorted(self._shown, key=lambda n: key(self._rows[n]), reverse=self.sort_reverse)
        if order == self._order:
            return
        self._order = order
        position = {" " + name: i for i, name in enumerate(order)}
        self.sort("host", key=lambda cell: position[cell.plain])

    def _cursor_in_view(self) -> bool:
        top = int(self.scroll_y)
        height = max(self.scrollable_content_region.height - 1, 1)  # less the header row
        return top <= self.cursor_row < top + height

    def _follow(self, selected: str | None, scroll: bool) -> None:
        """Keep the cursor on the host it was on (operator actions target that host)."""
        if selected is None or selected not in self._shown:
            return
        index = self.get_row_index(selected)
        if index != self.cursor_row:
            self.move_cursor(row=index, scroll=scroll)
