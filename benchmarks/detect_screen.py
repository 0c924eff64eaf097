"""Detection end to end: a fault begins on a host, the fleet table shows it. One measurement.

benchmarks/detection.py times a fault to the monitor's verdict, and benchmarks/app_ingest.py
a snapshot to the screen; an operator waits for both, and for whatever each adds to the other
in one process. Here `gputui monitor` runs as users run it (the real app, `tune_gc` on, and its
real collector of SshSources, as app_ingest.py builds them) against simulated hosts served by
benchmarks/bench_server.py in another process (8 GPUs each, 1 s interval). Once every host
streams, faults are injected one at a time on hosts picked at random, through the server's
control socket, at random moments (so each falls anywhere in its host's sample period):

- `xid`: the host's agent pushes an XID 79 (a pushed event: the row must turn `failed`);
- `hot`: GPU 0 reads 110 C from the host's next sample on (a sampled fault: `critical`).

The fault's start is the server's clock when it applied it (the machine's one clock). Its end
is the end of the first screen update after which the host's row is in view and its STATE
cell says the new level: the update that drew it (every compositor refresh of the fleet screen
is checked, as tui_cost.py's Meter times them). Target: p99 <= interval + 250 ms.

    python benchmarks/detect_screen.py --hosts 1000 --per-kind 30 \
        --out benchmarks/results/detect_screen-1000.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import platform
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncssh
from ingest import start_server, worker_monitor, write_client_files
from procstat import rss_mib
from textual.screen import Screen
from tui_cost import Meter, summary

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gputui.agent.bundle import build_bundle
from gputui.collect.launch import AgentInvocation
from gputui.collect.monitor import FleetMonitor, HostPlan
from gputui.collect.ssh import SshContext, SshOptions
from gputui.collect.ssh_source import SshSource
from gputui.tui.app import GpuTuiApp
from gputui.tui.session import MonitorSession
from gputui.tui.widgets.fleet_table import FleetTable

#: What each injected fault must turn the host's STATE cell into.
SHOWS = {"xid": "failed", "hot": "critical"}


class ScreenWatch:
    """After every refresh of the fleet screen, whether the watched host's row shows `want`."""

    def __init__(self, app: GpuTuiApp) -> None:
        self.app = app
        self.host: str | None = None
        self.want = ""
        self.shown: asyncio.Future[float] | None = None

    def install(self) -> None:
        refresh = Screen._compositor_refresh  # Meter's timed refresh, installed before
        watch = self

        def checked(screen: Screen[Any]) -> None:
            refresh(screen)
            if watch.shown is not None and not watch.shown.done() and watch.in_view():
                watch.shown.set_result(time.time())

        Screen._compositor_refresh = checked  # type: ignore[method-assign]

    def expect(self, host: str, want: str) -> asyncio.Future[float]:
        self.host, self.want = host, want
        self.shown = asyncio.get_running_loop().create_future()
        return self.shown

    def in_view(self) -> bool:
        assert self.host is not None
        try:
            table = self.app.screen.query_one(FleetTable)
            row = table.get_row_index(self.host)
        except (KeyError, LookupError):  # another screen, or the row not shown
            return False
        top = int(table.scroll_y)
        if not top <= row < top + table.size.height - 1:  # line 0 is the header
            return False
        return self.want in table.get_cell(self.host, "state").text


async def inject(directory: Path, what: str, host: str) -> float:
    """Apply a fault on `host` through the server's control socket; when it began there."""
    reader, writer = await asyncio.open_unix_connection(str(directory / "control.sock"))
    writer.write(f"{what} {host}\n".encode())
    await writer.drain()
    answer = (await reader.readline()).decode().split()
    writer.close()
    if answer[:1] != ["ok"]:
        raise RuntimeError(f"injection refused: {answer}")
    return float(answer[1])


def gputui_monitor(directory: Path, names: list[str], interval: float) -> FleetMonitor:
    """The collector as app_ingest.py builds it, each host's stream named for injection."""
    ctx = SshContext(
        SshOptions(config_files=(directory / "ssh_config",), known_hosts=directory / "known_hosts")
    )
    bundle = build_bundle(include_pynvml=False)

    def invocation(name: str) -> Callable[[], AgentInvocation]:
        inv = AgentInvocation(command=f"bench-stream {name}", stdin=bundle)
        return lambda: inv

    plans = [HostPlan(source=SshSource(n, ctx, invocation(n)), interval_s=interval) for n in names]
    return FleetMonitor(plans, tick_s=interval, closers=[ctx.close])


