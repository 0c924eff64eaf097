"""Trend rules on temperature: a GPU hotter than its host's others, a host hotter than its
group, at the same power; headroom under load shrinking over days at steady power."""

from __future__ import annotations

import statistics
from collections.abc import Callable

import pytest

from gputui.core.model import Level
from gputui.core.trends import Finding, Remedy, TrendSettings, find_trends
from tests.trend_days import base_power_pct, base_temp, gpu_day, host, recorded_samples, series

S = TrendSettings()
WEEK = range(7)


def rules(findings: list[Finding]) -> list[tuple[str, str, int | None]]:
    return [(f.rule, f.subject.host, f.subject.gpu) for f in findings]


def figure(f: Finding, name: str) -> float:
    return next(x.value for x in f.evidence.figures if x.name == name)


def test_the_default_slope_is_the_recorded_h200s() -> None:
    """temp_per_power_pct_c: idle and load of the recording, as C per point of the limit."""
    hello, samples = recorded_samples()
    limit = hello.gpus[0].power_limit_w
    assert limit is not None
    idle, load = [], []
    for s in samples:
        r = s.gpus[0]
        if r.util_pct is None or r.temp_c is None or r.power_w is None:
            continue
        if r.util_pct == 0 and r.power_w < 100:
            idle.append((r.temp_c, r.power_w))
        elif r.util_pct == 100:
            load.append((r.temp_c, r.power_w))
    dt = statistics.fmean(t for t, _ in load) - statistics.fmean(t for t, _ in idle)
    dp = 100 * (statistics.fmean(p for _, p in load) - statistics.fmean(p for _, p in idle))
    assert dt / (dp / limit) == pytest.approx(S.temp_per_power_pct_c, rel=0.1)


# -- a GPU hotter than its peers -----------------------------------------------------------


def test_a_gpu_running_hot_at_the_same_power_is_found_on_its_own() -> None:
    t = base_temp()
    fleet = host(WEEK, temp_c=lambda g, d: t + (10 if g == 3 else (g % 3) - 1))
    (f,) = find_trends(fleet)
    assert (f.rule, f.subject.gpu) == ("gpu_hotter_than_peers", 3)
    assert f.level is Level.WARN
    assert f.remedy is Remedy.COOLING
    assert "fans" in f.advice
    assert figure(f, "excess") == pytest.approx(10, abs=1)
    assert len(f.evidence.series) == 7


def test_much_hotter_is_critical() -> None:
    t = base_temp()
    (f,) = find_trends(host(WEEK, temp_c=lambda g, d: t + (14 if g == 0 else 0)))
    assert f.level is Level.CRITICAL


def test_hotter_because_it_draws_more_power_is_not_a_cooling_fault() -> None:
    t, p = base_temp(), base_power_pct()
    # GPU 0 draws 14 points more and is as much hotter as that power makes a GPU
    fleet = host(
        WEEK,
        power_pct=lambda g, d: p if g == 0 else p - 14,
        temp_c=lambda g, d: t if g == 0 else t - 14 * S.temp_per_power_pct_c,
    )
    assert find_trends(fleet) == []
    # the same temperatures at the same power are 3.6 C apart: still under the limit; 9 C
    # apart at the same power is not
    hot = host(WEEK, temp_c=lambda g, d: t + (9 if g == 0 else 0))
    assert rules(find_trends(hot)) == [("gpu_hotter_than_peers", "node01", 0)]


def test_peers_at_another_power_are_no_yardstick() -> None:
    t, p = base_temp(), base_power_pct()
    # GPU 0 alone at full power, the others idle-ish 40 points lower: nobody to compare with
    fleet = host(
        WEEK,
        power_pct=lambda g, d: p if g == 0 else p - 40,
        temp_c=lambda g, d: t + 10 if g == 0 else t - 10,
    )
    assert find_trends(fleet) == []


def test_too_few_peers_or_days_are_no_judgement() -> None:
    t = base_temp()
    assert find_trends(host(WEEK, gpus=3, temp_c=lambda g, d: t + 15 * (g == 0))) == []
    assert find_trends(host(range(2), temp_c=lambda g, d: t + 15 * (g == 0))) == []
    # days without enough load are not judged
    few = host(WEEK, temp_c=lambda g, d: t + 15 * (g == 0), load_n=lambda g, d: 5)
    assert find_trends(few) == []


def test_one_hot_day_is_not_a_trend() -> None:
    t = base_temp()
    assert find_trends(host(WEEK, temp_c=lambda g, d: t + 15 * (g == 0 and d == 6))) == []


# -- a host hotter than its group ----------------------------------------------------------


def warmer(temp_c: float, by_slot: float = 0) -> Callable[[int, int], float]:
    """A host's GPUs at `temp_c`, odd slots `by_slot` warmer."""
    return lambda g, d: temp_c + by_slot * (g % 2)


