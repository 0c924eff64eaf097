"""Ingest cost: gputui's collector against the floor and the peers' strategies, side by side.

Simulated hosts (8 GPUs each, 1 s interval) are served by benchmarks/bench_server.py in a
separate process, so their CPU is not counted. Each strategy runs as its own client process,
one after the other against the same server, and reports its own CPU, RSS and samples:

- gputui:   the real FleetMonitor + SshSource (decode, health rules, history, snapshots) with
            one subscriber, as `gputui` and `gputui report` run it; with `--workers N`, the
            monitor over N collector worker processes (gputui/collect/workers/), whose CPU and
            memory are added to the client's and also reported apart;
- floor:    a bare asyncssh client: one streaming command per host, lines read and decoded
            with json.loads, nothing else;
- floor-lean: the least a Python client over asyncssh can do per line, as a reference for how
            far gputui is from it: a callback session per host (no process, no stream reader),
            lines split in data_received and decoded with msgspec into gputui's wire types,
            over gputui's cipher choice;
- exec:     gpustat-web's strategy: one persistent connection per host, a fresh command run
            every interval;
- connect:  nvidia-smi-remote's strategy: a new connection per host per refresh;
- gputui-in-process: gputui's client in one process whatever `--workers` says, so that the
            worker processes and the single process are measured in one run;
- gputui-baseline: gputui's client from another revision (`--baseline-src DIR`), in one
            process (over `--baseline-workers N` worker processes if that revision has
            them), for before and after in one run.

Each strategy is also offered with gputui's cipher choice as STRATEGY-gcm (floor-lean always
uses it).

    python benchmarks/ingest.py --hosts 100 1000 --seconds 20 --out benchmarks/results/ingest.json
    python benchmarks/ingest.py --hosts 1000 --strategies gputui --workers 4

Prints the figures and the ratios gputui / floor (each floor) and peer / gputui, measured in
one run; a strategy named more than once is run each time, and the ratios use its last run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncssh
import msgspec
from procstat import cpu_s, cpu_s_of, rss_mib, rss_mib_of

HERE = Path(__file__).resolve().parent
STRATEGIES = ("gputui", "floor", "floor-lean", "exec", "connect")
# The same strategies over gputui's cipher choice (AES-GCM first, gputui.collect.ssh.CIPHERS)
# instead of asyncssh's default (chacha20-poly1305), to tell the cipher's share from the rest.
GCM = ("floor-gcm", "exec-gcm", "connect-gcm")
# Strategies that offer gputui's ciphers: the -gcm variants, and the lean floor, which is only
# meaningful as a floor for gputui if it pays for the same cipher.
GPUTUI_CIPHERS = (*GCM, "floor-lean")
BASELINE = "gputui-baseline"  # gputui's client from --baseline-src, for before/after in one run
IN_PROCESS = "gputui-in-process"  # gputui's client in one process whatever --workers says


# --------------------------------------------------------------------------------------------
# Clients (each runs in its own process)
# --------------------------------------------------------------------------------------------


class Counter:
    """Samples received and hosts seen; the harness reads them through `refresh()`.

    Strategies that count as they receive leave `refresh` as is; gputui's client counts what
    the monitor holds, and only when asked (at the window's edges and while waiting for every
    host), so the harness adds no periodic work to the process it measures. `helpers` lists the
    processes whose CPU and memory count as the client's too (collector workers).
    """

    def __init__(self) -> None:
        self.samples = 0
        self.hosts_seen: set[str] = set()
        self.refresh: Callable[[], None] = lambda: None
        self.helpers: Callable[[], list[int]] = lambda: []


WORKERS = {"n": 0}  # collector worker processes of gputui's client (--workers)


def worker_monitor(names: list[str], directory: Path, interval: float, workers: int) -> Any:
    """gputui's monitor over `workers` collector worker processes, reaching the bench server's
    hosts as a hosts file's [ssh] would (the workers ship the real agent bootstrap, which the
    server answers like bench-stream)."""
    from gputui.collect.launch import AgentArgs
    from gputui.collect.recipes import HostRecipe
    from gputui.collect.workers.monitor import WorkerMonitor
    from gputui.config import SshSettings

    recipes = [
        HostRecipe(name=n, args=AgentArgs(interval_s=interval, host=n), interval_s=interval)
        for n in names
    ]
    ssh = SshSettings(
        config_files=(directory / "ssh_config",), known_hosts=directory / "known_hosts"
    )
    return WorkerMonitor(recipes, workers, ssh=ssh, tick_s=interval)


async def client_gputui_workers(
    names: list[str], directory: Path, interval: float, c: Counter
) -> None:
    monitor = worker_monitor(names, directory, interval, WORKERS["n"])
    async with monitor:

        async def consume() -> None:
            async for _snap in monitor.snapshots():
                pass

        def refresh() -> None:
            # Every sample reaches the parent's rings (the frames carry each one).
            hosts = monitor.hosts.values()
            c.samples = sum(h.history.appended for h in hosts if h.history is not None)
            c.hosts_seen = {h.name for h in hosts if h.latest.sample is not None}

        c.refresh = refresh
        c.helpers = lambda: [p for p in (link.pid for link in monitor.links) if p is not None]
        task = asyncio.create_task(consume())
        try:
            await asyncio.Event().wait()
        finally:
            task.cancel()


async def client_gputui(names: list[str], directory: Path, interval: float, c: Counter) -> None:
    if WORKERS["n"] > 0:
        await client_gputui_workers(names, directory, interval, c)
        return
    from gputui.agent.bundle import build_bundle
    from gputui.collect.launch import AgentInvocation
    from gputui.collect.monitor import FleetMonitor, HostPlan
    from gputui.collect.ssh import SshContext, SshOptions
    from gputui.collect.ssh_source import SshSource

    ctx = SshContext(
        SshOptions(config_files=(directory / "ssh_config",), known_hosts=directory / "known_hosts")
    )
    inv = AgentInvocation(command="bench-stream", stdin=build_bundle(include_pynvml=False))
    plans = [HostPlan(source=SshSource(n, ctx, lambda: inv), interval_s=interval) for n in names]
    monitor = FleetMonitor(plans, tick_s=interval, closers=[ctx.close])
    async with monitor:

        async def consume() -> None:
            async for _snap in monitor.snapshots():
                pass

        def refresh() -> None:
            c.samples = sum(rt.decoder.stats.good for rt in monitor.hosts.values())
            c.hosts_seen = {n for n, rt in monitor.hosts.items() if rt.sample is not None}

        c.refresh = refresh
        task = asyncio.create_task(consume())
        try:
            await asyncio.Event().wait()
        finally:
            task.cancel()


CIPHER_CHOICE: dict[str, object] = {}  # extra asyncssh.connect options of this process


class BareClient:
    """What the bare asyncssh strategies share: the handshake bound, known hosts, the key."""

    def __init__(self, directory: Path) -> None:
        self.config = [str(directory / "ssh_config")]
        self.sem = asyncio.Semaphore(64)
        self.known_hosts = asyncssh.read_known_hosts(str(directory / "known_hosts"))
        self.keys = asyncssh.load_keypairs([str(directory / "client_key")])

    async def connect(self, name: str) -> asyncssh.SSHClientConnection:
        async with self.sem:
            return await asyncssh.connect(
                name,
                config=self.config,
                known_hosts=self.known_hosts,
                client_keys=self.keys,
                **CIPHER_CHOICE,
            )


def received(c: Counter, name: str, line: bytes) -> None:
    """Decode one sample line and count it, as each bare strategy does."""
    json.loads(line or b"{}")
    c.samples += 1
    c.hosts_seen.add(name)


async def every(interval: float, poll: Callable[[], Awaitable[None]]) -> None:
    """Run `poll` once per interval on a fixed schedule, as a polling tool does."""
    next_t = time.monotonic()
    while True:
        await poll()
        next_t += interval
        await asyncio.sleep(max(0.0, next_t - time.monotonic()))


async def client_floor(names: list[str], directory: Path, interval: float, c: Counter) -> None:
    bare = BareClient(directory)

    async def one(name: str) -> None:
        conn = await bare.connect(name)
        proc = await conn.create_process("bench-stream", encoding=None)
        async for line in proc.stdout:
            if line.strip():
                received(c, name, line)

    await asyncio.gather(*(one(n) for n in names))


class LeanSession(asyncssh.SSHClientSession[bytes]):
    """One host's stream at the least per-line cost: asyncssh hands each channel data packet
    straight to `data_received` (no SSHClientProcess, no stream reader, no readline), which
    splits it into lines and decodes each one with msgspec, as gputui's collector decodes it."""

    def __init__(self, name: str, c: Counter) -> None:
        from gputui.core.model import AgentMessage

        self._name = name
        self._counter = c
        self._decode = msgspec.json.Decoder(AgentMessage).decode
        self._tail = b""  # a line cut across packets: the agent's lines are ~1.5-4.8 KB

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if b"\n" not in data:
            self._tail += data
            return
        lines = data.split(b"\n")
        if self._tail:
            lines[0] = self._tail + lines[0]
        self._tail = lines.pop()
        c = self._counter
        for line in lines:
            if line:
                self._decode(line)
                c.samples += 1
        c.hosts_seen.add(self._name)


