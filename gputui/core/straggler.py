"""Straggler detection: a GPU that runs slower than its peers on the same host.

In data-parallel training every GPU of a host does the same work, so one GPU whose SM clock or
utilisation sits well below the others' holds the whole job back (it waits at every all-reduce).
Peers are compared by their median, which one bad GPU cannot drag along, and only while the
peers are busy ("the same load") and in step (at least 3 in 4 of them within
`straggler_peer_spread_pct` points of their median): an idle host says nothing, and neither do
GPUs that work independently, as an inference server's do, where one GPU idling while the
others serve a burst is normal. A GPU is flagged after
`straggler_samples` outlying samples in a row and cleared after as many normal ones, so a
single slow sample never raises it and a single normal one never clears it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping

from gputui.core.model import GpuReading
from gputui.core.thresholds import Thresholds


def _median_without(sorted_values: list[float], value: float) -> float:
    """The median of `sorted_values` with one occurrence of `value` taken out."""
    rest = sorted_values.copy()
    del rest[bisect_left(rest, value)]
    n = len(rest)
    mid = n // 2
    return rest[mid] if n % 2 else (rest[mid - 1] + rest[mid]) / 2


class _Peers:
    """One sample's utilisations and SM clocks, sorted once, for every GPU's comparison.

    Sorting once per sample and removing the GPU itself from the sorted list costs O(G) per
    GPU, where a fresh peer list and median per GPU cost O(G log G) with far larger constants;
    this rule runs for every GPU of every host every second.
    """

    def __init__(self, readings: Mapping[int, GpuReading]) -> None:
        utils, clocks = _values(readings)
        self.utils = sorted(utils)
        self.clocks = sorted(map(float, clocks))

    @classmethod
    def of(cls, utils: list[float], clocks: list[int]) -> _Peers:
        peers = cls.__new__(cls)
        peers.utils = sorted(utils)
        peers.clocks = sorted(map(float, clocks))
        return peers

    def none_outlying(self, th: Thresholds) -> bool:
        """True when no GPU of this sample can be an outlier, from two medians per signal.

        Taking one value out of a sorted list leaves a median between that of the list without
        its largest value (`lo`) and that without its smallest (`hi`). So when the peers'
        utilisation is below the load floor even at `hi`, or when the lowest utilisation and
        clock are not far enough below `hi`, `outlier` is None for every GPU; the comparisons
        are the rule's own, and rounding is monotone, so the bound holds exactly.
        False only means "look at each GPU".
        """
        utils, clocks = self.utils, self.clocks
        if len(utils) < 2 or len(clocks) == 1:
            return False
        hi_util = _median(utils[1:])
        if hi_util < th.straggler_min_util_pct:
            return True  # no GPU's peers are under load
        if utils[0] < hi_util - th.straggler_util_drop_pct:
            return False
        if not clocks:
            return True
        return clocks[0] >= _median(clocks[1:]) * (1 - th.straggler_clock_drop_pct / 100)

    def outlier(self, reading: GpuReading, th: Thresholds) -> str | None:
        """Why `reading` is slow against the other GPUs of this sample, or None."""
        utils = self.utils
        own_util = reading.util_pct
        n_peers = len(utils) - (own_util is not None)
        if n_peers < th.straggler_min_peers:
            return None
        peer_util = _median_without(utils, own_util) if own_util is not None else _median(utils)
        if peer_util < th.straggler_min_util_pct:
            return None  # peers are not under load: nothing to compare against
        if not _in_step(utils, own_util, peer_util, n_peers, th.straggler_peer_spread_pct):
            return None  # peers do not move together: independent work, no yardstick
        if own_util is not None and own_util < peer_util - th.straggler_util_drop_pct:
            return f"util {own_util:.0f}% vs peers' median {peer_util:.0f}%"
        own_clock = reading.sm_clock_mhz
        if own_clock is not None and len(self.clocks) - 1 >= th.straggler_min_peers:
            peer_clock = _median_without(self.clocks, float(own_clock))
            if own_clock < peer_clock * (1 - th.straggler_clock_drop_pct / 100):
                return f"SM clock {own_clock} MHz vs peers' median {peer_clock:.0f} MHz"
        return None


IN_STEP_SHARE = 0.75  # share of the peers that must sit near their median


def _in_step(
    utils: list[float], own: float | None, median: float, n_peers: int, spread: float
) -> bool:
    """Whether at least 3 in 4 of the peers (`utils` sorted, less `own`) are within `spread`
    points of their `median`. A quorum rather than all of them, so that two stragglers at
    once do not hide each other."""
    low, high = median - spread, median + spread
    near = bisect_right(utils, high) - bisect_left(utils, low)
    if own is not None and low <= own <= high:
        near -= 1  # the GPU judged is not its own peer
    return near >= IN_STEP_SHARE * n_peers


def _values(readings: Mapping[int, GpuReading]) -> tuple[list[float], list[int]]:
    """The utilisations and SM clocks of a sample's readings, where read."""
    gpus = readings.values()
    utils = [r.util_pct for r in gpus if r.util_pct is not None]
    clocks = [r.sm_clock_mhz for r in gpus if r.sm_clock_mhz is not None]
    return utils, clocks


