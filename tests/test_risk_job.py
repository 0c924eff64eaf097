"""Per-job risk (what the Jobs view shows for each running job) and the fleet rate it uses."""

from __future__ import annotations

import math

import pytest

from gputui.core.risk import RiskSettings
from gputui.core.risk_summary import JobRisk, fleet_rate_per_gpu_hour, job_risk


def test_llama3_scale_job_figures() -> None:
    # docs/risk.md: a 16,384-GPU job at 2e-5 fails every 3.05 h and survives a day with
    # probability 0.0004; a 1-minute checkpoint every 18.1 min (Daly; Young's 19.1 minus 1).
    r = job_risk(16_384, 2e-5, 60)
    assert r.gpus == 16_384
    assert r.mtbf_h == pytest.approx(3.0518, abs=1e-4)
    assert r.p_survive_24h == pytest.approx(0.000384, abs=1e-6)
    assert r.checkpoint_interval_h is not None
    assert r.checkpoint_interval_h * 60 == pytest.approx(18.14, abs=0.01)


def test_job_risk_follows_its_own_gpu_count() -> None:
    rate = 3e-5
    small, large = job_risk(8, rate, 120), job_risk(1024, rate, 120)
    assert small.mtbf_h == pytest.approx(1 / (8 * rate))
    assert large.mtbf_h == pytest.approx(1 / (1024 * rate))
    assert small.p_survive_24h == pytest.approx(math.exp(-8 * rate * 24))
    assert large.p_survive_24h == pytest.approx(math.exp(-1024 * rate * 24))
    # A bigger job fails sooner, so it checkpoints more often: by sqrt(128) for Young's part.
    assert small.checkpoint_interval_h is not None and large.checkpoint_interval_h is not None
    write_h = 120 / 3600
    assert small.checkpoint_interval_h + write_h == pytest.approx(
        math.sqrt(128) * (large.checkpoint_interval_h + write_h)
    )


def test_a_slow_write_makes_the_interval_the_mtbf() -> None:
    # Daly: when the write takes at least twice the MTBF, checkpoint once per MTBF.
    r = job_risk(1000, 1e-3, 3 * 3600)  # MTBF 1 h, write 3 h
    assert r.mtbf_h == pytest.approx(1.0)
    assert r.checkpoint_interval_h == pytest.approx(1.0)


def test_rate_zero_never_fails() -> None:
    assert job_risk(64, 0.0, 60) == JobRisk(
        gpus=64, rate_per_gpu_hour=0.0, p_survive_24h=1.0, mtbf_h=None, checkpoint_interval_h=None
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 2e-5, 60), "at least one GPU"),
        ((8, -1e-5, 60), "failure rate"),
        ((8, 2e-5, -1), "write time"),
        ((8, 2e-5, math.nan), "write time"),
    ],
)
def test_job_risk_rejects_bad_inputs(args: tuple[int, float, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        job_risk(*args)


def test_fleet_rate_is_the_prior_mean_without_a_record() -> None:
    assert fleet_rate_per_gpu_hour() == pytest.approx(2e-5)
    site = RiskSettings(prior_mean_per_gpu_hour=5e-5, prior_strength_failures=2)
    assert fleet_rate_per_gpu_hour(site) == pytest.approx(5e-5)


def test_fleet_rate_is_the_posterior_mean_with_a_record() -> None:
    # docs/risk.md's worked example: 3 failures in 576,000 GPU-hours -> 4 / 626,000.
    rate = fleet_rate_per_gpu_hour(None, 3, 576_000)
    assert rate == pytest.approx(4 / 626_000)
    assert round(rate, 7) == pytest.approx(6.4e-6)
