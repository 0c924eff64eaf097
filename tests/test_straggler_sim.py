"""Straggler verdicts on simulated hosts, fast-forwarded: no false alarm, no flapping.

Each host runs the agent's NVML backend on the simulated NVML with the clock moved forward one
sample interval at a time; its samples are decoded as the collector decodes them and judged by
`HostHealth`. So the readings are the simulator's own (a training job's checkpoint dips and
evaluation phases, an inference server's independent request bursts, thermal lag), not readings
made up for the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from gputui.agent.sim_backend import SimBackend
from gputui.core.health import HostHealth
from gputui.core.model import Hello, HostVerdict, Level, Sample
from gputui.core.thresholds import Thresholds
from tests.agent_sim import FakeClock

MODELS = ("H100-SXM", "A100-SXM", "V100-SXM2")
WORKLOADS = ("training", "inference", "idle")
SEEDS = range(30)
TEN_MINUTES = 600
TH = Thresholds()


def host(
    model: str, workload: str, seed: int, *faults: dict[str, Any], until: int = TEN_MINUTES
) -> Iterator[tuple[float, HostVerdict, Sample]]:
    """(seconds into the run, the host's verdict, the sample) once a second for `until` s."""
    sc = {"name": "t", "gpus": 8, "model": model, "workload": workload, "fault": list(faults)}
    clock = FakeClock()
    backend = SimBackend(sc, seed=seed, clock=clock, event_thread=False)
    head = {"v": 1, "host": "sim", "agent_version": "t", "backend": "sim", "interval_s": 1.0}
    hello = msgspec.convert({**head, "slow_every": 60, **backend.hello()}, Hello)
    health = HostHealth()
    for seq in range(until + 1):
        clock.t = float(seq)
        body = backend.sample(slow=seq % 60 == 0)
        t = 1_700_000_000.0 + seq
        sample = msgspec.convert({"v": 1, "t": t, "seq": seq, **body}, Sample)
        yield clock.t, health.evaluate(hello, sample, t), sample


def stragglers(verdict: HostVerdict) -> list[str]:
    return [r.text for r in verdict.host.reasons if r.code == "straggler"]


def levels(verdicts: list[HostVerdict]) -> list[Level]:
    """The host's level each time it changed: what the event log would show."""
    out: list[Level] = []
    for v in verdicts:
        if not out or v.host.level is not out[-1]:
            out.append(v.host.level)
    return out


def dips(samples: list[Sample]) -> int:
    """Checkpoint writes seen: runs of samples with every GPU nearly idle."""
    idle = [all((g.util_pct or 0.0) < 10.0 for g in s.gpus) for s in samples]
    return sum(1 for a, b in zip([False, *idle], idle, strict=False) if b and not a)


# A straggler that stays: GPU 6 at 55% of its peers from 5 s in, on a hot host. Every GPU's
# cooling runs 10 C short of nominal, which keeps them below their limits (no thermal reason
# of their own) but is what a loaded rack looks like.
HOT = {"kind": "thermal_runaway", "gpus": list(range(8)), "at": 0.0, "rise_c": 10.0}
SLOW_GPU6 = {"kind": "straggler", "gpus": [6], "at": 5.0, "factor": 0.55}


@pytest.mark.parametrize("model", MODELS)
def test_a_persistent_straggler_warns_once_through_checkpoint_dips(model: str) -> None:
    seed = MODELS.index(model)
    run = list(host(model, "training", seed, HOT, SLOW_GPU6, until=660))
    verdicts = [v for _, v, _ in run]
    assert dips([s for _, _, s in run]) >= 2  # the job wrote checkpoints meanwhile
    assert levels(verdicts) == [Level.OK, Level.WARN]  # one warning, never withdrawn
    first = next(t for t, v, _ in run if stragglers(v))
    assert first <= SLOW_GPU6["at"] + TH.straggler_samples
    for t, v, _ in run:
        if t >= first:
            assert [r.code for r in v.host.reasons] == ["straggler"], t
            assert stragglers(v)[0].startswith("GPU6 straggles")


@pytest.mark.parametrize("model", MODELS)
def test_a_straggler_clears_once_it_has_been_gone_for_the_settle_period(model: str) -> None:
    seed, end = MODELS.index(model), 300.0
    run = list(host(model, "training", seed, HOT, {**SLOW_GPU6, "duration": end - 5.0}))
    assert levels([v for _, v, _ in run]) == [Level.OK, Level.WARN, Level.OK]
    cleared = next(t for t, v, _ in run if t > end and not stragglers(v))
    # Not before its settle period, and not much later: a checkpoint write right at the end
    # (18 s at most), plus the peers' time to be in step again, is the most it waits for.
    assert end + TH.straggler_settle_s <= cleared
    assert cleared <= end + 18 + TH.straggler_in_step_s + TH.straggler_settle_s + 2


@pytest.mark.parametrize("model", MODELS)
def test_inference_gpus_in_step_by_chance_raise_no_straggler(model: str) -> None:
    """In the first ten minutes of an inference host, these seeds each hold a moment when a
    burst of requests keeps most GPUs busy and in step for a few seconds while one idles
    (util 16% against the others' 80% on seed 2): no yardstick, no straggler."""
    for seed in (2, 10, 12, 13, 33):
        for t, v, _ in host(model, "inference", seed):
            assert not stragglers(v), (seed, t, stragglers(v))


# Sweeps of many seeds: a minute or more on two cores, so `-m "not slow"` leaves them out.


@pytest.mark.slow
@pytest.mark.parametrize("workload", ["inference", "idle"])
@pytest.mark.parametrize("model", MODELS)
def test_healthy_hosts_raise_no_straggler_in_ten_minutes(model: str, workload: str) -> None:
    for seed in SEEDS:
        for t, v, _ in host(model, workload, seed):
            assert not stragglers(v), (seed, t, stragglers(v))


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_ten_healthy_minutes_of_training_then_a_straggler_caught_on_every_seed(
    model: str,
) -> None:
    """Past the first checkpoint writes, so the peers must have been in step for a while."""
    at = float(TEN_MINUTES)
    deadline = at + 18 + TH.straggler_in_step_s + TH.straggler_samples  # a write, then in step
    for seed in SEEDS:
        run = list(host(model, "training", seed, {**SLOW_GPU6, "at": at}, until=int(deadline)))
        caught = [t for t, v, _ in run if stragglers(v)]
        assert caught and caught[0] >= at, seed
        assert caught == [t for t, _, _ in run if t >= caught[0]], seed  # and it stays
        assert all(s.startswith("GPU6 straggles") for _, v, _ in run for s in stragglers(v))