def _close_together(utils: list[float], clocks: list[int], th: Thresholds) -> bool:
    """True when no GPU can be an outlier because the values hardly differ at all.

    A peer median is never above the largest value, so a lowest utilisation within the drop of
    the highest, and a lowest clock within the drop of the highest, leave every GPU inside the
    rule's bounds (the rule's own comparisons, against a larger value). One pass each, no sort:
    what a busy, healthy host looks like nearly every second.
    """
    if utils and min(utils) < max(utils) - th.straggler_util_drop_pct:
        return False
    return not clocks or min(clocks) >= max(clocks) * (1 - th.straggler_clock_drop_pct / 100)


def _median(sorted_values: list[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2


class StragglerDetector:
    """Per host: counts outlying and normal samples per GPU and says which GPUs straggle."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self._streak: dict[int, int] = {}  # >0: outlying samples in a row; <0: normal ones
        self._flagged: dict[int, str] = {}  # GPU -> the latest outlier description
        # Every GPU in `_streak` has had `straggler_samples` normal samples in a row and none
        # is flagged: another sample with no outlier changes nothing.
        self._settled = False

    def update(self, readings: Mapping[int, GpuReading]) -> dict[int, str]:
        """Feed one sample's readings (status ok only); GPU index -> why it straggles."""
        th = self.thresholds
        need = th.straggler_samples
        utils, clocks = _values(readings)
        peers: _Peers | None = None
        if _close_together(utils, clocks, th):
            if self._settled and self._streak.keys() == readings.keys():
                return {}
        else:
            peers = _Peers.of(utils, clocks)
            if peers.none_outlying(th):
                peers = None
        for idx, reading in readings.items():
            why = peers.outlier(reading, th) if peers is not None else None
            streak = self._streak.get(idx, 0)
            if why is not None:
                streak = streak + 1 if streak > 0 else 1
                if streak >= need or idx in self._flagged:
                    self._flagged[idx] = why
            else:
                streak = max(streak - 1, -need) if streak < 0 else -1  # only ">= need" counts
                if streak == -need:
                    self._flagged.pop(idx, None)
            self._streak[idx] = streak
        for idx in list(self._streak):
            if idx not in readings:  # no reading: no judgement, and no stale flag
                del self._streak[idx]
                self._flagged.pop(idx, None)
        self._settled = not self._flagged and all(v == -need for v in self._streak.values())
        return dict(self._flagged)

    def forget(self, gpu: int) -> None:
        self._streak.pop(gpu, None)
        self._flagged.pop(gpu, None)
        self._settled = False
