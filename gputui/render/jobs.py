"""`gputui jobs` output, and the cell texts the TUI's Jobs tab shares with it.

Each running job with its hosts and GPUs, user, worst verdict (reason and NVIDIA's action), run
time, step rate, P(survive 24 h) and checkpoint interval, as a table, stable JSON or Markdown.
The JSON form is a documented interface (docs/jobs.md): keys are only ever added, and every
number carries its unit in its name. Job ids, names, users and host names are host text: they
are shown through render/hosttext.py, never read as markup.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ClusterShell.NodeSet import RESOLVER_NOGROUP, NodeSet, NodeSetException
from rich.console import JustifyMethod
from rich.table import Table
from rich.text import Text

from gputui.core.hoststats import PluginStatus
from gputui.core.jobs import Job, JobGpu, PlainProcesses, gpu_readings
from gputui.core.model import FleetSnapshot, GpuReading, Level, Reason
from gputui.core.reasons import advice
from gputui.core.words import counted
from gputui.render.hosttext import host_text, md, text_console
from gputui.render.report import LEVEL_STYLE
from gputui.render.risk import hours, probability

JOBS_SCHEMA_VERSION = 1

# Words of an unread host's GPUs: they keep the host's own colours of the fleet report.
_STATE_STYLE = {
    "unreachable": "bold magenta",
    "no-gpu": "bold magenta",
    "stale": "magenta",
    "reconnecting": "magenta",
    "connecting": "dim",
}


def label_style(label: str) -> str:
    """The style of a health word (a HEALTH_LABELS word of core.jobs)."""
    if label in _STATE_STYLE:
        return _STATE_STYLE[label]
    try:
        return LEVEL_STYLE[Level[label.upper()]]
    except KeyError:
        return ""


# --------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------


def job_title(job: Job) -> str:
    """`slurm:4242`; a pod by namespace/name when its host says them (a UID is 36 characters)."""
    if job.kind == "k8s":
        if job.name:
            return f"k8s:{job.namespace}/{job.name}" if job.namespace else f"k8s:{job.name}"
        return f"k8s:{job.id[:8]}"
    return job.key


def fold_hosts(names: Sequence[str]) -> str:
    """`gpu[001-004]`: host names folded as Slurm and pdsh write them (ClusterShell)."""
    return _fold(tuple(names))


# A job's hosts change seldom and the live view folds them every tick: NodeSet parses each name
# (about 0.1 ms a job), so the folds of the jobs running are kept.
@functools.lru_cache(maxsize=4096)
def _fold(names: tuple[str, ...]) -> str:
    if not names:
        return "-"
    try:
        return str(NodeSet.fromlist(list(names), resolver=RESOLVER_NOGROUP))
    except NodeSetException:  # a name NodeSet cannot read (brackets of its own): list them
        return ",".join(names)


def runtime(job: Job, now: float) -> str:
    """`3h12m`; from first seen it is a lower bound: `>3h12m`; `-` when unknown."""
    seconds = job.runtime_s(now)
    if seconds is None:
        return "-"
    text = span(seconds)
    return f">{text}" if job.start_source == "first_seen" else text


def span(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def step_rate(job: Job) -> str:
    r = job.step_rate_per_s
    return "-" if r is None else f"{r:.3g}"


def survival(job: Job) -> str:
    return "-" if job.risk is None else probability(job.risk.p_survive_24h)


def checkpoint(job: Job) -> str:
    """The job's checkpoint interval; `never` at a rate of 0, `-` without a rate."""
    if job.risk is None:
        return "-"
    return hours(job.risk.checkpoint_interval_h, glance=True)


def why(job: Job) -> str:
    """The worst GPU's reason, where it is, and NVIDIA's action: `gpu004 GPU5 ... -> drain`."""
    health = job.health
    if not health.why:
        return ""
    where = f"{health.host}: " if health.host and len(job.hosts) > 1 else ""
    text = f"{where}{health.why}"
    if health.action.value != "none":
        text += f" -> {health.action.value}"
    return text


@dataclass(frozen=True)
class JobCells:
    """One job's row as plain strings (host text included: the caller shows it as text)."""

    job: str
    name: str
    user: str
    gpus: str
    hosts: str
    state: str
    run: str
    steps: str
    p24h: str
    ckpt: str
    why: str


