"""What gputui's training-loop guard costs a training step, measured side by side in one run.

A stand-in training step busy-waits STEP_S (10 ms: 100 steps/s) on the CPU. The same loop runs
without a guard and with GPUGuard (a check every 100 steps, heartbeats every second), reading
the simulated NVML in its background thread (pass --real to read this machine's NVML), in
alternating rounds so drift in the machine's speed hits both alike. Reported: the median step
time of each, the overhead in percent (target: under 1%), the guard's own cost per `step()`
call (timed apart over many calls), and the background thread's NVML time per check.

    python benchmarks/train_overhead.py [--steps 2000] [--rounds 5] [--real] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gputui.train import GPUGuard
from gputui.train.nvml import real, simulated

STEP_S = 0.01


def work(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def loop(steps: int, guard: GPUGuard | None) -> float:
    """Seconds per step over `steps` steps."""
    start = time.perf_counter()
    for _ in range(steps):
        work(STEP_S)
        if guard is not None:
            guard.step()
    return (time.perf_counter() - start) / steps


def call_cost(guard: GPUGuard, calls: int = 200_000) -> float:
    """Seconds per guard.step() call alone."""
    start = time.perf_counter()
    for _ in range(calls):
        guard.step()
    return (time.perf_counter() - start) / calls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000, help="steps per round (default 2000)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--real", action="store_true", help="read this machine's NVML")
    p.add_argument("--device", default=None, help="with --real: the GPU's UUID or CUDA ordinal")
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = p.parse_args()
    backend: Callable[[], Any] = real if args.real else simulated("healthy")
    device: int | str | None = args.device
    if isinstance(device, str) and device.isdigit():
        device = int(device)
    with tempfile.TemporaryDirectory() as beats:
        os.environ["GPUTUI_HEARTBEAT_DIR"] = beats
        bare, guarded, checks, check_s = [], [], 0, 0.0
        error: str | None = None
        for _ in range(args.rounds):
            # No guard alive in a bare round: its thread (and a simulated NVML's, which runs
            # in Python where the real one waits in C) would slow the bare loop too.
            bare.append(loop(args.steps, None))
            guard = GPUGuard(every_steps=100, device=device, backend=backend, heartbeat_s=1.0)
            guard.check(timeout_s=30.0)  # NVML started and the GPU found before timing
            guarded.append(loop(args.steps, guard))
            watch = guard.session.watch
            checks += watch.checks
            check_s += watch.check_cost_s
            error = error or watch.error
            per_call = call_cost(guard)
            guard.close()
        figures = {
            "step_s": STEP_S,
            "steps_per_round": args.steps,
            "rounds": args.rounds,
            "nvml": "real" if args.real else "simulated",
            "bare_step_ms": [round(x * 1e3, 4) for x in bare],
            "guarded_step_ms": [round(x * 1e3, 4) for x in guarded],
            "overhead_pct": round(
                (statistics.median(guarded) / statistics.median(bare) - 1) * 100, 3
            ),
            "guard_step_call_us": round(per_call * 1e6, 3),
            "guard_step_call_pct_of_step": round(per_call / STEP_S * 100, 4),
            "checks": checks,
            "check_ms": round(check_s / max(1, checks) * 1e3, 3),
            "watch_error": error,
        }
    print(json.dumps(figures, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
