"""Error counters rising: corrected ECC and PCIe replays, as a rate per day and week on week.

A healthy GPU's HBM corrects no error on almost every day and a healthy PCIe link replays
nothing; either climbing is a part wearing out while it still works. The rate is the counter's
daily deltas summed over the window and divided by the days that read it, so a day without
data neither adds nor dilutes; the doubling compares two such rates, this week and the week
before. The health rules already warn on any single rise as it happens; these judge the trend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gputui.core.model import Level
from gputui.core.rollup import Rollup
from gputui.core.trends.days import DAY_S, GpuSeries
from gputui.core.trends.finding import Evidence, Figure, Finding, Point, Remedy, Subject
from gputui.core.trends.settings import TrendSettings

XID_HIGH_SBE_RATE = 92  # the driver's own "high single-bit ECC error rate"


@dataclass(frozen=True)
class _Counter:
    rule: str
    what: str  # in a sentence: "corrected ECC errors"
    read: Callable[[Rollup], int | None]
    per_day: Callable[[TrendSettings], float]
    doubling_min: Callable[[TrendSettings], int]
    advice: str
    memory: bool = False  # HBM: XID 92 and uncorrectable errors count too


ECC = _Counter(
    rule="ecc_corrected_rising",
    what="corrected ECC errors",
    read=lambda r: r.ecc_corrected,
    per_day=lambda s: s.ecc_corrected_per_day,
    doubling_min=lambda s: s.ecc_doubling_min_count,
    advice=(
        "its memory is wearing out: drain it in the next maintenance window, run NVIDIA's "
        "field diagnostic (or dcgmi diag -r 3) and replace it (RMA) if that confirms"
    ),
    memory=True,
)
PCIE = _Counter(
    rule="pcie_replay_rising",
    what="PCIe replays",
    read=lambda r: r.pcie_replay,
    per_day=lambda s: s.pcie_replay_per_day,
    doubling_min=lambda s: s.pcie_doubling_min_count,
    advice=(
        "its PCIe link is retrying more and more: reseat the GPU and its riser or cable, check "
        "the slot and retimer, and replace the part that keeps the replays after a swap"
    ),
)


def _rate(days: tuple[Rollup, ...], read: Callable[[Rollup], int | None]) -> tuple[int, int]:
    """(total, days read) of a counter's deltas."""
    values = [v for v in map(read, days) if v is not None]
    return sum(values), len(values)


def counter_rising(
    series: GpuSeries, counter: _Counter, s: TrendSettings, end: int
) -> Finding | None:
    """The counter's rate over the last window above its limit, or doubled since the window
    before (with enough counts to mean it); ECC also fires on the driver's XID 92."""
    w = s.counter_window_days
    now = series.window(end, w)
    total, n = _rate(now, counter.read)
    if n < s.counter_min_days:
        return None
    rate, limit = total / n, counter.per_day(s)
    before_total, before_n = _rate(series.window(end - w * DAY_S, w), counter.read)
    before = before_total / before_n if before_n >= s.counter_min_days else None
    xid92 = sum(d.xids.get(XID_HIGH_SBE_RATE, 0) for d in now) if counter.memory else 0
    uncorrected = sum(d.ecc_uncorrected or 0 for d in now) if counter.memory else 0
    why: list[str] = []
    if rate >= limit:
        why.append(f"{rate:.3g}/day over {n} days (limit {limit:g}/day)")
    if (
        before is not None
        and total >= counter.doubling_min(s)
        and rate >= s.doubling_factor * before
    ):
        why.append(f"{rate:.3g}/day against {before:.3g}/day the week before")
    if xid92:
        why.append(f"the driver reported a high single-bit error rate (XID 92) {xid92} times")
    if not why:
        return None
    critical = rate >= s.critical_rate_factor * limit or uncorrected > 0
    text = f"GPU{series.gpu} {counter.what}: " + "; ".join(why)
    if uncorrected:
        text += f"; and {uncorrected} uncorrectable in the same days"
    figures = [
        Figure(name="rate", value=rate, unit="/day"),
        Figure(name="limit", value=limit, unit="/day"),
        Figure(name="total", value=total),
        Figure(name="days", value=n),
    ]
    if before is not None:
        figures.append(Figure(name="rate_week_before", value=before, unit="/day"))
    if counter.memory:
        figures += [
            Figure(name="uncorrected", value=uncorrected),
            Figure(name="xid92", value=xid92),
        ]
    chart = [
        Point(d.start, float(v))
        for d in series.window(end, 2 * w)
        if (v := counter.read(d)) is not None
    ]
    return Finding(
        rule=counter.rule,
        subject=Subject(host=series.host, gpu=series.gpu, uuid=series.uuid),
        level=Level.CRITICAL if critical else Level.WARN,
        remedy=Remedy.HARDWARE,
        advice=counter.advice,
        evidence=Evidence(
            text=text,
            figures=tuple(figures),
            series_name=f"{counter.what} per day",
            series=tuple(chart),
        ),
    )


def counters_rising(series: GpuSeries, s: TrendSettings, end: int) -> list[Finding]:
    """Corrected ECC and PCIe replays of one GPU."""
    found = (counter_rising(series, c, s, end) for c in (ECC, PCIE))
    return [f for f in found if f is not None]
