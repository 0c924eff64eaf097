"""The event log: XIDs, verdict and connection changes, operator actions; newest first.

A Line-API widget over a plain list (toolong's log view is the model): appending is O(1), only
the lines in view are rendered, and a filter keeps a list of matching positions instead of
copying events. While the reader is scrolled down into older lines, new lines arriving at the
top shift the scroll position with them so the text being read stays put.

One fault is one line. An XID reaches the log as the agent's event, the verdict it moved, the
lost GPU that followed and the app's alert that the host got worse: four lines saying one
thing. The lines of one host that tell of one fault (FAULT_KINDS, within FAULT_WINDOW_S of its
first) are kept as one entry, shown by its cause and its worst level, with "+N" for the others;
enter on an entry shows all of its lines.

Lines are drawn as segments, which the terminal receives as they are: an event's host, kind and
text (a host's XID line, a command's output) are put through `plain()` as they are added.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import msgspec
from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from gputui.core.model import FleetEvent, Level
from gputui.core.text import is_plain, plain
from gputui.core.words import counted
from gputui.tui.palette import DEFAULT_PALETTE, Palette
from gputui.tui.screens.dialogs import LinesDialog
from gputui.tui.widgets.acyclic_lines import AcyclicLines

MAX_ENTRIES = 20_000
_TRIM = 2_000
#: Kinds of line that tell of a fault: the agent's event, the verdict it moved, the alert.
FAULT_KINDS = frozenset({"xid", "ecc_dbe", "gpu_lost", "reset_required", "verdict", "alert"})
# Which of a fault's lines stands for it (lowest first): the cause, then what it made of the
# host. Causes name a GPU and what happened to it; a second cause on another GPU, or another
# XID, is another fault.
_LEAD_RANK = {"xid": 0, "ecc_dbe": 0, "gpu_lost": 1, "reset_required": 1, "verdict": 2, "alert": 3}
_CAUSE_RANK = 1
#: A fault's lines arrive together (the alert a tick after the agent's event, a lost GPU at the
#: next sample): later ones are another fault.
FAULT_WINDOW_S = 5.0


def clock(t: float) -> str:
    """Local wall-clock time of a Unix time, as the operator's other tools print it."""
    return time.strftime("%H:%M:%S", time.localtime(t))


def level_label(level: Level) -> str:
    return "info" if level is Level.OK else level.label


@dataclass(frozen=True)
class _Term:
    kind: str  # level, host, kind, text
    value: str
    negate: bool = False


class LogFilter:
    """Event filter: `level:warn` (that level or worse), `host:gpu0*`, `kind:xid`, or text."""

    def __init__(self, text: str = "") -> None:
        self.text = text.strip()
        self.terms: list[_Term] = []
        for word in self.text.split():
            negate = word.startswith("-") and len(word) > 1
            word = word[1:] if negate else word
            kind, sep, value = word.partition(":")
            if sep and kind.lower() in ("level", "host", "kind"):
                self.terms.append(_Term(kind.lower(), value.lower(), negate))
            else:
                self.terms.append(_Term("text", word.lower(), negate))

    def __bool__(self) -> bool:
        return bool(self.terms)

    def matches(self, event: FleetEvent) -> bool:
        return all(self._match(t, event) != t.negate for t in self.terms)

    @staticmethod
    def _match(term: _Term, e: FleetEvent) -> bool:
        if term.kind == "level":
            wanted = next((lv for lv in Level if level_label(lv).startswith(term.value)), None)
            return wanted is not None and e.level >= wanted
        if term.kind == "host":
            return fnmatch.fnmatchcase(
                e.host.lower(),
                term.value if "*" in term.value or "?" in term.value else f"*{term.value}*",
            )
        if term.kind == "kind":
            return e.kind.lower().startswith(term.value)
        return term.value in e.text.lower() or term.value in e.host.lower() or term.value in e.kind


def _plain_event(e: FleetEvent) -> FleetEvent:
    """`e` with no control characters in the text the log shows (the same `e` when none)."""
    if is_plain(e.host) and is_plain(e.kind) and is_plain(e.text):
        return e
    return msgspec.structs.replace(e, host=plain(e.host), kind=plain(e.kind), text=plain(e.text))


