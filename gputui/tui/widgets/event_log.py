"""The event log: XIDs, verdict and connection changes, operator actions; newest first.

A Line-API widget over a plain list (toolong's log view is the model): appending is O(1), only
the lines in view are rendered, and a filter keeps a list of matching positions instead of
copying events. While the reader is scrolled down into older lines, new lines arriving at the
top shift the scroll position with them so the text being read stays put.

Lines are drawn as segments, which the terminal receives as they are: an event's host, kind and
text (a host's XID line, a command's output) are put through `plain()` as they are added.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from gputui.core.model import FleetEvent, Level
from gputui.core.text import is_plain, plain
from gputui.tui.palette import DEFAULT_PALETTE, Palette

MAX_ENTRIES = 20_000
_TRIM = 2_000


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


class EventLog(ScrollView, can_focus=True):
    """Fleet events, newest at the top."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.entries: list[FleetEvent] = []
        self.filter = LogFilter()
        self.palette: Palette = DEFAULT_PALETTE
        self._matching: list[int] = []  # positions in `entries`, oldest first
        # Position of each host's latest entry of each kind, for counting repeats on it.
        self._last_of_kind: dict[tuple[str, str], int] = {}
        self._host_width = 8

    @property
    def shown(self) -> int:
        return len(self._matching)

    def add(self, events: Iterable[FleetEvent]) -> None:
        added = 0
        for event in map(_plain_event, events):
            if self._count_repeat(event):
                continue
            self._last_of_kind[event.host, event.kind] = len(self.entries)
            self.entries.append(event)
            self._host_width = max(self._host_width, min(len(event.host), 20))
            if not self.filter or self.filter.matches(event):
                self._matching.append(len(self.entries) - 1)
                added += 1
        if len(self.entries) > MAX_ENTRIES:
            del self.entries[:_TRIM]
            self._last_of_kind = {
                key: pos - _TRIM for key, pos in self._last_of_kind.items() if pos >= _TRIM
            }
            self._rematch()
        if added:
            self._resize()
            if self.scroll_y > 0:  # reading older lines: keep them where they are
                self.scroll_to(y=self.scroll_y + added, animate=False)

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
        self.scroll_to(y=0, animate=False)

    def set_palette(self, palette: Palette) -> None:
        self.palette = palette
        self.refresh()

    def lines(self, limit: int | None = None) -> list[str]:
        """The shown lines as text, newest first (for tests and the compact strip)."""
        picked = self._matching[::-1] if limit is None else self._matching[: -limit - 1 : -1]
        return [self._plain(self.entries[i]) for i in picked]

    def _rematch(self) -> None:
        f = self.filter
        self._matching = [i for i, e in enumerate(self.entries) if not f or f.matches(e)]
        self._resize()

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
        e = self.entries[self._matching[-1 - row]]
        label = level_label(e.level)
        color = self.palette.color("ok" if label == "info" else label)
        gpu = f"GPU{e.gpu}" if e.gpu is not None else ""
        segments = [
            Segment(f"{clock(e.t)} ", Style(dim=True)),
            Segment(f"{label:<8} ", Style(color=color, bold=e.level >= Level.CRITICAL)),
            Segment(f"{e.host:<{self._host_width}} ", Style(bold=True)),
            Segment(f"{e.kind:<8} {gpu:<5} ", Style(dim=True)),
            Segment(_times(e), Style(bold=True)),  # before the text: a cut line keeps it
            Segment(e.text),
        ]
        return Strip(segments).crop(0, width).extend_cell_length(width)


def _times(e: FleetEvent) -> str:
    """How often a collapsed entry happened: "x40 " (the time shown is the latest)."""
    return f"x{e.repeat} " if e.repeat > 1 else ""
