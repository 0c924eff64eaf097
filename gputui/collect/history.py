"""Per-host history rings: fixed-size numpy arrays, so memory stays flat over days.

One float32 ring per host of shape (GPUs, metrics, capacity) plus a float64 time ring. At the
default 300 points, 1,000 hosts x 8 GPUs hold ~38 MB of history, allocated at the first hello
and never grown.
"""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt

from gputui.core.model import GpuInfo, Sample


class Metric(enum.IntEnum):
    """What the rings record per GPU (the sparklines of the host view)."""

    UTIL_PCT = 0
    TEMP_C = 1
    POWER_W = 2
    MEM_USED_PCT = 3


_N_METRICS = len(Metric)
_NAN = float("nan")
# append() writes a GPU's row as [util, temp, power, mem]: the order of Metric.
assert [m.name for m in Metric] == ["UTIL_PCT", "TEMP_C", "POWER_W", "MEM_USED_PCT"]


class HostHistory:
    """The last `capacity` samples of one host, oldest overwritten first."""

    __slots__ = ("_head", "_index_of", "_mem_total", "_n", "capacity", "t", "values")

    def __init__(self, gpus: list[GpuInfo], capacity: int) -> None:
        self.capacity = capacity
        n_gpus = len(gpus)
        self.t = np.full(capacity, np.nan, dtype=np.float64)
        self.values = np.full((n_gpus, len(Metric), capacity), np.nan, dtype=np.float32)
        self._index_of = {g.index: row for row, g in enumerate(gpus)}
        self._mem_total = [g.memory_total_mib or 0.0 for g in gpus]
        self._head = 0  # next slot to write
        self._n = 0  # slots filled

    def __len__(self) -> int:
        return self._n

    def append(self, t: float, sample: Sample) -> None:
        slot = self._head
        self.t[slot] = t
        # One row per GPU in Metric order, written with one numpy assignment (per-item
        # assignments into the array cost twice as much).
        rows = [[_NAN] * _N_METRICS for _ in self._mem_total]
        for r in sample.gpus:
            row = self._index_of.get(r.index)
            if row is None or r.status != "ok":
                continue
            total = self._mem_total[row]
            used = r.mem_used_mib
            rows[row] = [
                _NAN if r.util_pct is None else r.util_pct,
                _NAN if r.temp_c is None else r.temp_c,
                _NAN if r.power_w is None else r.power_w,
                100.0 * used / total if used is not None and total > 0 else _NAN,
            ]
        if rows:  # a host without GPUs keeps only the time ring
            self.values[:, :, slot] = rows
        self._head = (slot + 1) % self.capacity
        self._n = min(self._n + 1, self.capacity)

    def series(
        self, gpu_index: int, metric: Metric, last: int | None = None
    ) -> npt.NDArray[np.float32]:
        """One GPU's metric in time order, oldest first (NaN where it was not reported)."""
        row = self._index_of.get(gpu_index)
        if row is None or self._n == 0:
            return np.empty(0, dtype=np.float32)
        series: npt.NDArray[np.float32] = self.values[row, metric][self._order(last)]
        return series

    def times(self, last: int | None = None) -> npt.NDArray[np.float64]:
        return self.t[self._order(last)]

    def _order(self, last: int | None) -> npt.NDArray[np.intp]:
        """Ring indices of the last `last` samples, oldest first."""
        n = self._n if last is None else min(last, self._n)
        return np.arange(self._head - n, self._head) % self.capacity
