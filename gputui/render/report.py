"""`gputui report` output: a fleet snapshot as a table, stable JSON, or Markdown.

The JSON form is a documented interface (docs/report.md): keys are only ever added, and every
number carries its unit in its name.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from rich.table import Table
from rich.text import Text

from gputui.core.hoststats import HostStats, PluginStatus, fleet_status, host_stats, host_status
from gputui.core.model import FleetSnapshot, GpuReading, HostSnapshot, HostState, Level, Reason
from gputui.core.reasons import advice
from gputui.core.words import counted
from gputui.render.hosttext import host_text, md, text_console

REPORT_SCHEMA_VERSION = 1

LEVEL_STYLE = {
    Level.OK: "green",
    Level.UNKNOWN: "dim",
    Level.WARN: "yellow",
    Level.CRITICAL: "bold red",
    Level.FAILED: "bold white on red",
}
STATE_STYLE = {
    HostState.STREAMING: "",
    HostState.DEGRADED: "yellow",
    HostState.CONNECTING: "dim",
    HostState.STALE: "magenta",
    HostState.RECONNECTING: "magenta",
    HostState.UNREACHABLE: "bold magenta",
    HostState.NO_GPU: "bold magenta",
}


def _round(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(x, nd)


def _iso(t: float) -> str:
    return str(dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds"))


def host_label(host: HostSnapshot) -> str:
    """What a host is, in one word: its verdict, or why there is none."""
    if host.marked_failed:
        return "marked-failed"
    return live_label(host)


_labelled: tuple[FleetSnapshot, tuple[str, ...]] | None = None


def fleet_labels(snapshot: FleetSnapshot) -> tuple[str, ...]:
    """host_label of each of the snapshot's hosts, in its order: worked out once per snapshot
    (the app's announcements, its summary line and the fleet table each need every host's)."""
    global _labelled
    if _labelled is not None and _labelled[0] is snapshot:
        return _labelled[1]
    labels = tuple(map(host_label, snapshot.hosts))
    _labelled = (snapshot, labels)
    return labels


def live_label(host: HostSnapshot) -> str:
    """What a host reads now, whether or not the operator marked it failed."""
    if host.state in UNREAD_STATES or host.state is HostState.CONNECTING:
        return str(host.state.value)
    return host.verdict.host.level.label


#: States in which a host's readings are not current: its last values are kept, not judged.
UNREAD_STATES = (
    HostState.UNREACHABLE,
    HostState.STALE,
    HostState.RECONNECTING,
    HostState.NO_GPU,
)


def host_why(host: HostSnapshot, now: float | None = None) -> str:
    """The one sentence that explains the label; with `now`, a host still connecting also says
    for how long it has been at its current step."""
    if host.state in UNREAD_STATES and host.state_reason:
        return host.state_reason
    if host.state is HostState.CONNECTING:
        since = host.reason_since
        if now is not None and since is not None and host.state_reason:
            return f"{host.state_reason} (for {max(0.0, now - since):.0f} s)"
        return host.state_reason
    worst = host.verdict.host.worst
    if worst is not None and worst.level > Level.OK:
        return worst.text
    if host.state is HostState.DEGRADED:
        return host.state_reason
    return ""


def _reason_json(r: Reason) -> dict[str, Any]:
    return {
        "code": r.code,
        "level": r.level.label,
        "text": r.text,
        "action": r.action.value,
        "gpu": r.gpu,
        "latched": r.latched,
    }


def _gpu_json(host: HostSnapshot, r: GpuReading) -> dict[str, Any]:
    info = next((g for g in host.hello.gpus if g.index == r.index), None) if host.hello else None
    verdict = host.verdict.gpus.get(r.index)
    return {
        "index": r.index,
        "uuid": info.uuid if info else None,
        "name": info.name if info else None,
        "status": r.status,
        "level": verdict.level.label if verdict else "unknown",
        "util_pct": r.util_pct,
        "temp_c": r.temp_c,
        "power_w": _round(r.power_w),
        "power_limit_w": _round(
            r.power_limit_w
            if r.power_limit_w is not None
            else (info.power_limit_w if info else None)
        ),
        "mem_used_mib": r.mem_used_mib,
        "mem_reserved_mib": r.mem_reserved_mib,
        "mem_total_mib": info.memory_total_mib if info else None,
        "sm_clock_mhz": r.sm_clock_mhz,
        "clock_events": r.clock_events,
        "processes": _processes_json(host, r.index),
        "reasons": [_reason_json(x) for x in verdict.reasons] if verdict else [],
    }


def _processes_json(host: HostSnapshot, index: int) -> list[dict[str, Any]] | None:
    """The GPU's compute processes from the last slow sample (None: not read yet)."""
    if host.slow_sample is None:
        return None
    reading = next((g for g in host.slow_sample.gpus if g.index == index), None)
    if reading is None or reading.processes is None:
        return None
    return [
        {"pid": p.pid, "name": p.name, "used_memory_mib": p.used_memory_mib}
        for p in reading.processes
    ]


