"""Every scripted fault shows in the agent's stream the way NVML would show it.

Each test runs the real run loop and NVML backend over the simulated NVML with the clock
fast-forwarded (tests/agent_sim.py), then reads the stream as the collector would.
"""

from __future__ import annotations

import re
import statistics
from typing import Any

from gputui.core.model import (
    CLOCK_EVENT_GPU_IDLE,
    CLOCK_EVENT_HW_POWER_BRAKE_SLOWDOWN,
    CLOCK_EVENT_HW_SLOWDOWN,
    CLOCK_EVENT_HW_THERMAL_SLOWDOWN,
    CLOCK_EVENT_SW_POWER_CAP,
    CLOCK_EVENT_SW_THERMAL_SLOWDOWN,
)
from tests.agent_sim import T0, Stream, run_fast, scenario

HW_BITS = (
    CLOCK_EVENT_HW_SLOWDOWN | CLOCK_EVENT_HW_THERMAL_SLOWDOWN | CLOCK_EVENT_HW_POWER_BRAKE_SLOWDOWN
)


def _xids(stream: Stream, gpu: int) -> list[dict[str, Any]]:
    return [e for e in stream.events if e["kind"] == "xid" and e["gpu"] == gpu]


def _peer_median(stream: Stream, field: str, since: float, until: float, exclude: int) -> float:
    values = [
        g[field]
        for i in range(8)
        if i != exclude
        for g in stream.gpu(i, since, until)
        if field in g
    ]
    return float(statistics.median(values))


def test_xid_any_code_arrives_through_the_event_set_and_the_kernel_log() -> None:
    s = run_fast(scenario({"kind": "xid", "xid": 13, "gpus": [1], "at": 7.0}), until=12)
    (event,) = _xids(s, 1)
    assert event["xid"] == 13
    assert event["t"] - T0 == 7.0
    assert event["uuid"].startswith("GPU-")
    # An application XID leaves the GPU in service.
    assert all(g.get("status", "ok") == "ok" for g in s.gpu(1))
    (line,) = s.backend.simulation.kernel_log()
    assert re.fullmatch(
        r"\[\s*\d+\.\d{6}\] NVRM: Xid \(PCI:0000:2a:00\): 13, pid=\d+, name=python3, .+", line
    )


def test_xid79_loses_the_gpu_while_the_others_keep_streaming() -> None:
    s = run_fast(scenario({"kind": "xid", "xid": 79, "gpus": [3], "at": 2.0}), until=20)
    (xid,) = _xids(s, 3)
    assert xid["xid"] == 79
    (lost,) = [e for e in s.events if e["kind"] == "gpu_lost"]
    assert lost["gpu"] == 3
    after = s.gpu(3, since=2.0)
    assert after and all(
        g["status"] == "lost" and set(g) == {"index", "status", "error"} for g in after
    )
    assert all("util_pct" in g for g in s.gpu(3, until=1.9))
    for other in (0, 1, 2, 4, 5, 6, 7):
        assert all("temp_c" in g for g in s.gpu(other, since=2.0))
    assert "GPU has fallen off the bus." in s.backend.simulation.kernel_log()[0]


def test_ecc_dbe_counts_and_pushes_the_event_and_xid48() -> None:
    fault = {"kind": "ecc_dbe", "gpus": [2], "at": 5.0, "duration": 30.0}
    s = run_fast(scenario(fault), until=60, slow_every=1)
    kinds = [(e["kind"], e.get("xid")) for e in s.events if e.get("gpu") == 2]
    assert ("xid", 48) in kinds and ("ecc_dbe", None) in kinds
    during = s.slow(2, since=6, until=34)[-1]
    assert during["ecc_uncorrected_volatile"] == 1
    assert during["ecc_uncorrected_aggregate"] == 1
    assert during["remap_uncorrected"] == 1 and during["remap_pending"] is True
    assert during["recovery_action"] == 1  # NVML asks for a GPU reset
    after = s.slow(2, since=36)[-1]  # the duration ended as a GPU reset does
    assert after["ecc_uncorrected_volatile"] == 0
    assert after["ecc_uncorrected_aggregate"] == 1
    assert after["remap_pending"] is False and after["recovery_action"] == 0


def test_ecc_dbe_on_a_pre_ampere_board_retires_a_page() -> None:
    fault = {"kind": "ecc_dbe", "gpus": [0], "at": 3.0}
    s = run_fast(scenario(fault, model="V100-SXM2"), until=10, slow_every=1)
    last = s.slow(0)[-1]
    assert last["retired_pages_dbe"] == 1 and last["retired_pages_pending"] is True
    assert "remap_pending" not in last and "recovery_action" not in last


