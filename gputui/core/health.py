"""Health verdicts: from one host's readings and events to a level per GPU and per host.

`HostHealth` is stateful, one per host, fed every sample and every pushed event:

- Temperature and memory use have hysteresis: a reason raised at a limit stays until the value
  falls below the limit minus the band, so a value that wobbles at a limit never flaps.
- Clock-event bits are held for a few seconds after they were last seen, for the same reason.
- Slow signals (ECC, remaps, PCIe, NVLink, recovery action) arrive every 10-60 s and are None in
  the fast samples between: their reasons are the judgement of the latest sample that carried
  the field, not cleared by the samples that did not.
- Counter rules ("rises") compare each counter with its value in the previous sample that had
  it; the first sets the baseline. A counter that goes down means the GPU was reset.
- Reasons driven by XIDs, uncorrectable ECC, row-remap failure and lost GPUs latch: they stay
  until the operator clears them or a GPU reset is seen, so a GPU that logged XID 79 is not
  green on the next sample just because NVML answers again.

Reason codes, levels and actions are listed in REASON_CODES (and docs/health.md).
"""

from __future__ import annotations

from collections import deque
from operator import attrgetter

import msgspec

from gputui.core.model import (
    CLOCK_EVENT_HW_POWER_BRAKE_SLOWDOWN,
    CLOCK_EVENT_HW_SLOWDOWN,
    CLOCK_EVENT_HW_THERMAL_SLOWDOWN,
    CLOCK_EVENT_SW_THERMAL_SLOWDOWN,
    OK_VERDICT,
    Action,
    Event,
    GpuInfo,
    GpuReading,
    Hello,
    HostVerdict,
    Level,
    Reason,
    Sample,
    Verdict,
)
from gputui.core.reasons import REASON_CODES, fmt_num, reason, verdict_of, who
from gputui.core.straggler import Judged, StragglerDetector
from gputui.core.thresholds import DEFAULT_THRESHOLDS, Thresholds
from gputui.core.words import adding, counted
from gputui.core.xid import (
    RESETTING_RECOVERY_ACTIONS,
    recovery_action,
    xid154_action,
    xid_info,
)

__all__ = [
    "REASON_CODES",
    "SLOW_FIELDS",
    "TROUBLE_CLOCK_BITS",
    "HostHealth",
    "QuietLimits",
    "Thresholds",
]

# Cumulative counters: a rise feeds a rule, a fall means the GPU was reset.
_COUNTERS = (
    "ecc_corrected_volatile",
    "ecc_uncorrected_volatile",
    "pcie_replay",
    "nvlink_replay",
    "nvlink_recovery",
    "nvlink_crc_flit",
    "nvlink_crc_data",
)
_counters_of = attrgetter(*_COUNTERS)
_NO_COUNTERS = (None,) * len(_COUNTERS)
_NVLINK_COUNTERS = ("nvlink_replay", "nvlink_recovery", "nvlink_crc_flit", "nvlink_crc_data")

# Clock-event bits that mean trouble (SwPowerCap at TDP is normal, idle is normal).
_CLOCK_BITS: tuple[tuple[int, str, str], ...] = (
    (CLOCK_EVENT_HW_THERMAL_SLOWDOWN, "hw_thermal", "hardware thermal slowdown"),
    (CLOCK_EVENT_HW_POWER_BRAKE_SLOWDOWN, "hw_power_brake", "hardware power brake"),
    (CLOCK_EVENT_HW_SLOWDOWN, "hw_slowdown", "hardware slowdown"),
    (CLOCK_EVENT_SW_THERMAL_SLOWDOWN, "sw_thermal", "software thermal slowdown"),
)

_ANY_CLOCK_BIT = 0
for _bit, _, _ in _CLOCK_BITS:
    _ANY_CLOCK_BIT |= _bit
#: Clock-event bits that raise a reason: a reading with none of them set is quiet on clocks.
TROUBLE_CLOCK_BITS = _ANY_CLOCK_BIT

# Every slow field: a reading that carries none of them leaves the slow judgements, counter
# baselines and latches as they are (the quiet path below relies on it).
_SLOW_FIELDS = tuple(
    name
    for name in GpuReading.__struct_fields__
    if name.startswith(("ecc_", "remap_", "retired_", "pcie_", "nvlink_", "recovery_"))
)
_slow_fields_of = attrgetter(*_SLOW_FIELDS)
#: The slow fields of a GpuReading: a reading that carries one is never quiet.
SLOW_FIELDS = _SLOW_FIELDS
_NO_SLOW_FIELDS = (None,) * len(_SLOW_FIELDS)

