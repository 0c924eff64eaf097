"""scripts/device_check.py compares memory as nvidia-smi counts it, used and reserved apart,
and the held-clock counters with nvidia-smi's -q report of them."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from gputui.agent.fields import BY_NAME, HELD_FIELDS
from gputui.agent.simnvml import SimNvml
from gputui.agent.simulation import Simulation
from tests.agent_sim import FakeClock

SCRIPT = Path(__file__).parent.parent / "scripts" / "device_check.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_an_idle_h200_agrees_with_nvidia_smi_on_used_and_reserved() -> None:
    check = load()
    # The agent reads NVML v2 (used 0, reserved 615.1); nvidia-smi prints 0 and 616.
    assert not check.field_differs("mem_used_mib", 0.0, 0.0)
    assert not check.field_differs("mem_reserved_mib", 615.1, 616.0)


def test_v1_used_or_a_reserved_reading_on_one_side_only_is_flagged() -> None:
    check = load()
    # NVML v1 counts the reserved memory as used: the disagreement the H200 showed.
    assert check.field_differs("mem_used_mib", 615.1, 0.0)
    assert check.field_differs("mem_reserved_mib", 615.1, None)
    assert check.field_differs("mem_reserved_mib", None, 616.0)
    assert not check.field_differs("mem_reserved_mib", None, None)
    # Other fields one side lacks (power on some boards) are shown, not flagged.
    assert not check.field_differs("power_w", None, 80.0)


# -- the held-clock counters: the agent's NVML reading against nvidia-smi -q ----------------------


def report_of(sim: Simulation, ahead_us: int = 0) -> Callable[[], str]:
    """A `nvidia-smi -q -d PERFORMANCE` report of the simulated GPUs' counters as they stand
    (read without stepping the simulation), each `ahead_us` microseconds ahead."""

    def report() -> str:
        lines = ["==============NVSMI LOG==============", ""]
        for g in sim.gpus:
            lines += [f"GPU {g.pci_bus_id}", "    Clocks Event Reasons"]
            lines += ["        Sync Boost                             : Not Active"]
            lines += ["    Clocks Event Reasons Counters"]
            for name in HELD_FIELDS:
                label = (BY_NAME[name].smi_report or "").split(": ", 1)[1]
                us = g.held_ns[name] // 1000 + ahead_us
                lines.append(f"        {label:<38} : {us} us")
        return "\n".join(lines) + "\n"

    return report


def simulated(driver: str = "580", clock: FakeClock | None = None) -> Simulation:
    sc = {"name": "device", "gpus": 2, "driver": driver, "workload": "training"}
    return Simulation(sc, seed=3, clock=clock)


def test_counters_that_agree_pass(capsys: pytest.CaptureFixture[str]) -> None:
    check = load()
    clock = FakeClock()
    sim = simulated(clock=clock)
    clock.t = 120.0
    assert check.check_counters(0, nvml=SimNvml(sim), report=report_of(sim)) == 0
    out = capsys.readouterr().out
    assert "GPU1 held_sw_power_cap_us" in out and "differs" not in out


def test_a_counter_ahead_by_more_than_the_time_between_the_reads_is_flagged() -> None:
    check = load()
    sim = simulated(clock=FakeClock())
    # Ten seconds ahead: every counter of both GPUs.
    bad = check.check_counters(0, nvml=SimNvml(sim), report=report_of(sim, 10_000_000))
    assert bad == 2 * len(HELD_FIELDS)
    problems = check.counter_problems({"held_sync_boost_us": 10}, {"held_sync_boost_us": 5}, 1e3)
    assert problems == ["held_sync_boost_us: agent 10 us, nvidia-smi 5 us, read 1000 us apart"]


def test_a_counter_only_nvidia_smi_reports_is_flagged() -> None:
    """A driver whose field ids the agent guessed wrong: NVML answers nothing for them."""
    check = load()
    sim = simulated(driver="570", clock=FakeClock())  # the agent asks only the two oldest
    assert check.check_counters(0, nvml=SimNvml(sim), report=report_of(sim)) == 2 * 3
    problems = check.counter_problems({}, {"held_hw_thermal_us": 0}, 1e3)
    assert problems == ["held_hw_thermal_us: only nvidia-smi reports it (0 us)"]


def test_under_load_the_counters_moved_are_set_beside_the_bits_seen(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The load flow, on the simulated NVML's real clock, with a stand-in load."""
    check = load()
    sim = simulated()
    stand_in = [sys.executable, "-c", "import time; time.sleep(1.0)"]
    bad = check.check_counters(1.0, nvml=SimNvml(sim), report=report_of(sim), load=stand_in)
    assert bad == 0
    out = capsys.readouterr().out
    assert "after 1 s of load" in out
    moved = [line.split() for line in out.splitlines() if "held_sw_power_cap_us" in line]
    # The last table: counter moved (s) | bit seen set (s), GPU by GPU; training at its cap.
    for row in moved[-2:]:
        counter_s, bit_s = float(row[2]), float(row[5])
        assert 0.5 <= counter_s <= 1.6 and abs(counter_s - bit_s) < 0.5
