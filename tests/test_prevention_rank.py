"""The service list: findings ranked by the failure probability servicing avoids."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gputui.core.model import Level
from gputui.core.prevention import hazard_of, service_list
from gputui.core.risk import HazardMultipliers, NodeRecord
from gputui.core.trends import Evidence, Finding, Remedy, Subject, find_trends
from tests.trend_days import base_temp, host, series

RATE = 2e-5
MONTH_H = 720.0
M = HazardMultipliers()


def finding(
    host_name: str = "node01",
    gpu: int | None = 0,
    level: Level = Level.WARN,
    remedy: Remedy = Remedy.HARDWARE,
    rule: str = "ecc_corrected_rising",
    gpus: int = 1,
    hazard: float | None = None,
) -> Finding:
    return Finding(
        rule=rule,
        subject=Subject(host=host_name, gpu=gpu, uuid=None if gpu is None else f"GPU-{gpu}"),
        level=level,
        remedy=remedy,
        advice="",
        evidence=Evidence(text=""),
        gpus=gpus,
        hazard=hazard,
    )


def test_the_benefit_is_the_failure_probability_avoided_over_30_days() -> None:
    (item,) = service_list([finding(level=Level.CRITICAL)], rate_per_gpu_hour=RATE).items
    # 10x the fleet's rate for one GPU over 720 h, against the fleet's rate
    assert item.hazard == 10
    assert item.p_failure == pytest.approx(1 - math.exp(-10 * RATE * MONTH_H))
    assert item.p_failure_serviced == pytest.approx(1 - math.exp(-RATE * MONTH_H))
    assert item.benefit == pytest.approx(item.p_failure - item.p_failure_serviced)
    assert item.benefit == pytest.approx(0.1198, abs=1e-4)
    assert item.failures_avoided == pytest.approx(9 * RATE * MONTH_H)


def test_a_node_finding_covers_its_gpus() -> None:
    (item,) = service_list(
        [finding(gpu=None, gpus=8, rule="power_brake_node")], rate_per_gpu_hour=RATE
    ).items
    assert item.gpus == 8
    assert item.p_failure == pytest.approx(1 - math.exp(-8 * 2 * RATE * MONTH_H))


def test_ranked_by_benefit_then_level_then_name() -> None:
    findings = [
        finding("a", 0, Level.WARN),
        finding("b", 1, Level.FAILED, rule="remap_failure"),
        finding("c", None, Level.WARN, Remedy.POWER, "power_brake_node", gpus=8),
        finding("d", 2, Level.CRITICAL, Remedy.COOLING, "gpu_hotter_than_peers"),
        finding("a", 3, Level.WARN),  # same benefit as a/0: by GPU
    ]
    ranked = service_list(findings, rate_per_gpu_hour=RATE).items
    assert [(i.subject.host, i.subject.gpu) for i in ranked] == [
        ("b", 1),  # 100x one GPU: P 0.76
        ("d", 2),  # 10x one GPU: 0.12
        ("c", None),  # 2x eight GPUs: 0.097
        ("a", 0),  # 2x one GPU: 0.014
        ("a", 3),
    ]
    benefits = [i.benefit for i in ranked]
    assert benefits == sorted(benefits, reverse=True)


def test_a_lemons_own_rate_sets_its_hazard() -> None:
    lemon = finding("n", None, Level.WARN, rule="lemon_node", gpus=8, hazard=6.0)
    (item,) = service_list([lemon], rate_per_gpu_hour=RATE).items
    assert item.hazard == 6.0  # not the 2x of a warning


def test_one_remedy_is_one_cause_and_different_remedies_add() -> None:
    ecc = finding(level=Level.CRITICAL)
    remaps = finding(level=Level.WARN, rule="remap_rows_accumulating")
    hot = finding(level=Level.WARN, remedy=Remedy.COOLING, rule="gpu_hotter_than_peers")
    assert hazard_of([ecc, remaps], M) == 10  # the strongest of one cause
    assert hazard_of([ecc, remaps, hot], M) == 11  # 1 + 9 + 1
    (item,) = service_list([remaps, hot, ecc], rate_per_gpu_hour=RATE).items
    assert item.level is Level.CRITICAL
    assert item.findings[0].rule == "ecc_corrected_rising"
    assert item.remedies == (Remedy.HARDWARE, Remedy.COOLING)


def test_site_multipliers_change_the_ranking() -> None:
    hot = finding("a", 0, Level.WARN, Remedy.COOLING, "gpu_hotter_than_peers")
    crit = finding("b", 0, Level.CRITICAL)
    flat = HazardMultipliers(warn=20.0, critical=10.0)
    ranked = service_list([hot, crit], rate_per_gpu_hour=RATE, multipliers=flat).items
    assert [i.subject.host for i in ranked] == ["a", "b"]


def test_bad_rates_and_horizons_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="failure rate must be >= 0"):
        service_list([finding()], rate_per_gpu_hour=-1)
    with pytest.raises(ValueError, match="horizon must be >= 0 hours"):
        service_list([finding()], horizon_hours=math.nan)


def test_no_findings_no_list() -> None:
    assert service_list([]).items == ()


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.one_of(st.none(), st.integers(0, 3)),
            st.sampled_from([Level.WARN, Level.CRITICAL, Level.FAILED]),
            st.sampled_from(list(Remedy)),
            st.integers(1, 8),
        ),
        max_size=12,
    ),
    st.randoms(use_true_random=False),
)
def test_the_order_is_stable_and_by_benefit(
    rows: list[tuple[str, int | None, Level, Remedy, int]], rng: random.Random
) -> None:
    findings = [
        finding(h, g, lvl, rem, f"rule_{i}", gpus=(n if g is None else 1))
        for i, (h, g, lvl, rem, n) in enumerate(rows)
    ]
    ranked = service_list(findings, rate_per_gpu_hour=RATE).items
    shuffled = list(findings)
    rng.shuffle(shuffled)
    again = service_list(shuffled, rate_per_gpu_hour=RATE).items
    assert [(i.subject, i.benefit) for i in again] == [(i.subject, i.benefit) for i in ranked]
    assert all(a.benefit >= b.benefit for a, b in itertools.pairwise(ranked))
    # one item per subject, every finding in it
    assert len({i.subject for i in ranked}) == len(ranked)
    assert sum(len(i.findings) for i in ranked) == len(findings)


def test_a_fleets_drifts_in_service_order() -> None:
    """From rollups to the list: a failed remap first, then the node whose PSU brakes its
    eight GPUs, the lemon, and single GPUs at a warning."""
    t = base_temp()
    fleet = host(range(14), name="node01", brake_s=lambda g, d: 10.0 * (d % 2 == 0))
    fleet += host(range(14), name="node02", temp_c=lambda g, d: t + 10 * (g == 4))
    fleet += series(range(14), host="node03", gpu=0, remap_uncorrected=9, failure=True)
    fleet += series(range(14), host="node03", gpu=1, ecc=lambda d: 40 * (d >= 7))
    nodes = [NodeRecord(name=f"node{i:02}", failures=0, exposure_gpu_hours=5760) for i in range(20)]
    nodes.append(NodeRecord(name="node04", failures=7, exposure_gpu_hours=5760))
    findings = find_trends(fleet, nodes=nodes)
    ranked = service_list(findings, rate_per_gpu_hour=RATE).items
    order = [(i.subject.host, i.subject.gpu, i.findings[0].rule, i.level) for i in ranked]
    assert order == [
        ("node03", 0, "remap_failure", Level.FAILED),  # 100x: P 0.75
        ("node01", None, "power_brake_node", Level.WARN),  # 2x on 8 GPUs: 0.097
        ("node04", None, "lemon_node", Level.CRITICAL),  # its own rate, ~6x, 1 GPU known
        ("node02", 4, "gpu_hotter_than_peers", Level.WARN),  # 2x on one GPU: 0.014,
        ("node03", 1, "ecc_corrected_rising", Level.WARN),  # a tie, by name
    ]