async def client_floor_lean(names: list[str], directory: Path, interval: float, c: Counter) -> None:
    bare = BareClient(directory)

    async def one(name: str) -> None:
        conn = await bare.connect(name)
        chan, _session = await conn.create_session(
            lambda: LeanSession(name, c), "bench-stream", encoding=None
        )
        await chan.wait_closed()

    await asyncio.gather(*(one(n) for n in names))


async def client_exec(names: list[str], directory: Path, interval: float, c: Counter) -> None:
    bare = BareClient(directory)

    async def one(name: str) -> None:
        conn = await bare.connect(name)

        async def poll() -> None:
            result = await conn.run("bench-once", encoding=None)
            received(c, name, result.stdout)  # type: ignore[arg-type]

        await every(interval, poll)

    await asyncio.gather(*(one(n) for n in names))


async def client_connect(names: list[str], directory: Path, interval: float, c: Counter) -> None:
    bare = BareClient(directory)

    async def one(name: str) -> None:
        async def poll() -> None:
            async with await bare.connect(name) as conn:
                result = await conn.run("bench-once", encoding=None)
            received(c, name, result.stdout)  # type: ignore[arg-type]

        await every(interval, poll)

    await asyncio.gather(*(one(n) for n in names))


CLIENTS = {
    "gputui": client_gputui,
    "floor": client_floor,
    "floor-lean": client_floor_lean,
    "exec": client_exec,
    "connect": client_connect,
}