def host_json(host: HostSnapshot, now: float) -> dict[str, Any]:
    stats = host_stats(host)
    verdict = host.verdict.host
    age = host.age_s(now)
    return {
        "name": host.name,
        "state": host.state.value,
        "state_reason": host.state_reason,
        "status": host_status(host).name,
        "level": verdict.level.label,
        "label": host_label(host),
        "why": host_why(host, now),
        "reason_since": _iso(host.reason_since) if host.reason_since is not None else None,
        "action": verdict.action.value,
        "marked_failed": host.marked_failed,
        "spare": host.spare,
        "labels": dict(host.labels),
        "backend": host.backend,
        "driver_version": host.hello.driver_version if host.hello else None,
        "sample_age_s": _round(age, 2),
        "gpus_total": stats.gpus,
        "gpus_reporting": stats.gpus_reporting,
        "util_mean_pct": _round(stats.util_mean_pct),
        "temp_max_c": stats.temp_max_c,
        "power_w": _round(stats.power_w),
        "power_limit_w": _round(stats.power_limit_w),
        "mem_used_mib": _round(stats.mem_used_mib, 0),
        "mem_total_mib": _round(stats.mem_total_mib, 0),
        "decode_errors": host.decode_errors,
        "reasons": [_reason_json(r) for r in verdict.reasons],
        "gpus": [_gpu_json(host, r) for r in host.sample.gpus] if host.sample else [],
    }


def summary(snapshot: FleetSnapshot) -> dict[str, Any]:
    by_label: dict[str, int] = {}
    gpus = 0
    for h in snapshot.hosts:
        by_label[host_label(h)] = by_label.get(host_label(h), 0) + 1
        gpus += len(h.hello.gpus) if h.hello else 0
    return {"hosts": len(snapshot.hosts), "gpus": gpus, "hosts_by_label": by_label}


def report_json(snapshot: FleetSnapshot) -> str:
    status = fleet_status(snapshot)
    doc = {
        "schema": REPORT_SCHEMA_VERSION,
        "time": _iso(snapshot.t),
        "status": status.name,
        "exit_code": int(status),
        "summary": summary(snapshot),
        "hosts": [host_json(h, snapshot.t) for h in _ordered(snapshot)],
    }
    return json.dumps(doc, indent=2)


def _ordered(snapshot: FleetSnapshot) -> list[HostSnapshot]:
    """Worst first (the order an operator reads in), then by name."""
    order = {
        PluginStatus.CRITICAL: 0,
        PluginStatus.UNKNOWN: 1,
        PluginStatus.WARNING: 2,
        PluginStatus.OK: 3,
    }
    return sorted(
        snapshot.hosts,
        key=lambda h: (order[host_status(h)], -h.verdict.host.level, h.name),
    )


def summary_line(snapshot: FleetSnapshot) -> str:
    s = summary(snapshot)
    status = fleet_status(snapshot)
    parts = ", ".join(f"{n} {label}" for label, n in sorted(s["hosts_by_label"].items()))
    fleet = f"{counted(s['hosts'], 'host')}, {counted(s['gpus'], 'GPU')}"
    return f"GPUTUI {status.name} - {fleet}: {parts}"


def _fmt(x: float | None, unit: str = "", nd: int = 0) -> str:
    return "-" if x is None else f"{x:.{nd}f}{unit}"


