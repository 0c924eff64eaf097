"""Monitor memory over simulated time at fleet scale, fast-forwarded (default 1,000 hosts).

A real 30-minute run of 1,000 agents does not fit a small machine, so this drives the real
FleetMonitor in-process with recorded agent lines, as fast as it can, on an injected clock:

- the lines: hello and 1 s samples of the real sim backend (the demo mix of scenarios, so
  some hosts have faults and verdict changes), recorded once per scenario template for
  `--record` simulated seconds, then replayed with each host's time and sequence number;
- every simulated second, each host's sample goes through HostRuntime.on_line (decode, health
  rules, history ring, verdict) and the monitor publishes one snapshot to one subscriber, and
  runs its stale check, as its tick does;
- RSS of this process is read at the requested simulated minutes.

Not measured here: the SSH transport (asyncssh's buffers per connection are in
benchmarks/ingest.py's RSS, 152 MiB for the whole gputui client at 1,000 hosts).

    python benchmarks/memory_ff.py --hosts 1000 --minutes 1 10 30 \
        --out benchmarks/results/memory-ff-1000.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from procstat import rss_mib

from gputui.agent import AGENT_VERSION, PROTOCOL_VERSION
from gputui.agent.sim_backend import SimBackend
from gputui.agent.stream import encode
from gputui.collect.feed import HostFeed, Source
from gputui.collect.monitor import FleetMonitor, HostPlan
from gputui.collect.scenarios import demo_assignment
from gputui.core.model import HostState

T0 = 1_800_000_000.0


class _Idle(Source):
    """A source that is never started: lines are fed to the monitor directly."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, feed: HostFeed) -> None:  # pragma: no cover - never started
        raise NotImplementedError


def record(scenario: dict[str, Any], seed: int, seconds: int) -> tuple[dict[str, Any], list[str]]:
    """The hello and `seconds` 1 s sample lines of a simulated host, with time and sequence
    left as markers (@T@, @SEQ@)."""
    now = [0.0]
    backend = SimBackend(scenario, seed=seed, clock=lambda: now[0], event_thread=False)
    hello: dict[str, Any] = {
        "type": "hello",
        "v": PROTOCOL_VERSION,
        "host": "",
        "agent_version": AGENT_VERSION,
        "backend": "sim",
        "interval_s": 1.0,
        "slow_every": 10,
        **backend.hello(),
    }
    lines = []
    for seq in range(seconds):
        now[0] = float(seq)
        slow = seq % 10 == 0
        body = backend.sample(slow)
        msg = {"type": "sample", "v": PROTOCOL_VERSION, "t": 0.0, "seq": 0, "slow": slow or None}
        msg.update(body)
        text = encode(msg).decode()
        text = text.replace('"t":0.0,', '"t":@T@,', 1).replace('"seq":0,', '"seq":@SEQ@,', 1)
        lines.append(text)
    backend.close()
    return hello, lines


def run(hosts: int, minutes: list[float], templates: int, record_s: int) -> dict[str, Any]:
    t_start = time.monotonic()
    assignment = demo_assignment(templates, seed=1)
    recorded = [record(sc, seed=i, seconds=record_s) for i, (_, sc) in enumerate(assignment)]
    print(f"recorded {templates} x {record_s} s in {time.monotonic() - t_start:.1f} s", flush=True)
    now = [T0]
    names = [f"ff-{i:04d}" for i in range(hosts)]
    monitor = FleetMonitor(
        [HostPlan(source=_Idle(n)) for n in names], tick_s=1.0, clock=lambda: now[0]
    )
    subscriber_snapshots = 0
    rss_before = rss_mib()
    runtimes = [monitor.hosts[n] for n in names]
    for i, rt in enumerate(runtimes):
        hello = dict(recorded[i % templates][0], host=rt.name)
        rt.set_state(HostState.CONNECTING)
        rt.on_line(json.dumps(hello).encode())
    points: list[dict[str, Any]] = []
    checkpoints = sorted(int(60 * m) for m in minutes)
    last = checkpoints[-1]
    t_run = time.monotonic()
    samples = 0
    for second in range(last + 1):
        now[0] = T0 + second
        stamp = f"{T0 + second:.3f}"
        for i, rt in enumerate(runtimes):
            lines = recorded[i % templates][1]
            # Hosts read different stretches of their recording, and wrap around.
            tpl = lines[(second + 7 * i) % len(lines)]
            rt.on_line(tpl.replace("@T@", stamp).replace("@SEQ@", str(second)).encode())
        samples += hosts
        for rt in runtimes:
            rt.check_stale()
        monitor.publish()
        subscriber_snapshots += 1
        if second in checkpoints:
            point = {
                "minute": round(second / 60, 2),
                "rss_mib": round(rss_mib(), 1),
                "host_samples": samples,
                "events_logged": len(monitor.events),
                "wall_s": round(time.monotonic() - t_run, 1),
            }
            points.append(point)
            print(json.dumps(point), flush=True)
    gc.collect()
    first, end = points[0]["rss_mib"], points[-1]["rss_mib"]
    return {
        "benchmark": "memory_ff",
        "method": "fast-forwarded in-process replay of recorded sim agent lines, injected clock",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "hosts": hosts,
        "gpus_per_host": 8,
        "templates": templates,
        "record_s": record_s,
        "history_len": 300,
        "rss_before_hosts_mib": round(rss_before, 1),
        "points": points,
        "change_pct": round(100 * (end - first) / first, 1),
        "per_host_sample_us": round(1e6 * (time.monotonic() - t_run) / samples, 1),
        "snapshots_published": subscriber_snapshots,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 30])
    ap.add_argument("--templates", type=int, default=16, help="distinct recorded hosts")
    ap.add_argument("--record", type=int, default=600, help="recorded seconds per template")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    result = run(args.hosts, args.minutes, args.templates, args.record)
    print(json.dumps({k: v for k, v in result.items() if k != "points"}, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
