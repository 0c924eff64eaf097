"""Fleet failure risk: the Poisson fleet model, job survival, detection and recovery, a Bayesian
failure rate learnt from observed failures and exposure, and checkpoint advice.

Every rate is job-interrupting failures per GPU-hour; times are hours unless a name says
otherwise. The model and its assumptions (independent GPUs, a constant rate, no correlated
network or power failures) are explained in docs/risk.md, with the sources of the default prior.
The health-adjusted view at the end is a labelled heuristic, not part of the calibrated model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

import msgspec

from gputui.core.model import Level

# Default prior: 2e-5 job-interrupting failures per GPU-hour (Llama 3's 16k-H100 run; Meta RSC
# and BLOOM are close), worth one observed failure, so a fleet's own record outweighs it fast.
DEFAULT_PRIOR_MEAN_PER_GPU_HOUR = 2e-5
DEFAULT_PRIOR_STRENGTH_FAILURES = 1.0


def _stats() -> Any:
    """scipy.stats, imported on first use: it takes most of a second to import, and the
    settings and the closed forms (what the TUI and hosts.toml loading need first) use none."""
    from scipy import stats

    return stats


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _check_rate(rate_per_gpu_hour: float) -> None:
    _require(
        math.isfinite(rate_per_gpu_hour) and rate_per_gpu_hour >= 0,
        f"the failure rate must be >= 0 per GPU-hour, got {rate_per_gpu_hour:g}",
    )


def _check_nonnegative(value: float, what: str) -> None:
    _require(math.isfinite(value) and value >= 0, f"{what} must be >= 0, got {value:g}")


def _check_probability(value: float, what: str) -> None:
    _require(0.0 <= value <= 1.0, f"{what} must be in [0, 1], got {value:g}")


# --------------------------------------------------------------------------------------------
# Fleet: N ~ Poisson(n lambda T)
# --------------------------------------------------------------------------------------------


def expected_failures(n_gpus: int, rate_per_gpu_hour: float, hours: float) -> float:
    """Lambda = n lambda T: expected failures of `n_gpus` GPUs in a window of `hours`."""
    _check_nonnegative(n_gpus, "the number of GPUs")
    _check_rate(rate_per_gpu_hour)
    _check_nonnegative(hours, "the window in hours")
    return n_gpus * rate_per_gpu_hour * hours


def failure_count_pmf(expected: float, k_max: int) -> list[float]:
    """P(N = k) for k = 0..k_max, N ~ Poisson(expected)."""
    _check_nonnegative(expected, "the expected number of failures")
    _check_nonnegative(k_max, "the largest k")
    return [float(p) for p in _stats().poisson.pmf(range(k_max + 1), expected)]


def p_at_least(expected: float, k: int) -> float:
    """P(N >= k), N ~ Poisson(expected)."""
    _check_nonnegative(expected, "the expected number of failures")
    return 1.0 if k <= 0 else float(_stats().poisson.sf(k - 1, expected))


def p_any_failure(expected: float) -> float:
    """P(N >= 1) = 1 - e^-Lambda (expm1 keeps it exact for a tiny Lambda)."""
    _check_nonnegative(expected, "the expected number of failures")
    return -math.expm1(-expected)


def failure_count_quantile(expected: float, q: float) -> int:
    """The smallest k with P(N <= k) >= q: how many failures to plan for at confidence q."""
    _check_probability(q, "the quantile")
    return int(_stats().poisson.ppf(q, expected)) if expected > 0 else 0


def fleet_mtbf_hours(n_gpus: int, rate_per_gpu_hour: float) -> float:
    """1 / (n lambda): mean hours between failures anywhere in the fleet (inf at rate 0)."""
    total = expected_failures(n_gpus, rate_per_gpu_hour, 1.0)
    return math.inf if total == 0 else 1.0 / total


# --------------------------------------------------------------------------------------------
# A job on k GPUs for D hours: a series system, it survives only if every GPU does.
# --------------------------------------------------------------------------------------------


def job_survival_probability(job_gpus: int, rate_per_gpu_hour: float, job_hours: float) -> float:
    """P(no failure) = e^(-k lambda D) for a job of `job_gpus` GPUs running `job_hours`."""
    return math.exp(-expected_failures(job_gpus, rate_per_gpu_hour, job_hours))


def job_mttf_hours(job_gpus: int, rate_per_gpu_hour: float) -> float:
    """1 / (k lambda): the job's mean hours to its first failure (inf at rate 0)."""
    return fleet_mtbf_hours(job_gpus, rate_per_gpu_hour)


