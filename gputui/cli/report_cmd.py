"""`gputui report`: one consistent fleet snapshot for cron, scripts and monitoring plugins."""

from __future__ import annotations

import asyncio
import enum
import shutil
from pathlib import Path
from typing import Annotated

import typer

from gputui.cli.app import app
from gputui.cli.common import collect_once, fail
from gputui.cli.exits import PluginCommand
from gputui.cli.options import WorkersOption, workers_problem
from gputui.core.hoststats import fleet_status
from gputui.render.report import report_json, report_markdown, report_table

#: The furthest into a scenario a report starts the demo: every packaged fault has happened by
#: then (the demo spreads them over its first ten minutes), and each simulated host steps its
#: state there before its first sample, which takes seconds per simulated hour.
MAX_SIM_ELAPSED_S = 3600.0


class ReportFormat(str, enum.Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


@app.command(cls=PluginCommand)
def report(
    hosts: Annotated[
        Path | None,
        typer.Option(
            "--hosts", help="hosts.toml (default: $GPUTUI_HOSTS, then the user config dir)"
        ),
    ] = None,
    demo: Annotated[
        int | None,
        typer.Option("--demo", help="Report on N simulated hosts behind local SSH servers instead"),
    ] = None,
    fmt: Annotated[
        ReportFormat, typer.Option("--format", help="Output format")
    ] = ReportFormat.table,
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for every host to answer")
    ] = 15.0,
    sim_elapsed: Annotated[
        float | None,
        typer.Option(
            "--sim-elapsed",
            metavar="SECONDS",
            help="With --demo: start the simulated hosts this far into their scenarios, so "
            f"their faults have happened (0 to {MAX_SIM_ELAPSED_S:g}; default 0)",
        ),
    ] = None,
    workers: WorkersOption = None,
) -> None:
    """Print one snapshot of the fleet, for cron and monitoring.

    It is taken once every host answered, or when --wait has passed.

    Exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (a host unreachable or unread, unless a
    host is critical; or a bad argument or hosts file), as monitoring plugins report.
    """
    if hosts is not None and demo is not None:
        raise fail("--hosts and --demo exclude each other")
    if demo is not None and not 1 <= demo <= 5000:
        raise fail("--demo takes a number of hosts from 1 to 5000")
    if wait <= 0:
        raise fail("--wait must be a positive number of seconds")
    if sim_elapsed is not None and demo is None:
        raise fail("--sim-elapsed needs --demo: only simulated hosts have a scenario to start into")
    if sim_elapsed is not None and not 0 <= sim_elapsed <= MAX_SIM_ELAPSED_S:
        raise fail(f"--sim-elapsed takes 0 to {MAX_SIM_ELAPSED_S:g} seconds")
    if (problem := workers_problem(workers)) is not None:
        raise fail(problem)
    snapshot = asyncio.run(collect_once(hosts, demo, wait, sim_elapsed, workers))
    if fmt is ReportFormat.json:
        typer.echo(report_json(snapshot))
    elif fmt is ReportFormat.markdown:
        typer.echo(report_markdown(snapshot), nl=False)
    else:
        width = max(80, shutil.get_terminal_size((80, 24)).columns)
        typer.echo(report_table(snapshot, width=width), nl=False)
    raise typer.Exit(int(fleet_status(snapshot)))
