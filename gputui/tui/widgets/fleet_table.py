"""The fleet table: one row per host, updated in place by keyed diff once per tick.

Following dolphie's process list: rows are keyed by host name; each tick only the cells whose
text changed are updated, hosts that newly match are added and hosts that no longer match are
removed. The table is never cleared and rebuilt on a tick (that costs 10-30x more at 1,000
rows); a filter change that removes most rows is the one case where rebuilding is cheaper.
Column widths follow only the widget's width (a narrow screen leaves out the columns that say
least, so WHY keeps its room), so no tick ever re-measures anything.

A Line-API widget (a ScrollView drawing `render_line`, as the event log and toolong's log view
are built) that owns its rows, its cursor and its cache of drawn lines, through Textual's public
API only. Line 0 is the header and stays put; the rows scroll under it. A drawn row is kept
with what it was drawn from (its cells, its place, cursor, hover, width and colours), so a tick
redraws only the rows whose cells changed, and only the cache of what is in view is kept.

Cells hold host text (names, reasons): each is a `Cell` of plain text (put through `plain()`)
and a style, drawn as segments: never read as markup, never with emoji shortcodes.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import msgspec
from rich.cells import cell_len, set_cell_size
from rich.markup import escape
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from gputui.core.model import FleetSnapshot, HostSnapshot
from gputui.core.text import plain
from gputui.render.report import fleet_labels
from gputui.tui.fleetview import (
    COLUMNS,
    LABEL_RANK,
    SORT_KEYS,
    Column,
    FleetFilter,
    HostRow,
    SortKey,
    age_moved,
    column_widths,
    content_width,
    host_row,
    light_sort_key,
    row_why,
)
from gputui.tui.palette import DEFAULT_PALETTE, LABELS, Palette
from gputui.tui.widgets.acyclic_lines import AcyclicLines

_DIM = Style(dim=True)
_PLAIN = Style()
# Rebuild instead of removing row by row past this many removals.
_REBUILD_AFTER_REMOVALS = 64
_MARGIN = 5  # rows beyond the view kept current, so a small scroll shows no old values
_COLUMN_INDEX = {column.key: i for i, column in enumerate(COLUMNS)}
HEADER = -1  # the row index of the header line


class Cell(msgspec.Struct, frozen=True, gc=False):
    """One cell: its text, padded to the column, and its style as a style string.

    The text is drawn as it is (a reason naming PCI device 0000:ab:00.0 shows no emoji, a
    bracket is no markup); `markup` is the same cell as escaped Rich markup, for reading.
    A struct out of the cyclic GC holding two strs costs a full collection no more than they.
    """

    text: str
    style: str = ""

    @property
    def markup(self) -> str:
        text = escape(self.text)
        return f"[{self.style}]{text}[/]" if self.style else text

    def __str__(self) -> str:
        return self.markup


class _Drawn(NamedTuple):
    """A row's line as drawn, and what it was drawn from."""

    cells: tuple[Cell, ...]
    look: tuple[object, ...]  # place, cursor, hover, width, scroll and the widget's styles
    strip: Strip


