"""Turning a configured fleet, or the demo fleet, into the monitor's host plans.

SSH (asyncssh, the SSH context, its sources) and the demo fleet are imported only for fleets
that use them: a fleet of `localhost` alone, as `gputui report` and bare `gputui` watch this
machine, starts without them (asyncssh's import alone runs ldconfig and the compiler to look
for a post-quantum library: docs/benchmarks.md, "Start-up").
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from gputui.collect.fdlimit import OpenFiles, load_lazy_modules, open_files_for, raise_soft_limit
from gputui.collect.launch import AgentArgs
from gputui.collect.live import LiveMonitor
from gputui.collect.monitor import FleetMonitor, HostPlan
from gputui.collect.recipes import HostRecipe, plans_for_recipes
from gputui.collect.recipes import ssh_options as ssh_options
from gputui.collect.scenarios import demo_assignment, is_fleet_mix, load_scenario
from gputui.collect.workers.count import workers_for
from gputui.config import DEFAULT_INTERVAL_S, Config, HostSpec, SshSettings
from gputui.core.health import Thresholds

if TYPE_CHECKING:
    from gputui.collect.demo import DemoFleet
    from gputui.collect.prom_source import PromFleetSource
    from gputui.collect.ssh import SshContext


def host_seed(name: str) -> int:
    """A stable seed per host name, so simulated hosts differ but repeat across runs."""
    return zlib.crc32(name.encode())


def sim_scenarios(specs: Sequence[HostSpec]) -> dict[str, dict[str, Any]]:
    """The concrete scenario of every simulated host.

    A fleet mix (like `demo`) named for several hosts is spread across them, as `gputui demo`
    does; a plain scenario is the same for each.
    """
    by_name: dict[str, list[HostSpec]] = {}
    for spec in specs:
        if spec.backend == "sim":
            by_name.setdefault(spec.scenario or "healthy", []).append(spec)
    out: dict[str, dict[str, Any]] = {}
    for name, hosts in by_name.items():
        if is_fleet_mix(name):
            assignment = demo_assignment(len(hosts), seed=1, mix=name)
            for spec, (_, scenario) in zip(hosts, assignment, strict=True):
                out[spec.name] = scenario
        else:
            scenario = load_scenario(name)
            for spec in hosts:
                out[spec.name] = scenario
    return out


def agent_args(
    spec: HostSpec, scenario: dict[str, Any] | None = None, once: bool = False
) -> AgentArgs:
    sim = spec.backend == "sim"
    if sim and scenario is None:
        scenario = sim_scenarios([spec])[spec.name]
    return AgentArgs(
        backend=spec.backend,
        interval_s=spec.interval_s,
        slow_every=spec.slow_every,
        host=spec.name if sim else None,
        scenario=scenario if sim else None,
        seed=host_seed(spec.name) if sim else None,
        once=once,
    )


def recipes_for_config(config: Config, specs: Sequence[HostSpec] | None = None) -> list[HostRecipe]:
    """One recipe per configured host (or per host of `specs`), in file order. A simulated
    fleet mix is spread over the whole of `specs` here, so that shards agree with it."""
    chosen = list(specs if specs is not None else config.hosts)
    scenarios = sim_scenarios(chosen)
    return [
        HostRecipe(
            name=spec.name,
            args=agent_args(spec, scenarios.get(spec.name)),
            transport=spec.transport,
            python=spec.python,
            interval_s=spec.interval_s,
            labels={"group": spec.group, **spec.labels},
            spare=spec.spare,
        )
        for spec in chosen
    ]


def recipes_for_demo(
    fleet: DemoFleet, interval_s: float = DEFAULT_INTERVAL_S, sim_elapsed_s: float | None = None
) -> list[HostRecipe]:
    """One recipe per demo host; each starts `sim_elapsed_s` into its scenario (None: at 0)."""
    return [
        HostRecipe(
            name=host.name,
            args=AgentArgs(
                backend="sim",
                interval_s=interval_s,
                slow_every=10,
                host=host.name,
                scenario=host.scenario,
                seed=host.seed,
                sim_elapsed_s=sim_elapsed_s,
            ),
            interval_s=interval_s,
            labels={"group": "demo", "scenario": str(host.scenario.get("name", "?"))},
            spare=host.spare,
        )
        for host in fleet.hosts
    ]


def plans_for_prometheus(
    config: Config, specs: Sequence[HostSpec] | None = None
) -> tuple[list[HostPlan], PromFleetSource]:
    """One plan per host of a fleet read from Prometheus, all fed by one poller."""
    from gputui.collect.prom_source import PromFleetSource

    assert config.prometheus is not None
    poller = PromFleetSource(config.prometheus)
    chosen = list(specs if specs is not None else config.hosts)
    plans = [
        HostPlan(
            source=poller.source_for(spec.name),
            interval_s=poller.interval_s,
            labels={"group": spec.group, **spec.labels},
            spare=spec.spare,
        )
        for spec in chosen
    ]
    return plans, poller


def plans_for_config(
    config: Config, specs: Sequence[HostSpec] | None = None
) -> tuple[list[HostPlan], SshContext | None]:
    """One plan per configured host (or per host of `specs`), sharing one SSH context; None
    when every host is `localhost` (no SSH, so no asyncssh, no known_hosts read)."""
    if config.prometheus is not None:
        raise ValueError("a fleet read from Prometheus is planned by plans_for_prometheus")
    recipes = recipes_for_config(config, specs)
    local = all(r.transport == "local" for r in recipes)
    return plans_for_recipes(recipes, None if local else ssh_options(config.ssh))


def plans_for_demo(
    fleet: DemoFleet, interval_s: float = DEFAULT_INTERVAL_S, sim_elapsed_s: float | None = None
) -> tuple[list[HostPlan], SshContext]:
    """One plan per demo host; each starts `sim_elapsed_s` into its scenario (None: at 0)."""
    plans, ssh = plans_for_recipes(
        recipes_for_demo(fleet, interval_s, sim_elapsed_s), fleet.ssh_options
    )
    assert ssh is not None  # every demo host is reached over SSH
    return plans, ssh


def open_files_for_hosts(specs: Sequence[HostSpec]) -> OpenFiles:
    """Raise the open-files limit, and weigh it against what watching `specs` takes."""
    local = sum(1 for spec in specs if spec.transport == "local")
    return open_files_for(ssh_hosts=len(specs) - local, local_hosts=local)


@contextlib.asynccontextmanager
async def _running(
    plans: list[HostPlan],
    ssh: SshContext | None,
    thresholds: Thresholds | None,
    tick_s: float | None,
    history_len: int | None,
    closers: Sequence[Callable[[], Awaitable[None]]] = (),
) -> AsyncIterator[FleetMonitor]:
    """A monitor over `plans` that closes the fleet's SSH (and `closers`) when it stops."""
    # Every host holds descriptors for as long as it is watched (fdlimit.py); the command line
    # has raised the limit already and said whether it suffices, other callers get it here.
    raise_soft_limit()
    load_lazy_modules()
    closers = [*closers, *([] if ssh is None else [ssh.close])]
    monitor = FleetMonitor(
        plans, thresholds=thresholds, tick_s=tick_s, history_len=history_len, closers=closers
    )
    async with monitor:
        yield monitor


