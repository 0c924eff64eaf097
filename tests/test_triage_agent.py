"""The agent's triage mode: hello, full samples, one triage line; on simulated and real hosts."""

from __future__ import annotations

import io
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gputui.agent import triage as agent_triage
from gputui.agent.backend import Backend, Json
from gputui.agent.hostfacts import pci_gpus
from gputui.agent.sim_backend import SimBackend
from gputui.agent.stream import StreamWriter
from gputui.agent.triage import SIM_SETTLE_S, TriageRunner, default_sim_elapsed
from gputui.collect.protocol import StreamDecoder
from gputui.collect.scenarios import load_scenario
from gputui.core.model import Hello, Sample, TriageFacts
from tests.test_agent_bundle import _python38, run_bundle


def run_triage(backend: Backend, **kw: Any) -> list[Any]:
    out = io.BytesIO()
    stop = threading.Event()
    runner = TriageRunner(backend, StreamWriter(out, stop), stop, host="h", **kw)
    assert runner.run() == 0
    decoder = StreamDecoder()
    msgs = [decoder.decode(line) for line in out.getvalue().splitlines()]
    assert decoder.stats.bad == 0, decoder.stats.last_problem
    return msgs


def test_sim_triage_fast_forwards_to_the_developed_fault() -> None:
    scenario = load_scenario("xid79")
    started = time.monotonic()
    msgs = run_triage(SimBackend(scenario, seed=3, event_thread=False), samples=5)
    assert time.monotonic() - started < 5  # simulated seconds, not real ones
    hello, *samples, facts = msgs
    assert isinstance(hello, Hello) and hello.slow_every == 1
    assert all(isinstance(s, Sample) and s.slow for s in samples) and len(samples) == 5
    assert isinstance(facts, TriageFacts)
    # Samples lie an interval apart in simulated time, the last one stamped now.
    assert [round(b.t - a.t, 3) for a, b in itertools.pairwise(samples)] == [1.0] * 4
    assert abs(samples[-1].t - time.time()) < 5
    assert facts.sim_elapsed_s == default_sim_elapsed(scenario) + 4 == 2.0 + SIM_SETTLE_S + 4
    assert samples[-1].gpus[3].status == "lost"
    (xid,) = facts.xids
    assert xid.xid == 79 and xid.pid is not None and xid.process == "python3"
    assert xid.t is not None and abs(samples[-1].t - xid.t - (facts.sim_elapsed_s - 2.0)) < 0.5
    bus = {p.bus_id: p for p in facts.pci_gpus or []}
    assert len(bus) == 8 and bus[xid.pci_bus_id + ".0"].responds is False
    assert facts.kernel_log.source == "sim" and facts.kernel_log.readable
    assert facts.nvml_gpu_count == 8 and len(facts.gpus) == 8
    assert facts.gpus[0].nvlink_states == [True] * 18 and facts.gpus[0].persistence_mode
    assert facts.gpus[3].persistence_mode is None  # a lost GPU answers nothing


def test_sim_elapsed_before_the_fault_shows_a_healthy_host() -> None:
    msgs = run_triage(
        SimBackend(load_scenario("xid79"), seed=3, event_thread=False), samples=2, sim_elapsed_s=0
    )
    facts = msgs[-1]
    assert isinstance(facts, TriageFacts)
    assert facts.xids == [] and facts.sim_elapsed_s == 1.0
    assert all(p.responds for p in facts.pci_gpus or [])


class _TwoGpus(Backend):
    name = "nvml"

    def hello(self) -> Json:
        return {"gpus": [{"index": 0, "uuid": "GPU-a", "name": "x"}]}

    def sample(self, slow: bool) -> Json:
        return {"gpus": [{"index": 0, "util_pct": 5.0}]}


