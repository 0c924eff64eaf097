"""Slow drifts and fast-forward in the simulator: each drift moves its signal at its rate per
simulated day, the held-clock counters move only while their reason's bit is set, and days of
a host run in seconds, in process (gputui/collect/sim_days.py) or live at a scenario's `speed`.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import subprocess
import sys
from typing import Any

import pytest

from gputui.agent.fields import HELD_BITS
from gputui.agent.scenario import validate_scenario
from gputui.agent.simulation import (
    DAY_S,
    HW_POWER_BRAKE,
    SW_POWER_CAP,
    Simulation,
    kernel_log_at,
)
from gputui.collect.scenarios import demo_assignment, load_scenario
from gputui.collect.sim_days import DEFAULT_START_UNIX, simulate_days
from gputui.core.model import Event, Hello, Sample
from tests.agent_sim import FakeClock

STEP_S = 60.0  # the coarse step of a fast-forwarded run


def sim(
    *faults: dict[str, Any],
    seed: int = 0,
    workload: str = "training",
    model: str = "H100-SXM",
    step_s: float = STEP_S,
) -> tuple[Simulation, FakeClock]:
    sc = {"name": "drift", "model": model, "workload": workload, "fault": list(faults)}
    clock = FakeClock()
    return Simulation(sc, seed=seed, clock=clock, step_s=step_s), clock


def at_day(s: Simulation, clock: FakeClock, day: float) -> None:
    clock.t = day * DAY_S
    s.advance()


def poisson_bounds(mean: float, sigmas: float = 5.0) -> tuple[float, float]:
    return mean - sigmas * math.sqrt(mean), mean + sigmas * math.sqrt(mean)


# -- counters move only while their bit is set ---------------------------------------------------


def test_held_counters_move_exactly_while_their_bits_are_set() -> None:
    """Step by step, through the power cap of training, a runaway past max operating and
    slowdown, a recurring and a continuous power brake: each counter grows by the step
    exactly when its bit is set at the step's end, and not otherwise."""
    s, clock = sim(
        {"kind": "thermal_runaway", "gpus": [2], "at": 40.0, "rise_c": 45.0},
        {"kind": "psu_brake", "gpus": [0, 1], "at": 0.0, "per_day": 86_400 / 20, "seconds": 3},
        {"kind": "power_brake", "gpus": [4], "at": 100.0, "duration": 30.0},
        step_s=0.25,
    )
    seen = dict.fromkeys(HELD_BITS, False)
    for step in range(1, 1201):
        before = [dict(g.held_ns) for g in s.gpus]
        clock.t = step * 0.25
        s.advance()
        for g, was in zip(s.gpus, before, strict=True):
            for name, bit in HELD_BITS.items():
                grew = g.held_ns[name] - was[name]
                assert grew == (250_000_000 if g.clock_events & bit else 0), (step, name)
                seen[name] |= grew > 0
    # Every reason the simulator models was exercised (no sync boost groups: none).
    assert seen == {**dict.fromkeys(HELD_BITS, True), "held_sync_boost_us": False}


def test_training_at_its_power_cap_accrues_power_cap_time_an_idle_gpu_none() -> None:
    """As on the recorded H200: a full load at the power cap holds the SW power cap bit."""
    s, clock = sim(step_s=0.25)
    capped = 0
    for step in range(1, 281):  # 70 s
        clock.t = step * 0.25
        s.advance()
        capped += bool(s.gpus[0].clock_events & SW_POWER_CAP)
    assert capped > 0
    assert s.gpus[0].held_ns["held_sw_power_cap_us"] == capped * 250_000_000
    idle, clock = sim(workload="idle", step_s=0.25)
    at_day(idle, clock, 0.01)
    assert all(v == 0 for g in idle.gpus for v in g.held_ns.values())


# -- each drift at its rate per simulated day ----------------------------------------------------


