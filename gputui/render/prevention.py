"""`gputui prevent` output, and the texts and charts the TUI's Prevention tab shares with it.

The service list (gputui/core/prevention.py) as a table with each item's evidence, a chart of
its days and its advice below, stable JSON, or Markdown. The JSON form is a documented
interface (docs/prevention.md): keys are only ever added, and every number carries its unit in
its name. Host names, group names and the rules' evidence are shown as text through
render/hosttext.py, never read as markup.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from gputui.core.hoststats import PluginStatus
from gputui.core.model import Level
from gputui.core.prevention import ServiceItem, ServiceList
from gputui.core.trends import Finding, Point, Remedy, Subject
from gputui.render.hosttext import host_text, md, md_code, text_console
from gputui.render.report import LEVEL_STYLE

PREVENT_SCHEMA_VERSION = 1
DAY_S = 86_400
BARS = " ▁▂▃▄▅▆▇█"  # eighths of a character cell, blank first
SPARK = BARS[1:]  # a one-line chart: a day at the bottom of the range still shows
#: The remedies in one word each, for narrow columns.
REMEDY_WORDS = {Remedy.HARDWARE: "hardware", Remedy.COOLING: "cooling", Remedy.POWER: "power"}


@dataclass(frozen=True)
class PreventionReport:
    """Everything `gputui prevent` prints: the ranked list and what it was judged on."""

    service: ServiceList
    status: PluginStatus
    end: int | None  # the rules' "now": the end of the latest day judged (Unix s); None: none
    gpus: int  # GPUs with daily rollups
    hosts: int
    days: int  # days with a rollup of any GPU
    rate_source: str  # "prior" or "posterior": where the fleet's failure rate came from
    source: str  # where the rollups came from: a journal's path, or the simulated fleet
    note: str = ""  # why the status is UNKNOWN, or what was left out
    # A simulated fleet's hosts and the scenario each ran (`healthy`, `drift_ecc`, ...)
    simulated: tuple[tuple[str, str], ...] = ()


# --------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------


def subject_name(subject: Subject) -> str:
    """`gpu004 GPU3` for a GPU, `gpu004` for a whole node."""
    return subject.host if subject.gpu is None else f"{subject.host} GPU{subject.gpu}"


def remedy_text(item: ServiceItem, *, short: bool = False) -> str:
    """The item's remedies, worst finding's first: `improve cooling` (or `cooling`)."""
    words = [REMEDY_WORDS[r] if short else r.value for r in item.remedies]
    return ", ".join(words) if short else "; ".join(words)


def rules_text(item: ServiceItem) -> str:
    """`ecc_corrected_rising, remap_pending`: the rules that raised it, worst first."""
    return ", ".join(dict.fromkeys(f.rule for f in item.findings))


def percent(p: float) -> str:
    """A probability as a percentage to three significant digits: `1.43%`, `0.0721%`."""
    return f"{100.0 * p:.3g}%"


def day_text(day: int) -> str:
    """`2026-01-14`: a day's start as its UTC date."""
    return dt.datetime.fromtimestamp(day, dt.UTC).strftime("%Y-%m-%d")


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


def value_text(x: float) -> str:
    """A chart's value: whole numbers as such, others to three significant digits."""
    if math.isfinite(x) and x == round(x) and abs(x) < 1e7:
        return f"{x:.0f}"
    return f"{x:.3g}"


# --------------------------------------------------------------------------------------------
# Charts over days
# --------------------------------------------------------------------------------------------


