"""`gputui risk`: the fleet's failure risk, as a table that explains each figure, or as JSON.

The figures come from core.risk_report (pure) and their text from render.risk; this module
parses and validates the options and counts the fleet's GPUs. A bad input is one line on
stderr and exit status 2, never a traceback; the JSON schema is documented in docs/risk.md.
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
from gputui.core.risk import RiskSettings
from gputui.core.risk_report import RiskReport, risk_report
from gputui.ops.journal import Journal, JournalError, resolve_journal_path
from gputui.render.risk import risk_json, risk_tables

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


def _validate(opts: dict[str, Any]) -> None:
    sources = [f for f in ("--gpus", "--hosts", "--demo") if opts[f] is not None]
    _check(len(sources) == 1, "give exactly one of --gpus N, --hosts PATH or --demo N")
    _check(opts["--gpus"] is None or opts["--gpus"] >= 1, "--gpus must be at least 1")
    _check(opts["--demo"] is None or opts["--demo"] >= 1, "--demo must be at least 1 host")
    _finite_at_least(opts["--rate"], "--rate (failures per GPU-hour)", 0)
    _finite_at_least(opts["--hours"], "--hours", 0, strict=True)
    _check(
        (opts["--job-gpus"] is None) == (opts["--job-hours"] is None),
        "--job-gpus and --job-hours go together: give both or neither",
    )
    _check(opts["--job-gpus"] is None or opts["--job-gpus"] >= 1, "--job-gpus must be at least 1")
    _finite_at_least(opts["--job-hours"], "--job-hours", 0, strict=True)
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
    _check(opts["--max-k"] is None or 0 <= opts["--max-k"] <= 100, "--max-k must be in [0, 100]")
    _check(opts["--format"] in ("table", "json"), "--format must be table or json")


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
    output_format: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
    journal: Annotated[
        Path | None,
        typer.Option(
            "--journal",
            help="Journal whose failures and monitored GPU-hours feed the Bayesian rate "
            "(with --hosts; default: $GPUTUI_JOURNAL, hosts.toml's [journal], the state dir).",
        ),
    ] = None,
) -> None:
    """Fleet failure risk: Poisson fleet, job survival, detection, recovery, Bayesian rate."""
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
        "--format": output_format,
        "--journal": journal,
    }
    try:
        _validate(opts)
        report = _report(opts)
    except _Fail as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        raise typer.Exit(exc.code) from None
    if output_format == "json":
        sys.stdout.write(risk_json(report))
    else:
        Console().print(risk_tables(report))


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
