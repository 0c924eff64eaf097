"""A real H200's stream (tests/fixtures/h200) through the collector, as a live host's would go.

The recording is idle, then a training-like load at the 700 W software power cap, then idle:
every line must decode, the host must stay OK (full load at the power cap is normal), the
training process must show in the slow sample while it runs, and what the report says must be
what the GPU said. The inventory is checked against the same machine's `nvidia-smi -q`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from gputui.collect.host_runtime import HostRuntime
from gputui.core.model import FleetEvent, FleetSnapshot, GpuProcess, HostState, Level
from gputui.render.report import report_json

DATA = Path(__file__).parent / "fixtures" / "h200"
STREAM = DATA / "h200-nvml-idle-load-idle.jsonl"
SMI_Q = DATA / "h200-nvidia-smi-q.txt"

# The training process, as NVML listed it in every slow sample under load.
TRAINING = GpuProcess(pid=484, name="python3", used_memory_mib=96498.0)
SLOW_SAMPLES_WITH_TRAINING = 14  # seq 20, 25, ..., 85


def recorded() -> list[dict[str, Any]]:
    return [json.loads(line) for line in STREAM.read_text().splitlines()]


class Clock:
    """The collector's clocks, set to each line's time as it arrives."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def replay() -> tuple[HostRuntime, list[FleetEvent], list[tuple[dict[str, Any], FleetSnapshot]]]:
    """Feeds every line, with the clock at the line's `t`; returns the runtime, the events it
    emitted and, for each sample, the recorded message and the fleet snapshot just after it."""
    lines = STREAM.read_bytes().splitlines()
    messages = recorded()
    clock = Clock(messages[1]["t"] - 0.5)  # the hello comes just before the first sample
    events: list[FleetEvent] = []
    runtime = HostRuntime(
        "h200-vm",
        interval_s=1.0,
        emit=lambda event, _urgent: events.append(event),
        clock=clock,
        monotonic=clock,
    )
    runtime.stream_started()
    after: list[tuple[dict[str, Any], FleetSnapshot]] = []
    for raw, message in zip(lines, messages, strict=True):
        clock.t = message.get("t", clock.t)
        runtime.on_line(raw)
        runtime.check_stale()
        if message["type"] == "sample":
            after.append((message, FleetSnapshot(t=clock.t, hosts=(runtime.snapshot(),))))
    return runtime, events, after


def test_the_recording_is_what_it_claims() -> None:
    messages = recorded()
    assert [m["type"] for m in messages] == ["hello"] + ["sample"] * 131
    assert [m["seq"] for m in messages[1:]] == list(range(131))
    gpus = [m["gpus"][0] for m in messages[1:]]
    capped = [g for g in gpus if g["power_w"] >= 600]
    assert len(capped) == 69
    assert {g["clock_events"] for g in capped} == {0x4}  # SW power cap, nothing else
    assert 689.0 <= min(g["power_w"] for g in capped) <= max(g["power_w"] for g in capped) < 700


def test_every_line_decodes() -> None:
    runtime, _, after = replay()
    stats = runtime.decoder.stats
    assert stats.bad == 0, stats.last_problem
    assert stats.good == 132
    assert len(after) == 131


def test_the_host_stays_ok_at_full_load_on_the_power_cap() -> None:
    runtime, events, after = replay()
    for message, snap in after:
        (host,) = snap.hosts
        assert host.state is HostState.STREAMING, (message["seq"], host.state_reason)
        assert host.verdict.host.level is Level.OK, (message["seq"], host.verdict.host.reasons)
        assert host.verdict.gpus[0].level is Level.OK
        assert host.verdict.host.reasons == ()
    assert [e.level for e in events if e.level > Level.OK] == []
    assert [e.text for e in events] == ["connecting -> streaming"]
    assert runtime.verdict.host.level is Level.OK