def _by_day(points: Sequence[Point], columns: int) -> list[float | None]:
    """One value per day from the first day to the last (None: no data that day), at most
    `columns` of them: the latest, which are the ones an operator acts on."""
    if not points or columns <= 0:
        return []
    first, last = min(p.day for p in points), max(p.day for p in points)
    n = (last - first) // DAY_S + 1
    days: list[float | None] = [None] * n
    for p in points:
        days[(p.day - first) // DAY_S] = p.value
    return days[-columns:]


def _scale(values: Sequence[float], low: float | None, high: float | None) -> tuple[float, float]:
    """The chart's range: from zero (or the lowest value below it) to the highest value, so a
    bar's height reads as an amount; a flat series gets a range of one."""
    lo = min(0.0, *values) if low is None else low
    hi = max(values) if high is None else high
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def day_spark(
    points: Sequence[Point], width: int, low: float | None = None, high: float | None = None
) -> str:
    """The series as one line of block characters, a character a day (the latest `width`
    days), the lowest block for the bottom of the range and a space for a day without data."""
    days = _by_day(points, width)
    known = [v for v in days if v is not None]
    if not known:
        return ""
    lo, hi = _scale(known, low, high)
    steps = len(SPARK) - 1
    return "".join(
        " " if v is None else SPARK[round((min(max(v, lo), hi) - lo) / (hi - lo) * steps)]
        for v in days
    )


def day_chart(
    points: Sequence[Point],
    width: int,
    height: int,
    low: float | None = None,
    high: float | None = None,
) -> list[str]:
    """The series as a bar chart `height` rows high and at most `width` characters wide, with
    its highest and lowest value on the left and the first and last day under it.

    Each day is a column (up to six characters wide when there is room, a gap between days
    from three); blocks in eighths of a cell give each row eight steps. The latest days are
    kept when not all fit. Empty when the series is.
    """
    known = [p.value for p in points]
    if not known or height < 1:
        return []
    lo, hi = _scale(known, low, high)
    top, bottom = value_text(hi), value_text(lo)
    label_w = max(len(top), len(bottom))
    room = width - label_w - 2  # "label ┤" then the bars
    if room < 1:
        return []
    days = _by_day(points, room)
    # Up to six characters a day where there is room, the last of them a gap between days.
    column_w = max(1, min(6, room // len(days)))
    bar_w = column_w - 1 if column_w >= 3 else column_w
    gap = " " * (column_w - bar_w)
    lines = []
    for row in range(height - 1, -1, -1):
        label = top if row == height - 1 else bottom if row == 0 else ""
        tick = "┤" if label else "│"
        cells = []
        for v in days:
            if v is None:
                cells.append(" " * column_w)
                continue
            eighths = (min(max(v, lo), hi) - lo) / (hi - lo) * 8 * height
            filled = round(eighths) - row * 8
            if row == 0 and v > lo and round(eighths) == 0:
                filled = 1  # a day that counted anything shows
            cells.append(BARS[min(max(filled, 0), 8)] * bar_w + gap)
        lines.append(f"{label:>{label_w}} {tick}{''.join(cells)}".rstrip())
    last = max(p.day for p in points)
    first_shown = last - (len(days) - 1) * DAY_S
    axis_w = len(days) * column_w - len(gap)  # the last day's bar ends the axis
    start, end = day_text(first_shown)[5:], day_text(last)[5:]  # MM-DD
    axis = start if axis_w < len(start) + len(end) + 1 else f"{start:<{axis_w - len(end)}}{end}"
    lines.append(" " * (label_w + 2) + axis)
    return lines


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def summary_line(report: PreventionReport) -> str:
    items = report.service.items
    levels = [i.level for i in items]
    worse = sum(1 for lv in levels if lv >= Level.CRITICAL)
    text = f"GPUTUI {report.status.name} - "
    if not items:
        text += "nothing to service"
    else:
        text += f"{len(items)} to service"
        if worse:
            text += f" ({worse} critical or worse)"
    text += f"; {_count(report.gpus, 'GPU')} on {_count(report.hosts, 'host')}, "
    text += f"{_count(report.days, 'day')} of rollups"
    if report.end is not None:
        text += f" to {day_text(report.end - DAY_S)}"
    return text


def basis_line(report: PreventionReport) -> str:
    """What P30D and BENEFIT mean, with the rate they rest on."""
    s = report.service
    days = s.horizon_hours / 24
    return (
        f"P{days:.0f}D: the chance of a failure of its GPUs within {days:g} days as it is; "
        f"BENEFIT: the part of it servicing avoids, at the fleet's {report.rate_source} rate "
        f"{s.rate_per_gpu_hour:.2e} failures per GPU-hour"
    )


def figures_json(f: Finding) -> list[dict[str, Any]]:
    return [{"name": x.name, "value": x.value, "unit": x.unit} for x in f.evidence.figures]


def finding_json(f: Finding) -> dict[str, Any]:
    e = f.evidence
    return {
        "rule": f.rule,
        "level": f.level.label,
        "remedy": f.remedy.value,
        "advice": f.advice,
        "gpus": f.gpus,
        "hazard": f.hazard,
        "evidence": {
            "text": e.text,
            "figures": figures_json(f),
            "series_name": e.series_name,
            "series": [{"day": day_text(p.day), "value": p.value} for p in e.series],
        },
    }


def item_json(rank: int, item: ServiceItem) -> dict[str, Any]:
    s = item.subject
    return {
        "rank": rank,
        "host": s.host,
        "gpu": s.gpu,
        "uuid": s.uuid,
        "node": s.is_node,
        "gpus": item.gpus,
        "level": item.level.label,
        "remedies": [r.value for r in item.remedies],
        "hazard": item.hazard,
        "p_failure": item.p_failure,
        "p_failure_serviced": item.p_failure_serviced,
        "benefit": item.benefit,
        "failures_avoided": item.failures_avoided,
        "findings": [finding_json(f) for f in item.findings],
    }


def prevention_json(report: PreventionReport) -> str:
    s = report.service
    doc = {
        "schema": PREVENT_SCHEMA_VERSION,
        "status": report.status.name,
        "exit_code": int(report.status),
        "source": report.source,
        "note": report.note or None,
        "simulated": dict(report.simulated) if report.simulated else None,
        "end": _iso(report.end),
        "gpus": report.gpus,
        "hosts": report.hosts,
        "days": report.days,
        "rate_per_gpu_hour": s.rate_per_gpu_hour,
        "rate_source": report.rate_source,
        "horizon_hours": s.horizon_hours,
        "items": [item_json(i, item) for i, item in enumerate(s.items, 1)],
    }
    return json.dumps(doc, indent=2)


def _table(report: PreventionReport, width: int) -> Table:
    """The ranked list: every column but RULES at its natural width (SERVICE at most 28),
    RULES in what is left of the line, cut with an ellipsis: they are written out below."""
    items = report.service.items
    days = report.service.horizon_hours / 24
    rows = [
        (
            str(rank),
            subject_name(item.subject),
            item.level.label,
            percent(item.p_failure),
            percent(item.benefit),
            remedy_text(item, short=True),
            rules_text(item),
        )
        for rank, item in enumerate(items, 1)
    ]
    heads = ("#", "SERVICE", "LEVEL", f"P{days:.0f}D", "BENEFIT", "REMEDY", "RULES")
    natural = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    natural[1] = min(natural[1], 28)
    natural[1] = max(12, min(natural[1], width - sum(natural[2:6]) - natural[0] - 6 - 8))
    rules_w = max(8, width - sum(natural[:6]) - 6)
    table = Table(box=None, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold")
    for i, head in enumerate(heads):
        right = head in ("#", heads[3], "BENEFIT")
        table.add_column(
            head,
            justify="right" if right else "left",
            no_wrap=True,
            overflow="ellipsis",
            width=rules_w if head == "RULES" else natural[i],
        )
    for item, row in zip(items, rows, strict=True):
        table.add_row(
            row[0],
            host_text(row[1]),
            Text(row[2], style=LEVEL_STYLE[item.level]),
            *row[3:6],
            row[6],
        )
    return table


def finding_lines(f: Finding, width: int, chart_days: int = 30) -> list[Text]:
    """A finding in a few lines: rule and level, its evidence, a line of its days, advice."""
    head = Text.assemble((f.rule, "bold"), " (", (f.level.label, LEVEL_STYLE[f.level]), "): ")
    head.append_text(host_text(f.evidence.text))
    lines = [head]
    series = f.evidence.series
    if series:
        spark = day_spark(series, min(chart_days, max(8, width - 40)))
        values = [p.value for p in series]
        line = host_text(f"{f.evidence.series_name}, by day: ", "dim")
        line.append(spark, style="cyan")
        line.append(f"  {value_text(min(values))} .. {value_text(max(values))}", style="dim")
        lines.append(line)
    advice = Text(f"advice ({f.remedy.value}): ", style="bold")
    advice.append_text(host_text(f.advice))
    lines.append(advice)
    return lines


def prevention_table(report: PreventionReport, width: int = 80) -> str:
    """The ranked list in an 80-column terminal, each item's findings written out below it."""
    console, buf = text_console(width)
    items = report.service.items
    if items:
        console.print(_table(report, width))
    elif report.gpus:
        console.print("Nothing to service: no trend rule found a GPU or node drifting.")
    else:
        console.print("No rollups to judge.")
    console.print()
    console.print(summary_line(report))
    console.print(host_text(f"rollups: {report.source}"))
    if items:
        console.print(basis_line(report), soft_wrap=False)
    if report.note:
        console.print(host_text(report.note))
    for rank, item in enumerate(items, 1):
        console.print()
        head = Text(f"{rank}. ", style="bold")
        head.append_text(host_text(subject_name(item.subject), "bold"))
        head.append(f" ({item.level.label}", style=LEVEL_STYLE[item.level])
        head.append(
            f", {item.gpus} GPU{'s' if item.gpus != 1 else ''}): "
            if item.subject.is_node
            else "): "
        )
        head.append(remedy_text(item))
        console.print(head)
        for f in item.findings:
            for line in finding_lines(f, width - 3):
                console.print(Padding(line, (0, 0, 0, 3)))
    # Padding fills each line to the width: those spaces are no text.
    return "".join(line.rstrip() + "\n" for line in buf.getvalue().splitlines())


def prevention_markdown(report: PreventionReport) -> str:
    s = report.service
    days = s.horizon_hours / 24
    lines = [
        f"# gputui prevent ({_iso(report.end) or 'no rollups'})",
        "",
        f"**{md(summary_line(report))}**",
        "",
        f"Rollups: {md(report.source)}",
    ]
    if report.note:
        lines += ["", md(report.note)]
    if s.items:
        lines += [
            "",
            md(basis_line(report)),
            "",
            f"| # | service | level | P({days:.0f} d) | benefit | remedy | rules |",
            "|---:|---|---|---:|---:|---|---|",
        ]
        for rank, item in enumerate(s.items, 1):
            lines.append(
                f"| {rank} | {md(subject_name(item.subject))} | {item.level.label} | "
                f"{percent(item.p_failure)} | {percent(item.benefit)} | "
                f"{md(remedy_text(item))} | {md(rules_text(item))} |"
            )
    for rank, item in enumerate(s.items, 1):
        lines += ["", f"## {rank}. {md(subject_name(item.subject))} ({item.level.label})", ""]
        for f in item.findings:
            lines.append(f"- **{f.rule}** ({f.level.label}): {md(f.evidence.text)}")
            if f.evidence.series:
                spark = day_spark(f.evidence.series, 30)
                lines.append(f"  - {md(f.evidence.series_name)}, by day: {md_code(spark)}")
            lines.append(f"  - advice ({f.remedy.value}): {md(f.advice)}")
    return "\n".join(lines) + "\n"
