"""`gputui monitor` as it runs: the real app and the real collector in one process, 1,000 hosts.

benchmarks/tui_cost.py measures the app fed by a scripted monitor (snapshots built before the
clock starts) and benchmarks/ingest.py the collector with no app; an operator runs both in one
event loop, where each one's work delays the other's. Here the app (GpuTuiApp, headless
through Textual's run_test, paced garbage collection on as `gputui monitor` runs it) opens a
real FleetMonitor of SshSources against simulated hosts served by benchmarks/bench_server.py
in another process (8 GPUs each, 1 s interval), exactly as ingest.py's gputui client builds
it. Once every host streams, over a window of real time:

- tick: the app's snapshot handler plus the screen refresh that shows it (render and terminal
  bytes, as tui_cost.py times it), and from the snapshot handed to the app to that refresh's
  end (what the collector's work adds as queueing);
- key: from a key event posted to the app to the end of the first screen update after it (the
  first visible answer, as tui_cost.py's "first"), for the keys tui_cost.py presses, 20 ms
  apart after every other tick; a key whose first update came after a tick was applied is left
  out (that update may be the tick's) and counted;
- the collector's samples per second and the process's CPU in the same window.

With `--workers N` the app opens the monitor over N collector worker processes
(gputui/collect/workers/) instead, as `gputui monitor --workers N` does: the app's process then
reads no stream, and the workers' CPU and memory are reported beside its own.

    python benchmarks/app_ingest.py --hosts 1000 --out benchmarks/results/app_ingest-1000.json
    python benchmarks/app_ingest.py --hosts 1000 --workers 4
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gc
import json
import platform
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
from ingest import start_server, worker_monitor, write_client_files
from procstat import cpu_s_of, rss_mib, rss_mib_of
from textual import events
from tui_cost import KEYS, GcPauses, Meter, summary

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gputui.agent.bundle import build_bundle
from gputui.collect.launch import AgentInvocation
from gputui.collect.monitor import FleetMonitor, HostPlan
from gputui.collect.ssh import SshContext, SshOptions
from gputui.collect.ssh_source import SshSource
from gputui.core.model import FleetSnapshot
from gputui.tui.app import FleetUpdated, GpuTuiApp
from gputui.tui.session import MonitorSession


class TickClock:
    """When each snapshot was handed to the app and when its handler ended.

    Wraps the app's two tick methods: the message handler at class level, where Textual looks
    handlers up, and the delivery on the instance, before the session starts (the session
    takes the bound method when the app starts it)."""

    def __init__(self, app: GpuTuiApp) -> None:
        self.handed: list[float] = []
        self.handled: list[float] = []
        deliver = app._deliver

        async def timed_deliver(snapshot: FleetSnapshot) -> None:
            self.handed.append(time.perf_counter())
            await deliver(snapshot)

        app._deliver = timed_deliver  # type: ignore[method-assign]
        original = GpuTuiApp.on_fleet_updated
        clock = self

        def timed_handler(self: GpuTuiApp, message: FleetUpdated) -> None:
            original(self, message)
            clock.handled.append(time.perf_counter())

        GpuTuiApp.on_fleet_updated = timed_handler  # type: ignore[method-assign]


def first_after(times: list[float], t: float) -> int | None:
    """The index of the first entry of `times` (ascending) later than `t`, if any."""
    i = bisect.bisect_right(times, t)
    return i if i < len(times) else None


async def next_refresh_after(meter: Meter, t: float, timeout: float = 5.0) -> float:
    """When the first screen update after `t` ended. Meter's own wait scans every refresh so
    far at each poll, which over a minute of ticks would be work of its own in the window."""
    deadline = time.perf_counter() + timeout
    times = meter.refreshed_at
    while time.perf_counter() < deadline:
        if times and times[-1] > t:
            return times[bisect.bisect_right(times, t)]
        await asyncio.sleep(0.0005)
    raise TimeoutError("no screen update")


class InProcess:
    """The collector in the app's process, as `gputui monitor` runs it below 256 hosts."""

    def __init__(self, names: list[str], directory: Path, interval: float) -> None:
        ctx = SshContext(
            SshOptions(
                config_files=(directory / "ssh_config",), known_hosts=directory / "known_hosts"
            )
        )
        inv = AgentInvocation(command="bench-stream", stdin=build_bundle(include_pynvml=False))
        plans = [
            HostPlan(source=SshSource(n, ctx, lambda: inv), interval_s=interval) for n in names
        ]
        self.monitor = FleetMonitor(plans, tick_s=interval, closers=[ctx.close])

    def samples(self) -> int:
        return sum(rt.decoder.stats.good for rt in self.monitor.hosts.values())

    def streaming(self) -> int:
        return sum(1 for rt in self.monitor.hosts.values() if rt.sample is not None)

    def helpers(self) -> list[int]:
        return []


class InWorkers:
    """The collector in worker processes (`--workers N`): the app's process reads no stream."""

    def __init__(self, names: list[str], directory: Path, interval: float, workers: int) -> None:
        self.monitor = worker_monitor(names, directory, interval, workers)

    def samples(self) -> int:  # every sample reaches the app process's rings
        hosts = self.monitor.hosts.values()
        return sum(h.history.appended for h in hosts if h.history is not None)

    def streaming(self) -> int:
        return sum(1 for h in self.monitor.hosts.values() if h.latest.sample is not None)

    def helpers(self) -> list[int]:
        return [p for p in (link.pid for link in self.monitor.links) if p is not None]


