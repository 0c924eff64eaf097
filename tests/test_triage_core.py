"""Triage judgement: XIDs placed on GPUs, facts turned into findings, steps and commands."""

from __future__ import annotations

import shlex
from functools import cache
from typing import Any

import msgspec
import pytest

from gputui.agent.sim_backend import SimBackend
from gputui.collect.oneshot import OneShotResult
from gputui.collect.scenarios import load_scenario
from gputui.core.hoststats import PluginStatus
from gputui.core.model import (
    Action,
    Hello,
    KernelLogStatus,
    KernelXid,
    Level,
    PciGpu,
    Sample,
    TriageFacts,
)
from gputui.core.triage import HostTriage, TriageInput, assess_host, build_report
from gputui.core.triage_findings import GpuMap, pci_key
from gputui.core.triage_steps import ActionVocabulary, Concern, OperatorStep, step_for, suggest
from gputui.ops.triage import judge
from tests.test_triage_agent import run_triage


@cache
def _run(scenario: str, **kw: Any) -> TriageInput:
    msgs = run_triage(SimBackend(load_scenario(scenario), seed=5, event_thread=False), **kw)
    hello = next(m for m in msgs if isinstance(m, Hello))
    samples = tuple(m for m in msgs if isinstance(m, Sample))
    facts = next(m for m in msgs if isinstance(m, TriageFacts))
    return TriageInput(host="gpu07", hello=hello, samples=samples, facts=facts)


def _with(inp: TriageInput, **facts: Any) -> TriageInput:
    assert inp.facts is not None
    return msgspec.structs.replace(inp, facts=msgspec.structs.replace(inp.facts, **facts))


def codes(h: HostTriage, level: Level = Level.WARN) -> set[tuple[str, int | None]]:
    return {(f.code, f.gpu) for f in h.findings if f.level >= level}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("00000000:3B:00.0", "0000:3b:00.0"),
        ("0000:3b:00", "0000:3b:00.0"),
        ("PCI:0000:3b:00", "0000:3b:00.0"),
        ("0001:c3:00.1", "0001:c3:00.1"),
        ("3b:00.0", "0000:3b:00.0"),
        ("GPU-3b", None),
        ("", None),
    ],
)
def test_pci_addresses_in_every_spelling(text: str, key: str | None) -> None:
    assert pci_key(text) == key


def test_xid79_is_placed_on_the_lost_gpu_by_bus_order() -> None:
    inp = _run("xid79")
    assert inp.hello is not None and inp.hello.gpus[3].pci_bus_id is None  # lost at start
    gpu_map = GpuMap(inp.hello, inp.facts)
    assert gpu_map.inferred == {3}
    h = assess_host(inp)
    assert h.level is Level.FAILED and h.status is PluginStatus.CRITICAL
    assert (h.xids[0].xid, h.xids[0].gpu) == (79, 3)
    assert {("xid_79", 3), ("gpu_lost", 3), ("pci_no_answer", 3)} <= codes(h)
    assert h.findings[0].code == "xid_79"  # the XID names the fault: it leads the reason
    assert h.suggestion.step is OperatorStep.DRAIN_REBOOT and h.action is Action.REBOOT_NODE
    assert h.suggestion.command == (
        "gputui node fail gpu07 --reason 'triage: GPU3 XID 79: GPU has fallen off the bus; "
        "reboot or power-cycle the node; RMA if it recurs' --action drain --action requeue-jobs"
    )
    assert h.gpus[3].level is Level.FAILED and h.gpus[0].level is Level.OK


def test_bus_order_is_not_trusted_when_the_known_addresses_disagree() -> None:
    inp = _run("xid79")
    assert inp.facts is not None and inp.facts.pci_gpus is not None
    shuffled = [*inp.facts.pci_gpus[1:], inp.facts.pci_gpus[0]]
    renamed = [
        msgspec.structs.replace(p, bus_id=f"0000:{i:02x}:00.0") for i, p in enumerate(shuffled)
    ]
    gpu_map = GpuMap(inp.hello, _with(inp, pci_gpus=renamed).facts)
    assert gpu_map.inferred == set()


