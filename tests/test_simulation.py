"""The simulated GPUs: deterministic for a seed, with believable physics and real limits."""

from __future__ import annotations

import re
import statistics

import pytest

from gputui.agent.sim_backend import SimBackend
from gputui.agent.simulation import Simulation, kernel_log_at
from tests.agent_sim import FakeClock, run_fast, scenario


def test_a_seed_replays_the_same_stream() -> None:
    sc = {
        "name": "replay",
        "workload": "inference",
        "fault": [{"kind": "xid", "xid": 31, "gpus": [2], "at": 9}],
    }
    a = run_fast(sc, until=120, seed=5).raw
    assert a == run_fast(sc, until=120, seed=5).raw
    assert a != run_fast(sc, until=120, seed=6).raw


def test_the_state_does_not_depend_on_how_often_it_is_read() -> None:
    sc = scenario({"kind": "thermal_runaway", "gpus": [1], "at": 30.0})
    often, rarely = FakeClock(), FakeClock()
    a = Simulation(sc, seed=3, clock=often)
    b = Simulation(sc, seed=3, clock=rarely)
    for step in range(1, 1201):
        often.t = step * 0.25
        a.advance()
    rarely.t = 300.0
    b.advance()
    for ga, gb in zip(a.gpus, b.gpus, strict=True):
        assert (ga.temp_c, ga.power_w, ga.sm_mhz) == (gb.temp_c, gb.power_w, gb.sm_mhz)


@pytest.mark.parametrize(
    ("model", "limits"),
    [
        ("H100-SXM", ("NVIDIA H100 80GB HBM3", 700, 92, 89, 87, 95, 1980, 2619, 5, 16, 18, 81559)),
        ("A100-SXM", ("NVIDIA A100-SXM4-80GB", 400, 92, 89, 85, 95, 1410, 1593, 4, 16, 12, 81920)),
    ],
)
def test_hello_reports_the_boards_real_limits(model: str, limits: tuple[object, ...]) -> None:
    backend = SimBackend({"name": "limits", "model": model}, clock=FakeClock())
    gpu = backend.hello()["gpus"][0]
    assert (
        gpu["name"],
        gpu["power_limit_w"],
        gpu["temp_shutdown_c"],
        gpu["temp_slowdown_c"],
        gpu["temp_gpu_max_c"],
        gpu["temp_mem_max_c"],
        gpu["sm_clock_max_mhz"],
        gpu["mem_clock_max_mhz"],
        gpu["pcie_gen_max"],
        gpu["pcie_width_max"],
        gpu["nvlink_count"],
        gpu["memory_total_mib"],
    ) == limits
    assert re.fullmatch(r"GPU-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", gpu["uuid"])
    assert gpu["ecc_enabled"] is True


def test_hello_reports_driver_versions_and_persistence() -> None:
    hello = SimBackend({"name": "versions"}, clock=FakeClock()).hello()
    # By default the driver of the H200 recorded in tests/fixtures/h200.
    assert hello["driver_version"] == "580.159.04"
    assert hello["cuda_version"] == "13.0"
    assert hello["persistence_mode"] is True


def test_temperature_lags_power() -> None:
    """A power brake cuts power at once; the die cools over tens of seconds."""
    s = run_fast(scenario({"kind": "power_brake", "gpus": [0], "at": 50.0}), until=200)
    before = s.gpu(0, since=45, until=49.5)[-1]
    first = s.gpu(0, since=50.5, until=51.5)[0]
    later = s.gpu(0, since=190)[-1]
    assert first["power_w"] < before["power_w"] - 300
    assert before["temp_c"] - first["temp_c"] <= 3
    assert before["temp_c"] - later["temp_c"] >= 15


def test_training_dips_for_checkpoints() -> None:
    s = run_fast(scenario(), until=600)
    util = [g["util_pct"] for g in s.gpu(0)]
    assert statistics.median(util) > 90
    assert min(util) < 10  # a checkpoint write
    memory = [g["mem_used_mib"] for g in s.gpu(0)]
    assert min(memory) > 0.85 * 81559 and max(memory) < 0.95 * 81559


def test_inference_is_bursty() -> None:
    s = run_fast({"name": "serve", "workload": "inference", "gpus": 2}, until=300)
    util = [g["util_pct"] for g in s.gpu(0)]
    assert statistics.pstdev(util) > 10
    assert min(util) < 35 and max(util) > 65


def test_idle_gpus_sit_at_idle_clocks_and_power() -> None:
    s = run_fast({"name": "idle", "workload": "idle", "model": "A100-SXM", "gpus": 2}, until=30)
    g = s.slow(1)[-1]
    assert g["util_pct"] == 0 and g["sm_clock_mhz"] == 210
    assert g["power_w"] < 80 and g["temp_c"] < 40
    assert g["processes"] == []


def test_processes_carry_name_and_memory() -> None:
    s = run_fast(scenario(), until=2, slow_every=1)
    (proc,) = s.slow(0)[-1]["processes"]
    assert proc["name"] == "python3" and proc["pid"] > 0
    assert 70_000 < proc["used_memory_mib"] < 78_000


def test_kernel_log_lines_look_like_dmesg() -> None:
    sc = scenario(
        {"kind": "xid", "xid": 79, "gpus": [3], "at": 2.0},
        {"kind": "ecc_dbe", "gpus": [0], "at": 4.0},
    )
    clock = FakeClock()
    sim = Simulation(sc, seed=0, clock=clock)
    clock.t = 10.0
    log = sim.kernel_log()
    assert len(log) == 2
    assert re.fullmatch(
        r"\[\s*\d+\.\d{6}\] NVRM: Xid \(PCI:0000:5d:00\): 79, pid=\d+, name=python3, "
        r"GPU has fallen off the bus\.",
        log[0],
    )
    assert ": 48, " in log[1] and "double bit error (DBE)" in log[1]
    stamps = [float(line[1:].split("]")[0]) for line in log]
    assert stamps[1] - stamps[0] == pytest.approx(2.0)


def test_unsupported_calls_are_not_retried() -> None:
    """NVLink4 refuses the data-CRC counter: asked once per link at the first slow sample,
    then never again."""
    backend = SimBackend(scenario(), clock=FakeClock(), event_thread=False)
    calls: list[int] = []
    real = backend.nvml.nvmlDeviceGetNvLinkErrorCounter

    def counting(device: object, link: int, counter: int) -> int:
        if counter == backend.nvml.NVML_NVLINK_ERROR_DL_CRC_DATA:
            calls.append(link)
        return real(device, link, counter)

    backend.nvml.nvmlDeviceGetNvLinkErrorCounter = counting  # type: ignore[method-assign]
    backend.hello()
    for _ in range(5):
        backend.sample(slow=True)
    assert calls == [0] * 8  # one refused call per GPU, then remembered


def test_kernel_log_can_be_replayed_from_scenario_and_seed() -> None:
    """Triage of a simulated host reads its log without asking its agent."""
    sc = scenario({"kind": "xid", "xid": 79, "gpus": [3], "at": 2.0})
    clock = FakeClock()
    live = Simulation(sc, seed=4, clock=clock)
    clock.t = 30.0
    assert kernel_log_at(sc, seed=4, elapsed_s=30.0) == live.kernel_log()
    assert kernel_log_at(sc, seed=4, elapsed_s=1.0) == []
