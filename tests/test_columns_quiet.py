"""The batch path (collect/columns.py) gives exactly the verdicts of the full rules.

Samples of several hosts go through `FleetColumns` in batches of varying size, where the
vectorised quiet path settles what it can and the Python rules judge the rest; beside them,
one `HostHealth` per host with the quiet path off judges every sample as it comes. Every
verdict must be equal, on every packaged scenario, every fault kind the rules know, and random
readings around every limit. The columns and rings must hold what the samples said.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gputui.collect.columns import MIN_VECTOR_BATCH, FleetColumns
from gputui.collect.history import HostHistory, Metric
from gputui.collect.scenarios import load_scenario, mix_names, scenario_names
from gputui.core.health import HostHealth
from gputui.core.model import Event, GpuInfo, GpuReading, Hello, HostVerdict, Sample
from gputui.core.quiet_columns import FAST_FIELDS
from tests.agent_sim import run_fast, scenario
from tests.test_health_quiet import FAULTS, INFO


@dataclass
class Host:
    """A Judge for the batch, with the reference rules beside it."""

    health: HostHealth = field(default_factory=HostHealth)
    full: HostHealth = field(default_factory=HostHealth)
    verdicts: list[HostVerdict] = field(default_factory=list)
    expected: list[HostVerdict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.full.quiet_path = False

    def apply_verdict(self, verdict: HostVerdict, now: float) -> None:
        self.verdicts.append(verdict)

    def judging_failed(self, exc: Exception) -> None:
        raise AssertionError("the rules failed") from exc


class Fleet:
    """Hosts fed through one FleetColumns, flushed when the test says."""

    def __init__(self, n: int, history_len: int = 16, min_vector_batch: int = 1) -> None:
        self.columns = FleetColumns(history_len, n)
        # Every batch, however small, through the vectorised path unless a test says otherwise.
        self.columns.min_vector_batch = min_vector_batch
        self.hosts = [Host() for _ in range(n)]
        self.layouts: list[Any] = [None] * n
        self.hellos: list[Hello | None] = [None] * n
        self.histories: list[HostHistory | None] = [None] * n
        self.alone: list[HostHistory | None] = [None] * n  # a standalone ring, for comparison
        self.last: list[tuple[Sample, float] | None] = [None] * n

    def hello(self, i: int, hello: Hello) -> None:
        self.columns.flush()
        self.hellos[i] = hello
        history = self.columns.history_for(self.histories[i], hello.gpus)
        self.histories[i] = history
        self.alone[i] = HostHistory(hello.gpus, self.columns.ring.capacity)
        self.layouts[i] = self.columns.layout(self.hosts[i], hello, history)

    def sample(self, i: int, sample: Sample, now: float) -> None:
        hello = self.hellos[i]
        assert hello is not None
        host = self.hosts[i]
        host.expected.append(host.full.evaluate(hello, sample, now))
        alone = self.alone[i]
        assert alone is not None
        alone.append(now, sample)
        self.columns.add(self.layouts[i], hello, sample, now)
        self.last[i] = (sample, now)

    def event(self, i: int, event: Event, now: float) -> None:
        self.columns.flush()  # as HostRuntime does before an event
        host, hello, last = self.hosts[i], self.hellos[i], self.last[i]
        host.health.observe_event(event, now)
        host.full.observe_event(event, now)
        if hello is not None and last is not None:
            host.verdicts.append(host.health.evaluate(hello, last[0], now))
            host.expected.append(host.full.evaluate(hello, last[0], now))

    def check(self) -> None:
        self.columns.flush()
        for i, host in enumerate(self.hosts):
            assert host.verdicts == host.expected, f"host {i}"
            history, alone = self.histories[i], self.alone[i]
            if history is None or alone is None:
                continue
            assert len(history) == len(alone) and history.appended == alone.appended
            np.testing.assert_array_equal(history.times(), alone.times())
            for g in alone.gpu_indices:
                for m in Metric:
                    np.testing.assert_array_equal(history.series(g, m), alone.series(g, m))


def fast_row(r: GpuReading | None) -> list[float]:
    if r is None or r.status != "ok":
        return [math.nan] * len(FAST_FIELDS)
    return [math.nan if getattr(r, f) is None else float(getattr(r, f)) for f in FAST_FIELDS]


def replay(streams: list[list[dict[str, Any]]], seed: int) -> Fleet:
    """Interleave the hosts' messages by time, flushing after a random number of samples."""
    fleet = Fleet(len(streams))
    rng = random.Random(seed)
    merged = sorted(
        ((msg.get("t", 0.0), i, k, msg) for i, s in enumerate(streams) for k, msg in enumerate(s)),
        key=lambda x: (x[0], x[1], x[2]),
    )
    budget = rng.randint(1, 12)
    for t, i, _k, msg in merged:
        if msg["type"] == "hello":
            fleet.hello(i, msgspec.convert(msg, Hello))
        elif msg["type"] == "event":
            fleet.event(i, msgspec.convert(msg, Event), t)
        elif msg["type"] == "sample":
            fleet.sample(i, msgspec.convert(msg, Sample), t)
            budget -= 1
            if budget <= 0:
                fleet.check()
                budget = rng.randint(1, 12)
    fleet.check()
    return fleet


