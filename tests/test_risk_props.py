"""Properties of the risk model that must hold for every input."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gputui.core import risk

gpus = st.integers(min_value=1, max_value=100_000)
rates = st.floats(min_value=1e-8, max_value=1e-2)
hours = st.floats(min_value=1e-3, max_value=10_000)
probability = st.floats(min_value=0.0, max_value=1.0)

# Each property: enough examples to find an edge, few enough to keep the suite fast.
props = settings(max_examples=60, deadline=None)


@props
@given(st.floats(min_value=0.0, max_value=200.0), st.integers(min_value=0, max_value=60))
def test_probabilities_sum_to_one(expected: float, k_max: int) -> None:
    pmf = risk.failure_count_pmf(expected, k_max)
    assert all(0.0 <= p <= 1.0 for p in pmf)
    assert sum(pmf) + risk.p_at_least(expected, k_max + 1) == pytest.approx(1.0, abs=1e-9)


@props
@given(gpus, gpus, rates, hours)
def test_risk_grows_with_the_fleet(n1: int, n2: int, rate: float, t: float) -> None:
    small, large = sorted((n1, n2))
    p_small = risk.p_any_failure(risk.expected_failures(small, rate, t))
    p_large = risk.p_any_failure(risk.expected_failures(large, rate, t))
    assert p_small <= p_large
    assert risk.fleet_mtbf_hours(small, rate) >= risk.fleet_mtbf_hours(large, rate)


@props
@given(gpus, rates, hours, hours)
def test_risk_grows_with_the_window(n: int, rate: float, t1: float, t2: float) -> None:
    short, long = sorted((t1, t2))
    assert risk.p_any_failure(risk.expected_failures(n, rate, short)) <= risk.p_any_failure(
        risk.expected_failures(n, rate, long)
    )
    assert risk.job_survival_probability(n, rate, short) >= risk.job_survival_probability(
        n, rate, long
    )


@props
@given(st.floats(min_value=0.0, max_value=100.0), probability, probability)
def test_better_detection_never_hurts(expected: float, g1: float, g2: float) -> None:
    low, high = sorted((g1, g2))
    assert risk.p_no_undetected_failure(expected, low) <= risk.p_no_undetected_failure(
        expected, high
    )
    detected, undetected = risk.detection_split(expected, low)
    assert detected + undetected == pytest.approx(expected)


@props
@given(hours, hours, st.floats(min_value=0.1, max_value=1000))
def test_recovery_probability_grows_with_time(t1: float, t2: float, tau: float) -> None:
    a, b = sorted((t1, t2))
    assert 0 <= risk.p_recovered_within(a, tau) <= risk.p_recovered_within(b, tau) <= 1


@props
@given(
    st.floats(min_value=1e-7, max_value=1e-3),
    st.floats(min_value=0.1, max_value=10),
    st.integers(min_value=0, max_value=1000),
    st.floats(min_value=1.0, max_value=1e8),
)
def test_posterior_mean_between_prior_mean_and_observed_rate(
    prior_mean: float, strength: float, failures: int, exposure: float
) -> None:
    prior = risk.gamma_prior(prior_mean, strength)
    post = risk.gamma_posterior(prior, failures, exposure)
    observed = failures / exposure
    lo, hi = sorted((prior_mean, observed))
    assert lo * (1 - 1e-9) <= post.mean_per_gpu_hour <= hi * (1 + 1e-9)


@props
@given(
    st.floats(min_value=1.0, max_value=50),
    st.floats(min_value=1e3, max_value=1e9),
    st.floats(min_value=0.5, max_value=0.99),
)
def test_credible_interval_holds_the_mean(alpha: float, beta: float, level: float) -> None:
    belief = risk.GammaRate(alpha=alpha, beta_gpu_hours=beta)
    lo, hi = risk.credible_interval(belief, level)
    assert 0 <= lo < belief.mean_per_gpu_hour < hi


@props
@given(st.integers(min_value=0, max_value=500), st.floats(min_value=1.0, max_value=1e8))
def test_garwood_interval_holds_the_observed_rate(failures: int, exposure: float) -> None:
    lo, hi = risk.garwood_interval(failures, exposure)
    assert lo <= failures / exposure < hi


@props
@given(
    st.floats(min_value=0.1, max_value=50),
    st.floats(min_value=1e3, max_value=1e9),
    st.floats(min_value=0, max_value=1e7),
    st.floats(min_value=0, max_value=1e7),
)
def test_predictive_no_failure_falls_with_exposure(
    alpha: float, beta: float, e1: float, e2: float
) -> None:
    belief = risk.GammaRate(alpha=alpha, beta_gpu_hours=beta)
    a, b = sorted((e1, e2))
    assert 0 <= risk.p_no_failure_next(belief, b) <= risk.p_no_failure_next(belief, a) <= 1


@props
@given(
    st.floats(min_value=1e-4, max_value=10),
    st.floats(min_value=0, max_value=2),
    st.floats(min_value=0, max_value=1),
    st.floats(min_value=1e-3, max_value=100),
)
def test_ettr_is_a_ratio(rate: float, restart: float, write: float, interval: float) -> None:
    assert 0 <= risk.ettr(rate, restart, write, interval) <= 1


@props
@given(st.floats(min_value=1e-4, max_value=1), st.floats(min_value=0.1, max_value=1e4))
def test_daly_is_young_minus_the_write(write: float, mtbf: float) -> None:
    assume(write < 2 * mtbf)
    young = risk.young_interval_hours(write, mtbf)
    assert young == pytest.approx(math.sqrt(2 * write * mtbf))
    assert risk.daly_interval_hours(write, mtbf) == pytest.approx(young - write)
