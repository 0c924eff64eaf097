"""Prometheus alerting rules for what gputui judges critical or failed, as a rules file (YAML).

Over gputui's own series (`gputui exporter`, `gputui report --format prometheus`), each rule
reads what the health rules already concluded: an active reason (`gputui_gpu_reason_info`,
latched for XIDs, uncorrectable ECC, row-remap failure and lost GPUs, so a rule cannot miss
one between two scrapes), a host's connection state, a verdict level. The reasons and XIDs
come from the same tables as the verdicts (core/reasons.py, core/xid.py), with NVIDIA's
action in the annotations, so the rules cannot drift from the monitor.

Over dcgm-exporter's series (`--for-dcgm`) only what one series says alone is expressible: the
last XID, the row-remap failure flag, the uncorrectable ECC count, clock-event bits. Limits
that depend on the GPU's model, latches and host states have no dcgm-exporter series.

No YAML library is a dependency: the text is written here with every string a JSON string,
which is a valid YAML double-quoted scalar; tests check the output with `promtool check rules`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gputui.core import prom_series as ps
from gputui.core.model import (
    CLOCK_EVENT_HW_POWER_BRAKE_SLOWDOWN,
    CLOCK_EVENT_HW_SLOWDOWN,
    CLOCK_EVENT_HW_THERMAL_SLOWDOWN,
    CLOCK_EVENT_NAMES,
    Action,
    Level,
)
from gputui.core.reasons import REASON_CODES, advice
from gputui.core.xid import XID_CATALOGUE, xid_info

#: XIDs with a rule besides every catalogue XID at critical or worse: 94 (contained memory
#: error, a warning that the application must restart) and 154 (its level is the recovery
#: action it names: the rule fires when that action is critical).
EXTRA_XIDS = (94, 154)

#: What each reason code is, in an alert's words (REASON_CODES holds the level and action).
REASON_WORDS: dict[str, str] = {
    "temp_slowdown": "GPU at its slowdown temperature",
    "hw_slowdown": "hardware slowdown of the GPU's clocks",
    "hw_thermal": "hardware thermal slowdown",
    "hw_power_brake": "hardware power brake slowdown",
    "ecc_uncorrectable": "uncorrectable ECC error",
    "remap_failure": "row-remap failure: no spare rows left",
    "nvlink_down": "NVLink down",
    "recovery_action": "NVML asks for a recovery action",
    "gpu_lost": "GPU lost (fell off the bus)",
    "reset_required": "GPU needs a reset",
    "gpu_missing": "GPUs missing from the host's samples",
}

# A reason that names no GPU (host-wide, or an XID the driver did not attribute) is on the host
# series, which has no GPU labels: the GPU is named only when there is one.
_GPU_WHERE = (
    "{{ $labels.host }}{{ if $labels.gpu }} GPU {{ $labels.gpu }} ({{ $labels.model }}, "
    "{{ $labels.uuid }}){{ end }}"
)
_HOST_WHERE = "{{ $labels.host }}"
_DCGM_WHERE = (
    "{{ $labels.Hostname }} GPU {{ $labels.gpu }} ({{ $labels.modelName }}, {{ $labels.UUID }})"
)


@dataclass(frozen=True)
class AlertRule:
    """One alerting rule: its name, PromQL, how long it must hold, and what it tells."""

    alert: str
    expr: str
    level: Level  # gputui's level of what it detects
    summary: str
    action: str  # NVIDIA's recommendation in words
    nvidia_action: Action = Action.NONE
    for_: str = "0m"

    @property
    def severity(self) -> str:
        """Alertmanager's customary word: critical for critical and failed, else warning."""
        return "critical" if self.level >= Level.CRITICAL else "warning"


def _level_of_xid(code: int) -> Level:
    return max(xid_info(code).level, Level.CRITICAL) if code == 154 else xid_info(code).level


