"""What one Prometheus scrape of `gputui exporter` costs, by fleet size.

A synthetic snapshot of N hosts x 8 GPUs (fast and slow readings, group labels, every GPU ok)
goes through the exporter's collector and prometheus-client's text format, as a scrape does;
the time of gputui's part (the metric families) is taken apart from the whole. Each figure is
the best of --repeat runs in this process, on whatever machine runs it.

    python benchmarks/prom_scrape.py --hosts 100 1000
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gputui.core.fleet_tally import FleetTally
from gputui.core.model import (
    OK_VERDICT,
    FleetSnapshot,
    HostSnapshot,
    HostState,
    HostVerdict,
    Sample,
)
from gputui.render.prometheus import ExportView, exposition, fleet_families
from tests.fake_fleet import hello, reading

T = 1_700_000_000.0
GPUS = 8


def snapshot(n_hosts: int) -> FleetSnapshot:
    hosts = []
    for h in range(n_hosts):
        name = f"gpu{h:05d}"
        fast = Sample(v=1, t=T, seq=5, gpus=[reading(i, 5) for i in range(GPUS)])
        slow = Sample(
            v=1, t=T, seq=0, slow=True, gpus=[reading(i, 0, slow=True) for i in range(GPUS)]
        )
        hosts.append(
            HostSnapshot(
                name=name,
                state=HostState.STREAMING,
                labels={"group": "train", "rack": f"r{h // 40:03d}"},
                hello=hello(name, GPUS),
                sample=fast,
                sample_t=T - 0.5,
                slow_sample=slow,
                slow_sample_t=T - 5,
                verdict=HostVerdict(host=OK_VERDICT, gpus=dict.fromkeys(range(GPUS), OK_VERDICT)),
            )
        )
    return FleetSnapshot(t=T, hosts=tuple(hosts))


def best(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for n in args.hosts:
        snap = snapshot(n)
        view = ExportView(snapshot=snap, tally=FleetTally(10.0).observe(snap), publish_lag_s=0.0)
        text = exposition(view, T)
        rows.append(
            {
                "hosts": n,
                "gpus": n * GPUS,
                "samples": sum(1 for line in text.splitlines() if not line.startswith(b"#")),
                "bytes": len(text),
                "families_s": round(best(lambda v=view: fleet_families(v, T), args.repeat), 3),
                "scrape_s": round(best(lambda v=view: exposition(v, T), args.repeat), 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"python": platform.python_version(), "machine": platform.machine()}))


if __name__ == "__main__":
    main()
