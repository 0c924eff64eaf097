"""The risk model against closed forms, the seed's example (corrected) and the published figures."""

from __future__ import annotations

import math

import msgspec
import pytest

from gputui.core import risk
from gputui.core.model import Level
from gputui.core.risk import GammaRate, NodeRecord, RiskSettings
from gputui.core.risk_report import risk_report


def erlang_cdf(x: float, shape: int, rate: float) -> float:
    """P(X <= x) for X ~ Gamma(integer shape, rate): 1 - e^-rx sum_{i<shape} (rx)^i / i!."""
    rx = rate * x
    return 1 - math.exp(-rx) * sum(rx**i / math.factorial(i) for i in range(shape))


def erlang_quantile(q: float, shape: int, rate: float) -> float:
    """The q quantile of an Erlang distribution by bisection: no scipy involved."""
    lo, hi = 0.0, 1.0
    while erlang_cdf(hi, shape, rate) < q:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if erlang_cdf(mid, shape, rate) < q else (lo, mid)
    return (lo + hi) / 2


def poisson_cdf(k: int, mean: float) -> float:
    return sum(math.exp(-mean) * mean**i / math.factorial(i) for i in range(k + 1))


# -- the seed's worked example, corrected ------------------------------------------------------


def test_seed_example_fleet() -> None:
    lam = risk.expected_failures(100, 0.01, 1.0)
    assert lam == pytest.approx(1.0)
    pmf = [round(p, 3) for p in risk.failure_count_pmf(lam, 3)]
    assert pmf == [0.368, 0.368, 0.184, 0.061]
    assert round(risk.p_at_least(lam, 4), 3) == 0.019
    assert round(risk.p_any_failure(lam), 3) == 0.632
    assert risk.fleet_mtbf_hours(100, 0.01) == pytest.approx(1.0)


def test_seed_example_detection_and_recovery() -> None:
    assert round(risk.p_no_undetected_failure(1.0, 0.9), 3) == 0.905
    assert risk.detection_split(1.0, 0.9) == pytest.approx((0.9, 0.1))
    assert round(risk.p_recovered_within(10, 10), 3) == 0.632
    # The seed's 0.999 would need a mean recovery of 10 / ln(1000) = 1.45 min.
    assert risk.p_recovered_within(10, 10 / math.log(1000)) == pytest.approx(0.999)


def test_seed_printed_numbers_fit_no_poisson() -> None:
    printed = [0.368, 0.308, 0.222, 0.082]
    for lam in [x / 100 for x in range(1, 500)]:
        pmf = risk.failure_count_pmf(lam, 3)
        assert any(abs(p - q) > 0.005 for p, q in zip(pmf, printed, strict=True))


# -- fleet, job, availability ------------------------------------------------------------------


def test_job_survival_and_mttf() -> None:
    rate = 2e-5
    assert risk.job_survival_probability(1024, rate, 24) == pytest.approx(
        math.exp(-1024 * rate * 24)
    )
    assert risk.job_mttf_hours(1024, rate) == pytest.approx(1 / (1024 * rate))
    assert risk.job_mttf_hours(8, 0.0) == math.inf


def test_availability() -> None:
    assert risk.availability(1.0, 10 / 60) == pytest.approx(60 / 70)
    assert risk.availability(math.inf, 1.0) == 1.0


def test_fleet_availability_counts_repairs_that_overlap() -> None:
    # The seed's fleet: 100 GPUs at 0.01 per hour, repairs of 10 minutes on average.
    n, rate, tau = 100, 0.01, 10 / 60
    p = risk.p_no_gpu_down(n, rate, tau)
    assert round(p, 3) == 0.846 and p == pytest.approx(math.exp(-n * rate * tau))
    # GPUs fail and are repaired independently, each up a share 1 / (1 + lambda tau) of the
    # time: the chance that all are up at once is that share to the n-th power.
    assert p == pytest.approx((1 / (1 + rate * tau)) ** n, abs=1e-3)
    # The fleet as one unit that cannot fail again while down says 0.857, and is wrong.
    one_unit = risk.availability(risk.fleet_mtbf_hours(n, rate), tau)
    assert round(one_unit, 3) == 0.857 and abs(one_unit - p) > 0.01
    assert risk.expected_gpus_down(n, rate, tau) == pytest.approx(1 / 6)
    assert risk.p_no_gpu_down(n, 0.0, tau) == 1.0