def rule_xids() -> list[int]:
    """Every XID with a rule: the catalogue's critical and failed ones, and EXTRA_XIDS."""
    chosen = {c for c, info in XID_CATALOGUE.items() if info.level >= Level.CRITICAL}
    return sorted(chosen | set(EXTRA_XIDS))


def _reason_expr(code: str, extra: str = "") -> str:
    """An active reason `code`, on a GPU or on the host (a reason that names no GPU)."""
    match = f'{ps.LABEL_CODE}="{code}"{extra}'
    return f"{ps.GPU_REASON}{{{match}}} or {ps.HOST_REASON}{{{match}}}"


def gputui_rules() -> list[tuple[str, list[AlertRule]]]:
    """The rule groups over gputui's series."""
    xids: list[AlertRule] = []
    for code in rule_xids():
        info = xid_info(code)
        extra = f',{ps.LABEL_LEVEL}=~"critical|failed"' if code == 154 else ""
        xids.append(
            AlertRule(
                alert=f"GputuiXid{code}",
                expr=_reason_expr(f"xid_{code}", extra),
                level=_level_of_xid(code),
                summary=f"XID {code} on {_GPU_WHERE}: {info.meaning}",
                action=info.action_text,
                nvidia_action=info.action,
            )
        )
    reasons = [
        AlertRule(
            alert="Gputui" + "".join(part.title() for part in code.split("_")),
            expr=_reason_expr(code),
            level=level,
            summary=f"{REASON_WORDS[code]} on {_GPU_WHERE}",
            action=advice(action, level),
            nvidia_action=action,
            # A temperature at its limit or a slowdown bit may last one sample: let it hold.
            for_="1m" if code in ("temp_slowdown", "hw_slowdown", "hw_power_brake") else "0m",
        )
        for code, (level, action) in REASON_CODES.items()
        if level >= Level.CRITICAL
    ]
    hosts = [
        AlertRule(
            alert="GputuiHostUnreachable",
            expr=f'{ps.HOST_STATE}{{{ps.LABEL_STATE}=~"unreachable|no-gpu"}} == 1',
            level=Level.CRITICAL,
            summary=f"{_HOST_WHERE} is {{{{ $labels.state }}}}: {{{{ $labels.reason }}}}",
            action="check the host: its GPUs are not watched while it cannot be read",
            for_="2m",
        ),
        AlertRule(
            alert="GputuiHostStale",
            expr=f'{ps.HOST_STATE}{{{ps.LABEL_STATE}="stale"}} == 1',
            level=Level.CRITICAL,
            summary=f"{_HOST_WHERE} sends no samples: {{{{ $labels.reason }}}}",
            action="check the host and its agent: gputui restarts a silent agent by itself",
            for_="2m",
        ),
        AlertRule(
            alert="GputuiHostVerdictCritical",
            expr=f"{ps.HOST_VERDICT} >= {int(Level.CRITICAL)}",
            level=Level.CRITICAL,
            summary=f"{_HOST_WHERE} is {{{{ if eq $value 4.0 }}}}failed{{{{ else }}}}critical"
            "{{ end }} (verdict level {{ $value }})",
            action="see the host's reasons (gputui_gpu_reason_info, gputui report) for the "
            "action NVIDIA recommends",
            for_="1m",
        ),
        AlertRule(
            alert="GputuiGpuVerdictCritical",
            expr=f"{ps.GPU_VERDICT} >= {int(Level.CRITICAL)}",
            level=Level.CRITICAL,
            summary=f"{_GPU_WHERE} is {{{{ if eq $value 4.0 }}}}failed{{{{ else }}}}critical"
            "{{ end }} (verdict level {{ $value }})",
            action="see the GPU's reasons (gputui_gpu_reason_info) for the action NVIDIA "
            "recommends",
            for_="1m",
        ),
        AlertRule(
            alert="GputuiExporterAbsent",
            expr=f"absent({ps.COLLECTOR_HOSTS})",
            level=Level.CRITICAL,
            summary="no gputui exporter is scraped: the fleet is not watched",
            action="start `gputui exporter` or check Prometheus' scrape configuration",
            for_="5m",
        ),
    ]
    return [("gputui-xid", xids), ("gputui-reasons", reasons), ("gputui-hosts", hosts)]


