"""The XID catalogue: what each NVIDIA driver XID means, how bad it is, and NVIDIA's action.

Levels follow the project's colour rules (docs/health.md): info XIDs are recorded at OK level,
application-level XIDs are warnings, XIDs that need a GPU reset are critical and XIDs that take
the GPU out of service are failures. Unknown XIDs are warnings with the number shown, so a
driver newer than this table is never silently green.

XID 154 (R565+) is special: it announces that the GPU's recovery action changed and names the
new action, which is authoritative; its level is that of the action (RECOVERY_ACTIONS).
"""

from __future__ import annotations

import re

import msgspec

from gputui.core.model import Action, Level

# The Kubernetes NVIDIA device plugin treats these as caused by the application, not the GPU:
# it does not mark the device unhealthy for them.
APPLICATION_XIDS: frozenset[int] = frozenset({13, 31, 43, 45, 68, 109})


class XidInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One XID's entry in the catalogue."""

    code: int
    meaning: str
    level: Level
    action: Action
    action_text: str  # NVIDIA's recommendation in words (may name a fallback or a follow-up)
    application: bool = False  # application-level per the Kubernetes device plugin
    known: bool = True  # False: not in the catalogue


def _entry(code: int, meaning: str, level: Level, action: Action, action_text: str) -> XidInfo:
    return XidInfo(
        code=code,
        meaning=meaning,
        level=level,
        action=action,
        action_text=action_text,
        application=code in APPLICATION_XIDS,
    )


_W, _C, _F, _OK = Level.WARN, Level.CRITICAL, Level.FAILED, Level.OK
_RESET = Action.RESET_GPU

XID_CATALOGUE: dict[int, XidInfo] = {
    x.code: x
    for x in (
        _entry(13, "graphics engine exception", _W, Action.RESTART_APP, "restart the application"),
        _entry(
            31,
            "GPU memory page fault",
            _W,
            Action.RESTART_APP,
            "restart the application; escalate if it repeats on one GPU across jobs",
        ),
        _entry(43, "GPU stopped processing (channel reset)", _OK, Action.NONE, "none"),
        _entry(
            45, "preemptive cleanup after other errors", _OK, Action.NONE, "follow the other XIDs"
        ),
        _entry(48, "double-bit ECC error", _C, _RESET, "reset the GPU or reboot the node"),
        _entry(
            61, "internal micro-controller breakpoint", _C, _RESET, "reset the GPU and report it"
        ),
        _entry(62, "internal micro-controller halt", _C, _RESET, "reset the GPU"),
        _entry(
            63,
            "row remap / page retirement recorded",
            _OK,
            Action.NONE,
            "none; a GPU reset applies pending remaps",
        ),
        _entry(
            64, "row remap failure: spare rows exhausted", _F, Action.RMA, "reset the GPU, then RMA"
        ),
        _entry(
            68,
            "video processor (NVDEC) exception",
            _W,
            Action.RESTART_APP,
            "restart the application",
        ),
        _entry(74, "NVLink error", _C, _RESET, "reset the GPU or reboot the node"),
        _entry(
            79,
            "GPU has fallen off the bus",
            _F,
            Action.REBOOT_NODE,
            "reboot or power-cycle the node; RMA if it recurs",
        ),
        _entry(
            92,
            "high single-bit ECC error rate",
            _W,
            Action.NONE,
            "contact support if it persists",
        ),
        _entry(94, "contained memory error", _W, Action.RESTART_APP, "restart the application"),
        _entry(
            95, "uncontained memory error", _F, Action.DRAIN, "drain the node, then reset the GPU"
        ),
        _entry(109, "context switch timeout", _W, Action.RESTART_APP, "restart the application"),
        _entry(119, "GSP firmware RPC timeout", _C, _RESET, "reset the GPU"),
        _entry(120, "GSP firmware error", _C, _RESET, "reset the GPU"),
        _entry(121, "C2C link error (Grace)", _W, Action.NONE, "contact support if it persists"),
        _entry(140, "unrecovered ECC error", _F, _RESET, "reset the GPU"),
        # The level of a 154 comes from the action it names (xid154_action); WARN is for a 154
        # whose text names none, until the recovery-action field is read.
        _entry(154, "GPU recovery action changed", _W, Action.NONE, "as the event states"),
    )
}


