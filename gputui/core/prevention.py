"""The service list: the GPUs and nodes to service, ranked by the failure probability it avoids.

Each trend finding (gputui/core/trends) raises its subject's failure rate: by the factor the
rule measured where it measures one (a lemon node's own rate against the fleet's), else by the
risk model's hazard multiplier for the finding's level (core/risk.py HazardMultipliers: warn
2x, critical 10x, failed 100x; uncalibrated, they rank, they do not predict). Servicing the
subject is taken to bring it back to the fleet's rate. So, for a subject of n GPUs at the
fleet's rate lambda, raised m times, over a horizon of T hours (default 30 days):

    P(a failure, as it is)  = 1 - exp(-n m lambda T)
    P(a failure, serviced)  = 1 - exp(-n lambda T)
    benefit                 = the difference: the probability of a failure avoided

Several findings on one subject: findings with one remedy are taken for one cause, the
strongest counting (a GPU's ECC climbing and its rows remapping are one failing memory);
different remedies are different causes, whose extra rates add (competing risks):
m = 1 + sum over remedies of (strongest m - 1).

The list is ordered by benefit, then level, then host and GPU, so the same findings always
give the same list.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import msgspec

from gputui.core.model import Level
from gputui.core.risk import DEFAULT_PRIOR_MEAN_PER_GPU_HOUR, HazardMultipliers
from gputui.core.trends.finding import Finding, Remedy, Subject

DEFAULT_HORIZON_HOURS = 30 * 24.0


class ServiceItem(msgspec.Struct, frozen=True, kw_only=True):
    """One GPU or node to service, with the findings that put it on the list."""

    subject: Subject
    gpus: int  # GPUs it covers: 1 for a GPU, the node's for a node
    level: Level  # its worst finding's
    remedies: tuple[Remedy, ...]  # distinct, worst finding's first
    findings: tuple[Finding, ...]  # worst first
    hazard: float  # times the fleet's failure rate, as it is
    p_failure: float  # P(at least one failure of its GPUs within the horizon), as it is
    p_failure_serviced: float  # the same at the fleet's rate
    benefit: float  # p_failure - p_failure_serviced
    failures_avoided: float  # expected failures avoided within the horizon


class ServiceList(msgspec.Struct, frozen=True, kw_only=True):
    rate_per_gpu_hour: float  # the fleet's rate every subject is judged against
    horizon_hours: float
    items: tuple[ServiceItem, ...]  # greatest benefit first


def hazard_of(findings: Iterable[Finding], multipliers: HazardMultipliers) -> float:
    """The factor on a subject's failure rate from its findings (see the module's text)."""
    excess: dict[Remedy, float] = {}
    for f in findings:
        m = f.hazard if f.hazard is not None else multipliers.of(f.level)
        excess[f.remedy] = max(excess.get(f.remedy, 0.0), m - 1.0)
    return 1.0 + sum(excess.values())


def _worst_first(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    return tuple(sorted(findings, key=lambda f: (-f.level, f.rule)))


def service_item(
    findings: Iterable[Finding],
    rate_per_gpu_hour: float,
    horizon_hours: float,
    multipliers: HazardMultipliers,
) -> ServiceItem:
    """One subject's findings (all about the same subject) as a ranked item."""
    ordered = _worst_first(findings)
    if not ordered:
        raise ValueError("a service item needs at least one finding")
    subject = ordered[0].subject
    gpus = max(f.gpus for f in ordered)
    m = hazard_of(ordered, multipliers)
    base = gpus * rate_per_gpu_hour * horizon_hours  # expected failures at the fleet's rate
    extra = base * (m - 1.0)
    remedies = tuple(dict.fromkeys(f.remedy for f in ordered))
    return ServiceItem(
        subject=subject,
        gpus=gpus,
        level=ordered[0].level,
        remedies=remedies,
        findings=ordered,
        hazard=m,
        p_failure=-math.expm1(-(base + extra)),
        p_failure_serviced=-math.expm1(-base),
        # e^-base - e^-(base + extra), kept exact when both are tiny
        benefit=math.exp(-base) * -math.expm1(-extra),
        failures_avoided=extra,
    )


def service_list(
    findings: Iterable[Finding],
    *,
    rate_per_gpu_hour: float = DEFAULT_PRIOR_MEAN_PER_GPU_HOUR,
    horizon_hours: float = DEFAULT_HORIZON_HOURS,
    multipliers: HazardMultipliers | None = None,
) -> ServiceList:
    """The subjects of `findings`, one item each, greatest benefit first.

    `rate_per_gpu_hour` is the fleet's rate (`gputui.core.risk_summary.fleet_rate_per_gpu_hour`
    learns it from the journal as `gputui risk` does); `multipliers` those of hosts.toml's
    `[risk.multipliers]`. Raises ValueError on a negative or non-finite rate or horizon.
    """
    if not (math.isfinite(rate_per_gpu_hour) and rate_per_gpu_hour >= 0):
        raise ValueError(f"the failure rate must be >= 0 per GPU-hour, got {rate_per_gpu_hour:g}")
    if not (math.isfinite(horizon_hours) and horizon_hours >= 0):
        raise ValueError(f"the horizon must be >= 0 hours, got {horizon_hours:g}")
    multipliers = multipliers or HazardMultipliers()
    by_subject: dict[Subject, list[Finding]] = {}
    for f in findings:
        by_subject.setdefault(f.subject, []).append(f)
    items = [
        service_item(fs, rate_per_gpu_hour, horizon_hours, multipliers)
        for fs in by_subject.values()
    ]
    items.sort(key=lambda i: (-i.benefit, -i.level, i.subject.sort_key))
    return ServiceList(
        rate_per_gpu_hour=rate_per_gpu_hour, horizon_hours=horizon_hours, items=tuple(items)
    )
