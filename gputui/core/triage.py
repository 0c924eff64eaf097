"""Triage: one host's deep pass (hello, samples, triage facts) judged into a report.

The health rules are the streaming monitor's own (core/health.py), fed the same way: the
kernel log's XIDs become `xid` events on the GPU their PCI address names, then the samples are
evaluated in order, so a triage verdict and a live verdict never disagree about the same
readings. What only triage knows (the PCI bus, an unreadable kernel log) adds findings
(core/triage_findings.py), and every finding gets NVIDIA's action and gputui's operator step
(core/triage_steps.py).
"""

from __future__ import annotations

import msgspec

from gputui.core.health import HostHealth
from gputui.core.hoststats import PluginStatus, fleet_status
from gputui.core.model import (
    Action,
    AgentError,
    Event,
    FleetSnapshot,
    GpuFacts,
    GpuInfo,
    GpuReading,
    Hello,
    HostSnapshot,
    HostState,
    HostVerdict,
    KernelXid,
    Level,
    Reason,
    Sample,
    TriageFacts,
    Verdict,
)
from gputui.core.thresholds import Thresholds
from gputui.core.triage_findings import (
    Finding,
    GpuMap,
    kernel_log_findings,
    pci_findings,
    unplaced_xid_findings,
)
from gputui.core.triage_steps import (
    SLURM_VOCABULARY,
    ActionVocabulary,
    Concern,
    OperatorStep,
    Suggestion,
    step_for,
    suggest,
)
from gputui.core.xid import xid_info

__all__ = [
    "Finding",
    "GpuTriage",
    "HostTriage",
    "OperatorStep",
    "Suggestion",
    "TriageInput",
    "TriageReport",
    "XidRecord",
    "assess_host",
    "build_report",
]


class XidRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A kernel-log XID placed on its GPU, with the catalogue's word on it."""

    xid: int
    pci_bus_id: str
    text: str
    meaning: str
    level: Level
    action: Action
    action_text: str
    gpu: int | None = None
    t: float | None = None
    pid: int | None = None
    process: str | None = None


class GpuTriage(msgspec.Struct, frozen=True, kw_only=True):
    """One GPU's verdict with everything read about it."""

    index: int
    level: Level
    step: OperatorStep
    action: Action  # NVIDIA's, the most disruptive of its findings
    info: GpuInfo | None = None
    reading: GpuReading | None = None  # from the last sample
    facts: GpuFacts | None = None
    findings: tuple[Finding, ...] = ()


class HostTriage(msgspec.Struct, frozen=True, kw_only=True):
    """One host's triage: verdict, suggestion, facts, GPUs, findings (worst first), XIDs."""

    host: str
    level: Level
    status: PluginStatus
    suggestion: Suggestion
    action: Action = Action.NONE  # NVIDIA's, the most disruptive of all findings
    error_code: str | None = None  # the host could not be triaged: why
    error: str | None = None
    hello: Hello | None = None
    facts: TriageFacts | None = None
    samples: int = 0
    gpus: tuple[GpuTriage, ...] = ()
    findings: tuple[Finding, ...] = ()
    xids: tuple[XidRecord, ...] = ()

    @property
    def reachable(self) -> bool:
        return self.error_code is None


class TriageReport(msgspec.Struct, frozen=True, kw_only=True):
    """Every triaged host, worst first, and the exit status of the whole run."""

    t: float
    status: PluginStatus
    hosts: tuple[HostTriage, ...]
    since_s: float | None = None  # kernel log window; None: since boot


class TriageInput(msgspec.Struct, frozen=True, kw_only=True):
    """What one host answered (collect/oneshot.py's result, without the transport)."""

    host: str
    hello: Hello | None = None
    samples: tuple[Sample, ...] = ()
    events: tuple[Event, ...] = ()
    errors: tuple[AgentError, ...] = ()
    facts: TriageFacts | None = None
    error_code: str | None = None
    error: str | None = None
    expected_gpus: int | None = None  # the host's `gpus` label: GPUs it should have


# -- assessment -------------------------------------------------------------------------------