# --------------------------------------------------------------------------------------------
# Detection (probability gamma per failure) and recovery (exponential with mean tau).
# --------------------------------------------------------------------------------------------


def detection_split(expected: float, gamma: float) -> tuple[float, float]:
    """Expected (detected, undetected) failures: Poisson thinning into gamma and 1 - gamma."""
    _check_nonnegative(expected, "the expected number of failures")
    _check_probability(gamma, "the detection probability gamma")
    return gamma * expected, (1.0 - gamma) * expected


def p_no_undetected_failure(expected: float, gamma: float) -> float:
    """P(every failure in the window is detected) = e^(-(1 - gamma) Lambda)."""
    return math.exp(-detection_split(expected, gamma)[1])


def p_recovered_within(minutes: float, mean_recovery_minutes: float) -> float:
    """P(R <= t) = 1 - e^(-t / tau) for a recovery time R ~ Exponential(mean tau), in minutes."""
    _check_nonnegative(minutes, "the recovery target in minutes")
    _require(
        math.isfinite(mean_recovery_minutes) and mean_recovery_minutes > 0,
        f"the mean recovery time must be > 0 minutes, got {mean_recovery_minutes:g}",
    )
    return -math.expm1(-minutes / mean_recovery_minutes)


def expected_gpus_down(n_gpus: int, rate_per_gpu_hour: float, mean_repair_hours: float) -> float:
    """n lambda tau: the mean number of GPUs down at a random instant, repairs overlapping.

    Failures arrive at n lambda and each stays down tau on average, whatever else is down: an
    M/G/infinity queue, so the count down is Poisson with this mean, for any repair-time shape.
    """
    _check_nonnegative(mean_repair_hours, "the mean repair time")
    return expected_failures(n_gpus, rate_per_gpu_hour, mean_repair_hours)


def p_no_gpu_down(n_gpus: int, rate_per_gpu_hour: float, mean_repair_hours: float) -> float:
    """P(no GPU of the fleet is down at a random instant) = e^(-n lambda tau).

    Not the fleet's MTBF / (MTBF + tau) = 1 / (1 + n lambda tau): that treats the fleet as one
    unit which cannot fail again while it is being repaired, where n GPUs fail and are repaired
    side by side. The two agree only while n lambda tau is small.
    """
    return math.exp(-expected_gpus_down(n_gpus, rate_per_gpu_hour, mean_repair_hours))


def availability(mtbf_hours: float, mttr_hours: float) -> float:
    """MTBF / (MTBF + MTTR): the long-run fraction of time up (1 when MTBF is infinite)."""
    _check_nonnegative(mttr_hours, "the mean time to repair")
    _require(mtbf_hours > 0, f"the MTBF must be > 0 hours, got {mtbf_hours:g}")
    if math.isinf(mtbf_hours):
        return 1.0
    return mtbf_hours / (mtbf_hours + mttr_hours)


# --------------------------------------------------------------------------------------------
# Bayesian rate: Gamma prior, Poisson likelihood, Gamma posterior.
# --------------------------------------------------------------------------------------------


class GammaRate(msgspec.Struct, frozen=True, kw_only=True):
    """A Gamma(alpha, beta) belief about a rate per GPU-hour; beta is in GPU-hours."""

    alpha: float  # shape: prior strength plus failures seen
    beta_gpu_hours: float  # rate parameter: prior exposure plus GPU-hours seen

    @property
    def mean_per_gpu_hour(self) -> float:
        return self.alpha / self.beta_gpu_hours


