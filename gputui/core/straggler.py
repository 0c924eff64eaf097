"""Straggler detection: a GPU that runs slower than its peers on the same host.

In data-parallel training every GPU of a host does the same work, so one GPU whose SM clock or
utilisation sits well below the others' holds the whole job back (it waits at every all-reduce).
Peers are compared by their median, which one bad GPU cannot drag along, and only while they
make a yardstick: busy ("the same load") and in step (at least 3 in 4 of them within
`straggler_peer_spread_pct` points of their median). A sample without a yardstick is no
judgement: it neither raises nor clears. An idle host, a checkpoint write (every GPU waits on
storage at once) and GPUs that work independently, as an inference server's do, offer none.

Time, not single samples, decides, because a sample can mislead both ways:

- An inference server's GPUs look in step by chance while a burst of requests keeps most of
  them busy for a few seconds, one of them idle. Training GPUs stay in step for minutes. So a
  GPU is raised only once the peers have been in step for `straggler_in_step_s` without a
  break, and after `straggler_samples` outlying samples in a row. Until the first sample
  without a yardstick the peers count as in step from the first sample on, so that a short
  look (triage takes 5 samples) still judges.
- A training job dips at every checkpoint; a dip is no judgement, so it does not clear a
  straggler that is still slow after it. A flagged GPU clears only when it has been judged
  normal, with no outlying sample, for `straggler_settle_s`.
"""

from __future__ import annotations

import enum
from bisect import bisect_left, bisect_right
from collections.abc import Mapping

from gputui.core.model import GpuReading
from gputui.core.thresholds import Thresholds


class Judged(enum.Enum):
    """What one sample says about a GPU when it does not say "outlying, because ..."."""

    NO_YARDSTICK = "no yardstick"  # too few peers, idle peers or peers out of step
    NORMAL = "normal"  # measured against in-step peers, and not far below them


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

    def none_busy(self, th: Thresholds) -> bool:
        """True when no GPU of this sample has busy peers, from one median.

        Taking one value out of a sorted list leaves a median at most that of the list without
        its smallest value, so when even that is below the load floor, `judge` finds no
        yardstick for any GPU (the rule's own comparison). False only means "look at each GPU".
        """
        return len(self.utils) >= 2 and _median(self.utils[1:]) < th.straggler_min_util_pct

    def judge(self, reading: GpuReading, th: Thresholds) -> str | Judged:
        """Why `reading` is slow against the other GPUs of this sample, or what else it is."""
        utils = self.utils
        own_util = reading.util_pct
        n_peers = len(utils) - (own_util is not None)
        if n_peers < th.straggler_min_peers:
            return Judged.NO_YARDSTICK
        peer_util = _median_without(utils, own_util) if own_util is not None else _median(utils)
        if peer_util < th.straggler_min_util_pct:
            return Judged.NO_YARDSTICK  # peers are not under load: nothing to compare against
        if not _in_step(utils, own_util, peer_util, n_peers, th.straggler_peer_spread_pct):
            return Judged.NO_YARDSTICK  # peers do not move together: independent work
        if own_util is not None and own_util < peer_util - th.straggler_util_drop_pct:
            return f"util {own_util:.0f}% vs peers' median {peer_util:.0f}%"
        own_clock = reading.sm_clock_mhz
        if own_clock is not None and len(self.clocks) - 1 >= th.straggler_min_peers:
            peer_clock = _median_without(self.clocks, float(own_clock))
            if own_clock < peer_clock * (1 - th.straggler_clock_drop_pct / 100):
                return f"SM clock {own_clock} MHz vs peers' median {peer_clock:.0f} MHz"
        return Judged.NORMAL

    def outlier(self, reading: GpuReading, th: Thresholds) -> str | None:
        """Why `reading` is slow against the other GPUs of this sample, or None."""
        judged = self.judge(reading, th)
        return judged if isinstance(judged, str) else None


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


