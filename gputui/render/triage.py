"""`gputui triage` output for people: a summary table (worst first), then each host's details:
facts, a GPU table, findings with NVIDIA's action and gputui's step, the kernel log's XIDs,
and the `gputui node fail` command that takes the step. Markdown carries the same content for
tickets and chat. The JSON form lives in triage_json.py.

Most of a report is host text (names, XID and kernel-log lines, process names, errors): the
table form shows it through hosttext.py's Text and Console, never as markup or emoji
shortcodes, and the Markdown form escapes it.
"""

from __future__ import annotations

import textwrap

from rich.cells import cell_len
from rich.console import Console, OverflowMethod
from rich.table import Table
from rich.text import Text

from gputui.core.model import GpuReading, Level
from gputui.core.reasons import fmt_num
from gputui.core.triage import Finding, GpuTriage, HostTriage, TriageReport
from gputui.core.triage_steps import step_for
from gputui.render.hosttext import host_text, md, md_code, text_console
from gputui.render.report import LEVEL_STYLE
from gputui.render.triage_json import iso, triage_json

__all__ = ["MIN_WIDTH", "triage_json", "triage_markdown", "triage_table"]

#: The narrowest the table form is laid out for: narrower, its tables would say little.
MIN_WIDTH = 40
_GAP = 2  # cells between two columns of a table
_PROCS_MAX = 16  # the process list's cells, cut past this