def test_an_unreadable_kernel_log_is_a_warning_with_the_fix() -> None:
    denied = KernelLogStatus(
        source="none",
        readable=False,
        error_code="permission_denied",
        error="dmesg: read kernel buffer failed: Operation not permitted",
        dmesg_restrict=True,
    )
    h = assess_host(_with(_run("healthy"), kernel_log=denied, xids=[], user="alice"))
    assert h.level is Level.WARN and h.status is PluginStatus.WARNING
    (f,) = [f for f in h.findings if f.code == "kernel_log_denied"]
    assert "kernel.dmesg_restrict = 1" in f.text and "as alice" in f.text
    assert f.fix is not None and "sudo sysctl kernel.dmesg_restrict=0" in f.fix
    assert "usermod -aG systemd-journal alice" in f.fix
    assert h.suggestion.command is None and "triage again" in h.suggestion.text


def test_a_gpu_on_the_bus_that_nvml_misses() -> None:
    inp = _run("healthy")
    assert inp.facts is not None and inp.facts.pci_gpus is not None
    extra = PciGpu(bus_id="0000:e1:00.0", device_id="0x2330", class_code="0x030200")
    vm = PciGpu(bus_id="0000:e2:00.0", class_code="0x030200", driver="vfio-pci")
    h = assess_host(_with(inp, pci_gpus=[*inp.facts.pci_gpus, extra, vm]))
    (f,) = [f for f in h.findings if f.code == "gpu_not_in_nvml"]
    assert "0000:e1:00.0" in f.text and f.level is Level.CRITICAL
    assert h.suggestion.step is OperatorStep.DRAIN_REBOOT
    assert "--action drain --action requeue-jobs" in (h.suggestion.command or "")


def test_too_few_gpus_against_the_expected_count() -> None:
    inp = msgspec.structs.replace(_run("healthy"), expected_gpus=10)
    h = assess_host(inp)
    assert ("gpu_count_low", None) in codes(h) and h.level is Level.CRITICAL


def test_an_xid_where_no_gpu_is_now_means_it_left_the_bus() -> None:
    gone = KernelXid(xid=79, pci_bus_id="0000:f0:00", text="GPU has fallen off the bus.")
    h = assess_host(_with(_run("healthy"), xids=[gone]))
    assert {("gpu_gone_from_bus", None), ("xid_79", None)} <= codes(h)
    assert h.xids[0].gpu is None


def test_an_unreachable_host_is_unknown_and_never_told_to_drain() -> None:
    h = assess_host(TriageInput(host="gpu09", error_code="refused", error="connection refused"))
    assert h.level is Level.UNKNOWN and h.status is PluginStatus.UNKNOWN and not h.reachable
    assert h.suggestion.command is None and h.suggestion.text.startswith("Not judged")


@pytest.mark.parametrize(
    ("code", "level", "action", "step"),
    [
        ("xid_13", Level.WARN, Action.RESTART_APP, OperatorStep.RESTART_APP),
        ("xid_48", Level.CRITICAL, Action.RESET_GPU, OperatorStep.RESET_GPU),
        ("xid_95", Level.FAILED, Action.DRAIN, OperatorStep.RESET_GPU),
        ("hw_thermal", Level.CRITICAL, Action.DRAIN, OperatorStep.DRAIN_INSPECT),
        ("xid_79", Level.FAILED, Action.REBOOT_NODE, OperatorStep.DRAIN_REBOOT),
        ("remap_failure", Level.FAILED, Action.RMA, OperatorStep.RMA),
        ("straggler", Level.WARN, Action.NONE, OperatorStep.WATCH),
        ("xid_43", Level.OK, Action.NONE, OperatorStep.NONE),
    ],
)
def test_operator_step_per_finding(
    code: str, level: Level, action: Action, step: OperatorStep
) -> None:
    assert step_for(code, level, action) is step