def _power(stats: HostStats) -> str:
    if stats.power_w is None:
        return "-"
    if stats.power_limit_w:
        return f"{stats.power_w / 1000:.1f}/{stats.power_limit_w / 1000:.1f}"
    return f"{stats.power_w / 1000:.1f}"


def report_table(snapshot: FleetSnapshot, width: int = 80) -> str:
    """A table that reads in an 80-column terminal; details of troubled hosts below it."""
    table = Table(box=None, pad_edge=False, expand=True, header_style="bold")
    hosts = _ordered(snapshot)
    # Names and states keep their width (up to 24 for a name); the explanation takes the rest.
    name_w = min(24, max((len(h.name) for h in hosts), default=4))
    state_w = max((len(host_label(h)) for h in hosts), default=5)
    table.add_column("HOST", no_wrap=True, overflow="ellipsis", min_width=name_w, max_width=24)
    table.add_column("STATE", no_wrap=True, min_width=state_w)
    table.add_column("GPU", justify="right", no_wrap=True, min_width=3)
    table.add_column("UTIL", justify="right", no_wrap=True, min_width=4)
    table.add_column("TEMP", justify="right", no_wrap=True, min_width=4)
    table.add_column("kW", justify="right", no_wrap=True, min_width=7)
    table.add_column("WHY", overflow="ellipsis", no_wrap=True, ratio=1, min_width=10)
    for h in hosts:
        stats = host_stats(h)
        label = host_label(h)
        style = (
            STATE_STYLE.get(h.state, "")
            if label in (s.value for s in HostState)
            else LEVEL_STYLE[h.verdict.host.level]
        )
        if h.hello is None:
            gpus = "-"
        elif stats.gpus_reporting != stats.gpus and h.sample is not None:
            gpus = f"{stats.gpus_reporting}/{stats.gpus}"
        else:
            gpus = str(stats.gpus)
        dim = h.state in UNREAD_STATES
        table.add_row(
            host_text(h.name),  # host text as Text: never read as markup or emoji shortcodes
            Text(label, style=style),
            gpus,
            _fmt(stats.util_mean_pct, "%"),
            _fmt(stats.temp_max_c, "C"),
            _power(stats),
            host_text(host_why(h, snapshot.t)),
            style="dim" if dim else "",
        )
    console, buf = text_console(width)
    console.print(table)
    console.print()
    console.print(summary_line(snapshot))
    unread = [h for h in hosts if h.state in (*UNREAD_STATES, HostState.CONNECTING)]
    if unread:
        console.print()
        for h in unread:  # the full reason: the table may have cut it
            console.print(host_text(f"{h.name}: {h.state.value}: {host_why(h, snapshot.t)}"))
    details = [h for h in hosts if h.verdict.host.level >= Level.WARN and not h.marked_failed]
    if details:
        console.print()
        for h in details:
            verdict = h.verdict.host
            recommended = advice(verdict.action, verdict.level)
            console.print(host_text(f"{h.name}: {verdict.level.label}, recommended: {recommended}"))
            for r in verdict.reasons[:8]:
                line = f"  - [{r.level.label}] {r.text} -> {advice(r.action, r.level)}"
                console.print(host_text(line), soft_wrap=False)
            if len(h.verdict.host.reasons) > 8:
                console.print(f"  ... {len(h.verdict.host.reasons) - 8} more")
    return buf.getvalue()


def report_markdown(snapshot: FleetSnapshot) -> str:
    lines = [
        f"# gputui fleet report ({_iso(snapshot.t)})",
        "",
        f"**{summary_line(snapshot)}**",
        "",
        "| host | state | GPUs | util | max temp | power kW | why | action |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for h in _ordered(snapshot):
        stats = host_stats(h)
        why = md(host_why(h, snapshot.t))
        lines.append(
            f"| {md(h.name)} | {host_label(h)} | {stats.gpus} | {_fmt(stats.util_mean_pct, '%')} | "
            f"{_fmt(stats.temp_max_c, ' C')} | {_power(stats)} | {why} | "
            f"{advice(h.verdict.host.action, h.verdict.host.level)} |"
        )
    return "\n".join(lines) + "\n"
