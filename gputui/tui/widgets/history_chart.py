"""History charts in braille: a filled area of one metric over minutes, at the widget's size.

Each character is 2 x 4 dots (Unicode braille), so a chart 30 characters wide and 4 rows high
draws 60 points on 16 levels: eight times what a one-row sparkline of the same width shows.
The scale is fixed per metric, as the sparklines' (gputui/tui/sparkline.py), so two GPUs'
charts compare at a glance; each dot column is the highest sample of its bucket, so a spike
is never averaged away.

Buckets are numbered from the ring's first sample (HostHistory.appended), not from the newest,
so a bucket keeps its samples while new ones arrive and the chart does not shimmer. A dot
column stands for one sample until the history outgrows the width, then for as few samples as
fit it all: the chart always uses at least half its width, and its buckets move only when the
history has grown by a whole chart's worth of dots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

from gputui.tui.fleetview import fmt_age

# Braille dot bits of the left and right columns, filled k dots from the bottom (k = 0..4).
_LEFT = np.array([0x00, 0x40, 0x44, 0x46, 0x47], dtype=np.int32)
_RIGHT = np.array([0x00, 0x80, 0xA0, 0xB0, 0xB8], dtype=np.int32)
_BLANK = 0x2800


def choose_step(samples: int, dots: int) -> int:
    """Samples per dot column: the fewest whose buckets hold `samples` in `dots`."""
    return max(1, -(-samples // max(dots, 1)))


def bucket_max(
    values: npt.NDArray[np.floating], appended: int, step: int, dots: int
) -> npt.NDArray[np.float64]:
    """The last `dots` buckets of `step` samples each (the newest last, NaN where none), each
    the highest finite value of its samples; `values` ends with sample number `appended` - 1."""
    out = np.full(dots, np.nan)
    if values.size == 0 or dots <= 0:
        return out
    # Only the samples of the buckets drawn: the newest bucket holds those numbered from
    # (appended - 1) // step * step on, and each bucket starts at a multiple of `step`.
    newest = (appended - 1) // step * step
    first = max(newest - (dots - 1) * step, appended - values.size)
    start = first - first % step  # the oldest drawn bucket's first sample number
    padded = np.full(newest + step - start, np.nan)
    padded[first - start : first - start + appended - first] = values[
        values.size - (appended - first) :
    ]
    # fmax ignores NaN beside a number, so a bucket with one reading shows it and an empty
    # bucket stays NaN.
    highest = np.fmax.reduce(padded.reshape(-1, step), axis=1)
    out[dots - highest.size :] = highest
    return out


def braille_rows(
    points: npt.NDArray[np.float64], height: int, low: float, high: float
) -> list[str]:
    """`points` (two per character, oldest first) as a filled area `height` rows high, top
    row first. NaN is a gap; a value above `low` shows at least one dot."""
    if height <= 0 or points.size == 0:
        return []
    if points.size % 2:
        points = np.concatenate([[np.nan], points])
    levels = 4 * height
    span = max(high - low, 1e-9)
    scaled = np.clip((np.nan_to_num(points, nan=low) - low) / span, 0.0, 1.0) * levels
    filled = np.rint(scaled).astype(np.int32)
    filled[(filled == 0) & (points > low)] = 1  # NaN compares False
    # Dots each cell fills, per row (top first) and column: the fill minus what the rows
    # below hold, between 0 and 4.
    base = 4 * np.arange(height - 1, -1, -1, dtype=np.int32)[:, None]
    left = np.clip(filled[0::2] - base, 0, 4)
    right = np.clip(filled[1::2] - base, 0, 4)
    codes = _LEFT[left] | _RIGHT[right]
    chars = np.where(codes == 0, 0x20, _BLANK + codes).astype(np.uint32)
    return [row.tobytes().decode("utf-32-le") for row in chars]


@dataclass(frozen=True)
class ChartData:
    """What one chart draws: a metric's history and its fixed scale."""

    name: str  # "util", "memory", "temp", "power"
    value: str  # the latest reading, as the caption shows it ("87%", "62 C")
    values: npt.NDArray[np.float32]  # oldest first, the ring's content
    appended: int  # HostHistory.appended when `values` was read
    interval_s: float  # seconds between samples
    low: float
    high: float
    color: Color


