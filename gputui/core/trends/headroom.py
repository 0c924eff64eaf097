"""Thermal headroom under load shrinking over days at steady power.

Headroom is the GPU's slowdown limit less its mean temperature under load. At the same power
it stays put while the cooling does; a clogging filter, a fan wearing out or drying thermal
paste take it away a little each day. Days whose power under load is far from the window's
median are left out (a different workload, not a different cooler), and the rest are moved
to that median along `temp_per_power_pct_c`.

The loss is the median of the window's first third of days (at least three) less the median
of its last third: noise of +-a degrees cannot push it past 2a, where a least-squares slope
over a few days can reach 3a, and one hot day (a heat wave, a stuck job) moves neither median.
The slope (least squares) only projects when the limit would be reached.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from gputui.core.model import Level
from gputui.core.trends.days import DAY_S, GpuSeries, load_headroom_c, load_power_pct
from gputui.core.trends.finding import Evidence, Figure, Finding, Point, Remedy, Subject
from gputui.core.trends.settings import TrendSettings


def slope_per_day(points: Sequence[Point]) -> float:
    """Least-squares slope of the points' values per day (0 for fewer than two days)."""
    if len(points) < 2:
        return 0.0
    xs = [p.day / DAY_S for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(p.value for p in points)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (p.value - my) for x, p in zip(xs, points, strict=True)) / sxx


def headroom_at_steady_power(
    series: GpuSeries, s: TrendSettings, end: int
) -> tuple[Point, ...] | None:
    """The window's daily headroom under load at its median power; None with too few days."""
    days = []
    for d in series.window(end, s.headroom_window_days):
        h, p = load_headroom_c(d, s.load_min_samples), load_power_pct(d, s.load_min_samples)
        if h is not None and p is not None:
            days.append((d.start, h, p))
    if len(days) < s.headroom_min_days:
        return None
    ref = statistics.median(p for _, _, p in days)
    # More power, less headroom: moving a day to the reference power adds back what its
    # extra power took.
    steady = tuple(
        Point(day, h + s.temp_per_power_pct_c * (p - ref))
        for day, h, p in days
        if abs(p - ref) <= s.headroom_power_band_pct
    )
    return steady if len(steady) >= s.headroom_min_days else None


def headroom_shrinking(series: GpuSeries, s: TrendSettings, end: int) -> Finding | None:
    points = headroom_at_steady_power(series, s, end)
    if points is None:
        return None
    third = max(3, len(points) // 3)
    early = statistics.median(p.value for p in points[:third])
    late = statistics.median(p.value for p in points[-third:])
    loss, slope = early - late, slope_per_day(points)
    if loss < s.headroom_loss_c or slope >= 0:
        return None
    # Where the fitted line stands on the last day, and when it would reach the limit.
    mean_day = statistics.fmean(p.day / DAY_S for p in points)
    fitted = statistics.fmean(p.value for p in points) + slope * (points[-1].day / DAY_S - mean_day)
    days_left = max(0.0, fitted / -slope)
    critical = days_left <= s.headroom_critical_days
    return Finding(
        rule="headroom_shrinking",
        subject=Subject(host=series.host, gpu=series.gpu, uuid=series.uuid),
        level=Level.CRITICAL if critical else Level.WARN,
        remedy=Remedy.COOLING,
        advice=(
            "restore its cooling before it throttles: clean or replace the filters, check its "
            "fans and airflow, and renew the thermal interface if those are fine"
        ),
        evidence=Evidence(
            text=(
                f"GPU{series.gpu} headroom to its slowdown limit under load fell "
                f"{loss:.1f} C over {len(points)} days at steady power ({slope:+.2f} C/day; "
                f"{points[-1].value:.1f} C left, the limit in about {days_left:.0f} days)"
            ),
            figures=(
                Figure(name="loss", value=loss, unit="C"),
                Figure(name="slope", value=slope, unit="C/day"),
                Figure(name="headroom", value=points[-1].value, unit="C"),
                Figure(name="days_to_limit", value=days_left, unit="days"),
            ),
            series_name="headroom under load at steady power (C)",
            series=points,
        ),
    )
