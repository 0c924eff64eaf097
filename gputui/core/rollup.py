"""Per-GPU rollups: what a GPU did over 5 minutes or a day, in a few dozen numbers.

The monitor keeps minutes of readings; the slow trends that predict a failure (corrected ECC
climbing for a week, a GPU running hotter than its peers at the same power, a PSU that keeps
braking, remapped rows nearing the bank's limit) show over days. A `Rollup` is one GPU's
bucket, small enough to keep 90 days of (docs/prevention.md, "Rollups"); the trend rules read
series of them, and the journal stores them (gputui/ops/rollups.py).

`RollupAccumulator` turns samples into rollups with no I/O: feed it samples (or the monitor's
snapshots) and XIDs, and it returns each bucket as it closes. Buckets are aligned to Unix time
(5-minute buckets at :00, :05, ...; days at 00:00 UTC) and placed by the sample's own time
(`Sample.t`, the agent's clock): that is when the reading was taken, and a simulated host in
fast-forward (days in seconds) rolls up its simulated days. Daily rollups are 5-minute ones
merged (`merge`, `rekey`), so the two never disagree.

Counters become deltas. A counter that drops has been reset (driver reload, GPU reset,
reboot): the new value counts from zero, so the delta is the new value, never negative.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

import msgspec

from gputui.core.model import (
    CLOCK_EVENT_HW_POWER_BRAKE_SLOWDOWN,
    CLOCK_EVENT_HW_SLOWDOWN,
    CLOCK_EVENT_HW_THERMAL_SLOWDOWN,
    CLOCK_EVENT_SW_POWER_CAP,
    CLOCK_EVENT_SW_THERMAL_SLOWDOWN,
    CLOCK_EVENT_SYNC_BOOST,
    FleetSnapshot,
    GpuInfo,
    GpuReading,
    HostSnapshot,
    Sample,
)

BUCKET_5M_S = 300
BUCKET_DAY_S = 86_400
BUCKET_LENGTHS = (BUCKET_5M_S, BUCKET_DAY_S)
#: A sample at or above this SM utilisation is "under load": the temperature and power of such
#: samples are averaged apart, so two GPUs (or two days) compare at the same work.
LOAD_UTIL_PCT = 80.0
#: Samples further apart than this count no held-clock time from the reason bits between
#: them: gputui was not watching (a stalled stream, a reconnect), and guessing would inflate it.
MAX_GAP_S = 30.0


class RollupRetention(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How long the journal keeps rollups: hosts.toml `[journal]` (docs/configuration.md).

    Days of 5-minute rollups for looking at an episode closely, days of daily ones for trends
    over a quarter. Older rows go as newer ones are written.
    """

    five_minute_days: Annotated[int, msgspec.Meta(ge=1, le=366)] = 7
    daily_days: Annotated[int, msgspec.Meta(ge=1, le=3660)] = 90

    def keep_s(self, length_s: int) -> int:
        """Seconds of `length_s` buckets kept."""
        days = self.five_minute_days if length_s < BUCKET_DAY_S else self.daily_days
        return days * BUCKET_DAY_S


