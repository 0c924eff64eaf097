"""A simulated fleet's days, rolled up into a journal: what `gputui prevent --demo` judges.

Each host of the drift fleet mix (gputui/scenarios/drift.toml: healthy hosts and one of each
slow drift) runs over N simulated days in process (gputui/collect/sim_days.py: the real NVML
backend over the simulated NVML, every message through the collector's decoder), its samples
and XIDs go through the same accumulator the monitor's writer uses (gputui/core/rollup.py), and
its 5-minute rollups are written with the journal's own writing code (day rows merged from
them, retention kept), so what is judged afterwards is read from a journal exactly as the
monitor leaves one.

Hosts are independent: they run in worker processes, one per core, since a host's fortnight
costs seconds of CPU (docs/scenarios.md).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import Any

from gputui.collect.scenarios import DRIFT_MIX, demo_assignment
from gputui.collect.sim_days import DEFAULT_START_UNIX, simulate_days
from gputui.core.model import Hello, Sample
from gputui.core.rollup import BUCKET_5M_S, BUCKET_DAY_S, Rollup, RollupAccumulator, RollupRetention
from gputui.ops.journal import Journal

#: Each host's seed is the fleet's seed times this plus its position (docs/scenarios.md), so a
#: host's history does not depend on how many hosts the fleet has.
SEED_STRIDE = 100_003
#: A sample every 5 minutes, the slow fields every 30, the simulation stepped each minute: the
#: daily figures the rules read come out as at one sample a minute (a day under load is still
#: hundreds of samples, and counters are deltas whatever their spacing) at a third of the
#: cost. The step stays a minute because a step longer than a power-brake assertion brakes
#: the whole step or none of it: at 5-minute steps a PSU's 72 s a day became a 300 s day
#: every four, too lumpy for a rule that counts the days with braking.
DEMO_INTERVAL_S = 300.0
DEMO_SLOW_EVERY = 6
DEMO_STEP_S = 60.0
#: The 5-minute rows a simulated journal keeps: only the daily ones are judged, and fewer
#: rows keep the demo quick.
DEMO_RETENTION = RollupRetention(five_minute_days=1)


def host_rollups(
    name: str,
    scenario: dict[str, Any],
    days: float,
    seed: int,
    interval_s: float = DEMO_INTERVAL_S,
    slow_every: int = DEMO_SLOW_EVERY,
    step_s: float = DEMO_STEP_S,
    start_unix: float = DEFAULT_START_UNIX,
    bucket_s: int = BUCKET_5M_S,
) -> list[Rollup]:
    """One simulated host's rollups over `days` whole days, oldest first: 5-minute ones, as
    the journal takes them, or of `bucket_s` (a day: what the rules judge, 288 times fewer)."""
    acc = RollupAccumulator(bucket_s)
    stop = start_unix + days * BUCKET_DAY_S
    gpus: Sequence[Any] = ()
    out: list[Rollup] = []
    for msg in simulate_days(
        scenario,
        days,
        seed=seed,
        host=name,
        interval_s=interval_s,
        slow_every=slow_every,
        step_s=step_s,
        start_unix=start_unix,
    ):
        if isinstance(msg, Hello):
            gpus = msg.gpus
        elif msg.t >= stop:
            continue  # the stream's last sample opens the day after: no day of data
        elif isinstance(msg, Sample):
            out += acc.add_sample(name, gpus, msg)
        elif msg.kind == "xid" and msg.xid is not None and msg.gpu is not None:
            acc.add_xid(name, msg.gpu, msg.xid)
    return out + acc.close_all()


def _host_job(args: tuple[str, dict[str, Any], float, int, float, int, float]) -> list[Rollup]:
    return host_rollups(*args)


def write_days(journal: Journal, rollups: Sequence[Rollup], retention: RollupRetention) -> int:
    """Write one host's rollups a simulated day per transaction, each stamped with its own
    simulated time, as the monitor's writer would have written them then."""
    by_day: dict[int, list[Rollup]] = {}
    for r in rollups:
        by_day.setdefault(r.start // BUCKET_DAY_S, []).append(r)
    written = 0
    for day in sorted(by_day):
        batch = by_day[day]
        now = max(r.end for r in batch)
        written += journal.write_rollups(batch, retention, now=now)
    return written


def simulate_fleet(
    journal: Journal,
    n_hosts: int,
    days: float,
    *,
    seed: int = 1,
    mix: str = DRIFT_MIX,
    interval_s: float = DEMO_INTERVAL_S,
    slow_every: int = DEMO_SLOW_EVERY,
    step_s: float = DEMO_STEP_S,
    workers: int | None = None,
    retention: RollupRetention = DEMO_RETENTION,
    progress: Callable[[str], None] | None = None,
) -> list[tuple[str, str]]:
    """Simulate `n_hosts` of the fleet mix over `days` into `journal`; each host's name and
    the scenario it ran (`healthy`, `drift_ecc`, ...), in the fleet's order.

    `workers`: processes to simulate in (default: one per core, at most one per host; 1 runs
    in this process). `progress` is told of each host as it is written.
    Raises ScenarioError for an unknown mix, ValueError for days or an interval out of range.
    """
    if not days > 0:
        raise ValueError(f"days must be > 0, got {days:g}")
    fleet = demo_assignment(n_hosts, seed, mix=mix)
    jobs = [
        (name, sc, float(days), seed * SEED_STRIDE + i, interval_s, slow_every, step_s)
        for i, (name, sc) in enumerate(fleet)
    ]
    n_workers = min(len(jobs), workers if workers is not None else os.cpu_count() or 1)
    if n_workers <= 1:
        for job in jobs:
            write_days(journal, _host_job(job), retention)
            if progress is not None:
                progress(job[0])
    else:
        # forkserver: the parent may hold threads (a journal's lock, an event loop), which a
        # plain fork would copy in whatever state they were.
        context = multiprocessing.get_context("forkserver")
        with concurrent.futures.ProcessPoolExecutor(n_workers, mp_context=context) as pool:
            for job, rollups in zip(jobs, pool.map(_host_job, jobs), strict=True):
                write_days(journal, rollups, retention)
                if progress is not None:
                    progress(job[0])
    return [(name, str(sc.get("name", "?"))) for name, sc in fleet]
