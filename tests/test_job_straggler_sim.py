"""Job-level stragglers on simulated multi-host jobs, fast-forwarded, through the monitor.

Each host of a data-parallel Slurm job runs the agent's NVML backend on its own simulated NVML,
all on one fake clock (docs/scenarios.md, "A job-level straggler for tests"); its samples are
decoded as the collector decodes them and fed to the monitor's host runtimes, whose published
snapshots carry the job-level verdicts. So the readings are the simulator's own (the job's
checkpoint writes and evaluations, which every host enters at once, power capping, thermal
lag), the processes name their job as the real attribution does, and the rule runs where it
runs in gputui.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest

from gputui.agent.sim_backend import SimBackend
from gputui.collect.feed import HostFeed, Source
from gputui.collect.monitor import FleetMonitor, HostPlan
from gputui.collect.sim_jobs import data_parallel_fleet
from gputui.core.model import FleetSnapshot, Hello, Sample
from gputui.core.thresholds import Thresholds
from tests.agent_sim import T0, FakeClock

TH = Thresholds()
INTERVAL_S = 1.0
SLOW_EVERY = 10  # processes, and so the jobs, are read with the slow signals
TEN_MINUTES = 600


class Fed(Source):
    """The host's runtime is fed by the test; the source is never started."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, feed: HostFeed) -> None:  # pragma: no cover - never started
        raise AssertionError("not started in this test")


def fleet(
    n_hosts: int, seed: int, until: int, **slow: object
) -> Iterator[tuple[float, FleetSnapshot]]:
    """(seconds into the run, the monitor's snapshot) once a second for `until` s, the hosts
    of `data_parallel_fleet(n_hosts, seed, **slow)` each sampled once before every tick."""
    hosts = data_parallel_fleet(n_hosts, seed, **slow)  # type: ignore[arg-type]
    clock = FakeClock()
    monitor = FleetMonitor(
        [HostPlan(source=Fed(name), interval_s=INTERVAL_S) for name, _ in hosts],
        tick_s=INTERVAL_S,
        clock=lambda: T0 + clock.t,
    )
    head = {"v": 1, "agent_version": "t", "backend": "sim", "interval_s": INTERVAL_S}
    backends = []
    for i, (name, sc) in enumerate(hosts):
        backend = SimBackend(sc, seed=seed * 100 + i, clock=clock, event_thread=False)
        hello = {**head, "host": name, "slow_every": SLOW_EVERY, **backend.hello()}
        monitor.hosts[name].on_message(msgspec.convert(hello, Hello))
        backends.append((monitor.hosts[name], backend))
    for seq in range(until + 1):
        clock.t = float(seq)
        for runtime, backend in backends:
            read_slow = seq % SLOW_EVERY == 0
            body = backend.sample(read_slow)
            sample = {"v": 1, "t": T0 + clock.t, "seq": seq, "slow": read_slow, **body}
            runtime.on_message(msgspec.convert(sample, Sample))
        yield clock.t, monitor.publish()


def job_stragglers(snap: FleetSnapshot) -> set[tuple[str, int]]:
    return {
        (h.name, r.gpu)
        for h in snap.hosts
        for r in h.verdict.host.reasons
        if r.code == "job_straggler" and r.gpu is not None
    }


def host_stragglers(snap: FleetSnapshot) -> set[tuple[str, int]]:
    return {
        (h.name, r.gpu)
        for h in snap.hosts
        for r in h.verdict.host.reasons
        if r.code == "straggler" and r.gpu is not None
    }


SLOW = 2  # the third host of the job
AT = 30.0
# Found within two sample intervals plus the rule's longest wait: a checkpoint write or an
# evaluation right at the slow-down breaks the peers' step, which then counts again.
DEADLINE = AT + TH.straggler_settle_s + 2 * INTERVAL_S