def gamma_prior(
    mean_per_gpu_hour: float = DEFAULT_PRIOR_MEAN_PER_GPU_HOUR,
    strength_failures: float = DEFAULT_PRIOR_STRENGTH_FAILURES,
) -> GammaRate:
    """A prior with this mean, worth `strength_failures` observed failures.

    alpha0 = strength, beta0 = strength / mean: with the defaults Gamma(1, 50,000 GPU-hours).
    """
    _require(
        mean_per_gpu_hour > 0, f"the prior mean must be > 0 per GPU-hour, got {mean_per_gpu_hour:g}"
    )
    _require(
        strength_failures > 0, f"the prior strength must be > 0 failures, got {strength_failures:g}"
    )
    return GammaRate(alpha=strength_failures, beta_gpu_hours=strength_failures / mean_per_gpu_hour)


def gamma_posterior(prior: GammaRate, failures: int, exposure_gpu_hours: float) -> GammaRate:
    """Gamma(alpha0 + k, beta0 + E) after `failures` in `exposure_gpu_hours` (conjugate update)."""
    _check_nonnegative(failures, "the number of failures")
    _check_nonnegative(exposure_gpu_hours, "the exposure in GPU-hours")
    return GammaRate(
        alpha=prior.alpha + failures, beta_gpu_hours=prior.beta_gpu_hours + exposure_gpu_hours
    )


def credible_interval(belief: GammaRate, level: float = 0.95) -> tuple[float, float]:
    """Central credible interval of the rate, per GPU-hour, from the Gamma quantiles."""
    _require(0 < level < 1, f"the credible level must be in (0, 1), got {level:g}")
    tail = (1 - level) / 2
    scale = 1 / belief.beta_gpu_hours
    lo, hi = _stats().gamma.ppf([tail, 1 - tail], belief.alpha, scale=scale)
    return float(lo), float(hi)


def garwood_interval(
    failures: int, exposure_gpu_hours: float, level: float = 0.95
) -> tuple[float, float]:
    """Exact (Garwood) confidence interval of a Poisson rate, per GPU-hour, with no prior.

    [chi2(2k, a/2) / 2E, chi2(2k + 2, 1 - a/2) / 2E]; the lower end is 0 when k = 0.
    """
    _check_nonnegative(failures, "the number of failures")
    _require(
        exposure_gpu_hours > 0, f"the exposure must be > 0 GPU-hours, got {exposure_gpu_hours:g}"
    )
    _require(0 < level < 1, f"the confidence level must be in (0, 1), got {level:g}")
    tail = (1 - level) / 2
    lo = 0.0 if failures == 0 else float(_stats().chi2.ppf(tail, 2 * failures))
    hi = float(_stats().chi2.ppf(1 - tail, 2 * failures + 2))
    return lo / (2 * exposure_gpu_hours), hi / (2 * exposure_gpu_hours)


def p_no_failure_next(belief: GammaRate, exposure_gpu_hours: float) -> float:
    """Predictive P(no failure in the next `exposure_gpu_hours`) = (beta / (beta + e))^alpha.

    Lower than e^(-mean e): it averages over what the rate might be (negative binomial at 0).
    """
    _check_nonnegative(exposure_gpu_hours, "the exposure in GPU-hours")
    return math.exp(-belief.alpha * math.log1p(exposure_gpu_hours / belief.beta_gpu_hours))


class NodeRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One node's record: failures seen in its monitored exposure."""

    name: str
    failures: int
    exposure_gpu_hours: float


class NodeRisk(msgspec.Struct, frozen=True, kw_only=True):
    """One node's posterior rate, shrunk towards the fleet's."""

    name: str
    failures: int
    exposure_gpu_hours: float
    mean_per_gpu_hour: float
    low_per_gpu_hour: float  # 95% credible interval
    high_per_gpu_hour: float
    p_lemon: float  # P(rate > lemon_factor x the fleet's mean)
    p_record_at_fleet_rate: float  # P(at least this many failures) had it the fleet's rate


