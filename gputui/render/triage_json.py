"""`gputui triage --format json`: the report as a stable document (docs/triage.md).

Keys are only ever added within schema 1. Every host has the same keys (null when unknown);
a GPU's `readings` carry only what the agent reported, as in the protocol, because "absent"
and "zero" mean different things there.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import msgspec

from gputui.core.model import Level, clock_event_words
from gputui.core.triage import Finding, GpuTriage, HostTriage, TriageReport, XidRecord
from gputui.core.triage_steps import step_for

TRIAGE_SCHEMA_VERSION = 1


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return str(dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds"))


def finding_json(f: Finding) -> dict[str, Any]:
    return {
        "code": f.code,
        "level": f.level.label,
        "gpu": f.gpu,
        "text": f.text,
        "nvidia_action": f.action.value,
        "nvidia_action_text": f.action_text or None,
        "step": step_for(f.code, f.level, f.action).value,
        "fix": f.fix,
    }


def xid_json(x: XidRecord) -> dict[str, Any]:
    return {
        "time": iso(x.t),
        "t": x.t,
        "gpu": x.gpu,
        "pci_bus_id": x.pci_bus_id,
        "xid": x.xid,
        "meaning": x.meaning,
        "level": x.level.label,
        "nvidia_action": x.action.value,
        "nvidia_action_text": x.action_text,
        "text": x.text,
        "pid": x.pid,
        "process": x.process,
    }


_LIMITS = (
    "temp_shutdown_c",
    "temp_slowdown_c",
    "temp_gpu_max_c",
    "temp_mem_max_c",
    "power_limit_w",
    "sm_clock_max_mhz",
    "mem_clock_max_mhz",
    "pcie_gen_max",
    "pcie_width_max",
    "nvlink_count",
    "memory_total_mib",
    "ecc_enabled",
)


def gpu_json(g: GpuTriage) -> dict[str, Any]:
    info, r, facts = g.info, g.reading, g.facts
    readings: dict[str, Any] = {}
    if r is not None:
        readings = msgspec.to_builtins(r)
        for key in ("index", "status", "error", "processes"):
            readings.pop(key, None)
    return {
        "index": g.index,
        "name": info.name if info else None,
        "uuid": (info.uuid or None) if info else None,
        "serial": info.serial if info else None,
        "pci_bus_id": info.pci_bus_id if info else None,
        "status": r.status if r else None,
        "error": r.error if r else None,
        "level": g.level.label,
        "step": g.step.value,
        "nvidia_action": g.action.value,
        "limits": {k: getattr(info, k) for k in _LIMITS} if info else {},
        "readings": readings,
        "clock_events": clock_event_words(r.clock_events) if r and r.clock_events else [],
        "persistence_mode": facts.persistence_mode if facts else None,
        "nvlink_states": facts.nvlink_states if facts else None,
        "processes": [msgspec.to_builtins(p) for p in (r.processes or [])] if r else [],
        "findings": [f.code for f in g.findings],
    }


def facts_json(h: HostTriage) -> dict[str, Any]:
    hello, facts = h.hello, h.facts
    log = facts.kernel_log if facts else None
    return {
        "backend": hello.backend if hello else None,
        "agent_version": hello.agent_version if hello else None,
        "driver_version": hello.driver_version if hello else None,
        "nvml_version": hello.nvml_version if hello else None,
        "cuda_version": hello.cuda_version if hello else None,
        "persistence_mode": hello.persistence_mode if hello else None,
        "uptime_s": facts.uptime_s if facts else None,
        "kernel": facts.kernel if facts else None,
        "os": facts.os if facts else None,
        "user": facts.user if facts else None,
        "gpus_nvml": facts.nvml_gpu_count if facts else (len(hello.gpus) if hello else None),
        "gpus_pci": len(facts.pci_gpus) if facts and facts.pci_gpus is not None else None,
        "pci_gpus": [msgspec.to_builtins(p) for p in facts.pci_gpus]
        if facts and facts.pci_gpus is not None
        else None,
        "samples": h.samples,
        "sim_elapsed_s": facts.sim_elapsed_s if facts else None,
        "kernel_log": None
        if log is None
        else {
            "source": log.source,
            "readable": log.readable,
            "since": iso(log.since_t),
            "lines": log.lines,
            "error_code": log.error_code,
            "error": log.error,
            "dmesg_restrict": log.dmesg_restrict,
        },
    }


def host_json(h: HostTriage) -> dict[str, Any]:
    worst = next((f for f in h.findings if f.level > Level.OK), None)
    return {
        "host": h.host,
        "status": h.status.name,
        "level": h.level.label,
        "reachable": h.reachable,
        "error_code": h.error_code,
        "error": h.error,
        "why": worst.text if worst else "",
        "nvidia_action": h.action.value,
        "step": h.suggestion.step.value,
        "suggestion": h.suggestion.text,
        "command": h.suggestion.command,
        "facts": facts_json(h),
        "gpus": [gpu_json(g) for g in h.gpus],
        "findings": [finding_json(f) for f in h.findings],
        "xids": [xid_json(x) for x in h.xids],
    }


def triage_json(report: TriageReport) -> str:
    by_level: dict[str, int] = {}
    for h in report.hosts:
        by_level[h.level.label] = by_level.get(h.level.label, 0) + 1
    doc = {
        "schema": TRIAGE_SCHEMA_VERSION,
        "time": iso(report.t),
        "since_s": report.since_s,
        "status": report.status.name,
        "exit_code": int(report.status),
        "summary": {"hosts": len(report.hosts), "hosts_by_level": by_level},
        "hosts": [host_json(h) for h in report.hosts],
    }
    return json.dumps(doc, indent=2)