def _uniform(utils: list[float], clocks: list[int], th: Thresholds) -> Judged | None:
    """The judgement of every GPU of a sample when one pass over its values settles them all,
    else None ("look at each GPU"). No sort: what a busy or idle host shows nearly every second.

    Every peer median lies between the smallest and the largest value. So with enough GPUs,
    a smallest utilisation at the load floor, and the lowest utilisation and clock within
    both the spread and the drops of the highest, every GPU has in-step peers and none is far
    below them: all NORMAL. With fewer utilisations than peers needed, or the highest below
    the load floor, no GPU has a yardstick. The comparisons are the rule's own.
    """
    if len(utils) < th.straggler_min_peers or max(utils) < th.straggler_min_util_pct:
        return Judged.NO_YARDSTICK
    if len(utils) <= th.straggler_min_peers or min(utils) < th.straggler_min_util_pct:
        return None
    if max(utils) - min(utils) > min(th.straggler_peer_spread_pct, th.straggler_util_drop_pct):
        return None
    if clocks and min(clocks) < max(clocks) * (1 - th.straggler_clock_drop_pct / 100):
        return None
    return Judged.NORMAL


def _median(sorted_values: list[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2


class _Track:
    """One GPU's history as far as the rule needs it."""

    __slots__ = ("in_step_since", "normal_since", "outlying")

    def __init__(self) -> None:
        # Sample time since which every sample gave this GPU a yardstick (-inf: since the
        # first sample the rule saw); None: the latest sample gave none.
        self.in_step_since: float | None = None
        self.outlying = 0  # outlying samples in a row
        # A flagged GPU: time of its first normal sample since its last outlying one.
        self.normal_since: float | None = None


class StragglerDetector:
    """Per host: judges each GPU against its peers over time and says which GPUs straggle."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self._tracks: dict[int, _Track] = {}
        self._flagged: dict[int, str] = {}  # GPU -> the latest outlier description
        self._started = False  # a sample has been seen
        # The judgement that, given to every GPU, would change nothing now (see `_at_rest`).
        self._rest: Judged | None = None

    def update(self, readings: Mapping[int, GpuReading], t: float) -> dict[int, str]:
        """Feed one sample's readings (status ok only), taken at sample time `t` (seconds);
        GPU index -> why it straggles."""
        th = self.thresholds
        utils, clocks = _values(readings)
        every = _uniform(utils, clocks, th)
        if every is not None and every is self._rest and self._tracks.keys() == readings.keys():
            return dict(self._flagged)
        if every is None:
            peers = _Peers.of(utils, clocks)
            if peers.none_busy(th):
                every = Judged.NO_YARDSTICK
            else:
                for idx, reading in readings.items():
                    self._judge(idx, peers.judge(reading, th), t)
        if every is not None:
            for idx in readings:
                self._judge(idx, every, t)
        for idx in [i for i in self._tracks if i not in readings]:
            del self._tracks[idx]  # no reading: no judgement, and no stale flag
            self._flagged.pop(idx, None)
        self._started = True
        self._rest = self._at_rest()
        return dict(self._flagged)

    def _judge(self, idx: int, judged: str | Judged, t: float) -> None:
        th = self.thresholds
        track = self._tracks.get(idx)
        if track is None:
            track = self._tracks[idx] = _Track()
        if judged is Judged.NO_YARDSTICK:
            track.in_step_since = None
            track.outlying = 0
            return
        if track.in_step_since is None:
            track.in_step_since = t if self._started else float("-inf")
        sustained = t - track.in_step_since >= th.straggler_in_step_s
        if isinstance(judged, str):
            track.outlying += 1
            track.normal_since = None
            if idx in self._flagged or (track.outlying >= th.straggler_samples and sustained):
                self._flagged[idx] = judged
            return
        track.outlying = 0
        if idx in self._flagged:
            if track.normal_since is None:
                track.normal_since = t
            if sustained and t - track.normal_since >= th.straggler_settle_s:
                del self._flagged[idx]
                track.normal_since = None

    def _at_rest(self) -> Judged | None:
        """NO_YARDSTICK when another sample without a yardstick changes nothing (no GPU in
        step or counting), NORMAL when another all-normal sample changes nothing (every GPU in
        step, none counting, none flagged), else None."""
        tracks = self._tracks.values()
        if all(tr.in_step_since is None and not tr.outlying for tr in tracks):
            return Judged.NO_YARDSTICK
        if not self._flagged and all(
            tr.in_step_since is not None and not tr.outlying for tr in tracks
        ):
            return Judged.NORMAL
        return None

    def forget(self, gpu: int) -> None:
        self._tracks.pop(gpu, None)
        self._flagged.pop(gpu, None)
        self._rest = None