def rank_nodes(
    nodes: Iterable[NodeRecord],
    fleet: GammaRate,
    *,
    node_prior_strength_failures: float = DEFAULT_PRIOR_STRENGTH_FAILURES,
    lemon_factor: float = 2.0,
) -> list[NodeRisk]:
    """Per-node posteriors, worst first, each with the fleet as its prior (shrinkage).

    A node's prior has the fleet's posterior mean but only `node_prior_strength_failures` of
    weight: the full fleet posterior would claim every node has exactly the fleet's rate, the
    very thing a lemon hunt doubts. So a node with one failure in a week is not yet a lemon,
    and a node with five is, however many failures the rest of the fleet saw.

    Each node also gets the chance of a record at least as bad as its own had it the fleet's
    mean rate (the Poisson tail): how unlikely its history is under the fleet's rate. It is
    shown, not ranked by: with no shrinkage, one early failure in a few GPU-hours would top it.
    """
    _require(lemon_factor > 0, f"the lemon factor must be > 0, got {lemon_factor:g}")
    fleet_mean = fleet.mean_per_gpu_hour
    prior = gamma_prior(fleet_mean, node_prior_strength_failures)
    ranked = []
    for node in nodes:
        post = gamma_posterior(prior, node.failures, node.exposure_gpu_hours)
        lo, hi = credible_interval(post)
        scale = 1 / post.beta_gpu_hours
        p_lemon = float(_stats().gamma.sf(lemon_factor * fleet_mean, post.alpha, scale=scale))
        p_record = p_at_least(fleet_mean * node.exposure_gpu_hours, node.failures)
        ranked.append(
            NodeRisk(
                name=node.name,
                failures=node.failures,
                exposure_gpu_hours=node.exposure_gpu_hours,
                mean_per_gpu_hour=post.mean_per_gpu_hour,
                low_per_gpu_hour=lo,
                high_per_gpu_hour=hi,
                p_lemon=p_lemon,
                p_record_at_fleet_rate=p_record,
            )
        )
    ranked.sort(key=lambda n: (-n.mean_per_gpu_hour, n.name))
    return ranked


# --------------------------------------------------------------------------------------------
# Checkpoint advice. M = job MTBF (hours), delta = w = checkpoint write time (hours).
# --------------------------------------------------------------------------------------------


def young_interval_hours(checkpoint_write_hours: float, mtbf_hours: float) -> float:
    """Young's optimal checkpoint interval sqrt(2 delta M), in hours."""
    _check_nonnegative(checkpoint_write_hours, "the checkpoint write time")
    _require(mtbf_hours > 0, f"the MTBF must be > 0 hours, got {mtbf_hours:g}")
    return math.sqrt(2 * checkpoint_write_hours * mtbf_hours)


def daly_interval_hours(checkpoint_write_hours: float, mtbf_hours: float) -> float:
    """Daly's first-order interval sqrt(2 delta M) - delta for delta < 2M, else M; in hours.

    It subtracts the write time because the clock of the next interval starts after the write.
    """
    young = young_interval_hours(checkpoint_write_hours, mtbf_hours)
    if checkpoint_write_hours >= 2 * mtbf_hours:
        return mtbf_hours
    return young - checkpoint_write_hours


def ettr(
    job_failure_rate_per_hour: float,
    restart_hours: float,
    checkpoint_write_hours: float,
    checkpoint_interval_hours: float,
) -> float:
    """Expected effective training time ratio (Meta's simplified model), in [0, 1].

    (1 - N r_f (u0 + dt/2)) / (1 + w / dt): each failure costs the restart u0 plus on average
    half an interval of lost work; each interval costs one write w. N r_f, the nodes times each
    node's failure rate, is the job's failure rate: k GPUs x lambda per GPU-hour.
    """
    _check_nonnegative(job_failure_rate_per_hour, "the job failure rate")
    _check_nonnegative(restart_hours, "the restart overhead")
    _check_nonnegative(checkpoint_write_hours, "the checkpoint write time")
    _require(checkpoint_interval_hours > 0, "the checkpoint interval must be > 0 hours")
    if job_failure_rate_per_hour == 0:
        lost = 0.0  # never fails: only the writes cost (and an infinite interval costs nothing)
    else:
        lost = job_failure_rate_per_hour * (restart_hours + checkpoint_interval_hours / 2)
    overhead = (
        0.0
        if math.isinf(checkpoint_interval_hours)
        else checkpoint_write_hours / checkpoint_interval_hours
    )
    return max(0.0, (1 - lost) / (1 + overhead))


