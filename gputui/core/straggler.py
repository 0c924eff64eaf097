"""Straggler detection: a GPU that runs slower than its peers.

In data-parallel training every GPU does the same work, so one GPU whose SM clock or
utilisation sits well below the others' holds the whole job back (it waits at every all-reduce).
Peers are compared by their median, which one bad GPU cannot drag along, and only while they
make a yardstick: busy ("the same load") and in step (at least 3 in 4 of them within
`straggler_peer_spread_pct` points of their median). A sample without a yardstick is no
judgement: it neither raises nor clears. An idle host, a checkpoint write (every GPU waits on
storage at once) and GPUs that work independently, as an inference server's do, offer none.

Two rules share this module: the host-level rule (`StragglerDetector`, one per host: a GPU
against the host's other GPUs) and the job-level rule (core/job_straggler.py: a GPU against
its job's GPUs on the job's other hosts). They share the peer statistics (`_Peers`: its
`yardstick` takes either the GPU itself or its whole host out of the peers) and the time rules
(`_Timeline`).

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
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from typing import Generic, NamedTuple, TypeVar

from gputui.core.model import GpuReading
from gputui.core.thresholds import Thresholds


class Judged(enum.Enum):
    """What one sample says about a GPU when it does not say "outlying, because ..."."""

    NO_YARDSTICK = "no yardstick"  # too few peers, idle peers or peers out of step
    NORMAL = "normal"  # measured against in-step peers, and not far below them


def _positions(sorted_values: list[float], removed: Sequence[float]) -> list[int]:
    """Where one occurrence of each of `removed` (sorted, each in `sorted_values` as often as
    listed) sits in `sorted_values`, ascending."""
    out: list[int] = []
    for value in removed:
        pos = bisect_left(sorted_values, value)
        if out and out[-1] >= pos:
            pos = out[-1] + 1  # a repeated value: its next occurrence
        out.append(pos)
    return out


def _at_rank(sorted_values: list[float], positions: list[int], rank: int) -> float:
    """The `rank`-th smallest value (from 0) of `sorted_values` less those at `positions`."""
    i = rank
    for pos in positions:
        if pos > i:
            break
        i += 1  # a value at or below the index is gone: the wanted one lies one further
    return sorted_values[i]


def _median_without(sorted_values: list[float], removed: Sequence[float]) -> float:
    """The median of `sorted_values` with one occurrence of each of `removed` (sorted) taken
    out: the GPU itself (host-level rule), or every GPU of its host (job-level rule).

    Index arithmetic over the sorted list rather than a copy without them: a job-level peer set
    can hold thousands of values, each host of the job takes its own few out."""
    n = len(sorted_values) - len(removed)
    mid = n // 2
    if len(removed) == 1:
        # One value out, as the host-level rule takes it for every GPU of every host each
        # second: the rank-r value of the rest sits at index r, or r + 1 from its position on.
        pos = bisect_left(sorted_values, removed[0])
        high = sorted_values[mid + (pos <= mid)]
        if n % 2:
            return high
        return (sorted_values[mid - 1 + (pos <= mid - 1)] + high) / 2
    positions = _positions(sorted_values, removed)
    if n % 2:
        return _at_rank(sorted_values, positions, mid)
    low = _at_rank(sorted_values, positions, mid - 1)
    return (low + _at_rank(sorted_values, positions, mid)) / 2


class Yardstick(NamedTuple):
    """The peers' medians a GPU is compared with (None: fewer peers reported it than needed,
    or, for power, not compared)."""

    util: float
    clock: float | None
    power: float | None


class _Peers:
    """One sample's utilisations and SM clocks (and, for the job-level rule, power draws),
    sorted once, for every GPU's comparison.

    Sorting once per sample and finding a median without the GPU (or its host) by index costs
    O(log G) per GPU, where a fresh peer list and median per GPU cost O(G log G) with far
    larger constants; this rule runs for every GPU of every host every second.
    """

    # How the texts name the peers, and the power drop that makes an outlier (100: power is
    # not compared, as on one host, where GPUs share a power budget and a cap).
    peers = "peers'"
    power_drop_pct = 100.0

    def __init__(self, readings: Mapping[int, GpuReading]) -> None:
        utils, clocks = _values(readings)
        self.utils = sorted(utils)
        self.clocks = sorted(map(float, clocks))
        self.powers: list[float] = []

    @classmethod
    def of(
        cls,
        utils: Iterable[float],
        clocks: Iterable[float],
        powers: Iterable[float] = (),
        *,
        peers: str | None = None,
        power_drop_pct: float | None = None,
    ) -> _Peers:
        made = cls.__new__(cls)
        made.utils = sorted(utils)
        made.clocks = sorted(map(float, clocks))
        made.powers = sorted(powers)
        if peers is not None:
            made.peers = peers
        if power_drop_pct is not None:
            made.power_drop_pct = power_drop_pct
        return made

    def none_busy(self, th: Thresholds) -> bool:
        """True when no GPU of this sample has busy peers, from one median.

        Taking one value out of a sorted list leaves a median at most that of the list without
        its smallest value, so when even that is below the load floor, `judge` finds no
        yardstick for any GPU (the rule's own comparison). False only means "look at each GPU".
        """
        return len(self.utils) >= 2 and _median(self.utils[1:]) < th.straggler_min_util_pct

    def yardstick(
        self,
        th: Thresholds,
        utils: Sequence[float],
        clocks: Sequence[float] = (),
        powers: Sequence[float] = (),
    ) -> Yardstick | None:
        """The peers' medians once the values given (each sorted) are taken out of this
        sample's: the judged GPU's own, or its host's. None: they make no yardstick."""
        n_peers = len(self.utils) - len(utils)
        if n_peers < th.straggler_min_peers:
            return None
        peer_util = _median_without(self.utils, utils)
        if peer_util < th.straggler_min_util_pct:
            return None  # peers are not under load: nothing to compare against
        if not _in_step(self.utils, utils, peer_util, n_peers, th.straggler_peer_spread_pct):
            return None  # peers do not move together: independent work
        clock = power = None
        if len(self.clocks) - len(clocks) >= th.straggler_min_peers:
            clock = _median_without(self.clocks, clocks)
        if self.power_drop_pct < 100 and len(self.powers) - len(powers) >= th.straggler_min_peers:
            power = _median_without(self.powers, powers)
        return Yardstick(peer_util, clock, power)

    def compare(self, reading: GpuReading, peers: Yardstick, th: Thresholds) -> str | Judged:
        """Why `reading` is slow against the `peers`' medians, or NORMAL."""
        own_util = reading.util_pct
        if own_util is not None and own_util < peers.util - th.straggler_util_drop_pct:
            return f"util {own_util:.0f}% vs {self.peers} median {peers.util:.0f}%"
        clock, peer_clock = reading.sm_clock_mhz, peers.clock
        if (
            clock is not None
            and peer_clock is not None
            and clock < peer_clock * (1 - th.straggler_clock_drop_pct / 100)
        ):
            return f"SM clock {clock} MHz vs {self.peers} median {peer_clock:.0f} MHz"
        power, peer_power = reading.power_w, peers.power
        if (
            power is not None
            and peer_power is not None
            and power < peer_power * (1 - self.power_drop_pct / 100)
        ):
            return f"power {power:.0f} W vs {self.peers} median {peer_power:.0f} W"
        return Judged.NORMAL

    def judge(self, reading: GpuReading, th: Thresholds) -> str | Judged:
        """Why `reading` is slow against the other GPUs of this sample, or what else it is."""
        util, clock, power = reading.util_pct, reading.sm_clock_mhz, reading.power_w
        peers = self.yardstick(
            th,
            () if util is None else (util,),
            () if clock is None else (float(clock),),
            () if power is None or self.power_drop_pct >= 100 else (power,),
        )
        return Judged.NO_YARDSTICK if peers is None else self.compare(reading, peers, th)

    def outlier(self, reading: GpuReading, th: Thresholds) -> str | None:
        """Why `reading` is slow against the other GPUs of this sample, or None."""
        judged = self.judge(reading, th)
        return judged if isinstance(judged, str) else None


IN_STEP_SHARE = 0.75  # share of the peers that must sit near their median


def _in_step(
    utils: list[float], own: Sequence[float], median: float, n_peers: int, spread: float
) -> bool:
    """Whether at least 3 in 4 of the peers (`utils` sorted, less the sorted `own`) are within
    `spread` points of their `median`. A quorum rather than all of them, so that two
    stragglers at once do not hide each other."""
    low, high = median - spread, median + spread
    near = bisect_right(utils, high) - bisect_left(utils, low)
    if len(own) == 1:
        near -= low <= own[0] <= high  # the GPU judged is not its own peer
    elif own:
        near -= bisect_right(own, high) - bisect_left(own, low)  # nor is its host
    return near >= IN_STEP_SHARE * n_peers


def _values(readings: Mapping[int, GpuReading]) -> tuple[list[float], list[int]]:
    """The utilisations and SM clocks of a sample's readings, where read."""
    gpus = readings.values()
    utils = [r.util_pct for r in gpus if r.util_pct is not None]
    clocks = [r.sm_clock_mhz for r in gpus if r.sm_clock_mhz is not None]
    return utils, clocks


def _uniform(
    utils: list[float],
    clocks: Sequence[float],
    th: Thresholds,
    fewest_peers: int | None = None,
    powers: Sequence[float] = (),
    power_drop_pct: float = 100.0,
) -> Judged | None:
    """The judgement of every GPU of a sample when one pass over its values settles them all,
    else None ("look at each GPU"). No sort: what a busy or idle host shows nearly every second.

    Every peer median lies between the smallest and the largest value. So with enough peers
    for every GPU (`fewest_peers`: the fewest utilisations any GPU is judged against; on one
    host, all but its own), a smallest utilisation at the load floor, and the lowest
    utilisation, clock and power within both the spread and the drops of the highest, every
    GPU has in-step peers and none is far below them: all NORMAL. With fewer utilisations than
    peers needed, or the highest below the load floor, no GPU has a yardstick. The comparisons
    are the rule's own.
    """
    if len(utils) < th.straggler_min_peers or max(utils) < th.straggler_min_util_pct:
        return Judged.NO_YARDSTICK
    if fewest_peers is None:
        fewest_peers = len(utils) - 1
    if fewest_peers < th.straggler_min_peers or min(utils) < th.straggler_min_util_pct:
        return None
    if max(utils) - min(utils) > min(th.straggler_peer_spread_pct, th.straggler_util_drop_pct):
        return None
    if clocks and min(clocks) < max(clocks) * (1 - th.straggler_clock_drop_pct / 100):
        return None
    if powers and min(powers) < max(powers) * (1 - power_drop_pct / 100):
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


K = TypeVar("K", bound=Hashable)


class _Timeline(Generic[K]):
    """The rule's time hysteresis over GPUs named by keys (a host's GPU index; a job's
    (job, host, GPU)): in step for `straggler_in_step_s` and `straggler_samples` outlying
    samples in a row to raise, `straggler_settle_s` judged normal to clear."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self.tracks: dict[K, _Track] = {}
        self.flagged: dict[K, str] = {}  # GPU -> the latest outlier description
        self.started = False  # a sample has been judged

    def judge(self, key: K, judged: str | Judged, t: float) -> None:
        th = self.thresholds
        track = self.tracks.get(key)
        if track is None:
            track = self.tracks[key] = _Track()
        if judged is Judged.NO_YARDSTICK:
            track.in_step_since = None
            track.outlying = 0
            return
        if track.in_step_since is None:
            track.in_step_since = t if self.started else float("-inf")
        sustained = t - track.in_step_since >= th.straggler_in_step_s
        if isinstance(judged, str):
            track.outlying += 1
            track.normal_since = None
            if key in self.flagged or (track.outlying >= th.straggler_samples and sustained):
                self.flagged[key] = judged
            return
        track.outlying = 0
        if key in self.flagged:
            if track.normal_since is None:
                track.normal_since = t
            if sustained and t - track.normal_since >= th.straggler_settle_s:
                del self.flagged[key]
                track.normal_since = None

    def forget(self, key: K) -> None:
        """No reading: no judgement, and no stale flag."""
        self.tracks.pop(key, None)
        self.flagged.pop(key, None)

    def at_rest(self) -> Judged | None:
        """NO_YARDSTICK when another sample without a yardstick changes nothing (no GPU in
        step or counting), NORMAL when another all-normal sample changes nothing (every GPU in
        step, none counting, none flagged), else None."""
        tracks = self.tracks.values()
        if all(tr.in_step_since is None and not tr.outlying for tr in tracks):
            return Judged.NO_YARDSTICK
        if not self.flagged and all(
            tr.in_step_since is not None and not tr.outlying for tr in tracks
        ):
            return Judged.NORMAL
        return None


class StragglerDetector:
    """Per host: judges each GPU against its peers over time and says which GPUs straggle."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self._time: _Timeline[int] = _Timeline(thresholds)
        # The judgement that, given to every GPU, would change nothing now (see `at_rest`).
        self._rest: Judged | None = None

    def update(self, readings: Mapping[int, GpuReading], t: float) -> dict[int, str]:
        """Feed one sample's readings (status ok only), taken at sample time `t` (seconds);
        GPU index -> why it straggles."""
        th = self.thresholds
        timeline = self._time
        utils, clocks = _values(readings)
        every = _uniform(utils, clocks, th)
        if every is not None and every is self._rest and timeline.tracks.keys() == readings.keys():
            return dict(timeline.flagged)
        if every is None:
            peers = _Peers.of(utils, clocks)
            if peers.none_busy(th):
                every = Judged.NO_YARDSTICK
            else:
                for idx, reading in readings.items():
                    timeline.judge(idx, peers.judge(reading, th), t)
        if every is not None:
            for idx in readings:
                timeline.judge(idx, every, t)
        for idx in [i for i in timeline.tracks if i not in readings]:
            timeline.forget(idx)
        timeline.started = True
        self._rest = timeline.at_rest()
        return dict(timeline.flagged)

    def unchanged_by(self, every: Judged, gpus: Collection[int]) -> bool:
        """Whether a sample of exactly `gpus` that `_uniform` judges `every` would leave the
        detector as it is and flag no GPU: `update`'s own shortcut, asked without a sample."""
        timeline = self._time
        return every is self._rest and not timeline.flagged and timeline.tracks.keys() == gpus

    def forget(self, gpu: int) -> None:
        self._time.forget(gpu)
        self._rest = None
