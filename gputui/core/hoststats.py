"""Per-host aggregates of a snapshot (the numbers a fleet row shows), and the monitoring-plugin
status of a whole fleet (the exit code of `gputui report`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gputui.core.model import FleetSnapshot, HostSnapshot, HostState, Level


@dataclass(frozen=True)
class HostStats:
    gpus: int  # GPUs in the inventory
    gpus_reporting: int  # GPUs with readings in the last sample
    util_mean_pct: float | None
    util_max_pct: float | None
    temp_max_c: float | None
    power_w: float | None  # sum over GPUs
    power_limit_w: float | None  # sum of enforced limits
    mem_used_mib: float | None
    mem_total_mib: float | None


def host_stats(host: HostSnapshot) -> HostStats:
    """Aggregate one host's last sample; None where no GPU reported the field."""
    n_gpus = len(host.hello.gpus) if host.hello is not None else 0
    sample = host.sample
    if sample is None:
        return HostStats(n_gpus, 0, None, None, None, None, None, None, None)
    limits = {g.index: g.power_limit_w for g in host.hello.gpus} if host.hello else {}
    totals = {g.index: g.memory_total_mib for g in host.hello.gpus} if host.hello else {}
    utils: list[float] = []
    temps: list[float] = []
    power: list[float] = []
    power_limit: list[float] = []
    mem: list[float] = []
    mem_total: list[float] = []
    reporting = 0
    for r in sample.gpus:
        if r.status != "ok":
            continue
        reporting += 1
        if r.util_pct is not None:
            utils.append(r.util_pct)
        if r.temp_c is not None:
            temps.append(r.temp_c)
        if r.power_w is not None:
            power.append(r.power_w)
        limit = r.power_limit_w if r.power_limit_w is not None else limits.get(r.index)
        if limit is not None:
            power_limit.append(limit)
        if r.mem_used_mib is not None:
            mem.append(r.mem_used_mib)
            total = totals.get(r.index)
            if total is not None:
                mem_total.append(total)
    return HostStats(
        gpus=n_gpus,
        gpus_reporting=reporting,
        util_mean_pct=sum(utils) / len(utils) if utils else None,
        util_max_pct=max(utils) if utils else None,
        temp_max_c=max(temps) if temps else None,
        power_w=sum(power) if power else None,
        power_limit_w=sum(power_limit) if power_limit else None,
        mem_used_mib=sum(mem) if mem else None,
        mem_total_mib=sum(mem_total) if mem_total else None,
    )


class PluginStatus(enum.IntEnum):
    """Monitoring-plugin exit codes (Nagios, Icinga, Sensu, cron wrappers)."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


# Aggregation order: CRITICAL beats UNKNOWN beats WARNING beats OK, so a fleet with one
# unreachable host and one warning says UNKNOWN (someone must look), and any critical GPU wins.
_PRECEDENCE = {
    PluginStatus.OK: 0,
    PluginStatus.WARNING: 1,
    PluginStatus.UNKNOWN: 2,
    PluginStatus.CRITICAL: 3,
}


def host_status(host: HostSnapshot) -> PluginStatus:
    """One host's plugin status: its verdict, or UNKNOWN when it cannot be read now."""
    level = host.verdict.host.level
    if level >= Level.CRITICAL:
        return PluginStatus.CRITICAL
    if host.state in (
        HostState.UNREACHABLE,
        HostState.STALE,
        HostState.RECONNECTING,
        HostState.CONNECTING,
        HostState.NO_GPU,
    ):
        return PluginStatus.UNKNOWN
    if level is Level.UNKNOWN:
        return PluginStatus.UNKNOWN
    if level is Level.WARN:
        return PluginStatus.WARNING
    return PluginStatus.OK


def fleet_status(snapshot: FleetSnapshot) -> PluginStatus:
    """The worst host status; hosts the operator marked failed are known and left out."""
    worst = PluginStatus.OK
    for host in snapshot.hosts:
        if host.marked_failed:
            continue
        status = host_status(host)
        if _PRECEDENCE[status] > _PRECEDENCE[worst]:
            worst = status
    return worst
