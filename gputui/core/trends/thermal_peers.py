"""Running hotter than peers at the same power: one GPU on its host, or a whole host in its group.

A GPU's temperature under load follows its power; at the same power, GPUs of one host share
the chassis air, and hosts of one group share the room. So a GPU much hotter than its host's
other GPUs at the same power has its own cooling problem (a fan, its airflow, the thermal
interface), and a host whose GPUs all run hotter than the group's other hosts has the rack's
or the room's. Both compare the mean temperature under load of each day, moved to the peer's
power along `temp_per_power_pct_c`, against the median of peers within `power_match_pct`: the
median, which one hot peer cannot drag along. A GPU (or host) is raised when its median excess
over the days judged in the window reaches the limit.

Limits: a chassis whose slots differ by design (GPUs downstream in the air path run warmer)
shows a steady excess on those slots; the limit sits above that. Hosts of a group are assumed
to hold the same GPU model; a mixed group compares unlike parts.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gputui.core.model import Level
from gputui.core.trends.days import GpuSeries, at_power, load_power_pct, load_temp_c
from gputui.core.trends.finding import Evidence, Figure, Finding, Point, Remedy, Subject
from gputui.core.trends.settings import TrendSettings


@dataclass(frozen=True)
class _Load:
    """One GPU's day under load: mean temperature and power (percent of its limit)."""

    series: GpuSeries
    temp_c: float
    power_pct: float


def _loads_by_day(
    series: Sequence[GpuSeries], s: TrendSettings, end: int
) -> dict[int, list[_Load]]:
    out: dict[int, list[_Load]] = {}
    for gs in series:
        for d in gs.window(end, s.thermal_window_days):
            temp, power = load_temp_c(d, s.load_min_samples), load_power_pct(d, s.load_min_samples)
            if temp is not None and power is not None:
                out.setdefault(d.start, []).append(_Load(gs, temp, power))
    return out


def _excess(
    temp_c: float, power_pct: float, peers: Sequence[tuple[float, float]], s: TrendSettings
) -> float | None:
    """How much hotter than its peers' median, all moved to its own power; None without
    enough peers at a comparable power."""
    near = [
        at_power(t, p, power_pct, s.temp_per_power_pct_c)
        for t, p in peers
        if abs(p - power_pct) <= s.power_match_pct
    ]
    return temp_c - statistics.median(near) if len(near) >= s.gpu_min_peers else None


def gpu_hotter_than_peers(host: Sequence[GpuSeries], s: TrendSettings, end: int) -> list[Finding]:
    """The host's GPUs that run hotter than its other GPUs at the same power."""
    excess: dict[tuple[int, str], list[Point]] = {}
    temps: dict[tuple[int, str], float] = {}
    for day, loads in sorted(_loads_by_day(host, s, end).items()):
        for me in loads:
            peers = [(o.temp_c, o.power_pct) for o in loads if o is not me]
            e = _excess(me.temp_c, me.power_pct, peers, s)
            if e is not None:
                key = (me.series.gpu, me.series.uuid)
                excess.setdefault(key, []).append(Point(day, e))
                temps[key] = me.temp_c
    found: list[Finding] = []
    for (gpu, uuid), points in sorted(excess.items()):
        median = statistics.median(p.value for p in points)
        if len(points) < s.thermal_min_days or median < s.gpu_hotter_c:
            continue
        host_name = host[0].host
        found.append(
            Finding(
                rule="gpu_hotter_than_peers",
                subject=Subject(host=host_name, gpu=gpu, uuid=uuid),
                level=Level.CRITICAL if median >= s.gpu_hotter_critical_c else Level.WARN,
                remedy=Remedy.COOLING,
                advice=(
                    "check this GPU's cooling in the next window: its fans, the airflow "
                    "through its slot (blockage, a missing baffle) and its thermal interface"
                ),
                evidence=Evidence(
                    text=(
                        f"GPU{gpu} runs {median:.1f} C hotter under load than the host's other "
                        f"GPUs at the same power (median of {len(points)} days; "
                        f"{temps[(gpu, uuid)]:.0f} C on the last)"
                    ),
                    figures=(
                        Figure(name="excess", value=median, unit="C"),
                        Figure(name="days", value=len(points)),
                        Figure(name="limit", value=s.gpu_hotter_c, unit="C"),
                    ),
                    series_name="C above the host's other GPUs at the same power",
                    series=tuple(points),
                ),
            )
        )
    return found


def _host_day(loads: Sequence[_Load], ref_pct: float, s: TrendSettings) -> tuple[float, float]:
    """A host's day: (median GPU temperature moved to `ref_pct`, median GPU power)."""
    temp = statistics.median(
        at_power(x.temp_c, x.power_pct, ref_pct, s.temp_per_power_pct_c) for x in loads
    )
    return temp, statistics.median(x.power_pct for x in loads)


def host_hotter_than_group(
    series: Sequence[GpuSeries],
    s: TrendSettings,
    end: int,
    groups: Mapping[str, str] | None = None,
) -> list[Finding]:
    """Hosts whose GPUs run hotter than the other hosts of their group at the same power.

    `groups` maps a host to its group (hosts.toml's groups); a host not in it belongs to the
    unnamed group of every such host.
    """
    groups = groups or {}
    by_group: dict[str, list[GpuSeries]] = {}
    for gs in series:
        by_group.setdefault(groups.get(gs.host, ""), []).append(gs)
    excess: dict[str, list[Point]] = {}
    gpus: dict[str, set[str]] = {}
    for members in by_group.values():
        for day, loads in sorted(_loads_by_day(members, s, end).items()):
            per_host: dict[str, list[_Load]] = {}
            for x in loads:
                per_host.setdefault(x.series.host, []).append(x)
                gpus.setdefault(x.series.host, set()).add(x.series.uuid)
            ref = statistics.median(x.power_pct for x in loads)
            hosts = {h: _host_day(xs, ref, s) for h, xs in per_host.items()}
            for name, (temp, power) in hosts.items():
                near = [
                    t
                    for other, (t, p) in hosts.items()
                    if other != name and abs(p - power) <= s.power_match_pct
                ]
                if len(near) >= s.host_min_peers:
                    excess.setdefault(name, []).append(Point(day, temp - statistics.median(near)))
    found: list[Finding] = []
    for name, points in sorted(excess.items()):
        median = statistics.median(p.value for p in points)
        if len(points) < s.thermal_min_days or median < s.host_hotter_c:
            continue
        group = groups.get(name)
        peers = f"group {group}" if group else "the other hosts"
        found.append(
            Finding(
                rule="host_hotter_than_group",
                subject=Subject(host=name),
                level=Level.CRITICAL if median >= s.host_hotter_critical_c else Level.WARN,
                remedy=Remedy.COOLING,
                advice=(
                    "check the air this node breathes: its inlet temperature, the rack's "
                    "airflow (blanking panels, hot-air recirculation), the room's cooling, and "
                    "the node's fans"
                ),
                evidence=Evidence(
                    text=(
                        f"its GPUs run {median:.1f} C hotter under load than {peers}' at the "
                        f"same power (median of {len(points)} days)"
                    ),
                    figures=(
                        Figure(name="excess", value=median, unit="C"),
                        Figure(name="days", value=len(points)),
                        Figure(name="limit", value=s.host_hotter_c, unit="C"),
                    ),
                    series_name="C above the group's hosts at the same power",
                    series=tuple(points),
                ),
                gpus=len(gpus[name]),
            )
        )
    return found
