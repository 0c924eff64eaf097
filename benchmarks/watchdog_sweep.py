"""The hang watchdog's CPU, in-process: one pass over every stream against a timer per host.

For each size, over real HostRuntime feeds (streaming, nothing wrong):

- sweep:     StreamWatchdog.sweep(), the loop over a dict of streams that gputui runs;
- numpy:     what a deadline array would cost instead: the vectorised compare of one pass,
             plus keeping the array up to date (one element store per line, here one line per
             stream per interval, counted per pass at the agents' 2.5 s step);
- per-host:  the watchdog before, one coroutine per stream waking on its own timer
             (asyncio.wait on the stream's end with a timeout), CPU per wake, measured with at
             most 1,000 coroutines waking every 0.05 s and scaled to the size.

Each figure is the fastest of `--repeat` passes (the per-host figure: process CPU over a run
of wakes), in microseconds.

    python benchmarks/watchdog_sweep.py --streams 1000 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from collections.abc import Callable

import numpy as np

from gputui.collect.host_runtime import HostRuntime
from gputui.collect.watchdog import StreamWatchdog

STEP_S = 2.5  # the agents' step at a 1 s interval: a quarter of 10 intervals
INTERVAL_S = 1.0


class Counts:
    lines = 100
    bytes = 150_000


def fastest(repeat: int, run: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best * 1e6


async def measure_sweep(n: int, repeat: int) -> float:
    loop = asyncio.get_running_loop()
    dog = StreamWatchdog(loop)
    counts = Counts()
    for i in range(n):
        rt = HostRuntime(f"gpu{i:05d}", interval_s=INTERVAL_S, emit=lambda e, u: None)
        rt.stream_started()
        dog.watch(
            rt,
            "agent",
            loop.create_future(),
            lambda: None,
            counts=counts,
            hang_after=10,
            grace_s=30.0,
        )
    us = fastest(repeat, dog.sweep)
    assert len(dog) == n  # nothing was ended
    for stream in list(dog._streams):
        dog.unwatch(stream)
    return us


def measure_numpy(n: int, repeat: int) -> tuple[float, float]:
    """One pass's compare, and the upkeep of one pass's worth of lines (n per interval)."""
    deadlines = np.full(n, time.monotonic() + 10 * INTERVAL_S)
    pass_us = fastest(repeat, lambda: np.flatnonzero(deadlines < time.monotonic()))
    lines = int(n * STEP_S / INTERVAL_S)
    limit = 10 * INTERVAL_S

    def upkeep() -> None:
        mono = time.monotonic
        d = deadlines
        for i in range(lines):
            d[i % n] = mono() + limit

    return pass_us, fastest(repeat, upkeep)


async def measure_per_host(n: int, seconds: float) -> float:
    """CPU per wake of the old per-host watchdog: n coroutines waking every 0.05 s."""
    loop = asyncio.get_running_loop()
    wakes = 0
    stop = loop.create_future()

    async def watch() -> None:
        nonlocal wakes
        done: asyncio.Future[None] = loop.create_future()
        while not stop.done():
            await asyncio.wait({done}, timeout=0.05)
            wakes += 1

    tasks = [asyncio.create_task(watch()) for _ in range(n)]
    await asyncio.sleep(0.2)  # all started
    wakes = 0
    c0 = time.process_time()
    await asyncio.sleep(seconds)
    cpu = time.process_time() - c0
    counted = wakes
    stop.set_result(None)
    await asyncio.gather(*tasks)
    return cpu / max(1, counted) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--seconds", type=float, default=3.0, help="per-host run")
    ap.add_argument("--out")
    args = ap.parse_args()
    rows = []
    for n in args.streams:
        sweep_us = asyncio.run(measure_sweep(n, args.repeat))
        np_pass_us, np_upkeep_us = measure_numpy(n, args.repeat)
        wake_us = asyncio.run(measure_per_host(min(n, 1000), args.seconds))
        row = {
            "streams": n,
            "sweep_us": round(sweep_us, 1),
            "sweep_us_per_stream": round(sweep_us / n, 3),
            "numpy_pass_us": round(np_pass_us, 1),
            "numpy_upkeep_us_per_pass": round(np_upkeep_us, 1),
            "per_host_wake_us": round(wake_us, 2),
            # CPU per second of each way at the agents' 1 s interval (a pass or a wake every
            # 2.5 s per stream), in % of one core.
            "sweep_cpu_pct": round(sweep_us / STEP_S / 1e4, 3),
            "numpy_cpu_pct": round((np_pass_us + np_upkeep_us) / STEP_S / 1e4, 3),
            "per_host_cpu_pct": round(wake_us * n / STEP_S / 1e4, 3),
        }
        rows.append(row)
        print(json.dumps(row))
    if args.out:
        doc = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, numpy {np.__version__}",
            "date": time.strftime("%Y-%m-%d"),
            "rows": rows,
        }
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
