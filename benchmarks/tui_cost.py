"""What the TUI costs per tick and per key press with a large fleet (headless, no SSH).

A scripted monitor feeds the real app one snapshot a second of N hosts x 8 GPUs (default
1,000), every host's readings changing every tick as on a busy fleet. Each snapshot is built
before its timing starts, so only the app's own work is measured:

- tick: the snapshot handler (keyed diff of the table, or the grid's recolour, inside one
  batch_update) plus the compositor's refresh that follows it, including turning the update
  into terminal bytes (the part a headless app would otherwise skip);
- key: from a key event posted to the app to the end of the first screen update after it
  (the first visible answer) and to the end of the last one before the app is idle again
  (the answer complete), for keys pressed between ticks as an operator would, on the table,
  the grid and the host screen.

    python benchmarks/tui_cost.py --hosts 1000 --ticks 180 --out benchmarks/results/tui_cost.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from procstat import rss_mib
from rich.console import Console
from textual import events
from textual.screen import Screen

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gputui.tui.app import GpuTuiApp
from gputui.tui.fleetview import SortKey
from gputui.tui.session import MonitorSession
from tests.fake_fleet import FakeMonitor, big_fleet, factory

# (key, character, where it is pressed) in the order the script presses them.
KEYS = [
    ("down", None, "table: cursor down"),
    ("up", None, "table: cursor up"),
    ("s", "s", "table: next sort order"),
    ("2", "2", "switch to the grid"),
    ("right", None, "grid: cursor right"),
    ("m", "m", "grid: next colour"),
    ("1", "1", "switch to the table"),
    ("enter", None, "open the host screen"),
    ("escape", None, "back to the fleet"),
]


class GcPauses:
    """Full (generation 2) collections during the run: what the p95 outliers usually are."""

    def __init__(self) -> None:
        self.pauses_ms: list[float] = []
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def stop(self) -> None:
        """Stop counting: the window is over. Quitting gives the full collections back to
        CPython, whose next one walks every object the app froze; that one is not the run's."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses_ms.append((time.perf_counter() - self._start) * 1000)


class Meter:
    """Times every compositor refresh (render + terminal bytes) of the app's screens."""

    def __init__(self) -> None:
        self.refresh_ms: list[float] = []
        self.refreshed_at: list[float] = []
        self.console = Console(file=open("/dev/null", "w"), force_terminal=True, width=200)  # noqa: SIM115

    def install(self) -> None:
        meter = self
        original = Screen._compositor_refresh

        def timed(screen: Screen[Any]) -> None:
            start = time.perf_counter()
            app = screen.app
            if screen is app.screen:
                update = screen._compositor.render_update(screen_stack=app._background_screens)
                if update is not None:
                    update.render_segments(meter.console)  # the bytes a terminal would get
                screen._dirty_widgets.clear()
                app._update_mouse_over(screen)
            else:
                original(screen)
            end = time.perf_counter()
            meter.refresh_ms.append((end - start) * 1000)
            meter.refreshed_at.append(end)

        Screen._compositor_refresh = timed  # type: ignore[method-assign]

    async def next_refresh_after(self, t: float, timeout: float = 5.0) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            later = [x for x in self.refreshed_at if x > t]
            if later:
                return later[0]
            await asyncio.sleep(0.0005)
        raise TimeoutError("no screen update")


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
        "max_ms": round(ordered[-1], 2),
    }