def xid_info(code: int) -> XidInfo:
    """The catalogue entry for XID `code`; an unknown XID is a warning that shows its number."""
    info = XID_CATALOGUE.get(code)
    if info is not None:
        return info
    return XidInfo(
        code=code,
        meaning=f"XID {code}, not in gputui's catalogue",
        level=Level.WARN,
        action=Action.NONE,
        action_text="look it up in NVIDIA's XID catalogue",
        application=code in APPLICATION_XIDS,
        known=False,
    )


# NVML's XID event carries only the number ("Xid 13 on GPU 0", the agent's words for it).
_RESTATES_XID = re.compile(r"xid\s*\(?\s*\d+\s*\)?(\s+on\s+(gpu\s*\d+|a\s+gpu))?\s*\.?", re.I)


def xid_words(code: int, text: str) -> str:
    """What an XID event says after "GPU0 XID 13: ": its meaning, then the driver's own words
    unless they only restate the number (NVML's event text does), which said it twice."""
    info = xid_info(code)
    meaning = info.meaning if info.known else "not in gputui's catalogue"
    text = text.strip()
    if not text or _RESTATES_XID.fullmatch(text):
        return meaning
    return f"{meaning}: {text}"


# --------------------------------------------------------------------------------------------
# Recovery action (NVML_FI_DEV_GET_GPU_RECOVERY_ACTION, field 230, R565+) and XID 154.
# --------------------------------------------------------------------------------------------


class RecoveryAction(msgspec.Struct, frozen=True, kw_only=True):
    """What one value of the recovery-action field asks for."""

    code: int
    name: str
    level: Level
    action: Action


RECOVERY_ACTIONS: dict[int, RecoveryAction] = {
    r.code: r
    for r in (
        RecoveryAction(code=0, name="none", level=Level.OK, action=Action.NONE),
        RecoveryAction(code=1, name="GPU reset required", level=Level.CRITICAL, action=_RESET),
        RecoveryAction(
            code=2, name="node reboot required", level=Level.CRITICAL, action=Action.REBOOT_NODE
        ),
        RecoveryAction(
            code=3, name="drain peer-to-peer traffic", level=Level.CRITICAL, action=Action.DRAIN
        ),
        RecoveryAction(code=4, name="drain and reset", level=Level.CRITICAL, action=Action.DRAIN),
    )
}

# Actions that the driver only withdraws after the GPU was reset or the node rebooted: seeing the
# field fall from one of these to 0 is proof of a reset.
RESETTING_RECOVERY_ACTIONS: frozenset[int] = frozenset({1, 2, 4})


def recovery_action(code: int) -> RecoveryAction:
    """What recovery-action value `code` asks for; an unknown non-zero value is critical."""
    known = RECOVERY_ACTIONS.get(code)
    if known is not None:
        return known
    return RecoveryAction(
        code=code, name=f"unknown recovery action {code}", level=Level.CRITICAL, action=Action.NONE
    )


# The driver logs e.g. "GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)".
_TO_HEX = re.compile(r"\bto\s+0x([0-9a-fA-F]+)")
_BY_WORDS: tuple[tuple[str, int], ...] = (
    ("drain and reset", 4),
    ("drain_and_reset", 4),
    ("drain p2p", 3),
    ("drain_p2p", 3),
    ("reboot", 2),
    ("reset", 1),
    ("none", 0),
)


def xid154_action(text: str) -> int | None:
    """The recovery action that an XID 154 message names, or None when it names none."""
    m = _TO_HEX.search(text)
    if m:
        return int(m.group(1), 16)
    lowered = text.lower()
    # Only the part after "to" names the new action ("changed from X to Y").
    if " to " in lowered:
        lowered = lowered.rsplit(" to ", 1)[1]
    for words, code in _BY_WORDS:
        if words in lowered:
            return code
    return None
