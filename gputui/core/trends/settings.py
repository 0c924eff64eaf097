"""The trend rules' thresholds and windows, with their defaults and where each comes from.

docs/prevention.md ("Rules") explains each; the sources in brief:

- Row remapping: NVIDIA's GPU memory error management note ("RMA Policy Thresholds for
  Row-Remapping", docs.nvidia.com/deploy/a100-gpu-mem-error-mgmt/): a GPU sets its row-remap
  failure flag, the RMA criterion, on an uncorrectable-error remap in a bank that already has
  eight uncorrectable-error rows remapped, or after 512 such remaps in all. That holds for
  Ampere (GA100, GA10x), Ada and Hopper; Blackwell first tries an HBM channel repair at the
  third remap in a bank. NVML reports only the GPU's totals, not the banks.
- PCIe replays: DCGM's health watch warns above 8 replays in a minute, "the maximum
  recommended by RM" (DCGM's GPU hardware limits); that is an acute burst, the trend rule a
  steady rate far below it.
- Corrected ECC: NVIDIA publishes no limit (its memory error note leaves correctable HBM errors
  out of scope; DCGM's SBE rate limit is marked a placeholder), so the rate is a choice: a
  healthy GPU counts none on almost every day, and a doubling week on week is the sign.
- Temperature against power: 0.26 C per percentage point of the power limit, from an H200
  under load (40 C at 12% of its 700 W limit idle, 63 C at 99% under a matmul; the recording
  in shared/recordings). It only corrects for small power differences between peers.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

Days = Annotated[int, msgspec.Meta(ge=1, le=366)]
Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Share = Annotated[float, msgspec.Meta(gt=0, le=1)]
Count = Annotated[int, msgspec.Meta(ge=1)]
Probability = Annotated[float, msgspec.Meta(gt=0, lt=1)]


class TrendSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Every threshold and window of the trend rules. Units are in the names."""

    # -- error counters: corrected ECC and PCIe replays ------------------------------------
    counter_window_days: Days = 7  # the rate's window, and each of the two weeks compared
    counter_min_days: Count = 4  # days with the counter read, in a window, to judge it
    ecc_corrected_per_day: Positive = 10.0  # mean over the window: warn
    pcie_replay_per_day: Positive = 50.0
    # A doubling week on week (the later week's daily rate >= factor x the earlier's) with at
    # least this many in the later week: a counter that went 1 -> 2 doubled, and means nothing.
    doubling_factor: Annotated[float, msgspec.Meta(gt=1)] = 2.0
    ecc_doubling_min_count: Count = 20
    pcie_doubling_min_count: Count = 50
    critical_rate_factor: Annotated[float, msgspec.Meta(gt=1)] = 10.0  # x the rate: critical

    # -- remapped rows ---------------------------------------------------------------------
    remap_bank_rows: Count = 8  # uncorrectable-error rows a bank holds before a failure
    remap_gpu_rows: Count = 512  # uncorrectable-error remaps a GPU holds in all
    # Totals at which the fullest bank may be near its limit: the totals do not say how the
    # rows spread over banks, so the rule assumes the worst, all in one bank.
    remap_uncorrected_warn: Count = 4
    remap_uncorrected_critical: Count = 8
    remap_growth_window_days: Days = 7
    remap_growth_rows: Count = 2  # new remapped rows (either cause) in the window: warn
    remap_pending_days: Count = 2  # a remap still pending after this many days: warn

    # -- temperature under load, against peers --------------------------------------------
    temp_per_power_pct_c: NonNegative = 0.26  # C per point of the power limit (see above)
    load_min_samples: Count = 30  # samples under load for a day to count in thermal rules
    power_match_pct: Positive = 15.0  # peers this close in power (points) are comparable
    thermal_window_days: Days = 7
    thermal_min_days: Count = 3  # days judged in the window to raise
    gpu_min_peers: Count = 3  # other GPUs on the host with load that day
    gpu_hotter_c: Positive = 8.0  # median excess over the peers' median: warn
    gpu_hotter_critical_c: Positive = 12.0
    host_min_peers: Count = 3  # other hosts in the group with load that day
    host_hotter_c: Positive = 5.0  # the host's median GPU over the group's hosts' median
    host_hotter_critical_c: Positive = 10.0

    # -- headroom to the slowdown limit under load, over days -----------------------------
    headroom_window_days: Days = 14
    headroom_min_days: Count = 5
    headroom_power_band_pct: Positive = 10.0  # days within this of the median power count
    headroom_loss_c: Positive = 4.0  # first third's median less the last third's: warn
    headroom_critical_days: NonNegative = 14.0  # projected to reach the limit this soon

    # -- clocks held down by hardware ------------------------------------------------------
    clock_window_days: Days = 7
    brake_day_min_s: Positive = 1.0  # HW power brake time that makes a day count
    hw_slowdown_day_min_s: Positive = 5.0  # HW slowdown (from 1 Hz bits) that makes it count
    hw_thermal_day_min_s: Positive = 1.0
    recurring_days: Count = 2  # days in the window: warn
    recurring_critical_days: Count = 4

    # -- PCIe link trained below its maximum -----------------------------------------------
    link_down_share: Share = 0.5  # of the day's link readings below maximum: the day counts
    link_down_days: Count = 2

    # -- a node's GPUs sharing one cause ---------------------------------------------------
    # At least this share of a host's GPUs (and two) with the same per-GPU finding make it
    # one finding about the node: a PSU, the inlet air, not each GPU.
    host_share: Share = 0.5

    # -- lemon nodes (core/risk.py rank_nodes) ---------------------------------------------
    lemon_min_failures: Count = 2
    lemon_p_record: Probability = 0.01  # P(its record at the fleet's rate) at most: warn
    lemon_p_record_critical: Probability = 0.001


DEFAULT_TREND_SETTINGS = TrendSettings()