class Held(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Seconds the clocks were held down, per reason, over a bucket.

    From NVML's cumulative counters where the GPU has them (every reason but HW slowdown);
    else from the clock-event reason bits, each sample's bits counted over the time since the
    previous sample. The two need not agree (a counter counts the time the clocks were
    lowered, a bit that a reason was active when sampled: docs/prevention.md), so a reason
    never mixes them within one GPU. None: not known.
    """

    sw_power_cap_s: float | None = None
    sync_boost_s: float | None = None
    sw_thermal_s: float | None = None
    hw_thermal_s: float | None = None
    hw_power_brake_s: float | None = None
    hw_slowdown_s: float | None = None  # no NVML counter: always from the bits


#: Held's fields, the GpuReading counter (None: none exists) and the clock-event bit of each.
HELD_REASONS: tuple[tuple[str, str | None, int], ...] = (
    ("sw_power_cap_s", "held_sw_power_cap_us", CLOCK_EVENT_SW_POWER_CAP),
    ("sync_boost_s", "held_sync_boost_us", CLOCK_EVENT_SYNC_BOOST),
    ("sw_thermal_s", "held_sw_thermal_us", CLOCK_EVENT_SW_THERMAL_SLOWDOWN),
    ("hw_thermal_s", "held_hw_thermal_us", CLOCK_EVENT_HW_THERMAL_SLOWDOWN),
    ("hw_power_brake_s", "held_hw_power_brake_us", CLOCK_EVENT_HW_POWER_BRAKE_SLOWDOWN),
    ("hw_slowdown_s", None, CLOCK_EVENT_HW_SLOWDOWN),
)
HELD_FIELDS: tuple[str, ...] = tuple(name for name, _, _ in HELD_REASONS)

_N = TypeVar("_N", int, float)
_T = TypeVar("_T")


class Rollup(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One GPU over one bucket [start, start + length_s).

    Means come with the count of samples they average (`temp_n`, `power_n`, `util_n`,
    `load_n`) so that merging weighs them right. None means "not reported in this bucket",
    never zero. Units are in the names; `_pct` of the power limit is percent.
    """

    host: str
    gpu: int  # index on its host
    uuid: str
    start: int  # Unix seconds, a multiple of length_s
    length_s: int  # 300 or 86400
    samples: int = 0  # readings with status "ok"
    # temperature, and headroom to the GPU's own slowdown limit (GpuInfo.temp_slowdown_c)
    temp_n: int = 0
    temp_min_c: float | None = None
    temp_mean_c: float | None = None
    temp_max_c: float | None = None
    headroom_min_c: float | None = None
    headroom_mean_c: float | None = None
    # power, and its share of the enforced limit
    power_n: int = 0
    power_mean_w: float | None = None
    power_max_w: float | None = None
    power_limit_mean_pct: float | None = None
    util_n: int = 0
    util_mean_pct: float | None = None
    # samples under load (util >= LOAD_UTIL_PCT with temperature and power read): compare
    # temperatures at the same power with these
    load_n: int = 0
    load_temp_mean_c: float | None = None
    load_power_mean_w: float | None = None
    held: Held = Held()
    # counter deltas over the bucket
    ecc_corrected: int | None = None
    ecc_uncorrected: int | None = None
    pcie_replay: int | None = None
    # PCIe link: slow samples that read it, and those below the GPU's maximum width (or gen,
    # under load: an idle GPU lowers its link gen to save power, which is no fault)
    link_n: int = 0
    link_down_n: int = 0
    # remapped rows at the end of the bucket
    remap_corrected: int | None = None
    remap_uncorrected: int | None = None
    remap_pending: bool | None = None
    remap_failure: bool | None = None
    xids: dict[int, int] = msgspec.field(default_factory=dict)  # XID code -> occurrences

    @property
    def end(self) -> int:
        return self.start + self.length_s

    @property
    def key(self) -> tuple[str, int, str, int, int]:
        return (self.host, self.gpu, self.uuid, self.length_s, self.start)


def bucket_start(t: float, length_s: int) -> int:
    """The start of the `length_s` bucket holding Unix time `t`."""
    return math.floor(t / length_s) * length_s


# --------------------------------------------------------------------------------------------
# Merging: buckets of one GPU into a longer one (5-minute -> day), or two halves of one bucket
# (a bucket written at shutdown and finished after a restart).
# --------------------------------------------------------------------------------------------


def rekey(r: Rollup, length_s: int) -> Rollup:
    """`r` as the (partial) content of the `length_s` bucket that holds it."""
    return msgspec.structs.replace(r, start=bucket_start(r.start, length_s), length_s=length_s)


def merge(a: Rollup, b: Rollup) -> Rollup:
    """One rollup holding both `a` and `b`, in `a`'s bucket; `b` is the later one.

    End-of-bucket values (remapped rows) come from `b` where it read them.
    """
    if (a.host, a.gpu, a.uuid) != (b.host, b.gpu, b.uuid):
        raise ValueError(f"cannot merge rollups of different GPUs: {a.key} and {b.key}")
    return Rollup(
        host=a.host,
        gpu=a.gpu,
        uuid=a.uuid,
        start=a.start,
        length_s=a.length_s,
        samples=a.samples + b.samples,
        temp_n=a.temp_n + b.temp_n,
        temp_min_c=_min(a.temp_min_c, b.temp_min_c),
        temp_mean_c=_wmean(a.temp_mean_c, a.temp_n, b.temp_mean_c, b.temp_n),
        temp_max_c=_max(a.temp_max_c, b.temp_max_c),
        headroom_min_c=_min(a.headroom_min_c, b.headroom_min_c),
        headroom_mean_c=_wmean(a.headroom_mean_c, a.temp_n, b.headroom_mean_c, b.temp_n),
        power_n=a.power_n + b.power_n,
        power_mean_w=_wmean(a.power_mean_w, a.power_n, b.power_mean_w, b.power_n),
        power_max_w=_max(a.power_max_w, b.power_max_w),
        power_limit_mean_pct=_wmean(
            a.power_limit_mean_pct, a.power_n, b.power_limit_mean_pct, b.power_n
        ),
        util_n=a.util_n + b.util_n,
        util_mean_pct=_wmean(a.util_mean_pct, a.util_n, b.util_mean_pct, b.util_n),
        load_n=a.load_n + b.load_n,
        load_temp_mean_c=_wmean(a.load_temp_mean_c, a.load_n, b.load_temp_mean_c, b.load_n),
        load_power_mean_w=_wmean(a.load_power_mean_w, a.load_n, b.load_power_mean_w, b.load_n),
        held=Held(**{f: _add(getattr(a.held, f), getattr(b.held, f)) for f in HELD_FIELDS}),
        ecc_corrected=_add(a.ecc_corrected, b.ecc_corrected),
        ecc_uncorrected=_add(a.ecc_uncorrected, b.ecc_uncorrected),
        pcie_replay=_add(a.pcie_replay, b.pcie_replay),
        link_n=a.link_n + b.link_n,
        link_down_n=a.link_down_n + b.link_down_n,
        remap_corrected=_later(a.remap_corrected, b.remap_corrected),
        remap_uncorrected=_later(a.remap_uncorrected, b.remap_uncorrected),
        remap_pending=_later(a.remap_pending, b.remap_pending),
        remap_failure=_later(a.remap_failure, b.remap_failure),
        xids=_add_counts(a.xids, b.xids),
    )


def merge_all(rollups: Iterable[Rollup], length_s: int) -> list[Rollup]:
    """Merge rollups (any order, any GPUs) into `length_s` buckets, sorted by GPU and start."""
    out: dict[tuple[str, int, str, int], Rollup] = {}
    for r in sorted(rollups, key=lambda r: r.start):
        into = rekey(r, length_s)
        key = (r.host, r.gpu, r.uuid, into.start)
        have = out.get(key)
        out[key] = into if have is None else merge(have, into)
    return [out[k] for k in sorted(out)]


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _wmean(a: float | None, na: int, b: float | None, nb: int) -> float | None:
    if a is None or na <= 0:
        return b
    if b is None or nb <= 0:
        return a
    return (a * na + b * nb) / (na + nb)


def _add(a: _N | None, b: _N | None) -> _N | None:
    return b if a is None else a if b is None else a + b


def _later(a: _T | None, b: _T | None) -> _T | None:
    return a if b is None else b


def _add_counts(a: Mapping[int, int], b: Mapping[int, int]) -> dict[int, int]:
    out = dict(a)
    for code, n in b.items():
        out[code] = out.get(code, 0) + n
    return out


# --------------------------------------------------------------------------------------------
# Accumulation from samples.
# --------------------------------------------------------------------------------------------


class _Stat:
    """Count, sum, min and max of one reading."""

    __slots__ = ("max", "min", "n", "total")

    def __init__(self) -> None:
        self.n = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, x: float) -> None:
        self.n += 1
        self.total += x
        if x < self.min:
            self.min = x
        if x > self.max:
            self.max = x

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    @property
    def low(self) -> float | None:
        return self.min if self.n else None

    @property
    def high(self) -> float | None:
        return self.max if self.n else None


