"""Per-host history rings: fixed-size numpy arrays, so memory stays flat over days.

One float32 ring per host of shape (GPUs, metrics, capacity) plus a float64 time ring: 136
bytes per point of an 8-GPU host, allocated at the first hello and never grown.

How many points a host keeps follows the fleet's size (`history_len_for`): a small fleet's
per-GPU view charts an hour, while 1,000 hosts keep the 5 minutes their host screens show. A
fleet shares one budget of host-points, so the rings never hold more than the larger of
the budget (36,000 points: about 5 MB of 8-GPU hosts) and 300 points a host (1,000 8-GPU
hosts: about 41 MB, as before the budget).
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


#: Points every host keeps, however large the fleet (5 minutes at 1 s).
MIN_HISTORY = 300
#: Points a host of a small fleet keeps (an hour at 1 s): the per-GPU view's charts.
MAX_HISTORY = 3600
#: Host-points a whole fleet shares above MIN_HISTORY: ten hosts get an hour each, the demo's
#: 32 about 19 minutes, and from 120 hosts on each keeps MIN_HISTORY.
HISTORY_BUDGET = 36_000

_N_METRICS = len(Metric)
_NAN = float("nan")
# append() writes a GPU's row as [util, temp, power, mem]: the order of Metric.
assert [m.name for m in Metric] == ["UTIL_PCT", "TEMP_C", "POWER_W", "MEM_USED_PCT"]


def history_len_for(n_hosts: int) -> int:
    """Points of history each host of an `n_hosts` fleet keeps."""
    share = HISTORY_BUDGET // max(n_hosts, 1)
    return max(MIN_HISTORY, min(MAX_HISTORY, share))


class HostHistory:
    """The last `capacity` samples of one host, oldest overwritten first."""

    __slots__ = ("_head", "_index_of", "_mem_total", "_n", "appended", "capacity", "t", "values")

    def __init__(self, gpus: list[GpuInfo], capacity: int) -> None:
        self.capacity = capacity
        n_gpus = len(gpus)
        self.t = np.full(capacity, np.nan, dtype=np.float64)
        self.values = np.full((n_gpus, len(Metric), capacity), np.nan, dtype=np.float32)
        self._index_of = {g.index: row for row, g in enumerate(gpus)}
        self._mem_total = [g.memory_total_mib or 0.0 for g in gpus]
        self._head = 0  # next slot to write
        self._n = 0  # slots filled
        # Samples ever appended: the sample number of the newest is appended - 1, so a chart
        # can bucket samples by number and keep its buckets still while new ones arrive.
        self.appended = 0

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
        self.appended += 1

    def extend(self, times: npt.NDArray[np.float64], values: npt.NDArray[np.float32]) -> None:
        """Append points recorded elsewhere (a worker process's ring): `times` (n,) and
        `values` (GPUs x metrics x n), oldest first, the layout `since()` returns."""
        n = len(times)
        if n == 0:
            return
        if n > self.capacity:  # more than the ring holds: the newest fill it
            times, values, skipped = times[-self.capacity :], values[:, :, -self.capacity :], n
            n = self.capacity
            skipped -= n
        else:
            skipped = 0
        slots = (self._head + np.arange(n)) % self.capacity
        self.t[slots] = times
        if self.values.shape[0]:
            self.values[:, :, slots] = values
        self._head = (self._head + n) % self.capacity
        self._n = min(self._n + n, self.capacity)
        self.appended += n + skipped

    def since(self, appended: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]]:
        """The points appended after the first `appended` that the ring still holds: their
        times (n,) and values (GPUs x metrics x n), oldest first."""
        order = self._order(self.appended - appended)
        return self.t[order], self.values[:, :, order]

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
