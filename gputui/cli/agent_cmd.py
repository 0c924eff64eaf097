"""`gputui agent`: run the host agent locally and print its stream.

The scenario is read here (TOML, collector side) and handed to the agent as JSON, exactly as
the collector does over SSH, so this command exercises the same path as a remote host.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated

import typer

from gputui.agent.main import main as agent_main
from gputui.cli.app import app
from gputui.collect.scenarios import ScenarioError, load_scenario
from gputui.config import DEFAULT_INTERVAL_S, interval_problem


class BackendChoice(str, Enum):
    auto = "auto"
    nvml = "nvml"
    smi = "smi"
    sim = "sim"


@app.command("agent")
def agent(
    backend: Annotated[
        BackendChoice,
        typer.Option(
            "--backend", help="nvml, smi or sim; auto tries nvml then smi (sim with --scenario)"
        ),
    ] = BackendChoice.auto,
    scenario: Annotated[
        str | None,
        typer.Option("--scenario", help="Simulated scenario: a packaged name or a TOML path"),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the simulation")] = 0,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between samples")
    ] = DEFAULT_INTERVAL_S,
    duration: Annotated[
        float | None, typer.Option("--duration", help="Stop after this many seconds")
    ] = None,
    slow_every: Annotated[
        int, typer.Option("--slow-every", help="Read slow signals every N samples", min=1)
    ] = 10,
    host: Annotated[str | None, typer.Option("--host", help="Host name to report")] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Print the hello and one full sample, then exit")
    ] = False,
) -> None:
    """Run the host agent here and print its stream.

    The JSON lines the collector reads from every host over SSH (docs/protocol.md)."""
    problem = interval_problem(interval)
    if problem is not None:
        typer.echo(f"gputui agent: --interval: {problem}", err=True)
        raise typer.Exit(2)
    chosen = backend.value
    if scenario is not None:
        if chosen == "auto":
            chosen = "sim"
        elif chosen != "sim":
            typer.echo(f"gputui agent: --scenario needs --backend sim, not {chosen}", err=True)
            raise typer.Exit(2)
    argv = ["--backend", chosen, "--seed", str(seed), "--interval", str(interval)]
    argv += ["--slow-every", str(slow_every)]
    if chosen == "sim":
        try:
            spec = load_scenario(scenario or "healthy")
        except ScenarioError as exc:
            typer.echo(f"gputui agent: {exc}", err=True)
            raise typer.Exit(2) from None
        argv += ["--scenario-json", json.dumps(spec)]
    if duration is not None:
        argv += ["--duration", str(duration)]
    if host is not None:
        argv += ["--host", host]
    if once:
        argv.append("--once")
    raise typer.Exit(agent_main(argv))