class _Counter:
    """The previous value of one cumulative counter, turning each new value into a delta."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: int | None = None

    def delta(self, value: int | None) -> int | None:
        """The increase since the previous value; None for the first value or no value."""
        if value is None:
            return None
        last, self.last = self.last, value
        if last is None:
            return None
        # A drop is a reset (driver reload, GPU reset): the counter restarted from zero.
        return value - last if value >= last else value


@dataclass
class _Bucket:
    """One GPU's open bucket."""

    start: int
    samples: int = 0
    temp: _Stat = field(default_factory=_Stat)
    headroom: _Stat = field(default_factory=_Stat)
    power: _Stat = field(default_factory=_Stat)
    power_pct: _Stat = field(default_factory=_Stat)
    util: _Stat = field(default_factory=_Stat)
    load_temp: _Stat = field(default_factory=_Stat)
    load_power: _Stat = field(default_factory=_Stat)
    held_counter_us: dict[str, int] = field(default_factory=dict)
    held_bits_s: dict[str, float] = field(default_factory=dict)
    bits_read: bool = False
    ecc_corr_vol: int | None = None
    ecc_uncorr_vol: int | None = None
    ecc_corr_agg: int | None = None
    ecc_uncorr_agg: int | None = None
    pcie_replay: int | None = None
    link_n: int = 0
    link_down_n: int = 0
    remap_corrected: int | None = None
    remap_uncorrected: int | None = None
    remap_pending: bool | None = None
    remap_failure: bool | None = None
    xids: dict[int, int] = field(default_factory=dict)


