"""What the host screen shows, as rich Text: title, reasons, one panel per GPU, events.

Slow signals (ECC, remapped rows, PCIe, NVLink, processes) arrive in one sample of every
`slow_every`; the fast samples between carry None for them. The screen is therefore given the
last sample that carried them, and says how old it is.

Host text (names, versions, reasons, errors, process names, event text) goes into Text as
plain strings, never as markup, and through `plain()` on the way: no control character of a
host's reaches the terminal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from rich.style import Style
from rich.text import Text

from gputui.collect.history import HostHistory, Metric
from gputui.core.model import (
    FleetEvent,
    GpuInfo,
    GpuReading,
    HostSnapshot,
    Level,
    Reason,
    Sample,
    Verdict,
    clock_event_words,
)
from gputui.core.reasons import advice
from gputui.core.rollup import Rollup
from gputui.core.text import plain
from gputui.core.trends import Point
from gputui.render.prevention import day_spark, day_text
from gputui.render.report import host_label
from gputui.tui.fleetview import fmt_age, fresh_after
from gputui.tui.gridview import COOL_C, FALLBACK_SLOWDOWN_C
from gputui.tui.palette import Palette
from gputui.tui.sparkline import sparkline
from gputui.tui.widgets.event_log import clock, level_label

RECOVERY_NAMES = {0: "none", 1: "GPU reset", 2: "node reboot", 3: "drain P2P", 4: "drain and reset"}
LABEL_WIDTH = 22  # "power  650/700 W" and friends, before the sparkline


def _n(x: float | int | None, fmt: str = "{:.0f}") -> str:
    return "-" if x is None else fmt.format(x)


def _gib(mib: float | None) -> str:
    return "-" if mib is None else f"{mib / 1024:.1f} GiB"


def title_text(host: HostSnapshot, now: float, palette: Palette) -> Text:
    label = host_label(host)
    hello = host.hello
    parts: list[str] = [host.state.value]
    if host.backend:
        parts.append(f"backend {host.backend}")
    if hello is not None:
        parts.append(f"{len(hello.gpus)} GPUs")
        if hello.driver_version:
            parts.append(f"driver {hello.driver_version}")
        if hello.cuda_version:
            parts.append(f"CUDA {hello.cuda_version}")
    parts.append(f"seen {fmt_age(host.age_s(now), fresh_after(host))}")
    if host.spare:
        parts.append(f"spare in service for {host.in_place_of}" if host.in_place_of else "spare")
    if host.decode_errors:
        parts.append(f"{host.decode_errors} bad lines")
    text = Text.assemble(
        (plain(host.name), "bold"), "  ", (f" {label} ", palette.chip(label)), "  "
    )
    text.append(plain(" · ".join(parts)), style="dim")
    if host.labels:
        labels = "  ".join(f"{k}={v}" for k, v in sorted(host.labels.items()))
        text.append("\n")
        text.append(plain(labels), style="dim")
    if host.state_reason:
        text.append("\n")
        text.append(plain(host.state_reason), style=Style(color=palette.color(label)))
    return text


def reason_line(r: Reason, palette: Palette) -> Text:
    label = r.level.label
    text = Text.assemble((f"{label:<8}", Style(color=palette.color(label), bold=True)), " ")
    text.append(plain(r.text))
    if r.action.value != "none":
        text.append(f"  -> {r.action.value}", style="bold")
    if r.latched:
        text.append("  (latched: c clears)", style="dim")
    return text


def reasons_text(host: HostSnapshot, palette: Palette) -> Text:
    verdict = host.verdict.host
    active = [r for r in verdict.reasons if r.level > Level.OK]
    if not active:
        return Text("No active reasons.", style="dim")
    text = Text("Active reasons", style="bold")
    text.append(f"  (recommended: {advice(verdict.action, verdict.level)})", style="dim")
    for r in active:
        text.append("\n")
        text.append_text(reason_line(r, palette))
    return text


@dataclass(frozen=True)
class GpuView:
    """Everything a GPU panel draws."""

    info: GpuInfo
    reading: GpuReading | None
    slow: GpuReading | None  # from the last sample that carried the slow fields
    slow_age_s: float | None
    verdict: Verdict | None
    series: Mapping[Metric, npt.NDArray[np.float32]]
    span_s: float  # time covered by the series
    appended: int = 0  # samples the ring took in so far (HostHistory.appended)
    interval_s: float = 1.0  # seconds between samples


def gpu_views(
    host: HostSnapshot,
    history: HostHistory | None,
    slow: tuple[float, Sample] | None,
    now: float,
    points: int = 600,
) -> list[GpuView]:
    """One view per GPU of the host, with the last `points` samples of its history."""
    if host.hello is None:
        return []
    readings = {r.index: r for r in host.sample.gpus} if host.sample is not None else {}
    slow_readings = {r.index: r for r in slow[1].gpus} if slow is not None else {}
    span = 0.0
    if history is not None and len(history):
        times = history.times(points)
        span = float(times[-1] - times[0]) if times.size > 1 else 0.0
    views = []
    for info in host.hello.gpus:
        series = (
            {m: history.series(info.index, m, last=points) for m in Metric}
            if history is not None
            else {}
        )
        views.append(
            GpuView(
                info=info,
                reading=readings.get(info.index),
                slow=slow_readings.get(info.index),
                slow_age_s=None if slow is None else max(0.0, now - slow[0]),
                verdict=host.verdict.gpus.get(info.index),
                series=series,
                span_s=span,
                appended=history.appended if history is not None else 0,
                interval_s=host.hello.interval_s,
            )
        )
    return views


def _spark_row(
    text: Text,
    name: str,
    value: str,
    series: npt.NDArray[np.float32] | None,
    low: float,
    high: float,
    width: int,
    color: str,
) -> None:
    text.append(f"{name:<7}", style="dim")
    text.append(f"{value:<{LABEL_WIDTH - 7}}")
    if series is not None and width > 4:
        # Right-aligned: "now" is always the right edge, however short the history yet.
        text.append(f"{sparkline(series, width, low, high):>{width}}", style=color)
    text.append("\n")


def gpu_title(view: GpuView) -> str:
    level = view.verdict.level.label if view.verdict is not None else "unknown"
    return plain(f"GPU{view.info.index} {view.info.name} · {level}")


def gpu_text(view: GpuView, width: int, palette: Palette) -> Text:
    """The panel's body, `width` characters wide."""
    info, r = view.info, view.reading
    text = Text(no_wrap=True, overflow="ellipsis")
    if r is None:
        text.append("no reading in the last sample\n", style="dim")
    elif r.status != "ok":
        text.append(plain(f"{r.status}: {r.error or 'no detail'}") + "\n", style="bold red")
    spark_w = max(width - LABEL_WIDTH, 0)
    color = palette.heat[len(palette.heat) // 2].name
    r = r if r is not None and r.status == "ok" else None
    slowdown = info.temp_slowdown_c or FALLBACK_SLOWDOWN_C
    limit = (r.power_limit_w if r else None) or info.power_limit_w
    _spark_row(
        text,
        "util",
        f"{_n(r.util_pct if r else None)}%",
        view.series.get(Metric.UTIL_PCT),
        0,
        100,
        spark_w,
        color,
    )
    temp = f"{_n(r.temp_c if r else None)} C"
    if info.temp_slowdown_c:
        temp += f" /{info.temp_slowdown_c:.0f}"
    _spark_row(text, "temp", temp, view.series.get(Metric.TEMP_C), COOL_C, slowdown, spark_w, color)
    power = f"{_n(r.power_w if r else None)}/{_n(limit)} W"
    _spark_row(
        text, "power", power, view.series.get(Metric.POWER_W), 0, limit or 1000, spark_w, color
    )
    used, total = (r.mem_used_mib if r else None), info.memory_total_mib
    mem = f"{_n(used and used / 1024, '{:.1f}')}/{_n(total and total / 1024, '{:.0f}')} GiB"
    _spark_row(text, "mem", mem, view.series.get(Metric.MEM_USED_PCT), 0, 100, spark_w, color)
    if view.span_s:
        text.append(f"{'last ' + fmt_age(view.span_s, 0):>{width}}\n", style="dim")
    if r is not None:
        clocks, words = clock_words(r, info)
        text.append(f"{'clocks':<7}{clocks}\n")
        text.append(f"{'events':<7}")
        if r.clock_events is None:  # not read (the source lacks it): never shown as "none"
            text.append("not available", style="dim")
        else:
            text.append(words or "none", style="" if words else "dim")
        text.append("\n")
    _slow_rows(text, view)
    for reason in view.verdict.reasons if view.verdict is not None else ():
        if reason.level > Level.OK:
            text.append_text(reason_line(reason, palette))
            text.append("\n")
    text.rstrip()
    return text


def clock_words(r: GpuReading, info: GpuInfo) -> tuple[str, str]:
    """`SM 1410/1980 MHz, memory 2619 MHz` and the clock-event reasons in words ("" when
    none holds the clocks back)."""
    clocks = f"SM {_n(r.sm_clock_mhz)}/{_n(info.sm_clock_max_mhz)} MHz"
    clocks += f", memory {_n(r.mem_clock_mhz)} MHz"
    return clocks, ", ".join(clock_event_words(r.clock_events or 0))


def _slow_rows(text: Text, view: GpuView) -> None:
    s, info = view.slow, view.info
    if s is None:
        text.append("ECC, rows, PCIe, NVLink: not read yet\n", style="dim")
        return
    ecc = f"volatile {_n(s.ecc_corrected_volatile)} corr / {_n(s.ecc_uncorrected_volatile)} uncorr"
    if s.ecc_corrected_aggregate is not None or s.ecc_uncorrected_aggregate is not None:
        ecc += f", lifetime {_n(s.ecc_corrected_aggregate)} / {_n(s.ecc_uncorrected_aggregate)}"
    text.append(f"{'ECC':<7}{ecc}\n")
    if s.remap_corrected is not None or s.remap_failure is not None:
        rows = f"remapped {_n(s.remap_corrected)} corr / {_n(s.remap_uncorrected)} uncorr"
        if s.remap_pending:
            rows += ", PENDING reset"
        if s.remap_failure:
            rows += ", REMAP FAILED"
        text.append(f"{'rows':<7}{rows}\n")
    if s.retired_pages_sbe is not None or s.retired_pages_dbe is not None:
        pages = f"retired {_n(s.retired_pages_sbe)} SBE / {_n(s.retired_pages_dbe)} DBE"
        if s.retired_pages_pending:
            pages += ", PENDING"
        text.append(f"{'pages':<7}{pages}\n")
    pcie = f"gen{_n(s.pcie_gen)} x{_n(s.pcie_width)} (max gen{_n(info.pcie_gen_max)} x"
    pcie += f"{_n(info.pcie_width_max)}), replays {_n(s.pcie_replay)}"
    text.append(f"{'PCIe':<7}{pcie}\n")
    if s.nvlink_active is not None or info.nvlink_count:
        errors = [s.nvlink_replay, s.nvlink_recovery, s.nvlink_crc_flit, s.nvlink_crc_data]
        known = [e for e in errors if e is not None]
        nvlink = f"{_n(s.nvlink_active)}/{_n(info.nvlink_count)} links active"
        nvlink += f", errors {sum(known) if known else '-'}"
        text.append(f"{'NVLink':<7}{nvlink}\n")
    if s.recovery_action:
        name = RECOVERY_NAMES.get(s.recovery_action, f"code {s.recovery_action}")
        text.append(f"{'recov':<7}", style="dim")
        text.append(f"driver asks for: {name}\n", style="bold red")
    procs = s.processes or []
    if procs:
        shown = ", ".join(f"{p.pid} {p.name or '?'} {_gib(p.used_memory_mib)}" for p in procs[:4])
        more = f" +{len(procs) - 4} more" if len(procs) > 4 else ""
        text.append(f"{'procs':<7}{plain(shown)}{more}\n")
    elif s.processes is None:  # not listed by this source (Prometheus): not "none"
        text.append(f"{'procs':<7}not available\n", style="dim")
    else:
        text.append(f"{'procs':<7}none\n", style="dim")
    if view.slow_age_s is not None:
        age = view.slow_age_s
        when = f"{age:.0f} s ago" if age < 120 else f"{fmt_age(age)} ago"
        text.append(f"{'':<7}(slow signals read {when})\n", style="dim")


def events_text(events: Sequence[FleetEvent], palette: Palette) -> Text:
    if not events:
        return Text("No events for this host since gputui started.", style="dim")
    text = Text("Recent events", style="bold")
    for e in events:
        label = level_label(e.level)
        text.append("\n")
        text.append(f"{clock(e.t)} ", style="dim")
        text.append(
            f"{label:<8} ", style=Style(color=palette.color("ok" if label == "info" else label))
        )
        gpu = f"GPU{e.gpu} " if e.gpu is not None else ""
        text.append(plain(f"{e.kind:<8} {gpu}{e.text}"))
    return text


# -- days, from the journal's daily rollups ---------------------------------------------------


def _day_row(
    text: Text,
    name: str,
    points: Sequence[Point],
    value: str,
    width: int,
    color: str,
    low: float | None = None,
    high: float | None = None,
) -> None:
    text.append(f"{name:<7}", style="dim")
    text.append(f"{value if points else '-':<{LABEL_WIDTH - 7}}")
    if points and width > 4:
        # Right-aligned as the live lines: today is always the right edge.
        text.append(f"{day_spark(points, width, low, high):>{width}}", style=color)
    text.append("\n")


def daily_text(days: Sequence[Rollup], info: GpuInfo, width: int, palette: Palette) -> Text:
    """The GPU's days from the journal (its daily rollups, oldest first): its mean temperature
    under load on the live temperature line's scale, and its corrected ECC errors and PCIe
    replays a day from zero to its worst day, a character a day (the latest that fit)."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if not days:
        return text
    spark_w = max(width - LABEL_WIDTH, 0)
    color = palette.heat[len(palette.heat) // 2].name
    slowdown = info.temp_slowdown_c or FALLBACK_SLOWDOWN_C
    load = [Point(d.start, d.load_temp_mean_c) for d in days if d.load_temp_mean_c is not None]
    ecc = [Point(d.start, float(d.ecc_corrected)) for d in days if d.ecc_corrected is not None]
    replay = [Point(d.start, float(d.pcie_replay)) for d in days if d.pcie_replay is not None]
    last = f"{load[-1].value:.0f} C at load" if load else ""
    _day_row(text, "load/d", load, last, spark_w, color, COOL_C, slowdown)
    last = f"{ecc[-1].value:.0f} corrected" if ecc else ""
    _day_row(text, "ECC/d", ecc, last, spark_w, color)
    last = f"{replay[-1].value:.0f} replays" if replay else ""
    _day_row(text, "PCIe/d", replay, last, spark_w, color)
    span = (days[-1].start - days[0].start) // 86_400 + 1
    to = day_text(days[-1].start)[5:]
    text.append(f"{f'{span} days to {to}, a day each (journal)':>{width}}", style="dim")
    return text
