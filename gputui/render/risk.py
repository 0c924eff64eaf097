"""The risk report as text: `gputui risk`'s tables, Markdown and JSON, the lemon-node ranking
of `gputui risk --nodes`, and the TUI's risk panel.

One module formats every risk figure so that the CLI and the panel cannot drift apart. The
table spells each figure out with its formula, for an operator who checks it; the panel is read
at a glance, so it rounds spans to days past 48 hours and says less. The JSON forms are the
encodings of `RiskReport` and `NodeRanking`, documented in docs/risk.md. Node names come from
the journal, which recorded what hosts.toml or a host said: they are host text, shown plain.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import msgspec
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from gputui.core.risk_summary import HORIZONS, RiskFigures
from gputui.render.hosttext import host_text, md

if TYPE_CHECKING:
    from gputui.core.risk_report import NodeRanking, RankedNode, RiskReport

# --------------------------------------------------------------------------------------------
# Figures as text
# --------------------------------------------------------------------------------------------


def probability(p: float) -> str:
    return f"{p:.3f}"


def rate(x: float) -> str:
    return f"{x:.2e}/GPU-h"


def hours(h: float | None, *, glance: bool = False) -> str:
    """A span given in hours; `never` when there is none (a failure rate of 0).

    `glance` is the panel's form: days past 48 hours, whole minutes under one hour.
    """
    if h is None or not math.isfinite(h):
        return "never"
    if glance and h >= 48:
        return f"{h / 24:,.1f} d"
    if h >= 1:
        return f"{h:,.1f} h"
    return f"{h * 60:.0f} min" if glance else f"{h * 60:,.1f} min"


def minutes(m: float | None, *, glance: bool = False) -> str:
    """A span given in minutes; the panel's form moves to hours and days past two hours."""
    if m is None:
        return "-" if glance else "never"
    if glance and m >= 120:
        return hours(m / 60, glance=True)
    return f"{m:,.1f} min"


# --------------------------------------------------------------------------------------------
# gputui risk: one table per section, or JSON
# --------------------------------------------------------------------------------------------

Row = tuple[str, str, str]  # figure, value, what it means


