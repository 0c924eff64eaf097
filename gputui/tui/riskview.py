"""The risk panel's figures: gputui.core.risk applied to the GPUs the monitor sees.

The risk model needs scipy, whose import takes about a second; the panel computes these
figures in a worker thread the first time, so the app starts at once and never stalls on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from gputui.core.model import FleetSnapshot, Level

if TYPE_CHECKING:  # the module imports scipy: only the worker thread may import it
    from gputui.core.risk import RiskSettings

HORIZONS = ((1.0, "1 h"), (24.0, "24 h"), (168.0, "7 d"))
DEFAULT_JOB_HOURS = 24.0


@dataclass(frozen=True)
class RiskInputs:
    """What the figures depend on; the panel recomputes only when this changes."""

    hosts: int
    gpus: int  # GPUs in the inventories of hosts in service
    gpus_by_level: tuple[tuple[Level, int], ...]
    failures: int | None = None  # the journal's record, when there is one
    exposure_gpu_hours: float | None = None


def risk_inputs(snapshot: FleetSnapshot, record: tuple[int, float] | None = None) -> RiskInputs:
    """GPUs in service by verdict level; hosts the operator marked failed are left out."""
    counts = dict.fromkeys(Level, 0)
    hosts = gpus = 0
    for host in snapshot.hosts:
        if host.marked_failed or host.hello is None:
            continue
        hosts += 1
        for info in host.hello.gpus:
            gpus += 1
            verdict = host.verdict.gpus.get(info.index)
            counts[verdict.level if verdict is not None else Level.UNKNOWN] += 1
    failures, exposure = record if record is not None else (None, None)
    return RiskInputs(hosts, gpus, tuple(counts.items()), failures, exposure)


@dataclass(frozen=True)
class RiskFigures:
    inputs: RiskInputs
    rate: float
    rate_source: str  # prior or posterior
    rate_interval: tuple[float, float]  # 95% credible
    p_any: tuple[float, ...]  # P(N >= 1) per horizon
    failures_per_day: float
    mtbf_hours: float | None
    job_gpus: int | None
    job_hours: float | None
    job_configured: bool
    job_survival: float | None
    job_mttf_hours: float | None
    checkpoint_young_min: float | None
    checkpoint_daly_min: float | None
    checkpoint_write_min: float
    adjusted_rate: float | None
    adjusted_p_any: tuple[float, ...]


def compute(inputs: RiskInputs, settings: RiskSettings | None = None) -> RiskFigures:
    """Every figure of the panel (hosts.toml's [risk] settings, or the defaults)."""
    from gputui.core import risk
    from gputui.core.risk_report import risk_report

    settings = settings or risk.RiskSettings()
    configured = settings.job_gpus is not None and settings.job_hours is not None
    if not configured and inputs.gpus:
        settings = msgspec.structs.replace(
            settings, job_gpus=inputs.gpus, job_hours=DEFAULT_JOB_HOURS
        )
    report = risk_report(
        inputs.gpus,
        settings,
        failures=inputs.failures,
        exposure_gpu_hours=inputs.exposure_gpu_hours,
        gpus_by_level=dict(inputs.gpus_by_level),
        gpus_source="hosts",
    )
    rate = report.rate_per_gpu_hour

    def p_any(r: float) -> tuple[float, ...]:
        return tuple(
            risk.p_any_failure(risk.expected_failures(inputs.gpus, r, h)) for h, _ in HORIZONS
        )

    job = report.job
    adjusted = report.health_adjusted
    return RiskFigures(
        inputs=inputs,
        rate=rate,
        rate_source=report.rate_source,
        rate_interval=(report.bayes.credible_95.low, report.bayes.credible_95.high),
        p_any=p_any(rate),
        failures_per_day=risk.expected_failures(inputs.gpus, rate, 24.0),
        mtbf_hours=report.fleet.mtbf_hours,
        job_gpus=job.gpus if job else None,
        job_hours=job.hours if job else None,
        job_configured=configured,
        job_survival=job.survival_probability if job else None,
        job_mttf_hours=job.mttf_hours if job else None,
        checkpoint_young_min=job.checkpoint.young_interval_minutes if job else None,
        checkpoint_daly_min=job.checkpoint.daly_interval_minutes if job else None,
        checkpoint_write_min=settings.checkpoint_minutes,
        adjusted_rate=adjusted.rate_per_gpu_hour if adjusted else None,
        adjusted_p_any=p_any(adjusted.rate_per_gpu_hour) if adjusted else (),
    )


def _hours(h: float | None) -> str:
    if h is None or not math.isfinite(h):
        return "never"
    if h >= 48:
        return f"{h / 24:,.1f} d"
    return f"{h:,.1f} h" if h >= 1 else f"{h * 60:.0f} min"


def _minutes(m: float | None) -> str:
    if m is None:
        return "-"
    return f"{m:,.1f} min" if m < 120 else _hours(m / 60)


def _table(title: str) -> Table:
    table = Table(
        title=title,
        title_justify="left",
        title_style="bold",
        show_header=False,
        box=None,
        padding=(0, 1),
        expand=False,
    )
    table.add_column("figure", no_wrap=True, min_width=26)
    table.add_column("value", overflow="fold")
    return table


def render(f: RiskFigures) -> RenderableType:
    """The panel: the calibrated model first, the heuristic apart and labelled."""
    i = f.inputs
    lo, hi = f.rate_interval
    hosts = f"{i.hosts:,} host{'' if i.hosts == 1 else 's'}"
    fleet = _table(f"Fleet failure risk: {i.gpus:,} GPUs monitored on {hosts}")
    record = ""
    if i.failures is not None and i.exposure_gpu_hours is not None:
        record = f", {i.failures} failures in {i.exposure_gpu_hours:,.0f} GPU-h"
    fleet.add_row(
        "rate used",
        f"{f.rate:.2e}/GPU-h ({f.rate_source}{record}; 95% {lo:.1e} - {hi:.1e})",
    )
    for (_, name), p in zip(HORIZONS, f.p_any, strict=True):
        fleet.add_row(f"P(>= 1 failure) in {name}", f"{p:.3f}")
    fleet.add_row("expected failures per day", f"{f.failures_per_day:.3g}")
    fleet.add_row("fleet MTBF", _hours(f.mtbf_hours))

    parts: list[RenderableType] = [fleet, Text()]
    if f.job_gpus is not None and f.job_hours is not None:
        how = "configured" if f.job_configured else "no job configured: the whole fleet"
        job = _table(f"Job: {f.job_gpus:,} GPUs for {f.job_hours:g} h ({how})")
        job.add_row(
            "P(job survives)", f"{f.job_survival:.3f}" if f.job_survival is not None else "-"
        )
        job.add_row("job MTTF", _hours(f.job_mttf_hours))
        job.add_row(
            "checkpoint every",
            f"{_minutes(f.checkpoint_young_min)} (Young), {_minutes(f.checkpoint_daly_min)} "
            f"(Daly); write {f.checkpoint_write_min:g} min",
        )
        parts += [job, Text()]
    if f.adjusted_rate is not None:
        levels = ", ".join(f"{n} {lv.label}" for lv, n in i.gpus_by_level if n)
        adj = _table("Health-adjusted (heuristic, not calibrated)")
        adj.add_row("GPUs by verdict", levels or "-")
        adj.add_row("adjusted rate", f"{f.adjusted_rate:.2e}/GPU-h (verdict multipliers)")
        for (_, name), p in zip(HORIZONS, f.adjusted_p_any, strict=True):
            adj.add_row(f"P(>= 1 failure) in {name}", f"{p:.3f}")
        parts.append(adj)
    return Group(*parts)