def test_failure_count_quantile() -> None:
    assert risk.failure_count_quantile(1.0, 0.95) == 3
    assert risk.failure_count_quantile(0.0, 0.95) == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda: risk.expected_failures(10, -1e-5, 1),
        lambda: risk.expected_failures(-1, 1e-5, 1),
        lambda: risk.expected_failures(10, 1e-5, -1),
        lambda: risk.detection_split(1.0, 1.5),
        lambda: risk.p_recovered_within(10, 0),
        lambda: risk.gamma_prior(0, 1),
        lambda: risk.garwood_interval(1, 0),
        lambda: risk.young_interval_hours(0.1, 0),
    ],
)
def test_bad_inputs_raise_value_error(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


# -- Bayesian rate -----------------------------------------------------------------------------


def test_default_prior() -> None:
    prior = risk.gamma_prior()
    assert prior.alpha == 1 and prior.beta_gpu_hours == pytest.approx(50_000)
    assert prior.mean_per_gpu_hour == pytest.approx(2e-5)


def test_posterior_800_gpus_for_30_days_with_3_failures() -> None:
    exposure = 800 * 24 * 30
    assert exposure == 576_000
    post = risk.gamma_posterior(risk.gamma_prior(), 3, exposure)
    assert (post.alpha, post.beta_gpu_hours) == pytest.approx((4, 626_000))
    assert post.mean_per_gpu_hour == pytest.approx(4 / 626_000)
    lo, hi = risk.credible_interval(post)
    assert lo == pytest.approx(erlang_quantile(0.025, 4, 626_000), rel=1e-6)
    assert hi == pytest.approx(erlang_quantile(0.975, 4, 626_000), rel=1e-6)
    # The figures as usually quoted: 6.4e-6 per GPU-hour, [1.7e-6, 1.4e-5].
    assert f"{post.mean_per_gpu_hour:.1e}" == "6.4e-06"
    assert (f"{lo:.1e}", f"{hi:.1e}") == ("1.7e-06", "1.4e-05")


def test_posterior_with_a_prior_of_50675_gpu_hours_gives_the_same_figures() -> None:
    post = risk.gamma_posterior(GammaRate(alpha=1, beta_gpu_hours=50_675), 3, 576_000)
    lo, hi = risk.credible_interval(post)
    assert [f"{x:.1e}" for x in (post.mean_per_gpu_hour, lo, hi)] == [
        "6.4e-06",
        "1.7e-06",
        "1.4e-05",
    ]


def test_garwood_interval() -> None:
    e = 576_000.0
    lo, hi = risk.garwood_interval(3, e)
    # Exact: the ends are the rates at which observing <= 3 (>= 3) has probability 2.5%.
    assert poisson_cdf(3, hi * e) == pytest.approx(0.025, abs=1e-9)
    assert 1 - poisson_cdf(2, lo * e) == pytest.approx(0.025, abs=1e-9)
    lo0, hi0 = risk.garwood_interval(0, e)
    assert lo0 == 0 and hi0 == pytest.approx(-math.log(0.025) / e)


def test_predictive_no_failure() -> None:
    post = GammaRate(alpha=4, beta_gpu_hours=626_000)
    assert risk.p_no_failure_next(post, 19_200) == pytest.approx((626_000 / 645_200) ** 4)
    # Uncertainty about the rate makes "no failure" likelier than the plug-in estimate says.
    assert risk.p_no_failure_next(post, 19_200) > math.exp(-post.mean_per_gpu_hour * 19_200)


def test_rank_nodes_finds_the_lemon_and_shrinks() -> None:
    fleet = risk.gamma_posterior(risk.gamma_prior(), 10, 500_000)
    nodes = [
        NodeRecord(name="gpu001", failures=0, exposure_gpu_hours=5_760),
        NodeRecord(name="gpu002", failures=5, exposure_gpu_hours=5_760),
        NodeRecord(name="gpu003", failures=1, exposure_gpu_hours=5_760),
    ]
    ranked = risk.rank_nodes(nodes, fleet)
    assert [n.name for n in ranked] == ["gpu002", "gpu003", "gpu001"]
    lemon = ranked[0]
    assert lemon.p_lemon > 0.95 and ranked[-1].p_lemon < 0.2
    observed = 5 / 5_760
    assert fleet.mean_per_gpu_hour < lemon.mean_per_gpu_hour < observed
    assert lemon.low_per_gpu_hour < lemon.mean_per_gpu_hour < lemon.high_per_gpu_hour
    # How unlikely each record is at the fleet's rate: the Poisson tail P(N >= k).
    mean = fleet.mean_per_gpu_hour * 5_760
    assert lemon.p_record_at_fleet_rate == pytest.approx(1 - poisson_cdf(4, mean))
    assert ranked[1].p_record_at_fleet_rate == pytest.approx(1 - math.exp(-mean))
    assert ranked[-1].p_record_at_fleet_rate == 1.0  # no failure is as likely as it gets


# -- checkpoints -------------------------------------------------------------------------------


def test_young_and_daly() -> None:
    m, delta = 3.09, 1 / 60
    young = risk.young_interval_hours(delta, m)
    assert young == pytest.approx(math.sqrt(2 * delta * m))
    assert round(young * 60) == 19
    assert risk.daly_interval_hours(delta, m) == pytest.approx(young - delta)
    assert risk.daly_interval_hours(10, 2) == 2  # delta >= 2M: checkpoint every M


def test_ettr_formula_and_optimum() -> None:
    rate, u0, w, dt = 1 / 3.09, 10 / 60, 1 / 60, 0.5
    expected = (1 - rate * (u0 + dt / 2)) / (1 + w / dt)
    assert risk.ettr(rate, u0, w, dt) == pytest.approx(expected)
    best = risk.ettr_optimal_interval_hours(w, rate)
    assert best == pytest.approx(risk.young_interval_hours(w, 3.09))
    grid = [best * f / 100 for f in range(20, 400)]
    assert risk.ettr(rate, u0, w, best) >= max(risk.ettr(rate, u0, w, g) for g in grid) - 1e-3
    assert risk.ettr(0.0, u0, w, math.inf) == 1.0


# -- health-adjusted heuristic -----------------------------------------------------------------


def test_health_adjusted_rate() -> None:
    m = risk.HazardMultipliers()
    assert risk.health_adjusted_rate_per_gpu_hour(1e-5, {Level.OK: 8}, m) == pytest.approx(1e-5)
    mixed = {Level.OK: 6, Level.WARN: 1, Level.CRITICAL: 1}
    assert risk.health_adjusted_rate_per_gpu_hour(1e-5, mixed, m) == pytest.approx(1e-5 * 18 / 8)
    assert risk.health_adjusted_rate_per_gpu_hour(1e-5, {}, m) == 1e-5


# -- settings and the report -------------------------------------------------------------------


def test_settings_decode_and_reject() -> None:
    s = msgspec.convert({"detect_gamma": 0.5, "multipliers": {"warn": 3}}, RiskSettings)
    assert s.detect_gamma == 0.5 and s.multipliers.warn == 3 and s.multipliers.critical == 10
    with pytest.raises(msgspec.ValidationError, match="detect_gamma"):
        msgspec.convert({"detect_gamma": 1.5}, RiskSettings)
    with pytest.raises(msgspec.ValidationError, match="prior_meen"):
        msgspec.convert({"prior_meen": 1e-5}, RiskSettings)


def test_report_of_the_seed_example() -> None:
    s = RiskSettings(window_hours=1.0, detect_gamma=0.9, recover_minutes=10.0)
    r = risk_report(100, s, rate_per_gpu_hour=0.01)
    assert [round(t.p, 3) for t in r.fleet.pmf] == [0.368, 0.368, 0.184, 0.061]
    assert round(r.detection.p_no_undetected_failure, 3) == 0.905
    assert round(r.recovery.p_within_target, 3) == 0.632
    assert round(r.recovery.fleet_availability, 3) == 0.846  # e^-(100 x 0.01 x 1/6)
    assert r.recovery.expected_gpus_down == pytest.approx(1 / 6)
    assert r.rate_source == "given" and r.job is None and r.health_adjusted is None
    total = sum(t.p for t in r.fleet.pmf) + r.fleet.p_more_than_max_k
    assert total == pytest.approx(1.0)


def test_report_rate_sources() -> None:
    assert risk_report(8).rate_source == "prior"
    r = risk_report(8, failures=3, exposure_gpu_hours=576_000)
    assert r.rate_source == "posterior" and r.rate_per_gpu_hour == pytest.approx(4 / 626_000)
    assert r.bayes is not None and r.bayes.garwood_95 is not None


def test_report_job_and_health() -> None:
    s = RiskSettings(job_gpus=1024, job_hours=24.0)
    r = risk_report(2048, s, gpus_by_level={Level.OK: 2040, Level.CRITICAL: 8})
    assert r.job is not None and r.job.checkpoint.young_interval_minutes is not None
    assert r.health_adjusted is not None and r.health_adjusted.heuristic
    assert r.health_adjusted.rate_per_gpu_hour > r.rate_per_gpu_hour


def test_report_at_rate_zero_has_no_infinities() -> None:
    r = risk_report(8, RiskSettings(job_gpus=8, job_hours=1.0), rate_per_gpu_hour=0.0)
    assert r.fleet.mtbf_hours is None and r.job is not None and r.job.mttf_hours is None
    msgspec.json.encode(r)  # no inf or nan to choke on


def test_a_given_rate_is_known_and_every_figure_agrees_with_it() -> None:
    # The seed's example: with the rate given, P(no failure in the hour) is P(N = 0) = 0.368;
    # the prior's predictive 0.998 once stood beside it in the same report.
    s = RiskSettings(window_hours=1.0, detect_gamma=0.9, recover_minutes=10.0)
    r = risk_report(100, s, rate_per_gpu_hour=0.01)
    assert r.bayes is None
    no_failure = [r.fleet.pmf[0].p, 1 - r.fleet.p_at_least_one]
    assert all(round(p, 3) == 0.368 for p in no_failure)


def test_a_learnt_rate_keeps_its_bayesian_block() -> None:
    r = risk_report(800, failures=3, exposure_gpu_hours=576_000)
    assert r.bayes is not None
    assert r.rate_per_gpu_hour == r.bayes.posterior_mean_per_gpu_hour
    prior = risk_report(800)
    assert (
        prior.bayes is not None and prior.rate_per_gpu_hour == prior.bayes.prior_mean_per_gpu_hour
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate_per_gpu_hour": -1.0}, "rate"),
        ({"failures": 3}, "together"),
        ({"settings": RiskSettings(detect_gamma=2.0)}, "gamma"),
        ({"settings": RiskSettings(job_gpus=8)}, "job"),
        (
            {"rate_per_gpu_hour": 1e-5, "failures": 3, "exposure_gpu_hours": 10.0},
            "one or the other",
        ),
    ],
)
def test_report_rejects_bad_inputs(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        risk_report(8, **kwargs)  # type: ignore[arg-type]
