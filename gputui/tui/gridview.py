"""What the GPU grid draws: a colour per GPU and the flow layout of host blocks.

A GPU is half a character: each character is an upper half block whose foreground is one GPU
and whose background is another, so an 8-GPU host is a 4x1 block (GPUs 0-3 on top, 4-7 below)
and 1,000 such hosts need 26 lines of a 200-column terminal.
"""

from __future__ import annotations

import enum
from bisect import bisect_right
from dataclasses import dataclass

from rich.color import Color

from gputui.core.model import GpuInfo, GpuReading, HostSnapshot, HostState
from gputui.render.report import host_label
from gputui.tui.palette import Palette

DEFAULT_GPUS = 8  # block size of a host that has not said hello yet
FALLBACK_SLOWDOWN_C = 87.0
COOL_C = 30.0  # bottom of the temperature scale


class GridMode(enum.Enum):
    """What colours a GPU's cell; `m` cycles them in this order."""

    VERDICT = "verdict"
    UTIL = "util"
    TEMP = "temp"
    POWER = "power"
    MEMORY = "memory"

    def next(self) -> GridMode:
        members = list(GridMode)
        return members[(members.index(self) + 1) % len(members)]


#: Legend text of each metric mode's heat scale: (low end, high end).
SCALE_ENDS = {
    GridMode.UTIL: ("0%", "100% util"),
    GridMode.TEMP: (f"{COOL_C:.0f} C", "slowdown limit"),
    GridMode.POWER: ("0 W", "power limit"),
    GridMode.MEMORY: ("0%", "100% memory"),
}

# Host labels that colour every GPU of the host: the host's readings are not current.
_WHOLE_HOST = ("unreachable", "stale", "reconnecting", "connecting", "marked-failed")


def gpu_count(host: HostSnapshot) -> int:
    return len(host.hello.gpus) if host.hello is not None else DEFAULT_GPUS


def metric_fraction(mode: GridMode, r: GpuReading, info: GpuInfo | None) -> float | None:
    """How far `r` is along `mode`'s scale, 0 to 1 (unclamped; None: not read). The grid's
    colours and the per-GPU view's meters share these scales."""
    if mode is GridMode.UTIL:
        return None if r.util_pct is None else r.util_pct / 100
    if mode is GridMode.TEMP:
        if r.temp_c is None:
            return None
        slowdown = info.temp_slowdown_c if info and info.temp_slowdown_c else FALLBACK_SLOWDOWN_C
        return (r.temp_c - COOL_C) / max(slowdown - COOL_C, 1.0)
    if mode is GridMode.POWER:
        limit = r.power_limit_w or (info.power_limit_w if info else None)
        return None if r.power_w is None or not limit else r.power_w / limit
    total = info.memory_total_mib if info else None
    return None if r.mem_used_mib is None or not total else r.mem_used_mib / total


def host_colors(host: HostSnapshot, mode: GridMode, palette: Palette) -> list[Color]:
    """One colour per GPU slot of the host, in inventory order."""
    n = gpu_count(host)
    label = host_label(host)
    if label in _WHOLE_HOST or host.hello is None:
        return [palette.color(label)] * n
    infos = host.hello.gpus
    readings = {r.index: r for r in host.sample.gpus} if host.sample is not None else {}
    out: list[Color] = []
    for info in infos:
        verdict = host.verdict.gpus.get(info.index)
        level = verdict.level.label if verdict is not None else "unknown"
        reading = readings.get(info.index)
        if mode is GridMode.VERDICT or level == "failed" or reading is None:
            out.append(palette.color(level))
            continue
        fraction = metric_fraction(mode, reading, info)
        out.append(palette.color("unknown") if fraction is None else palette.heat_color(fraction))
    return out


def gpu_at(host: HostSnapshot, column: int, upper: bool) -> int | None:
    """The inventory position of the GPU drawn at `column` of a host block, top or bottom."""
    n = gpu_count(host)
    half = (n + 1) // 2
    pos = column if upper else column + half
    return pos if 0 <= column < half and pos < n else None


@dataclass(frozen=True)
class GridLayout:
    """Host blocks flowed into lines: each block is a one-character gap then its cells."""

    width: int
    lines: tuple[tuple[int, ...], ...]  # host indices per line
    starts: tuple[tuple[int, ...], ...]  # x of each block's gap, per line
    line_of: tuple[int, ...]  # line of each host
    x_of: tuple[int, ...]  # x of each host's gap

    @classmethod
    def flow(cls, block_widths: list[int], width: int) -> GridLayout:
        lines: list[tuple[int, ...]] = []
        starts: list[tuple[int, ...]] = []
        line_of: list[int] = []
        x_of: list[int] = []
        current: list[int] = []
        xs: list[int] = []
        x = 0
        for index, cells in enumerate(block_widths):
            size = cells + 1
            if current and x + size > width:
                lines.append(tuple(current))
                starts.append(tuple(xs))
                current, xs, x = [], [], 0
            current.append(index)
            xs.append(x)
            line_of.append(len(lines))
            x_of.append(x)
            x += size
        if current:
            lines.append(tuple(current))
            starts.append(tuple(xs))
        return cls(width, tuple(lines), tuple(starts), tuple(line_of), tuple(x_of))

    def host_at(self, x: int, line: int) -> int | None:
        """The host whose block (gap included) covers column `x` of `line`."""
        if not 0 <= line < len(self.lines):
            return None
        position = bisect_right(self.starts[line], x) - 1
        return self.lines[line][position] if position >= 0 else None

    def nearest_on(self, line: int, x: int) -> int | None:
        """The host on `line` nearest column `x` (for moving the cursor up and down)."""
        if not 0 <= line < len(self.lines):
            return None
        return self.host_at(x, line) if x >= 0 else self.lines[line][0]


def is_dimmed(host: HostSnapshot) -> bool:
    return host.state in (
        HostState.STALE,
        HostState.RECONNECTING,
        HostState.UNREACHABLE,
        HostState.NO_GPU,
    )