def test_the_training_process_is_listed_while_it_runs() -> None:
    _, _, after = replay()
    listed: list[int] = []
    since_slow: list[GpuProcess] = []  # what the last slow sample listed
    for message, snap in after:
        want = message["gpus"][0]
        if message.get("slow"):
            since_slow = [GpuProcess(**p) for p in want["processes"]]
            if since_slow:
                assert want["util_pct"] >= 99.0 and want["power_w"] > 689.0
        slow = snap.hosts[0].slow_sample
        assert slow is not None
        (gpu,) = slow.gpus
        assert gpu.processes == since_slow
        if since_slow:
            assert since_slow == [TRAINING]
            listed.append(message["seq"])
    # Listed from the first slow sample under load (seq 20) until the one after it (seq 90).
    assert listed == list(range(20, 90))
    assert sum(1 for m, _ in after if m.get("slow") and m["gpus"][0]["processes"]) == (
        SLOW_SAMPLES_WITH_TRAINING
    )
    # The process holds all the memory in use but what the driver reserves and keeps for
    # itself: v1 `used` 97,121.9 MiB = 96,498 (process) + 615.1 (idle, reserved) + 8.8.
    capped = {m["gpus"][0]["mem_used_mib"] for m, _ in after if m["gpus"][0]["power_w"] > 600}
    idle = {m["gpus"][0]["mem_used_mib"] for m, _ in after if m["gpus"][0]["power_w"] < 100}
    assert (capped, idle) == ({97121.9}, {615.1})
    assert TRAINING.used_memory_mib is not None
    assert round(97121.9 - TRAINING.used_memory_mib - 615.1, 1) == 8.8


def test_report_json_says_what_the_gpu_said() -> None:
    _, _, after = replay()
    hello = recorded()[0]["gpus"][0]
    for message, snap in after:
        doc = json.loads(report_json(snap))
        assert doc["status"] == "OK" and doc["exit_code"] == 0
        (host,) = doc["hosts"]
        assert (host["state"], host["level"], host["decode_errors"]) == ("streaming", "ok", 0)
        assert host["driver_version"] == "580.159.04" and host["backend"] == "nvml"
        (gpu,) = host["gpus"]
        want = message["gpus"][0]
        assert gpu["uuid"] == "GPU-d1af61ed-4e8a-84c7-c965-3984f0586dd6"
        assert gpu["name"] == "NVIDIA H200"
        assert gpu["temp_c"] == want["temp_c"]
        assert gpu["power_w"] == want["power_w"]
        assert gpu["power_limit_w"] == want["power_limit_w"] == 700.0
        assert gpu["util_pct"] == want["util_pct"]
        assert gpu["mem_used_mib"] == want["mem_used_mib"]
        assert gpu["mem_total_mib"] == hello["memory_total_mib"] == 143771.0
        assert gpu["mem_reserved_mib"] is None  # this agent read NVML v1 only
        assert gpu["sm_clock_mhz"] == want["sm_clock_mhz"]
        assert gpu["clock_events"] == want["clock_events"]
        assert (gpu["level"], gpu["reasons"]) == ("ok", [])
        assert host["power_w"] == want["power_w"]
        assert host["temp_max_c"] == want["temp_c"]
    # One sample at full load, by value, with the training process NVML listed.
    message, snap = next((m, s) for m, s in after if m["seq"] == 20)
    gpu = json.loads(report_json(snap))["hosts"][0]["gpus"][0]
    assert gpu["processes"] == [{"pid": 484, "name": "python3", "used_memory_mib": 96498.0}]
    assert (gpu["util_pct"], gpu["power_w"], gpu["temp_c"], gpu["mem_used_mib"]) == (
        100.0,
        693.6,
        62.0,
        97121.9,
    )
    assert (gpu["sm_clock_mhz"], gpu["clock_events"]) == (1470, 0x4)


# -- the hello against nvidia-smi -q ---------------------------------------------------------


