"""`gputui risk`: the fleet's failure risk, as a table that explains each figure, Markdown or
JSON; `gputui risk --nodes`: the journal's nodes ranked by their own failure rate (lemons).

The figures come from core.risk_report (pure) and their text from render.risk; this module
parses and validates the options, counts the fleet's GPUs and reads the journal. A bad input is
one line on stderr and exit status 2, never a traceback; the JSON schema is documented in
docs/risk.md.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import msgspec
import typer
from rich.console import Console

from gputui.cli.app import app
from gputui.cli.common import count_fleet_gpus, load_hosts
from gputui.core.risk import NodeRecord, RiskSettings
from gputui.core.risk_report import NodeRanking, RiskReport, node_ranking, risk_report
from gputui.ops.journal import Journal, JournalError, resolve_journal_path
from gputui.render.risk import (
    ranking_markdown,
    ranking_table,
    risk_json,
    risk_markdown,
    risk_tables,
)

_PROG = "gputui risk"


class _Fail(Exception):
    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _fail(message: str, code: int = 2) -> NoReturn:
    raise _Fail(message, code)


def _check(ok: bool, message: str) -> None:
    if not ok:
        _fail(message)


def _finite_at_least(value: float | None, flag: str, low: float, *, strict: bool = False) -> None:
    if value is None:
        return
    ok = math.isfinite(value) and (value > low if strict else value >= low)
    _check(ok, f"{flag} must be {'>' if strict else '>='} {low:g}, got {value:g}")


def _count_fleet_gpus(hosts: Path | None, demo: int | None) -> int:
    """GPUs of a live collection."""
    try:
        n = count_fleet_gpus(hosts, demo)
    except typer.Exit:
        raise  # the collector said why, and chose the exit status
    except Exception as exc:  # the command line's boundary: a message, not a traceback
        _fail(f"could not count the fleet's GPUs: {exc}", 1)
    if n <= 0:
        # Zero is what an unanswered collection looks like; a risk of 0 would be a lie.
        _fail("the collection found no GPU: no host answered with its inventory", 1)
    return n


def _journal_evidence(
    cli_path: Path | None, configured: Path | None
) -> tuple[int | None, float | None]:
    """Failures and monitored GPU-hours from the journal, or (None, None) without exposure.

    The monitor records both (gputui/ops/recorder.py); with none recorded yet, the prior
    alone is the honest estimate.
    """
    path = resolve_journal_path(cli_path, configured)
    if not path.exists():
        return None, None
    try:
        with Journal.open(path) as journal:
            failures, exposure = journal.failures_and_exposure()
    except JournalError as exc:
        _fail(f"cannot read the journal: {exc}", 1)
    return (failures, exposure) if exposure > 0 else (None, None)


def _journal_nodes(
    cli_path: Path | None, configured: Path | None
) -> tuple[list[NodeRecord], dict[str, int]]:
    """Each node's failures and monitored GPU-hours (the same rows the fleet's rate is learnt
    from), and how many times the operator marked it failed."""
    path = resolve_journal_path(cli_path, configured)
    if not path.exists():
        _fail(f"no journal at {path}: gputui writes one while it monitors (--journal PATH)", 1)
    try:
        with Journal.open(path) as journal:
            per_node = journal.per_node_failures_and_exposure()
            events = journal.node_events()
    except JournalError as exc:
        _fail(f"cannot read the journal: {exc}", 1)
    marks: dict[str, int] = {}
    for event in events:
        if event.state == "failed":
            marks[event.node] = marks.get(event.node, 0) + 1
    records = [
        NodeRecord(name=name, failures=f, exposure_gpu_hours=e) for name, (f, e) in per_node.items()
    ]
    # A node marked failed before the monitor ever watched it still belongs in the list.
    records += [
        NodeRecord(name=name, failures=0, exposure_gpu_hours=0.0)
        for name in sorted(marks.keys() - per_node.keys())
    ]
    return records, marks


# Options of the fleet report that mean nothing to the node ranking.
_FLEET_ONLY = (
    "--gpus",
    "--demo",
    "--hours",
    "--job-gpus",
    "--job-hours",
    "--checkpoint-minutes",
    "--restart-minutes",
    "--detect",
    "--recover-minutes",
    "--within-minutes",
    "--failures",
    "--exposure-gpu-hours",
    "--max-k",
)


def _validate(opts: dict[str, Any]) -> None:
    _check(
        opts["--format"] in ("table", "json", "markdown"),
        "--format must be table, json or markdown",
    )
    _finite_at_least(opts["--rate"], "--rate (failures per GPU-hour)", 0)
    if opts["--nodes"]:
        given = [f for f in _FLEET_ONLY if opts[f] is not None]
        _check(
            not given,
            f"--nodes ranks the journal's nodes; {', '.join(given)} only apply to the fleet",
        )
        _check(
            opts["--rate"] is None or opts["--rate"] > 0,
            "--rate must be > 0 with --nodes: nodes are compared with it",
        )
        return
    sources = [f for f in ("--gpus", "--hosts", "--demo") if opts[f] is not None]
    _check(len(sources) == 1, "give exactly one of --gpus N, --hosts PATH or --demo N")
    _check(opts["--gpus"] is None or opts["--gpus"] >= 1, "--gpus must be at least 1")
    _check(opts["--demo"] is None or opts["--demo"] >= 1, "--demo must be at least 1 host")
    _finite_at_least(opts["--hours"], "--hours", 0, strict=True)
    # Each value on its own first: a wrong one is the mistake to name, not a missing partner.
    _check(opts["--job-gpus"] is None or opts["--job-gpus"] >= 1, "--job-gpus must be at least 1")
    _finite_at_least(opts["--job-hours"], "--job-hours", 0, strict=True)
    _check(
        (opts["--job-gpus"] is None) == (opts["--job-hours"] is None),
        "--job-gpus and --job-hours go together: give both or neither",
    )
    _finite_at_least(opts["--checkpoint-minutes"], "--checkpoint-minutes", 0)
    _finite_at_least(opts["--restart-minutes"], "--restart-minutes", 0)
    detect = opts["--detect"]
    _check(
        detect is None or 0 <= detect <= 1,
        f"--detect is a probability and must be in [0, 1], got {detect}",
    )
    _finite_at_least(opts["--recover-minutes"], "--recover-minutes", 0, strict=True)
    _finite_at_least(opts["--within-minutes"], "--within-minutes", 0)
    _check(
        (opts["--failures"] is None) == (opts["--exposure-gpu-hours"] is None),
        "--failures and --exposure-gpu-hours go together: give both or neither",
    )
    _check(opts["--failures"] is None or opts["--failures"] >= 0, "--failures must be >= 0")
    _finite_at_least(opts["--exposure-gpu-hours"], "--exposure-gpu-hours", 0, strict=True)
    _check(
        opts["--rate"] is None or opts["--failures"] is None,
        "--rate takes the rate as known, --failures and --exposure-gpu-hours estimate it: "
        "give one or the other",
    )
    _check(opts["--max-k"] is None or 0 <= opts["--max-k"] <= 100, "--max-k must be in [0, 100]")


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


@app.command("risk")
def risk_command(
    gpus: Annotated[int | None, typer.Option("--gpus", help="Fleet size in GPUs.")] = None,
    hosts: Annotated[
        Path | None, typer.Option("--hosts", help="Count the GPUs of this hosts.toml's fleet.")
    ] = None,
    demo: Annotated[
        int | None, typer.Option("--demo", help="Count the GPUs of an N-host demo fleet.")
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option("--rate", help="Failures per GPU-hour (default: the Bayesian estimate)."),
    ] = None,
    hours: Annotated[
        float | None, typer.Option("--hours", help="Window T in hours; default 24.")
    ] = None,
    job_gpus: Annotated[int | None, typer.Option("--job-gpus", help="GPUs of a job.")] = None,
    job_hours: Annotated[
        float | None, typer.Option("--job-hours", help="Hours of the job.")
    ] = None,
    checkpoint_minutes: Annotated[
        float | None,
        typer.Option("--checkpoint-minutes", help="Minutes to write a checkpoint; default 1."),
    ] = None,
    restart_minutes: Annotated[
        float | None,
        typer.Option("--restart-minutes", help="Minutes of restart after a failure; default 10."),
    ] = None,
    detect: Annotated[
        float | None,
        typer.Option("--detect", help="Probability gamma that a failure is detected; default 0.9."),
    ] = None,
    recover_minutes: Annotated[
        float | None,
        typer.Option("--recover-minutes", help="Mean recovery time tau in minutes; default 10."),
    ] = None,
    within_minutes: Annotated[
        float | None,
        typer.Option("--within-minutes", help="t of P(recovery <= t) in minutes; default 10."),
    ] = None,
    failures: Annotated[
        int | None, typer.Option("--failures", help="Failures observed in the exposure.")
    ] = None,
    exposure_gpu_hours: Annotated[
        float | None, typer.Option("--exposure-gpu-hours", help="Monitored GPU-hours.")
    ] = None,
    max_k: Annotated[
        int | None, typer.Option("--max-k", help="List P(N = k) for k = 0..K; default 3.")
    ] = None,
    nodes: Annotated[
        bool,
        typer.Option(
            "--nodes",
            help="Rank the journal's nodes by their own failure rate against the fleet's "
            "(lemon nodes) instead of the fleet report.",
        ),
    ] = False,
    output_format: Annotated[
        str, typer.Option("--format", help="table, json or markdown.")
    ] = "table",
    journal: Annotated[
        Path | None,
        typer.Option(
            "--journal",
            help="Journal whose failures and monitored GPU-hours feed the Bayesian rate "
            "(with --hosts or --nodes; default: $GPUTUI_JOURNAL, hosts.toml's [journal], "
            "the state dir).",
        ),
    ] = None,
) -> None:
    """Estimate the fleet's failure risk, or rank its nodes.

    The Poisson fleet, job survival, detection, recovery and the Bayesian rate; with --nodes,
    the lemon nodes."""
    opts: dict[str, Any] = {
        "--gpus": gpus,
        "--hosts": hosts,
        "--demo": demo,
        "--rate": rate,
        "--hours": hours,
        "--job-gpus": job_gpus,
        "--job-hours": job_hours,
        "--checkpoint-minutes": checkpoint_minutes,
        "--restart-minutes": restart_minutes,
        "--detect": detect,
        "--recover-minutes": recover_minutes,
        "--within-minutes": within_minutes,
        "--failures": failures,
        "--exposure-gpu-hours": exposure_gpu_hours,
        "--max-k": max_k,
        "--nodes": nodes,
        "--format": output_format,
        "--journal": journal,
    }
    try:
        _validate(opts)
        result = _ranking(opts) if nodes else _report(opts)
    except _Fail as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        raise typer.Exit(exc.code) from None
    if output_format == "json":
        sys.stdout.write(risk_json(result))
    elif isinstance(result, NodeRanking):
        if output_format == "markdown":
            sys.stdout.write(ranking_markdown(result))
        else:
            Console().print(ranking_table(result))
    elif output_format == "markdown":
        sys.stdout.write(risk_markdown(result))
    else:
        Console().print(risk_tables(result))


_SETTING_OF_FLAG = {
    "--hours": "window_hours",
    "--job-gpus": "job_gpus",
    "--job-hours": "job_hours",
    "--checkpoint-minutes": "checkpoint_minutes",
    "--restart-minutes": "restart_minutes",
    "--detect": "detect_gamma",
    "--recover-minutes": "recover_minutes",
    "--within-minutes": "recover_target_minutes",
    "--max-k": "max_k",
}


def _report(opts: dict[str, Any]) -> RiskReport:
    overrides = {
        field: opts[flag] for flag, field in _SETTING_OF_FLAG.items() if opts[flag] is not None
    }
    base = RiskSettings()
    failures, exposure = opts["--failures"], opts["--exposure-gpu-hours"]
    if opts["--hosts"] is not None:
        config = load_hosts(opts["--hosts"])
        base = config.risk  # the site's [risk] table; options override it
        if failures is None and opts["--rate"] is None:
            failures, exposure = _journal_evidence(opts["--journal"], config.journal_path)
    settings = msgspec.structs.replace(base, **overrides)
    if opts["--gpus"] is not None:
        n_gpus, source = int(opts["--gpus"]), "given"
    else:
        n_gpus = _count_fleet_gpus(opts["--hosts"], opts["--demo"])
        source = "hosts" if opts["--hosts"] is not None else "demo"
    if settings.job_gpus is not None and settings.job_gpus > n_gpus:
        # Counted or configured: a job the fleet cannot hold has no survival to compute.
        job = (
            f"--job-gpus {settings.job_gpus}"
            if opts["--job-gpus"] is not None
            else f"[risk] job_gpus = {settings.job_gpus} in hosts.toml"
        )
        fleet = {
            "given": f"--gpus {n_gpus}",
            "hosts": f"the {n_gpus} GPUs counted on the hosts that answered",
            "demo": f"the demo's {n_gpus} GPUs",
        }[source]
        _fail(f"a job of {job} does not fit a fleet of {fleet}")
    try:
        return risk_report(
            n_gpus,
            settings,
            rate_per_gpu_hour=opts["--rate"],
            failures=failures,
            exposure_gpu_hours=exposure,
            gpus_source=source,
        )
    except ValueError as exc:
        _fail(str(exc))


def _ranking(opts: dict[str, Any]) -> NodeRanking:
    settings, configured = RiskSettings(), None
    if opts["--hosts"] is not None:
        config = load_hosts(opts["--hosts"])
        settings, configured = config.risk, config.journal_path
    records, marks = _journal_nodes(opts["--journal"], configured)
    try:
        return node_ranking(records, settings, rate_per_gpu_hour=opts["--rate"], marks=marks)
    except ValueError as exc:
        _fail(str(exc))
