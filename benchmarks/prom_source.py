"""The Prometheus source at fleet size: query and decode cost per tick, memory, detection latency.

N simulated hosts x 8 GPUs (gputui/collect/dcgm_sim.py, dcgm-exporter's default fields) are
served by a few loopback endpoints in a child process and scraped by a real Prometheus
(Debian's /usr/bin/prometheus, its TSDB in a scratch directory). This process runs the
Prometheus source over them, each host with its real HostRuntime (health rules included), and
measures:

- per tick: the wall time of the tick's queries (one per metric family, bounded concurrency),
  the decoding and mapping, and the feeding of every host's runtime; and this process's CPU
  time per tick (all threads);
- this process's resident memory before the source starts and after the ticks;
- detection latency: the exporter is told (SIGUSR1) to report XID 79 on one GPU; the time from
  then to the host's verdict turning `failed` (scrape interval + query interval + judging).

    python benchmarks/prom_source.py --hosts 500 --endpoints 4 --scrape-s 2 --ticks 10 \
        [--ssh-hosts 1000] [--out benchmarks/results/prom_source-500.json]

prints one JSON object. With `--ssh-hosts N`, the same run then measures the SSH path at N
hosts (benchmarks/ingest.py's gputui client, in one process, after Prometheus and the
simulated exporter have stopped), so the two per-GPU costs come from one run on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from gputui.collect.host_runtime import HostRuntime
from gputui.collect.prom_source import PromFleetSource, discover_hosts
from gputui.config.model import PromSettings
from gputui.core.model import Level


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sim(
    directory: Path, hosts: int, endpoints: int, step_s: float
) -> tuple[subprocess.Popen[bytes], list[int]]:
    ports_file = directory / "ports.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gputui.collect.dcgm_sim", "--hosts", f"healthy:{hosts}",
         "--endpoints", str(endpoints), "--ports-file", str(ports_file),
         "--step-s", str(step_s)],
        stdin=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while not ports_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the simulated exporter did not start")
        time.sleep(0.1)
    return proc, list(json.loads(ports_file.read_text())["endpoints"])


def start_prometheus(
    directory: Path, ports: list[int], scrape_s: float
) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    port = free_port()
    config = directory / "prometheus.yml"
    targets = json.dumps([f"127.0.0.1:{p}" for p in ports])
    config.write_text(
        f"global:\n  scrape_interval: {scrape_s:g}s\n  scrape_timeout: {scrape_s:g}s\n"
        f"scrape_configs:\n  - job_name: dcgm\n    static_configs:\n      - targets: {targets}\n"
    )
    log = (directory / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


def wait_scraped(url: str, targets: int, scrapes: int, timeout_s: float = 300) -> None:
    # Successful scrapes of each target so far (up is 1 for each).
    promql = urllib.parse.urlencode({"query": 'sum_over_time(up{job="dcgm"}[10m])'})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/v1/query?{promql}", timeout=5) as reply:
                result = json.load(reply)["data"]["result"]
            counts = [float(r["value"][1]) for r in result]
            if len(counts) == targets and min(counts) >= scrapes:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("prometheus did not scrape every target")


async def measure(
    args: argparse.Namespace, url: str, sim: subprocess.Popen[bytes]
) -> dict[str, Any]:
    settings = PromSettings(
        url=url, series="dcgm", scrape_interval_s=args.scrape_s, query_interval_s=args.query_s,
        timeout_s=60, listed_hosts=False,
    )  # fmt: skip
    names = await discover_hosts(settings)
    rss_before = rss_mib()
    poller = PromFleetSource(settings)
    runtimes = {
        name: HostRuntime(name, interval_s=poller.interval_s, history_len=0, emit=lambda e, u: None)
        for name in names
    }
    for name, runtime in runtimes.items():
        poller.register(name, runtime)  # fed by the ticks below, not by a polling task
    walls: list[float] = []
    cpus: list[float] = []
    query_s: list[float] = []
    feed_s: list[float] = []
    for _ in range(args.ticks):
        start, cpu = time.perf_counter(), time.process_time()
        await poller.tick()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
        query_s.append(poller.last_query_s)
        feed_s.append(poller.last_feed_s)
        if poller.last_error:
            raise SystemExit(poller.last_error)
        await asyncio.sleep(max(0.0, args.query_s - walls[-1]))
    rss_after = rss_mib()
    first = names[0]
    assert runtimes[first].verdict.host.level is Level.OK, runtimes[first].verdict
    injected = time.monotonic()
    os.kill(sim.pid, signal.SIGUSR1)
    detected: float | None = None
    while time.monotonic() - injected < 10 * (args.scrape_s + args.query_s):
        tick_start = time.monotonic()
        await poller.tick()
        if runtimes[first].verdict.host.level is Level.FAILED:
            detected = time.monotonic() - injected
            break
        await asyncio.sleep(max(0.0, args.query_s - (time.monotonic() - tick_start)))
    series = len(names) * 8
    return {
        "hosts": len(names),
        "gpus": series,
        "endpoints": args.endpoints,
        "scrape_s": args.scrape_s,
        "query_s": args.query_s,
        "queries_per_tick": len(poller.reader.families) + 1,
        "ticks": args.ticks,
        "tick_wall_s_median": round(statistics.median(walls), 4),
        "tick_wall_s_max": round(max(walls), 4),
        "tick_query_decode_map_s_median": round(statistics.median(query_s), 4),
        "tick_feed_judge_s_median": round(statistics.median(feed_s), 4),
        "tick_cpu_s_median": round(statistics.median(cpus), 4),
        "tick_cpu_us_per_gpu": round(statistics.median(cpus) / series * 1e6, 2),
        "rss_mib_before": round(rss_before, 1),
        "rss_mib_after": round(rss_after, 1),
        "rss_kib_per_host": round((rss_after - rss_before) * 1024 / len(names), 1),
        "detection_s": round(detected, 2) if detected is not None else None,
        "cpu_count": os.cpu_count(),
    }


def ssh_path(hosts: int) -> dict[str, Any]:
    """The SSH path's cost at `hosts` hosts, by benchmarks/ingest.py's gputui client (one process:
    the per-GPU CPU of the same health rules and history, fed by SSH streams)."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("ingest.py")), "--hosts", str(hosts),
         "--strategies", "gputui", "--seconds", "20", "--settle", "90"],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    row = next(r for r in rows if r.get("strategy") == "gputui")
    gpus = hosts * 8
    return {
        "hosts": hosts,
        "interval_s": 1.0,
        "cpu_pct_of_one_core": row["cpu_pct_of_one_core"],
        "us_per_host_sample": row["us_per_host_sample"],
        "cpu_us_per_gpu_sample": round(row["us_per_host_sample"] / 8, 2),
        "rss_mib": row["rss_mib"],
        "rss_kib_per_host": round(row["rss_mib"] * 1024 / hosts, 1),
        "gpus": gpus,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=500)
    ap.add_argument("--endpoints", type=int, default=4)
    ap.add_argument("--scrape-s", type=float, default=2.0)
    ap.add_argument("--query-s", type=float, default=2.0)
    ap.add_argument("--ticks", type=int, default=10)
    ap.add_argument("--ssh-hosts", type=int, help="then the SSH path at this many hosts")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gputui-prom-bench-") as tmp:
        directory = Path(tmp)
        # The simulation steps once per scrape: at 0.25 s steps, 10,000 hosts read every
        # tens of seconds cost the simulator more CPU than this machine has.
        sim, ports = start_sim(
            directory, args.hosts, args.endpoints, max(0.25, min(60.0, args.scrape_s))
        )
        prom, url = start_prometheus(directory, ports, args.scrape_s)
        try:
            wait_scraped(url, len(ports), 2)
            result = asyncio.run(measure(args, url, sim))
        finally:
            prom.terminate()
            prom.wait(30)
            if sim.stdin is not None:
                sim.stdin.close()
            sim.wait(30)
    if args.ssh_hosts:
        result["ssh_path"] = ssh_path(args.ssh_hosts)
    print(json.dumps(result), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