async def run_client(
    strategy: str, n: int, directory: Path, interval: float, seconds: float, settle_limit: float
) -> dict[str, object]:
    names = [f"h{i:05d}" for i in range(n)]
    counter = Counter()
    if strategy in GPUTUI_CIPHERS:
        from gputui.collect.ssh import CIPHERS

        CIPHER_CHOICE["encryption_algs"] = CIPHERS
        strategy = strategy.removesuffix("-gcm")
    t0 = time.monotonic()
    task = asyncio.create_task(CLIENTS[strategy](names, directory, interval, counter))
    all_streaming_s: float | None = None
    while time.monotonic() - t0 < settle_limit:
        await asyncio.sleep(0.05)
        if task.done():
            task.result()
        counter.refresh()
        if len(counter.hosts_seen) == n:
            all_streaming_s = time.monotonic() - t0
            break
    await asyncio.sleep(2 * interval)  # let the start-up burst pass
    counter.refresh()
    helpers = counter.helpers()
    helpers_cpu0 = sum(cpu_s_of(p) for p in helpers)
    cpu0, s0, w0 = cpu_s(), counter.samples, time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, w1 = cpu_s(), time.monotonic()
    counter.refresh()  # synchronous: no sample arrives between the two lines
    s1 = counter.samples
    helpers_cpu = sum(cpu_s_of(p) for p in helpers) - helpers_cpu0
    own_rss = rss_mib()
    rss = own_rss + sum(rss_mib_of(p) for p in helpers)
    task.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(task, 10)
    wall = w1 - w0
    samples = s1 - s0
    own_cpu = cpu1 - cpu0
    cpu1 += helpers_cpu  # the client's cost is its own and its workers'
    apart = {}
    if helpers:
        apart = {
            "workers": len(helpers),
            "client_process_cpu_pct": round(100 * own_cpu / wall, 2),
            "workers_cpu_pct": round(100 * helpers_cpu / wall, 2),
            "client_process_rss_mib": round(own_rss, 1),
        }
    return {
        "strategy": strategy,
        **apart,
        "hosts": n,
        "all_streaming_s": None if all_streaming_s is None else round(all_streaming_s, 2),
        "hosts_seen": len(counter.hosts_seen),
        "window_s": round(wall, 2),
        "cpu_pct_of_one_core": round(100 * (cpu1 - cpu0) / wall, 2),
        "rss_mib": round(rss, 1),
        "samples_per_s": round(samples / wall, 1),
        "expected_samples_per_s": round(n / interval, 1),
        "us_per_host_sample": round(1e6 * (cpu1 - cpu0) / samples, 1) if samples else None,
    }


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------


def write_client_files(directory: Path, port: int, n: int) -> None:
    pub = asyncssh.read_private_key(str(directory / "host_key")).export_public_key().decode()
    (directory / "known_hosts").write_text(f"[127.0.0.1]:{port} {pub.strip()}\n")
    (directory / "ssh_config").write_text(
        f"Host h*\n  HostName 127.0.0.1\n  Port {port}\n  User bench\n"
        f"  IdentityFile {directory / 'client_key'}\n"
    )