def job_cells(job: Job, now: float) -> JobCells:
    seen = len(job.gpus)
    gpus = str(seen) if job.gpu_count == seen else f"{seen}/{job.gpu_count}"
    return JobCells(
        job=job_title(job),
        name=(job.name or "-") if job.kind == "slurm" else "-",
        user=job.user or "-",
        gpus=gpus,
        hosts=fold_hosts(job.hosts),
        state=job.health.label,
        run=runtime(job, now),
        steps=step_rate(job),
        p24h=survival(job),
        ckpt=checkpoint(job),
        why=why(job),
    )


def cut(text: str, width: int, *, middle: bool = False) -> str:
    """`text` in at most `width` characters, an ellipsis for what is left out: at the end, or
    in the middle for names whose end tells them apart (a pod's `llm-serve-7d9f-x2k4q`)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    if not middle:
        return text[: width - 1] + "…"
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


def plain_line(leftover: PlainProcesses, limit: int = 6) -> str:
    """`5 GPU processes serve no job, on gpu001 (3), gpu007 (2)`; "" when there are none."""
    if not leftover.count:
        return ""
    shown = ", ".join(f"{name} ({n})" for name, n in leftover.hosts[:limit])
    more = len(leftover.hosts) - limit
    if more > 0:
        shown += f" and {more} more host{'s' if more > 1 else ''}"
    noun = "process serves" if leftover.count == 1 else "processes serve"
    return f"{leftover.count} GPU {noun} no job, on {shown}"


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobsReport:
    """Everything `gputui jobs` prints: the jobs, what is left over, and where it came from."""

    snapshot: FleetSnapshot
    jobs: Sequence[Job]
    status: PluginStatus
    leftover: PlainProcesses
    unread: Sequence[str]  # hosts in service whose processes are not known now
    rate_per_gpu_hour: float | None = None
    rate_source: str | None = None  # prior or posterior
    note: str = ""  # why the scheduler was not asked, or what it said


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return str(dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds"))


def _reason_json(r: Reason | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"code": r.code, "level": r.level.label, "text": r.text, "action": r.action.value}


def _r(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(x, nd)


def gpu_json(g: JobGpu, r: GpuReading | None) -> dict[str, Any]:
    return {
        "host": g.host,
        "index": g.gpu,
        "pids": list(g.pids),
        "label": g.label,
        "level": g.level.label,
        "why": g.why,
        "action": g.action.value,
        "util_pct": r.util_pct if r else None,
        "sm_clock_mhz": r.sm_clock_mhz if r else None,
        "power_w": _r(r.power_w) if r else None,
        "temp_c": r.temp_c if r else None,
        "mem_used_mib": r.mem_used_mib if r else None,
        "mem_total_mib": g.memory_total_mib,
        # From the training process's heartbeat on this GPU (docs/training.md); null: none.
        "rank": g.rank,
        "step_time_s": g.step_time_s,
        "compute_s": g.compute_s,
        "relative_speed": g.relative_speed,
    }


def job_json(job: Job, snapshot: FleetSnapshot) -> dict[str, Any]:
    now = snapshot.t
    h = job.health
    risk = job.risk
    interval = risk.checkpoint_interval_h if risk is not None else None
    return {
        "key": job.key,
        "kind": job.kind,
        "id": job.id,
        "name": job.name,
        "namespace": job.namespace,
        "user": job.user,
        "state": job.state,
        "hosts": list(job.hosts),
        "nodes": list(job.nodes),
        "gpus_seen": len(job.gpus),
        "gpus_total": job.gpu_count,
        "label": h.label,
        "level": h.level.label,
        "why": h.why,
        "action": h.action.value,
        "worst_host": h.host,
        "worst_gpu": h.gpu,
        "reason": _reason_json(h.reason),
        "start_time": _iso(job.start_t),
        "start_source": job.start_source,
        "runtime_s": _r(job.runtime_s(now), 0),
        "step_rate_per_s": job.step_rate_per_s,
        "p_survive_24h": risk.p_survive_24h if risk is not None else None,
        "checkpoint_interval_min": _r(interval * 60, 2) if interval is not None else None,
        "mtbf_h": risk.mtbf_h if risk is not None else None,
        "gpus": [
            gpu_json(g, r) for g, r in zip(job.gpus, gpu_readings(job, snapshot), strict=True)
        ],
    }


def jobs_json(report: JobsReport) -> str:
    doc = {
        "schema": JOBS_SCHEMA_VERSION,
        "time": _iso(report.snapshot.t),
        "status": report.status.name,
        "exit_code": int(report.status),
        "rate_per_gpu_hour": report.rate_per_gpu_hour,
        "rate_source": report.rate_source,
        "note": report.note or None,
        "jobs": [job_json(j, report.snapshot) for j in report.jobs],
        "plain_processes": {
            "count": report.leftover.count,
            "hosts": dict(report.leftover.hosts),
        },
        "hosts_unread": list(report.unread),
    }
    return json.dumps(doc, indent=2)


def summary_line(report: JobsReport) -> str:
    n = len(report.jobs)
    gpus = sum(len(j.gpus) for j in report.jobs)
    hosts = len({h for j in report.jobs for h in j.hosts})
    text = f"GPUTUI {report.status.name} - {n} job{'' if n == 1 else 's'}"
    text += f" on {gpus} GPU{'' if gpus == 1 else 's'} of {hosts} host{'' if hosts == 1 else 's'}"
    return text


def _footer(report: JobsReport) -> list[str]:
    lines = []
    if report.rate_per_gpu_hour is not None and report.jobs:
        lines.append(
            f"P24H and CKPT: each job's own GPUs at the fleet's {report.rate_source or ''} rate "
            f"{report.rate_per_gpu_hour:.2e} failures per GPU-hour"
        )
    leftover = plain_line(report.leftover)
    if leftover:
        lines.append(leftover)
    if report.unread:
        names = ", ".join(report.unread[:6]) + (" ..." if len(report.unread) > 6 else "")
        lines.append(f"processes not known on {counted(len(report.unread), 'host')}: {names}")
    if report.note:
        lines.append(report.note)
    return lines


def gpu_ranges(indices: Sequence[int]) -> str:
    """`GPU0-3,6`: GPU indices as ranges."""
    parts: list[str] = []
    run: list[int] = []
    for i in sorted(indices):
        if run and i != run[-1] + 1:
            parts.append(_run(run))
            run = []
        run.append(i)
    if run:
        parts.append(_run(run))
    return "GPU" + ",".join(parts)


def _run(run: list[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"


def trouble_lines(job: Job, limit: int = 8) -> list[str]:
    """The job's GPUs that have something to say, one line per host and reason."""
    groups: dict[tuple[str, str, str, str], list[int]] = {}
    for g in job.gpus:
        if g.why:
            groups.setdefault((g.host, g.label, g.why, g.action.value), []).append(g.gpu)
    lines = []
    for (host, label, text, action), indices in list(groups.items())[:limit]:
        line = f"  - {host} {gpu_ranges(indices)} [{label}] {text}"
        lines.append(line + (f" -> {action}" if action != "none" else ""))
    if len(groups) > limit:
        lines.append(f"  ... {len(groups) - limit} more")
    return lines