def test_ecc_creep_adds_corrected_errors_at_its_daily_rate_on_its_gpu_only() -> None:
    s, clock = sim({"kind": "ecc_creep", "gpus": [2], "at": DAY_S, "per_day": 200.0})
    at_day(s, clock, 1.0)
    start = s.gpus[2].ecc_sbe_volatile
    at_day(s, clock, 11.0)
    lo, hi = poisson_bounds(2000.0)
    assert lo <= s.gpus[2].ecc_sbe_volatile - start <= hi
    assert all(g.ecc_sbe_volatile == 0 for g in s.gpus if g.index != 2)
    assert all(g.ecc_dbe_volatile == 0 for g in s.gpus)


def test_ecc_creep_doubles_every_doubling_period() -> None:
    creep = {"kind": "ecc_creep", "gpus": [0], "at": 0.0, "per_day": 100.0, "doubling_days": 7}
    s, clock = sim(creep, step_s=300.0)
    counts = []
    for week in (1, 2, 3):
        before = s.gpus[0].ecc_sbe_aggregate
        at_day(s, clock, 7.0 * week)
        counts.append(s.gpus[0].ecc_sbe_aggregate - before)
    # 100/day doubling weekly: 7 x 100 / ln 2 per week x (1, 2, 4).
    for week, n in enumerate(counts):
        lo, hi = poisson_bounds(700.0 / math.log(2) * 2**week)
        assert lo <= n <= hi, (week, counts)


def test_pcie_replays_creep_at_their_daily_rate() -> None:
    s, clock = sim({"kind": "pcie_replay_creep", "gpus": [6], "at": 0.0, "per_day": 300.0})
    start = [g.pcie_replay for g in s.gpus]
    at_day(s, clock, 5.0)
    lo, hi = poisson_bounds(1500.0)
    assert lo <= s.gpus[6].pcie_replay - start[6] <= hi
    assert [g.pcie_replay for g in s.gpus if g.index != 6] == start[:6] + start[7:]
    assert s.gpus[6].pcie_gen == 5 and s.gpus[6].pcie_width == 16  # the link itself holds


def test_remaps_accumulate_with_an_xid_63_each() -> None:
    s, clock = sim({"kind": "remap_creep", "gpus": [1], "at": 0.0, "per_day": 2.0}, step_s=300.0)
    start = s.gpus[1].remap_corrected
    at_day(s, clock, 20.0)
    added = s.gpus[1].remap_corrected - start
    lo, hi = poisson_bounds(40.0)
    assert lo <= added <= hi
    xids = [e for e in s.events if e.data == 63]
    assert len(xids) == added and {e.gpu for e in xids} == {1}
    assert s.gpus[1].remap_pending and s.gpus[1].remap_uncorrected == 0
    assert not s.gpus[1].remap_failure


@pytest.mark.parametrize("stuck", [True, False])
def test_a_reset_applies_pending_remaps_unless_they_are_stuck(stuck: bool) -> None:
    s, clock = sim(
        {"kind": "remap_creep", "gpus": [1], "at": 0.0, "per_day": 4.0, "stuck_pending": stuck},
        # An XID 63 on day 3, and the GPU reset ten minutes later that applies pending remaps.
        {"kind": "row_remap_pending", "gpus": [1], "at": 3 * DAY_S, "duration": 600.0},
    )
    at_day(s, clock, 3.0 + 300 / DAY_S)
    assert s.gpus[1].remap_pending
    at_day(s, clock, 3.0 + 660 / DAY_S)
    assert "reset" in s.kernel_log()[-1]
    assert s.gpus[1].remap_pending is stuck


def test_a_pre_ampere_board_retires_pages_instead() -> None:
    creep = {"kind": "remap_creep", "gpus": [0], "at": 0.0, "per_day": 3.0}
    s, clock = sim(creep, model="V100-SXM2", step_s=300.0)
    at_day(s, clock, 5.0)
    assert len(s.gpus[0].retired_sbe) > 0 and s.gpus[0].retired_pending


def load_temperatures(s: Simulation, clock: FakeClock, day: float) -> list[tuple[float, float]]:
    """Per GPU, (temperature, power) averaged over the busy steps of two hours from `day`."""
    sums = [[0.0, 0.0, 0] for _ in s.gpus]
    for step in range(round(7200 / s.step_s)):
        clock.t = day * DAY_S + step * s.step_s
        s.advance()
        for g, acc in zip(s.gpus, sums, strict=True):
            if g.util > 0.9:
                acc[0] += g.temp_c
                acc[1] += g.power_w
                acc[2] += 1
    return [(t / n, p / n) for t, p, n in sums]