async def run(
    hosts: int, directory: Path, interval: float, seconds: float, settle: float, workers: int = 0
) -> dict[str, Any]:
    names = [f"h{i:05d}" for i in range(hosts)]
    collector: InProcess | InWorkers = (
        InWorkers(names, directory, interval, workers)
        if workers > 0
        else InProcess(names, directory, interval)
    )
    monitor = collector.monitor

    @contextlib.asynccontextmanager
    async def open_monitor() -> AsyncIterator[Any]:
        async with monitor:
            yield monitor

    app = GpuTuiApp(MonitorSession(open_monitor), tune_gc=True)  # as `gputui monitor`
    app.animation_level = "none"
    meter = Meter()
    meter.install()
    ticks = TickClock(app)
    pauses = GcPauses()

    samples, streaming = collector.samples, collector.streaming

    key_ms: dict[str, list[float]] = {label: [] for _, _, label in KEYS}
    overlapped = 0
    async with app.run_test(size=(200, 50)):
        t0 = time.monotonic()
        all_streaming_s: float | None = None
        while time.monotonic() - t0 < settle:
            await asyncio.sleep(0.25)
            if streaming() == hosts:
                all_streaming_s = time.monotonic() - t0
                break
        await asyncio.sleep(3 * interval)  # past the start-up burst and the first full layout
        pauses.pauses_ms.clear()
        first_tick = len(ticks.handled)
        helpers = collector.helpers()
        helpers_cpu0 = sum(cpu_s_of(p) for p in helpers)
        s0, cpu0, w0 = samples(), time.process_time(), time.perf_counter()
        end = w0 + seconds
        while time.perf_counter() < end:
            # After every other tick, once its refresh is drawn, the keys an operator presses.
            seen = app.ticks
            while app.ticks < seen + 2 and time.perf_counter() < end:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            for key, char, label in KEYS:
                if time.perf_counter() >= end:
                    break
                await asyncio.sleep(0.02)
                ticks_before = app.ticks
                posted = time.perf_counter()
                app.post_message(events.Key(key, char))
                shown = await next_refresh_after(meter, posted)
                if app.ticks != ticks_before:
                    # A tick was applied before that refresh: it may be the tick's, not the
                    # key's answer. Counted, left out of the figures.
                    overlapped += 1
                    continue
                key_ms[label].append((shown - posted) * 1000)
        w1, cpu1, s1 = time.perf_counter(), time.process_time(), samples()
        helpers_cpu = sum(cpu_s_of(p) for p in helpers) - helpers_cpu0
        pauses.stop()
        seen_hosts = streaming()
        rss = rss_mib()
        helpers_rss = sum(rss_mib_of(p) for p in helpers)
        # What a full collection walks (after the window: listing them is itself a walk).
        tracked = len(gc.get_objects())
        await app.action_quit()
    await app.session.close()

    # Each tick of the window: its handler, the first refresh after it, and the wait before it.
    work, to_screen, queued = [], [], []
    for i in range(first_tick, len(ticks.handled)):
        end_t = ticks.handled[i]
        if end_t > w1:
            break
        j = first_after(meter.refreshed_at, end_t)
        if j is None:
            break
        work.append(app.tick_ms[i - len(ticks.handled)] + meter.refresh_ms[j])
        to_screen.append((meter.refreshed_at[j] - ticks.handed[i]) * 1000)
        queued.append((end_t - ticks.handed[i]) * 1000 - app.tick_ms[i - len(ticks.handled)])
    wall = w1 - w0
    every_key = [v for values in key_ms.values() for v in values]
    return {
        "hosts": hosts,
        "gpus": hosts * 8,
        "interval_s": interval,
        "terminal": "200x50",
        "all_streaming_s": None if all_streaming_s is None else round(all_streaming_s, 2),
        "hosts_streaming_at_end": seen_hosts,
        "window_s": round(wall, 2),
        "samples_per_s": round((s1 - s0) / wall, 1),
        "expected_samples_per_s": round(hosts / interval, 1),
        "process_cpu_pct_of_one_core": round(100 * (cpu1 - cpu0) / wall, 1),
        "rss_mib": round(rss, 1),
        "workers": len(helpers),
        "workers_cpu_pct_of_one_core": round(100 * helpers_cpu / wall, 1),
        "workers_rss_mib": round(helpers_rss, 1),
        "tick_work_ms": summary(work),
        "snapshot_to_screen_ms": summary(to_screen),
        "tick_queued_ms": summary(queued),
        "key_to_screen_ms": summary(every_key),
        "key_to_screen_ms_by_key": {k: summary(v) for k, v in key_ms.items() if v},
        "keys_with_a_tick_between": overlapped,
        "gc_full_collections": summary(pauses.pauses_ms) if pauses.pauses_ms else {"n": 0},
        "gc_full_collection_pauses_ms": [round(p, 1) for p in pauses.pauses_ms],  # in order
        "gc_tracked_objects_at_end": tracked,
        "python": platform.python_version(),
        "asyncssh": asyncssh.__version__,
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--settle", type=float, default=90.0, help="max s to wait for all hosts")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    parser.add_argument(
        "--workers", type=int, default=0, help="collector worker processes (0: in the app's)"
    )
    args = parser.parse_args()
    from gputui.collect.fdlimit import raise_soft_limit

    raise_soft_limit()
    with tempfile.TemporaryDirectory(prefix="gputui-bench-") as tmp:
        directory = Path(tmp)
        server = start_server(directory, args.interval)
        try:
            write_client_files(directory, int((directory / "port").read_text()), args.hosts)
            result = asyncio.run(
                run(args.hosts, directory, args.interval, args.seconds, args.settle, args.workers)
            )
        finally:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(timeout=30)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
