"""History rings: what append() records per GPU and metric, and the ring's order."""

from __future__ import annotations

import math

from gputui.collect.history import HostHistory, Metric
from gputui.core.model import GpuInfo, GpuReading, Sample


def _gpus() -> list[GpuInfo]:
    return [
        GpuInfo(index=i, uuid=f"GPU-{i}", name="H100", memory_total_mib=1000.0) for i in range(3)
    ]


def _sample(seq: int, util: float | None) -> Sample:
    return Sample(
        v=1,
        t=float(seq),
        seq=seq,
        gpus=[
            GpuReading(index=0, util_pct=util, temp_c=60.0, power_w=500.0, mem_used_mib=250.0),
            GpuReading(index=1, status="lost"),
            GpuReading(index=2, util_pct=10.0),
        ],
    )


def test_append_records_each_metric_and_nan_for_what_was_not_read() -> None:
    h = HostHistory(_gpus(), capacity=4)
    h.append(100.0, _sample(0, 90.0))
    assert list(h.series(0, Metric.UTIL_PCT)) == [90.0]
    assert list(h.series(0, Metric.TEMP_C)) == [60.0]
    assert list(h.series(0, Metric.POWER_W)) == [500.0]
    assert list(h.series(0, Metric.MEM_USED_PCT)) == [25.0]
    assert all(math.isnan(x) for m in Metric for x in h.series(1, m))  # lost GPU
    assert list(h.series(2, Metric.UTIL_PCT)) == [10.0]
    assert math.isnan(h.series(2, Metric.TEMP_C)[0])
    assert list(h.times()) == [100.0]


def test_ring_keeps_the_last_capacity_samples_in_order() -> None:
    h = HostHistory(_gpus(), capacity=3)
    for seq in range(5):
        h.append(float(seq), _sample(seq, None if seq == 3 else float(seq)))
    assert len(h) == 3
    assert list(h.times()) == [2.0, 3.0, 4.0]
    util = h.series(0, Metric.UTIL_PCT)
    assert util[0] == 2.0 and math.isnan(util[1]) and util[2] == 4.0
    assert list(h.series(0, Metric.UTIL_PCT, last=1)) == [4.0]
