"""The fleet table: one row per host, updated in place by keyed diff once per tick.

Following dolphie's process list: rows are keyed by host name; each tick only the cells whose
text changed are updated, hosts that newly match are added and hosts that no longer match are
removed. The table is never cleared and rebuilt on a tick (that costs 10-30x more at 1,000
rows); a filter change that removes most rows is the one case where rebuilding is cheaper.
Column widths are fixed, so no update ever asks the table to re-measure.

Cells hold host text (names, reasons): each is escaped markup, rendered with emoji shortcodes
off (`Cell`), and put through `plain()` first.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec
from rich.markup import escape
from rich.style import Style
from rich.text import Text
from textual._types import SegmentLines
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from gputui.core.model import FleetSnapshot, HostSnapshot
from gputui.core.text import plain
from gputui.render.report import host_label
from gputui.tui.acyclic import AcyclicLRUCache
from gputui.tui.fleetview import (
    COLUMNS,
    SORT_KEYS,
    Column,
    FleetFilter,
    HostRow,
    SortKey,
    age_moved,
    host_row,
    light_sort_key,
    row_why,
)
from gputui.tui.palette import DEFAULT_PALETTE, Palette

_DIM = Style(dim=True)
_PLAIN = Style()
# Rebuild instead of removing row by row past this many removals (each removal is O(rows)).
_REBUILD_AFTER_REMOVALS = 64
_MARGIN = 5  # rows beyond the view kept current, so a small scroll shows no old values
CELL_CACHE = 1024
LINE_CACHE = 256  # rendered rows and lines: a few screens' worth, cursor variants included


class Cell(msgspec.Struct, frozen=True, gc=False):
    """One cell: gputui's markup (the cell's style) around escaped host text.

    DataTable reads a `str` cell as Rich markup with emoji shortcodes on, so a reason that
    named PCI device 0000:ab:00.0 showed an emoji in it; a Cell renders with shortcodes off.
    A struct out of the cyclic GC holding one str costs a full collection no more than the str.
    """

    markup: str

    def __str__(self) -> str:
        return self.markup

    def __rich__(self) -> Text:
        return Text.from_markup(self.markup, emoji=False, end="")


def _escaped(value: str) -> str:
    """Host text as markup that reads as the text itself, without control characters."""
    return escape(plain(value))


class FleetTable(DataTable[Cell]):
    """Hosts of the fleet, sorted (state first by default) and filtered."""

    # DataTable's home and end scroll sideways; here the first and the last host matter.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("home", "scroll_top", "First host", show=False),
        Binding("end", "scroll_bottom", "Last host", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", cell_padding=0, zebra_stripes=False, id=id)
        self.sort_key = SortKey.STATE
        self.sort_reverse = False
        self.filter = FleetFilter()
        self.palette: Palette = DEFAULT_PALETTE
        self.total = 0  # hosts in the fleet, matching or not
        self._snapshot: FleetSnapshot | None = None
        # host -> (label, dimmed, cell texts) on screen: what the next tick is compared with
        self._shown: dict[str, tuple[str, bool, tuple[str, ...]]] = {}
        self._row_cache: dict[str, tuple[HostSnapshot, HostRow]] = {}
        self._latest: dict[str, HostSnapshot] = {}  # shown host -> its newest snapshot
        self._keys: dict[str, tuple[object, ...]] = {}  # shown host -> its sort key
        self._current: set[str] = set()  # hosts whose cells show the newest snapshot
        self._order: list[str] = []  # hosts in screen order
        self._host_width = 0
        # The cursor follows its host when rows move, but only once the operator has put it
        # somewhere: until then it stays on the top row, the worst host.
        self._pinned = False
        self._moving = False
        # Rendered cells keyed by their own version: DataTable keys its cell cache by a
        # table-wide update count, so one changed cell would re-render every visible cell.
        self._version = 0
        self._cell_version: dict[tuple[RowKey, ColumnKey], int] = {}
        # About two screens of cells (cursor and hover variants included): what is in view.
        self._rendered: LRUCache[tuple[object, ...], SegmentLines] = AcyclicLRUCache(CELL_CACHE)
        # DataTable's own caches, of the same interface without reference cycles (acyclic.py:
        # DataTable clears them on every sort, row change and cursor move, and a cleared
        # textual LRUCache leaves its entries for the cyclic GC). Its cell cache is keyed by
        # the update count, so with the cache above its entries are never hit again: keep it
        # small. Its row and line caches are keyed by that count too (and by the cursor), so
        # after a tick only what is in view can be hit: a few screens' worth.
        self._cell_render_cache = AcyclicLRUCache(CELL_CACHE)
        self._row_render_cache = AcyclicLRUCache(LINE_CACHE)
        self._row_renderable_cache = AcyclicLRUCache(LINE_CACHE)
        self._line_cache = AcyclicLRUCache(LINE_CACHE)
        self._offset_cache = AcyclicLRUCache(1)
        self._ordered_row_cache = AcyclicLRUCache(1)

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

    # -- rendering --------------------------------------------------------------------------

    def update_cell(
        self,
        row_key: RowKey | str,
        column_key: ColumnKey | str,
        value: Cell,
        *,
        update_width: bool = False,
    ) -> None:
        super().update_cell(row_key, column_key, value, update_width=update_width)
        self._bump(RowKey(row_key) if isinstance(row_key, str) else row_key, column_key)

    def _bump(self, row_key: RowKey, column_key: ColumnKey | str) -> None:
        self._version += 1
        key = ColumnKey(column_key) if isinstance(column_key, str) else column_key
        self._cell_version[(row_key, key)] = self._version

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> SegmentLines:
        if row_index < 0 or column_index < 0:  # header and labels: as DataTable does
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        version = self._cell_version.get((row_key, column_key))  # type: ignore[arg-type]
        if version is None:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        key = (
            row_key, column_key, version, row_index, base_style, width, cursor, hover,
            self._show_hover_cursor, self._pseudo_class_state,
        )  # fmt: skip
        lines = self._rendered.get(key)
        if lines is None:
            lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
            self._rendered[key] = lines
        return lines

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
        now = snapshot.t
        # Every host's row is worked out only to fill the table; then each tick only the sort
        # key of each host (light_sort_key: its state, age or one figure) and the rows in
        # view (below), the others when they scroll into view.
        full = not self._shown
        sort_key = SORT_KEYS[self.sort_key]
        rows: dict[str, HostRow] = {}
        latest: dict[str, HostSnapshot] = {}
        keys: dict[str, tuple[object, ...]] = {}
        for host in snapshot.hosts:
            name = host.name
            if full:
                row = rows[name] = self._row(host, now)
                label = row.label
            else:
                label = host_label(host)
            if self.filter:
                why = rows[name].cells[-1] if full else row_why(host)
                if not self.filter.matches(host, label, why):
                    continue
            latest[name] = host
            keys[name] = (
                sort_key(rows[name]) if full else light_sort_key(self.sort_key, host, label, now)
            )
        self._latest, self._keys = latest, keys
        gone = [name for name in self._shown if name not in latest]
        if len(gone) > _REBUILD_AFTER_REMOVALS and len(gone) * 4 > len(self._shown):
            self.clear()
            self._cell_version.clear()
            self._rendered.clear()
            self._shown.clear()
            self._order = []
            gone = []
        for name in gone:
            self.remove_row(name)
            del self._shown[name]
            for column in COLUMNS:
                self._cell_version.pop((RowKey(name), ColumnKey(column.key)), None)
        self._current = set()
        for name, host in latest.items():
            if name in self._shown:
                if full:
                    self._show(name, rows[name])
                continue
            row = rows.get(name) or self._row(host, now)
            row_key = self.add_row(*self._texts(row), key=name)
            for column in COLUMNS:
                self._bump(row_key, column.key)
            self._shown[name] = (row.label, row.dimmed, row.cells)
            self._current.add(name)
        self._resort()
        self._refresh_visible()
        self._follow(selected, was_visible)

    def _show(self, name: str, row: HostRow) -> None:
        """Bring one shown row to `row`: only the cells whose text or look changed."""
        self._current.add(name)
        shown = (row.label, row.dimmed, row.cells)
        old = self._shown[name]
        if old != shown:
            self._update_row(name, old, row)
            self._shown[name] = shown

    def _refresh_visible(self) -> None:
        """Bring the rows in view (and a few around) up to the latest snapshot."""
        if self._snapshot is None:
            return
        top = int(self.scroll_y)
        height = max(self.scrollable_content_region.height, 1)
        now = self._snapshot.t
        for name in self._order[max(top - _MARGIN, 0) : top + height + _MARGIN]:
            host = self._latest.get(name)
            if name not in self._current and host is not None:
                self._show(name, self._row(host, now))

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if int(old_value) != int(new_value):
            self._refresh_visible()

    def on_resize(self) -> None:
        self._refresh_visible()

    def _row(self, host: HostSnapshot, now: float) -> HostRow:
        """The host's row; reused when the monitor handed over the very same host snapshot
        (a stale or unreachable host), whose age alone moves on."""
        cached = self._row_cache.get(host.name)
        if cached is not None and cached[0] is host:
            return age_moved(cached[1], host, now)
        row = host_row(host, now)
        self._row_cache[host.name] = (host, row)
        return row

    def _update_row(self, name: str, old: tuple[str, bool, tuple[str, ...]], row: HostRow) -> None:
        """Only the cells whose text changed; every cell when the row's look changed."""
        restyle = old[0] != row.label or old[1] != row.dimmed
        row_key = RowKey(name)
        for index, (column, before, after) in enumerate(
            zip(COLUMNS, old[2], row.cells, strict=True)
        ):
            if restyle or before != after:
                self.update_cell(row_key, ColumnKey(column.key), self._text(row, index))

    def set_filter(self, text: str) -> None:
        self.filter = FleetFilter(text)
        self._reapply()

    def set_sort(self, key: SortKey, reverse: bool = False) -> None:
        self.sort_key, self.sort_reverse = key, reverse
        self._label_columns()
        self._reapply()  # the new order may need figures the last tick did not work out

    def set_palette(self, palette: Palette) -> None:
        self.palette = palette
        self._shown_styles_stale()
        self._reapply()

    # -- internals ------------------------------------------------------------------------

    def _reapply(self) -> None:
        if self._snapshot is not None:
            self.apply(self._snapshot)

    def _shown_styles_stale(self) -> None:
        # Cells are compared by text, so a new palette would change nothing on screen: make
        # every shown row look different, so the next apply writes every cell once.
        self._shown = {name: ("", False, shown[2]) for name, shown in self._shown.items()}

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

    def _texts(self, row: HostRow) -> list[Cell]:
        return [self._text(row, i) for i in range(len(COLUMNS))]

    def _text(self, row: HostRow, index: int) -> Cell:
        """One cell as markup: padded text in the row's style.

        Cells are markup strings (in a Cell) rather than Text objects: a string is invisible to
        the cyclic GC, and 1,000 rows of Text objects made each full collection walk 20,000 more
        objects.
        """
        column = COLUMNS[index]
        value = plain(row.cells[index])  # before padding: what is dropped takes no room
        width = self._width(column)
        text = " " + escape(f"{value:>{width}}" if column.right else value)
        if column.key == "host":
            return Cell(text)  # never styled: the sort finds rows by this text
        base = _DIM if row.dimmed or row.label == "connecting" else _PLAIN
        if column.key == "state":
            style = self.palette.chip(row.label)
        elif column.key == "why":
            style = base + Style(color=self.palette.color(row.label))
        elif column.key == "age" and row.dimmed:
            style = _PLAIN  # the age is the point of a stale row: keep it legible
        else:
            style = base
        return Cell(f"[{style}]{text}[/]" if style else text)

    def _resort(self) -> None:
        keys = self._keys
        order = sorted(self._shown, key=keys.__getitem__, reverse=self.sort_reverse)
        if order == self._order:
            return
        self._order = order
        position = {" " + _escaped(name): i for i, name in enumerate(order)}
        self.sort("host", key=lambda cell: position[cell.markup])

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
