"""Prevention end to end on simulated days: the packaged slow drifts are found by the trend
rules within each rule's window, with the remedy that fits them, and a healthy fleet over a
simulated month gives an empty service list.

Hosts run over days in process exactly as `gputui prevent --demo` runs them
(gputui/ops/sim_rollups.py: the real NVML backend over the simulated NVML, the collector's
decoder, the monitor's rollup accumulator); the rollups are judged by the one entry point the
command and the TUI use (gputui/ops/prevention.py).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any

import pytest

from gputui.agent.scenario import WORKLOADS, validate_scenario
from gputui.collect.scenarios import DRIFT_MIX, demo_assignment, load_scenario
from gputui.collect.sim_days import DEFAULT_START_UNIX
from gputui.core.model import Level
from gputui.core.rollup import BUCKET_DAY_S, Rollup
from gputui.core.trends import Finding, Remedy, TrendSettings, find_trends
from gputui.ops.prevention import judge
from gputui.ops.sim_rollups import SEED_STRIDE, host_rollups

DAY = BUCKET_DAY_S
T0 = int(DEFAULT_START_UNIX)  # day 0 of every simulated run: a midnight
DRIFT_DAYS = 14  # two of the rules' weeks: the headroom rule's whole window
SEED = 1


@dataclass(frozen=True)
class Drift:
    """What the rules must say about one packaged drift."""

    scenario: str
    rules: frozenset[str]  # any of these, about the drifting GPU (or the node)
    remedy: Remedy
    node: bool  # the finding is about the whole node, not one GPU
    # The day the drift first crosses the rule's limit, and the rule's window: the finding
    # must come within the window after it.
    crosses_day: float
    window_days: int


S = TrendSettings()
DRIFTS = (
    # 40 corrected errors a day from day 1: over the 10/day limit at once; the rate needs
    # counter_min_days of readings in its window.
    Drift(
        "drift_ecc",
        frozenset({"ecc_corrected_rising"}),
        Remedy.HARDWARE,
        False,
        1,
        S.counter_window_days,
    ),
    Drift(
        "drift_pcie",
        frozenset({"pcie_replay_rising"}),
        Remedy.HARDWARE,
        False,
        1,
        S.counter_window_days,
    ),
    # A remap every other day from day 0, and one left pending through a reset on day 4.
    Drift(
        "drift_remap",
        frozenset({"remap_pending", "remap_rows_accumulating", "remap_bank_limit"}),
        Remedy.HARDWARE,
        False,
        0,
        S.remap_growth_window_days,
    ),
    # 1.5 C a day hotter from day 2: past the 8 C limit over its peers after 5.3 days.
    Drift(
        "drift_fan",
        frozenset({"gpu_hotter_than_peers", "headroom_shrinking"}),
        Remedy.COOLING,
        False,
        2 + S.gpu_hotter_c / 1.5,
        S.thermal_window_days,
    ),
    # 7 C above the group from day 0 (limit 5 C).
    Drift(
        "drift_rack",
        frozenset({"host_hotter_than_group", "headroom_shrinking_node"}),
        Remedy.COOLING,
        True,
        0,
        S.thermal_window_days,
    ),
    # Every GPU of the node braked about twelve times a day from day 0.
    Drift(
        "drift_psu",
        frozenset({"power_brake_node", "hw_slowdown_node"}),
        Remedy.POWER,
        True,
        0,
        S.clock_window_days,
    ),
)


@functools.cache
def drift_fleet() -> tuple[tuple[tuple[str, dict[str, Any]], ...], tuple[Rollup, ...]]:
    """The drift fleet mix (two healthy hosts and one of each drift) over DRIFT_DAYS, as
    daily rollups, once."""
    fleet = tuple(demo_assignment(8, SEED, mix=DRIFT_MIX))
    rollups: list[Rollup] = []
    for i, (name, sc) in enumerate(fleet):
        rollups += host_rollups(name, sc, DRIFT_DAYS, SEED * SEED_STRIDE + i, bucket_s=DAY)
    return fleet, tuple(rollups)


def drifting_gpu(scenario: dict[str, Any]) -> int | None:
    gpus = {g for fault in scenario["fault"] for g in fault.get("gpus", [])}
    return gpus.pop() if len(gpus) == 1 else None


def matches(f: Finding, host: str, gpu: int | None, drift: Drift) -> bool:
    return (
        f.rule in drift.rules
        and f.subject.host == host
        and f.subject.gpu == (None if drift.node else gpu)
    )


def first_day_found(
    rollups: tuple[Rollup, ...], host: str, gpu: int | None, drift: Drift
) -> int | None:
    """The first day at whose end the rules report the drift; None if never in the run."""
    for day in range(1, DRIFT_DAYS + 1):
        found = find_trends(rollups, end=T0 + day * DAY)
        if any(matches(f, host, gpu, drift) for f in found):
            return day
    return None


@pytest.mark.parametrize("drift", DRIFTS, ids=lambda d: d.scenario)
def test_each_drift_is_found_within_its_rules_window_with_its_remedy(drift: Drift) -> None:
    fleet, rollups = drift_fleet()
    ((host, sc),) = [(h, sc) for h, sc in fleet if sc["name"] == drift.scenario]
    gpu = None if drift.node else drifting_gpu(sc)
    assert drift.node or gpu is not None
    day = first_day_found(rollups, host, gpu, drift)
    assert day is not None, f"{drift.scenario} on {host} not found in {DRIFT_DAYS} days"
    assert day <= drift.crosses_day + drift.window_days, (drift.scenario, day)
    # Nothing about it before the drift began: the days before are a healthy host's.
    onset = min(fault["at"] for fault in sc["fault"]) / DAY
    if onset >= 1:
        before = find_trends(rollups, end=T0 + int(onset) * DAY)
        assert not [f for f in before if f.subject.host == host], drift.scenario
    found = [f for f in find_trends(rollups) if matches(f, host, gpu, drift)]
    assert found and {f.remedy for f in found} == {drift.remedy}
    for f in found:
        assert f.level >= Level.WARN and f.advice and f.evidence.text
        assert f.evidence.series, f"{f.rule}: no days to chart"


def test_the_service_list_holds_the_drifts_and_nothing_of_the_healthy_hosts() -> None:
    fleet, rollups = drift_fleet()
    service = judge(rollups).service
    subjects = {(i.subject.host, i.subject.gpu) for i in service.items}
    expected = set()
    for host, sc in fleet:
        drift = next((d for d in DRIFTS if d.scenario == sc["name"]), None)
        if drift is not None:
            expected.add((host, None if drift.node else drifting_gpu(sc)))
    assert subjects == expected
    # Ranked by the failure probability avoided: a node of eight GPUs outranks one GPU at the
    # same level, and benefit never rises down the list.
    benefits = [i.benefit for i in service.items]
    assert benefits == sorted(benefits, reverse=True)
    by_subject = {(i.subject.host, i.subject.gpu): i for i in service.items}
    for host, sc in fleet:
        if sc["name"] == "drift_psu":
            assert Remedy.POWER in by_subject[(host, None)].remedies


# -- a healthy fleet finds nothing ------------------------------------------------------------

MONTH_DAYS = 30
HEALTHY_HOSTS = 20  # each its own seed
# Sampled every 10 minutes (the slow fields hourly), the simulation stepped as often: a month
# of twenty hosts costs about what a day at one sample a minute would.
MONTH_INTERVAL_S = 600.0
MONTH_SLOW_EVERY = 6
# The default asks 30 samples under load (30 minutes at one sample a minute) for a day to count
# in the thermal rules; at one sample in ten minutes the same half hour is three samples.
MONTH_SETTINGS = TrendSettings(load_min_samples=3)


def healthy_host(i: int) -> tuple[str, dict[str, Any]]:
    """Host `i` of the healthy fleet: H100s, the workloads in turn."""
    sc = copy.deepcopy(load_scenario("healthy"))
    sc["workload"] = WORKLOADS[i % len(WORKLOADS)]
    return f"ok-{i:02d}", validate_scenario(sc)


@pytest.mark.slow
def test_a_healthy_fleet_over_a_month_has_nothing_to_service() -> None:
    """Twenty healthy hosts, each its own seed, every workload, a month: every rule runs over
    every GPU (the host comparison within each workload's hosts, peers at the same power),
    and nothing is raised."""
    rollups: list[Rollup] = []
    groups: dict[str, str] = {}
    for i in range(HEALTHY_HOSTS):
        name, sc = healthy_host(i)
        groups[name] = sc["workload"]
        rollups += host_rollups(
            name,
            sc,
            MONTH_DAYS,
            seed=1_000 + i,
            interval_s=MONTH_INTERVAL_S,
            slow_every=MONTH_SLOW_EVERY,
            step_s=MONTH_INTERVAL_S,
            bucket_s=DAY,
        )
    trends = judge(rollups, settings=MONTH_SETTINGS, groups=groups)
    assert trends.gpus == HEALTHY_HOSTS * 8 and trends.days == MONTH_DAYS
    assert [(i.subject, [f.rule for f in i.findings]) for i in trends.service.items] == []
    # The thermal rules had days to judge: training and inference GPUs under load every day.
    busy = [r for r in rollups if r.load_n >= MONTH_SETTINGS.load_min_samples]
    assert {r.host for r in busy} == {n for n, w in groups.items() if w != "idle"}
    # Every day of the month is judged at every day's end too, not only at its last.
    for day in (7, 14, 21):
        assert (
            judge(rollups, settings=MONTH_SETTINGS, groups=groups, end=T0 + day * DAY).service.items
            == ()
        )
