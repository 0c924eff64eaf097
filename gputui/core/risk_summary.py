"""The fleet's risk in brief: gputui.core.risk applied to the GPUs the monitor sees.

The TUI's risk panel shows these figures (rendered by gputui.render.risk); the Jobs view shows
`job_risk` for each running job. The credible intervals need scipy, whose import takes about a
second: `risk_figures` imports it on first call, so a caller can compute in a worker thread and
start at once. `fleet_rate_per_gpu_hour` and `job_risk` are closed forms and need none of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from gputui.core import risk
from gputui.core.model import FleetSnapshot, Level

if TYPE_CHECKING:
    from gputui.core.risk import RiskSettings
    from gputui.core.risk_report import NodeRanking

HORIZONS = ((1.0, "1 h"), (24.0, "24 h"), (168.0, "7 d"))
DEFAULT_JOB_HOURS = 24.0
JOB_HORIZON_HOURS = 24.0


def fleet_rate_per_gpu_hour(
    settings: RiskSettings | None = None,
    failures: int | None = None,
    exposure_gpu_hours: float | None = None,
) -> float:
    """The fleet's rate as `gputui risk` and the risk panel use it: the posterior mean of the
    site's prior updated by the journal's record, or the prior mean without one."""
    prior = (settings or risk.RiskSettings()).prior
    if failures is None or exposure_gpu_hours is None:
        return prior.mean_per_gpu_hour
    return risk.gamma_posterior(prior, failures, exposure_gpu_hours).mean_per_gpu_hour


class JobRisk(msgspec.Struct, frozen=True, kw_only=True):
    """One running job's odds, for its own GPU count at the fleet's rate.

    A span that would be infinite (no failure expected at rate 0) is None: "never".
    """

    gpus: int
    rate_per_gpu_hour: float
    p_survive_24h: float  # e^(-k lambda 24): no failure on any of its GPUs in the next day
    mtbf_h: float | None  # 1 / (k lambda): the job's mean hours between failures
    checkpoint_interval_h: float | None  # Daly's first-order interval for this job


def job_risk(n_gpus: int, rate_per_gpu_hour: float, checkpoint_write_s: float) -> JobRisk:
    """Survival over the next 24 h and the checkpoint interval of a job on `n_gpus` GPUs.

    A job is a series system: it stops when any of its GPUs fails, so its MTBF is the GPU's
    divided by its GPU count. The interval is Daly's first order, sqrt(2 delta M) - delta:
    Young's sqrt(2 delta M) counts the write inside the interval, which overstates it by delta.
    Raises ValueError on a job without GPUs, a negative rate or a negative write time.
    """
    if n_gpus < 1:
        raise ValueError(f"a job has at least one GPU, got {n_gpus}")
    mtbf = risk.job_mttf_hours(n_gpus, rate_per_gpu_hour)
    write_h = checkpoint_write_s / 3600
    if not (math.isfinite(write_h) and write_h >= 0):
        raise ValueError(f"the checkpoint write time must be >= 0 s, got {checkpoint_write_s:g}")
    finite = math.isfinite(mtbf)
    return JobRisk(
        gpus=n_gpus,
        rate_per_gpu_hour=rate_per_gpu_hour,
        p_survive_24h=risk.job_survival_probability(n_gpus, rate_per_gpu_hour, JOB_HORIZON_HOURS),
        mtbf_h=mtbf if finite else None,
        checkpoint_interval_h=risk.daly_interval_hours(write_h, mtbf) if finite else None,
    )


@dataclass(frozen=True)
class RiskInputs:
    """What the figures depend on; the panel recomputes only when this changes."""

    hosts: int
    gpus: int  # GPUs in the inventories of hosts in service
    gpus_by_level: tuple[tuple[Level, int], ...]
    failures: int | None = None  # the journal's record, when there is one
    exposure_gpu_hours: float | None = None
    nodes: tuple[risk.NodeRecord, ...] | None = None  # per node; None without a journal


#: The journal's record per node: name -> (failures, monitored GPU-hours), as
#: Journal.per_node_failures_and_exposure returns it.
NodeHistory = Mapping[str, tuple[int, float]]


def risk_inputs(snapshot: FleetSnapshot, record: NodeHistory | None = None) -> RiskInputs:
    """GPUs in service by verdict level; hosts the operator marked failed are left out.

    The fleet's record is the sum of the nodes' (no record while nothing was watched yet: the
    prior alone is then the honest estimate), so the fleet's rate and the node ranking come
    from the same journal rows.
    """
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
    if record is None:
        return RiskInputs(hosts, gpus, tuple(counts.items()))
    nodes = tuple(
        risk.NodeRecord(name=name, failures=f, exposure_gpu_hours=e)
        for name, (f, e) in sorted(record.items())
    )
    failures = sum(n.failures for n in nodes)
    exposure = sum(n.exposure_gpu_hours for n in nodes)
    if exposure <= 0:
        return RiskInputs(hosts, gpus, tuple(counts.items()), nodes=nodes)
    return RiskInputs(hosts, gpus, tuple(counts.items()), failures, exposure, nodes)


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
    ranking: NodeRanking | None = None  # lemon nodes, when there is a journal


def risk_figures(inputs: RiskInputs, settings: RiskSettings | None = None) -> RiskFigures:
    """Every figure of the brief (hosts.toml's [risk] settings, or the defaults)."""
    from gputui.core.risk_report import node_ranking, risk_report

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
    bayes = report.bayes  # always here: no rate is given, the figures learn it
    return RiskFigures(
        inputs=inputs,
        rate=rate,
        rate_source=report.rate_source,
        rate_interval=(bayes.credible_95.low, bayes.credible_95.high) if bayes else (rate, rate),
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
        ranking=None if inputs.nodes is None else node_ranking(inputs.nodes, settings),
    )