def start_server(directory: Path, interval: float) -> subprocess.Popen[bytes]:
    for name in ("host_key", "client_key"):
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(str(directory / name))
        if name == "client_key":
            key.write_public_key(str(directory / "client_key.pub"))
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "bench_server.py"), str(directory), str(interval)],
        stdin=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not (directory / "port").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("bench server did not start")
        time.sleep(0.05)
    return proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, nargs="+", default=[100, 1000])
    ap.add_argument(
        "--strategies",
        nargs="+",
        default=["gputui", "floor", "floor-gcm", "floor-lean", "exec", "exec-gcm", "connect"],
        choices=(*STRATEGIES, *GCM, BASELINE, IN_PROCESS),
    )
    ap.add_argument(
        "--baseline-src",
        type=Path,
        help=f"a checkout of another revision: strategy {BASELINE!r} runs gputui's client from it",
    )
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--settle", type=float, default=60.0, help="max seconds to wait for all hosts")
    ap.add_argument("--out", type=Path)
    ap.add_argument(
        "--workers",
        type=int,
        default=0,
        help="gputui's client reads the streams in N collector worker processes (0: in-process)",
    )
    ap.add_argument(
        "--baseline-workers",
        type=int,
        default=0,
        help=f"{BASELINE!r} over N collector worker processes (a revision that has them)",
    )
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.client:  # one client process
        from gputui.collect.fdlimit import raise_soft_limit

        raise_soft_limit()
        WORKERS["n"] = args.workers
        result = asyncio.run(
            run_client(
                args.client, args.hosts[0], args.dir, args.interval, args.seconds, args.settle
            )
        )
        print(json.dumps(result))
        return

    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="gputui-bench-") as tmp:
        directory = Path(tmp)
        server = start_server(directory, args.interval)
        try:
            write_client_files(directory, int((directory / "port").read_text()), max(args.hosts))
            for n in args.hosts:
                for strategy in args.strategies:
                    env = dict(os.environ)
                    if strategy == BASELINE:
                        if args.baseline_src is None:
                            raise SystemExit(f"{BASELINE} needs --baseline-src")
                        env["PYTHONPATH"] = str(args.baseline_src.resolve())
                    done = subprocess.run(
                        [
                            sys.executable,
                            str(Path(__file__).resolve()),
                            "--client",
                            "gputui" if strategy in (BASELINE, IN_PROCESS) else strategy,
                            "--hosts",
                            str(n),
                            "--dir",
                            str(directory),
                            "--seconds",
                            str(args.seconds),
                            "--interval",
                            str(args.interval),
                            "--settle",
                            str(args.settle),
                            "--workers",
                            str(
                                args.baseline_workers
                                if strategy == BASELINE
                                else 0
                                if strategy == IN_PROCESS
                                else args.workers
                            ),
                        ],
                        capture_output=True,
                        text=True,
                        timeout=args.settle + args.seconds + 120,
                        env=env,
                        # An older revision starts its workers with `python -m`, which
                        # imports from the current directory first: run it from its own.
                        cwd=args.baseline_src if strategy == BASELINE else None,
                    )
                    if done.returncode != 0:
                        print(done.stderr[-2000:], file=sys.stderr)
                        continue
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                    result["strategy"] = strategy
                    results.append(result)
                    print(json.dumps(result), flush=True)
        finally:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(timeout=30)
    ratios = []
    for n in args.hosts:
        by = {r["strategy"]: r for r in results if r["hosts"] == n}  # the last run of each
        g = by.get("gputui")
        if not g or not g["us_per_host_sample"]:
            continue
        row: dict[str, object] = {"hosts": n}
        for s, r in by.items():
            if s in ("gputui", IN_PROCESS) or not r["us_per_host_sample"]:
                continue
            below = str(s).startswith("floor") or s == BASELINE  # ratio: gputui over it
            key = f"gputui_over_{s}" if below else f"{s}_over_gputui"
            if s == BASELINE:
                key = "gputui_over_baseline"
            a, b = (g, r) if below else (r, g)
            row[key] = round(
                float(str(a["us_per_host_sample"])) / float(str(b["us_per_host_sample"])), 2
            )
        one = by.get(IN_PROCESS)  # the in-process client beside the workers, over the floors
        for s, r in by.items():
            below = str(s).startswith("floor") or s == BASELINE
            if one and one["us_per_host_sample"] and below and r["us_per_host_sample"]:
                cost = float(str(one["us_per_host_sample"])) / float(str(r["us_per_host_sample"]))
                row[f"in_process_over_{s}"] = round(cost, 2)
        ratios.append(row)
        print(json.dumps(row))
    doc = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, asyncssh {asyncssh.__version__}",
        "date": time.strftime("%Y-%m-%d"),
        "interval_s": args.interval,
        "window_s": args.seconds,
        "results": results,
        "ratios": ratios,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