@contextlib.asynccontextmanager
async def _in_workers(
    recipes: list[HostRecipe],
    workers: int,
    ssh: SshSettings | None,
    thresholds: Thresholds | None,
    tick_s: float | None,
    history_len: int | None,
) -> AsyncIterator[LiveMonitor]:
    """A monitor over `recipes` collected by `workers` worker processes."""
    from gputui.collect.workers.monitor import WorkerMonitor

    monitor = WorkerMonitor(
        recipes, workers, ssh=ssh, thresholds=thresholds, tick_s=tick_s, history_len=history_len
    )
    async with monitor:
        yield monitor


@contextlib.asynccontextmanager
async def monitor_config(
    config: Config,
    *,
    tick_s: float | None = None,
    history_len: int | None = None,
    specs: Sequence[HostSpec] | None = None,
    workers: int | Literal["auto"] | None = None,
) -> AsyncIterator[LiveMonitor]:
    """A running monitor over the configured hosts (or `specs`); unless `tick_s` is given, it
    ticks with the fastest of them (gputui/collect/tick.py). The hosts are read in `workers`
    worker processes (None: as the hosts file's [collector] says; 0: in this process). A fleet
    read from Prometheus is read in this process: one poller's queries serve every host."""
    if config.prometheus is not None:
        prom_plans, poller = plans_for_prometheus(config, specs)
        async with _running(
            prom_plans, None, config.thresholds, tick_s, history_len, [poller.close]
        ) as monitor:
            yield monitor
        return
    recipes = recipes_for_config(config, specs)
    n = workers_for(config.workers if workers is None else workers, len(recipes))
    if n > 0:
        local = all(r.transport == "local" for r in recipes)
        ssh = None if local else config.ssh
        async with _in_workers(recipes, n, ssh, config.thresholds, tick_s, history_len) as m:
            yield m
        return
    plans, ssh_context = plans_for_config(config, specs)
    async with _running(plans, ssh_context, config.thresholds, tick_s, history_len) as monitor:
        yield monitor


@contextlib.asynccontextmanager
async def demo_fleet_and_monitor(
    n_hosts: int,
    *,
    seed: int = 1,
    interval_s: float = DEFAULT_INTERVAL_S,
    tick_s: float | None = None,
    history_len: int | None = None,
    thresholds: Thresholds | None = None,
    scenario: str | None = None,
    spares: int = 0,
    sim_elapsed_s: float | None = None,
    workers: int | Literal["auto"] = "auto",
) -> AsyncIterator[tuple[DemoFleet, LiveMonitor]]:
    """The running demo fleet and a monitor over it (triage needs the fleet's SSH files); its
    hosts are read in `workers` worker processes (0: in this process), which reach the demo's
    loopback servers as they would any SSH host."""
    from gputui.collect.demo import DemoFleet

    async with DemoFleet(n_hosts, seed=seed, scenario=scenario, spares=spares) as fleet:
        n = workers_for(workers, n_hosts)
        if n > 0:
            recipes = recipes_for_demo(fleet, interval_s, sim_elapsed_s)
            ssh = demo_ssh_settings(fleet)
            async with _in_workers(recipes, n, ssh, thresholds, tick_s, history_len) as m:
                yield fleet, m
            return
        plans, ssh_context = plans_for_demo(fleet, interval_s, sim_elapsed_s)
        async with _running(plans, ssh_context, thresholds, tick_s, history_len) as monitor:
            yield fleet, monitor


def demo_ssh_settings(fleet: DemoFleet) -> SshSettings:
    """The demo fleet's SSH options as a hosts file's [ssh] would say them (a worker process
    builds its SSH context from these)."""
    options = fleet.ssh_options
    return SshSettings(
        config_files=options.config_files,
        known_hosts=options.known_hosts or SshSettings().known_hosts,
        keepalive_interval_s=options.keepalive_interval_s,
        max_handshakes=options.max_handshakes,
    )