def test_ecc_sbe_storm_raises_corrected_counters_at_the_rate() -> None:
    fault = {"kind": "ecc_sbe_storm", "gpus": [4], "at": 10.0, "duration": 20.0, "rate": 100.0}
    s = run_fast(scenario(fault), until=40, slow_every=1)
    before = s.slow(4, until=9)[-1]["ecc_corrected_volatile"]
    after = s.slow(4, since=31)[-1]["ecc_corrected_volatile"]
    assert 64 + 1500 < after - before < 64 + 2500  # XID 92's burst plus ~100/s for 20 s
    assert [e["xid"] for e in _xids(s, 4)] == [92]
    assert s.slow(3)[-1]["ecc_corrected_volatile"] == 0


def test_thermal_runaway_heats_then_throttles_then_recovers() -> None:
    fault = {"kind": "thermal_runaway", "gpus": [5], "at": 10.0, "duration": 200.0, "rise_c": 45.0}
    s = run_fast(scenario(fault), until=320)
    before = s.gpu(5, until=9)
    hot = s.gpu(5, since=60, until=210)
    assert max(g["temp_c"] for g in before) < 80
    assert max(g["temp_c"] for g in hot) >= 87  # the H100's max operating temperature
    assert any(g["clock_events"] & CLOCK_EVENT_SW_THERMAL_SLOWDOWN for g in hot)
    assert any(g["clock_events"] & CLOCK_EVENT_HW_THERMAL_SLOWDOWN for g in hot)
    busy = [g for g in hot if not g["clock_events"] & CLOCK_EVENT_GPU_IDLE]
    peers = _peer_median(s, "sm_clock_mhz", 60, 210, exclude=5)
    assert statistics.median(g["sm_clock_mhz"] for g in busy) < peers - 200
    # Temperature rose with inertia, not in one step.
    assert s.gpu(5, since=12, until=13)[0]["temp_c"] < 80
    cooled = s.gpu(5, since=300)
    assert max(g["temp_c"] for g in cooled) < 87
    assert not any(g["clock_events"] & CLOCK_EVENT_SW_THERMAL_SLOWDOWN for g in cooled)


def test_power_brake_sets_the_bits_and_drops_clocks_and_power() -> None:
    fault = {"kind": "power_brake", "gpus": [2, 3], "at": 10.0, "duration": 15.0}
    s = run_fast(scenario(fault), until=40)
    braked = s.gpu(2, since=11, until=24)
    assert all(
        g["clock_events"] & CLOCK_EVENT_HW_POWER_BRAKE_SLOWDOWN
        and g["clock_events"] & CLOCK_EVENT_HW_SLOWDOWN
        and g["sm_clock_mhz"] <= 0.3 * 1980
        for g in braked
    )
    assert max(g["power_w"] for g in braked if g["util_pct"] > 50) < 300
    assert not any(g["clock_events"] & HW_BITS for g in s.gpu(2, since=26))
    assert not any(g["clock_events"] & HW_BITS for g in s.gpu(0))


def test_pcie_downgrade_shows_a_narrower_slower_link_and_replays() -> None:
    fault = {"kind": "pcie_downgrade", "gpus": [1], "at": 5.0, "gen": 3, "width": 8}
    s = run_fast(scenario(fault), until=40, slow_every=1)
    before = s.slow(1, until=4)[-1]
    after = s.slow(1, since=6)
    assert (before["pcie_gen"], before["pcie_width"]) == (5, 16)
    assert all((g["pcie_gen"], g["pcie_width"]) == (3, 8) for g in after)
    assert after[-1]["pcie_replay"] > before["pcie_replay"] + 50  # ~5/s for 35 s
    assert s.slow(0)[-1]["pcie_width"] == 16


def test_pcie_link_may_drop_its_generation_when_idle() -> None:
    s = run_fast({"name": "idle", "workload": "idle", "gpus": 2}, until=5, slow_every=1)
    g = s.slow(0)[-1]
    assert g["clock_events"] & CLOCK_EVENT_GPU_IDLE
    assert (g["pcie_gen"], g["pcie_width"]) == (1, 16)