def _finding(r: Reason) -> Finding:
    text = ""
    if r.code.startswith("xid_"):
        text = xid_info(int(r.code[4:])).action_text
    return Finding(
        code=r.code, level=r.level, text=r.text, gpu=r.gpu, action=r.action, action_text=text
    )


def _placed(xids: list[KernelXid], gpu_map: GpuMap) -> list[XidRecord]:
    out = []
    for x in sorted(xids, key=lambda x: (x.t is None, x.t or 0.0)):
        info = xid_info(x.xid)
        out.append(
            XidRecord(
                xid=x.xid,
                pci_bus_id=x.pci_bus_id,
                text=x.text,
                meaning=info.meaning,
                level=info.level,
                action=info.action,
                action_text=info.action_text,
                gpu=gpu_map.index(x.pci_bus_id),
                t=x.t,
                pid=x.pid,
                process=x.process,
            )
        )
    return out


def _health(
    inp: TriageInput, xids: list[XidRecord], thresholds: Thresholds | None
) -> HostVerdict | None:
    """The health rules over the run: XIDs and events first, then each sample in order."""
    if inp.hello is None or not inp.samples:
        return None
    health = HostHealth(thresholds)
    first_t = inp.samples[0].t
    for x in xids:
        t = x.t if x.t is not None else first_t
        event = Event(v=1, t=t, kind="xid", gpu=x.gpu, xid=x.xid, text=x.text)
        health.observe_event(event, t)
    for ev in sorted(inp.events, key=lambda e: e.t):
        health.observe_event(ev, ev.t)
    verdict = None
    for sample in inp.samples:
        verdict = health.evaluate(inp.hello, sample, sample.t)
    return verdict


def _extra_findings(inp: TriageInput, gpu_map: GpuMap) -> list[Finding]:
    out: list[Finding] = []
    facts, hello = inp.facts, inp.hello
    if facts is None:
        if hello is not None:
            text = "the agent sent no triage facts (kernel log, PCI bus): an older agent?"
            out.append(Finding(code="no_triage_facts", level=Level.UNKNOWN, text=text))
    else:
        out.extend(kernel_log_findings(facts))
        out.extend(pci_findings(hello, facts, gpu_map, inp.expected_gpus))
        xids = list(facts.xids)
        out.extend(unplaced_xid_findings(xids, gpu_map, facts))
        off = [g.index for g in facts.gpus if g.persistence_mode is False]
        if off:
            names = ", ".join(f"GPU{i}" for i in off)
            text = f"persistence mode off on {names}: every NVML client pays driver start-up"
            fix = "nvidia-smi -pm 1, or run nvidia-persistenced"
            out.append(Finding(code="persistence_off", level=Level.OK, text=text, fix=fix))
    if hello is not None and hello.backend == "smi":
        text = "read through nvidia-smi (no NVML bindings for the host's python): fewer signals"
        out.append(Finding(code="degraded_backend", level=Level.OK, text=text))
    for err in inp.errors:
        if not err.fatal:
            text = f"agent error {err.code}: {err.text}"
            out.append(Finding(code="agent_error", level=Level.WARN, text=text, gpu=err.gpu))
    if hello is not None and not inp.samples and inp.error_code is None:
        out.append(Finding(code="no_samples", level=Level.UNKNOWN, text="the agent sent no sample"))
    return out


def _order(findings: list[Finding]) -> tuple[Finding, ...]:
    """Worst first; among equals an XID first, as it names the fault most precisely (the
    reason of the suggested command is the first finding's text)."""

    def key(f: Finding) -> tuple[int, int, int, bool, str]:
        gpu = -1 if f.gpu is None else f.gpu
        return (-f.level, -f.action.rank, gpu, not f.code.startswith("xid_"), f.code)

    return tuple(sorted(findings, key=key))


def _concerns(findings: tuple[Finding, ...]) -> list[Concern]:
    return [
        Concern(step_for(f.code, f.level, f.action), f.gpu, f.text, f.code)
        for f in findings
        if f.level is not Level.OK
    ]


