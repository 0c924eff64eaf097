"""The lemon-node ranking (`gputui risk --nodes`, the Risk tab) against the fleet's rate."""

from __future__ import annotations

import math

import pytest

from gputui.core.risk import NodeRecord, RiskSettings
from gputui.core.risk_report import node_ranking, risk_report

WEEK_OF_8_GPUS = 8 * 24 * 7.0  # 1,344 GPU-hours


def fleet_of(failures: dict[str, int]) -> list[NodeRecord]:
    return [
        NodeRecord(name=name, failures=k, exposure_gpu_hours=WEEK_OF_8_GPUS)
        for name, k in failures.items()
    ]


def test_the_lemon_comes_first_against_the_fleet_posterior() -> None:
    records = fleet_of({"gpu01": 0, "gpu02": 1, "gpu03": 6, "gpu04": 0, "gpu05": 1})
    ranking = node_ranking(records)
    # The fleet's rate is the posterior of the same record that `gputui risk` learns from.
    fleet = risk_report(40, failures=8, exposure_gpu_hours=5 * WEEK_OF_8_GPUS)
    assert ranking.rate_source == "posterior"
    assert ranking.rate_per_gpu_hour == pytest.approx(fleet.rate_per_gpu_hour)
    assert ranking.failures == 8 and ranking.exposure_gpu_hours == pytest.approx(6_720)
    names = [n.name for n in ranking.nodes]
    assert names[0] == "gpu03" and set(names[1:3]) == {"gpu02", "gpu05"}
    lemon = ranking.nodes[0]
    assert lemon.p_lemon > 0.9 and ranking.nodes[-1].p_lemon < 0.5
    # Shrinkage: above the fleet's rate, below its own raw 6 / 1,344.
    assert ranking.rate_per_gpu_hour < lemon.mean_per_gpu_hour < 6 / WEEK_OF_8_GPUS
    assert lemon.credible_95.low < lemon.mean_per_gpu_hour < lemon.credible_95.high
    # Six failures in a week where the fleet's rate expects 0.2 is rare; none is not.
    assert lemon.p_record_at_fleet_rate < 0.01
    assert ranking.nodes[-1].p_record_at_fleet_rate == 1.0


def test_a_given_rate_is_the_one_nodes_are_compared_with() -> None:
    records = fleet_of({"gpu01": 0, "gpu02": 2})
    ranking = node_ranking(records, rate_per_gpu_hour=1e-3)
    assert ranking.rate_source == "given" and ranking.rate_per_gpu_hour == pytest.approx(1e-3)
    expected = 1e-3 * WEEK_OF_8_GPUS  # 1.34 failures a week at that rate: two is no lemon
    worst = ranking.nodes[0]
    assert worst.name == "gpu02"
    assert worst.p_record_at_fleet_rate == pytest.approx(1 - math.exp(-expected) * (1 + expected))
    assert worst.p_lemon < 0.5


def test_without_exposure_the_prior_is_the_fleet_rate() -> None:
    ranking = node_ranking([NodeRecord(name="gpu01", failures=0, exposure_gpu_hours=0.0)])
    assert ranking.rate_source == "prior" and ranking.failures is None
    assert ranking.rate_per_gpu_hour == pytest.approx(2e-5)
    assert ranking.nodes[0].mean_per_gpu_hour == pytest.approx(2e-5)


def test_marks_are_shown_and_not_counted() -> None:
    records = fleet_of({"gpu01": 1, "gpu02": 1})
    plain = node_ranking(records)
    marked = node_ranking(records, marks={"gpu02": 3})
    assert [n.times_marked_failed for n in marked.nodes] == [0, 3]
    assert [n.mean_per_gpu_hour for n in marked.nodes] == [n.mean_per_gpu_hour for n in plain.nodes]


def test_site_settings_shape_the_ranking() -> None:
    records = fleet_of({"gpu01": 0, "gpu02": 3})
    weak = node_ranking(records, RiskSettings(node_prior_strength_failures=0.5))
    strong = node_ranking(records, RiskSettings(node_prior_strength_failures=20))
    # A stronger node prior pulls the node harder towards the fleet's rate.
    assert strong.nodes[0].mean_per_gpu_hour < weak.nodes[0].mean_per_gpu_hour
    strict = node_ranking(records, RiskSettings(lemon_factor=10))
    assert strict.nodes[0].p_lemon < node_ranking(records).nodes[0].p_lemon
    assert strict.lemon_factor == 10


@pytest.mark.parametrize("rate", [0.0, math.inf])
def test_a_rate_to_compare_with_must_be_positive(rate: float) -> None:
    with pytest.raises(ValueError, match="fleet rate > 0"):
        node_ranking(fleet_of({"gpu01": 1}), rate_per_gpu_hour=rate)
