"""Every configured node with its operator state, and the choice of a spare.

A node's operator state is the newest journal row for it (none: in service). Spares listed in
hosts.toml stay "spare" until gputui activates one, which then is "spare_active".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from gputui.config import Config
from gputui.core.model import FleetSnapshot, HostState, Level
from gputui.ops.records import NodeEvent

Status = Literal["in_service", "failed", "spare", "spare_active"]


@dataclass(frozen=True)
class NodeStatus:
    name: str
    group: str
    spare: bool  # listed as a spare in hosts.toml
    status: Status
    reason: str = ""
    operator: str = ""
    since: float | None = None  # when the newest state change was recorded
    detail: str = ""


def node_statuses(config: Config, latest: Mapping[str, NodeEvent]) -> list[NodeStatus]:
    """Every host of the file, in file order, with its state from the journal's `latest` rows."""
    out: list[NodeStatus] = []
    for spec in config.hosts:
        ev = latest.get(spec.name)
        status: Status = "spare" if spec.spare else "in_service"
        if ev is not None and ev.state == "failed":
            status = "failed"
        elif ev is not None and ev.state == "spare_active":
            status = "spare_active"
        out.append(
            NodeStatus(
                name=spec.name,
                group=spec.group,
                spare=spec.spare,
                status=status,
                reason=ev.reason if ev else "",
                operator=ev.operator if ev else "",
                since=ev.t if ev else None,
                detail=ev.detail if ev else "",
            )
        )
    return out


_USABLE_STATES = (HostState.STREAMING, HostState.DEGRADED)


def choose_spare(
    config: Config,
    node: str,
    latest: Mapping[str, NodeEvent],
    snapshot: FleetSnapshot | None = None,
) -> str | None:
    """The first healthy spare of `node`'s group, in file order; None when there is none.

    Healthy: not marked failed and not already activated; with a monitor snapshot, also
    streaming with a verdict better than warn (a spare that is itself sick replaces nothing).
    """
    group = config.groups[config.host(node).group]
    hosts = {h.name: h for h in snapshot.hosts} if snapshot is not None else None
    for spare in group.spares:
        ev = latest.get(spare)
        if spare == node or (ev is not None and ev.state in ("failed", "spare_active")):
            continue
        if hosts is not None:
            seen = hosts.get(spare)
            if seen is None or seen.marked_failed or seen.state not in _USABLE_STATES:
                continue
            if seen.verdict.host.level >= Level.WARN:
                continue
        return spare
    return None