def _status(host: str, level: Level, reachable: bool) -> PluginStatus:
    # Built as the monitor's snapshot so the exit code follows `gputui report` exactly.
    snap = HostSnapshot(
        name=host,
        state=HostState.STREAMING if reachable else HostState.UNREACHABLE,
        verdict=HostVerdict(host=Verdict(level=level)),
    )
    return fleet_status(FleetSnapshot(t=0.0, hosts=(snap,)))


def assess_host(
    inp: TriageInput,
    thresholds: Thresholds | None = None,
    vocab: ActionVocabulary = SLURM_VOCABULARY,
) -> HostTriage:
    """Judge one host's triage run."""
    gpu_map = GpuMap(inp.hello, inp.facts)
    xids = _placed(list(inp.facts.xids) if inp.facts else [], gpu_map)
    verdict = _health(inp, xids, thresholds)
    findings = [_finding(r) for r in verdict.host.reasons] if verdict else []
    findings.extend(_extra_findings(inp, gpu_map))
    if inp.error_code is not None:
        text = inp.error or "not triaged"
        findings.append(Finding(code=inp.error_code, level=Level.UNKNOWN, text=text))
    ordered = _order(findings)
    level = max((f.level for f in ordered), default=Level.OK)
    if inp.hello is None or not inp.samples:
        level = max(level, Level.UNKNOWN)
    gpus = _gpu_rows(inp, verdict, ordered)
    action = max((f.action for f in ordered), key=lambda a: a.rank, default=Action.NONE)
    return HostTriage(
        host=inp.host,
        level=level,
        status=_status(inp.host, level, inp.error_code is None),
        suggestion=suggest(inp.host, level, _concerns(ordered), vocab),
        action=action,
        error_code=inp.error_code,
        error=inp.error,
        hello=inp.hello,
        facts=inp.facts,
        samples=len(inp.samples),
        gpus=gpus,
        findings=ordered,
        xids=tuple(xids),
    )


def _gpu_rows(
    inp: TriageInput, verdict: HostVerdict | None, findings: tuple[Finding, ...]
) -> tuple[GpuTriage, ...]:
    infos = {g.index: g for g in inp.hello.gpus} if inp.hello else {}
    last = inp.samples[-1] if inp.samples else None
    readings = {r.index: r for r in last.gpus} if last else {}
    facts = {g.index: g for g in inp.facts.gpus} if inp.facts else {}
    rows = []
    for idx in sorted(infos.keys() | readings.keys()):
        mine = tuple(f for f in findings if f.gpu == idx)
        level = max((f.level for f in mine), default=Level.OK)
        if verdict is not None and idx in verdict.gpus:
            level = max(level, verdict.gpus[idx].level)
        steps = [step_for(f.code, f.level, f.action) for f in mine]
        rows.append(
            GpuTriage(
                index=idx,
                level=level,
                step=max(steps, key=lambda s: s.rank, default=OperatorStep.NONE),
                action=max((f.action for f in mine), key=lambda a: a.rank, default=Action.NONE),
                info=infos.get(idx),
                reading=readings.get(idx),
                facts=facts.get(idx),
                findings=mine,
            )
        )
    return tuple(rows)


_PRECEDENCE = {
    PluginStatus.CRITICAL: 0,
    PluginStatus.UNKNOWN: 1,
    PluginStatus.WARNING: 2,
    PluginStatus.OK: 3,
}


def build_report(hosts: list[HostTriage], t: float, since_s: float | None) -> TriageReport:
    """The report: hosts worst first (by exit status as `gputui report` ranks them, then
    level, then name), and the run's exit status."""
    ordered = sorted(hosts, key=lambda h: (_PRECEDENCE[h.status], -h.level, h.host))
    snaps = tuple(
        HostSnapshot(
            name=h.host,
            state=HostState.STREAMING if h.reachable else HostState.UNREACHABLE,
            verdict=HostVerdict(host=Verdict(level=h.level)),
        )
        for h in ordered
    )
    status = fleet_status(FleetSnapshot(t=t, hosts=snaps))
    return TriageReport(t=t, status=status, hosts=tuple(ordered), since_s=since_s)
