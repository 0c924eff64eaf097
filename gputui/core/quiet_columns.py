"""The health rules' quiet path over a batch of samples at once, in numpy.

`HostHealth` judges a GPU quiet (`_quiet` in core/health.py) when its reading has fast fields,
a temperature below both temperature limits, memory use not above its limit and no trouble
clock-event bit; and the straggler rule settles a whole sample in one pass (`_uniform` in
core/straggler.py) when its utilisations and clocks lie close together. The collector
(collect/columns.py) runs both tests here over every GPU of every sample of a batch in a few
numpy operations, and builds Python rule objects only for the samples they do not settle.

Every test is its rule's own comparison, made on the same float64 values in the same order
(IEEE arithmetic is the same in numpy and in Python), so a reading is quiet here exactly when
it is quiet there. The one value float64 cannot hold, a clock-event mask of 2**53 or more, is
never taken as quiet here: the full rules judge it.

The readings come as one float64 row per GPU, in the column order of `FAST_FIELDS` (NaN for a
field not read), the rows of one sample consecutive; `starts` gives each sample's first row.
Callers pass only readings whose status is ok and that carry no slow field: the rest are
never quiet, which the caller tells without numpy.
"""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt

from gputui.core.health import TROUBLE_CLOCK_BITS
from gputui.core.straggler import Judged
from gputui.core.thresholds import Thresholds

#: The fast fields of a GpuReading, in the column order of a batch's rows.
FAST_FIELDS = (
    "util_pct",
    "mem_util_pct",
    "mem_used_mib",
    "mem_reserved_mib",
    "temp_c",
    "power_w",
    "power_limit_w",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "clock_events",
)


class Col(enum.IntEnum):
    """Column of each fast field in a batch's rows (the order of FAST_FIELDS)."""

    UTIL = 0
    MEM_UTIL = 1
    MEM_USED = 2
    MEM_RESERVED = 3
    TEMP = 4
    POWER = 5
    POWER_LIMIT = 6
    SM_CLOCK = 7
    MEM_CLOCK = 8
    CLOCK_EVENTS = 9


assert [c.name for c in Col] == [
    "UTIL",
    "MEM_UTIL",
    "MEM_USED",
    "MEM_RESERVED",
    "TEMP",
    "POWER",
    "POWER_LIMIT",
    "SM_CLOCK",
    "MEM_CLOCK",
    "CLOCK_EVENTS",
]
assert len(FAST_FIELDS) == len(Col)

# The fields whose presence makes a reading "has fast readings" (health.py `_has_fast`).
_HAS_FAST = [Col.UTIL, Col.TEMP, Col.MEM_USED, Col.POWER, Col.SM_CLOCK]
_EXACT_MASK_BELOW = float(2**53)  # every integer below it is exact in float64

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


def quiet_readings(
    rows: Floats, temp_limit: Floats, mem_total: Floats, mem_limit_pct: Floats | float
) -> Bools:
    """Per row: whether the rules find no reason for that reading (`_quiet`'s tests).

    The limits are per row (the row's GPU's; mem_total NaN where the inventory gives none or
    0)."""
    has_fast = ~np.isnan(rows[:, _HAS_FAST]).all(axis=1)
    # Each test negated as `not (value >= limit)`, so that NaN (not read) passes, as None does.
    cool = ~(rows[:, Col.TEMP] >= temp_limit)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        roomy = ~(100.0 * rows[:, Col.MEM_USED] / mem_total > mem_limit_pct)
    mask = rows[:, Col.CLOCK_EVENTS]
    # NaN (no mask) and masks too large to be exact become 0 here; the latter fail below.
    bits = np.where(mask < _EXACT_MASK_BELOW, mask, 0.0).astype(np.int64)
    clocks_calm = ((bits & TROUBLE_CLOCK_BITS) == 0) & ~(mask >= _EXACT_MASK_BELOW)
    quiet: Bools = has_fast & cool & roomy & clocks_calm
    return quiet


def every_quiet(quiet: Bools, starts: npt.NDArray[np.intp]) -> Bools:
    """Per sample: whether every one of its rows is quiet."""
    if not len(starts):
        return np.zeros(0, dtype=np.bool_)
    every: Bools = np.logical_and.reduceat(quiet, starts)
    return every


#: What `peer_judgements` says per sample (the values of its result).
UNSETTLED, NO_YARDSTICK, NORMAL = 0, 1, 2
JUDGED: dict[int, Judged | None] = {
    UNSETTLED: None,
    NO_YARDSTICK: Judged.NO_YARDSTICK,
    NORMAL: Judged.NORMAL,
}


def peer_judgements(
    rows: Floats, starts: npt.NDArray[np.intp], th: Thresholds
) -> npt.NDArray[np.int8]:
    """Per sample, what the straggler rule's one-pass bound (`_uniform`) says of all its GPUs:
    NORMAL, NO_YARDSTICK or UNSETTLED (look at each GPU). Every row of a sample must be a
    GPU the rule compares (status ok, fast readings: what a quiet reading is)."""
    if not len(starts):
        return np.zeros(0, dtype=np.int8)
    util = rows[:, Col.UTIL]
    clock = rows[:, Col.SM_CLOCK]
    n = np.add.reduceat(~np.isnan(util), starts)
    n_clocks = np.add.reduceat(~np.isnan(clock), starts)
    with np.errstate(invalid="ignore"):
        # fmax/fmin skip NaN; a sample with no value at all gets NaN, and its count says so.
        high = np.fmax.reduceat(util, starts)
        low = np.fmin.reduceat(util, starts)
        clock_high = np.fmax.reduceat(clock, starts)
        clock_low = np.fmin.reduceat(clock, starts)
        none = (n < th.straggler_min_peers) | (high < th.straggler_min_util_pct)
        spread = min(th.straggler_peer_spread_pct, th.straggler_util_drop_pct)
        clocks_close = (n_clocks == 0) | ~(
            clock_low < clock_high * (1 - th.straggler_clock_drop_pct / 100)
        )
        normal = (
            ~none
            & (n - 1 >= th.straggler_min_peers)
            & ~(low < th.straggler_min_util_pct)
            & ~(high - low > spread)
            & clocks_close
        )
    out = np.full(len(starts), UNSETTLED, dtype=np.int8)
    out[normal] = NORMAL
    out[none] = NO_YARDSTICK
    return out