def risk_sections(report: RiskReport) -> list[tuple[str, list[Row]]]:
    """The report as titled sections of rows: figure, value and one line of meaning."""
    r = report
    sections: list[tuple[str, list[Row]]] = []

    f = r.fleet
    max_k = len(f.pmf) - 1
    rows: list[Row] = [
        ("expected failures", f"{f.expected_failures:.3g}", "Lambda = n x rate x hours")
    ]
    for term in f.pmf:
        what = {0: "no failure", 1: "exactly 1 failure"}.get(term.k, f"exactly {term.k} failures")
        rows.append((f"P(N = {term.k})", probability(term.p), f"{what} in the window (Poisson)"))
    rows += [
        (f"P(N > {max_k})", probability(f.p_more_than_max_k), f"more than {max_k} failures"),
        ("P(N >= 1)", probability(f.p_at_least_one), "at least one failure: 1 - e^-Lambda"),
        (
            "failures to plan for",
            f"{f.failures_p95}",
            "N stays at or below this with probability 0.95",
        ),
        ("fleet MTBF", hours(f.mtbf_hours), "mean time between failures anywhere: 1 / (n x rate)"),
    ]
    title = (
        f"Fleet: {r.gpus:,} GPUs ({r.gpus_source}), {r.hours:g} h window, "
        f"rate {rate(r.rate_per_gpu_hour)} ({r.rate_source})"
    )
    sections.append((title, rows))

    d = r.detection
    sections.append(
        (
            f"Detection: each failure caught with probability gamma = {d.gamma:g}",
            [
                ("expected undetected", f"{d.expected_undetected:.3g}", "(1 - gamma) x Lambda"),
                (
                    "P(no undetected failure)",
                    probability(d.p_no_undetected_failure),
                    "e^-((1 - gamma) x Lambda)",
                ),
            ],
        )
    )

    v = r.recovery
    sections.append(
        (
            f"Recovery: exponential, mean tau = {v.mean_minutes:g} min",
            [
                (
                    f"P(recovery <= {v.target_minutes:g} min)",
                    probability(v.p_within_target),
                    "1 - e^(-t / tau)",
                ),
                (
                    "fleet availability",
                    probability(v.fleet_availability),
                    "share of time no GPU is down, repairs overlapping: e^-(n x rate x tau)",
                ),
                (
                    "GPUs down on average",
                    f"{v.expected_gpus_down:.3g}",
                    "n x rate x tau: GPUs in repair at any moment",
                ),
                ("GPU availability", f"{v.gpu_availability:.6f}", "share of GPUs up, on average"),
            ],
        )
    )

    if r.job is not None:
        j, c = r.job, r.job.checkpoint
        sections.append(
            (
                f"Job: {j.gpus:,} GPUs for {j.hours:g} h",
                [
                    (
                        "P(job survives)",
                        probability(j.survival_probability),
                        "no failure on any of its GPUs: e^-(k x rate x D)",
                    ),
                    (
                        "expected failures",
                        f"{j.expected_failures:.3g}",
                        "k x rate x D: restarts to expect",
                    ),
                    (
                        "job MTTF",
                        hours(j.mttf_hours),
                        "mean time to the job's first failure: 1 / (k x rate)",
                    ),
                    (
                        "checkpoint every (Young)",
                        minutes(c.young_interval_minutes),
                        f"sqrt(2 x write x MTTF), write = {c.write_minutes:g} min",
                    ),
                    (
                        "checkpoint every (Daly)",
                        minutes(c.daly_interval_minutes),
                        "Young's interval minus the write time",
                    ),
                    (
                        "ETTR at the optimum",
                        probability(c.ettr_at_optimum),
                        f"share of time training; restart = {c.restart_minutes:g} min",
                    ),
                ],
            )
        )

    b = r.bayes
    if b is None:
        sections.append(
            (
                "Failure rate: given, taken as known",
                [
                    (
                        "rate",
                        rate(r.rate_per_gpu_hour),
                        "--rate: every figure above uses it; no prior, no record",
                    )
                ],
            )
        )
        return sections + _health_adjusted_sections(r)
    rows = [
        (
            "prior mean",
            rate(b.prior_mean_per_gpu_hour),
            f"Gamma({b.prior_alpha:g}, {b.prior_beta_gpu_hours:,.0f} GPU-h)",
        ),
    ]
    if b.failures is not None and b.exposure_gpu_hours is not None:
        observed = (
            "n/a" if b.observed_rate_per_gpu_hour is None else rate(b.observed_rate_per_gpu_hour)
        )
        rows.append(
            (
                "observed rate",
                observed,
                f"{b.failures} failures in {b.exposure_gpu_hours:,.0f} GPU-h",
            )
        )
    ci = b.credible_95
    rows += [
        (
            "posterior mean",
            rate(b.posterior_mean_per_gpu_hour),
            "(alpha + failures) / (beta + GPU-hours)",
        ),
        (
            "95% credible interval",
            f"{ci.low:.2e} - {ci.high:.2e}",
            "the rate lies here with probability 0.95",
        ),
    ]
    if b.garwood_95 is not None:
        g = b.garwood_95
        rows.append(
            (
                "95% Garwood interval",
                f"{g.low:.2e} - {g.high:.2e}",
                "exact confidence interval of the record alone",
            )
        )
    rows.append(
        (
            "P(no failure in window)",
            probability(b.p_no_failure_in_window),
            f"predictive over the rate's uncertainty, {b.window_exposure_gpu_hours:,.0f} GPU-h",
        )
    )
    sections.append(("Failure rate: Gamma prior updated by the record", rows))
    return sections + _health_adjusted_sections(r)


def _health_adjusted_sections(r: RiskReport) -> list[tuple[str, list[Row]]]:
    h = r.health_adjusted
    if h is None:
        return []
    rows: list[Row] = [
        ("adjusted rate", rate(h.rate_per_gpu_hour), "each GPU's rate x its verdict's multiplier"),
        ("P(N >= 1)", probability(h.p_at_least_one), "at least one failure at the adjusted rate"),
    ]
    return [("Health-adjusted (a heuristic: the multipliers are not calibrated)", rows)]