SCENARIOS = [n for n in scenario_names() if n not in mix_names()]


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_batch_path_gives_the_full_rules_verdicts_on_every_scenario(name: str) -> None:
    sc = load_scenario(name)
    streams = [run_fast(sc, until=150.0, slow_every=10, seed=s).lines for s in (1, 2, 3)]
    fleet = replay(streams, seed=len(name))
    assert fleet.columns.settled > 0  # the vectorised path was taken, not only the rules


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f"{f['kind']}{f.get('xid', '')}")
def test_the_batch_path_gives_the_full_rules_verdicts_on_every_fault(
    fault: dict[str, Any],
) -> None:
    sc = scenario({**fault, "at": 20.0, "gpus": [2]})
    healthy = scenario()
    streams = [
        run_fast(sc, until=200.0, slow_every=10, seed=5).lines,
        run_fast(healthy, until=200.0, slow_every=10, seed=6).lines,
    ]
    fleet = replay(streams, seed=7)
    assert fleet.columns.settled > 0
    faulty = fleet.hosts[0]
    raised = {r.code for v in faulty.verdicts for r in v.host.reasons}
    assert raised, "the fault raised nothing: the comparison proved little"


def test_the_columns_hold_the_newest_readings_of_each_host() -> None:
    streams = [run_fast(scenario(), until=30.0, slow_every=10, seed=s).lines for s in (1, 2)]
    fleet = replay(streams, seed=3)
    for i, layout in enumerate(fleet.layouts):
        last = fleet.last[i]
        assert last is not None
        by_index = {r.index: r for r in last[0].gpus}
        want = np.array([fast_row(by_index.get(g)) for g in layout.indices], dtype=np.float32)
        np.testing.assert_array_equal(fleet.columns.readings(layout), want)


# Readings around every limit (as tests/test_health_quiet.py), with memory and clock masks
# beyond float32, NaN-free None fields, GPUs missing or added, statuses other than ok.
reading = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["ok"] * 10 + ["lost", "error", "reset_required"]),
        "util_pct": st.one_of(
            st.none(), st.sampled_from([0.0, 10.0, 49.0, 50.0, 60.0, 89.9, 90.0, 95.0, 100.0])
        ),
        "temp_c": st.one_of(
            st.none(), st.sampled_from([40.0, 81.9, 82.0, 83.0, 84.0, 86.9, 87.0, 89.0, 95.0])
        ),
        "mem_used_mib": st.one_of(
            st.none(), st.sampled_from([0.0, 1000.0, 77481.05, 77481.0, 77482.0, 81000.0])
        ),
        "power_w": st.one_of(st.none(), st.sampled_from([80.0, 650.0])),
        "clock_events": st.one_of(
            st.none(), st.sampled_from([0, 1, 4, 8, 32, 64, 128, 136, 2**40, 2**60 + 1, 2**62])
        ),
        "sm_clock_mhz": st.one_of(st.none(), st.sampled_from([300, 1500, 1700, 1779, 1980])),
        "pcie_gen": st.one_of(st.none(), st.none(), st.none(), st.sampled_from([4, 5])),
        "pcie_replay": st.one_of(st.none(), st.none(), st.none(), st.integers(0, 300)),
        "remap_pending": st.one_of(st.none(), st.none(), st.none(), st.booleans()),
    }
)
gpu_set = st.sampled_from([[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2], [0, 1, 2, 3, 4]])