def test_a_failing_fan_heats_its_gpu_by_its_daily_rate_at_the_same_power() -> None:
    s, clock = sim({"kind": "cooling_decay", "gpus": [5], "at": DAY_S, "c_per_day": 1.5})
    before = load_temperatures(s, clock, 0.5)
    later = load_temperatures(s, clock, 7.5)
    peers = [i for i in range(8) if i != 5]
    gap_before = before[5][0] - statistics.mean(before[i][0] for i in peers)
    gap_later = later[5][0] - statistics.mean(later[i][0] for i in peers)
    assert gap_later - gap_before == pytest.approx(1.5 * 6.5, abs=0.6)
    # At the same power as its peers, and as itself a week before.
    assert later[5][1] == pytest.approx(statistics.mean(later[i][1] for i in peers), rel=0.02)
    assert later[5][1] == pytest.approx(before[5][1], rel=0.02)


def test_a_hot_rack_heats_every_gpu_of_the_host() -> None:
    rack = {"kind": "cooling_decay", "at": 0.0, "offset_c": 7.0, "c_per_day": 0.3}
    cool, cool_clock = sim(seed=4, step_s=300.0)
    hot, hot_clock = sim(rack, seed=4, step_s=300.0)
    assert validate_scenario(hot.scenario)["fault"][0]["gpus"] == list(range(8))
    for day, rise in ((1.0, 7.3), (10.0, 10.0)):
        a = load_temperatures(cool, cool_clock, day)
        b = load_temperatures(hot, hot_clock, day)
        for (ta, pa), (tb, pb) in zip(a, b, strict=True):
            assert tb - ta == pytest.approx(rise, abs=0.5)
            assert pb == pytest.approx(pa, rel=0.02)


def test_a_braking_psu_holds_every_gpu_for_its_events_each_day() -> None:
    """48 assertions a day of 30 s each, in steps of a minute: each covers its step's instant
    half the time, so a step is braked with the share of time the brakes take."""
    s, clock = sim({"kind": "psu_brake", "at": 0.0, "per_day": 48.0, "seconds": 30.0})
    braked_steps = 0
    for step in range(1, int(10 * DAY_S / STEP_S) + 1):
        clock.t = step * STEP_S
        s.advance()
        braked_steps += bool(s.gpus[0].clock_events & HW_POWER_BRAKE)
        assert len({bool(g.clock_events & HW_POWER_BRAKE) for g in s.gpus}) == 1  # all at once
    held_s = [g.held_ns["held_hw_power_brake_us"] / 1e9 for g in s.gpus]
    assert len(set(held_s)) == 1 and held_s[0] == braked_steps * STEP_S
    # 480 assertions of 30 s over ten days: 14,400 s, 240 steps of a minute, expected.
    lo, hi = poisson_bounds(240.0, sigmas=4.0)
    assert lo <= braked_steps <= hi
    assert s.gpus[0].held_ns["held_hw_thermal_us"] == 0


def test_a_braking_psu_at_a_fine_step_brakes_for_seconds_at_a_time() -> None:
    s, clock = sim({"kind": "psu_brake", "at": 0.0, "per_day": 2000.0, "seconds": 4.0}, step_s=0.25)
    runs, run = [], 0
    for step in range(1, int(3600 / 0.25) + 1):
        clock.t = step * 0.25
        s.advance()
        if s.gpus[3].clock_events & HW_POWER_BRAKE:
            run += 1
            assert s.gpus[3].sm_mhz < 500  # at its slowest clocks meanwhile
        elif run:
            runs.append(run * 0.25)
            run = 0
    assert 40 <= len(runs) <= 130  # about 83 an hour, some overlapping
    assert statistics.median(runs) == pytest.approx(4.0, abs=0.5)


# -- the packaged drifts over two weeks ----------------------------------------------------------

# (scenario, the GPU that drifts or None for the whole host, what moves on it)
PACKAGED = [
    ("drift_ecc", 3, "ecc"),
    ("drift_pcie", 6, "replay"),
    ("drift_remap", 1, "remap"),
    ("drift_fan", 5, "temp"),
    ("drift_rack", None, "temp"),
    ("drift_psu", None, "brake"),
]


