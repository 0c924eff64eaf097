"""Remapped rows: spare rows running out, rows accumulating, and remaps left pending.

Ampere and later GPUs replace a failing HBM row with a spare row of the same bank. NVIDIA's
RMA criterion (its GPU memory error management note) is the row-remap failure flag, set when
an uncorrectable error needs a remap in a bank that already holds eight rows remapped for
uncorrectable errors, or after 512 such remaps on the GPU. NVML gives only the GPU's totals
(rows remapped for correctable and for uncorrectable errors), not how they spread over banks,
so the rule assumes the worst: all of them in one bank. The per-bank histogram
(nvmlDeviceGetRowRemapperHistogram) would say exactly; the agent does not read it yet.

A remap takes effect at the next GPU reset; until then it is pending. A remap pending for
days means the GPU was not reset, or a reset did not apply it.
"""

from __future__ import annotations

from gputui.core.model import Level
from gputui.core.rollup import Rollup
from gputui.core.trends.days import DAY_S, GpuSeries
from gputui.core.trends.finding import Evidence, Figure, Finding, Point, Remedy, Subject
from gputui.core.trends.settings import TrendSettings

_RMA = "replace the GPU (RMA): NVIDIA's criterion for memory is met"


def _rows(r: Rollup) -> int | None:
    """Rows remapped for either cause at the end of the day."""
    if r.remap_corrected is None and r.remap_uncorrected is None:
        return None
    return (r.remap_corrected or 0) + (r.remap_uncorrected or 0)


def _finding(
    series: GpuSeries,
    rule: str,
    level: Level,
    advice: str,
    text: str,
    figures: tuple[Figure, ...],
    chart: tuple[Point, ...],
) -> Finding:
    return Finding(
        rule=rule,
        subject=Subject(host=series.host, gpu=series.gpu, uuid=series.uuid),
        level=level,
        remedy=Remedy.HARDWARE,
        advice=advice,
        evidence=Evidence(text=text, figures=figures, series_name="rows remapped", series=chart),
    )


def remap_findings(series: GpuSeries, s: TrendSettings, end: int) -> list[Finding]:
    """The remap rules for one GPU, judged on its latest day with remap readings before `end`."""
    days = [d for d in series.days if d.start < end and _rows(d) is not None]
    if not days:
        return []
    last = days[-1]
    chart_from = end - max(s.remap_growth_window_days, 14) * DAY_S
    chart = tuple(Point(d.start, float(_rows(d) or 0)) for d in days if d.start >= chart_from)
    unc = last.remap_uncorrected or 0
    corr = last.remap_corrected or 0
    counts = (
        Figure(name="uncorrectable_rows", value=unc),
        Figure(name="correctable_rows", value=corr),
    )
    found: list[Finding] = []
    gpu = f"GPU{series.gpu}"
    if last.remap_failure:
        found.append(
            _finding(
                series,
                "remap_failure",
                Level.FAILED,
                _RMA,
                f"{gpu} row remapping failed: a bank has no spare row left",
                counts,
                chart,
            )
        )
    elif unc >= s.remap_uncorrected_warn or unc >= s.remap_gpu_rows // 2:
        critical = unc >= s.remap_uncorrected_critical or unc >= s.remap_gpu_rows // 2
        found.append(
            _finding(
                series,
                "remap_bank_limit",
                Level.CRITICAL if critical else Level.WARN,
                "plan its replacement: the next uncorrectable error in a full bank fails the "
                "remap, which is NVIDIA's RMA criterion; run the field diagnostic in the next "
                "window",
                f"{gpu} {unc} rows remapped for uncorrectable errors: a bank holds "
                f"{s.remap_bank_rows} (the GPU {s.remap_gpu_rows}), and if they share one "
                f"bank it is {min(unc, s.remap_bank_rows)}/{s.remap_bank_rows} full",
                (*counts, Figure(name="bank_limit", value=s.remap_bank_rows)),
                chart,
            )
        )
    new = _growth(series, s, end)
    if new is not None:
        found.append(
            _finding(
                series,
                "remap_rows_accumulating",
                Level.WARN,
                "its memory keeps failing rows: run the field diagnostic in the next window "
                "and replace the GPU if it confirms; each remap needs a reset to apply",
                f"{gpu} {new} rows remapped in {s.remap_growth_window_days} days "
                f"({_rows(last)} in all)",
                (*counts, Figure(name="new_rows", value=new)),
                chart,
            )
        )
    pending_days = _pending_days(days)
    if pending_days >= s.remap_pending_days:
        found.append(
            _finding(
                series,
                "remap_pending",
                Level.WARN,
                "reset the GPU in the next window (drain it, nvidia-smi -r) to apply the remap; "
                "if it is still pending after a reset, run the field diagnostic and RMA it",
                f"{gpu} a row remap has been pending for {pending_days} days: it waits for a "
                "GPU reset",
                (*counts, Figure(name="pending_days", value=pending_days, unit="days")),
                chart,
            )
        )
    return found


def _growth(series: GpuSeries, s: TrendSettings, end: int) -> int | None:
    """New rows remapped in the window, when they are enough to raise.

    Counted from the last reading before the window where there is one, else from the
    window's first: a GPU's remaps never go down, so a drop is a misreading, not growth.
    """
    first = end - s.remap_growth_window_days * DAY_S
    before = [d for d in series.days if d.start < first and _rows(d) is not None]
    inside = [d for d in series.days if first <= d.start < end and _rows(d) is not None]
    if not inside:
        return None
    base = before[-1] if before else inside[0]
    new = (_rows(inside[-1]) or 0) - (_rows(base) or 0)
    return new if new >= s.remap_growth_rows else None


def _pending_days(days: list[Rollup]) -> int:
    """Days from the first of the latest unbroken run of pending days to the last, inclusive.

    A day without a reading does not break the run; a day that read "not pending" does.
    """
    run_start: int | None = None
    for d in reversed(days):
        if d.remap_pending is None:
            continue
        if not d.remap_pending:
            break
        run_start = d.start
    if run_start is None:
        return 0
    return (days[-1].start - run_start) // DAY_S + 1