_Key = tuple[int | None, str]  # (GPU index or None for the host, reason code)
# Per GPU: the temperature below which no temperature rule is raised, the memory total and
# the memory-use limit (see `_quiet`).
QuietLimits = tuple[float, float | None, float]
PCIE_DOWN = "pcie_downgraded"


def _has_fast(r: GpuReading) -> bool:
    return (
        r.util_pct is not None
        or r.temp_c is not None
        or r.mem_used_mib is not None
        or r.power_w is not None
        or r.sm_clock_mhz is not None
    )


def _quiet(r: GpuReading, limits: QuietLimits) -> bool:
    """True when the full rules would find no reason for `r` and change no state.

    Holds only while the host has nothing raised or held (`HostHealth.evaluate` checks): then a
    reading with status ok, fast fields, no slow field, a temperature below both temperature
    limits, memory use not above its limit and no trouble clock-event bit is quiet. Each test
    is the negation of its rule's trigger, computed the same way.
    """
    if r.status != "ok" or _slow_fields_of(r) != _NO_SLOW_FIELDS or not _has_fast(r):
        return False
    temp_limit, mem_total, mem_limit_pct = limits
    if r.temp_c is not None and r.temp_c >= temp_limit:
        return False
    mask = r.clock_events
    if mask is not None and mask & _ANY_CLOCK_BIT:
        return False
    if r.mem_used_mib is not None and mem_total:
        return 100.0 * r.mem_used_mib / mem_total <= mem_limit_pct
    return True