# Columns of the table but WHY: header, justify, the widest a cell may be. Names and hosts are
# cut past these (the JSON has them whole); WHY takes what is left of the line, and is left out
# below WHY_MIN_WIDTH: the reasons of troubled jobs are written out under the table anyway.
WHY_MIN_WIDTH = 16


def _fit(natural: list[int], caps: list[int], width: int, why: bool) -> tuple[list[int], bool, int]:
    """Column widths for a line of `width` (one space between columns), whether WHY is shown
    (`why`: some job has a reason), and what is left for it: every column whole if WHY still
    gets WHY_MIN_WIDTH; else names and hosts cut to their caps; and when WHY does not fit even
    so, or no job needs it, it is left out and its room goes back to the columns that were
    cut, the one that lacks least first, so that as many as can be are shown whole."""
    n = len(natural)
    need = WHY_MIN_WIDTH + 1 if why else 0
    if width - sum(natural) - (n - 1) >= need:
        return natural, why, width - sum(natural) - n
    widths = [min(w, cap) for w, cap in zip(natural, caps, strict=True)]
    left = width - sum(widths) - n
    if why and left >= WHY_MIN_WIDTH:
        return widths, True, left
    spare = width - sum(widths) - (n - 1)
    for i in sorted(range(n), key=lambda i: natural[i] - widths[i]):
        grow = min(max(0, spare), natural[i] - widths[i])
        widths[i] += grow
        spare -= grow
    return widths, False, 0


