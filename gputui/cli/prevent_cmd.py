"""`gputui prevent`: the GPUs and nodes to service before they fail, for people, cron and scripts.

It reads the per-GPU daily rollups the monitor writes into its journal, runs every trend rule
over them and ranks what they find by the failure probability that servicing avoids
(gputui/ops/prevention.py), then prints the list with each item's evidence and advice
(render/prevention.py). `--demo N` does the same over a simulated fleet fast-forwarded `--days`
days into a temporary journal (gputui/ops/sim_rollups.py), removed afterwards.

Exit status as `report`'s: 0 OK (nothing to service), 1 WARNING (service in the next window),
2 CRITICAL (service soon, or now), 3 UNKNOWN (no rollups, a journal no monitor writes any more,
or a bad argument or hosts file).
"""

from __future__ import annotations

import enum
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from gputui.cli.app import app
from gputui.cli.common import fail, load_hosts
from gputui.cli.exits import PluginCommand
from gputui.collect.scenarios import ScenarioError
from gputui.config import HOSTS_ENV, Config, default_hosts_path
from gputui.ops.journal import Journal, JournalError, resolve_journal_path
from gputui.ops.prevention import Trends, journal_trends, trends_status
from gputui.render.prevention import (
    PreventionReport,
    prevention_json,
    prevention_markdown,
    prevention_table,
)

DEMO_DAYS = 14.0
MAX_DEMO_HOSTS = 64  # each host's fortnight costs a few seconds of CPU
MAX_DEMO_DAYS = 90  # the daily rollups a journal keeps by default


class PreventFormat(str, enum.Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


def _config(hosts: Path | None) -> Config | None:
    """hosts.toml when one is given or found: its groups and [risk] settings, and where its
    journal is. Without one the journal alone is enough."""
    if hosts is None and not os.environ.get(HOSTS_ENV) and not default_hosts_path().is_file():
        return None
    return load_hosts(hosts)


def _from_journal(journal: Path | None, config: Config | None) -> tuple[Trends, str]:
    path = resolve_journal_path(journal, config.journal_path if config else None)
    if not path.is_file():
        raise fail(
            f"no journal at {path}: `gputui monitor` writes one as it watches the fleet "
            "(--journal PATH names another; `gputui prevent --demo 8` needs none)"
        )
    groups = {h.name: h.group for h in config.hosts} if config else None
    try:
        with Journal.open(path) as opened:
            trends = journal_trends(opened, risk=config.risk if config else None, groups=groups)
    except JournalError as exc:
        raise fail(f"cannot read the journal: {exc}") from None
    return trends, f"journal {path}"


def _from_demo(
    n_hosts: int, days: float, seed: int
) -> tuple[Trends, str, tuple[tuple[str, str], ...]]:
    """A simulated fleet's rollups in a temporary journal, judged, and the journal removed."""
    # Imported here: the simulator and its scenarios are the demo's alone.
    from gputui.ops.sim_rollups import simulate_fleet

    typer.echo(
        f"gputui: simulating {n_hosts} host{'s' if n_hosts != 1 else ''} over {days:g} days...",
        err=True,
    )
    with (
        tempfile.TemporaryDirectory(prefix="gputui-prevent-") as scratch,
        Journal.open(Path(scratch) / "journal.sqlite3") as opened,
    ):
        try:
            fleet = simulate_fleet(opened, n_hosts, days, seed=seed)
        except ScenarioError as exc:
            raise fail(str(exc)) from None
        trends = journal_trends(opened)
    drifting = [f"{host} {scenario}" for host, scenario in fleet if scenario != "healthy"]
    healthy = [host for host, scenario in fleet if scenario == "healthy"]
    source = f"a simulated fleet of {n_hosts} hosts over {days:g} days (seed {seed})"
    source += f": {', '.join(drifting) or 'no drift'}"
    if healthy:
        source += f"; healthy: {', '.join(healthy)}"
    return trends, source, tuple(fleet)


@app.command("prevent", cls=PluginCommand)
def prevent(
    hosts: Annotated[
        Path | None,
        typer.Option(
            "--hosts",
            help="hosts.toml: its groups, [risk] settings and journal (default: $GPUTUI_HOSTS, "
            "then the user config dir, when there is one)",
        ),
    ] = None,
    journal: Annotated[
        Path | None,
        typer.Option(
            "--journal",
            help="Journal whose rollups to judge (default: $GPUTUI_JOURNAL, hosts.toml's "
            "[journal], the state dir)",
        ),
    ] = None,
    demo: Annotated[
        int | None,
        typer.Option(
            "--demo",
            help="Judge N simulated hosts fast-forwarded --days days instead (some drifting "
            "toward a failure), in a temporary journal",
        ),
    ] = None,
    days: Annotated[
        float | None,
        typer.Option("--days", help=f"Days the --demo fleet runs (default {DEMO_DAYS:g})"),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of the --demo fleet (default 1)")
    ] = None,
    fmt: Annotated[
        PreventFormat, typer.Option("--format", help="Output format")
    ] = PreventFormat.table,
) -> None:
    """List the GPUs and nodes to service before they fail.

    Ranked by the failure probability that servicing avoids, each with its rule, evidence and
    advice.

    Exit code: 0 OK (nothing to service), 1 WARNING, 2 CRITICAL, 3 UNKNOWN (no rollups to
    judge, a journal no longer written, or a bad argument or hosts file).
    """
    if demo is None:
        given = [flag for flag, v in (("--days", days), ("--seed", seed)) if v is not None]
        if given:
            raise fail(f"{' and '.join(given)} go with --demo: a journal holds the days it holds")
        trends, source = _from_journal(journal, _config(hosts))
        status, note = trends_status(trends, time.time())
        simulated: tuple[tuple[str, str], ...] = ()
    else:
        if hosts is not None or journal is not None:
            raise fail(
                "--demo simulates its own fleet and journal: --hosts and --journal do not apply"
            )
        if not 1 <= demo <= MAX_DEMO_HOSTS:
            raise fail(f"--demo takes a number of hosts from 1 to {MAX_DEMO_HOSTS}")
        days = DEMO_DAYS if days is None else days
        if not 1 <= days <= MAX_DEMO_DAYS:
            raise fail(f"--days takes 1 to {MAX_DEMO_DAYS} days")
        trends, source, simulated = _from_demo(demo, days, 1 if seed is None else seed)
        status, note = trends_status(trends)
    report = PreventionReport(
        service=trends.service,
        status=status,
        end=trends.end,
        gpus=trends.gpus,
        hosts=trends.hosts,
        days=trends.days,
        rate_source=trends.rate_source,
        source=source,
        note=note,
        simulated=simulated,
    )
    if fmt is PreventFormat.json:
        typer.echo(prevention_json(report))
    elif fmt is PreventFormat.markdown:
        typer.echo(prevention_markdown(report), nl=False)
    else:
        width = max(80, shutil.get_terminal_size((80, 24)).columns)
        typer.echo(prevention_table(report, width=width), nl=False)
    raise typer.Exit(int(report.status))
