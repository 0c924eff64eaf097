"""What the commands share: a mistake said in one line with its exit status, loading hosts.toml
with friendly errors, raising the open-files limit for the fleet, and collecting one consistent
snapshot of a configured or simulated fleet. (The node, action and journal commands share more:
ops_common.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import typer

from gputui.cli.exits import EXIT_UNKNOWN, EXIT_USAGE, UsageExit
from gputui.collect.fdlimit import open_files_for
from gputui.collect.fleet import demo_fleet_and_monitor, monitor_config, open_files_for_hosts
from gputui.collect.live import LiveMonitor
from gputui.collect.scenarios import ScenarioError
from gputui.config import (
    DEFAULT_INTERVAL_S,
    Config,
    ConfigError,
    HostSpec,
    load_config,
    resolve_hosts_path,
)
from gputui.config.shard import Shard, parse_shard
from gputui.core.model import FleetSnapshot

#: Hosts of `gputui demo` when not told (and what the next-steps message offers).
DEMO_HOSTS = 32


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print `message` on stderr; the caller raises the returned Exit.

    A monitoring command (gputui.cli.exits.PluginCommand) turns a usage exit into 3, UNKNOWN."""
    typer.echo(f"gputui: {message}", err=True)
    return UsageExit(code) if code == EXIT_USAGE else typer.Exit(code)


def parse_shard_option(text: str | None) -> Shard | None:
    """--shard's value (`K/N`), or a usage error that says what was wrong."""
    if text is None:
        return None
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise fail(f"--shard: {exc}") from None


def load_hosts(path: Path | None) -> Config:
    try:
        return load_config(resolve_hosts_path(path))
    except ConfigError as exc:
        raise fail(str(exc)) from None


def check_open_files(
    specs: Sequence[HostSpec] | None = None, *, demo: int | None = None
) -> str | None:
    """Raise the open-files limit for the fleet of `specs` (or of `demo` simulated hosts).

    When the fleet still needs more descriptors than the process may open, say so once on
    stderr, with the numbers and the remedy, and return that line (the TUI shows it too); the
    hosts past the limit then fail to connect, and this line is why."""
    if demo is not None:
        limit = open_files_for(demo_hosts=demo)
    else:
        limit = open_files_for_hosts(specs or ())
    shortfall = limit.shortfall()
    if shortfall is not None:
        typer.echo(f"gputui: {shortfall}", err=True)
    return shortfall


@contextlib.asynccontextmanager
async def open_monitor(
    hosts: Path | None,
    demo: int | None,
    *,
    interval_s: float = DEFAULT_INTERVAL_S,
    tick_s: float | None = None,
    seed: int = 1,
    sim_elapsed_s: float | None = None,
    history_len: int | None = None,
    shard: Shard | None = None,
    workers: int | None = None,
) -> AsyncIterator[LiveMonitor]:
    """A running monitor over the demo fleet (`demo` hosts) or the configured one (only the
    hosts of `shard`, when given); unless `tick_s` is given, it ticks with the fleet's fastest
    host (gputui/collect/tick.py). The demo's hosts start `sim_elapsed_s` into their scenarios
    (None: at their start). Each host keeps `history_len` samples (None: what the fleet's size
    allows; 0: none). The streams are read in `workers` worker processes (None: as the hosts
    file says, "auto" for the demo)."""
    if demo is not None and shard is not None:
        raise fail("--shard splits the hosts of a hosts file; the demo fleet is not split")
    if demo is not None:
        # The demo's hosts are SSH servers: asyncssh is imported for them only.
        from gputui.collect.demo import DemoFleetError

        check_open_files(demo=demo)
        try:
            async with demo_fleet_and_monitor(
                demo,
                seed=seed,
                interval_s=interval_s,
                tick_s=tick_s,
                sim_elapsed_s=sim_elapsed_s,
                history_len=history_len,
                workers="auto" if workers is None else workers,
            ) as (_fleet, m):
                yield m
        except (DemoFleetError, ScenarioError) as exc:
            raise fail(str(exc)) from None
        return
    config = await discovered(load_hosts(hosts))
    specs = config.hosts
    if shard is not None:
        specs = [spec for spec in config.hosts if shard.holds(spec.name)]
        typer.echo(
            f"gputui: shard {shard}: {len(specs)} of the {len(config.hosts)} hosts of "
            f"{config.path}",
            err=True,
        )
    # A fleet read from Prometheus holds no descriptor per host.
    check_open_files(specs if config.prometheus is None else [])
    try:
        async with monitor_config(
            config, tick_s=tick_s, history_len=history_len, specs=specs, workers=workers
        ) as m:
            yield m
    except ScenarioError as exc:
        raise fail(str(exc)) from None


async def discovered(config: Config) -> Config:
    """`config` with the hosts Prometheus has series of, when its source is Prometheus and it
    lists none; a Prometheus that cannot say is a failure of the command (exit 3), in one line.
    """
    if config.prometheus is None or config.prometheus.listed_hosts:
        return config
    from gputui.collect.prom_api import PromError
    from gputui.collect.prom_source import with_discovered_hosts

    try:
        return await with_discovered_hosts(config)
    except PromError as exc:
        raise fail(f"cannot list the fleet from Prometheus: {exc}", EXIT_UNKNOWN) from None


async def settle(monitor: LiveMonitor, wait_s: float) -> FleetSnapshot:
    """Wait until every host answered or failed (or `wait_s` passed); that snapshot."""
    deadline = time.monotonic() + wait_s
    while not monitor.settled() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    monitor.check_stale()
    return monitor.publish()


async def collect_once(
    hosts: Path | None,
    demo: int | None,
    wait_s: float,
    sim_elapsed_s: float | None = None,
    shard: Shard | None = None,
    workers: int | None = None,
) -> FleetSnapshot:
    # One snapshot charts nothing: no history rings (nor numpy, which they are made of).
    async with open_monitor(
        hosts, demo, sim_elapsed_s=sim_elapsed_s, history_len=0, shard=shard, workers=workers
    ) as monitor:
        return await settle(monitor, wait_s)


def count_fleet_gpus(hosts: Path | None, demo: int | None, wait_s: float = 20.0) -> int:
    """GPUs in the fleet now, from the agents' inventories (for `gputui risk`)."""
    snap = asyncio.run(collect_once(hosts, demo, wait_s))
    return sum(len(h.hello.gpus) for h in snap.hosts if h.hello is not None and not h.marked_failed)
