"""The health rules' quiet path gives exactly the verdicts of the full rules.

`HostHealth` skips the per-GPU rules for a GPU whose fast readings are inside every limit while
its host has nothing raised, held or latched, and the straggler rule skips the per-GPU medians
when two medians prove that no GPU can be an outlier. Both are shortcuts that must never change
a verdict: here one HostHealth with the shortcuts and one without them (the straggler bound
cannot be turned off, so it is checked against the plain definition of the rule in
test_straggler_median.py as well) are fed the same messages and compared after each.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gputui.core.health import HostHealth
from gputui.core.model import Event, GpuInfo, GpuReading, Hello, Sample
from gputui.core.straggler import Judged, StragglerDetector, _Peers, _uniform, _values
from gputui.core.thresholds import Thresholds
from tests.agent_sim import run_fast, scenario

FAULTS: list[dict[str, Any]] = [
    {"kind": "xid", "xid": 79},
    {"kind": "xid", "xid": 63},
    {"kind": "xid", "xid": 154},
    {"kind": "ecc_dbe"},
    {"kind": "ecc_sbe_storm"},
    {"kind": "thermal_runaway"},
    {"kind": "power_brake"},
    {"kind": "pcie_downgrade"},
    {"kind": "nvlink_errors", "links_down": 1},
    {"kind": "row_remap_pending"},
    {"kind": "row_remap_failure"},
    {"kind": "gpu_lost"},
    {"kind": "straggler"},
]


def twins() -> tuple[HostHealth, HostHealth]:
    quick, full = HostHealth(), HostHealth()
    full.quiet_path = False
    return quick, full


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f"{f['kind']}{f.get('xid', '')}")
def test_quiet_path_matches_the_full_rules_on_every_fault(fault: dict[str, Any]) -> None:
    sc = scenario({**fault, "at": 20.0, "gpus": [2]})
    stream = run_fast(sc, until=240.0, slow_every=10, seed=5)
    hello = msgspec.convert(stream.lines[0], Hello)
    quick, full = twins()
    quiet_samples = 0
    for i, msg in enumerate(stream.lines[1:]):
        if msg["type"] == "event":
            event = msgspec.convert(msg, Event)
            quick.observe_event(event, msg["t"])
            full.observe_event(event, msg["t"])
        elif msg["type"] == "sample":
            sample = msgspec.convert(msg, Sample)
            a = quick.evaluate(hello, sample, sample.t)
            b = full.evaluate(hello, sample, sample.t)
            assert a == b, f"message {i}: {msg}"
            quiet_samples += all(not v.reasons for v in a.gpus.values())
        if i == 150:  # the operator clears the latches: both go back to quiet together
            quick.clear()
            full.clear()
    assert quiet_samples > 10  # the shortcut was taken, not only the full rules


INFO = dict(
    name="NVIDIA H100 80GB HBM3",
    memory_total_mib=81559.0,
    temp_slowdown_c=89.0,
    temp_gpu_max_c=87.0,
    pcie_gen_max=5,
    pcie_width_max=16,
    nvlink_count=18,
)

# Readings around every limit: temperatures at and either side of 87/89 C and the fallback,
# memory either side of 95%, every clock-event bit, slow fields now and then.
reading = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["ok"] * 8 + ["lost", "error"]),
        "util_pct": st.one_of(st.none(), st.sampled_from([0.0, 10.0, 49.0, 60.0, 95.0, 100.0])),
        "temp_c": st.one_of(st.none(), st.sampled_from([40.0, 83.0, 84.0, 86.9, 87.0, 89.0, 95.0])),
        "mem_used_mib": st.one_of(
            st.none(), st.sampled_from([1000.0, 77481.05, 77481.0, 77482.0, 81000.0])
        ),
        "clock_events": st.one_of(st.none(), st.sampled_from([0, 1, 4, 8, 32, 64, 128, 136])),
        "sm_clock_mhz": st.one_of(st.none(), st.sampled_from([300, 1500, 1700, 1980])),
        "pcie_gen": st.one_of(st.none(), st.none(), st.sampled_from([4, 5])),
        "pcie_replay": st.one_of(st.none(), st.none(), st.integers(0, 300)),
        "remap_pending": st.one_of(st.none(), st.none(), st.booleans()),
    }
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(reading, min_size=4, max_size=4), min_size=1, max_size=30),
    st.sampled_from([None, 82.0]),
)
def test_quiet_path_matches_the_full_rules_on_any_readings(
    samples: list[list[dict[str, Any]]], slowdown: float | None
) -> None:
    gpus = [
        GpuInfo(index=i, uuid=f"GPU-{i}", **{**INFO, "temp_slowdown_c": slowdown})  # type: ignore[arg-type]
        for i in range(4)
    ]
    hello = Hello(
        v=1, host="h", agent_version="t", backend="sim", interval_s=1.0, slow_every=10, gpus=gpus
    )
    quick, full = twins()
    for t, rows in enumerate(samples):
        readings = []
        for i, row in enumerate(rows):
            if row["status"] != "ok":
                readings.append(GpuReading(index=i, status=row["status"], error="x"))
            else:
                readings.append(
                    GpuReading(index=i, **{k: v for k, v in row.items() if k != "status"})
                )
        sample = Sample(v=1, t=float(t), seq=t, gpus=readings)
        assert quick.evaluate(hello, sample, float(t)) == full.evaluate(hello, sample, float(t))


values = st.lists(
    st.tuples(
        st.one_of(st.none(), st.integers(0, 100).map(float)),
        st.one_of(st.none(), st.integers(200, 2000)),
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=1000)
@example([(90.0, 1900), (90.0, 1900), (90.0, 1900), (90.0, 1900), (60.0, 1900)])
@example([(90.0, 1900), (90.0, 1900), (90.0, 1900), (90.0, 1900), (90.0, 1500)])
@example([(90.0, 1900), (90.0, 1900), (90.0, 1900), (None, 1900)])
@example([(49.0, 1900), (90.0, 1900), (90.0, 1900), (90.0, 1900)])
@given(values)
def test_one_pass_bounds_judge_every_gpu_as_the_rule_does(
    values: list[tuple[int | None, int | None]],
) -> None:
    th = Thresholds()
    gpus = {i: GpuReading(index=i, util_pct=u, sm_clock_mhz=c) for i, (u, c) in enumerate(values)}
    peers = _Peers(gpus)
    if peers.none_busy(th):
        assert all(peers.judge(r, th) is Judged.NO_YARDSTICK for r in gpus.values())
    every = _uniform(*_values(gpus), th)
    if every is not None:
        assert all(peers.judge(r, th) is every for r in gpus.values())


class PlainStragglers:
    """The straggler rule without shortcuts: every GPU judged against its peers every sample,
    the time rules as docs/health.md words them."""

    def __init__(self, th: Thresholds) -> None:
        self.th = th
        self.in_step_since: dict[int, float | None] = {}
        self.outlying: dict[int, int] = {}
        self.normal_since: dict[int, float] = {}
        self.flagged: dict[int, str] = {}
        self.first = True

    def update(self, readings: dict[int, GpuReading], t: float) -> dict[int, str]:
        th = self.th
        peers = _Peers(readings)
        for idx, reading in readings.items():
            judged = peers.judge(reading, th)
            if judged is Judged.NO_YARDSTICK:  # no judgement: flags and settling stay
                self.in_step_since[idx] = None
                self.outlying[idx] = 0
                continue
            since = self.in_step_since.get(idx)
            if since is None:
                since = self.in_step_since[idx] = float("-inf") if self.first else t
            sustained = t - since >= th.straggler_in_step_s
            if isinstance(judged, str):
                self.outlying[idx] = self.outlying.get(idx, 0) + 1
                self.normal_since.pop(idx, None)
                if idx in self.flagged or (
                    self.outlying[idx] >= th.straggler_samples and sustained
                ):
                    self.flagged[idx] = judged
            else:
                self.outlying[idx] = 0
                if idx in self.flagged:
                    start = self.normal_since.setdefault(idx, t)
                    if sustained and t - start >= th.straggler_settle_s:
                        del self.flagged[idx], self.normal_since[idx]
        for idx in list(self.in_step_since):
            if idx not in readings:
                del self.in_step_since[idx], self.outlying[idx]
                self.normal_since.pop(idx, None)
                self.flagged.pop(idx, None)
        self.first = False
        return dict(self.flagged)


gpu_values = st.tuples(
    st.sampled_from([None, 0.0, 30.0, 55.0, 70.0, 74.0, 75.0, 99.0, 100.0]),
    st.sampled_from([None, 300, 1500, 1700, 1779, 1780, 1980]),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.dictionaries(st.integers(0, 7), gpu_values, min_size=0, max_size=8),
            st.integers(1, 7),  # repeated: the rule needs runs of samples
            st.sampled_from([1.0, 1.0, 7.0, 31.0]),  # seconds between them
        ),
        min_size=1,
        max_size=12,
    )
)
def test_straggler_shortcuts_flag_what_the_plain_rule_flags(
    runs: list[tuple[dict[int, tuple[float | None, int | None]], int, float]],
) -> None:
    th = Thresholds()
    quick, plain = StragglerDetector(th), PlainStragglers(th)
    t = 1000.0
    for values, n, dt in runs:
        readings = {
            i: GpuReading(index=i, util_pct=u, sm_clock_mhz=c) for i, (u, c) in values.items()
        }
        for _ in range(n):
            t += dt
            assert quick.update(readings, t) == plain.update(readings, t)


def test_straggler_shortcuts_on_a_long_steady_run_then_a_slow_gpu() -> None:
    th = Thresholds()
    quick, plain = StragglerDetector(th), PlainStragglers(th)
    busy = {i: GpuReading(index=i, util_pct=99.0, sm_clock_mhz=1980) for i in range(8)}
    slow = {**busy, 3: GpuReading(index=3, util_pct=99.0, sm_clock_mhz=1200)}
    idle = {i: GpuReading(index=i, util_pct=0.0, sm_clock_mhz=345) for i in range(8)}
    samples = [busy] * 20 + [slow] * 8 + [idle] * 50 + [busy] * 100 + [slow] * 3 + [busy] * 3
    for t, readings in enumerate(samples):
        assert quick.update(readings, t) == plain.update(readings, t)
    assert plain.flagged == {} and quick.update(slow, 999) == plain.update(slow, 999)


def test_independent_gpus_are_not_stragglers_but_two_slow_ones_in_a_lockstep_job_are() -> None:
    th = Thresholds()

    def flags(utils: list[float], samples: int = 8) -> dict[int, str]:
        detector = StragglerDetector(th)
        readings = {
            i: GpuReading(index=i, util_pct=u, sm_clock_mhz=1980) for i, u in enumerate(utils)
        }
        for t in range(samples):
            out = detector.update(readings, t)
        return out

    # An inference server: half the GPUs serve a burst, half idle. Not a straggler among them.
    assert flags([85.0, 88.0, 80.0, 90.0, 18.0, 20.0, 17.0, 22.0]) == {}
    # Data-parallel training with two slow GPUs: both flagged, neither hides the other.
    assert sorted(flags([97.0, 98.0, 97.0, 96.0, 97.0, 98.0, 40.0, 45.0])) == [6, 7]


def test_an_inference_host_raises_no_straggler_over_ten_minutes() -> None:
    sc = {**scenario(), "workload": "inference"}
    stream = run_fast(sc, until=600.0, slow_every=10, seed=11)
    hello = msgspec.convert(stream.lines[0], Hello)
    health = HostHealth()
    for msg in stream.samples:
        verdict = health.evaluate(hello, msgspec.convert(msg, Sample), msg["t"])
        assert not any(r.code == "straggler" for r in verdict.host.reasons), msg["t"]
