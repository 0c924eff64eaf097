"""Health thresholds: hosts.toml `[thresholds]`, with the defaults of docs/health.md.

Decoded with `msgspec.convert(table, Thresholds)`; an unknown key or a negative value is a
validation error that names the key, so a typo in hosts.toml never silently keeps a default.
Units are in the names: _c Celsius, _pct percent, _s seconds, _h hours, _per_hour events/hour.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
Count = Annotated[int, msgspec.Meta(ge=1)]


class Thresholds(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Every threshold the health rules use. GPU-reported limits take precedence over fallbacks."""

    # Temperature. Each GPU's own SLOWDOWN and GPU_MAX limits are used when it reports them.
    # The fallback slowdown is V100's 87 C, the lowest of the data-centre parts, so that an
    # unknown GPU is warned early rather than late.
    temp_fallback_slowdown_c: NonNegative = 87.0
    temp_high_margin_c: NonNegative = 5.0  # no GPU_MAX reported: warn at slowdown - this
    hysteresis_c: NonNegative = 2.0  # a temperature reason clears below its limit - this

    # Memory used, percent of the GPU's total.
    mem_used_warn_pct: Percent = 95.0
    mem_hysteresis_pct: Percent = 2.0

    # Clock-event reason bits toggle at 1 Hz under a marginal cooler or PSU: a bit seen keeps
    # its reason this long so the verdict does not blink.
    clock_event_hold_s: NonNegative = 10.0

    # PCIe links train down at idle: judge the link only when the GPU is busier than this.
    pcie_load_util_pct: Percent = 50.0
    # Counter rises (PCIe replay, NVLink errors) between two slow samples that raise a warning,
    # and how long the warning stays after the last rise.
    pcie_replay_rise_min: Count = 1
    nvlink_errors_rise_min: Count = 1
    counter_rise_hold_s: NonNegative = 300.0

    # Straggler: a GPU much slower than its peers on the same host, all of them busy.
    straggler_min_peers: Count = 3  # other GPUs with readings needed to judge one
    straggler_min_util_pct: Percent = 50.0  # peers' median utilisation: "under load"
    straggler_clock_drop_pct: Percent = 10.0  # SM clock this far below the peers' median
    straggler_util_drop_pct: Percent = 25.0  # utilisation this many points below the median
    # Peers "in step": at least 3 in 4 of them within this many points of their median
    straggler_peer_spread_pct: Percent = 15.0
    # ... without a break for this long before they judge a GPU: an inference server's GPUs
    # fall in step by chance for a few seconds, a training job's stay so for minutes.
    straggler_in_step_s: NonNegative = 30.0
    straggler_samples: Count = 5  # outlying samples in a row to raise
    # A straggler clears after this long judged normal; samples with no yardstick (idle or
    # out-of-step peers, as in a checkpoint write) neither raise nor clear it.
    straggler_settle_s: NonNegative = 60.0
    # Job-level straggler (core/job_straggler.py): a GPU against its job's GPUs on the job's
    # other hosts, with the straggler settings above, and its power draw this far below their
    # median too (100: power not compared). Not on one host, where GPUs share a power budget.
    job_straggler_power_drop_pct: Percent = 15.0

    # XIDs with a rate rule.
    xid_63_rate_per_hour: NonNegative = 0.5  # row remaps per hour over the window: warn
    xid_63_window_h: Annotated[float, msgspec.Meta(gt=0)] = 24.0
    xid_31_repeat_count: Count = 3  # page faults on one GPU within the window: critical
    xid_31_window_h: Annotated[float, msgspec.Meta(gt=0)] = 24.0


DEFAULT_THRESHOLDS = Thresholds()