def test_commands_use_the_sites_action_names() -> None:
    inp = _run("ecc")
    k8s = ActionVocabulary(
        fence="cordon",
        evict="drain",
        hosts_path="/etc/gputui/hosts.toml",
        with_spare=frozenset({"gpu07"}),
    )
    h = assess_host(inp, vocab=k8s)
    assert h.suggestion.step is OperatorStep.RMA
    words = shlex.split(h.suggestion.command or "")
    assert words[:4] == ["gputui", "node", "fail", "gpu07"]
    assert words[6:] == [
        "--action",
        "cordon",
        "--action",
        "drain",
        "--spare",
        "--hosts",
        "/etc/gputui/hosts.toml",
    ]
    none = assess_host(inp, vocab=ActionVocabulary(fence=None, evict=None))
    assert "--action" not in (none.suggestion.command or "x --action")


def test_report_is_worst_first_with_the_report_exit_status() -> None:
    healthy = assess_host(_run("healthy"))
    lost = assess_host(_run("xid79"))
    down = assess_host(TriageInput(host="a-down", error_code="timeout", error="no answer"))
    report = build_report([healthy, down, lost], t=0.0, since_s=None)
    assert [h.level for h in report.hosts] == [Level.FAILED, Level.UNKNOWN, Level.OK]
    assert report.status is PluginStatus.CRITICAL
    assert build_report([healthy, down], 0.0, None).status is PluginStatus.UNKNOWN
    assert build_report([healthy], 0.0, None).status is PluginStatus.OK


def test_a_sandbox_without_a_pci_view_is_not_a_bus_full_of_missing_gpus() -> None:
    gone = KernelXid(xid=13, pci_bus_id="0000:f0:00", text="x")
    h = assess_host(_with(_run("healthy"), pci_gpus=[], xids=[gone]))
    assert ("pci_view_empty", None) in codes(h, Level.OK)
    assert not {c for c, _ in codes(h)} & {"gpu_gone_from_bus", "gpu_not_in_nvml"}
    assert h.level is Level.WARN  # the XID 13 alone


def test_the_step_says_what_else_the_node_needs() -> None:
    concerns = [
        Concern(OperatorStep.RESET_GPU, 6, "GPU6 XID 95: uncontained memory error", "xid_95"),
        Concern(OperatorStep.DRAIN_INSPECT, 7, "GPU7 clock event: thermal", "hw_thermal"),
        Concern(OperatorStep.DRAIN_REBOOT, 1, "GPU1 PCIe Gen3 < max Gen5", "pcie_downgraded"),
    ]
    s = suggest("gpu07", Level.FAILED, concerns)
    assert s.step is OperatorStep.DRAIN_REBOOT
    assert s.text.endswith("Also check the cooling and power of GPU7.")
    assert "reset GPU6" not in s.text  # the reboot resets it
    assert "'triage: GPU6 XID 95: uncontained memory error'" in (s.command or "")
    inspect = suggest("gpu07", Level.CRITICAL, concerns[:2])
    assert inspect.step is OperatorStep.DRAIN_INSPECT
    assert inspect.text.endswith("Also reset GPU6 while the node is drained.")
    assert inspect.command is not None and inspect.command.endswith("--action drain")


def test_an_agent_that_said_nothing_is_not_a_healthy_host() -> None:
    silent = judge(OneShotResult(host="gpu01", exit_status=0))
    assert (silent.level, silent.error_code) == (Level.UNKNOWN, "no_answer")
    garbled = judge(OneShotResult(host="gpu02", bad_lines=3, last_problem="protocol version 2"))
    assert garbled.error_code == "bad_stream" and "protocol version 2" in (garbled.error or "")
    assert garbled.status is PluginStatus.UNKNOWN and garbled.suggestion.command is None