def _bit_set(series: str, bit: int) -> str:
    """PromQL has no bitwise operators: bit `bit` of a mask as arithmetic."""
    return f"floor({series} / {bit}) % 2 == 1"


def dcgm_rules() -> list[tuple[str, list[AlertRule]]]:
    """The subset expressible over dcgm-exporter's series (fields of prom_series.py)."""
    xids = []
    for xid in rule_xids():
        if xid == 154:  # its level is the action its text names: DCGM's series has no text
            continue
        info = xid_info(xid)
        xids.append(
            AlertRule(
                alert=f"DcgmXid{xid}",
                expr=f"{ps.DCGM_XID} == {xid}",
                level=info.level,
                summary=f"last XID on {_DCGM_WHERE} is {xid}: {info.meaning}",
                action=info.action_text,
                nvidia_action=info.action,
            )
        )
    clocks = ps.BY_FIELD["clock_events"].dcgm
    assert clocks is not None
    others: list[AlertRule] = []
    for code, bit in (
        ("hw_thermal", CLOCK_EVENT_HW_THERMAL_SLOWDOWN),
        ("hw_power_brake", CLOCK_EVENT_HW_POWER_BRAKE_SLOWDOWN),
        ("hw_slowdown", CLOCK_EVENT_HW_SLOWDOWN),
    ):
        level, action = REASON_CODES[code]
        others.append(
            AlertRule(
                alert="Dcgm" + "".join(part.title() for part in code.split("_")),
                expr=_bit_set(clocks, bit),
                level=level,
                summary=f"{CLOCK_EVENT_NAMES[bit]} on {_DCGM_WHERE}",
                action=advice(action, level),
                nvidia_action=action,
                for_="0m" if code == "hw_thermal" else "1m",
            )
        )
    remap = ps.BY_FIELD["remap_failure"].dcgm
    ecc = ps.BY_FIELD["ecc_uncorrected_volatile"].dcgm
    for code, expr in (("remap_failure", f"{remap} > 0"), ("ecc_uncorrectable", f"{ecc} > 0")):
        level, action = REASON_CODES[code]
        others.append(
            AlertRule(
                alert="Dcgm" + "".join(part.title() for part in code.split("_")),
                expr=expr,
                level=level,
                summary=f"{REASON_WORDS[code]} on {_DCGM_WHERE}",
                action=advice(action, level),
                nvidia_action=action,
            )
        )
    return [("gputui-dcgm-xid", xids), ("gputui-dcgm-health", others)]


def _q(text: str) -> str:
    """A YAML double-quoted scalar: JSON's string escapes are a subset of YAML's."""
    return json.dumps(text)


def _rule_lines(rule: AlertRule) -> Iterable[str]:
    yield f"      - alert: {_q(rule.alert)}"
    yield f"        expr: {_q(rule.expr)}"
    yield f"        for: {_q(rule.for_)}"
    yield "        labels:"
    yield f"          severity: {_q(rule.severity)}"
    yield f"          gputui_level: {_q(rule.level.label)}"
    yield "        annotations:"
    yield f"          summary: {_q(rule.summary)}"
    yield f"          action: {_q(rule.action)}"
    yield f"          nvidia_action: {_q(rule.nvidia_action.value)}"


def rules_yaml(groups: Sequence[tuple[str, Sequence[AlertRule]]], header: str) -> str:
    """A Prometheus rules file of `groups`, with `header` as its first comment lines."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines.append("groups:")
    for name, rules in groups:
        lines.append(f"  - name: {_q(name)}")
        lines.append("    rules:")
        for rule in rules:
            lines.extend(_rule_lines(rule))
    return "\n".join(lines) + "\n"