#: A line of a chart: its pieces of text, each with its style.
Line = tuple[tuple[str, Style], ...]
_BOLD = Style(bold=True)
_DIM = Style(dim=True)
_PLAIN = Style()


def caption(data: ChartData, width: int, step: int, shown: int) -> Line:
    """`util 87%` on the left, the time the drawn dots span on the right (`last 12m`)."""
    left = f"{data.name} {data.value}"[:width]
    span = fmt_age(shown * step * data.interval_s, 0) if shown else ""
    right = f"last {span}" if span else ""
    gap = width - len(left) - len(right)
    if not right or gap < 1:
        return ((left, _BOLD), (" " * (width - len(left)), _PLAIN))
    return ((left, _BOLD), (" " * gap, _PLAIN), (right, _DIM))


def chart_lines(data: ChartData, width: int, height: int) -> list[Line]:
    """The caption and `height` - 1 rows of chart, each `width` characters wide."""
    rows = height - 1
    if width <= 0 or rows <= 0:
        return [caption(data, max(width, 0), 1, 0)][: max(height, 0)]
    dots = 2 * width
    samples = min(data.values.size, data.appended)
    step = choose_step(samples, dots)
    points = bucket_max(data.values, data.appended, step, dots)
    shown = min(-(-samples // step), dots) if samples else 0
    style = Style(color=data.color)
    lines = [caption(data, width, step, shown)]
    lines += [((row, style),) for row in braille_rows(points, rows, data.low, data.high)]
    return lines


def chart_text(data: ChartData, width: int, height: int) -> Text:
    """The chart as one Text (what the widget draws line by line)."""
    text = Text(no_wrap=True, overflow="crop")
    for n, line in enumerate(chart_lines(data, width, height)):
        if n:
            text.append("\n")
        for piece, style in line:
            text.append(piece, style=style)
    return text


def _same(a: ChartData, b: ChartData) -> bool:
    return (a.appended, a.value, a.values.size, a.low, a.high, a.color, a.interval_s) == (
        b.appended,
        b.value,
        b.values.size,
        b.low,
        b.high,
        b.color,
        b.interval_s,
    )


class HistoryChart(Widget):
    """One metric of one GPU: a caption line and a braille area chart filling the widget.

    Drawn line by line (Textual's Line API): a tick redraws only the lines whose text
    changed, so a new latest value repaints the caption and a new sample in a bucket that
    keeps its highest value repaints nothing."""

    DEFAULT_CSS = """
    HistoryChart {
        height: 5;
        width: 1fr;
    }
    """

    def __init__(self, *, classes: str | None = None) -> None:
        super().__init__(classes=classes)
        self.data: ChartData | None = None
        self.lines: list[Line] = []
        self._strips: dict[int, Strip] = {}
        self._base: Style | None = None

    def show(self, data: ChartData) -> None:
        """Work the lines out at the widget's size and repaint those that changed; nothing
        to do when no sample came in and the figures are the same (a host fallen silent)."""
        old, self.data = self.data, data
        if old is not None and _same(old, data):
            return
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        if self.data is None:
            return
        width, height = self.size
        lines = chart_lines(self.data, width, height)
        if len(lines) != len(self.lines):
            self.lines, self._strips = lines, {}
            self.refresh()
            return
        for y, (old, new) in enumerate(zip(self.lines, lines, strict=True)):
            if old != new:
                self._strips.pop(y, None)
                self.refresh(Region(0, y, width, 1))
        self.lines = lines

    def render_line(self, y: int) -> Strip:
        base = self.rich_style
        if base != self._base:  # the theme or the styles changed: every line anew
            self._base, self._strips = base, {}
        width = self.size.width
        if not 0 <= y < len(self.lines):
            return Strip.blank(width, base)
        strip = self._strips.get(y)
        if strip is None:
            segments = [Segment(text, base + style) for text, style in self.lines[y]]
            strip = Strip(segments).adjust_cell_length(width, base)
            self._strips[y] = strip
        return strip