def test_nvlink_errors_raise_counters_and_take_links_down_for_the_duration() -> None:
    fault = {
        "kind": "nvlink_errors",
        "gpus": [4],
        "at": 5.0,
        "duration": 20.0,
        "rate": 50.0,
        "links_down": 2,
    }
    s = run_fast(scenario(fault), until=40, slow_every=1)
    during = s.slow(4, since=6, until=24)
    assert all(g["nvlink_active"] == 16 for g in during)
    last = s.slow(4)[-1]
    assert last["nvlink_active"] == 18
    assert 600 < last["nvlink_replay"] < 1400  # ~50/s for 20 s, cumulative
    assert last["nvlink_recovery"] > 0 and last["nvlink_crc_flit"] > 0
    # H100 NVLink4 does not report data CRC errors: the field is left out, not zero.
    assert "nvlink_crc_data" not in last
    assert s.slow(3)[-1]["nvlink_replay"] == 0


def test_row_remap_pending_until_the_gpu_is_reset() -> None:
    fault = {"kind": "row_remap_pending", "gpus": [6], "at": 5.0, "duration": 20.0}
    s = run_fast(scenario(fault, model="A100-SXM"), until=40, slow_every=1)
    assert [e["xid"] for e in _xids(s, 6)] == [63]
    assert s.slow(6, until=4)[-1]["remap_pending"] is False
    during = s.slow(6, since=6, until=24)[-1]
    assert during["remap_pending"] is True
    assert during["remap_corrected"] == s.slow(6, until=4)[-1]["remap_corrected"] + 1
    assert s.slow(6, since=26)[-1]["remap_pending"] is False


def test_row_remap_failure_is_latched_with_xid64() -> None:
    s = run_fast(
        scenario({"kind": "row_remap_failure", "gpus": [0], "at": 3.0}), until=10, slow_every=1
    )
    assert [e["xid"] for e in _xids(s, 0)] == [64]
    last = s.slow(0)[-1]
    assert last["remap_failure"] is True and last["recovery_action"] == 1


def test_gpu_lost_without_an_xid() -> None:
    s = run_fast(scenario({"kind": "gpu_lost", "gpus": [7], "at": 4.0}), until=10)
    assert [e["kind"] for e in s.events] == ["gpu_lost"]
    assert s.gpu(7)[-1] == {"index": 7, "status": "lost", "error": "GPU is lost"}
    assert "fallen off the bus" in s.backend.simulation.kernel_log()[0]


def test_xid95_leaves_the_gpu_needing_a_reset() -> None:
    s = run_fast(scenario({"kind": "xid", "xid": 95, "gpus": [6], "at": 4.0}), until=15)
    assert [e["kind"] for e in s.events] == ["xid", "reset_required"]
    last = s.gpu(6)[-1]
    assert last["status"] == "reset_required" and last["error"] == "GPU requires restart"


def test_straggler_falls_behind_its_peers_with_no_reason_bit() -> None:
    s = run_fast(scenario({"kind": "straggler", "gpus": [6], "at": 5.0, "factor": 0.55}), until=60)
    slow = [g for g in s.gpu(6, since=6) if g["util_pct"] > 20]
    peers_clock = _peer_median(s, "sm_clock_mhz", 6, 60, exclude=6)
    peers_util = _peer_median(s, "util_pct", 6, 60, exclude=6)
    assert statistics.median(g["sm_clock_mhz"] for g in slow) < 0.75 * peers_clock
    assert statistics.median(g["util_pct"] for g in slow) < 0.75 * peers_util
    assert not any(g["clock_events"] & (HW_BITS | CLOCK_EVENT_SW_THERMAL_SLOWDOWN) for g in slow)


def test_training_runs_power_capped_at_tdp() -> None:
    s = run_fast(scenario(), until=20)
    busy = [g for g in s.gpu(0) if g["util_pct"] > 90]
    assert busy
    assert all(g["clock_events"] & CLOCK_EVENT_SW_POWER_CAP for g in busy)
    assert 640 < statistics.median(g["power_w"] for g in busy) <= 715


def test_agent_crash_writes_a_fatal_error_and_exits_non_zero() -> None:
    s = run_fast(scenario({"kind": "agent_crash", "at": 3.0, "exit_code": 7}), until=10)
    assert s.rc == 7
    last = s.lines[-1]
    assert last["type"] == "error" and last["code"] == "agent_crash" and last["fatal"] is True
    assert max(m["t"] for m in s.samples) - T0 < 3.0


def test_hang_stops_output_and_resumes_after_its_duration() -> None:
    s = run_fast(scenario({"kind": "hang", "at": 5.0, "duration": 10.0}), until=30)
    times = [m["t"] - T0 for m in s.samples]
    assert not [t for t in times if 5.0 <= t < 15.0]
    assert [t for t in times if t < 5.0] and [t for t in times if t >= 15.0]
    assert s.rc == 0
