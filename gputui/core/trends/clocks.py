"""Clocks held down by hardware, recurring: power brake, HW slowdown, HW thermal slowdown.

A healthy GPU's clocks are held down by its software power cap (normal at full load) and
nothing else. HW power brake is asserted from outside the GPU, by the system's power supply
or its power controller: on day after day it is the node's power delivery. HW slowdown
(nvidia-smi lists HW thermal and HW power brake under it) without either of those means the
GPU drew more than its power delivery allowed (its fast power trigger): power again. HW thermal
slowdown is the GPU protecting itself from heat: cooling. A day counts when its held time
reaches the day's minimum; a reason recurring on enough days of the window raises.

Also here: the PCIe link trained below its maximum on day after day (a riser, a slot, a
retimer), read from the rollups' link readings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gputui.core.model import Level
from gputui.core.rollup import Rollup
from gputui.core.trends.days import GpuSeries
from gputui.core.trends.finding import Evidence, Figure, Finding, Point, Remedy, Subject
from gputui.core.trends.settings import TrendSettings


def _hw_slowdown_alone(r: Rollup) -> float | None:
    """HW slowdown time not explained by HW thermal or HW power brake the same day."""
    h = r.held
    if h.hw_slowdown_s is None:
        return None
    return h.hw_slowdown_s - max(h.hw_thermal_s or 0.0, h.hw_power_brake_s or 0.0)


@dataclass(frozen=True)
class _Reason:
    rule: str
    what: str
    read: Callable[[Rollup], float | None]
    day_min: Callable[[TrendSettings], float]
    remedy: Remedy
    advice: str


POWER_BRAKE = _Reason(
    rule="power_brake_recurring",
    what="HW power brake",
    read=lambda r: r.held.hw_power_brake_s,
    day_min=lambda s: s.brake_day_min_s,
    remedy=Remedy.POWER,
    advice=(
        "the node's power delivery is braking this GPU: check its power supplies (a failed or "
        "failing unit, lost redundancy), cabling and the BMC's power event log"
    ),
)
HW_SLOWDOWN = _Reason(
    rule="hw_slowdown_recurring",
    what="HW slowdown",
    read=_hw_slowdown_alone,
    day_min=lambda s: s.hw_slowdown_day_min_s,
    remedy=Remedy.POWER,
    advice=(
        "the GPU trips its hardware power protection: check the node's power supplies and the "
        "GPU's power connectors; replace the board if the supply is sound"
    ),
)
HW_THERMAL = _Reason(
    rule="hw_thermal_recurring",
    what="HW thermal slowdown",
    read=lambda r: r.held.hw_thermal_s,
    day_min=lambda s: s.hw_thermal_day_min_s,
    remedy=Remedy.COOLING,
    advice=(
        "the GPU reaches its hardware thermal limit: check its fans, airflow and thermal "
        "interface, and the node's inlet temperature"
    ),
)
REASONS = (POWER_BRAKE, HW_SLOWDOWN, HW_THERMAL)


def _subject(series: GpuSeries) -> Subject:
    return Subject(host=series.host, gpu=series.gpu, uuid=series.uuid)


def held_recurring(
    series: GpuSeries, reason: _Reason, s: TrendSettings, end: int
) -> Finding | None:
    chart = [
        Point(d.start, v)
        for d in series.window(end, s.clock_window_days)
        if (v := reason.read(d)) is not None
    ]
    limit = reason.day_min(s)
    days = [p for p in chart if p.value >= limit]
    if len(days) < s.recurring_days:
        return None
    total = sum(p.value for p in days)
    return Finding(
        rule=reason.rule,
        subject=_subject(series),
        level=Level.CRITICAL if len(days) >= s.recurring_critical_days else Level.WARN,
        remedy=reason.remedy,
        advice=reason.advice,
        evidence=Evidence(
            text=(
                f"GPU{series.gpu} {reason.what} on {len(days)} of the last "
                f"{s.clock_window_days} days ({total:.0f} s in all)"
            ),
            figures=(
                Figure(name="days", value=len(days)),
                Figure(name="seconds", value=total, unit="s"),
                Figure(name="day_min", value=limit, unit="s"),
            ),
            series_name=f"{reason.what} (s/day)",
            series=tuple(chart),
        ),
    )


def link_degraded(series: GpuSeries, s: TrendSettings, end: int) -> Finding | None:
    """Most of a day's link readings below the GPU's maximum, on enough days of the window."""
    chart = [
        Point(d.start, d.link_down_n / d.link_n)
        for d in series.window(end, s.clock_window_days)
        if d.link_n > 0
    ]
    days = [p for p in chart if p.value >= s.link_down_share]
    if len(days) < s.link_down_days:
        return None
    return Finding(
        rule="pcie_link_degraded",
        subject=_subject(series),
        level=Level.WARN,
        remedy=Remedy.HARDWARE,
        advice=(
            "its PCIe link trains below its width or speed: reseat the GPU and its riser or "
            "cable, and check the slot and retimer"
        ),
        evidence=Evidence(
            text=(
                f"GPU{series.gpu} PCIe link below its maximum on {len(days)} of the last "
                f"{s.clock_window_days} days"
            ),
            figures=(Figure(name="days", value=len(days)),),
            series_name="share of link readings below the maximum",
            series=tuple(chart),
        ),
    )


def clock_findings(series: GpuSeries, s: TrendSettings, end: int) -> list[Finding]:
    found = [held_recurring(series, r, s, end) for r in REASONS]
    found.append(link_degraded(series, s, end))
    return [f for f in found if f is not None]
