"""Per-GPU findings that share one cause on a node become one finding about the node.

A power supply that brakes one GPU brakes its neighbours; inlet air that warms takes headroom
from every GPU of the node. When enough of a node's GPUs carry the same finding, the service
is the node's (its PSUs, its fans, its rack), and listing eight GPUs would hide that.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

from gputui.core.trends.finding import Evidence, Figure, Finding, Point, Subject
from gputui.core.trends.settings import TrendSettings

# per-GPU rule -> (the node's rule, the node's advice)
NODE_RULES: dict[str, tuple[str, str]] = {
    "power_brake_recurring": (
        "power_brake_node",
        "the node's GPUs brake together: check its power supplies (a failed or failing unit, "
        "lost redundancy), their feed (PDU, circuit) and the BMC's power event log",
    ),
    "hw_slowdown_recurring": (
        "hw_slowdown_node",
        "the node's GPUs trip their power protection together: check its power supplies and "
        "their feed",
    ),
    "hw_thermal_recurring": (
        "hw_thermal_node",
        "the node's GPUs reach their thermal limit together: check the node's fans and the air "
        "it breathes (inlet temperature, rack airflow, the room's cooling)",
    ),
    "headroom_shrinking": (
        "headroom_shrinking_node",
        "the node's GPUs lose headroom together: its inlet air is warming or its filters and "
        "fans are failing; check them, the rack's airflow and the room's cooling",
    ),
}


def _median_series(members: Sequence[Finding]) -> tuple[Point, ...]:
    by_day: dict[int, list[float]] = {}
    for f in members:
        for p in f.evidence.series:
            by_day.setdefault(p.day, []).append(p.value)
    return tuple(Point(day, statistics.median(v)) for day, v in sorted(by_day.items()))


def to_nodes(
    findings: Sequence[Finding], gpus_per_host: Mapping[str, int], s: TrendSettings
) -> list[Finding]:
    """`findings` with each node's shared ones replaced by one finding about the node."""
    groups: dict[tuple[str, str], list[Finding]] = {}
    for f in findings:
        if f.rule in NODE_RULES and not f.subject.is_node:
            groups.setdefault((f.subject.host, f.rule), []).append(f)
    out = list(findings)
    for (host, rule), members in sorted(groups.items()):
        n = max(gpus_per_host.get(host, 0), len(members))
        if len(members) < max(2, math.ceil(s.host_share * n)):
            continue
        node_rule, advice = NODE_RULES[rule]
        first = members[0]
        names = ", ".join(f"GPU{f.subject.gpu}" for f in members)
        gone = {id(f) for f in members}
        out = [f for f in out if id(f) not in gone]
        out.append(
            Finding(
                rule=node_rule,
                subject=Subject(host=host),
                level=max(f.level for f in members),
                remedy=first.remedy,
                advice=advice,
                evidence=Evidence(
                    text=f"{len(members)} of {n} GPUs ({names}), as {first.evidence.text}",
                    figures=(
                        Figure(name="gpus_affected", value=len(members)),
                        Figure(name="gpus", value=n),
                    ),
                    series_name=f"median of the GPUs: {first.evidence.series_name}",
                    series=_median_series(members),
                ),
                gpus=n,
            )
        )
    return out
