"""Triage runs: the agent's deep pass on many hosts at once, judged into one report.

Used by `gputui triage` and by the TUI's triage key: both call `triage_config()` (or
`triage_demo()` for the simulated fleet) and render the TriageReport with
gputui.render.triage. The suggested `gputui node fail` commands use the site's own action
names (its [actions] presets), so they can be pasted as they are.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, fields

from gputui.collect.demo import DemoFleet
from gputui.collect.fleet import agent_args, sim_scenarios, ssh_options
from gputui.collect.launch import AgentArgs
from gputui.collect.oneshot import (
    DEFAULT_TIMEOUT_S,
    OneShotJob,
    OneShotResult,
    TriageArgs,
    run_oneshots,
)
from gputui.collect.ssh import HostError, SshContext
from gputui.config import DEFAULT_INTERVAL_S, Config, ConfigError, HostSpec
from gputui.core.thresholds import Thresholds
from gputui.core.triage import HostTriage, TriageInput, TriageReport, assess_host, build_report
from gputui.core.triage_steps import SLURM_VOCABULARY, ActionVocabulary
from gputui.ops.catalog import load_actions

# The label of a host (hosts.toml `labels = { gpus = "8" }`) that says how many GPUs it has.
EXPECTED_GPUS_LABEL = "gpus"


@dataclass(frozen=True)
class TriageOptions:
    since_s: float | None = None  # kernel log window; None: since boot
    samples: int = 5  # health rules that judge a series (straggler) need several
    # Between samples on real hosts (simulated ones do not wait).
    interval_s: float = DEFAULT_INTERVAL_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    sim_elapsed_s: float | None = None  # simulated hosts: the agent's default when None


def _triage_args(base: AgentArgs, options: TriageOptions) -> TriageArgs:
    common = {f.name: getattr(base, f.name) for f in fields(AgentArgs)}
    common["interval_s"] = options.interval_s
    common["sim_elapsed_s"] = options.sim_elapsed_s  # the time triage reads simulated hosts at
    return TriageArgs(**common, samples=options.samples, since_s=options.since_s)


def vocabulary_for(config: Config, hosts_path: str | None = None) -> ActionVocabulary:
    """The action names of the site's presets: Kubernetes fences with cordon and evicts with
    drain, Slurm fences with drain and evicts with requeue-jobs (or down)."""
    try:
        names = {a.name for a in load_actions(config)}
    except ConfigError:
        names = set()  # a broken [actions] table must not stop triage; the command omits them
    fence: str | None
    evict: str | None
    if "cordon" in names:
        fence, evict = "cordon", "drain" if "drain" in names else None
    else:
        fence = "drain" if "drain" in names else None
        evict = next((n for n in ("requeue-jobs", "down") if n in names), None)
    spares = {host for group in config.groups.values() if group.spares for host in group.hosts}
    return ActionVocabulary(
        fence=fence, evict=evict, hosts_path=hosts_path, with_spare=frozenset(spares)
    )


def _expected(spec: HostSpec) -> int | None:
    value = spec.labels.get(EXPECTED_GPUS_LABEL, "")
    return int(value) if value.isdigit() else None


def jobs_for_config(specs: Sequence[HostSpec], options: TriageOptions) -> list[OneShotJob]:
    scenarios = sim_scenarios(specs)
    return [
        OneShotJob(
            host=spec.name,
            args=_triage_args(agent_args(spec, scenarios.get(spec.name)), options),
            python=spec.python,
            transport=spec.transport,
        )
        for spec in specs
    ]


def jobs_for_demo(
    fleet: DemoFleet, names: Sequence[str], options: TriageOptions
) -> list[OneShotJob]:
    wanted = set(names)
    jobs = []
    for host in fleet.hosts:
        if host.name not in wanted:
            continue
        base = AgentArgs(backend="sim", host=host.name, scenario=host.scenario, seed=host.seed)
        jobs.append(OneShotJob(host=host.name, args=_triage_args(base, options)))
    return jobs


def judge(
    result: OneShotResult,
    thresholds: Thresholds | None = None,
    vocab: ActionVocabulary = SLURM_VOCABULARY,
    expected_gpus: int | None = None,
) -> HostTriage:
    """One host's one-shot answer as a triage verdict."""
    error = result.error
    if error is None and result.hello is None:
        # Every host gets a reason: an agent that exited without a word, or spoke another
        # protocol version, is not a healthy host.
        if result.bad_lines:
            text = f"{result.bad_lines} lines did not decode: {result.last_problem}"
            error = HostError("bad_stream", text)
        else:
            error = HostError("no_answer", "the agent ended without writing anything")
    inp = TriageInput(
        host=result.host,
        hello=result.hello,
        samples=tuple(result.samples),
        events=tuple(result.events),
        errors=tuple(result.errors),
        facts=result.triage,
        error_code=error.code if error is not None else None,
        error=error.text if error is not None else None,
        expected_gpus=expected_gpus,
    )
    return assess_host(inp, thresholds, vocab)


async def triage_jobs(
    jobs: Sequence[OneShotJob],
    ssh: SshContext,
    options: TriageOptions,
    thresholds: Thresholds | None = None,
    vocab: ActionVocabulary = SLURM_VOCABULARY,
    expected: dict[str, int] | None = None,
) -> TriageReport:
    results = await run_oneshots(jobs, ssh, options.timeout_s)
    expected = expected or {}
    hosts = [judge(r, thresholds, vocab, expected.get(r.host)) for r in results]
    return build_report(hosts, time.time(), options.since_s)


async def triage_config(
    config: Config,
    specs: Sequence[HostSpec],
    options: TriageOptions,
    hosts_path: str | None = None,
) -> TriageReport:
    """Triage `specs` of a configured fleet (the TUI calls this for the selected host)."""
    ssh = SshContext(ssh_options(config.ssh))
    try:
        expected = {s.name: n for s in specs if (n := _expected(s)) is not None}
        return await triage_jobs(
            jobs_for_config(specs, options),
            ssh,
            options,
            config.thresholds,
            vocabulary_for(config, hosts_path),
            expected,
        )
    finally:
        await ssh.close()


async def triage_demo(
    fleet: DemoFleet,
    names: Sequence[str],
    options: TriageOptions,
    thresholds: Thresholds | None = None,
) -> TriageReport:
    """Triage hosts of a running demo fleet (Slurm action names in the commands)."""
    ssh = SshContext(fleet.ssh_options)
    try:
        return await triage_jobs(jobs_for_demo(fleet, names, options), ssh, options, thresholds)
    finally:
        await ssh.close()