def signals(s: Simulation) -> list[dict[str, float]]:
    return [
        {
            "ecc": g.ecc_sbe_aggregate,
            "replay": g.pcie_replay,
            "remap": g.remap_corrected,
            "brake": g.held_ns["held_hw_power_brake_us"],
            "temp": g.temp_c - g.inlet_c - g.model.c_per_w * g.power_w,  # above its own normal
        }
        for g in s.gpus
    ]


@pytest.mark.parametrize(("name", "gpu", "signal"), PACKAGED)
def test_each_packaged_drift_moves_its_signal_over_two_weeks(
    name: str, gpu: int | None, signal: str
) -> None:
    sc = load_scenario(name)
    assert sc["fault"] and sc["workload"] == "training"
    s = Simulation(sc, seed=3, clock=(clock := FakeClock()), step_s=300.0)
    start = signals(s)
    at_day(s, clock, 14.0)
    end = signals(s)
    moved = [
        e[signal] - b[signal] > (2.0 if signal == "temp" else 0)
        for b, e in zip(start, end, strict=True)
    ]
    assert moved == [gpu is None or i == gpu for i in range(8)], moved
    for other in {"ecc", "replay", "remap", "brake", "temp"} - {signal}:
        if other == "remap" and name == "drift_remap":
            continue
        assert all(abs(e[other] - b[other]) <= 1.0 for b, e in zip(start, end, strict=True)), other


def test_the_drift_fleet_has_one_host_of_each_drift_and_healthy_peers() -> None:
    fleet = demo_assignment(8, seed=1, mix="drift")
    names = sorted(sc["name"] for _, sc in fleet)
    assert names == sorted(["healthy", "healthy", *(p[0] for p in PACKAGED)])
    assert {(sc["model"], sc["workload"]) for _, sc in fleet} == {("H100-SXM", "training")}


# -- days in seconds, in process -----------------------------------------------------------------


def test_simulate_days_streams_typed_messages_in_simulated_time() -> None:
    sc = load_scenario("drift_remap")
    sc["fault"][0]["per_day"] = 3.0
    msgs = list(simulate_days(sc, 2.0, seed=2, host="sim-004"))
    hello, *rest = msgs
    assert isinstance(hello, Hello) and hello.host == "sim-004" and hello.slow_every == 5
    samples = [m for m in rest if isinstance(m, Sample)]
    events = [m for m in rest if isinstance(m, Event)]
    assert len(samples) == 2 * 24 * 60 + 1
    assert [s.t - DEFAULT_START_UNIX for s in samples[:3]] == [0.0, 60.0, 120.0]
    assert samples[-1].t - samples[0].t == 2 * DAY_S
    slow = [s for s in samples if s.slow]
    assert len(slow) == len(samples[::5])
    # Counters never go back, and the remaps each came with an XID 63 before the sample.
    remaps = [s.gpus[1].remap_corrected or 0 for s in slow]
    assert all(s.gpus[1].remap_corrected is not None for s in slow)
    assert remaps == sorted(remaps) and remaps[-1] > remaps[0]
    assert [e.xid for e in events] == [63] * len(events) and {e.gpu for e in events} == {1}
    assert len(events) == remaps[-1] - remaps[0]
    power_cap = [s.gpus[0].held_sw_power_cap_us or 0 for s in slow]
    assert all(s.gpus[0].held_sw_power_cap_us is not None for s in slow)
    assert power_cap == sorted(power_cap) and power_cap[-1] > 0.5 * 2 * DAY_S * 1e6


def test_simulate_days_is_deterministic_for_its_seed() -> None:
    sc = load_scenario("drift_psu")
    a = [m for m in simulate_days(sc, 0.5, seed=7, interval_s=300, slow_every=1)]
    b = [m for m in simulate_days(sc, 0.5, seed=7, interval_s=300, slow_every=1)]
    c = [m for m in simulate_days(sc, 0.5, seed=8, interval_s=300, slow_every=1)]
    assert a == b and a != c


def test_simulate_days_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        next(simulate_days({"name": "x"}, 0))