def risk_tables(report: RiskReport) -> Group:
    """One table per section, columns aligned across them."""
    tables = []
    for title, rows in risk_sections(report):
        table = Table(
            title=title,
            title_justify="left",
            title_style="bold cyan",
            show_header=False,
            box=None,
            padding=(0, 1),
        )
        table.add_column("figure", style="bold", width=24, no_wrap=True)
        table.add_column("value", justify="right", width=19, no_wrap=True)
        table.add_column("what it means", overflow="fold")
        for row in rows:
            table.add_row(*row)
        tables.append(table)
    return Group(*tables)


def risk_markdown(report: RiskReport) -> str:
    """The same sections as Markdown: a heading and a table each."""
    lines = ["# gputui risk", ""]
    for title, rows in risk_sections(report):
        lines += [f"## {md(title)}", "", "| figure | value | what it means |", "|---|---:|---|"]
        lines += [f"| {md(a)} | {md(b)} | {md(c)} |" for a, b, c in rows]
        lines.append("")
    return "\n".join(lines)


def risk_json(report: RiskReport | NodeRanking) -> str:
    """The stable JSON form (docs/risk.md), indented, with a final newline."""
    return msgspec.json.format(msgspec.json.encode(report), indent=2).decode() + "\n"


# --------------------------------------------------------------------------------------------
# gputui risk --nodes: the lemon-node ranking
# --------------------------------------------------------------------------------------------


def ranking_title(r: NodeRanking) -> str:
    record = ""
    if r.failures is not None and r.exposure_gpu_hours is not None:
        record = f", {r.failures} failures in {r.exposure_gpu_hours:,.0f} GPU-h"
    nodes = f"{len(r.nodes):,} node{'' if len(r.nodes) == 1 else 's'}"
    fleet = f"{rate(r.rate_per_gpu_hour)} ({r.rate_source}{record})"
    return f"Lemon nodes: {nodes} against the fleet's {fleet}"


def ranking_note(r: NodeRanking) -> str:
    strength = r.node_prior_strength_failures
    return (
        "Worst first by posterior rate, with each node's prior at the fleet's rate worth "
        f"{strength:g} failure{'' if strength == 1 else 's'}. "
        "failures: fault episodes; GPU-h: "
        "monitored; marked: times marked failed (not counted); P(lemon) = P(rate > "
        f"{r.lemon_factor:g} x the fleet's); P(record) = P(at least its failures at the "
        "fleet's rate)."
    )


# Short headers: the table fits 80 columns; the note under it says what each one is.
_RANKING_COLUMNS = (
    "node",
    "failures",
    "GPU-h",
    "marked",
    "rate/GPU-h",
    "95% interval",
    "P(lemon)",
    "P(record)",
)


def _ranking_cells(n: RankedNode) -> tuple[str, ...]:
    ci = n.credible_95
    return (
        f"{n.failures}",
        f"{n.exposure_gpu_hours:,.0f}",
        f"{n.times_marked_failed}",
        f"{n.mean_per_gpu_hour:.2e}",
        f"{ci.low:.1e}-{ci.high:.1e}",
        probability(n.p_lemon),
        probability(n.p_record_at_fleet_rate),
    )


def _lemon_style(n: RankedNode) -> str:
    return "bold red" if n.p_lemon >= 0.95 else "yellow" if n.p_lemon >= 0.5 else ""


