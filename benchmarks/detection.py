"""Detection latency: from a scripted fault's start to the monitor's verdict, per fault kind.

The real path: every simulated host is a real agent (sim backend) behind a real SSH server on
loopback (the demo fleet's servers, in another process), streaming at 1 s to the real
FleetMonitor; one subscriber reads the snapshots as the TUI does. Each host runs the healthy
training scenario plus one fault of one kind on one GPU, scripted at a jittered offset.

Timing: the agent's hello says when its simulation's t=0 was (`sim_start`, Unix time; the
collector and the agents share this machine's clock). The simulator moves in 0.25 s steps, so
a fault scripted `at` s takes effect at the first step at or after it; the fault's start is
`sim_start + that step`. The latency of an injection is from that start to:

- `monitor`:    the FleetEvent the monitor emits (its `t`: the moment the sample or pushed
                event that changed the verdict was processed);
- `subscriber`: the moment the subscriber receives the snapshot carrying that event.

The first event of the host after the fault start counts: kind `verdict` with a level above
OK, or a pushed event (`xid`, `ecc_dbe`, `gpu_lost`, `reset_required`); for the agent's own
faults (agent_crash, hang) the host's `state` change.

    python benchmarks/detection.py --per-kind 15 --rounds 2 \
        --out benchmarks/results/detection.json
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import math
import os
import platform
import random
import time
from pathlib import Path
from typing import Any

from gputui.agent.scenario import validate_scenario
from gputui.agent.simulation import STEP_S
from gputui.collect.demo import DemoFleet
from gputui.collect.fleet import plans_for_demo
from gputui.collect.monitor import FleetMonitor
from gputui.collect.scenarios import load_scenario
from gputui.core.model import FleetEvent, Level

# Fault kinds and their parameters (the simulator's defaults unless given).
KINDS: dict[str, dict[str, Any]] = {
    "xid": {"xid": 79},
    "ecc_dbe": {},
    "ecc_sbe_storm": {},
    "thermal_runaway": {},
    "power_brake": {},
    "pcie_downgrade": {},
    "nvlink_errors": {"links_down": 1},
    "row_remap_pending": {},
    "row_remap_failure": {},
    "gpu_lost": {},
    "straggler": {},
    "agent_crash": {},
    "hang": {},
}
PROCESS_KINDS = ("agent_crash", "hang")
PUSHED = ("xid", "ecc_dbe", "gpu_lost", "reset_required")

# What the monitor reacts to, per kind: the signal and how it reaches the monitor.
HOW = {
    "xid": "pushed XID event",
    "ecc_dbe": "pushed XID 48 / DBE event",
    "ecc_sbe_storm": "pushed XID 92",
    "thermal_runaway": "polled temperature (climbs over ~1 min)",
    "power_brake": "polled clock-event bits",
    "pcie_downgrade": "polled PCIe link (slow field)",
    "nvlink_errors": "polled NVLink state (slow field)",
    "row_remap_pending": "pushed XID 63",
    "row_remap_failure": "pushed XID 64",
    "gpu_lost": "polled: GPU stops answering",
    "straggler": "polled utilisation/clocks, 5 outlying samples",
    "agent_crash": "fatal error line -> unreachable",
    "hang": "silence -> stale after 3 intervals",
}


def assignment(
    kinds: list[str], per_kind: int, rng: random.Random, first_at: float, jitter: float
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, tuple[str, float]]]:
    base = load_scenario("healthy")
    hosts: list[tuple[str, dict[str, Any]]] = []
    faults: dict[str, tuple[str, float]] = {}
    for kind in kinds:
        for i in range(per_kind):
            name = f"{kind.replace('_', '-')}-{i:02d}"
            sc = copy.deepcopy(base)
            at = round(first_at + rng.uniform(0.0, jitter), 3)
            fault: dict[str, Any] = {"kind": kind, "at": at, **KINDS[kind]}
            if kind not in PROCESS_KINDS:
                fault["gpus"] = [rng.randrange(sc["gpus"])]
            sc["name"] = f"bench-{kind}"
            sc["fault"] = [fault]
            hosts.append((name, validate_scenario(sc)))
            faults[name] = (kind, at)
    return hosts, faults


def detected_by(kind: str, ev: FleetEvent) -> bool:
    if kind in PROCESS_KINDS:
        return ev.kind == "state" and ev.level is Level.WARN
    if ev.kind in PUSHED:
        return True
    return ev.kind == "verdict" and ev.level > Level.OK


async def one_round(
    kinds: list[str], per_kind: int, seed: int, first_at: float, jitter: float, wait_s: float
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    rng = random.Random(seed)
    hosts, faults = assignment(kinds, per_kind, rng, first_at, jitter)
    received: dict[str, tuple[FleetEvent, float]] = {}
    started: dict[str, float | None] = {}
    early: dict[str, int] = {"not_ok_before_fault": 0, "no_sim_start": 0, "not_detected": 0}
    async with DemoFleet(len(hosts), seed=seed, given=hosts) as fleet:
        plans, ssh = plans_for_demo(fleet, 1.0)
        monitor = FleetMonitor(plans, tick_s=1.0, closers=[ssh.close])
        async with monitor:

            async def consume() -> None:
                async for snap in monitor.snapshots():
                    now = time.time()
                    if len(started) < len(faults):
                        # The first hello's: a crashed agent is restarted with a new simulation.
                        for h in snap.hosts:
                            if h.hello is not None and h.name not in started:
                                started[h.name] = h.hello.sim_start
                    for ev in snap.events:
                        if ev.host in received or ev.host not in faults:
                            continue
                        if detected_by(faults[ev.host][0], ev):
                            received[ev.host] = (ev, now)

            task = asyncio.create_task(consume())
            deadline = time.time() + first_at + jitter + wait_s
            while time.time() < deadline and len(received) < len(faults):
                await asyncio.sleep(0.5)
            task.cancel()
            rows: list[dict[str, Any]] = []
            for name, (kind, at) in faults.items():
                start = started.get(name)
                if start is None:
                    early["no_sim_start"] += 1
                    continue
                fault_t = start + math.ceil(at / STEP_S - 1e-9) * STEP_S
                got = received.get(name)
                if got is None:
                    early["not_detected"] += 1
                    rows.append({"host": name, "kind": kind, "detected": False})
                    continue
                ev, seen = got
                if ev.t < fault_t:  # the host was not OK before its fault (not this fault's)
                    early["not_ok_before_fault"] += 1
                    print(
                        f"  {name}: {ev.kind} {ev.text!r} {fault_t - ev.t:.3f} s before its fault"
                    )
                    continue
                rows.append(
                    {
                        "host": name,
                        "kind": kind,
                        "detected": True,
                        "event": ev.kind,
                        "level": ev.level.label,
                        "monitor_s": round(ev.t - fault_t, 4),
                        "subscriber_s": round(seen - fault_t, 4),
                    }
                )
    return rows, early


def pct(values: list[float], p: float) -> float:
    """The p-th percentile, nearest rank (p99 of fewer than 100 values is the maximum)."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def summarise(rows: list[dict[str, Any]], kinds: list[str]) -> list[dict[str, Any]]:
    out = []
    for kind in kinds:
        mine = [r for r in rows if r["kind"] == kind]
        hit = [r for r in mine if r["detected"]]
        entry: dict[str, Any] = {
            "kind": kind,
            "how": HOW[kind],
            "injections": len(mine),
            "detected": len(hit),
        }
        if hit:
            for key in ("monitor_s", "subscriber_s"):
                vals = [r[key] for r in hit]
                entry[f"{key[:-2]}_p50_ms"] = round(1000 * pct(vals, 50), 1)
                entry[f"{key[:-2]}_p99_ms"] = round(1000 * pct(vals, 99), 1)
                entry[f"{key[:-2]}_max_ms"] = round(1000 * max(vals), 1)
            entry["levels"] = sorted({r["level"] for r in hit})
        out.append(entry)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    kinds = args.kinds or list(KINDS)
    rows: list[dict[str, Any]] = []
    excluded: dict[str, int] = {}
    for r in range(args.rounds):
        t0 = time.time()
        got, early = await one_round(
            kinds, args.per_kind, args.seed + r, args.first_at, args.jitter, args.wait
        )
        rows.extend(got)
        for k, v in early.items():
            excluded[k] = excluded.get(k, 0) + v
        print(
            f"round {r + 1}/{args.rounds}: {len(got)} injections, {early}, "
            f"{time.time() - t0:.0f} s",
            flush=True,
        )
    return {
        "benchmark": "detection",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "hosts_per_round": args.per_kind * len(kinds),
        "rounds": args.rounds,
        "interval_s": 1.0,
        "tick_s": 1.0,
        "slow_every": 10,
        "summary": summarise(rows, kinds),
        "excluded": excluded,
        "rows": rows,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-kind", type=int, default=15, help="hosts per fault kind per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--kinds", nargs="*", choices=list(KINDS))
    ap.add_argument("--first-at", type=float, default=25.0, help="earliest fault offset, s")
    ap.add_argument("--jitter", type=float, default=10.0, help="faults start within this, s")
    ap.add_argument("--wait", type=float, default=120.0, help="after the last fault, s")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    result = asyncio.run(run(args))
    for s in result["summary"]:
        print(json.dumps(s), flush=True)
    print("excluded:", result["excluded"])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
