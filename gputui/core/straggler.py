"""Straggler detection: a GPU that runs slower than its peers on the same host.

In data-parallel training every GPU of a host does the same work, so one GPU whose SM clock or
utilisation sits well below the others' holds the whole job back (it waits at every all-reduce).
Peers are compared by their median, which one bad GPU cannot drag along, and only while the
peers are busy ("the same load"); an idle host says nothing. A GPU is flagged after
`straggler_samples` outlying samples in a row and cleared after as many normal ones, so a
single slow sample never raises it and a single normal one never clears it.
"""

from __future__ import annotations

from collections.abc import Mapping
from statistics import median

from gputui.core.model import GpuReading
from gputui.core.thresholds import Thresholds


def _outlier(reading: GpuReading, peers: list[GpuReading], th: Thresholds) -> str | None:
    """Why `reading` is slow against `peers` at this sample, or None."""
    utils = [p.util_pct for p in peers if p.util_pct is not None]
    if len(utils) < th.straggler_min_peers:
        return None
    peer_util = median(utils)
    if peer_util < th.straggler_min_util_pct:
        return None  # peers are not under load: nothing to compare against
    if reading.util_pct is not None and reading.util_pct < peer_util - th.straggler_util_drop_pct:
        return f"util {reading.util_pct:.0f}% vs peers' median {peer_util:.0f}%"
    clocks = [p.sm_clock_mhz for p in peers if p.sm_clock_mhz is not None]
    if reading.sm_clock_mhz is not None and len(clocks) >= th.straggler_min_peers:
        peer_clock = median(clocks)
        if reading.sm_clock_mhz < peer_clock * (1 - th.straggler_clock_drop_pct / 100):
            return f"SM clock {reading.sm_clock_mhz} MHz vs peers' median {peer_clock:.0f} MHz"
    return None


class StragglerDetector:
    """Per host: counts outlying and normal samples per GPU and says which GPUs straggle."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self._streak: dict[int, int] = {}  # >0: outlying samples in a row; <0: normal ones
        self._flagged: dict[int, str] = {}  # GPU -> the latest outlier description

    def update(self, readings: Mapping[int, GpuReading]) -> dict[int, str]:
        """Feed one sample's readings (status ok only); GPU index -> why it straggles."""
        th = self.thresholds
        need = th.straggler_samples
        for idx, reading in readings.items():
            peers = [r for i, r in readings.items() if i != idx]
            why = _outlier(reading, peers, th)
            streak = self._streak.get(idx, 0)
            if why is not None:
                streak = streak + 1 if streak > 0 else 1
                if streak >= need or idx in self._flagged:
                    self._flagged[idx] = why
            else:
                streak = streak - 1 if streak < 0 else -1
                if -streak >= need:
                    self._flagged.pop(idx, None)
            self._streak[idx] = streak
        for idx in list(self._streak):
            if idx not in readings:  # no reading: no judgement, and no stale flag
                del self._streak[idx]
                self._flagged.pop(idx, None)
        return dict(self._flagged)

    def forget(self, gpu: int) -> None:
        self._streak.pop(gpu, None)
        self._flagged.pop(gpu, None)