def ranking_table(r: NodeRanking, *, limit: int | None = None) -> Group:
    """The ranking as a table under its title and a note on how to read it.

    `limit` keeps the worst nodes only (the panel); the rest are counted in one line.
    """
    table = Table(
        title=ranking_title(r),
        title_justify="left",
        title_style="bold cyan",
        box=None,
        padding=(0, 1),
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column(_RANKING_COLUMNS[0], overflow="fold")  # a long name wraps, never cut
    for name in _RANKING_COLUMNS[1:]:
        table.add_column(name, justify="right", no_wrap=True)
    shown = r.nodes if limit is None else r.nodes[:limit]
    for n in shown:
        style = _lemon_style(n)
        table.add_row(host_text(n.name, style), *_ranking_cells(n), style=style)
    parts: list[RenderableType] = [table]
    if not r.nodes:
        parts.append(Text("The journal has no node with a record yet.", style="dim"))
    if len(shown) < len(r.nodes):
        more = len(r.nodes) - len(shown)
        parts.append(Text(f"... and {more:,} more node{'' if more == 1 else 's'}", style="dim"))
    parts.append(Text(ranking_note(r), style="dim"))
    return Group(*parts)


def ranking_markdown(r: NodeRanking) -> str:
    lines = [
        f"# {md(ranking_title(r))}",
        "",
        md(ranking_note(r)),
        "",
        "| " + " | ".join(_RANKING_COLUMNS) + " |",
        "|---|" + "---:|" * (len(_RANKING_COLUMNS) - 1),
    ]
    lines += [
        "| " + " | ".join((md(n.name), *(md(c) for c in _ranking_cells(n)))) + " |" for n in r.nodes
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# The TUI's risk panel
# --------------------------------------------------------------------------------------------


PANEL_NODES = 10  # the worst nodes the panel lists; `gputui risk --nodes` lists all


def _panel_table(title: str) -> Table:
    table = Table(
        title=title,
        title_justify="left",
        title_style="bold",
        show_header=False,
        box=None,
        padding=(0, 1),
        expand=False,
    )
    table.add_column("figure", no_wrap=True, min_width=26)
    table.add_column("value", overflow="fold")
    return table


def risk_panel(f: RiskFigures) -> RenderableType:
    """The panel: the calibrated model first, the heuristic apart and labelled."""
    i = f.inputs
    lo, hi = f.rate_interval
    hosts = f"{i.hosts:,} host{'' if i.hosts == 1 else 's'}"
    fleet = _panel_table(f"Fleet failure risk: {i.gpus:,} GPUs monitored on {hosts}")
    record = ""
    if i.failures is not None and i.exposure_gpu_hours is not None:
        record = f", {i.failures} failures in {i.exposure_gpu_hours:,.0f} GPU-h"
    fleet.add_row(
        "rate used",
        f"{rate(f.rate)} ({f.rate_source}{record}; 95% {lo:.1e} - {hi:.1e})",
    )
    for (_, name), p in zip(HORIZONS, f.p_any, strict=True):
        fleet.add_row(f"P(>= 1 failure) in {name}", probability(p))
    fleet.add_row("expected failures per day", f"{f.failures_per_day:.3g}")
    fleet.add_row("fleet MTBF", hours(f.mtbf_hours, glance=True))

    parts: list[RenderableType] = [fleet, Text()]
    if f.job_gpus is not None and f.job_hours is not None:
        how = "configured" if f.job_configured else "no job configured: the whole fleet"
        job = _panel_table(f"Job: {f.job_gpus:,} GPUs for {f.job_hours:g} h ({how})")
        job.add_row(
            "P(job survives)", probability(f.job_survival) if f.job_survival is not None else "-"
        )
        job.add_row("job MTTF", hours(f.job_mttf_hours, glance=True))
        young = minutes(f.checkpoint_young_min, glance=True)
        daly = minutes(f.checkpoint_daly_min, glance=True)
        job.add_row(
            "checkpoint every",
            f"{young} (Young), {daly} (Daly); write {f.checkpoint_write_min:g} min",
        )
        parts += [job, Text()]
    if f.adjusted_rate is not None:
        levels = ", ".join(f"{n} {lv.label}" for lv, n in i.gpus_by_level if n)
        adj = _panel_table("Health-adjusted (heuristic, not calibrated)")
        adj.add_row("GPUs by verdict", levels or "-")
        adj.add_row("adjusted rate", f"{rate(f.adjusted_rate)} (verdict multipliers)")
        for (_, name), p in zip(HORIZONS, f.adjusted_p_any, strict=True):
            adj.add_row(f"P(>= 1 failure) in {name}", probability(p))
        parts.append(adj)
    if f.ranking is not None:
        parts += [Text(), ranking_table(f.ranking, limit=PANEL_NODES)]
    return Group(*parts)