def make_reading(i: int, row: dict[str, Any]) -> GpuReading:
    if row["status"] != "ok":
        return GpuReading(index=i, status=row["status"], error="x")
    return GpuReading(index=i, **{k: v for k, v in row.items() if k != "status"})


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),  # which host
            gpu_set,
            st.lists(reading, min_size=5, max_size=5),
            st.booleans(),  # flush after it
            st.integers(1, 6),  # how many times in a row (hysteresis, holds, windows)
        ),
        min_size=1,
        max_size=30,
    ),
    st.sampled_from([None, 82.0]),
)
def test_the_batch_path_gives_the_full_rules_verdicts_on_any_readings(
    samples: list[tuple[int, list[int], list[dict[str, Any]], bool, int]],
    slowdown: float | None,
) -> None:
    gpus = [
        GpuInfo(index=i, uuid=f"GPU-{i}", **{**INFO, "temp_slowdown_c": slowdown})  # type: ignore[arg-type]
        for i in range(4)
    ]
    hello = Hello(
        v=1, host="h", agent_version="t", backend="sim", interval_s=1.0, slow_every=10, gpus=gpus
    )
    fleet = Fleet(3)
    for i in range(3):
        fleet.hello(i, hello)
    t = 0.0
    for host, indices, rows, flush, repeat in samples:
        readings = [make_reading(i, rows[i]) for i in indices]
        for _ in range(repeat):
            t += 1.0
            fleet.sample(host, Sample(v=1, t=t, seq=int(t), gpus=readings), t)
        if flush:
            fleet.check()
    fleet.check()


def test_a_clean_busy_fleet_is_settled_by_the_vectorised_path() -> None:
    """Most samples of a healthy fleet never reach the Python rules."""
    streams = [run_fast(scenario(), until=60.0, slow_every=10, seed=s).lines for s in range(4)]
    fleet = replay(streams, seed=1)
    samples = sum(len(h.verdicts) for h in fleet.hosts)
    # Slow samples (1 in 10) and a straggler window's first samples go to the rules.
    assert fleet.columns.settled >= 0.6 * samples


def test_a_small_batch_is_judged_by_the_rules_with_the_same_verdicts_and_rings() -> None:
    """Below MIN_VECTOR_BATCH samples the numpy calls cost more than the rules: each sample is
    judged and written on its own, and nothing else differs."""
    streams = [run_fast(scenario(), until=30.0, slow_every=10, seed=s).lines for s in range(2)]
    fleet = Fleet(2, min_vector_batch=MIN_VECTOR_BATCH)
    for i, stream in enumerate(streams):
        fleet.hello(i, msgspec.convert(stream[0], Hello))
    for first, second in zip(streams[0][1:], streams[1][1:], strict=False):
        for i, line in enumerate((first, second)):
            if line["type"] == "sample":
                sample = msgspec.convert(line, Sample)
                fleet.sample(i, sample, sample.t)
        fleet.columns.flush()  # two samples a batch: under the bound
        fleet.check()
    assert fleet.columns.batches > 0 and fleet.columns.settled == 0


def test_the_fleet_ring_keeps_136_bytes_per_point_of_an_8_gpu_host() -> None:
    columns = FleetColumns(300, 10)
    gpus = [GpuInfo(index=i, uuid=f"GPU-{i}", **INFO) for i in range(8)]  # type: ignore[arg-type]
    for _ in range(10):
        columns.history_for(None, gpus)
    ring = columns.ring
    used = ring.values[: ring.slot_count].nbytes + ring.t[:10].nbytes
    assert used == 10 * 300 * 136
    assert ring.slot_count == 80  # no GPU slot wasted


async def test_a_batch_is_judged_within_its_period_without_a_tick() -> None:
    """Inside an event loop a sample waits for the batch timer, not for the monitor's tick."""
    stream = run_fast(scenario(), until=5.0, slow_every=10, seed=1).lines
    fleet = Fleet(1)
    fleet.columns.batch_s = 0.02
    fleet.hello(0, msgspec.convert(stream[0], Hello))
    sample = msgspec.convert(next(m for m in stream if m["type"] == "sample"), Sample)
    fleet.sample(0, sample, sample.t)
    assert fleet.hosts[0].verdicts == []  # waiting in the batch
    await asyncio.sleep(0.2)
    assert fleet.hosts[0].verdicts == fleet.hosts[0].expected
    assert fleet.columns.batches == 1
