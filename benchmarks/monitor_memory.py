"""Memory of the monitor over time with N demo hosts (default 200) at 1 s interval.

The demo fleet's SSH servers and agents run in other processes; the RSS measured here is the
collector's alone. Prints RSS at the checkpoints and the change between the first and the
last, and writes the figures as JSON.

    python benchmarks/monitor_memory.py --hosts 200 --minutes 1 10 \
        --out benchmarks/results/memory.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from pathlib import Path

from procstat import cpu_s, rss_mib

from gputui.collect.fleet import demo_fleet_and_monitor


async def run(hosts: int, minutes: list[float]) -> dict[str, object]:
    points: list[dict[str, float]] = []
    t0 = time.monotonic()
    cpu0 = cpu_s()
    async with demo_fleet_and_monitor(hosts, interval_s=1.0, tick_s=1.0) as (_fleet, monitor):
        consumer_snapshots = 0

        async def consume() -> None:
            nonlocal consumer_snapshots
            async for _snap in monitor.snapshots():
                consumer_snapshots += 1

        task = asyncio.create_task(consume())
        deadline = time.monotonic() + 120
        while not monitor.settled() and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        streaming = sum(1 for h in monitor.hosts.values() if h.sample is not None)
        print(
            f"{streaming}/{hosts} hosts streaming after {time.monotonic() - t0:.1f} s", flush=True
        )
        for m in minutes:
            await asyncio.sleep(max(0.0, t0 + 60 * m - time.monotonic()))
            samples = sum((h.sample.seq + 1) if h.sample else 0 for h in monitor.hosts.values())
            point = {"minute": m, "rss_mib": round(rss_mib(), 1), "samples": samples}
            points.append(point)
            print(json.dumps(point), flush=True)
        task.cancel()
    cpu = cpu_s() - cpu0
    first, last = points[0]["rss_mib"], points[-1]["rss_mib"]
    return {
        "hosts": hosts,
        "points": points,
        "change_pct": round(100 * (last - first) / first, 1),
        "collector_cpu_pct_of_one_core": round(100 * cpu / (time.monotonic() - t0), 1),
        "snapshots_consumed": consumer_snapshots,
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
        f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 10])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    result = asyncio.run(run(args.hosts, args.minutes))
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
