"""The risk report: every figure of `gputui risk` (and the TUI's risk panel) in one struct,
and the lemon-node ranking of `gputui risk --nodes`.

Both are pure: the caller counts the GPUs and brings the settings, the observed record (per
node for the ranking) and, when it has them, the verdict levels. The JSON encodings of
`RiskReport` and `NodeRanking` are the stable output of `gputui risk --format json`, documented
field by field in docs/risk.md; a change to a field's name or meaning bumps SCHEMA_VERSION.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Literal

import msgspec

from gputui.core import risk
from gputui.core.model import Level
from gputui.core.risk import GammaRate, HazardMultipliers, NodeRecord, RiskSettings

# 2: `bayes` is null when the rate is given, `recovery.fleet_availability` counts repairs that
# overlap, `recovery.expected_gpus_down` is new, and `--nodes` prints a NodeRanking.
SCHEMA_VERSION = 2

RateSource = Literal["given", "prior", "posterior"]


def _finite(x: float) -> float | None:
    """JSON has no infinity: an infinite MTBF (rate 0) is reported as null."""
    return x if math.isfinite(x) else None


class KProbability(msgspec.Struct, frozen=True, kw_only=True):
    k: int
    p: float


class Interval(msgspec.Struct, frozen=True, kw_only=True):
    low: float
    high: float


class FleetFigures(msgspec.Struct, frozen=True, kw_only=True):
    expected_failures: float  # Lambda = n lambda T
    pmf: list[KProbability]  # P(N = k), k = 0..max_k
    p_more_than_max_k: float  # P(N > max_k)
    p_at_least_one: float  # P(N >= 1)
    failures_p50: int  # median of N
    failures_p95: int  # N stays at or below this with probability 0.95
    mtbf_hours: float | None  # 1 / (n lambda); null when the rate is 0


class DetectionFigures(msgspec.Struct, frozen=True, kw_only=True):
    gamma: float
    expected_detected: float
    expected_undetected: float
    p_no_undetected_failure: float  # e^(-(1 - gamma) Lambda)


class RecoveryFigures(msgspec.Struct, frozen=True, kw_only=True):
    mean_minutes: float  # tau
    target_minutes: float  # t
    p_within_target: float  # 1 - e^(-t / tau)
    fleet_availability: float  # e^(-n lambda tau): share of time no GPU is down
    gpu_availability: float  # (1 / lambda) / (1 / lambda + tau): share of GPUs up on average
    expected_gpus_down: float  # n lambda tau: GPUs down at a random instant, on average


class CheckpointFigures(msgspec.Struct, frozen=True, kw_only=True):
    write_minutes: float  # w, delta
    restart_minutes: float  # u0
    young_interval_minutes: float | None  # sqrt(2 delta M); null when the rate is 0
    daly_interval_minutes: float | None  # sqrt(2 delta M) - delta
    ettr_optimal_interval_minutes: float | None  # sqrt(2 w / (k lambda)), equal to Young's
    ettr_at_optimum: float
    ettr_at_daly: float


class JobFigures(msgspec.Struct, frozen=True, kw_only=True):
    gpus: int
    hours: float
    expected_failures: float  # k lambda D
    survival_probability: float  # e^(-k lambda D)
    mttf_hours: float | None  # 1 / (k lambda)
    checkpoint: CheckpointFigures


class BayesFigures(msgspec.Struct, frozen=True, kw_only=True):
    prior_alpha: float
    prior_beta_gpu_hours: float
    prior_mean_per_gpu_hour: float
    failures: int | None  # the record, null when none was given
    exposure_gpu_hours: float | None
    observed_rate_per_gpu_hour: float | None  # failures / exposure
    posterior_alpha: float
    posterior_beta_gpu_hours: float
    posterior_mean_per_gpu_hour: float
    credible_95: Interval  # posterior (prior only, without a record)
    garwood_95: Interval | None  # exact frequentist interval of the record alone
    window_exposure_gpu_hours: float  # n T
    p_no_failure_in_window: float  # predictive, over the rate's uncertainty


class HealthAdjustedFigures(msgspec.Struct, frozen=True, kw_only=True):
    heuristic: bool  # always true: these multipliers are not calibrated
    gpus_by_level: dict[str, int]
    multipliers: HazardMultipliers
    rate_per_gpu_hour: float
    expected_failures: float
    p_at_least_one: float


class RiskReport(msgspec.Struct, frozen=True, kw_only=True):
    schema_version: int
    gpus: int
    gpus_source: str  # given, hosts, demo
    rate_per_gpu_hour: float
    rate_source: RateSource
    hours: float
    fleet: FleetFigures
    detection: DetectionFigures
    recovery: RecoveryFigures
    job: JobFigures | None
    bayes: BayesFigures | None  # null when the rate is given: it is then known, not learnt
    health_adjusted: HealthAdjustedFigures | None


def _fleet(n_gpus: int, rate: float, hours: float, max_k: int) -> FleetFigures:
    lam = risk.expected_failures(n_gpus, rate, hours)
    pmf = risk.failure_count_pmf(lam, max_k)
    return FleetFigures(
        expected_failures=lam,
        pmf=[KProbability(k=k, p=p) for k, p in enumerate(pmf)],
        p_more_than_max_k=risk.p_at_least(lam, max_k + 1),
        p_at_least_one=risk.p_any_failure(lam),
        failures_p50=risk.failure_count_quantile(lam, 0.5),
        failures_p95=risk.failure_count_quantile(lam, 0.95),
        mtbf_hours=_finite(risk.fleet_mtbf_hours(n_gpus, rate)),
    )


def _recovery(n_gpus: int, rate: float, s: RiskSettings) -> RecoveryFigures:
    mttr_hours = s.recover_minutes / 60
    gpu_mtbf = math.inf if rate == 0 else 1 / rate
    return RecoveryFigures(
        mean_minutes=s.recover_minutes,
        target_minutes=s.recover_target_minutes,
        p_within_target=risk.p_recovered_within(s.recover_target_minutes, s.recover_minutes),
        fleet_availability=risk.p_no_gpu_down(n_gpus, rate, mttr_hours),
        gpu_availability=risk.availability(gpu_mtbf, mttr_hours),
        expected_gpus_down=risk.expected_gpus_down(n_gpus, rate, mttr_hours),
    )


def _minutes(hours: float) -> float | None:
    return _finite(hours * 60)


def _job(rate: float, s: RiskSettings) -> JobFigures | None:
    if s.job_gpus is None or s.job_hours is None:
        return None
    job_rate = risk.expected_failures(s.job_gpus, rate, 1.0)
    mttf = risk.job_mttf_hours(s.job_gpus, rate)
    write_h, restart_h = s.checkpoint_minutes / 60, s.restart_minutes / 60
    optimum = risk.ettr_optimal_interval_hours(write_h, job_rate)
    if math.isinf(mttf):
        young = daly = math.inf
    else:
        young = risk.young_interval_hours(write_h, mttf)
        daly = risk.daly_interval_hours(write_h, mttf)

    def ettr_at(interval_h: float) -> float:
        if interval_h <= 0:  # a zero write time gives a zero interval: checkpoint "always"
            return max(0.0, 1 - job_rate * restart_h)
        return risk.ettr(job_rate, restart_h, write_h, interval_h)

    return JobFigures(
        gpus=s.job_gpus,
        hours=s.job_hours,
        expected_failures=risk.expected_failures(s.job_gpus, rate, s.job_hours),
        survival_probability=risk.job_survival_probability(s.job_gpus, rate, s.job_hours),
        mttf_hours=_finite(mttf),
        checkpoint=CheckpointFigures(
            write_minutes=s.checkpoint_minutes,
            restart_minutes=s.restart_minutes,
            young_interval_minutes=_minutes(young),
            daly_interval_minutes=_minutes(daly),
            ettr_optimal_interval_minutes=_minutes(optimum),
            ettr_at_optimum=ettr_at(optimum),
            ettr_at_daly=ettr_at(daly),
        ),
    )


def _bayes(
    s: RiskSettings, failures: int | None, exposure: float | None, window_gpu_hours: float
) -> BayesFigures:
    prior = s.prior
    post = risk.gamma_posterior(prior, failures or 0, exposure or 0.0)
    lo, hi = risk.credible_interval(post)
    garwood = None
    observed = None
    if failures is not None and exposure:
        observed = failures / exposure
        g_lo, g_hi = risk.garwood_interval(failures, exposure)
        garwood = Interval(low=g_lo, high=g_hi)
    return BayesFigures(
        prior_alpha=prior.alpha,
        prior_beta_gpu_hours=prior.beta_gpu_hours,
        prior_mean_per_gpu_hour=prior.mean_per_gpu_hour,
        failures=failures,
        exposure_gpu_hours=exposure,
        observed_rate_per_gpu_hour=observed,
        posterior_alpha=post.alpha,
        posterior_beta_gpu_hours=post.beta_gpu_hours,
        posterior_mean_per_gpu_hour=post.mean_per_gpu_hour,
        credible_95=Interval(low=lo, high=hi),
        garwood_95=garwood,
        window_exposure_gpu_hours=window_gpu_hours,
        p_no_failure_in_window=risk.p_no_failure_next(post, window_gpu_hours),
    )


def _health_adjusted(
    n_gpus: int, rate: float, hours: float, levels: Mapping[Level, int], s: RiskSettings
) -> HealthAdjustedFigures:
    adjusted = risk.health_adjusted_rate_per_gpu_hour(rate, levels, s.multipliers)
    lam = risk.expected_failures(n_gpus, adjusted, hours)
    return HealthAdjustedFigures(
        heuristic=True,
        gpus_by_level={level.label: levels.get(level, 0) for level in Level},
        multipliers=s.multipliers,
        rate_per_gpu_hour=adjusted,
        expected_failures=lam,
        p_at_least_one=risk.p_any_failure(lam),
    )


def risk_report(
    n_gpus: int,
    settings: RiskSettings | None = None,
    *,
    rate_per_gpu_hour: float | None = None,
    failures: int | None = None,
    exposure_gpu_hours: float | None = None,
    gpus_by_level: Mapping[Level, int] | None = None,
    gpus_source: str = "given",
) -> RiskReport:
    """Every figure for a fleet of `n_gpus` over `settings.window_hours`.

    The rate is `rate_per_gpu_hour` when given, else the posterior mean from the prior and the
    record (`failures` in `exposure_gpu_hours`), else the prior mean. A given rate is taken as
    known: every figure uses it, and there is no Bayesian block (`bayes` is None), whose prior
    and predictive odds would contradict it. Raises ValueError, with a sentence that names the
    input, on an impossible input.
    """
    s = settings or RiskSettings()
    if (failures is None) != (exposure_gpu_hours is None):
        raise ValueError("failures and exposure in GPU-hours go together: give both or neither")
    if rate_per_gpu_hour is not None and failures is not None:
        raise ValueError(
            "a given rate is taken as known and a record estimates it: give one or the other"
        )
    if s.job_gpus is not None and s.job_gpus < 1:
        raise ValueError(f"the job must have at least one GPU, got {s.job_gpus}")
    if (s.job_gpus is None) != (s.job_hours is None):
        raise ValueError("a job needs both its GPUs and its hours")
    if s.job_hours is not None and not s.job_hours > 0:
        raise ValueError(f"the job's hours must be > 0, got {s.job_hours:g}")
    _require_settings(s)

    bayes: BayesFigures | None = None
    source: RateSource
    if rate_per_gpu_hour is not None:
        rate, source = rate_per_gpu_hour, "given"
    else:
        bayes = _bayes(s, failures, exposure_gpu_hours, n_gpus * s.window_hours)
        rate = bayes.posterior_mean_per_gpu_hour  # the prior's mean without a record
        source = "prior" if failures is None else "posterior"
    fleet = _fleet(n_gpus, rate, s.window_hours, s.max_k)
    detected, undetected = risk.detection_split(fleet.expected_failures, s.detect_gamma)
    return RiskReport(
        schema_version=SCHEMA_VERSION,
        gpus=n_gpus,
        gpus_source=gpus_source,
        rate_per_gpu_hour=rate,
        rate_source=source,
        hours=s.window_hours,
        fleet=fleet,
        detection=DetectionFigures(
            gamma=s.detect_gamma,
            expected_detected=detected,
            expected_undetected=undetected,
            p_no_undetected_failure=risk.p_no_undetected_failure(
                fleet.expected_failures, s.detect_gamma
            ),
        ),
        recovery=_recovery(n_gpus, rate, s),
        job=_job(rate, s),
        bayes=bayes,
        health_adjusted=(
            None
            if gpus_by_level is None
            else _health_adjusted(n_gpus, rate, s.window_hours, gpus_by_level, s)
        ),
    )


def _require_settings(s: RiskSettings) -> None:
    """The checks msgspec makes when decoding hosts.toml, for settings built in code."""
    checks = (
        (s.window_hours >= 0, f"the window must be >= 0 hours, got {s.window_hours:g}"),
        (0 <= s.max_k <= 100, f"the largest k must be in [0, 100], got {s.max_k}"),
        (
            s.checkpoint_minutes >= 0,
            f"the checkpoint write time must be >= 0 minutes, got {s.checkpoint_minutes:g}",
        ),
        (
            s.restart_minutes >= 0,
            f"the restart overhead must be >= 0 minutes, got {s.restart_minutes:g}",
        ),
        (
            0 <= s.detect_gamma <= 1,
            f"the detection probability gamma must be in [0, 1], got {s.detect_gamma:g}",
        ),
        (
            s.recover_minutes > 0,
            f"the mean recovery time must be > 0 minutes, got {s.recover_minutes:g}",
        ),
        (
            s.recover_target_minutes >= 0,
            f"the recovery target must be >= 0 minutes, got {s.recover_target_minutes:g}",
        ),
    )
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


# --------------------------------------------------------------------------------------------
# Lemon nodes: gputui risk --nodes
# --------------------------------------------------------------------------------------------


class RankedNode(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    failures: int  # fault episodes in its monitored exposure
    exposure_gpu_hours: float
    times_marked_failed: int  # operator marks: context, not counted as failures
    mean_per_gpu_hour: float  # its posterior mean, shrunk towards the fleet's rate
    credible_95: Interval
    p_lemon: float  # P(its rate > lemon_factor x the fleet's)
    p_record_at_fleet_rate: float  # P(at least its failures in its exposure at the fleet's rate)


class NodeRanking(msgspec.Struct, frozen=True, kw_only=True):
    schema_version: int
    rate_per_gpu_hour: float  # the fleet's rate, which every node is compared with
    rate_source: RateSource
    failures: int | None  # the fleet's record (the nodes' sums), null without exposure
    exposure_gpu_hours: float | None
    node_prior_strength_failures: float
    lemon_factor: float
    nodes: list[RankedNode]  # highest posterior rate first


def node_ranking(
    records: Iterable[NodeRecord],
    settings: RiskSettings | None = None,
    *,
    rate_per_gpu_hour: float | None = None,
    marks: Mapping[str, int] | None = None,
) -> NodeRanking:
    """Nodes ranked by their own posterior rate, against the fleet's rate.

    The fleet's rate is `rate_per_gpu_hour` when given, else the posterior of the site's prior
    updated by the sum of the nodes' records (what `gputui risk --hosts` learns from the same
    journal), else the prior. `marks` counts the times each node was marked failed: shown,
    never counted, since a mark follows a fault already counted (or is maintenance).
    """
    s = settings or RiskSettings()
    nodes = list(records)
    marks = marks or {}
    failures = sum(n.failures for n in nodes)
    exposure = sum(n.exposure_gpu_hours for n in nodes)
    source: RateSource
    if rate_per_gpu_hour is not None:
        if not (math.isfinite(rate_per_gpu_hour) and rate_per_gpu_hour > 0):
            raise ValueError(
                f"ranking nodes needs a fleet rate > 0 per GPU-hour, got {rate_per_gpu_hour:g}"
            )
        # Only its mean matters to rank_nodes: each node's prior has the fleet's mean.
        fleet: GammaRate = risk.gamma_prior(rate_per_gpu_hour, s.prior_strength_failures)
        source = "given"
    elif exposure > 0:
        fleet, source = risk.gamma_posterior(s.prior, failures, exposure), "posterior"
    else:
        fleet, source = s.prior, "prior"
    ranked = risk.rank_nodes(
        nodes,
        fleet,
        node_prior_strength_failures=s.node_prior_strength_failures,
        lemon_factor=s.lemon_factor,
    )
    has_record = exposure > 0
    return NodeRanking(
        schema_version=SCHEMA_VERSION,
        rate_per_gpu_hour=fleet.mean_per_gpu_hour,
        rate_source=source,
        failures=failures if has_record else None,
        exposure_gpu_hours=exposure if has_record else None,
        node_prior_strength_failures=s.node_prior_strength_failures,
        lemon_factor=s.lemon_factor,
        nodes=[
            RankedNode(
                name=n.name,
                failures=n.failures,
                exposure_gpu_hours=n.exposure_gpu_hours,
                times_marked_failed=marks.get(n.name, 0),
                mean_per_gpu_hour=n.mean_per_gpu_hour,
                credible_95=Interval(low=n.low_per_gpu_hour, high=n.high_per_gpu_hour),
                p_lemon=n.p_lemon,
                p_record_at_fleet_rate=n.p_record_at_fleet_rate,
            )
            for n in ranked
        ],
    )
