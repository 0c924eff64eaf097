"""Rollups from samples (gputui/core/rollup.py): a real H200's stream, and hand-built samples
for what the recording does not hold (counter resets, held-clock counters, a narrowed link,
XIDs, a replaced GPU)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import msgspec
import pytest

from gputui.core.model import (
    CLOCK_EVENT_HW_POWER_BRAKE_SLOWDOWN,
    CLOCK_EVENT_HW_SLOWDOWN,
    CLOCK_EVENT_SW_POWER_CAP,
    AgentMessage,
    FleetEvent,
    FleetSnapshot,
    GpuInfo,
    GpuReading,
    Hello,
    HostSnapshot,
    HostState,
    Sample,
)
from gputui.core.rollup import (
    BUCKET_5M_S,
    BUCKET_DAY_S,
    HELD_FIELDS,
    Rollup,
    RollupAccumulator,
    bucket_start,
    merge,
    merge_all,
    rekey,
)
from tests.test_replay_h200 import STREAM, recorded, replay

T0 = 1_800_000_000  # the start of a 5-minute bucket (not of a day)
DAY0 = bucket_start(T0, BUCKET_DAY_S)

INFO = GpuInfo(
    index=0,
    uuid="GPU-a",
    name="NVIDIA H100",
    power_limit_w=700.0,
    temp_slowdown_c=90.0,
    pcie_gen_max=5,
    pcie_width_max=16,
)
INFO_B = GpuInfo(index=1, uuid="GPU-b", name="NVIDIA H100", temp_slowdown_c=90.0)


def sample(t: float, seq: int, *readings: GpuReading, slow: bool = False) -> Sample:
    return Sample(v=1, t=t, seq=seq, gpus=list(readings), slow=slow)


def h200_rollups(length_s: int) -> list[Rollup]:
    decoder = msgspec.json.Decoder(AgentMessage)
    acc = RollupAccumulator(length_s)
    hello: Hello | None = None
    out: list[Rollup] = []
    for line in STREAM.read_bytes().splitlines():
        message = decoder.decode(line)
        if isinstance(message, Hello):
            hello = message
        elif isinstance(message, Sample):
            assert hello is not None
            out += acc.add_sample(hello.host, hello.gpus, message)
    return out + acc.close_all()


# -- the real H200 ---------------------------------------------------------------------------


def test_h200_stream_rolls_up_to_what_the_gpu_said() -> None:
    lines = recorded()
    hello, samples = lines[0], lines[1:]
    gpu = hello["gpus"][0]
    readings = [s["gpus"][0] for s in samples]
    loaded = [r for r in readings if r["util_pct"] >= 80]
    # The recording is 131 s inside one 5-minute bucket.
    [r] = h200_rollups(BUCKET_5M_S)
    assert (r.host, r.uuid, r.start) == (
        hello["host"],
        gpu["uuid"],
        bucket_start(samples[0]["t"], 300),
    )
    assert r.samples == len(samples) == 131
    assert r.temp_max_c == max(x["temp_c"] for x in readings) == 63.0
    assert r.temp_min_c == min(x["temp_c"] for x in readings)
    assert r.headroom_min_c == gpu["temp_slowdown_c"] - r.temp_max_c == 26.0
    assert r.temp_mean_c == pytest.approx(sum(x["temp_c"] for x in readings) / len(readings))
    assert r.headroom_mean_c == pytest.approx(gpu["temp_slowdown_c"] - r.temp_mean_c)
    assert r.power_max_w == max(x["power_w"] for x in readings)
    assert r.power_limit_mean_pct == pytest.approx(100 * r.power_mean_w / 700.0)  # type: ignore[operator]
    # Under load: the ~70 s of matmul at the 700 W cap, 61-63 C (tests/fixtures/h200/README.md).
    assert r.load_n == len(loaded) and 69 <= r.load_n <= 72
    assert r.load_power_mean_w == pytest.approx(sum(x["power_w"] for x in loaded) / len(loaded))
    assert 650 < r.load_power_mean_w < 700  # type: ignore[operator]  # with the ramp down
    assert 61 <= r.load_temp_mean_c <= 63  # type: ignore[operator]
    # No held-clock counters in this stream (an older agent): the SW power cap bit, counted
    # over each sample's second, says how long the cap held the clocks.
    capped = [
        b["t"] - a["t"]
        for a, b in itertools.pairwise(samples)
        if b["gpus"][0]["clock_events"] & CLOCK_EVENT_SW_POWER_CAP
    ]
    assert r.held.sw_power_cap_s == pytest.approx(sum(capped))
    assert 68 <= r.held.sw_power_cap_s <= 72  # type: ignore[operator]
    assert r.held.hw_slowdown_s == r.held.hw_power_brake_s == r.held.sw_thermal_s == 0.0
    # Slow fields: 27 link readings, all x16 gen 5; no ECC, replays or remapped rows.
    assert r.link_n == sum(1 for s in samples if s.get("slow")) == 27
    assert r.link_down_n == 0
    assert (r.ecc_corrected, r.ecc_uncorrected, r.pcie_replay) == (0, 0, 0)
    assert (r.remap_corrected, r.remap_pending, r.remap_failure) == (0, False, False)


def test_minute_buckets_merge_into_the_five_minute_one() -> None:
    [whole] = h200_rollups(BUCKET_5M_S)
    minutes = h200_rollups(60)
    assert len(minutes) == 4
    [merged] = merge_all(minutes, BUCKET_5M_S)
    for name in whole.__struct_fields__:
        a, b = getattr(whole, name), getattr(merged, name)
        if isinstance(a, float):
            assert b == pytest.approx(a), name
        elif name == "held":
            for f in HELD_FIELDS:
                assert getattr(b, f) == pytest.approx(getattr(a, f)), f
        else:
            assert a == b, name


def test_the_monitors_snapshots_count_each_sample_once() -> None:
    """The real collector's snapshots (repeats while idle between samples, the slow sample
    carried apart) give the same rollup as the stream itself."""
    _, _, after = replay()
    acc = RollupAccumulator()
    closed: list[Rollup] = []
    for _, snap in after:
        closed += acc.observe(snap)
        closed += acc.observe(snap)  # a consumer that sees a snapshot twice counts nothing twice
    [via_monitor] = closed + acc.close_all()
    [direct] = h200_rollups(BUCKET_5M_S)
    assert msgspec.structs.replace(via_monitor, host=direct.host) == direct


# -- hand-built samples ----------------------------------------------------------------------


def test_counter_deltas_survive_resets() -> None:
    acc = RollupAccumulator()
    ecc = [0, 5, 12, 3, 10]  # 12 -> 3: the driver reloaded, the counter restarted from zero
    replays = [7, 7, 9, 1, 4]
    for i, (e, p) in enumerate(zip(ecc, replays, strict=True)):
        acc.add_sample(
            "h",
            [INFO],
            sample(
                T0 + 10 * i,
                i,
                GpuReading(
                    index=0, ecc_corrected_volatile=e, ecc_uncorrected_volatile=0, pcie_replay=p
                ),
                slow=True,
            ),
        )
    [r] = acc.close_all()
    assert r.ecc_corrected == 5 + 7 + 3 + 7
    assert r.ecc_uncorrected == 0
    assert r.pcie_replay == 0 + 2 + 1 + 3


def test_aggregate_ecc_when_no_volatile_counter() -> None:
    acc = RollupAccumulator()
    for i, agg in enumerate([100, 100, 104]):
        acc.add_sample(
            "h",
            [INFO],
            sample(T0 + i, i, GpuReading(index=0, ecc_corrected_aggregate=agg), slow=True),
        )
    [r] = acc.close_all()
    assert r.ecc_corrected == 4
    assert r.ecc_uncorrected is None  # never reported: not zero


def test_deltas_carry_across_buckets_and_the_first_value_counts_nothing() -> None:
    acc = RollupAccumulator()
    closed = acc.add_sample(
        "h", [INFO], sample(T0 + 290, 0, GpuReading(index=0, ecc_corrected_volatile=50), slow=True)
    )
    closed += acc.add_sample(
        "h", [INFO], sample(T0 + 310, 1, GpuReading(index=0, ecc_corrected_volatile=53), slow=True)
    )
    [first] = closed
    [second] = acc.close_all()
    assert (first.start, first.ecc_corrected) == (T0, None)  # 50 errors before we watched
    assert (second.start, second.ecc_corrected) == (T0 + 300, 3)


def test_held_time_from_counters_where_the_gpu_has_them_else_from_bits() -> None:
    acc = RollupAccumulator()
    bits = CLOCK_EVENT_SW_POWER_CAP | CLOCK_EVENT_HW_SLOWDOWN | CLOCK_EVENT_HW_POWER_BRAKE_SLOWDOWN
    counters = [0, 2_000_000, 2_500_000]  # µs of SW power cap
    for i in range(3):
        acc.add_sample(
            "h",
            [INFO],
            sample(
                T0 + 5 * i,
                i,
                GpuReading(
                    index=0,
                    clock_events=bits,
                    held_sw_power_cap_us=counters[i],
                    held_hw_power_brake_us=0,
                ),
                slow=True,
            ),
        )
    [r] = acc.close_all()
    assert r.held.sw_power_cap_s == pytest.approx(2.5)  # the counter, not 10 s of bits
    assert r.held.hw_power_brake_s == 0.0  # its counter says it never braked
    assert r.held.hw_slowdown_s == pytest.approx(10.0)  # no counter: 2 intervals of 5 s
    assert r.held.hw_thermal_s == 0.0  # bits read, never set
    # A GPU that reports neither: not known.
    none = RollupAccumulator()
    none.add_sample("h", [INFO], sample(T0, 0, GpuReading(index=0, temp_c=40.0)))
    [n] = none.close_all()
    assert n.held.sw_power_cap_s is None and n.held.hw_slowdown_s is None


def test_a_gap_counts_no_held_time() -> None:
    acc = RollupAccumulator(max_gap_s=30.0)
    for i, t in enumerate([T0, T0 + 1, T0 + 100, T0 + 101]):
        acc.add_sample(
            "h", [INFO], sample(t, i, GpuReading(index=0, clock_events=CLOCK_EVENT_HW_SLOWDOWN))
        )
    [r] = acc.close_all()
    assert r.held.hw_slowdown_s == pytest.approx(2.0)


def test_load_means_and_link_downtrains() -> None:
    acc = RollupAccumulator()
    rows = [
        # util, temp, power, gen, width
        (0.0, 35.0, 80.0, 1, 16),  # idle at gen 1: power saving, no fault
        (95.0, 70.0, 600.0, 5, 16),
        (99.0, 72.0, 650.0, 4, 16),  # gen 4 under load: downtrained
        (100.0, 74.0, 680.0, 5, 8),  # x8 of x16: downtrained
        (50.0, 60.0, 300.0, 5, 16),
    ]
    for i, (util, temp, power, gen, width) in enumerate(rows):
        acc.add_sample(
            "h",
            [INFO],
            sample(
                T0 + i,
                i,
                GpuReading(
                    index=0,
                    util_pct=util,
                    temp_c=temp,
                    power_w=power,
                    power_limit_w=700.0,
                    pcie_gen=gen,
                    pcie_width=width,
                ),
                slow=True,
            ),
        )
    [r] = acc.close_all()
    assert r.load_n == 3
    assert r.load_temp_mean_c == pytest.approx(72.0)
    assert r.load_power_mean_w == pytest.approx(1930 / 3)
    assert r.util_mean_pct == pytest.approx(344 / 5)
    assert r.headroom_min_c == 16.0 and r.headroom_mean_c == pytest.approx(90 - 311 / 5)
    assert (r.link_n, r.link_down_n) == (5, 2)


def test_remapped_rows_are_the_last_read_in_the_bucket() -> None:
    acc = RollupAccumulator()
    values = [(3, 0, False), (4, 0, True), (4, 1, True)]
    for i, (c, u, pending) in enumerate(values):
        acc.add_sample(
            "h",
            [INFO],
            sample(
                T0 + i,
                i,
                GpuReading(index=0, remap_corrected=c, remap_uncorrected=u, remap_pending=pending),
                slow=True,
            ),
        )
        # fast samples in between carry no remap fields: they must not blank the last ones
        acc.add_sample("h", [INFO], sample(T0 + i + 0.5, 100 + i, GpuReading(index=0, temp_c=40.0)))
    [r] = acc.close_all()
    assert (r.remap_corrected, r.remap_uncorrected, r.remap_pending) == (4, 1, True)
    assert r.remap_failure is None


def test_buckets_close_on_the_next_buckets_sample_and_late_samples_are_left_out() -> None:
    acc = RollupAccumulator()
    assert (
        acc.add_sample(
            "h",
            [INFO, INFO_B],
            sample(T0 + 1, 0, GpuReading(index=0, temp_c=50.0), GpuReading(index=1, temp_c=51.0)),
        )
        == []
    )
    closed = acc.add_sample(
        "h", [INFO, INFO_B], sample(T0 + 301, 1, GpuReading(index=0, temp_c=52.0))
    )
    assert [(r.gpu, r.start, r.samples) for r in closed] == [(0, T0, 1)]
    # A sample from before the open bucket (a clock stepped back) is left out, and counted.
    acc.add_sample("h", [INFO], sample(T0 + 200, 2, GpuReading(index=0, temp_c=99.0)))
    assert acc.late == 1
    # GPU 1 sent nothing since, but only snapshots say when a host was last heard from.
    assert acc.close_quiet(T0 + 1000) == []
    rest = acc.close_all()
    assert [(r.gpu, r.start, r.samples, r.temp_max_c) for r in rest] == [
        (0, T0 + 300, 1, 52.0),
        (1, T0, 1, 51.0),
    ]
    assert acc.close_all() == []


def test_gpus_that_are_not_ok_have_no_readings_but_keep_their_bucket() -> None:
    acc = RollupAccumulator()
    acc.add_sample("h", [INFO], sample(T0, 0, GpuReading(index=0, temp_c=50.0)))
    acc.add_sample("h", [INFO], sample(T0 + 1, 1, GpuReading(index=0, status="lost", error="gone")))
    [r] = acc.close_all()
    assert (r.samples, r.temp_n) == (1, 1)


def test_xids_by_code_in_the_open_bucket() -> None:
    acc = RollupAccumulator()
    acc.add_xid("h", 0, 79)  # before the GPU's first sample: kept for its first bucket
    acc.add_sample("h", [INFO], sample(T0, 0, GpuReading(index=0, temp_c=50.0)))
    acc.add_xid("h", 0, 48)
    acc.add_xid("h", 0, 48)
    closed = acc.add_sample("h", [INFO], sample(T0 + 300, 1, GpuReading(index=0, temp_c=50.0)))
    acc.add_xid("h", 0, 94)
    assert [r.xids for r in closed] == [{79: 1, 48: 2}]
    assert [r.xids for r in acc.close_all()] == [{94: 1}]


def test_a_replaced_gpu_starts_a_new_series() -> None:
    acc = RollupAccumulator()
    acc.add_sample(
        "h", [INFO], sample(T0, 0, GpuReading(index=0, ecc_corrected_volatile=900), slow=True)
    )
    new = msgspec.structs.replace(INFO, uuid="GPU-new")
    closed = acc.add_sample(
        "h", [new], sample(T0 + 10, 1, GpuReading(index=0, ecc_corrected_volatile=2), slow=True)
    )
    assert [(r.uuid, r.samples) for r in closed] == [("GPU-a", 1)]
    [r] = acc.close_all()
    # The new board's counter is its own: no delta against the old one's 900.
    assert (r.uuid, r.ecc_corrected) == ("GPU-new", None)


def _snapshot(t: float, host: HostSnapshot, *events: FleetEvent) -> FleetSnapshot:
    return FleetSnapshot(t=t, hosts=(host,), events=events)


def test_snapshots_with_the_slow_sample_apart() -> None:
    """A consumer slower than the tick sees only some fast samples; the slow one is carried."""
    hello = Hello(
        v=1, host="h", agent_version="x", backend="sim", interval_s=1, slow_every=5, gpus=[INFO]
    )
    slow = sample(T0 + 5, 5, GpuReading(index=0, temp_c=60.0, ecc_corrected_volatile=1), slow=True)
    prev_slow = sample(T0, 0, GpuReading(index=0, temp_c=58.0, ecc_corrected_volatile=0), slow=True)
    fast = sample(T0 + 7, 7, GpuReading(index=0, temp_c=62.0))
    acc = RollupAccumulator()
    base = HostSnapshot(name="h", state=HostState.STREAMING, hello=hello)
    acc.observe(
        _snapshot(T0, msgspec.structs.replace(base, sample=prev_slow, slow_sample=prev_slow))
    )
    # seq 5 (slow) was never the latest sample this consumer saw: its fast fields count too.
    event = FleetEvent(t=T0 + 7, host="h", kind="xid", text="", gpu=0, xid=13)
    acc.observe(
        _snapshot(T0 + 7, msgspec.structs.replace(base, sample=fast, slow_sample=slow), event)
    )
    acc.observe(_snapshot(T0 + 8, msgspec.structs.replace(base, sample=fast, slow_sample=slow)))
    [r] = acc.close_all()
    assert (r.samples, r.temp_max_c, r.ecc_corrected, r.xids) == (3, 62.0, 1, {13: 1})


def test_merge_refuses_two_gpus_and_rekey_finds_the_day() -> None:
    a = Rollup(host="h", gpu=0, uuid="a", start=DAY0 + 600, length_s=300)
    b = Rollup(host="h", gpu=1, uuid="b", start=DAY0 + 600, length_s=300)
    with pytest.raises(ValueError, match="different GPUs"):
        merge(a, b)
    day = rekey(a, BUCKET_DAY_S)
    assert (day.start, day.length_s) == (DAY0, BUCKET_DAY_S)


def _stream(seconds: int) -> Iterator[Sample]:
    for i in range(seconds):
        yield sample(
            T0 + i,
            i,
            GpuReading(
                index=0, temp_c=40.0 + i % 7, power_w=100.0 + i % 11, util_pct=float(i % 101)
            ),
        )


def test_daily_from_five_minute_buckets_equals_daily_from_samples() -> None:
    five, day = RollupAccumulator(BUCKET_5M_S), RollupAccumulator(BUCKET_DAY_S)
    a: list[Rollup] = []
    b: list[Rollup] = []
    for s in _stream(3 * 3600):
        a += five.add_sample("h", [INFO], s)
        b += day.add_sample("h", [INFO], s)
    merged = merge_all([*a, *five.close_all()], BUCKET_DAY_S)
    direct = [*b, *day.close_all()]
    assert [(r.start, r.samples, r.temp_max_c, r.load_n) for r in merged] == [
        (r.start, r.samples, r.temp_max_c, r.load_n) for r in direct
    ]
    assert merged[0].temp_mean_c == pytest.approx(direct[0].temp_mean_c)
    assert merged[0].load_power_mean_w == pytest.approx(direct[0].load_power_mean_w)


def test_rollups_encode_as_json() -> None:
    [r] = h200_rollups(BUCKET_5M_S)
    back = msgspec.json.decode(msgspec.json.encode(r), type=Rollup)
    assert back == r
    assert json.loads(msgspec.json.encode(r))["held"]["sw_power_cap_s"] == r.held.sw_power_cap_s