def smi_q(text: str) -> dict[str, str]:
    """`nvidia-smi -q` as "Section/Key" -> value: sections are the lines without a value
    ("GPU 00000000:00:06.0" has colons but no " : "), nested by their indentation (4 spaces a
    level)."""
    out: dict[str, str] = {}
    path: list[tuple[int, str]] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("="):
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 4
        path = [(d, k) for d, k in path if d < depth]
        pair = re.match(r"(.+?)\s*:\s+(.*)$", line.strip())
        if pair is None:
            path.append((depth, line.strip()))
            continue
        name = "/".join([k for _, k in path] + [pair.group(1).strip()])
        out.setdefault(name, pair.group(2).strip())
    return out


def degrees(value: str) -> float:
    m = re.fullmatch(r"(-?\d+) C", value)
    assert m is not None, value
    return float(m.group(1))


def test_the_hello_agrees_with_nvidia_smi_q() -> None:
    hello = recorded()[0]
    (gpu,) = hello["gpus"]
    q = smi_q(SMI_Q.read_text())
    g = "GPU 00000000:00:06.0/"
    assert q["Driver Version"] == hello["driver_version"] == "580.159.04"
    assert q["CUDA Version"] == hello["cuda_version"] == "13.0"
    assert q[g + "Product Name"] == gpu["name"]
    assert q[g + "GPU UUID"] == gpu["uuid"]
    assert q[g + "Serial Number"] == gpu["serial"]
    assert q[g + "PCI/Bus Id"] == gpu["pci_bus_id"]
    assert q[g + "FB Memory Usage/Total"] == f"{gpu['memory_total_mib']:.0f} MiB"
    assert q[g + "Max Clocks/SM"] == f"{gpu['sm_clock_max_mhz']} MHz"
    assert q[g + "Max Clocks/Memory"] == f"{gpu['mem_clock_max_mhz']} MHz"
    assert q[g + "PCI/GPU Link Info/PCIe Generation/Max"] == str(gpu["pcie_gen_max"])
    assert q[g + "PCI/GPU Link Info/Link Width/Max"] == f"{gpu['pcie_width_max']}x"
    assert q[g + "ECC Mode/Current"] == "Enabled" and gpu["ecc_enabled"] is True
    assert q[g + "Persistence Mode"] == "Enabled" and hello["persistence_mode"] is True
    # The power limit NVML enforces is the one nvidia-smi reports.
    assert q[g + "GPU Power Readings/Current Power Limit"] == "700.00 W"
    assert gpu["power_limit_w"] == 700.0
    # Driver 580 prints temperature limits relative to T.Limit, the maximum operating
    # temperature: the margin to it from now, and each limit's offset from it.
    t = g + "Temperature/"
    t_limit = degrees(q[t + "GPU Current Temp"]) + degrees(q[t + "GPU T.Limit Temp"])
    assert t_limit == gpu["temp_gpu_max_c"] == 87.0
    assert t_limit - degrees(q[t + "GPU Max Operating T.Limit Temp"]) == 87.0
    assert t_limit - degrees(q[t + "GPU Slowdown T.Limit Temp"]) == gpu["temp_slowdown_c"] == 89.0
    assert t_limit - degrees(q[t + "GPU Shutdown T.Limit Temp"]) == gpu["temp_shutdown_c"] == 95.0


def test_idle_memory_used_by_nvml_v1_is_what_nvidia_smi_calls_reserved() -> None:
    """The disagreement the agent now resolves by reading v2: nvidia-smi counts the reserved
    memory apart, this recording's v1 reading counts it as used."""
    q = smi_q(SMI_Q.read_text())
    fb = "GPU 00000000:00:06.0/FB Memory Usage/"
    assert (q[fb + "Used"], q[fb + "Reserved"]) == ("0 MiB", "616 MiB")
    first = recorded()[1]["gpus"][0]
    assert first["util_pct"] == 0.0 and first["processes"] == []
    assert first["mem_used_mib"] == 615.1
    assert abs(first["mem_used_mib"] - 616.0) < 1.0