# -- days in seconds, live: the scenario's speed -------------------------------------------------


def test_speed_runs_the_real_clock_faster_with_longer_steps() -> None:
    fast = Simulation({"name": "fast", "speed": 1440}, seed=0)
    assert fast.step_s == 60.0  # a quarter second times 1440 is past the longest step
    assert Simulation({"name": "fast", "speed": 8}, seed=0).step_s == 2.0
    assert Simulation({"name": "live"}, seed=0).step_s == 0.25
    with pytest.raises(ValueError, match="speed: expected a number >= 1"):
        validate_scenario({"speed": 0.5})
    xid = {"kind": "xid", "xid": 31, "gpus": [0], "at": 3600.0}
    log = kernel_log_at({"name": "fast", "speed": 1440, "fault": [xid]}, 0, 3.0)
    assert any(": 31," in line for line in log)  # 3 real seconds are 72 simulated minutes


def test_the_agent_at_speed_stamps_its_samples_in_simulated_time() -> None:
    """A day a minute: one sample a real tenth of a second, 144 simulated seconds apart."""
    scenario = json.dumps({"name": "fast", "gpus": 2, "speed": 1440})
    done = subprocess.run(
        [
            *(sys.executable, "-m", "gputui.agent", "--backend", "sim"),
            *("--scenario-json", scenario, "--interval", "0.1", "--duration", "1.0"),
            *("--stdin-watch", "off"),
        ],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    msgs = [json.loads(line) for line in done.stdout.splitlines()]
    hello, samples = msgs[0], [m for m in msgs if m["type"] == "sample"]
    assert len(samples) >= 5
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(samples)]
    assert statistics.median(gaps) == pytest.approx(144.0, rel=0.25)
    assert samples[0]["t"] - hello["sim_start"] < 1440.0  # within a real second of its start


# -- coarse steps keep the workloads' character --------------------------------------------------


def test_inference_at_a_coarse_step_is_as_busy_as_at_a_fine_one() -> None:
    fine, fine_clock = sim(workload="inference", step_s=0.25)
    coarse, coarse_clock = sim(workload="inference", step_s=STEP_S)
    utils_fine, utils_coarse = [], []
    for step in range(1, 4 * 3600 + 1):  # an hour
        fine_clock.t = step * 0.25
        fine.advance()
        utils_fine.append(statistics.mean(g.util for g in fine.gpus))
    for step in range(1, 24 * 60 + 1):  # a day
        coarse_clock.t = step * STEP_S
        coarse.advance()
        utils_coarse.append(statistics.mean(g.util for g in coarse.gpus))
    assert statistics.mean(utils_coarse) == pytest.approx(statistics.mean(utils_fine), abs=0.06)
    assert max(utils_coarse) > 0.5 > min(utils_coarse)  # bursts still come and go


# -- a healthy host drifts nowhere ---------------------------------------------------------------


def flat_month(model: str, workload: str, seed: int) -> None:
    s, clock = sim(seed=seed, workload=workload, model=model, step_s=600.0)
    start = signals(s)
    temps = []
    for day in range(1, 31):
        at_day(s, clock, float(day))
        temps.append([e["temp"] for e in signals(s)])
    end = signals(s)
    for b, e in zip(start, end, strict=True):
        assert (e["ecc"], e["replay"], e["remap"], e["brake"]) == (
            b["ecc"],
            b["replay"],
            b["remap"],
            b["brake"],
        )
    # No temperature trend: the die sits within noise of its own normal all month.
    assert all(abs(t) < 1.0 for day in temps for t in day)
    assert not s.events
    assert all(g.held_ns["held_hw_thermal_us"] == 0 for g in s.gpus)


@pytest.mark.parametrize("workload", ["training", "inference", "idle"])
def test_a_healthy_host_drifts_nowhere_in_a_month(workload: str) -> None:
    flat_month("H100-SXM", workload, seed=11)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["H100-SXM", "A100-SXM", "V100-SXM2"])
@pytest.mark.parametrize("workload", ["training", "inference", "idle"])
def test_healthy_hosts_drift_nowhere_in_a_month_on_twenty_seeds(model: str, workload: str) -> None:
    for seed in range(20):
        flat_month(model, workload, seed)