async def run(
    hosts: int,
    directory: Path,
    interval: float,
    per_kind: int,
    settle: float,
    seed: int,
    workers: int = 0,
) -> dict[str, Any]:
    names = [f"h{i:05d}" for i in range(hosts)]
    monitor = (
        worker_monitor(names, directory, interval, workers)
        if workers > 0
        else gputui_monitor(directory, names, interval)
    )

    @contextlib.asynccontextmanager
    async def open_monitor() -> AsyncIterator[Any]:
        async with monitor:
            yield monitor

    app = GpuTuiApp(MonitorSession(open_monitor), tune_gc=True)  # as `gputui monitor`
    app.animation_level = "none"
    unpatched = Screen._compositor_refresh
    try:
        result = await measure(app, monitor, directory, names, interval, per_kind, settle, seed)
    finally:
        Screen._compositor_refresh = unpatched  # type: ignore[method-assign]
    return {**result, "collector_workers": workers}


async def measure(
    app: GpuTuiApp,
    monitor: Any,
    directory: Path,
    names: list[str],
    interval: float,
    per_kind: int,
    settle: float,
    seed: int,
) -> dict[str, Any]:
    hosts = len(names)
    meter = Meter()
    meter.install()
    watch = ScreenWatch(app)
    watch.install()
    rng = random.Random(seed)
    kinds = [k for k in SHOWS for _ in range(per_kind)]
    rng.shuffle(kinds)
    targets = rng.sample(names, len(kinds))
    latencies: dict[str, list[float]] = {k: [] for k in SHOWS}
    missed: list[str] = []

    def streaming() -> int:
        if isinstance(monitor, FleetMonitor):
            return sum(1 for rt in monitor.hosts.values() if rt.sample is not None)
        return sum(1 for h in monitor.hosts.values() if h.latest.sample is not None)

    async with app.run_test(size=(200, 50)):
        t0 = time.monotonic()
        all_streaming_s: float | None = None
        while time.monotonic() - t0 < settle:
            await asyncio.sleep(0.25)
            if streaming() == hosts:
                all_streaming_s = time.monotonic() - t0
                break
        await asyncio.sleep(3 * interval)
        for kind, host in zip(kinds, targets, strict=True):
            await asyncio.sleep(rng.uniform(0.2, 0.2 + interval))  # anywhere in a period
            shown = watch.expect(host, SHOWS[kind])
            began = await inject(directory, kind, host)
            try:
                at = await asyncio.wait_for(shown, timeout=10 * interval)
            except asyncio.TimeoutError:
                missed.append(f"{kind} {host}")
                continue
            latencies[kind].append((at - began) * 1000)
            if kind == "hot":
                await inject(directory, "cool", host)
        seen_hosts = streaming()
        rss = rss_mib()
        await app.action_quit()
    await app.session.close()

    every = [v for values in latencies.values() for v in values]

    def with_p99(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {**summary(values), "p99_ms": round(ordered[math.ceil(0.99 * len(ordered)) - 1], 2)}

    return {
        "hosts": hosts,
        "gpus": hosts * 8,
        "interval_s": interval,
        "terminal": "200x50",
        "all_streaming_s": None if all_streaming_s is None else round(all_streaming_s, 2),
        "hosts_streaming_at_end": seen_hosts,
        "fault_to_screen_ms": with_p99(every),
        "fault_to_screen_ms_by_kind": {k: with_p99(v) for k, v in latencies.items() if v},
        "target_p99_ms": round(interval * 1000 + 250),
        "missed_within_10_intervals": missed,
        "latencies_ms": {k: [round(x, 1) for x in v] for k, v in latencies.items()},
        "rss_mib": round(rss, 1),
        "python": platform.python_version(),
        "asyncssh": asyncssh.__version__,
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--per-kind", type=int, default=30, help="injections of each kind")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--settle", type=float, default=90.0, help="max s to wait for all hosts")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--workers", type=int, default=0, help="collector worker processes (0: the app's own)"
    )
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    from gputui.collect.fdlimit import raise_soft_limit

    raise_soft_limit()
    with tempfile.TemporaryDirectory(prefix="gputui-bench-") as tmp:
        directory = Path(tmp)
        server = start_server(directory, args.interval)
        try:
            write_client_files(directory, int((directory / "port").read_text()), args.hosts)
            result = asyncio.run(
                run(
                    args.hosts,
                    directory,
                    args.interval,
                    args.per_kind,
                    args.settle,
                    args.seed,
                    args.workers,
                )
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