@pytest.mark.parametrize("cause", ["none", "power_cap"])
@pytest.mark.parametrize("seed", range(3))
def test_the_slow_host_of_a_four_host_job_is_found(seed: int, cause: str) -> None:
    run = list(fleet(4, seed, int(DEADLINE) + 60, slow_host=SLOW, cause=cause, at=AT))
    slow = {(f"sim-{SLOW + 1:03d}", i) for i in range(8)}
    caught = [t for t, snap in run if job_stragglers(snap)]
    assert caught, seed
    assert AT <= caught[0] <= DEADLINE, caught[0]
    # Every GPU of the slow host, no other, and it stays (the job goes on being slow).
    assert all(job_stragglers(snap) <= slow for t, snap in run)
    assert all(job_stragglers(snap) == slow for t, snap in run if t >= DEADLINE)
    # The host-level rule cannot see it: the slow host's GPUs agree with each other.
    assert not any(host_stragglers(snap) for _, snap in run)
    last = run[-1][1]
    (host,) = [h for h in last.hosts if h.name == f"sim-{SLOW + 1:03d}"]
    text = next(r.text for r in host.verdict.host.reasons if r.code == "job_straggler")
    assert "straggles in job slurm:" in text and "the job's other hosts' median" in text
    if cause == "power_cap":  # its own reason beside it: the limit it is held to
        assert "software power cap (limit" in text, text


def dips(snaps: list[FleetSnapshot]) -> int:
    """Checkpoint writes seen: runs of samples with every GPU of the fleet nearly idle."""
    idle = [
        all((g.util_pct or 0.0) < 10.0 for h in s.hosts if h.sample for g in h.sample.gpus)
        for s in snaps
    ]
    return sum(1 for a, b in zip([False, *idle], idle, strict=False) if b and not a)


def healthy_sweep(seeds: range, n_hosts: int) -> None:
    for seed in seeds:
        snaps = []
        for t, snap in fleet(n_hosts, seed, TEN_MINUTES):
            assert not job_stragglers(snap), (seed, t, job_stragglers(snap))
            assert not [e for e in snap.events if e.kind == "job_straggler"], (seed, t)
            snaps.append(snap)
        assert dips(snaps) >= 2, seed  # the job wrote its checkpoints meanwhile, all at once


@pytest.mark.parametrize("n_hosts", [2, 4])
def test_healthy_multi_host_jobs_raise_nothing_in_ten_minutes(n_hosts: int) -> None:
    healthy_sweep(range(2), n_hosts)


@pytest.mark.slow
def test_healthy_four_host_jobs_raise_nothing_in_ten_minutes_over_twenty_seeds() -> None:
    healthy_sweep(range(20), 4)


@pytest.mark.slow
@pytest.mark.parametrize("cause", ["none", "power_cap"])
def test_ten_healthy_minutes_then_a_slow_host_caught_on_every_seed(cause: str) -> None:
    """Past the first checkpoint writes, so the peers must have been in step for a while;
    and kept through the next write, which is no judgement."""
    at = float(TEN_MINUTES)
    deadline = at + TH.straggler_settle_s + 2 * INTERVAL_S
    slow = {(f"sim-{SLOW + 1:03d}", i) for i in range(8)}
    for seed in range(20):
        run = list(fleet(4, seed, TEN_MINUTES + 320, slow_host=SLOW, cause=cause, at=at))
        caught = [t for t, snap in run if job_stragglers(snap)]
        assert caught and at <= caught[0] <= deadline, (seed, caught[:1])
        assert caught == [t for t, _ in run if t >= caught[0]], seed  # and it stays
        # Only the slow host's GPUs, each at its own fifth outlying sample (within an
        # evaluation phase some are nearer the line than others), all of them by the deadline.
        assert all(job_stragglers(snap) <= slow for _, snap in run), seed
        assert all(job_stragglers(snap) == slow for t, snap in run if t >= deadline), seed
        assert dips([snap for t, snap in run if t > caught[0]]) >= 1, seed
