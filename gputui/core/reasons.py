"""Reason codes: each code's level and NVIDIA's action, and how reasons make a verdict.

XID reasons (`xid_<N>`) take their level and action from the XID catalogue (core/xid.py); every
other code is listed here. docs/health.md says when each is raised.
"""

from __future__ import annotations

from collections.abc import Iterable

from gputui.core.model import OK_VERDICT, Action, Level, Reason, Verdict

# Reason codes other than xid_<N>: code -> (level, action). The level of recovery_action follows
# the field's value; the one here is that of any non-zero value.
REASON_CODES: dict[str, tuple[Level, Action]] = {
    "temp_high": (Level.WARN, Action.NONE),
    "temp_slowdown": (Level.CRITICAL, Action.DRAIN),
    "sw_thermal": (Level.WARN, Action.NONE),
    "hw_slowdown": (Level.CRITICAL, Action.DRAIN),
    "hw_thermal": (Level.CRITICAL, Action.DRAIN),
    "hw_power_brake": (Level.CRITICAL, Action.DRAIN),
    "mem_full": (Level.WARN, Action.NONE),
    "ecc_uncorrectable": (Level.CRITICAL, Action.RESET_GPU),
    "remap_pending": (Level.WARN, Action.RESET_GPU),
    "remap_failure": (Level.FAILED, Action.RMA),
    "retired_pages_pending": (Level.WARN, Action.RESET_GPU),
    "pcie_downgraded": (Level.WARN, Action.REBOOT_NODE),
    "pcie_replay_rising": (Level.WARN, Action.NONE),
    "nvlink_errors_rising": (Level.WARN, Action.NONE),
    "nvlink_down": (Level.CRITICAL, Action.RESET_GPU),
    "recovery_action": (Level.CRITICAL, Action.RESET_GPU),
    "straggler": (Level.WARN, Action.NONE),
    "job_straggler": (Level.WARN, Action.NONE),
    "xid_63_rate": (Level.WARN, Action.NONE),
    "gpu_lost": (Level.FAILED, Action.REBOOT_NODE),
    "reset_required": (Level.CRITICAL, Action.RESET_GPU),
    "read_error": (Level.UNKNOWN, Action.NONE),
    "no_readings": (Level.UNKNOWN, Action.NONE),
    # host-level
    "gpu_missing": (Level.CRITICAL, Action.REBOOT_NODE),
    "gpu_not_in_inventory": (Level.WARN, Action.NONE),
    "no_gpus": (Level.UNKNOWN, Action.NONE),
}


def advice(action: Action, level: Level) -> str:
    """NVIDIA's action in an operator's words: "none" on a host or GPU that is not ok read as
    if nothing were wrong; such a one needs no action yet, only watching."""
    if action is Action.NONE and level >= Level.WARN:
        return "watch it"
    return action.value


def fmt_num(x: float) -> str:
    """A number as an operator reads it: 89, 89.5."""
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


def who(idx: int | None) -> str:
    """How a sentence names a GPU, or the host for what no GPU was named in."""
    return "host" if idx is None else f"GPU{idx}"


def reason(code: str, gpu: int | None, text: str, *, latched: bool = False) -> Reason:
    """A reason with its code's level and action."""
    level, action = REASON_CODES[code]
    return Reason(code=code, level=level, action=action, text=text, gpu=gpu, latched=latched)


def _sort_key(r: Reason) -> tuple[int, int, int, str]:
    """Worst first: level, then the more disruptive action, then host before GPUs by index."""
    return (-r.level, -r.action.rank, -1 if r.gpu is None else r.gpu, r.code)


def verdict_of(reasons: Iterable[Reason], floor: Level = Level.OK) -> Verdict:
    """The worst of `reasons` (and at least `floor`), reasons sorted worst first."""
    ordered = tuple(sorted(reasons, key=_sort_key))
    if not ordered and floor is Level.OK:
        return OK_VERDICT
    level = max([floor, *(r.level for r in ordered)])
    return Verdict(level=level, reasons=ordered)