@dataclass
class _GpuState:
    """What one GPU's accumulation carries from bucket to bucket."""

    host: str
    index: int
    uuid: str
    bucket: _Bucket | None = None
    last_fast_t: float | None = None
    counters: dict[str, _Counter] = field(default_factory=dict)
    has_counter: set[str] = field(default_factory=set)  # held reasons the GPU has counters for
    pending_xids: dict[int, int] = field(default_factory=dict)  # before its first sample

    def delta(self, name: str, value: int | None) -> int | None:
        counter = self.counters.get(name)
        if counter is None:
            counter = self.counters[name] = _Counter()
        return counter.delta(value)


class RollupAccumulator:
    """Turns one fleet's samples and XIDs into closed per-GPU rollups of `length_s` seconds.

        acc = RollupAccumulator()
        for snap in snapshots:
            write(acc.observe(snap))      # the buckets that closed
        write(acc.close_all())            # at the end: the open buckets, partial

    A GPU's bucket closes when that GPU's first sample of a later bucket arrives, or through
    `close_quiet` (a host that stopped sending) and `close_all`. Samples older than the GPU's
    open bucket (a clock stepped back) are counted in `late` and left out.
    """

    def __init__(
        self,
        length_s: int = BUCKET_5M_S,
        *,
        load_util_pct: float = LOAD_UTIL_PCT,
        max_gap_s: float = MAX_GAP_S,
    ) -> None:
        if length_s <= 0:
            raise ValueError(f"a bucket is at least one second long, not {length_s}")
        self.length_s = length_s
        self.load_util_pct = load_util_pct
        self.max_gap_s = max_gap_s
        self.late = 0  # samples dropped because their bucket had already closed
        self._gpus: dict[tuple[str, int], _GpuState] = {}
        # XIDs of GPUs not yet sampled (an event can beat the first sample of a stream)
        self._early_xids: dict[tuple[str, int], dict[int, int]] = {}
        # host -> (seq, t) of the last sample whose fast fields, and slow fields, were folded in
        self._seen: dict[str, tuple[int, float]] = {}
        self._seen_slow: dict[str, tuple[int, float]] = {}
        # host -> when its last new sample arrived (the collector's clock, HostSnapshot.sample_t)
        self._heard: dict[str, float] = {}

    # -- feeding ----------------------------------------------------------------------------

    def observe(self, snap: FleetSnapshot) -> list[Rollup]:
        """Fold in one monitor snapshot: each host's new samples and the XIDs among its events."""
        closed: list[Rollup] = []
        for host in snap.hosts:
            closed += self.observe_host(host, snap.t)
        for ev in snap.events:
            if ev.kind == "xid" and ev.xid is not None and ev.gpu is not None:
                self.add_xid(ev.host, ev.gpu, ev.xid)
        return closed

    def observe_host(self, host: HostSnapshot, now: float | None = None) -> list[Rollup]:
        """Fold in a host's samples that are new since the last call.

        A snapshot repeats the last sample while a host is stale, and carries the last slow
        sample apart from the last fast one (a consumer slower than the tick skips samples, and
        the slow ones hold the counters): each sample counts once, its slow fields once. `now`
        (the snapshot's time) stands for the arrival time where the host has none.
        """
        if host.hello is None:
            return []
        name, sample, slow = host.name, host.sample, host.slow_sample
        last_fast = self._seen.get(name)
        todo: list[tuple[Sample, bool, bool]] = []  # (sample, its fast fields, its slow ones)
        if slow is not None and self._seen_slow.get(name) != (slow.seq, slow.t):
            self._seen_slow[name] = (slow.seq, slow.t)
            todo.append((slow, last_fast is None or slow.t > last_fast[1], True))
        if sample is not None and (sample.seq, sample.t) != last_fast:
            if todo and (sample.seq, sample.t) == (todo[0][0].seq, todo[0][0].t):
                todo[0] = (sample, True, True)
            else:
                todo.append((sample, True, False))
        arrived = host.sample_t if host.sample_t is not None else now
        if todo and arrived is not None:
            self._heard[name] = arrived
        closed: list[Rollup] = []
        for s, fast, slow_fields in sorted(todo, key=lambda x: x[0].t):
            if fast:
                self._seen[name] = (s.seq, s.t)
            closed += self.add_sample(name, host.hello.gpus, s, fast=fast, slow=slow_fields)
        return closed

    def add_sample(
        self,
        host: str,
        gpus: Sequence[GpuInfo],
        sample: Sample,
        *,
        fast: bool = True,
        slow: bool = True,
    ) -> list[Rollup]:
        """Fold in one sample of `host`, whose inventory is `gpus`; the buckets it closed.

        `fast=False` takes only its slow fields, `slow=False` only its fast ones (a sample
        already folded in for the other half). Slow fields count only if `sample.slow`.
        """
        infos = {g.index: g for g in gpus}
        closed: list[Rollup] = []
        start = bucket_start(sample.t, self.length_s)
        for reading in sample.gpus:
            info = infos.get(reading.index)
            if info is None:
                continue  # not in the inventory: no uuid to file it under
            state = self._gpus.get((host, info.index))
            if state is None or state.uuid != info.uuid:
                # A new GPU, or another one in the slot (replaced, or the host's indices
                # changed): the old one's bucket closes, none of its counters carry over.
                if state is not None and state.bucket is not None:
                    closed.append(self._close(state))
                state = self._gpus[(host, info.index)] = _GpuState(
                    host=host, index=info.index, uuid=info.uuid
                )
                state.pending_xids = self._early_xids.pop((host, info.index), {})
            if state.bucket is not None and start < state.bucket.start:
                self.late += 1
                continue
            if state.bucket is not None and start > state.bucket.start:
                closed.append(self._close(state))
            if state.bucket is None:
                state.bucket = _Bucket(start=start, xids=state.pending_xids)
                state.pending_xids = {}
            if reading.status != "ok":
                continue
            if fast:
                self._add_fast(state, state.bucket, info, reading, sample.t)
            if slow and sample.slow:
                self._add_slow(state, state.bucket, info, reading)
        return closed

    def add_xid(self, host: str, gpu: int, code: int, count: int = 1) -> None:
        """Count an XID on a GPU, in its open bucket (or its first, before any sample).

        The event's own time is not used: events carry the collector's clock and samples the
        agent's, and an XID belongs with the readings around it.
        """
        state = self._gpus.get((host, gpu))
        if state is None:
            xids = self._early_xids.setdefault((host, gpu), {})
        else:
            xids = state.bucket.xids if state.bucket is not None else state.pending_xids
        xids[code] = xids.get(code, 0) + count

    # -- closing ----------------------------------------------------------------------------

    def close_quiet(self, since: float) -> list[Rollup]:
        """Close the open buckets of hosts whose last sample arrived before `since` (the
        collector's clock, as HostSnapshot.sample_t): they stopped sending. Measured by arrival,
        not by the samples' own times, so a host whose clock is wrong closes nobody else's."""
        quiet = {host for host, t in self._heard.items() if t < since}
        return [
            self._close(s) for s in self._gpus.values() if s.bucket is not None and s.host in quiet
        ]

    def close_all(self) -> list[Rollup]:
        """Close every open bucket, partial as it is (the writer merges its rest later)."""
        return [self._close(s) for s in self._gpus.values() if s.bucket is not None]

    def open_starts(self) -> list[int]:
        """The start of every open bucket."""
        return [s.bucket.start for s in self._gpus.values() if s.bucket is not None]

    # -- internals --------------------------------------------------------------------------

    def _add_fast(
        self, state: _GpuState, b: _Bucket, info: GpuInfo, r: GpuReading, t: float
    ) -> None:
        b.samples += 1
        if r.temp_c is not None:
            b.temp.add(r.temp_c)
            if info.temp_slowdown_c is not None:
                b.headroom.add(info.temp_slowdown_c - r.temp_c)
        if r.power_w is not None:
            b.power.add(r.power_w)
            limit = r.power_limit_w if r.power_limit_w is not None else info.power_limit_w
            if limit:
                b.power_pct.add(100.0 * r.power_w / limit)
        if r.util_pct is not None:
            b.util.add(r.util_pct)
            if r.util_pct >= self.load_util_pct and r.temp_c is not None and r.power_w is not None:
                b.load_temp.add(r.temp_c)
                b.load_power.add(r.power_w)
        last, state.last_fast_t = state.last_fast_t, t
        if r.clock_events is not None:
            b.bits_read = True
            dt = 0.0 if last is None else t - last
            if 0 < dt <= self.max_gap_s:
                for name, _, bit in HELD_REASONS:
                    if r.clock_events & bit:
                        b.held_bits_s[name] = b.held_bits_s.get(name, 0.0) + dt

    def _add_slow(self, state: _GpuState, b: _Bucket, info: GpuInfo, r: GpuReading) -> None:
        for name, counter, _ in HELD_REASONS:
            if counter is None:
                continue
            value = getattr(r, counter)
            if value is None:
                continue
            state.has_counter.add(name)
            d = state.delta(counter, value)
            b.held_counter_us[name] = b.held_counter_us.get(name, 0) + (d or 0)
        b.ecc_corr_vol = _add(b.ecc_corr_vol, state.delta("ecc_cv", r.ecc_corrected_volatile))
        b.ecc_uncorr_vol = _add(b.ecc_uncorr_vol, state.delta("ecc_uv", r.ecc_uncorrected_volatile))
        b.ecc_corr_agg = _add(b.ecc_corr_agg, state.delta("ecc_ca", r.ecc_corrected_aggregate))
        b.ecc_uncorr_agg = _add(
            b.ecc_uncorr_agg, state.delta("ecc_ua", r.ecc_uncorrected_aggregate)
        )
        b.pcie_replay = _add(b.pcie_replay, state.delta("pcie_replay", r.pcie_replay))
        if r.pcie_width is not None and info.pcie_width_max:
            b.link_n += 1
            narrow = r.pcie_width < info.pcie_width_max
            busy = r.util_pct is not None and r.util_pct >= self.load_util_pct
            slow_gen = (
                busy
                and r.pcie_gen is not None
                and info.pcie_gen_max is not None
                and r.pcie_gen < info.pcie_gen_max
            )
            if narrow or slow_gen:
                b.link_down_n += 1
        b.remap_corrected = _later(b.remap_corrected, r.remap_corrected)
        b.remap_uncorrected = _later(b.remap_uncorrected, r.remap_uncorrected)
        b.remap_pending = _later(b.remap_pending, r.remap_pending)
        b.remap_failure = _later(b.remap_failure, r.remap_failure)

    def _close(self, state: _GpuState) -> Rollup:
        b = state.bucket
        assert b is not None
        state.bucket = None
        held: dict[str, float | None] = {}
        for name, _, _ in HELD_REASONS:
            if name in state.has_counter:
                held[name] = b.held_counter_us.get(name, 0) / 1e6
            elif b.bits_read:
                held[name] = b.held_bits_s.get(name, 0.0)
            else:
                held[name] = None
        # Volatile ECC counters move as errors happen; the aggregate ones only when the driver
        # writes the infoROM. Volatile where the GPU reports it, aggregate otherwise.
        ecc_c = b.ecc_corr_vol if b.ecc_corr_vol is not None else b.ecc_corr_agg
        ecc_u = b.ecc_uncorr_vol if b.ecc_uncorr_vol is not None else b.ecc_uncorr_agg
        return Rollup(
            host=state.host,
            gpu=state.index,
            uuid=state.uuid,
            start=b.start,
            length_s=self.length_s,
            samples=b.samples,
            temp_n=b.temp.n,
            temp_min_c=b.temp.low,
            temp_mean_c=b.temp.mean,
            temp_max_c=b.temp.high,
            headroom_min_c=b.headroom.low,
            headroom_mean_c=b.headroom.mean,
            power_n=b.power.n,
            power_mean_w=b.power.mean,
            power_max_w=b.power.high,
            power_limit_mean_pct=b.power_pct.mean,
            util_n=b.util.n,
            util_mean_pct=b.util.mean,
            load_n=b.load_temp.n,
            load_temp_mean_c=b.load_temp.mean,
            load_power_mean_w=b.load_power.mean,
            held=Held(**held),
            ecc_corrected=ecc_c,
            ecc_uncorrected=ecc_u,
            pcie_replay=b.pcie_replay,
            link_n=b.link_n,
            link_down_n=b.link_down_n,
            remap_corrected=b.remap_corrected,
            remap_uncorrected=b.remap_uncorrected,
            remap_pending=b.remap_pending,
            remap_failure=b.remap_failure,
            xids=b.xids,
        )
