"""The service list of a journal: its daily rollups judged by the trend rules, ranked.

`gputui prevent` and the TUI's Prevention tab read the same thing: the per-GPU daily rollups
the monitor wrote (gputui/ops/rollups.py), the journal's per-node failure record (for the lemon
rule, and for the fleet's rate as `gputui risk` learns it), every trend rule
(gputui/core/trends) and the ranking by the failure probability that servicing avoids
(gputui/core/prevention.py). `judge` does it for rollups from anywhere (the simulated fleet of
`gputui prevent --demo` too), `journal_trends` for a journal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import msgspec

from gputui.core.hoststats import PluginStatus
from gputui.core.model import Level
from gputui.core.prevention import DEFAULT_HORIZON_HOURS, ServiceList, service_list
from gputui.core.risk import NodeRecord, RiskSettings
from gputui.core.risk_summary import fleet_rate_per_gpu_hour
from gputui.core.rollup import BUCKET_DAY_S, Rollup, bucket_start
from gputui.core.trends import TrendSettings, find_trends

if TYPE_CHECKING:
    from gputui.ops.journal import Journal

#: A journal whose latest rollup ends longer ago than this is not being written: its list is
#: the fleet as it was, and a monitoring system should hear UNKNOWN, not OK.
STALE_AFTER_S = 2 * BUCKET_DAY_S
#: Days of rollups judged, back from the journal's latest. The rules look back 14 days at most
#: (two weeks of a counter, the headroom window); a remap pending, or the rows remapped before
#: the growth window, show within a month. The journal keeps 90 days: reading them all would
#: triple the cost for nothing.
LOOKBACK_DAYS = 30


class Trends(msgspec.Struct, frozen=True, kw_only=True):
    """The service list and what it was judged on."""

    service: ServiceList
    end: int | None  # the rules' "now": the end of the latest day read (Unix s); None: no rollup
    gpus: int  # GPU slots (host, index) with a rollup
    hosts: int
    days: int  # days with a rollup of any GPU
    rate_source: str  # "posterior" (the journal's record) or "prior"


def judge(
    rollups: Iterable[Rollup],
    nodes: Sequence[NodeRecord] = (),
    *,
    risk: RiskSettings | None = None,
    settings: TrendSettings | None = None,
    groups: Mapping[str, str] | None = None,
    horizon_hours: float = DEFAULT_HORIZON_HOURS,
    end: int | None = None,
) -> Trends:
    """Every trend rule over `rollups` (daily or 5-minute, any GPUs) and the nodes' failure
    record, ranked; the fleet's rate is the posterior of `risk`'s prior and that record.

    Raises ValueError on a rollup whose bucket does not divide a day."""
    risk = risk or RiskSettings()
    rollups = list(rollups)
    failures = sum(n.failures for n in nodes)
    exposure = sum(n.exposure_gpu_hours for n in nodes)
    known = exposure > 0
    rate = fleet_rate_per_gpu_hour(risk, failures if known else None, exposure if known else None)
    findings = find_trends(
        rollups, settings, end=end, groups=groups, nodes=list(nodes) or None, risk=risk
    )
    days = {bucket_start(r.start, BUCKET_DAY_S) for r in rollups}
    return Trends(
        service=service_list(
            findings,
            rate_per_gpu_hour=rate,
            horizon_hours=horizon_hours,
            multipliers=risk.multipliers,
        ),
        end=end if end is not None else (max(days) + BUCKET_DAY_S if days else None),
        gpus=len({(r.host, r.gpu) for r in rollups}),
        hosts=len({r.host for r in rollups}),
        days=len(days),
        rate_source="posterior" if known else "prior",
    )


def node_records(journal: Journal) -> list[NodeRecord]:
    """Each node's failures and monitored GPU-hours, as `gputui risk --nodes` reads them."""
    return [
        NodeRecord(name=name, failures=f, exposure_gpu_hours=e)
        for name, (f, e) in sorted(journal.per_node_failures_and_exposure().items())
    ]


def journal_days(journal: Journal, lookback_days: int = LOOKBACK_DAYS) -> list[Rollup]:
    """The daily rollups of the last `lookback_days` days up to the journal's latest, read a
    host at a time: each query holds the journal's lock for one host's rows, so the monitor's
    writes (rollups, exposure, node states) go between them however large the fleet.

    Raises JournalError when the journal cannot be read."""
    latest = journal.latest_rollups(BUCKET_DAY_S)
    if not latest:
        return []
    since = max(r.start for r in latest) + BUCKET_DAY_S - lookback_days * BUCKET_DAY_S
    out: list[Rollup] = []
    for host in sorted({r.host for r in latest}):
        out += journal.rollup_series(BUCKET_DAY_S, host=host, since=since)
    return out


def journal_trends(
    journal: Journal,
    *,
    risk: RiskSettings | None = None,
    settings: TrendSettings | None = None,
    groups: Mapping[str, str] | None = None,
    horizon_hours: float = DEFAULT_HORIZON_HOURS,
) -> Trends:
    """The journal's service list: its last LOOKBACK_DAYS days of daily rollups, its nodes'
    record.

    Raises JournalError when the journal cannot be read."""
    return judge(
        journal_days(journal),
        node_records(journal),
        risk=risk,
        settings=settings,
        groups=groups,
        horizon_hours=horizon_hours,
    )


def trends_status(trends: Trends, now: float | None = None) -> tuple[PluginStatus, str]:
    """The monitoring-plugin status of a service list, and why it is UNKNOWN where it is.

    CRITICAL for an item critical or worse, WARNING for one to service in the next window,
    OK for none; UNKNOWN (outranked only by CRITICAL, as in `gputui report`) when there is no
    rollup to judge, or, given `now`, when the latest ends more than STALE_AFTER_S before it:
    the monitor has stopped writing this journal, and the list is the fleet as it was.
    """
    worst = max((i.level for i in trends.service.items), default=Level.OK)
    if worst >= Level.CRITICAL:
        return PluginStatus.CRITICAL, ""
    if trends.end is None:
        return PluginStatus.UNKNOWN, (
            "no rollups to judge: the monitor writes one per GPU every 5 minutes into its "
            "journal, and the rules need days of them"
        )
    if now is not None and now - trends.end > STALE_AFTER_S:
        days = (now - trends.end) / BUCKET_DAY_S
        return PluginStatus.UNKNOWN, (
            f"the latest rollup ended {days:.1f} days ago: is a monitor writing this journal?"
        )
    return (PluginStatus.WARNING if worst >= Level.WARN else PluginStatus.OK), ""


class JournalPrevention:
    """What the live views read of the journal the monitor writes: the service list and a
    host's daily rollups. `journal` gives the open journal, None while there is none (the
    monitor not started yet, or `--no-journal`)."""

    def __init__(
        self,
        journal: Callable[[], Journal | None],
        *,
        risk: RiskSettings | None = None,
        groups: Mapping[str, str] | None = None,
    ) -> None:
        self._journal = journal
        self._risk = risk
        self._groups = groups

    def trends(self) -> Trends | None:
        """The journal's service list; None without a journal. Raises JournalError."""
        journal = self._journal()
        if journal is None:
            return None
        return journal_trends(journal, risk=self._risk, groups=self._groups)

    def daily(self, host: str) -> list[Rollup]:
        """`host`'s daily rollups, per GPU oldest first; none without a journal. Raises
        JournalError."""
        journal = self._journal()
        return [] if journal is None else journal.rollup_series(BUCKET_DAY_S, host=host)