def ettr_optimal_interval_hours(
    checkpoint_write_hours: float, job_failure_rate_per_hour: float
) -> float:
    """dt* = sqrt(2 w / (N r_f)), the interval that maximises ETTR (Young's, in other terms)."""
    _check_nonnegative(checkpoint_write_hours, "the checkpoint write time")
    _check_nonnegative(job_failure_rate_per_hour, "the job failure rate")
    if job_failure_rate_per_hour == 0:
        return math.inf
    return math.sqrt(2 * checkpoint_write_hours / job_failure_rate_per_hour)


# --------------------------------------------------------------------------------------------
# Health-adjusted view: a heuristic, shown apart from the calibrated estimate.
# --------------------------------------------------------------------------------------------

Multiplier = Annotated[float, msgspec.Meta(ge=0)]


class HazardMultipliers(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """How much more likely to fail a GPU is, given its verdict level. Not calibrated.

    A warning (throttling, a pending remap, a rising error counter) precedes failures often
    enough to matter; these factors only rank the fleet's exposure, they are no measured odds.
    """

    ok: Multiplier = 1.0
    unknown: Multiplier = 1.0
    warn: Multiplier = 2.0
    critical: Multiplier = 10.0
    failed: Multiplier = 100.0

    def of(self, level: Level) -> float:
        value: float = getattr(self, level.label)
        return value


def health_adjusted_rate_per_gpu_hour(
    rate_per_gpu_hour: float, gpus_by_level: Mapping[Level, int], multipliers: HazardMultipliers
) -> float:
    """The fleet's mean rate per GPU-hour with each GPU's rate scaled by its level's multiplier."""
    _check_rate(rate_per_gpu_hour)
    total = sum(gpus_by_level.values())
    if total == 0:
        return rate_per_gpu_hour
    weighted = sum(multipliers.of(level) * n for level, n in gpus_by_level.items())
    return rate_per_gpu_hour * weighted / total


# --------------------------------------------------------------------------------------------
# Settings: hosts.toml [risk]
# --------------------------------------------------------------------------------------------

Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]


class RiskSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """The risk model's inputs that a site sets once (hosts.toml `[risk]`), with defaults.

    The command line overrides each of them for one run.
    """

    prior_mean_per_gpu_hour: Positive = DEFAULT_PRIOR_MEAN_PER_GPU_HOUR
    prior_strength_failures: Positive = DEFAULT_PRIOR_STRENGTH_FAILURES
    window_hours: NonNegative = 24.0  # the fleet window T
    max_k: Annotated[int, msgspec.Meta(ge=0, le=100)] = 3  # P(N = k) is listed for k = 0..max_k
    job_gpus: Annotated[int, msgspec.Meta(ge=1)] | None = None  # a typical job, for the job view
    job_hours: Positive | None = None
    checkpoint_minutes: NonNegative = 1.0  # time to write one checkpoint (w, delta)
    restart_minutes: NonNegative = 10.0  # restart overhead after a failure (u0)
    detect_gamma: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.9  # P(a failure is detected)
    recover_minutes: Positive = 10.0  # mean recovery time tau
    recover_target_minutes: NonNegative = 10.0  # the t of P(R <= t)
    node_prior_strength_failures: Positive = DEFAULT_PRIOR_STRENGTH_FAILURES
    lemon_factor: Positive = 2.0
    multipliers: HazardMultipliers = msgspec.field(default_factory=HazardMultipliers)

    @property
    def prior(self) -> GammaRate:
        return gamma_prior(self.prior_mean_per_gpu_hour, self.prior_strength_failures)
