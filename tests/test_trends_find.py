"""The trend rules' entry point: rollups of any length and order, counter resets, replaced
GPUs, the window's end, bad input, and a stable order."""

from __future__ import annotations

import random

import msgspec
import pytest

from gputui.core.model import Sample
from gputui.core.rollup import BUCKET_5M_S, Rollup, RollupAccumulator, merge_all
from gputui.core.trends import find_trends
from gputui.core.trends.days import daily_series
from tests.trend_days import DAY, gpu_day, host, recorded_samples, series, t0

STEP_S = 600  # a slow sample every 10 minutes of simulated time


def stream(days: int, ecc_per_day: float, reset_day: int | None) -> list[Rollup]:
    """`days` of the recorded GPU under load through the real accumulator (5-minute buckets),
    its volatile corrected-ECC counter climbing from day 7 and reset (a driver reload) at the
    start of `reset_day`."""
    hello, samples = recorded_samples()
    loaded = next(s.gpus[0] for s in samples if s.slow and (s.gpus[0].util_pct or 0) >= 99)
    acc = RollupAccumulator(BUCKET_5M_S)
    out: list[Rollup] = []
    since_reset = 0.0
    for i in range(days * DAY // STEP_S):
        t = t0() + i * STEP_S
        day = i * STEP_S // DAY
        if reset_day is not None and t == t0() + reset_day * DAY:
            since_reset = 0.0
        if day >= 7:
            since_reset += ecc_per_day * STEP_S / DAY
        reading = msgspec.structs.replace(loaded, ecc_corrected_volatile=int(since_reset))
        sample = Sample(v=1, t=float(t), seq=i, gpus=[reading], slow=True)
        out += acc.add_sample("node01", hello.gpus, sample)
    return out + acc.close_all()


def test_five_minute_rollups_across_a_counter_reset_are_judged_as_days() -> None:
    rollups = stream(14, ecc_per_day=40, reset_day=10)
    assert {r.length_s for r in rollups} == {BUCKET_5M_S}
    (f,) = find_trends(rollups)
    assert f.rule == "ecc_corrected_rising"
    rate = next(x.value for x in f.evidence.figures if x.name == "rate")
    # the reset loses at most the errors of one sample interval, never goes negative
    assert 39 <= rate <= 40
    assert all(p.value >= 0 for p in f.evidence.series)
    # the same days merged into daily rollups say the same
    assert find_trends(merge_all(rollups, DAY)) == [f]


def test_a_daily_rollup_wins_over_the_five_minute_ones_of_its_day() -> None:
    five = stream(8, ecc_per_day=0, reset_day=None)
    daily = merge_all(five, DAY)
    both = daily_series(five + daily)
    assert [d.samples for d in both[0].days] == [d.samples for d in daily]


def test_a_bucket_that_does_not_divide_a_day_is_refused_clearly() -> None:
    week = msgspec.structs.replace(gpu_day(0), length_s=7 * DAY)
    with pytest.raises(ValueError, match=r"node01 GPU0 lasts 604800 s.*divide a day"):
        find_trends([week])


def test_nothing_in_nothing_out() -> None:
    assert find_trends([]) == []


def test_the_end_sets_the_window() -> None:
    days = series(range(14), ecc=lambda d: 30 * (d < 7))
    assert find_trends(days) == []  # the errors stopped a week ago
    (f,) = find_trends(days, end=t0() + 7 * DAY)  # as seen on day 7
    assert f.rule == "ecc_corrected_rising"


def test_a_replaced_gpu_starts_a_new_series() -> None:
    # the old GPU's memory failed, it was swapped on day 5; the new one is clean
    old = series(range(6), uuid="GPU-old", ecc=50, remap_uncorrected=6)
    new = series(range(5, 14), uuid="GPU-new", remap_uncorrected=0)
    assert find_trends(old + new) == []
    # the new GPU's rows count from its own first reading, not from the old GPU's
    worn = series(range(5, 14), uuid="GPU-new", remap_corrected=lambda d: 3 * (d >= 12))
    (f,) = find_trends(old + worn)
    assert (f.rule, f.subject.uuid) == ("remap_rows_accumulating", "GPU-new")


def test_findings_come_in_a_stable_order_whatever_the_input_order() -> None:
    fleet = host(range(14), temp_c=lambda g, d: 60 + 10 * (g == 5), ecc=lambda g, d: 30 * (g == 2))
    fleet += host(range(14), name="node00", brake_s=lambda g, d: 10.0 * (d % 3 == 0))
    expected = find_trends(fleet)
    assert [(f.subject.host, f.subject.gpu, f.rule) for f in expected] == [
        ("node00", None, "power_brake_node"),
        ("node01", 2, "ecc_corrected_rising"),
        ("node01", 5, "gpu_hotter_than_peers"),
    ]
    rng = random.Random(7)
    for _ in range(3):
        rng.shuffle(fleet)
        assert find_trends(fleet) == expected


def test_findings_encode_as_json_with_day_value_pairs() -> None:
    (f,) = find_trends(series(range(7), ecc=30))
    data = msgspec.json.decode(msgspec.json.encode(f))
    assert data["rule"] == "ecc_corrected_rising"
    assert data["subject"] == {"host": "node01", "gpu": 0, "uuid": "GPU-node01-0"}
    assert data["remedy"] == "replace or upgrade hardware"
    assert data["evidence"]["series"][0] == [t0(), 30.0]
