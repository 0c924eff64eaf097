"""The one entry point: every trend rule over a fleet's rollups."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gputui.core.risk import NodeRecord, RiskSettings
from gputui.core.rollup import Rollup
from gputui.core.trends.clocks import clock_findings
from gputui.core.trends.counters import counters_rising
from gputui.core.trends.days import GpuSeries, current_gpus, daily_series, latest_end
from gputui.core.trends.finding import Finding
from gputui.core.trends.headroom import headroom_shrinking
from gputui.core.trends.lemon import lemon_nodes
from gputui.core.trends.nodes import to_nodes
from gputui.core.trends.remaps import remap_findings
from gputui.core.trends.settings import DEFAULT_TREND_SETTINGS, TrendSettings
from gputui.core.trends.thermal_peers import gpu_hotter_than_peers, host_hotter_than_group


def gpus_per_host(series: Iterable[GpuSeries], end: int, days: int) -> dict[str, int]:
    """GPU slots of each host with a day in the last `days` before `end`.

    Slots, not uuids: a GPU replaced in the window is one GPU of the node, not two.
    """
    slots: dict[str, set[int]] = {}
    for gs in series:
        if gs.window(end, days):
            slots.setdefault(gs.host, set()).add(gs.gpu)
    return {host: len(s) for host, s in slots.items()}


def find_trends(
    rollups: Iterable[Rollup],
    settings: TrendSettings | None = None,
    *,
    end: int | None = None,
    groups: Mapping[str, str] | None = None,
    nodes: Iterable[NodeRecord] | None = None,
    risk: RiskSettings | None = None,
) -> list[Finding]:
    """Every finding of the trend rules, sorted by host, GPU (the node's own first) and rule.

    `rollups`: per-GPU rollups of any GPUs, daily or 5-minute (merged into days), in any
    order; a GPU replaced in its slot (another uuid read later) is left out. `end`: the
    rules' "now", Unix seconds (default: the end of the latest day given); each rule looks at
    its window of days before it. `groups`: host -> group, for the host comparison (default:
    one group). `nodes`: the journal's per-node failure records, for the lemon rule, judged
    against `risk`'s prior (hosts.toml `[risk]`) as `gputui risk --nodes` judges them.
    Raises ValueError on a rollup whose bucket does not divide a day.
    """
    s = settings or DEFAULT_TREND_SETTINGS
    series = current_gpus(daily_series(rollups))
    end = latest_end(series) if end is None else end
    found: list[Finding] = []
    counts: dict[str, int] = {}
    if end is not None:
        counts = gpus_per_host(series, end, s.clock_window_days)
        by_host: dict[str, list[GpuSeries]] = {}
        for gs in series:
            by_host.setdefault(gs.host, []).append(gs)
            found += counters_rising(gs, s, end)
            found += remap_findings(gs, s, end)
            found += clock_findings(gs, s, end)
            shrinking = headroom_shrinking(gs, s, end)
            if shrinking is not None:
                found.append(shrinking)
        for host in by_host.values():
            found += gpu_hotter_than_peers(host, s, end)
        found += host_hotter_than_group(series, s, end, groups)
        found = to_nodes(found, counts, s)
    if nodes is not None:
        found += lemon_nodes(nodes, s, risk, counts)
    return sorted(found, key=lambda f: f.sort_key)
