"""Trend rules: slow changes over days that predict a failure, each with its remedy.

`find_trends(rollups, settings)` runs every rule over a fleet's per-GPU rollups
(gputui/core/rollup.py) and returns `Finding`s; gputui/core/prevention.py ranks them into the
service list. The rules, their windows and their limits are in docs/prevention.md ("Rules").

- counters: corrected ECC or PCIe replays rising (a rate per day, or a doubling week on week)
- remaps: remapped rows nearing a bank's limit, accumulating, or left pending
- thermal_peers: a GPU hotter than its host's other GPUs, a host hotter than its group, at the
  same power
- headroom: headroom to the slowdown limit under load shrinking at steady power
- clocks: HW power brake, HW slowdown or HW thermal slowdown recurring; a PCIe link degraded
- nodes: a node's GPUs sharing one finding become a finding about the node
- lemon: a node's failure record unlikely under the fleet's rate
"""

from gputui.core.trends.find import find_trends
from gputui.core.trends.finding import Evidence, Figure, Finding, Point, Remedy, Subject
from gputui.core.trends.settings import DEFAULT_TREND_SETTINGS, TrendSettings

__all__ = [
    "DEFAULT_TREND_SETTINGS",
    "Evidence",
    "Figure",
    "Finding",
    "Point",
    "Remedy",
    "Subject",
    "TrendSettings",
    "find_trends",
]
