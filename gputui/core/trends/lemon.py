"""Lemon nodes: a failure record unlikely under the fleet's rate.

The same ranking as `gputui risk --nodes` (core/risk_report.py node_ranking over the journal's
per-node failures and monitored GPU-hours): each node's posterior rate, shrunk towards the
fleet's, and the chance of a record at least as bad as its own had it the fleet's rate. A node
is raised when that chance is small and it failed more than once: one early failure in a few
GPU-hours is bad luck as often as a bad node. Removing repeat offenders is what cut the failure
rate of Meta's 512+ GPU jobs from 14% to 4% (docs/risk.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gputui.core.model import Level
from gputui.core.risk import NodeRecord, RiskSettings
from gputui.core.risk_report import node_ranking
from gputui.core.trends.finding import Evidence, Figure, Finding, Remedy, Subject
from gputui.core.trends.settings import TrendSettings


def lemon_nodes(
    records: Iterable[NodeRecord],
    s: TrendSettings,
    risk: RiskSettings | None = None,
    gpus_per_host: Mapping[str, int] | None = None,
) -> list[Finding]:
    """The nodes whose failure record the fleet's rate makes unlikely.

    `gpus_per_host` says how many GPUs each node has (from its rollups); a node not in it
    counts as one GPU, so its benefit in the service list is not overstated.
    """
    ranking = node_ranking(records, risk)
    fleet = ranking.rate_per_gpu_hour
    found = []
    for node in ranking.nodes:
        p = node.p_record_at_fleet_rate
        if node.failures < s.lemon_min_failures or p > s.lemon_p_record:
            continue
        ratio = node.mean_per_gpu_hour / fleet
        found.append(
            Finding(
                rule="lemon_node",
                subject=Subject(host=node.name),
                level=Level.CRITICAL if p <= s.lemon_p_record_critical else Level.WARN,
                remedy=Remedy.HARDWARE,
                advice=(
                    "take the node out for a full diagnosis (NVIDIA's field diagnostic, "
                    "dcgmi diag -r 3, the BMC's logs) and replace what its failures point "
                    "at before it returns to large jobs"
                ),
                evidence=Evidence(
                    text=(
                        f"{node.failures} failures in {node.exposure_gpu_hours:.0f} GPU-hours: "
                        f"P(as many at the fleet's rate) = {p:.2g}; its rate "
                        f"{node.mean_per_gpu_hour:.2g}/GPU-h is {ratio:.1f}x the fleet's"
                    ),
                    figures=(
                        Figure(name="failures", value=node.failures),
                        Figure(name="exposure", value=node.exposure_gpu_hours, unit="GPU-h"),
                        Figure(name="p_record", value=p),
                        Figure(name="p_lemon", value=node.p_lemon),
                        Figure(name="rate", value=node.mean_per_gpu_hour, unit="/GPU-h"),
                        Figure(name="fleet_rate", value=fleet, unit="/GPU-h"),
                    ),
                ),
                gpus=(gpus_per_host or {}).get(node.name, 1),
                hazard=ratio,
            )
        )
    return found