class HostHealth:
    """Stateful per host: hysteresis, latches, counter baselines for 'rises'."""

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.thresholds = thresholds or DEFAULT_THRESHOLDS
        self._latched: dict[_Key, Reason] = {}
        self._xid_counts: dict[tuple[int | None, int], int] = {}
        self._xid_times: dict[tuple[int | None, int], deque[float]] = {}  # XIDs with a rate rule
        self._xid154_t: dict[int | None, float] = {}  # agent time of the latest XID 154
        self._bands: set[_Key] = set()  # hysteresis reasons currently raised
        self._bit_seen: dict[_Key, float] = {}  # clock-event reason -> last time seen
        self._slow: dict[_Key, Reason] = {}  # judgement of the latest sample with the field
        # GPU -> (its PCIe judgement, that judgement said as an earlier reading): made once
        self._pcie_idle: dict[int, tuple[Reason, Reason]] = {}
        self._counters: dict[int, dict[str, int]] = {}
        self._rises: dict[_Key, tuple[float, str]] = {}  # rise reason -> (when, text)
        self._down: set[int] = set()  # GPUs last read as lost or needing a reset
        self._recovery: dict[int, int] = {}  # last recovery-action value read
        self._uuids: dict[int, str] = {}
        self._straggler = StragglerDetector(self.thresholds)
        self._hello: Hello | None = None  # the hello `_inventory` was built from
        self._inventory: dict[int, GpuInfo] = {}
        # Per GPU of the inventory: the temperature below which no temperature rule is raised,
        # the memory total and the memory-use limit (see `_quiet`); built with the inventory.
        self._quiet_limits: dict[int, QuietLimits] = {}
        self.quiet_path = True  # off only to check the quiet path against the full rules
        self._all_ok: HostVerdict | None = None  # the verdict of a quiet sample, made once

    # ----------------------------------------------------------------------------------------
    # Events and operator actions
    # ----------------------------------------------------------------------------------------

    def observe_event(self, event: Event, now: float) -> None:
        """Latch what a pushed event says (XIDs, double-bit ECC, lost GPU, reset required)."""
        gpu = event.gpu
        if gpu is None and event.uuid is not None:
            gpu = next((i for i, u in self._uuids.items() if u == event.uuid), None)
        name = who(gpu)
        if event.kind == "xid" and event.xid is not None:
            self._observe_xid(gpu, event.xid, event, now)
        elif event.kind == "ecc_dbe":
            self._latch(reason("ecc_uncorrectable", gpu, f"{name} double-bit ECC error event"))
        elif event.kind == "gpu_lost":
            text = adding(f"{name} is lost (fell off the bus)", event.text)
            self._latch(reason("gpu_lost", gpu, text))
        elif event.kind == "reset_required":
            self._latch(reason("reset_required", gpu, f"{name} needs a GPU reset"))

    def _observe_xid(self, gpu: int | None, xid: int, event: Event, now: float) -> None:
        info = xid_info(xid)
        key = (gpu, xid)
        count = self._xid_counts[key] = self._xid_counts.get(key, 0) + 1
        level, action = info.level, info.action
        text = f"{who(gpu)} XID {xid}: {info.meaning}"
        if count > 1:
            text += f" ({count} times)"
        detail = info.action_text
        th = self.thresholds
        if xid in (31, 63):
            times = self._xid_times.setdefault(key, deque())
            times.append(now)
        if xid == 31:
            window = th.xid_31_window_h
            recent = self._recent(key, now, window)
            if recent >= th.xid_31_repeat_count:
                # Faults that follow one GPU across jobs point at the GPU, not the application.
                level, action = Level.CRITICAL, Action.RESET_GPU
                detail = f"{recent} times in {fmt_num(window)} h on this GPU: suspect the GPU"
        elif xid == 154:
            named = xid154_action(event.text)
            self._xid154_t[gpu] = event.t
            if named is not None:
                ra = recovery_action(named)
                level, action = ra.level, ra.action
                detail = f"recovery action is now: {ra.name}"
            else:
                detail = "recovery action not named; the recovery-action field will tell"
        self._latched[(gpu, f"xid_{xid}")] = Reason(
            code=f"xid_{xid}",
            level=level,
            action=action,
            text=f"{text}; {detail}",
            gpu=gpu,
            latched=True,
        )

    def _recent(self, key: tuple[int | None, int], now: float, window_h: float) -> int:
        times = self._xid_times.get(key)
        if not times:
            return 0
        while times and times[0] < now - window_h * 3600:
            times.popleft()
        return len(times)

    def _latch(self, r: Reason) -> None:
        self._latched[(r.gpu, r.code)] = msgspec.structs.replace(r, latched=True)

    def clear(self, gpu: int | None = None) -> None:
        """The operator clears latched reasons: of one GPU, or of every GPU and the host."""

        def mine(owner: int | None) -> bool:
            return gpu is None or owner == gpu

        self._latched = {k: v for k, v in self._latched.items() if not mine(k[0])}
        self._xid_counts = {k: v for k, v in self._xid_counts.items() if not mine(k[0])}
        self._xid_times = {k: v for k, v in self._xid_times.items() if not mine(k[0])}
        self._xid154_t = {k: v for k, v in self._xid154_t.items() if not mine(k)}

    def _reset_seen(self, gpu: int) -> None:
        """A GPU reset was seen: what was latched or pending on the old GPU state is gone."""
        self.clear(gpu)
        for store in (self._slow, self._rises):
            for key in [k for k in store if k[0] == gpu]:
                del store[key]
        self._counters.pop(gpu, None)
        self._down.discard(gpu)

    def _forgetwho(self, gpu: int) -> None:
        """Another GPU now sits at this index (its UUID changed): start from nothing."""
        self._reset_seen(gpu)
        self._bands = {k for k in self._bands if k[0] != gpu}
        for key in [k for k in self._bit_seen if k[0] == gpu]:
            del self._bit_seen[key]
        self._recovery.pop(gpu, None)
        self._straggler.forget(gpu)

    # ----------------------------------------------------------------------------------------
    # Evaluation
    # ----------------------------------------------------------------------------------------

    def evaluate(self, hello: Hello, sample: Sample, now: float) -> HostVerdict:
        """The verdict of every GPU and of the host at this sample (`now`: collector clock)."""
        if hello is not self._hello:  # a new hello (hellos are immutable): check the UUIDs
            self._inventory = {g.index: g for g in hello.gpus}
            for idx, info in self._inventory.items():
                if self._uuids.get(idx, info.uuid) != info.uuid:
                    self._forgetwho(idx)
                self._uuids[idx] = info.uuid
            self._quiet_limits = {i: self._limits(g) for i, g in self._inventory.items()}
            self._hello = hello
        inventory = self._inventory
        readings = {r.index: r for r in sample.gpus}
        stragglers = self._straggler.update(
            {i: r for i, r in readings.items() if r.status == "ok" and _has_fast(r)}, sample.t
        )
        # Nothing raised, held, latched or pending on any GPU: a GPU whose fast readings are
        # all inside their limits and that carries no slow field has no reason, and judging it
        # changes no state (see `_quiet`). Most samples of a fleet are such samples.
        quiet = self.at_rest()
        limits = self._quiet_limits
        # Each GPU judged quiet once, for the host's shortcut and the loop below alike.
        calm: set[int] = set()
        if quiet:
            calm = {i for i, r in readings.items() if i in limits and _quiet(r, limits[i])}
        if (
            calm
            and not stragglers
            and len(calm) == len(limits) == len(readings)  # every GPU of the inventory, quiet
        ):
            return self._all_ok_verdict()

        gpus: dict[int, Verdict] = {}
        host_reasons: list[Reason] = []
        for idx in sorted(inventory.keys() | readings.keys()):
            reading = readings.get(idx)
            if idx in calm:
                reasons: list[Reason] = []
                floor = Level.OK
            else:
                reasons, floor = self._gpu_reasons(idx, inventory.get(idx), reading, sample, now)
            if idx in stragglers:
                reasons.append(reason("straggler", idx, f"GPU{idx} straggles: {stragglers[idx]}"))
            if self._latched:
                reasons.extend(r for (g, _), r in self._latched.items() if g == idx)
            verdict = verdict_of(reasons, floor)
            gpus[idx] = verdict
            host_reasons.extend(verdict.reasons)

        missing = sorted(inventory.keys() - readings.keys())
        if missing:
            names = ", ".join(f"GPU{i}" for i in missing)
            text = f"{len(missing)} of {len(inventory)} GPUs missing from the sample: {names}"
            host_reasons.append(reason("gpu_missing", None, text))
        for idx in sorted(readings.keys() - inventory.keys()):
            text = f"GPU{idx} reports readings but is not in the agent's inventory"
            host_reasons.append(reason("gpu_not_in_inventory", None, text))
        # Host-level latches, and those of GPUs the host no longer lists (an event can name
        # an index that never appears in a sample): they must show somewhere.
        host_reasons.extend(r for (g, _), r in self._latched.items() if g not in gpus)
        floor = Level.OK
        if not gpus:
            host_reasons.append(reason("no_gpus", None, "no GPU in the inventory or the sample"))
            floor = Level.UNKNOWN
        return HostVerdict(host=verdict_of(host_reasons, floor), gpus=gpus)

    def _all_ok_verdict(self) -> HostVerdict:
        """What the full rules build for a sample whose every GPU is quiet: every GPU and the
        host ok, with no reason (made once per inventory)."""
        limits = self._quiet_limits
        if self._all_ok is None or self._all_ok.gpus.keys() != limits.keys():
            self._all_ok = HostVerdict(
                host=OK_VERDICT, gpus=dict.fromkeys(sorted(limits), OK_VERDICT)
            )
        return self._all_ok

    def at_rest(self) -> bool:
        """Nothing raised, held, latched or pending on any GPU: the quiet path may be taken."""
        return self.quiet_path and not (
            self._bands
            or self._bit_seen
            or self._latched
            or self._slow
            or self._rises
            or self._xid_times
            or self._down
        )

    def quiet_limits(self, hello: Hello) -> list[QuietLimits]:
        """The quiet path's limits of each GPU of `hello`, in its order (collect/columns.py
        checks a whole batch of readings against them at once)."""
        return [self._limits(g) for g in hello.gpus]

    def quiet_verdict(self, hello: Hello, peers: Judged | None) -> HostVerdict | None:
        """The verdict `evaluate` would give, and the state it would leave, for a sample whose
        readings are the GPUs of the inventory in its order (one each), every one found quiet
        by the vectorised checks (core/quiet_columns.py), whose peers the one-pass straggler
        bound judged `peers` (None: it did not settle them); None where `evaluate` must judge.

        Exact, not a guess: it answers only when `evaluate` would take its own quiet path with
        every GPU calm, and the straggler detector would change nothing and flag nothing.
        """
        if (
            peers is None
            or hello is not self._hello
            or not self.at_rest()
            or not self._straggler.unchanged_by(peers, self._inventory.keys())
        ):
            return None
        return self._all_ok_verdict()

    def _limits(self, info: GpuInfo) -> QuietLimits:
        """The quiet path's limits of one GPU, from the same values `_temperature` uses."""
        th = self.thresholds
        slowdown = info.temp_slowdown_c
        if slowdown is None:
            slowdown = th.temp_fallback_slowdown_c
        high = info.temp_gpu_max_c
        if high is None:
            high = slowdown - th.temp_high_margin_c
        return min(slowdown, high), info.memory_total_mib, th.mem_used_warn_pct

    def _gpu_reasons(
        self, idx: int, info: GpuInfo | None, r: GpuReading | None, sample: Sample, now: float
    ) -> tuple[list[Reason], Level]:
        """The unlatched reasons of one GPU, and the lowest level it can have."""
        if r is None:
            return [reason("no_readings", idx, f"GPU{idx} missing from the sample")], Level.UNKNOWN
        if r.status != "ok":
            return self._status_reasons(idx, r), Level.UNKNOWN
        if idx in self._down:
            # NVML answers "GPU is lost" / "reset required" until the GPU is reset: a GPU that
            # reads normally again was reset (or the node rebooted).
            self._reset_seen(idx)
        self._judge_counters(idx, r, now)
        self._judge_slow_fields(idx, info, r, sample)
        reasons: list[Reason] = []
        reasons.extend(self._temperature(idx, info, r))
        reasons.extend(self._memory(idx, info, r))
        reasons.extend(self._clock_events(idx, r, now))
        if self._slow:
            for (gpu, code), judged in self._slow.items():
                if gpu == idx:
                    reasons.append(self._pcie_now(judged, r) if code == PCIE_DOWN else judged)
        if self._rises:
            hold = self.thresholds.counter_rise_hold_s
            for key, (t, text) in list(self._rises.items()):
                if key[0] == idx:
                    if now - t <= hold:
                        reasons.append(reason(key[1], idx, text))
                    else:
                        del self._rises[key]
        if self._xid_times:
            reasons.extend(self._xid_rates(idx, now))
        if not _has_fast(r):
            reasons.append(reason("no_readings", idx, f"GPU{idx} reported no readings"))
            return reasons, Level.UNKNOWN
        return reasons, Level.OK

    def _status_reasons(self, idx: int, r: GpuReading) -> list[Reason]:
        if r.status == "lost":
            self._down.add(idx)
            text = adding(f"GPU{idx} is lost (fell off the bus)", r.error)
            self._latch(reason("gpu_lost", idx, text))
            return []
        if r.status == "reset_required":
            self._down.add(idx)
            self._latch(
                reason("reset_required", idx, adding(f"GPU{idx} needs a GPU reset", r.error))
            )
            return []
        return [reason("read_error", idx, adding(f"GPU{idx} could not be read", r.error))]

    # -- fast signals --------------------------------------------------------------------------

    def _band(self, key: _Key, value: float, limit: float, band: float, strict: bool) -> bool:
        """Hysteresis: raised at the limit, lowered only below limit - band."""
        if key in self._bands:
            raised = value >= limit - band
        else:
            raised = value > limit if strict else value >= limit
        if raised:
            self._bands.add(key)
        else:
            self._bands.discard(key)
        return raised

    def _temperature(self, idx: int, info: GpuInfo | None, r: GpuReading) -> list[Reason]:
        if r.temp_c is None:
            return []
        th = self.thresholds
        t = r.temp_c
        slowdown = info.temp_slowdown_c if info is not None else None
        slow_name = "slowdown"
        if slowdown is None:
            slowdown, slow_name = th.temp_fallback_slowdown_c, "fallback slowdown"
        gpu_max = info.temp_gpu_max_c if info is not None else None
        high = gpu_max if gpu_max is not None else slowdown - th.temp_high_margin_c
        h = th.hysteresis_c
        in_slowdown = self._band((idx, "temp_slowdown"), t, slowdown, h, strict=False)
        in_high = self._band((idx, "temp_high"), t, high, h, strict=False)
        if not (in_slowdown or in_high):
            return []
        if gpu_max is not None:
            high_name = f"max operating {fmt_num(gpu_max)} C"
        else:
            high_name = f"{slow_name} {fmt_num(slowdown)} C - {fmt_num(th.temp_high_margin_c)} C"
        if in_slowdown:
            text = f"GPU{idx} {fmt_num(t)} C >= {slow_name} {fmt_num(slowdown)} C"
            if t < slowdown:
                text = f"GPU{idx} {fmt_num(t)} C, reached {slow_name} {fmt_num(slowdown)} C"
                text += f" (clears below {fmt_num(slowdown - h)} C)"
            return [reason("temp_slowdown", idx, text)]  # temp_high would say less
        if in_high:
            text = f"GPU{idx} {fmt_num(t)} C >= {high_name}"
            if t < high:
                text = f"GPU{idx} {fmt_num(t)} C, reached {high_name}"
                text += f" (clears below {fmt_num(high - h)} C)"
            return [reason("temp_high", idx, text)]
        return []

    def _memory(self, idx: int, info: GpuInfo | None, r: GpuReading) -> list[Reason]:
        total = info.memory_total_mib if info is not None else None
        if r.mem_used_mib is None or not total:
            return []
        th = self.thresholds
        pct = 100.0 * r.mem_used_mib / total
        limit = th.mem_used_warn_pct
        if self._band((idx, "mem_full"), pct, limit, th.mem_hysteresis_pct, strict=True):
            text = f"GPU{idx} memory {pct:.1f}% used > {fmt_num(limit)}%"
            if pct <= limit:
                text = f"GPU{idx} memory {pct:.1f}% used, was > {fmt_num(limit)}%"
                text += f" (clears below {fmt_num(limit - th.mem_hysteresis_pct)}%)"
            return [reason("mem_full", idx, text)]
        return []

    def _clock_events(self, idx: int, r: GpuReading, now: float) -> list[Reason]:
        mask = r.clock_events
        hold = self.thresholds.clock_event_hold_s
        reasons: list[Reason] = []
        for bit, code, words in _CLOCK_BITS:
            key = (idx, code)
            if mask is not None and mask & bit:
                self._bit_seen[key] = now
                reasons.append(reason(code, idx, f"GPU{idx} clock event: {words}"))
            elif key in self._bit_seen:
                ago = now - self._bit_seen[key]
                if ago <= hold:
                    text = f"GPU{idx} clock event: {words} (seen {fmt_num(round(ago))} s ago)"
                    reasons.append(reason(code, idx, text))
                else:
                    del self._bit_seen[key]
        if len(reasons) < 2:
            return reasons
        codes = {x.code for x in reasons}
        if "hw_slowdown" in codes and codes & {"hw_thermal", "hw_power_brake"}:
            # The HwSlowdown bit comes with its cause's bit: the cause says more.
            reasons = [x for x in reasons if x.code != "hw_slowdown"]
        return reasons

    # -- slow signals --------------------------------------------------------------------------

    def _judge_counters(self, idx: int, r: GpuReading, now: float) -> None:
        read = _counters_of(r)
        if read == _NO_COUNTERS:
            return  # a fast sample: no counter in it
        values = {name: v for name, v in zip(_COUNTERS, read, strict=True) if v is not None}
        base = self._counters.get(idx)
        th = self.thresholds
        if base == values and th.pcie_replay_rise_min > 0 and th.nvlink_errors_rise_min > 0:
            return  # nothing rose or fell: no rule can fire and the baseline stays
        if base is not None and any(v < base[n] for n, v in values.items() if n in base):
            self._reset_seen(idx)  # counters restart from zero when the GPU is reset
            base = None
        if base is None:
            self._counters[idx] = values
            return
        if "pcie_replay" in values and "pcie_replay" in base:
            rise = values["pcie_replay"] - base["pcie_replay"]
            if rise >= th.pcie_replay_rise_min:
                text = f"GPU{idx} PCIe replay counter +{rise} (now {values['pcie_replay']})"
                self._rises[(idx, "pcie_replay_rising")] = (now, text)
        rises = {
            n.removeprefix("nvlink_"): values[n] - base[n]
            for n in _NVLINK_COUNTERS
            if n in values and n in base and values[n] > base[n]
        }
        if sum(rises.values()) >= th.nvlink_errors_rise_min:
            parts = ", ".join(f"{n} +{d}" for n, d in rises.items())
            self._rises[(idx, "nvlink_errors_rising")] = (now, f"GPU{idx} NVLink errors: {parts}")
        base.update(values)

    def _set_slow(self, idx: int, code: str, text: str | None, given: Reason | None = None) -> None:
        """Record the judgement of a slow field: `given`, else a reason with `text`, else none."""
        key = (idx, code)
        judged = given if given is not None else None if text is None else reason(code, idx, text)
        if judged is None:
            self._slow.pop(key, None)
        else:
            self._slow[key] = judged

    def _judge_slow_fields(
        self, idx: int, info: GpuInfo | None, r: GpuReading, sample: Sample
    ) -> None:
        """Judge every slow field this reading carries; keep the judgement of those it lacks."""
        th = self.thresholds
        if r.recovery_action is not None:
            # First: a withdrawn reset action means a reset, which wipes older judgements.
            self._judge_recovery_action(idx, r.recovery_action, sample)
        if r.ecc_uncorrected_volatile is not None and r.ecc_uncorrected_volatile > 0:
            errors = counted(r.ecc_uncorrected_volatile, "uncorrectable ECC error")
            self._latch(reason("ecc_uncorrectable", idx, f"GPU{idx} {errors} since reset"))
        if r.remap_failure:
            self._latch(reason("remap_failure", idx, f"GPU{idx} row remap failed: no spare rows"))
        if r.remap_pending is not None:
            text = f"GPU{idx} row remap pending: a GPU reset applies it"
            self._set_slow(idx, "remap_pending", text if r.remap_pending else None)
        if r.retired_pages_pending is not None:
            text = f"GPU{idx} page retirement pending: a GPU reset applies it"
            self._set_slow(idx, "retired_pages_pending", text if r.retired_pages_pending else None)
        self._judge_pcie(idx, info, r, th)
        if r.nvlink_active is not None and info is not None and info.nvlink_count:
            down = r.nvlink_active < info.nvlink_count
            text = f"GPU{idx} NVLink {r.nvlink_active} of {info.nvlink_count} links active"
            self._set_slow(idx, "nvlink_down", text if down else None)

    def _judge_pcie(self, idx: int, info: GpuInfo | None, r: GpuReading, th: Thresholds) -> None:
        if info is None or (r.pcie_gen is None and r.pcie_width is None):
            return
        if r.util_pct is None or r.util_pct <= th.pcie_load_util_pct:
            return  # links train down at idle: keep the judgement made under load
        low = []
        if r.pcie_gen is not None and info.pcie_gen_max and r.pcie_gen < info.pcie_gen_max:
            low.append(f"Gen{r.pcie_gen} < max Gen{info.pcie_gen_max}")
        if r.pcie_width is not None and info.pcie_width_max and r.pcie_width < info.pcie_width_max:
            low.append(f"x{r.pcie_width} < max x{info.pcie_width_max}")
        text = f"GPU{idx} PCIe {', '.join(low)} at {fmt_num(round(r.util_pct))}% util"
        self._set_slow(idx, PCIE_DOWN, text if low else None)

    def _pcie_now(self, judged: Reason, r: GpuReading) -> Reason:
        """The link judged under load, as it reads while the GPU idles: links train down at
        idle, so the judgement stands, said as an earlier reading beside a low UTIL."""
        if r.util_pct is None or r.util_pct > self.thresholds.pcie_load_util_pct:
            return judged
        idle = self._pcie_idle.get(r.index)
        if idle is None or idle[0] is not judged:
            text = f"{judged.text} (an earlier reading; idle now)"
            idle = self._pcie_idle[r.index] = (judged, msgspec.structs.replace(judged, text=text))
        return idle[1]

    def _judge_recovery_action(self, idx: int, value: int, sample: Sample) -> None:
        previous = self._recovery.get(idx)
        self._recovery[idx] = value
        if value == 0:
            self._set_slow(idx, "recovery_action", None)
            if previous in RESETTING_RECOVERY_ACTIONS:
                self._reset_seen(idx)  # the driver withdraws these only after a reset
            elif idx in self._xid154_t and self._xid154_t[idx] <= sample.t:
                # Read after the XID 154: the action it named is no longer asked for.
                self._latched.pop((idx, "xid_154"), None)
                del self._xid154_t[idx]
            return
        ra = recovery_action(value)
        judged = Reason(
            code="recovery_action",
            level=ra.level,
            action=ra.action,
            text=f"GPU{idx} recovery action {value}: {ra.name}",
            gpu=idx,
        )
        self._set_slow(idx, "recovery_action", None, judged)

    def _xid_rates(self, idx: int, now: float) -> list[Reason]:
        th = self.thresholds
        n = self._recent((idx, 63), now, th.xid_63_window_h)
        rate = n / th.xid_63_window_h
        if n and rate >= th.xid_63_rate_per_hour:
            text = (
                f"GPU{idx} {counted(n, 'row remap')} (XID 63) in {fmt_num(th.xid_63_window_h)} h: "
                f"{rate:.2f}/h >= {th.xid_63_rate_per_hour:g}/h"
            )
            return [reason("xid_63_rate", idx, text)]
        return []
