"""`gputui triage`: one deep pass over suspect hosts, a verdict and the step to take for each."""

from __future__ import annotations

import asyncio
import enum
import re
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from gputui.cli.app import app
from gputui.cli.common import check_open_files, fail, load_hosts
from gputui.cli.exits import PluginCommand
from gputui.collect.demo import DemoFleet, DemoFleetError
from gputui.collect.oneshot import DEFAULT_TIMEOUT_S
from gputui.collect.scenarios import ScenarioError
from gputui.config import ConfigError, HostRangeError, expand_hosts
from gputui.core.thresholds import DEFAULT_THRESHOLDS
from gputui.core.triage import TriageReport
from gputui.ops.triage import TriageOptions, triage_config, triage_demo
from gputui.render.triage import triage_json, triage_markdown, triage_table

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
DEMO_GROUP = "demo"  # with --demo, the target naming every simulated host


class TriageFormat(str, enum.Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


def parse_duration(text: str) -> float:
    """Seconds in `90`, `30m`, `2h`, `1d`, `1h30m`; ValueError otherwise."""
    text = text.strip().lower()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if value > 0:
            return value
        raise ValueError("must be more than 0 seconds")
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or total <= 0:
        raise ValueError("expected a duration such as 30m, 2h, 1d or 1h30m")
    return total


def _demo_names(targets: Sequence[str], names: list[str]) -> list[str]:
    known = set(names)
    wanted: set[str] = set()
    for target in targets:
        if target.lstrip("@") == DEMO_GROUP:
            wanted |= known
            continue
        try:
            expanded = expand_hosts(target, allow_duplicates=True)
        except HostRangeError as exc:
            raise fail(f"target {target!r} is not a host range: {exc}") from None
        unknown = [n for n in expanded if n not in known]
        if unknown:
            first, last = names[0], names[-1]
            raise fail(
                f"no demo host {unknown[0]} (demo hosts: {first} to {last}, or {DEMO_GROUP})"
            )
        wanted.update(expanded)
    return [n for n in names if n in wanted]


async def _run_demo(
    n: int, scenario: str | None, targets: Sequence[str], options: TriageOptions
) -> TriageReport:
    async with DemoFleet(n, scenario=scenario) as fleet:
        chosen = _demo_names(targets, [h.name for h in fleet.hosts])
        return await triage_demo(fleet, chosen, options, DEFAULT_THRESHOLDS)


@app.command(cls=PluginCommand)
def triage(
    targets: Annotated[
        list[str],
        typer.Argument(
            metavar="TARGET",
            help="SSH aliases, host ranges (gpu[001-016]) or groups of hosts.toml",
        ),
    ],
    hosts: Annotated[
        Path | None,
        typer.Option("--hosts", help="hosts.toml (default: $GPUTUI_HOSTS, then the config dir)"),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Kernel log XIDs of the last DURATION (30m, 2h, 1d)"),
    ] = None,
    fmt: Annotated[TriageFormat, typer.Option("--format", help="Output format")] = (
        TriageFormat.table
    ),
    demo: Annotated[
        int | None,
        typer.Option("--demo", help="Triage N simulated hosts behind local SSH servers instead"),
    ] = None,
    scenario: Annotated[
        str | None,
        typer.Option("--scenario", help="With --demo: every host runs this scenario (xid79...)"),
    ] = None,
    samples: Annotated[
        int | None,
        typer.Option("--samples", help="Samples per host (default: the straggler rule's count)"),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds each host has to answer")
    ] = DEFAULT_TIMEOUT_S,
    sim_elapsed: Annotated[
        float | None,
        typer.Option(
            "--sim-elapsed",
            help="Simulated hosts: seconds into the scenario (default: its faults developed)",
        ),
    ] = None,
) -> None:
    """Judge suspect hosts in one deep pass and say what to do.

    Reads every signal of the TARGET hosts once, with their kernel log's XIDs.

    Prints a summary (worst first), then per host: facts, GPUs, findings with NVIDIA's action
    and gputui's step, and the `gputui node fail` command that takes it. Exit code as
    `gputui report`: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (also for a bad argument or file).
    """
    if demo is not None and hosts is not None:
        raise fail("--hosts and --demo exclude each other")
    if scenario is not None and demo is None:
        raise fail("--scenario needs --demo (hosts.toml names each host's scenario)")
    if demo is not None and not 1 <= demo <= 5000:
        raise fail("--demo takes a number of hosts from 1 to 5000")
    if samples is not None and samples < 1:
        raise fail("--samples must be at least 1")
    if timeout <= 0:
        raise fail("--timeout must be a positive number of seconds")
    try:
        since_s = parse_duration(since) if since is not None else None
    except ValueError as exc:
        raise fail(f"--since {since!r}: {exc}") from None
    options = TriageOptions(since_s=since_s, timeout_s=timeout, sim_elapsed_s=sim_elapsed)
    try:
        if demo is not None:
            straggler = DEFAULT_THRESHOLDS.straggler_samples
            options = _with_samples(options, samples, straggler)
            check_open_files(demo=demo)
            report = asyncio.run(_run_demo(demo, scenario, targets, options))
        else:
            config = load_hosts(hosts)
            specs = config.select(targets)
            check_open_files(specs)
            options = _with_samples(options, samples, config.thresholds.straggler_samples)
            hosts_path = str(hosts) if hosts is not None else None
            report = asyncio.run(triage_config(config, specs, options, hosts_path))
    except (ConfigError, DemoFleetError, ScenarioError) as exc:
        raise fail(str(exc)) from None
    if fmt is TriageFormat.json:
        typer.echo(triage_json(report))
    elif fmt is TriageFormat.markdown:
        typer.echo(triage_markdown(report), nl=False)
    else:
        # Laid out for the terminal it is read in (100 columns when piped).
        width = shutil.get_terminal_size((100, 24)).columns
        typer.echo(triage_table(report, width=width), nl=False)
    raise typer.Exit(int(report.status))


def _with_samples(options: TriageOptions, samples: int | None, straggler: int) -> TriageOptions:
    # Two at least: counter rules judge a rise between two readings.
    return replace(options, samples=samples if samples is not None else max(2, straggler))
