"""History rings: fixed-size numpy arrays, so memory stays flat over days.

A fleet's rings are two arrays (`FleetRing`): float32 values of shape (GPU slots, metrics,
capacity), where each host holds a run of consecutive GPU slots, one per GPU of its inventory,
and float64 times of shape (hosts, capacity). A host's `HostHistory` is a view onto its slots
and its time row: 136 bytes per point of an 8-GPU host, taken at the host's first hello. The
monitor writes a whole batch of samples into the fleet's rings with one numpy assignment
(collect/columns.py); a HostHistory made alone (tests, a fake fleet) owns a ring of its own.

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


class FleetRing:
    """The rings of every host of a fleet: GPU slots and time rows handed out per host.

    Slots are taken in runs, a host's run once per inventory; the arrays double when they run
    out (rare: they start sized for the fleet), and a host whose GPUs changed in number gives
    its old run back for another host to reuse. Views are taken afresh on every read
    (`HostHistory`), so a grown array is seen at once.
    """

    def __init__(self, capacity: int, hosts: int = 1, slots: int = 8) -> None:
        self.capacity = capacity
        # Pages of np.empty are not touched until a host's run is filled with NaN: a fleet
        # whose hosts never answer costs no memory.
        self.values = np.empty((max(slots, 1), len(Metric), capacity), dtype=np.float32)
        self.t = np.empty((max(hosts, 1), capacity), dtype=np.float64)
        self._slots_used = 0
        self._rows_used = 0
        self._free: list[tuple[int, int]] = []  # (start, length) of runs given back

    def take_row(self) -> int:
        """A time row for a new host (rows are never given back: a host keeps its row)."""
        row = self._rows_used
        if row == len(self.t):
            grown = np.empty((2 * len(self.t), self.capacity), dtype=np.float64)
            grown[:row] = self.t
            self.t = grown
        self._rows_used += 1
        self.t[row] = np.nan
        return row

    def take_slots(self, n: int) -> int:
        """The first of `n` consecutive free GPU slots, filled with NaN."""
        for i, (start, length) in enumerate(self._free):
            if length >= n:
                if length == n:
                    del self._free[i]
                else:
                    self._free[i] = (start + n, length - n)
                break
        else:
            start = self._slots_used
            need = start + n
            if need > len(self.values):
                size = max(need, 2 * len(self.values))
                grown = np.empty((size, len(Metric), self.capacity), dtype=np.float32)
                grown[:start] = self.values[:start]
                self.values = grown
            self._slots_used = need
        self.values[start : start + n] = np.nan
        return start

    def give_back(self, start: int, n: int) -> None:
        if n:
            self._free.append((start, n))

    @property
    def slot_count(self) -> int:
        """Slots handed out so far, given back or not: the extent of the values in use."""
        return self._slots_used


class HostHistory:
    """The last `capacity` samples of one host, oldest overwritten first: a view onto its
    run of GPU slots and its time row in a `FleetRing` (its own ring when none is given)."""

    __slots__ = (
        "_head",
        "_index_of",
        "_mem_total",
        "_n",
        "_ring",
        "_row",
        "_start",
        "_stop",
        "appended",
        "capacity",
    )

    def __init__(
        self,
        gpus: list[GpuInfo],
        capacity: int,
        *,
        ring: FleetRing | None = None,
        row: int | None = None,
        start: int | None = None,
    ) -> None:
        if ring is None:
            ring = FleetRing(capacity, 1, len(gpus))
        if ring.capacity != capacity:
            raise ValueError(f"a ring of {ring.capacity} points cannot hold {capacity}")
        self._ring = ring
        self.capacity = capacity
        self._row = ring.take_row() if row is None else row
        if row is not None:
            ring.t[row] = np.nan  # a host's new inventory starts its times afresh
        self._start = ring.take_slots(len(gpus)) if start is None else start
        self._stop = self._start + len(gpus)
        self._index_of = {g.index: row for row, g in enumerate(gpus)}
        self._mem_total = [g.memory_total_mib or 0.0 for g in gpus]
        self._head = 0  # next slot to write
        self._n = 0  # slots filled
        # Samples ever appended: the sample number of the newest is appended - 1, so a chart
        # can bucket samples by number and keep its buckets still while new ones arrive.
        self.appended = 0

    @property
    def t(self) -> npt.NDArray[np.float64]:
        """The time ring (a view, in ring order)."""
        view: npt.NDArray[np.float64] = self._ring.t[self._row]
        return view

    @property
    def values(self) -> npt.NDArray[np.float32]:
        """The value ring, (GPUs, metrics, capacity) (a view, in ring order)."""
        view: npt.NDArray[np.float32] = self._ring.values[self._start : self._stop]
        return view

    @property
    def row(self) -> int:
        """This host's time row in the fleet's ring."""
        return self._row

    @property
    def slots(self) -> range:
        """This host's GPU slots in the fleet's ring, in inventory order."""
        return range(self._start, self._stop)

    def __len__(self) -> int:
        return self._n

    def next_slot(self) -> int:
        """Claim the ring position of the next sample, whose values the caller writes."""
        slot = self._head
        self._head = (slot + 1) % self.capacity
        self._n = min(self._n + 1, self.capacity)
        self.appended += 1
        return slot

    @property
    def gpu_indices(self) -> list[int]:
        """The GPU index of each of this host's slots, in slot order."""
        return list(self._index_of)

    def append(self, t: float, sample: Sample) -> None:
        self.write(self.next_slot(), t, sample)

    def write(self, slot: int, t: float, sample: Sample) -> None:
        """Write `sample` at ring position `slot` (claimed with `next_slot`)."""
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
        ring = self._ring
        ring.t[self._row, slot] = t
        if rows:  # a host without GPUs keeps only the time ring
            ring.values[self._start : self._stop, :, slot] = rows

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
        series: npt.NDArray[np.float32] = self._ring.values[self._start + row, metric][
            self._order(last)
        ]
        return series

    def times(self, last: int | None = None) -> npt.NDArray[np.float64]:
        times: npt.NDArray[np.float64] = self._ring.t[self._row][self._order(last)]
        return times

    def _order(self, last: int | None) -> npt.NDArray[np.intp]:
        """Ring indices of the last `last` samples, oldest first."""
        n = self._n if last is None else min(last, self._n)
        return np.arange(self._head - n, self._head) % self.capacity