# Clock-event bits in a few letters each, for a narrow column.
_EVENT_ABBREV = {
    0x1: "idle",
    0x4: "pwrcap",
    0x8: "HWslow",
    0x20: "SWtherm",
    0x40: "HWtherm",
    0x80: "brake",
}


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    days, rest = divmod(int(s), 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d {hours}h" if days else f"{hours}h {rest // 60}m"


def _worst(h: HostTriage) -> str:
    worst = next((f for f in h.findings if f.level > Level.OK), None)
    return worst.text if worst else ""


def _gpu_count(h: HostTriage) -> str:
    total = len(h.gpus)
    ok = sum(1 for g in h.gpus if g.reading is not None and g.reading.status == "ok")
    return str(total) if ok == total else f"{ok}/{total}"


def summary_line(report: TriageReport) -> str:
    counts: dict[str, int] = {}
    for h in report.hosts:
        counts[h.level.label] = counts.get(h.level.label, 0) + 1
    order = [lv.label for lv in sorted(Level, reverse=True)]  # failed first
    parts = ", ".join(f"{counts[label]} {label}" for label in order if label in counts)
    n = len(report.hosts)
    window = "since boot" if report.since_s is None else f"last {fmt_num(report.since_s)} s"
    return f"GPUTUI TRIAGE {report.status.name} - {n} host{'s' * (n != 1)}: {parts} ({window})"


def facts_lines(h: HostTriage) -> list[str]:
    """The host's facts in a few short lines."""
    hello, facts = h.hello, h.facts
    lines = []
    if hello is not None:
        pm = _persistence(h)
        lines.append(
            f"backend {hello.backend}, driver {hello.driver_version or '?'}, "
            f"NVML {hello.nvml_version or '?'}, CUDA {hello.cuda_version or '?'}, "
            f"persistence {pm}"
        )
    if facts is not None:
        lines.append(
            f"uptime {_duration(facts.uptime_s)}, kernel {facts.kernel or '?'}, "
            f"{facts.os or 'unknown OS'}, as {facts.user or '?'}"
        )
        bus = "?" if facts.pci_gpus is None else str(len(facts.pci_gpus))
        log = facts.kernel_log
        since = f"since {iso(log.since_t)}" if log.since_t else "since boot"
        state = f"{log.source}, {since}" if log.readable else f"NOT READABLE ({log.error_code})"
        lines.append(
            f"GPUs: {facts.nvml_gpu_count} in NVML, {bus} on the PCI bus; kernel log: {state}, "
            f"{len(h.xids)} XID{'s' * (len(h.xids) != 1)}"
        )
        if facts.sim_elapsed_s is not None:
            lines.append(f"simulated host, read {fmt_num(facts.sim_elapsed_s)} s into its scenario")
    return lines


def _persistence(h: HostTriage) -> str:
    """Persistence mode over the GPUs that said (a lost GPU says nothing)."""
    modes = [g.facts.persistence_mode for g in h.gpus if g.facts is not None]
    known = [m for m in modes if m is not None]
    if not known:
        return {True: "on", False: "off", None: "?"}[h.hello.persistence_mode if h.hello else None]
    on = sum(known)
    if on == len(known):
        state = "on"
    elif on == 0:
        state = "off"
    else:
        state = f"on for {on}"
    return (
        state if len(known) == len(h.gpus) else f"{state} ({len(known)} of {len(h.gpus)} GPUs said)"
    )


def _pair(value: float | None, limit: float | None) -> str:
    if value is None:
        return "-"
    return fmt_num(round(value)) + ("" if limit is None else f"/{fmt_num(round(limit))}")


def _events(mask: int | None) -> str:
    if not mask:
        return "-"
    return ",".join(name for bit, name in _EVENT_ABBREV.items() if mask & bit) or hex(mask)


def _ecc(r: GpuReading) -> str:
    if r.ecc_uncorrected_volatile is None and r.ecc_uncorrected_aggregate is None:
        return "-"
    vol = "-" if r.ecc_uncorrected_volatile is None else str(r.ecc_uncorrected_volatile)
    agg = "-" if r.ecc_uncorrected_aggregate is None else str(r.ecc_uncorrected_aggregate)
    return f"{vol}/{agg}"


def _remap(r: GpuReading) -> str:
    if r.remap_failure:
        return "FAILED"
    if r.remap_pending or r.retired_pages_pending:
        return "pending"
    if r.remap_uncorrected is not None:
        return f"{r.remap_corrected or 0}c/{r.remap_uncorrected}u"
    if r.retired_pages_dbe is not None:
        return f"{r.retired_pages_sbe or 0}s/{r.retired_pages_dbe}d"
    return "-"


def _pcie(g: GpuTriage, r: GpuReading) -> str:
    if r.pcie_gen is None and r.pcie_width is None:
        return "-"
    text = f"G{r.pcie_gen or '?'}x{r.pcie_width or '?'}"
    info = g.info
    if info is not None and (info.pcie_gen_max, info.pcie_width_max) != (r.pcie_gen, r.pcie_width):
        text += "<max"  # trained down (normal at idle; the findings judge it under load)
    return text + (f" r{r.pcie_replay}" if r.pcie_replay else "")


def _nvlink(g: GpuTriage, r: GpuReading) -> str:
    count = g.info.nvlink_count if g.info else None
    if not count or r.nvlink_active is None:
        return "-"
    errors = sum(
        v or 0 for v in (r.nvlink_replay, r.nvlink_recovery, r.nvlink_crc_flit, r.nvlink_crc_data)
    )
    return f"{r.nvlink_active}/{count}" + (f" e{errors}" if errors else "")


def gpu_cells(g: GpuTriage) -> list[str]:
    """GPU, verdict, temp/slowdown C, W/limit, util, SM MHz, ECC uncorrected volatile/aggregate,
    remap, PCIe (r: replays), NVLink active/links (e: errors), clock events, processes."""
    r, info = g.reading, g.info
    head = [str(g.index), g.level.label]
    if r is None or r.status != "ok":
        status = r.status if r is not None else "no reading"
        return [*head, status, *["-"] * 9]
    slowdown = info.temp_slowdown_c if info else None
    limit = (
        r.power_limit_w if r.power_limit_w is not None else (info.power_limit_w if info else None)
    )
    names = sorted({p.name or str(p.pid) for p in r.processes or []})
    procs = ",".join(names) if len(names) < 3 else f"{len(r.processes or [])} processes"
    return [
        *head,
        _pair(r.temp_c, slowdown),
        _pair(r.power_w, limit),
        "-" if r.util_pct is None else f"{r.util_pct:.0f}%",
        "-" if r.sm_clock_mhz is None else str(r.sm_clock_mhz),
        _ecc(r),
        _remap(r),
        _pcie(g, r),
        _nvlink(g, r),
        _events(r.clock_events),
        procs or "-",
    ]


GPU_HEADERS = [
    "GPU",
    "VERDICT",
    "TEMP",
    "POWER W",
    "UTIL",
    "SM MHz",
    "ECC UE",
    "REMAP",
    "PCIe",
    "NVLINK",
    "EVENTS",
    "PROCS",
]


def finding_line(f: Finding) -> str:
    step = step_for(f.code, f.level, f.action)
    nvidia = f.action_text or f.action.value
    text = f"[{f.level.label}] {f.text}"
    if nvidia not in f.text:  # health reasons of XIDs already end with NVIDIA's words
        text += f" | NVIDIA: {nvidia}"
    return f"{text} | gputui: {step.value}"


def xid_line(h: HostTriage, index: int) -> str:
    x = h.xids[index]
    who = f"GPU{x.gpu}" if x.gpu is not None else "GPU?"
    proc = f" (pid {x.pid}{' ' + x.process if x.process else ''})" if x.pid else ""
    return f"{iso(x.t) or 'time ?'} {who} {x.pci_bus_id} XID {x.xid} ({x.meaning}): {x.text}{proc}"


# -- table (terminal) -------------------------------------------------------------------------


def summary_table(report: TriageReport, width: int) -> Table:
    verdicts = [h.level.label if h.reachable else "unreachable" for h in report.hosts]
    cells = [
        [
            h.host,
            verdict,
            h.suggestion.step.value,
            _gpu_count(h) if h.gpus else "-",
            str(len(h.xids)),
        ]
        for h, verdict in zip(report.hosts, verdicts, strict=True)
    ]
    headers = ["HOST", "VERDICT", "STEP", "GPU", "XID"]
    widths = [max([len(head), *(len(row[i]) for row in cells)]) for i, head in enumerate(headers)]
    # Only WHY gives way to a narrow terminal: the other columns are what each row is about.
    room = max(10, width - sum(widths) - 2 * len(widths))
    table = Table(box=None, pad_edge=False, header_style="bold")
    for head, w in zip(headers, widths, strict=True):
        right = head in ("GPU", "XID")
        table.add_column(head, no_wrap=True, min_width=w, justify="right" if right else "left")
    table.add_column("WHY", no_wrap=True, overflow="ellipsis", max_width=room)
    for h, row in zip(report.hosts, cells, strict=True):
        why = _worst(h)
        if len(why) > room:
            why = why[: room - 1] + "…"
        host, verdict, *rest = row
        table.add_row(
            host_text(host), Text(verdict, style=LEVEL_STYLE[h.level]), *rest, host_text(why)
        )
    return table


def gpu_column_groups(widths: list[int], width: int) -> list[list[int]]:
    """The GPU table's columns (each `widths[i]` cells) in tables of at most `width` cells:
    as many as fit side by side, the rest in a table below, each table led by the GPU index
    (column 0) so its rows still say which GPU they are. Every column reads whole."""
    groups: list[list[int]] = [[0]]
    used = widths[0]
    for i in range(1, len(widths)):
        if used + _GAP + widths[i] > width and len(groups[-1]) > 1:
            groups.append([0])
            used = widths[0]
        groups[-1].append(i)
        used += _GAP + widths[i]
    return groups


def _gpu_tables(h: HostTriage, width: int) -> list[Table]:
    """The host's GPU table, in as many tables as the width needs (gpu_column_groups)."""
    rows = [gpu_cells(g) for g in h.gpus]
    room = max(width - len(GPU_HEADERS[0]) - _GAP, 1)  # beside the GPU index, on its own
    widths = [
        min(
            max([len(head), *(cell_len(row[i]) for row in rows)]),
            _PROCS_MAX if head == "PROCS" else room,
        )
        for i, head in enumerate(GPU_HEADERS)
    ]
    tables = []
    for group in gpu_column_groups(widths, width):
        table = Table(box=None, pad_edge=False, header_style="bold")
        for i in group:
            name = GPU_HEADERS[i]
            # Cells read whole; only the process list is cut, and what no line holds folds.
            overflow: OverflowMethod = "ellipsis" if name == "PROCS" else "fold"
            table.add_column(name, no_wrap=name == "PROCS", overflow=overflow, width=widths[i])
        for g, row in zip(h.gpus, rows, strict=True):
            style = LEVEL_STYLE[g.level] if g.level > Level.OK else ""
            # host_text: process names and errors are the host's words
            table.add_row(*(host_text(row[i]) for i in group), style=style)
        tables.append(table)
    return tables


def _host_details(console: Console, h: HostTriage) -> None:
    title = f"{h.host}: {h.level.label.upper()} -> {h.suggestion.step.value}"
    console.rule(host_text(title), align="left")
    width = console.width

    def say(text: str, indent: str = "", more: str = "") -> None:
        """A line of text wrapped at the width, its next lines indented by `more`."""
        lines = textwrap.wrap(
            text,
            width,
            initial_indent=indent,
            subsequent_indent=more or indent,
            break_on_hyphens=False,
        )
        for line in lines or [indent]:
            console.print(host_text(line), soft_wrap=True)  # "[failed]" is text, not a style

    if not h.reachable:
        say(f"not triaged: {h.error}")
    say(f"NVIDIA: {h.action.value}")
    say(f"gputui: {h.suggestion.text}")
    if h.suggestion.command:
        # One line however long, so that it pastes whole into a shell.
        console.print(host_text(f"command: {h.suggestion.command}"), soft_wrap=True)
    for line in facts_lines(h):
        say(line, more="  ")
    if h.gpus:
        for table in _gpu_tables(h, width):
            console.print(table)
    if h.findings:
        say("findings:")
        for f in h.findings:
            say(finding_line(f), "  - ", "    ")
            if f.fix:
                say(f"fix: {f.fix}", "    ", "      ")
    if h.xids:
        say("kernel log XIDs:")
        for i in range(len(h.xids)):
            say(xid_line(h, i), "  ", "    ")
    console.print()


def triage_table(report: TriageReport, width: int = 100) -> str:
    """The report for a terminal `width` cells wide (MIN_WIDTH at the least)."""
    width = max(width, MIN_WIDTH)
    console, buf = text_console(width)
    console.print(summary_table(report, width))
    console.print()
    console.print(summary_line(report))
    console.print()
    for h in report.hosts:
        _host_details(console, h)
    return buf.getvalue()


# -- Markdown ---------------------------------------------------------------------------------


def _md_host(h: HostTriage) -> list[str]:
    lines = [f"## {md(h.host)}: {h.level.label} -> {h.suggestion.step.value}", ""]
    if not h.reachable:
        lines += [f"Not triaged: {md(h.error or '')}", ""]
    lines += [
        f"- **NVIDIA's action:** {h.action.value}",
        f"- **gputui's step:** {md(h.suggestion.text)}",
    ]
    if h.suggestion.command:
        lines.append(f"- **Command:** {md_code(h.suggestion.command)}")
    lines += [f"- {md(line)}" for line in facts_lines(h)]
    lines.append("")
    if h.gpus:
        lines.append("| " + " | ".join(GPU_HEADERS) + " |")
        lines.append("|" + "---|" * len(GPU_HEADERS))
        lines += ["| " + " | ".join(md(c) for c in gpu_cells(g)) + " |" for g in h.gpus]
        lines.append("")
    if h.findings:
        lines.append("### Findings")
        lines.append("")
        for f in h.findings:
            lines.append(f"- {md(finding_line(f))}")
            if f.fix:
                lines.append(f"  - fix: {md(f.fix)}")
        lines.append("")
    if h.xids:
        lines.append("### Kernel log XIDs")
        lines.append("")
        lines += [f"- {md(xid_line(h, i))}" for i in range(len(h.xids))]
        lines.append("")
    return lines


def triage_markdown(report: TriageReport) -> str:
    lines = [
        f"# gputui triage ({iso(report.t)})",
        "",
        f"**{summary_line(report)}**",
        "",
        "| host | verdict | step | GPUs | XIDs | why |",
        "|---|---|---|---:|---:|---|",
    ]
    for h in report.hosts:
        verdict = h.level.label if h.reachable else "unreachable"
        gpus = _gpu_count(h) if h.gpus else "-"
        lines.append(
            f"| {md(h.host)} | {verdict} | {h.suggestion.step.value} | {gpus} | {len(h.xids)} | "
            f"{md(_worst(h))} |"
        )
    lines.append("")
    for h in report.hosts:
        lines += _md_host(h)
    return "\n".join(lines).rstrip("\n") + "\n"