def test_a_real_host_reads_its_kernel_log_since_the_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, float | None] = {}

    def fake_read(since_t: float | None, boot_t: float | None) -> tuple[Json, list[Json]]:
        seen.update(since_t=since_t, boot_t=boot_t)
        xid = {"xid": 13, "pci_bus_id": "0000:18:00", "text": "x", "line": "l"}
        return {"source": "journalctl", "readable": True, "since_t": since_t, "lines": 3}, [xid]

    monkeypatch.setattr(agent_triage, "read_system_log", fake_read)
    monkeypatch.setattr(agent_triage, "system_facts", lambda: {"uptime_s": 100.0})
    monkeypatch.setattr(agent_triage, "pci_gpus", lambda: ([], None))
    before = time.time()
    msgs = run_triage(_TwoGpus(), samples=2, interval_s=0.01, since_s=3600.0)
    facts = msgs[-1]
    assert isinstance(facts, TriageFacts) and len(msgs) == 4
    assert seen["since_t"] is not None and abs(seen["since_t"] - (before - 3600)) < 2
    assert seen["boot_t"] is not None and abs(seen["boot_t"] - (before - 100)) < 2
    assert facts.kernel_log.source == "journalctl" and facts.xids[0].xid == 13
    assert facts.pci_gpus == [] and facts.gpus == []


def test_a_failing_probe_costs_only_its_part(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> tuple[None, None]:
        raise RuntimeError("sysfs exploded")

    monkeypatch.setattr(agent_triage, "pci_gpus", broken)
    monkeypatch.setattr(
        agent_triage, "read_system_log", lambda s, b: ({"source": "dmesg", "readable": True}, [])
    )
    msgs = run_triage(_TwoGpus(), samples=1)
    errors = [m for m in msgs if getattr(m, "code", None) == "triage_failed"]
    assert len(errors) == 1 and "sysfs exploded" in errors[0].text and not errors[0].fatal
    assert isinstance(msgs[-1], TriageFacts) and msgs[-1].pci_gpus is None


def _device(
    root: Path, name: str, vendor: str, klass: str, config: bytes, driver: str = ""
) -> None:
    d = root / name
    d.mkdir()
    (d / "vendor").write_text(vendor + "\n")
    (d / "class").write_text(klass + "\n")
    (d / "device").write_text("0x2330\n")
    (d / "config").write_bytes(config)
    if driver:
        (root / "drivers" / driver).mkdir(parents=True, exist_ok=True)
        (d / "driver").symlink_to(root / "drivers" / driver)


def test_pci_bus_lists_nvidia_gpus_and_which_answer(tmp_path: Path) -> None:
    bus = tmp_path / "devices"
    bus.mkdir()
    answers = b"\xde\x10\x30\x23" + bytes(60)
    _device(bus, "0000:18:00.0", "0x10de", "0x030200", answers, "nvidia")
    _device(bus, "0000:5d:00.0", "0x10de", "0x030200", b"\xff" * 64, "nvidia")
    _device(bus, "0000:07:00.0", "0x10de", "0x068000", answers, "nvidia-nvswitch")  # NVSwitch
    _device(bus, "0000:18:00.1", "0x10de", "0x040300", answers)  # HDMI audio
    _device(bus, "0000:00:1f.0", "0x8086", "0x060100", answers)
    _device(bus, "0000:af:00.0", "0x10de", "0x030000", answers, "vfio-pci")
    found, error = pci_gpus(str(bus))
    assert error is None and found is not None
    assert [(d["bus_id"], d["responds"], d["driver"]) for d in found] == [
        ("0000:18:00.0", True, "nvidia"),
        ("0000:5d:00.0", False, "nvidia"),
        ("0000:af:00.0", True, "vfio-pci"),
    ]
    assert pci_gpus(str(tmp_path / "nope"))[0] is None


def _argv(scenario: str) -> list[str]:
    sc = json.dumps(load_scenario(scenario), separators=(",", ":"))
    return ["--backend", "sim", "--scenario-json", sc, "--seed", "1", "--triage", "--host", "t"]


def test_the_agent_command_line_runs_triage_and_exits() -> None:
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-m", "gputui.agent", *_argv("ecc"), "--samples", "2"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [m["type"] for m in lines] == ["hello", "sample", "sample", "triage"]
    assert sorted(x["xid"] for x in lines[-1]["xids"]) == [48, 64, 92]


def test_triage_through_the_bundle_on_python_38(tmp_path: Path) -> None:
    rc, out, err = run_bundle(_python38(), [*_argv("xid79"), "--samples", "1"], cwd=tmp_path)
    assert rc == 0, err
    last = json.loads(out.splitlines()[-1])
    assert last["type"] == "triage" and [x["xid"] for x in last["xids"]] == [79]


def test_bad_triage_arguments_are_usage_errors() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gputui.agent", *_argv("healthy"), "--samples", "0"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and b"--samples" in proc.stderr