class EventLog(AcyclicLines, ScrollView, can_focus=True):
    """Fleet events, newest at the top; one line per fault, its lines one key away."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "lines", "Details"),
        Binding("up", "cursor(-1)", "Cursor up", show=False),
        Binding("down", "cursor(1)", "Cursor down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "cursor_to(0)", "Newest", show=False),
        Binding("end", "cursor_to(-1)", "Oldest", show=False),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {"event-log--cursor"}
    DEFAULT_CSS = """
    EventLog:focus > .event-log--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.entries: list[FleetEvent] = []  # one per line: a fault's shows its cause
        # The lines of each entry, parallel to `entries`: () for an entry of one line.
        self.parts: list[tuple[FleetEvent, ...]] = []
        self.filter = LogFilter()
        self.palette: Palette = DEFAULT_PALETTE
        self._matching: list[int] = []  # positions in `entries`, oldest first
        # Position of each host's latest entry of each kind, for counting repeats on it.
        self._last_of_kind: dict[tuple[str, str], int] = {}
        self._fault: dict[str, int] = {}  # host -> position of its latest fault's entry
        self._host_width = 8
        self.cursor = 0  # the selected line, counted from the top (the newest)

    @property
    def shown(self) -> int:
        return len(self._matching)

    def add(self, events: Iterable[FleetEvent]) -> None:
        added = 0
        for event in map(_plain_event, events):
            if self._count_repeat(event) or self._joins_fault(event):
                continue
            if event.kind in FAULT_KINDS:
                self._fault[event.host] = len(self.entries)
            self._last_of_kind[event.host, event.kind] = len(self.entries)
            self.entries.append(event)
            self.parts.append(())
            self._host_width = max(self._host_width, min(len(event.host), 20))
            if not self.filter or self.filter.matches(event):
                self._matching.append(len(self.entries) - 1)
                added += 1
        if len(self.entries) > MAX_ENTRIES:
            del self.entries[:_TRIM]
            del self.parts[:_TRIM]
            self._last_of_kind = {
                key: pos - _TRIM for key, pos in self._last_of_kind.items() if pos >= _TRIM
            }
            self._fault = {host: pos - _TRIM for host, pos in self._fault.items() if pos >= _TRIM}
            self._rematch()
        if added:
            self._resize()
            if self.scroll_y > 0:  # reading older lines: keep them where they are
                self.scroll_to(y=self.scroll_y + added, animate=False)
            if self.cursor > 0:  # and the cursor on the line it was on
                self.cursor = min(self.cursor + added, len(self._matching) - 1)

    def _joins_fault(self, event: FleetEvent) -> bool:
        """Whether `event` is another line of its host's latest fault, now kept on its entry."""
        if event.kind not in FAULT_KINDS:
            return False
        pos = self._fault.get(event.host)
        if pos is None:
            return False
        lines = self.parts[pos] or (self.entries[pos],)
        first = lines[0]
        if event.t - first.t > FAULT_WINDOW_S:
            return False
        lead = self.entries[pos]
        if _LEAD_RANK[event.kind] <= _CAUSE_RANK and _LEAD_RANK[lead.kind] <= _CAUSE_RANK:
            xids = (event.xid, lead.xid)
            if event.gpu != lead.gpu or (None not in xids and xids[0] != xids[1]):
                return False  # another GPU, or another XID: another fault
        lines = (*lines, event)
        self.parts[pos] = lines
        self.entries[pos] = _fault_entry(lines)
        self.refresh()
        return True

    def _count_repeat(self, event: FleetEvent) -> bool:
        """Whether `event` repeats its host's latest entry of its kind, now counted there."""
        if event.repeat < 2:
            return False
        pos = self._last_of_kind.get((event.host, event.kind))
        if pos is None:
            return False
        last = self.entries[pos]
        if (last.kind, last.text, last.level, last.gpu) != (
            event.kind,
            event.text,
            event.level,
            event.gpu,
        ):
            return False
        self.entries[pos] = event
        self.refresh()
        return True

    def set_filter(self, text: str) -> None:
        self.filter = LogFilter(text)
        self._rematch()
        self.cursor = 0
        self.scroll_to(y=0, animate=False)

    def set_palette(self, palette: Palette) -> None:
        self.palette = palette
        self.refresh()

    def lines(self, limit: int | None = None) -> list[str]:
        """The shown lines as text, newest first (for tests and the compact strip)."""
        picked = self._matching[::-1] if limit is None else self._matching[: -limit - 1 : -1]
        return [self._plain(self.entries[i]) + _more(self.parts[i]) for i in picked]

    def entry_lines(self, row: int) -> list[str]:
        """Every line of the entry on line `row` (0: the newest), oldest first."""
        pos = self._matching[-1 - row]
        return [self._plain(e) for e in self.parts[pos] or (self.entries[pos],)]

    def _rematch(self) -> None:
        f = self.filter
        self._matching = [
            i
            for i, e in enumerate(self.entries)
            if not f or any(map(f.matches, self.parts[i] or (e,)))
        ]
        self.cursor = min(self.cursor, max(len(self._matching) - 1, 0))
        self._resize()

    # -- the cursor and an entry's lines ----------------------------------------------------

    def action_cursor(self, step: int) -> None:
        self._move(self.cursor + step)

    def action_page(self, step: int) -> None:
        self._move(self.cursor + step * max(self.scrollable_content_region.height, 1))

    def action_cursor_to(self, row: int) -> None:
        self._move(row if row >= 0 else len(self._matching) - 1)

    def _move(self, row: int) -> None:
        self.cursor = max(0, min(row, len(self._matching) - 1))
        top, height = int(self.scroll_y), max(self.scrollable_content_region.height, 1)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, force=True)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False, force=True)
        self.refresh()

    def action_lines(self) -> None:
        """Show every line of the selected entry, wrapped, in a dialog."""
        if not self._matching:
            return
        lines = self.entry_lines(self.cursor)
        entry = self.entries[self._matching[-1 - self.cursor]]
        title = f"{entry.host} at {clock(entry.t)}: {counted(len(lines), 'line')}"
        self.app.push_screen(LinesDialog(title, lines))

    def _resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self._matching))
        self.refresh()

    def _plain(self, e: FleetEvent) -> str:
        gpu = f"GPU{e.gpu}" if e.gpu is not None else ""
        return (
            f"{clock(e.t)} {level_label(e.level):<8} {e.host:<{self._host_width}} "
            f"{e.kind:<8} {gpu:<5} {_times(e)}{e.text}"
        )

    def render_line(self, y: int) -> Strip:
        row = y + int(self.scroll_y)
        width = self.size.width
        if row >= len(self._matching):
            return Strip.blank(width)
        pos = self._matching[-1 - row]
        e = self.entries[pos]
        label = level_label(e.level)
        color = self.palette.color("ok" if label == "info" else label)
        gpu = f"GPU{e.gpu}" if e.gpu is not None else ""
        more = _more(self.parts[pos])
        text = e.text
        if more and cell_len(text) + len(more) > width - self._text_x():
            # A long cause is cut before its "+N", which says there is more to read.
            text = set_cell_size(text, max(width - self._text_x() - len(more) - 1, 0)) + "…"
        segments = [
            Segment(f"{clock(e.t)} ", Style(dim=True)),
            Segment(f"{label:<8} ", Style(color=color, bold=e.level >= Level.CRITICAL)),
            Segment(f"{e.host:<{self._host_width}} ", Style(bold=True)),
            Segment(f"{e.kind:<8} {gpu:<5} ", Style(dim=True)),
            Segment(_times(e), Style(bold=True)),  # before the text: a cut line keeps it
            Segment(text),
            Segment(more, Style(dim=True)),
        ]
        strip = Strip(segments).crop(0, width).extend_cell_length(width)
        if row == self.cursor and self.has_focus:
            strip = strip.apply_style(self.get_component_rich_style("event-log--cursor"))
        return strip

    def _text_x(self) -> int:
        """Where an entry's text starts: after its time, level, host, kind and GPU."""
        return 9 + 9 + self._host_width + 1 + 9 + 6

    def on_focus(self) -> None:
        self.refresh()  # the cursor shows while the log has the focus

    def on_blur(self) -> None:
        self.refresh()


def _times(e: FleetEvent) -> str:
    """How often a collapsed entry happened: "x40 " (the time shown is the latest)."""
    return f"x{e.repeat} " if e.repeat > 1 else ""


def _more(parts: tuple[FleetEvent, ...]) -> str:
    """After a fault's line: how many more lines it has (enter shows them)."""
    return f"  +{len(parts) - 1}" if parts else ""


def _fault_entry(lines: tuple[FleetEvent, ...]) -> FleetEvent:
    """The one line of a fault: its cause (the first line of the lowest rank), at the worst
    level of its lines."""
    lead = min(lines, key=lambda e: _LEAD_RANK[e.kind])
    worst = max(e.level for e in lines)
    return lead if lead.level == worst else msgspec.structs.replace(lead, level=worst)
