"""Turning a configured fleet, or the demo fleet, into the monitor's host plans."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from gputui.collect.demo import DemoFleet
from gputui.collect.feed import Source
from gputui.collect.launch import AgentArgs, remote_invocation
from gputui.collect.local_source import LocalSource
from gputui.collect.monitor import FleetMonitor, HostPlan
from gputui.collect.scenarios import load_scenario
from gputui.collect.ssh import SshContext, SshOptions
from gputui.collect.ssh_source import SshSource
from gputui.config import Config, HostSpec, SshSettings
from gputui.core.health import Thresholds


def ssh_options(settings: SshSettings) -> SshOptions:
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


def agent_args(spec: HostSpec, once: bool = False, seed: int | None = None) -> AgentArgs:
    scenario = load_scenario(spec.scenario or "healthy") if spec.backend == "sim" else None
    return AgentArgs(
        backend=spec.backend,
        interval_s=spec.interval_s,
        slow_every=spec.slow_every,
        host=spec.name if spec.backend == "sim" else None,
        scenario=scenario,
        seed=seed,
        once=once,
    )


def source_for(spec: HostSpec, ssh: SshContext, once: bool = False) -> Source:
    args = agent_args(spec, once)
    if spec.transport == "local":
        return LocalSource(spec.name, args)
    python = spec.python
    return SshSource(spec.name, ssh, lambda: remote_invocation(python, args))


def plans_for_config(
    config: Config, specs: Sequence[HostSpec] | None = None
) -> tuple[list[HostPlan], SshContext]:
    """One plan per configured host (or per host of `specs`), sharing one SSH context."""
    ssh = SshContext(ssh_options(config.ssh))
    plans = [
        HostPlan(
            source=source_for(spec, ssh),
            interval_s=spec.interval_s,
            labels={"group": spec.group, **spec.labels},
            spare=spec.spare,
        )
        for spec in (specs if specs is not None else config.hosts)
    ]
    return plans, ssh


def plans_for_demo(fleet: DemoFleet, interval_s: float = 1.0) -> tuple[list[HostPlan], SshContext]:
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
        )
        labels = {"group": "demo", "scenario": str(host.scenario.get("name", "?"))}
        plans.append(
            HostPlan(
                source=SshSource(host.name, ssh, lambda a=args: remote_invocation("python3", a)),  # type: ignore[misc]
                interval_s=interval_s,
                labels=labels,
            )
        )
    return plans, ssh


@contextlib.asynccontextmanager
async def monitor_config(
    config: Config,
    *,
    tick_s: float = 1.0,
    history_len: int = 300,
    specs: Sequence[HostSpec] | None = None,
) -> AsyncIterator[FleetMonitor]:
    plans, ssh = plans_for_config(config, specs)
    monitor = FleetMonitor(
        plans,
        thresholds=config.thresholds,
        tick_s=tick_s,
        history_len=history_len,
        closers=[ssh.close],
    )
    async with monitor:
        yield monitor


@contextlib.asynccontextmanager
async def monitor_demo(
    n_hosts: int,
    *,
    seed: int = 1,
    interval_s: float = 1.0,
    tick_s: float = 1.0,
    history_len: int = 300,
    thresholds: Thresholds | None = None,
    scenario: str | None = None,
) -> AsyncIterator[FleetMonitor]:
    async with DemoFleet(n_hosts, seed=seed, scenario=scenario) as fleet:
        plans, ssh = plans_for_demo(fleet, interval_s)
        monitor = FleetMonitor(
            plans,
            thresholds=thresholds,
            tick_s=tick_s,
            history_len=history_len,
            closers=[ssh.close],
        )
        async with monitor:
            yield monitor
