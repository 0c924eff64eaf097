"""`gputui report`: one consistent fleet snapshot for cron, scripts and monitoring plugins."""

from __future__ import annotations

import asyncio
import enum
import os
import shutil
from pathlib import Path
from typing import Annotated

import typer

from gputui.cli.app import app
from gputui.cli.common import collect_once, fail, open_monitor, parse_shard_option, settle
from gputui.cli.exits import PluginCommand
from gputui.cli.options import WorkersOption, workers_problem
from gputui.config.shard import Shard
from gputui.core.hoststats import fleet_status
from gputui.core.model import FleetSnapshot
from gputui.render.report import report_json, report_markdown, report_table

#: The furthest into a scenario a report starts the demo: every packaged fault has happened by
#: then (the demo spreads them over its first ten minutes), and each simulated host steps its
#: state there before its first sample, which takes seconds per simulated hour.
MAX_SIM_ELAPSED_S = 3600.0


class ReportFormat(str, enum.Enum):
    table = "table"
    json = "json"
    markdown = "markdown"
    prometheus = "prometheus"


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
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            metavar="PATH",
            help="Write the report to PATH instead of stdout, replacing it whole in one rename "
            "(for node_exporter's textfile collector: --format prometheus --output "
            "DIR/gputui.prom)",
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="K/N",
            help="Report only shard K of N of the hosts file (as `gputui exporter --shard`)",
        ),
    ] = None,
    workers: WorkersOption = None,
) -> None:
    """Print one snapshot of the fleet, for cron and monitoring.

    It is taken once every host answered, or when --wait has passed. --format prometheus
    writes Prometheus' text format, the series `gputui exporter` serves (docs/prometheus.md).

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
    chosen = parse_shard_option(shard)
    if output is not None and not output.parent.is_dir():
        raise fail(f"--output: the directory {output.parent} does not exist")
    if fmt is ReportFormat.prometheus:
        snapshot, text = asyncio.run(_prometheus(hosts, demo, wait, sim_elapsed, chosen, workers))
    else:
        snapshot = asyncio.run(
            collect_once(hosts, demo, wait, sim_elapsed, shard=chosen, workers=workers)
        )
        text = _rendered(snapshot, fmt)
    if output is None:
        typer.echo(text, nl=False)
    else:
        from gputui.cli.textfile import write_atomic

        try:
            write_atomic(output, text.encode("utf-8"))
        except OSError as exc:
            cause = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise fail(f"cannot write {output}: {cause}") from None
    raise typer.Exit(int(fleet_status(snapshot)))


def _rendered(snapshot: FleetSnapshot, fmt: ReportFormat) -> str:
    if fmt is ReportFormat.json:
        return report_json(snapshot) + "\n"
    if fmt is ReportFormat.markdown:
        return report_markdown(snapshot)
    width = max(80, shutil.get_terminal_size((80, 24)).columns)
    return report_table(snapshot, width=width)


async def _prometheus(
    hosts: Path | None,
    demo: int | None,
    wait_s: float,
    sim_elapsed_s: float | None,
    shard: Shard | None,
    workers: int | None,
) -> tuple[FleetSnapshot, str]:
    """One settled snapshot in Prometheus' text format, with the XIDs seen while waiting for it
    counted as the exporter counts them."""
    from gputui.cli.export_feed import ExportFeed
    from gputui.render.prometheus import ExportView, exposition

    async with open_monitor(
        hosts, demo, sim_elapsed_s=sim_elapsed_s, history_len=0, shard=shard, workers=workers
    ) as monitor:
        feed = ExportFeed()
        follower = await feed.start(monitor)
        snapshot = await settle(monitor, wait_s)
        await feed.reached(snapshot)
        follower.cancel()
    view = ExportView(snapshot=snapshot, tally=feed.tally)
    return snapshot, exposition(view).decode("utf-8")
