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
from typing import TYPE_CHECKING, Any

from gputui.collect.fdlimit import OpenFiles, load_lazy_modules, open_files_for, raise_soft_limit
from gputui.collect.feed import Source
from gputui.collect.launch import AgentArgs, remote_invocation
from gputui.collect.local_source import LocalSource
from gputui.collect.monitor import FleetMonitor, HostPlan
from gputui.collect.scenarios import demo_assignment, is_fleet_mix, load_scenario
from gputui.config import DEFAULT_INTERVAL_S, Config, HostSpec, SshSettings
from gputui.core.health import Thresholds

if TYPE_CHECKING:
    from gputui.collect.demo import DemoFleet
    from gputui.collect.prom_source import PromFleetSource
    from gputui.collect.ssh import SshContext, SshOptions


def ssh_options(settings: SshSettings) -> SshOptions:
    from gputui.collect.ssh import SshOptions

    return SshOptions(
        config_files=tuple(settings.config_files),
        known_hosts=settings.known_hosts,
        connect_timeout_s=settings.connect_timeout_s,
        keepalive_interval_s=settings.keepalive_interval_s,
        keepalive_count_max=settings.keepalive_count_max,
        max_handshakes=settings.max_handshakes,
        identity_files=tuple(settings.identity_files),
        strict_host_keys=settings.strict_host_keys,
    )


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


def source_for(
    spec: HostSpec,
    ssh: SshContext | None,
    scenario: dict[str, Any] | None = None,
    once: bool = False,
) -> Source:
    """The source of `spec`'s readings; `ssh` is needed for every host but `localhost`."""
    args = agent_args(spec, scenario, once)
    if spec.transport == "local":
        return LocalSource(spec.name, args)
    if ssh is None:
        raise ValueError(f"{spec.name} is reached over SSH, and no SSH context was given")
    from gputui.collect.ssh_source import SshSource

    python = spec.python
    return SshSource(spec.name, ssh, lambda: remote_invocation(python, args))


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
    chosen = list(specs if specs is not None else config.hosts)
    ssh = None
    if any(spec.transport != "local" for spec in chosen):
        from gputui.collect.ssh import SshContext

        ssh = SshContext(ssh_options(config.ssh))
    scenarios = sim_scenarios(chosen)
    plans = [
        HostPlan(
            source=source_for(spec, ssh, scenarios.get(spec.name)),
            interval_s=spec.interval_s,
            labels={"group": spec.group, **spec.labels},
            spare=spec.spare,
        )
        for spec in chosen
    ]
    return plans, ssh


def plans_for_demo(
    fleet: DemoFleet, interval_s: float = DEFAULT_INTERVAL_S, sim_elapsed_s: float | None = None
) -> tuple[list[HostPlan], SshContext]:
    """One plan per demo host; each starts `sim_elapsed_s` into its scenario (None: at 0)."""
    from gputui.collect.ssh import SshContext
    from gputui.collect.ssh_source import SshSource

    ssh = SshContext(fleet.ssh_options)
    plans: list[HostPlan] = []
    for host in fleet.hosts:
        args = AgentArgs(
            backend="sim",
            interval_s=interval_s,
            slow_every=10,
            host=host.name,
            scenario=host.scenario,
            seed=host.seed,
            sim_elapsed_s=sim_elapsed_s,
        )
        labels = {"group": "demo", "scenario": str(host.scenario.get("name", "?"))}
        plans.append(
            HostPlan(
                source=SshSource(host.name, ssh, lambda a=args: remote_invocation("python3", a)),  # type: ignore[misc]
                interval_s=interval_s,
                labels=labels,
                spare=host.spare,
            )
        )
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
async def monitor_config(
    config: Config,
    *,
    tick_s: float | None = None,
    history_len: int | None = None,
    specs: Sequence[HostSpec] | None = None,
) -> AsyncIterator[FleetMonitor]:
    """A running monitor over the configured hosts (or `specs`); unless `tick_s` is given, it
    ticks with the fastest of them (gputui/collect/tick.py)."""
    if config.prometheus is not None:
        prom_plans, poller = plans_for_prometheus(config, specs)
        async with _running(
            prom_plans, None, config.thresholds, tick_s, history_len, [poller.close]
        ) as monitor:
            yield monitor
        return
    plans, ssh = plans_for_config(config, specs)
    async with _running(plans, ssh, config.thresholds, tick_s, history_len) as monitor:
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
) -> AsyncIterator[tuple[DemoFleet, FleetMonitor]]:
    """The running demo fleet and a monitor over it (triage needs the fleet's SSH files)."""
    from gputui.collect.demo import DemoFleet

    async with DemoFleet(n_hosts, seed=seed, scenario=scenario, spares=spares) as fleet:
        plans, ssh = plans_for_demo(fleet, interval_s, sim_elapsed_s)
        async with _running(plans, ssh, thresholds, tick_s, history_len) as monitor:
            yield fleet, monitor
