"""Trend rules on clocks held down by hardware (power brake, HW slowdown, HW thermal), the PCIe
link, a node's GPUs sharing one finding, and lemon nodes."""

from __future__ import annotations

from typing import Any

import pytest

from gputui.core.model import Level
from gputui.core.risk import NodeRecord, RiskSettings
from gputui.core.trends import Finding, Remedy, TrendSettings, find_trends
from tests.trend_days import gpu_day, host, series

WEEK = range(7)


def rules(findings: list[Finding]) -> list[tuple[str, int | None]]:
    return [(f.rule, f.subject.gpu) for f in findings]


def figure(f: Finding, name: str) -> float:
    return next(x.value for x in f.evidence.figures if x.name == name)


def test_power_brake_on_several_days_is_the_power_delivery() -> None:
    days = series(WEEK, brake_s=lambda d: 20.0 if d in (1, 4, 6) else 0.0)
    (f,) = find_trends(days)
    assert f.rule == "power_brake_recurring"
    assert f.remedy is Remedy.POWER
    assert "power supplies" in f.advice
    assert f.level is Level.WARN
    assert figure(f, "days") == 3
    assert figure(f, "seconds") == 60
    assert "3 of the last 7 days" in f.evidence.text
    assert [p.value for p in f.evidence.series] == [0, 20, 0, 0, 20, 0, 20]


def test_power_brake_most_days_is_critical_and_once_is_nothing() -> None:
    (f,) = find_trends(series(WEEK, brake_s=lambda d: 5.0 * (d % 2 == 0)))
    assert f.level is Level.CRITICAL
    assert find_trends(series(WEEK, brake_s=lambda d: 300.0 * (d == 3))) == []
    # a blip under the day's minimum does not count
    assert find_trends(series(WEEK, brake_s=0.5)) == []


def test_hw_slowdown_alone_is_power_and_with_hw_thermal_is_cooling() -> None:
    (f,) = find_trends(series(WEEK, hw_slowdown_s=lambda d: 30.0 * (d > 3)))
    assert (f.rule, f.remedy) == ("hw_slowdown_recurring", Remedy.POWER)
    # the same slowdown explained by the thermal sub-reason is heat, not power
    (f,) = find_trends(series(WEEK, hw_thermal_s=lambda d: 30.0 * (d > 3)))
    assert (f.rule, f.remedy) == ("hw_thermal_recurring", Remedy.COOLING)


def test_brake_days_outside_the_window_are_not_counted() -> None:
    days = series(range(14), brake_s=lambda d: 20.0 * (d < 7))
    assert find_trends(days) == []


def test_a_psu_braking_every_gpu_is_one_node_finding() -> None:
    fleet = host(WEEK, brake_s=lambda g, d: 10.0 * (d in (2, 5)))
    (f,) = find_trends(fleet)
    assert (f.rule, f.subject.host, f.subject.gpu, f.gpus) == (
        "power_brake_node",
        "node01",
        None,
        8,
    )
    assert f.remedy is Remedy.POWER
    assert "8 of 8 GPUs" in f.evidence.text
    assert figure(f, "gpus_affected") == 8
    assert [p.value for p in f.evidence.series] == [0, 0, 10, 0, 0, 10, 0]


def test_a_minority_of_braking_gpus_stay_gpu_findings() -> None:
    fleet = host(WEEK, brake_s=lambda g, d: 10.0 * (g < 3 and d in (2, 5)))
    assert rules(find_trends(fleet)) == [("power_brake_recurring", g) for g in range(3)]
    fleet = host(WEEK, brake_s=lambda g, d: 10.0 * (g < 4 and d in (2, 5)))
    assert rules(find_trends(fleet)) == [("power_brake_node", None)]


def test_a_link_below_its_width_on_days_is_hardware() -> None:
    days = series(WEEK, link_n=20, link_down_n=lambda d: 20 * (d >= 5))
    (f,) = find_trends(days)
    assert (f.rule, f.remedy) == ("pcie_link_degraded", Remedy.HARDWARE)
    # a few readings of a day below maximum (a link retraining once) do not count
    assert find_trends(series(WEEK, link_n=20, link_down_n=3)) == []


# -- lemon nodes -----------------------------------------------------------------------------


def fleet_record(bad_failures: int) -> list[NodeRecord]:
    nodes = [
        NodeRecord(name=f"node{i:02}", failures=i % 2, exposure_gpu_hours=8 * 720.0)
        for i in range(20)
    ]
    nodes.append(NodeRecord(name="node99", failures=bad_failures, exposure_gpu_hours=8 * 720.0))
    return nodes


def test_a_node_failing_far_more_than_the_fleet_is_a_lemon() -> None:
    (f,) = find_trends([], nodes=fleet_record(6))
    assert (f.rule, f.subject.host, f.subject.gpu) == ("lemon_node", "node99", None)
    assert f.remedy is Remedy.HARDWARE
    assert f.level is Level.CRITICAL
    assert f.hazard is not None and f.hazard > 3
    assert figure(f, "failures") == 6
    assert figure(f, "p_record") < 1e-3


def test_an_ordinary_record_is_no_lemon() -> None:
    assert find_trends([], nodes=fleet_record(1)) == []


def test_one_failure_is_never_a_lemon_however_unlikely() -> None:
    nodes = [NodeRecord(name="new", failures=1, exposure_gpu_hours=1.0)]
    assert find_trends([], nodes=nodes) == []
    s = TrendSettings(lemon_min_failures=1)
    assert [f.rule for f in find_trends([], s, nodes=nodes)] == ["lemon_node"]


def test_a_lemon_counts_its_gpus_from_its_rollups() -> None:
    days = host(WEEK, name="node99")
    (f,) = find_trends(days, nodes=fleet_record(6))
    assert f.gpus == 8


def test_the_lemon_rule_judges_against_the_sites_prior() -> None:
    # a site whose GPUs fail fifty times as often as the default prior: six failures in a
    # month of 8 GPUs are what it expects (5.8)
    risk = RiskSettings(prior_mean_per_gpu_hour=1e-3, prior_strength_failures=1e6)
    assert find_trends([], nodes=fleet_record(6), risk=risk) == []


@pytest.mark.parametrize("rule", ["power_brake_recurring", "hw_thermal_recurring"])
def test_findings_are_about_the_current_gpu(rule: str) -> None:
    """A GPU replaced mid-week: the old one's days do not put the slot on the list."""
    held: dict[str, Any] = {"brake_s" if rule == "power_brake_recurring" else "hw_thermal_s": 30.0}
    old = [gpu_day(d, uuid="GPU-old", **held) for d in range(5)]
    new = [gpu_day(d, uuid="GPU-new") for d in range(4, 7)]
    assert find_trends(old + new) == []
    assert rules(find_trends(old)) == [(rule, 0)]