class FleetTable(AcyclicLines, ScrollView, can_focus=True):
    """Hosts of the fleet, sorted (state first by default) and filtered."""

    # The first and the last host matter here, not the first and the last column.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Select", show=False),
        Binding("up", "cursor_up", "Cursor up", show=False),
        Binding("down", "cursor_down", "Cursor down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,ctrl+home", "scroll_top", "First host", show=False),
        Binding("end,ctrl+end", "scroll_bottom", "Last host", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "fleet-table--header",
        "fleet-table--cursor",
        "fleet-table--hover",
    }

    # The look of Textual's DataTable, which drew this table before.
    DEFAULT_CSS = """
    FleetTable {
        background: $surface;
        color: $foreground;
        &:focus {
            background-tint: $foreground 5%;
            & > .fleet-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .fleet-table--header {
                background-tint: $foreground 5%;
            }
        }
        & > .fleet-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .fleet-table--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .fleet-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        & > .fleet-table--hover {
            background: $block-hover-background;
        }
    }
    """

    class HostChosen(Message):
        """Enter, or a click on the cursor's row: open this host."""

        def __init__(self, host: str) -> None:
            super().__init__()
            self.host = host

    class HeaderClicked(Message):
        """A click on a column's header."""

        def __init__(self, column: str) -> None:
            super().__init__()
            self.column = column

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sort_key = SortKey.STATE
        self.sort_reverse = False
        self.filter = FleetFilter()
        self.palette: Palette = DEFAULT_PALETTE
        self.total = 0  # hosts in the fleet, matching or not
        self.cursor_row = 0
        self._snapshot: FleetSnapshot | None = None
        # host -> (label, dimmed, cell texts) on screen: what the next tick is compared with
        self._shown: dict[str, tuple[str, bool, tuple[str, ...]]] = {}
        self._cells: dict[str, tuple[Cell, ...]] = {}  # host -> its cells, as drawn
        self._row_cache: dict[str, tuple[HostSnapshot, HostRow]] = {}
        self._latest: dict[str, HostSnapshot] = {}  # shown host -> its newest snapshot
        self._keys: dict[str, tuple[object, ...]] = {}  # shown host -> its sort key
        self._sorted_by: tuple[SortKey, bool] | None = None  # the order `_order` was made in
        self._current: set[str] = set()  # hosts whose cells show the newest snapshot
        self._order: list[str] = []  # hosts in screen order
        self._index: dict[str, int] = {}  # host -> its place in `_order`
        self._drawn: dict[str, _Drawn] = {}  # rows in view (and around): their lines
        self._header_cells: tuple[Cell, ...] = ()
        self._header_drawn: _Drawn | None = None
        self._widths: tuple[int, ...] = ()  # each column's width on screen
        self._host_width = 0
        self._hover_row: int | None = None  # the row under the mouse, shown once it moved
        # The cursor follows its host when rows move, but only once the operator has put it
        # somewhere: until then it stays on the top row, the worst host.
        self._pinned = False

    # -- public ---------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def selected_host(self) -> str | None:
        if not 0 <= self.cursor_row < len(self._order):
            return None
        return self._order[self.cursor_row]

    @property
    def shown(self) -> list[str]:
        """Hosts in the order the table shows them."""
        return list(self._order)

    def select_host(self, name: str) -> bool:
        if name not in self._index:
            return False
        self.move_cursor(self._index[name])
        self._pinned = True
        return True

    def get_row_index(self, host: str) -> int:
        return self._index[host]

    def get_row(self, host: str) -> list[Cell]:
        return list(self._cells[host])

    def get_cell(self, host: str, column: str) -> Cell:
        return self._cells[host][_COLUMN_INDEX[column]]

    def column_x(self, column: str) -> int:
        """Where `column` starts, in cells from the table's left edge."""
        return sum(self._widths[: _COLUMN_INDEX[column]])

    # -- rows -----------------------------------------------------------------------------

    def add_row(self, *cells: Cell, key: str) -> None:
        self._cells[key] = cells
        self._index[key] = len(self._order)
        self._order.append(key)

    def update_cell(self, host: str, column: str, value: Cell) -> None:
        cells = self._cells[host]
        i = _COLUMN_INDEX[column]
        self._cells[host] = (*cells[:i], value, *cells[i + 1 :])

    def remove_row(self, host: str) -> None:
        del self._cells[host]
        self._drawn.pop(host, None)
        self._order.remove(host)
        self._index = {name: i for i, name in enumerate(self._order)}

    def clear(self) -> None:
        self._cells.clear()
        self._drawn.clear()
        self._order = []
        self._index = {}

    # -- keys and mouse -------------------------------------------------------------------

    def move_cursor(self, row: int) -> None:
        """Put the cursor on `row` (kept within the table) and scroll it into view."""
        row = max(0, min(row, len(self._order) - 1))
        if row != self.cursor_row:
            old, self.cursor_row = self.cursor_row, row
            self._refresh_row(old)
            self._refresh_row(row)
        self._scroll_into_view(row)

    def _operator_moves(self, row: int) -> None:
        self._pinned = True
        self._hover_shown(None)
        self.move_cursor(row)

    def action_cursor_up(self) -> None:
        self._operator_moves(self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self._operator_moves(self.cursor_row + 1)

    def action_page_down(self) -> None:
        height = self._rows_in_view()
        self.scroll_relative(y=height, animate=False, force=True)
        self._operator_moves(self.cursor_row + height)

    def action_page_up(self) -> None:
        height = self._rows_in_view()
        self.scroll_relative(y=-height, animate=False)
        self._operator_moves(self.cursor_row - height)

    def action_scroll_top(self) -> None:
        self._operator_moves(0)

    def action_scroll_bottom(self) -> None:
        self._operator_moves(len(self._order) - 1)

    def action_select_cursor(self) -> None:
        host = self.selected_host
        if host is not None:
            self.post_message(self.HostChosen(host))

    def _row_at(self, event: events.MouseEvent) -> tuple[int, int] | None:
        """(row, x in the table) under the mouse; the row is HEADER on the header line."""
        offset = event.get_content_offset(self)
        if offset is None:
            return None
        if offset.y == 0:
            return HEADER, offset.x + int(self.scroll_x)
        return offset.y - 1 + int(self.scroll_y), offset.x + int(self.scroll_x)

    def on_click(self, event: events.Click) -> None:
        at = self._row_at(event)
        if at is None:
            return
        row, x = at
        if row == HEADER:
            column = self._column_at(x)
            if column is not None:
                self.post_message(self.HeaderClicked(column.key))
            return
        if not 0 <= row < len(self._order):
            return
        event.stop()
        self._hover_shown(row)
        if row == self.cursor_row:
            self.action_select_cursor()
        self._pinned = True
        self.move_cursor(row)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        at = self._row_at(event)
        row = at[0] if at is not None and at[0] < len(self._order) else None
        self._hover_shown(row)

    def on_leave(self, event: events.Leave) -> None:
        self._hover_shown(None)

    def _hover_shown(self, row: int | None) -> None:
        if row != self._hover_row:
            old, self._hover_row = self._hover_row, row
            for changed in (old, row):
                if changed is not None:
                    self._refresh_row(changed)

    def _column_at(self, x: int) -> Column | None:
        start = 0
        for column, width in zip(COLUMNS, self._widths, strict=True):
            if start <= x < start + width:
                return column
            start += width
        return None

    # -- drawing --------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if y == 0:
            return self._header_line(base, width)
        row = y - 1 + int(self.scroll_y)
        if not 0 <= row < len(self._order):
            return Strip.blank(width, base)
        name = self._order[row]
        cells = self._cells[name]
        cursor = row == self.cursor_row
        hover = row == self._hover_row
        styles = (
            base,
            self.get_component_rich_style("fleet-table--cursor") if cursor else None,
            self.get_component_rich_style("fleet-table--hover") if hover else None,
        )
        look = (row, width, int(self.scroll_x), styles)
        drawn = self._drawn.get(name)
        if drawn is not None and drawn.cells is cells and drawn.look == look:
            return drawn.strip
        strip = self._draw(row, cells, base, base, styles[1], styles[2], width)
        self._drawn[name] = _Drawn(cells, look, strip)
        return strip

    def _header_line(self, base: Style, width: int) -> Strip:
        header = self.get_component_styles("fleet-table--header").rich_style
        look = (width, int(self.scroll_x), base, header)
        drawn = self._header_drawn
        if drawn is not None and drawn.cells is self._header_cells and drawn.look == look:
            return drawn.strip
        strip = self._draw(HEADER, self._header_cells, header, base, None, None, width)
        self._header_drawn = _Drawn(self._header_cells, look, strip)
        return strip

    def _draw(
        self,
        row: int,
        cells: tuple[Cell, ...],
        row_style: Style,
        base: Style,
        cursor: Style | None,
        hover: Style | None,
        width: int,
    ) -> Strip:
        """One line as DataTable drew it: each cell cut or padded to its column in the row's
        style (cursor and hover over it, the cursor's colour over the cell's own), then the
        rest of the width in the row's style, with each cell's place in the style's meta."""
        component = Style()
        if hover is not None:
            component += hover
        if cursor is not None:
            component += cursor
        post = Style.from_color(color=component.color)
        segments: list[Segment] = []
        for index, (cell, column_width) in enumerate(zip(cells, self._widths, strict=True)):
            pre = row_style + Style.from_meta({"row": row, "column": index}) + component
            text = cell.text
            if cell_len(text) > column_width:
                text = set_cell_size(text, column_width)  # cut, as a wide cell's text is
            style = pre + Style.parse(cell.style) if cell.style else pre
            if text:
                segments.append(Segment(text, style + post))
            pad = column_width - cell_len(text)
            if pad > 0:
                segments.append(Segment(" " * pad, pre + post))
        rest = max(0, width - sum(self._widths))
        extend = (
            row_style
            + component
            + Style.from_meta({"row": row, "column": 0, "out_of_bounds": True})
        )
        segments.append(Segment(" " * rest, extend))
        x = int(self.scroll_x)
        return Strip(segments).crop(x, x + width).adjust_cell_length(width, base).simplify()

    def _refresh_row(self, row: int) -> None:
        if 0 <= row < len(self._order):
            self.refresh_line(row + 1)

    def _rows_in_view(self) -> int:
        return max(self.scrollable_content_region.height - 1, 1)  # less the header line

    def _scroll_into_view(self, row: int) -> None:
        top = int(self.scroll_y)
        height = self._rows_in_view()
        if row < top:
            self.scroll_to(y=row, animate=False, force=True)
        elif row >= top + height:
            self.scroll_to(y=row - height + 1, animate=False, force=True)

    def _resize(self) -> None:
        size = Size(sum(self._widths), len(self._order) + 1)
        if size != self.virtual_size:  # assigning it, even unchanged, redraws the scrollbars
            self.virtual_size = size

    # -- ticks ----------------------------------------------------------------------------

    def apply(self, snapshot: FleetSnapshot) -> None:
        """Bring the table to `snapshot`: changed cells, new rows, gone rows, order."""
        self._snapshot = snapshot
        self.total = len(snapshot.hosts)
        if not self._widths:
            self._add_columns(snapshot)
        selected = self.selected_host if self._pinned else None
        now = snapshot.t
        # Every host's row is worked out only to fill the table; then each tick only the sort
        # key of each host (light_sort_key: its state, age or one figure) and the rows in
        # view (below), the others when they scroll into view.
        full = not self._shown
        order_by = self.sort_key
        sort_key = SORT_KEYS[order_by]
        by_state = order_by is SortKey.STATE
        unranked = len(LABELS)
        fleet_filter = self.filter if self.filter else None
        rows: dict[str, HostRow] = {}
        latest: dict[str, HostSnapshot] = {}
        keys: dict[str, tuple[object, ...]] = {}
        # Each host's label once per snapshot, shared with the summary line and the app's
        # announcements; sorted by state (the default), a key is the label's rank and the name.
        for host, label in zip(snapshot.hosts, fleet_labels(snapshot), strict=True):
            name = host.name
            if full:
                row = rows[name] = self._row(host, now)
            if fleet_filter is not None:
                why = rows[name].cells[-1] if full else row_why(host)
                if not fleet_filter.matches(host, label, why):
                    continue
            latest[name] = host
            if full:
                keys[name] = sort_key(rows[name])
            elif by_state:
                keys[name] = (LABEL_RANK.get(label, unranked), name)
            else:
                keys[name] = light_sort_key(order_by, host, label, now)
        sorted_as = (self._keys, self._sorted_by)
        self._latest, self._keys = latest, keys
        gone = [name for name in self._shown if name not in latest]
        if len(gone) > _REBUILD_AFTER_REMOVALS and len(gone) * 4 > len(self._shown):
            self.clear()
            self._shown.clear()
            gone = []
        for name in gone:
            self.remove_row(name)
            del self._shown[name]
        self._current = set()
        added = False
        for name, host in latest.items():
            if name in self._shown:
                if full:
                    self._show(name, rows[name])
                continue
            row = rows.get(name) or self._row(host, now)
            self.add_row(*self._texts(row), key=name)
            self._shown[name] = (row.label, row.dimmed, row.cells)
            self._current.add(name)
            added = True
        # The same hosts with the same keys in the same order keep their places: no sort.
        if added or gone or sorted_as != (keys, (order_by, self.sort_reverse)):
            self._resort()
        self._resize()
        self._refresh_visible()
        self._follow(selected)
        self.refresh()

    def _show(self, name: str, row: HostRow) -> None:
        """Bring one shown row to `row`: only the cells whose text or look changed."""
        self._current.add(name)
        shown = (row.label, row.dimmed, row.cells)
        old = self._shown[name]
        if old != shown:
            self._update_row(name, old, row)
            self._shown[name] = shown

    def _refresh_visible(self) -> None:
        """Bring the rows in view (and a few around) up to the latest snapshot; forget the
        lines drawn for rows out of view."""
        if self._snapshot is None:
            return
        top = int(self.scroll_y)
        height = max(self.scrollable_content_region.height, 1)
        now = self._snapshot.t
        near = self._order[max(top - _MARGIN, 0) : top + height + _MARGIN]
        for name in near:
            host = self._latest.get(name)
            if name not in self._current and host is not None:
                self._show(name, self._row(host, now))
        if len(self._drawn) > 2 * len(near):
            self._drawn = {name: self._drawn[name] for name in near if name in self._drawn}

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if int(old_value) != int(new_value):
            self._refresh_visible()

    def on_resize(self) -> None:
        self._fit()
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
        for index, (column, before, after) in enumerate(
            zip(COLUMNS, old[2], row.cells, strict=True)
        ):
            if restyle or before != after:
                self.update_cell(name, column.key, self._text(row, index))
        place = self._index.get(name)
        if place is not None:
            self._refresh_row(place)

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
        self._widths = column_widths(self.size.width, self._host_width)
        self._label_columns()

    def _fit(self) -> None:
        """The columns that fit the widget's width now (0 wide: left out)."""
        if not self._widths:
            return  # no snapshot yet: the first one lays the columns out
        widths = column_widths(self.size.width, self._host_width)
        if widths != self._widths:
            self._widths = widths
            self._drawn.clear()
            self._label_columns()
            self._resize()
            self.refresh()

    @property
    def shown_columns(self) -> list[str]:
        """The keys of the columns on screen, left to right."""
        return [c.key for c, w in zip(COLUMNS, self._widths, strict=True) if w]

    def _width(self, column: Column) -> int:
        return content_width(column, self._host_width)

    def _header(self, column: Column, width: int) -> Cell:
        label = column.header
        if column.key == self.sort_key.value:
            label += "▴" if self.sort_reverse else "▾"
        text = f"{label:>{width}}" if column.right else label
        return Cell(" " + text, "bold")

    def _label_columns(self) -> None:
        if self._widths:
            self._header_cells = tuple(self._header(c, self._width(c)) for c in COLUMNS)
            self.refresh_line(int(self.scroll_y))  # the header: line 0 on screen

    def _texts(self, row: HostRow) -> list[Cell]:
        return [self._text(row, i) for i in range(len(COLUMNS))]

    def _text(self, row: HostRow, index: int) -> Cell:
        """One cell: padded text in the row's style.

        Cells are strs in a Cell rather than Text objects: a str is invisible to the cyclic GC,
        and 1,000 rows of Text objects made each full collection walk 20,000 more objects.
        """
        column = COLUMNS[index]
        value = plain(row.cells[index])  # before padding: what is dropped takes no room
        width = self._width(column)
        text = " " + (f"{value:>{width}}" if column.right else value)
        if column.key == "host":
            return Cell(text)  # never styled
        base = _DIM if row.dimmed or row.label == "connecting" else _PLAIN
        if column.key == "state":
            style = self.palette.chip(row.label)
        elif column.key == "why":
            style = base + Style(color=self.palette.color(row.label))
        elif column.key == "age" and row.dimmed:
            style = _PLAIN  # the age is the point of a stale row: keep it legible
        else:
            style = base
        return Cell(text, str(style) if style else "")

    def _resort(self) -> None:
        keys = self._keys
        self._sorted_by = (self.sort_key, self.sort_reverse)
        order = sorted(self._shown, key=keys.__getitem__, reverse=self.sort_reverse)
        if order == self._order:
            return
        self._order = order
        self._index = {name: i for i, name in enumerate(order)}

    def _follow(self, selected: str | None) -> None:
        """Keep the cursor on the host it was on (operator actions target that host)."""
        if selected is not None and selected in self._index:
            if self._index[selected] != self.cursor_row:
                self.move_cursor(self._index[selected])
        elif self.cursor_row >= len(self._order):
            self.move_cursor(len(self._order) - 1)