async def run(hosts: int, ticks: int, size: tuple[int, int]) -> dict[str, Any]:
    fleet = big_fleet(hosts)
    monitor = FakeMonitor(fleet)
    session = MonitorSession(factory(monitor))
    app = GpuTuiApp(session, tune_gc=True)  # as `gputui monitor` runs it
    app.animation_level = "none"
    meter = Meter()
    meter.install()
    # The table sorted by state (the default) and by utilisation (every host's utilisation is
    # needed to order the rows; only the rows in view are worked out in full), and the grid.
    tick_work: dict[str, list[float]] = {"table": [], "table sorted by util": [], "grid": []}
    first: dict[str, list[float]] = {label: [] for _, _, label in KEYS}
    done: dict[str, list[float]] = {label: [] for _, _, label in KEYS}
    pauses = GcPauses()
    cpu_start = time.process_time()
    wall_start = time.perf_counter()
    async with app.run_test(size=size) as pilot:

        async def push(snapshot: Any) -> float:
            """Push one snapshot; the handler's time plus the refresh that shows it."""
            before = app.ticks
            refreshes = len(meter.refresh_ms)
            sent = time.perf_counter()
            monitor.push(snapshot)
            while app.ticks == before:
                await asyncio.sleep(0.0005)
            shown = await meter.next_refresh_after(sent)
            handler = app.tick_ms[-1]
            drawn = sum(meter.refresh_ms[refreshes:])
            del shown
            return handler + drawn

        for _ in range(3):  # warm up: first layout, column widths, caches
            await push(fleet.advance())
        await pilot.pause()
        # Steady state from here: CPU and GC pauses are counted from now on.
        pauses.pauses_ms.clear()
        rss_start = rss_mib()
        rss_by_tick: list[float] = []
        cpu_start = time.process_time()
        wall_start = time.perf_counter()
        for i in range(ticks):
            tab = ("table", "grid", "table sorted by util")[i % 3]
            await pilot.press("2" if tab == "grid" else "1")
            if tab == "table sorted by util":
                app.fleet_screen.set_sort(SortKey.UTIL)
            await pilot.pause()
            next_tick = time.perf_counter() + 1.0
            # Built before the clock starts; as the monitor does, only the newest is kept.
            snapshot = fleet.advance()
            tick_work[tab].append(await push(snapshot))
            rss_by_tick.append(rss_mib())
            del snapshot
            # Keys between ticks, as an operator presses them.
            if tab == "table":
                for key, char, label in KEYS:
                    await asyncio.sleep(0.02)
                    posted = time.perf_counter()
                    app.post_message(events.Key(key, char))
                    shown = await meter.next_refresh_after(posted)
                    await pilot.pause()  # until the app is idle: the answer is fully drawn
                    last = max(t for t in meter.refreshed_at if t > posted)
                    first[label].append((shown - posted) * 1000)
                    done[label].append((last - posted) * 1000)
            app.fleet_screen.set_sort(SortKey.STATE)
            await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
        wall = time.perf_counter() - wall_start
        cpu = time.process_time() - cpu_start
        rss_end = rss_mib()
        pauses.stop()
        await app.action_quit()
    return {
        "hosts": hosts,
        "gpus": hosts * 8,
        "terminal": f"{size[0]}x{size[1]}",
        "ticks": ticks,
        "tick_work_ms": {tab: summary(v) for tab, v in tick_work.items() if v},
        "key_to_first_update_ms": {label: summary(v) for label, v in first.items() if v},
        "key_to_last_update_ms": {label: summary(v) for label, v in done.items() if v},
        "process_cpu_share": round(cpu / wall, 3),
        "rss_mib_start": round(rss_start, 1),
        "rss_mib_end": round(rss_end, 1),
        # RSS after the first tick and after each further third of the run: growth that
        # levels off is caches and allocator arenas filling, steady growth would be a leak
        "rss_mib_by_third": [
            round(rss_by_tick[min(len(rss_by_tick) - 1, i * len(rss_by_tick) // 3)], 1)
            for i in range(4)
        ],
        "gc_full_collections": summary(pauses.pauses_ms) if pauses.pauses_ms else {"n": 0},
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=30)
    parser.add_argument("--size", default="200x50", help="terminal COLSxROWS")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    cols, rows = (int(x) for x in args.size.split("x"))
    result = asyncio.run(run(args.hosts, args.ticks, (cols, rows)))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