def jobs_table(report: JobsReport, width: int = 80) -> str:
    """A table that reads in an 80-column terminal; the troubled jobs' reasons below it.

    The name and step-rate columns appear only when some job has one."""
    rows = [job_cells(j, report.snapshot.t) for j in report.jobs]
    columns: list[tuple[str, JustifyMethod, int, Callable[[JobCells], str]]] = [
        ("JOB", "left", 20, lambda c: c.job)
    ]
    if any(c.name != "-" for c in rows):
        columns.append(("NAME", "left", 16, lambda c: c.name))
    columns += [
        ("USER", "left", 10, lambda c: c.user),
        ("GPUS", "right", 9, lambda c: c.gpus),
        ("HOSTS", "left", 16, lambda c: c.hosts),
        ("STATE", "left", 11, lambda c: c.state),
        ("RUN", "right", 7, lambda c: c.run),
    ]
    if any(c.steps != "-" for c in rows):
        columns.append(("STEP/s", "right", 7, lambda c: c.steps))
    columns += [("P24H", "right", 5, lambda c: c.p24h), ("CKPT", "right", 7, lambda c: c.ckpt)]
    natural = [max([len(head)] + [len(get(c)) for c in rows]) for head, _, _, get in columns]
    caps = [cap for _, _, cap, _ in columns]
    widths, with_why, left = _fit(natural, caps, width, any(c.why for c in rows))
    table = Table(box=None, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold")
    for (head, justify, _, _), w in zip(columns, widths, strict=True):
        table.add_column(
            head,
            justify=justify,
            no_wrap=True,
            overflow="ellipsis",
            width=w,
        )
    if with_why:
        table.add_column("WHY", no_wrap=True, overflow="ellipsis", max_width=left)
    for c in rows:
        cells: list[Text] = []
        for (head, _, _, get), w in zip(columns, widths, strict=True):
            value = get(c)
            if head == "STATE":
                cells.append(Text(value, style=label_style(value)))
            else:
                cells.append(host_text(cut(value, w, middle=head == "JOB")))
        if with_why:
            cells.append(host_text(c.why))
        table.add_row(*cells)
    console, buf = text_console(width)
    if rows:
        with console.capture() as captured:
            console.print(table)
        # Cells are padded to their column's width: the last column's padding is no text.
        buf.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
    else:
        console.print("No job on the fleet's GPUs.")
    console.print()
    console.print(summary_line(report))
    for line in _footer(report):
        console.print(host_text(line), soft_wrap=True)
    troubled = [j for j in report.jobs if j.health.level >= Level.WARN or j.health.why]
    if troubled:
        console.print()
    for job in troubled:
        h = job.health
        head = f"{job_title(job)}: {h.label}, recommended: {advice(h.action, h.level)}"
        console.print(host_text(head), soft_wrap=True)
        for line in trouble_lines(job):
            console.print(host_text(line), soft_wrap=True)
    return buf.getvalue()


def jobs_markdown(report: JobsReport) -> str:
    lines = [
        f"# gputui jobs ({_iso(report.snapshot.t)})",
        "",
        f"**{summary_line(report)}**",
        "",
        "| job | name | user | GPUs | hosts | state | run | steps/s | P(24 h) | checkpoint | why |",
        "|---|---|---|---:|---|---|---:|---:|---:|---:|---|",
    ]
    for job in report.jobs:
        c = job_cells(job, report.snapshot.t)
        lines.append(
            f"| {md(c.job)} | {md(c.name)} | {md(c.user)} | {c.gpus} | {md(c.hosts)} | "
            f"{c.state} | {md(c.run)} | {c.steps} | {c.p24h} | {c.ckpt} | {md(c.why)} |"
        )
    footer = _footer(report)
    if footer:
        lines.append("")
        lines += [md(line) + "  " for line in footer]
    return "\n".join(lines) + "\n"
