"""Each GPU's daily rollups as a series, and the figures the rules derive from one day.

The rules judge days: a 5-minute rollup is too short for a trend, and the journal keeps 90 days
of daily ones. Five-minute rollups are merged into their day where no daily rollup of that GPU
and day is given, so a caller can pass either, or both (the daily one wins: it already holds
the 5-minute ones). A GPU is its uuid: a GPU replaced in the same slot starts a new series.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gputui.core.rollup import BUCKET_DAY_S, Rollup, merge, merge_all

DAY_S = BUCKET_DAY_S


@dataclass(frozen=True)
class GpuSeries:
    """One GPU's daily rollups, oldest first, one per day (days without data are absent)."""

    host: str
    gpu: int
    uuid: str
    days: tuple[Rollup, ...]

    def window(self, end: int, days: int) -> tuple[Rollup, ...]:
        """The days that start in [end - days, end)."""
        return window(self.days, end, days)


def window(days: Sequence[Rollup], end: int, n_days: int) -> tuple[Rollup, ...]:
    """The rollups of `days` whose day starts in [end - n_days days, end)."""
    first = end - n_days * DAY_S
    return tuple(d for d in days if first <= d.start < end)


def daily_series(rollups: Iterable[Rollup]) -> list[GpuSeries]:
    """Per-GPU daily series from rollups of any bucket length that divides a day.

    Sorted by host, index and uuid. Raises ValueError on a bucket that does not divide a day.
    """
    daily: dict[tuple[str, int, str, int], Rollup] = {}
    shorter: list[Rollup] = []
    for r in rollups:
        if r.length_s == DAY_S:
            key = (r.host, r.gpu, r.uuid, r.start)
            have = daily.get(key)
            # Two rows of one day: the halves of a day written across a restart.
            daily[key] = r if have is None else merge(have, r)
        elif 0 < r.length_s < DAY_S and DAY_S % r.length_s == 0:
            shorter.append(r)
        else:
            raise ValueError(
                f"a rollup of {r.host} GPU{r.gpu} lasts {r.length_s} s; trend rules take "
                f"buckets that divide a day (300 s or {DAY_S} s)"
            )
    for r in merge_all(shorter, DAY_S):
        daily.setdefault((r.host, r.gpu, r.uuid, r.start), r)
    by_gpu: dict[tuple[str, int, str], list[Rollup]] = {}
    for (host, gpu, uuid, _), r in sorted(daily.items()):
        by_gpu.setdefault((host, gpu, uuid), []).append(r)
    return [GpuSeries(h, g, u, tuple(rs)) for (h, g, u), rs in sorted(by_gpu.items())]


def current_gpus(series: Iterable[GpuSeries]) -> list[GpuSeries]:
    """The series without GPUs replaced since: per slot (host, index), the GPU seen last.

    A GPU swapped out is serviced already; its old readings must not put its slot on the
    list, nor stand for its successor.
    """
    kept = [gs for gs in series if gs.days]
    latest: dict[tuple[str, int], GpuSeries] = {}
    for gs in kept:
        have = latest.get((gs.host, gs.gpu))
        if have is None or _recency(gs) > _recency(have):
            latest[(gs.host, gs.gpu)] = gs
    return [gs for gs in kept if latest[(gs.host, gs.gpu)] is gs]


def _recency(gs: GpuSeries) -> tuple[int, int, str]:
    # The later last day wins; on the day of the swap both read, and the one that began later
    # is the new GPU.
    return (gs.days[-1].start, gs.days[0].start, gs.uuid)


def latest_end(series: Iterable[GpuSeries]) -> int | None:
    """The end of the latest day of any series: the rules' "now" when none is given."""
    ends = [s.days[-1].end for s in series if s.days]
    return max(ends) if ends else None


# --------------------------------------------------------------------------------------------
# Figures of one day.
# --------------------------------------------------------------------------------------------


def slowdown_c(r: Rollup) -> float | None:
    """The GPU's slowdown limit: its mean temperature plus its mean headroom to that limit.

    The accumulator adds a headroom for every temperature of a GPU that reports its limit, so
    both means are over the same samples and their sum is the limit itself.
    """
    if r.temp_mean_c is None or r.headroom_mean_c is None:
        return None
    return r.temp_mean_c + r.headroom_mean_c


def power_limit_w(r: Rollup) -> float | None:
    """The enforced power limit over the day: mean power over its mean share of the limit."""
    if r.power_mean_w is None or not r.power_limit_mean_pct:
        return None
    return 100.0 * r.power_mean_w / r.power_limit_mean_pct


def load_power_pct(r: Rollup, min_samples: int) -> float | None:
    """Mean power under load, in percent of the limit; None with too few samples under load."""
    limit = power_limit_w(r)
    if r.load_n < min_samples or r.load_power_mean_w is None or not limit:
        return None
    return 100.0 * r.load_power_mean_w / limit


def load_temp_c(r: Rollup, min_samples: int) -> float | None:
    if r.load_n < min_samples:
        return None
    return r.load_temp_mean_c


def load_headroom_c(r: Rollup, min_samples: int) -> float | None:
    """Headroom to the slowdown limit under load: the limit less the mean temperature at load."""
    limit, temp = slowdown_c(r), load_temp_c(r, min_samples)
    return None if limit is None or temp is None else limit - temp


def at_power(temp_c: float, power_pct: float, ref_pct: float, c_per_pct: float) -> float:
    """`temp_c`, measured at `power_pct`, moved to what it would read at `ref_pct`."""
    return temp_c + c_per_pct * (ref_pct - power_pct)