def test_a_host_whose_gpus_all_run_hot_is_a_node_finding() -> None:
    t = base_temp()
    fleet = []
    for i in range(5):
        fleet += host(WEEK, name=f"node{i:02}", temp_c=warmer(t + 7 * (i == 2), by_slot=1))
    (f,) = find_trends(fleet)
    assert (f.rule, f.subject.host, f.subject.gpu) == ("host_hotter_than_group", "node02", None)
    assert f.gpus == 8
    assert f.remedy is Remedy.COOLING
    assert "rack" in f.advice
    assert figure(f, "excess") == pytest.approx(7, abs=0.5)


def test_hosts_are_compared_within_their_group() -> None:
    t = base_temp()
    fleet, groups = [], {}
    for i in range(8):
        name = f"node{i:02}"
        warm = 8 if i >= 4 else 0  # a warm room: all of group b
        groups[name] = "a" if i < 4 else "b"
        fleet += host(WEEK, name=name, temp_c=warmer(t + warm))
    assert find_trends(fleet, groups=groups) == []
    # as one group, the warm half runs 8 C above the cool half
    assert rules(find_trends(fleet)) == [
        ("host_hotter_than_group", f"node{i:02}", None) for i in range(4, 8)
    ]


# -- headroom shrinking -------------------------------------------------------------------


def test_headroom_shrinking_at_steady_power_is_found_with_a_projection() -> None:
    t = base_temp()
    days = series(range(14), temp_c=lambda d: t + 0.6 * d)
    f = next(f for f in find_trends(days) if f.rule == "headroom_shrinking")
    assert f.remedy is Remedy.COOLING
    assert figure(f, "slope") == pytest.approx(-0.6)
    headroom = 89 - (t + 0.6 * 13)
    assert figure(f, "headroom") == pytest.approx(headroom)
    assert figure(f, "days_to_limit") == pytest.approx(headroom / 0.6)
    assert f.level is Level.WARN  # about 31 days left
    assert [p.value for p in f.evidence.series] == pytest.approx(
        [89 - (t + 0.6 * d) for d in range(14)]
    )


def test_headroom_near_the_limit_is_critical() -> None:
    days = series(range(14), temp_c=lambda d: 70 + 1.0 * d)  # 6 C left, 1 C/day
    f = next(f for f in find_trends(days) if f.rule == "headroom_shrinking")
    assert f.level is Level.CRITICAL


def test_hotter_days_at_higher_power_are_not_lost_headroom() -> None:
    t, p = base_temp(), base_power_pct()
    # power climbs 8 points over two weeks, temperature with it: the cooler is fine
    days = series(
        range(14),
        power_pct=lambda d: p - 8 + 8 * d / 13,
        temp_c=lambda d: t - S.temp_per_power_pct_c * 8 * (1 - d / 13),
    )
    assert find_trends(days) == []


def test_days_at_another_power_are_left_out() -> None:
    t, p = base_temp(), base_power_pct()
    # the last 4 days run a light workload (50 points lower, cooler): not a trend either way
    days = series(range(14), power_pct=lambda d: p - 50 * (d >= 10), temp_c=lambda d: t)
    assert find_trends(days) == []


def test_a_small_loss_is_not_found() -> None:
    t = base_temp()
    assert find_trends(series(range(14), temp_c=lambda d: t + 0.2 * d)) == []  # 2 C in 2 weeks


def test_every_gpu_of_a_node_losing_headroom_is_the_nodes_air() -> None:
    t = base_temp()
    fleet = host(range(14), temp_c=lambda g, d: t + 0.6 * d + g % 2)
    (f,) = find_trends(fleet)
    assert (f.rule, f.subject.gpu, f.gpus) == ("headroom_shrinking_node", None, 8)
    assert "8 of 8 GPUs" in f.evidence.text
    assert len(f.evidence.series) == 14


def test_noisy_steady_headroom_is_not_found() -> None:
    t = base_temp()
    noise = [1.0, -1.0, 0.5, -0.5, 1.0, 1.0, -1.0, 0.0, -1.0, 1.0, -1.0, -1.0, 0.5, -1.0]
    assert find_trends(series(range(14), temp_c=lambda d: t + noise[d])) == []
    # the same noise on a real 0.6 C/day drift is found
    drift = series(range(14), temp_c=lambda d: t + noise[d] + 0.6 * d)
    assert [f.rule for f in find_trends(drift)] == ["headroom_shrinking"]


def test_gpu_day_reads_as_the_recording() -> None:
    """The builder keeps what the rules derive: slowdown limit, power share, headroom."""
    from gputui.core.trends.days import load_headroom_c, load_power_pct, slowdown_c

    d = gpu_day(0)
    assert slowdown_c(d) == pytest.approx(89)
    assert load_power_pct(d, S.load_min_samples) == pytest.approx(base_power_pct())
    assert load_headroom_c(d, S.load_min_samples) == pytest.approx(89 - base_temp())
