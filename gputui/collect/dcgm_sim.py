"""A simulated dcgm-exporter: the `DCGM_FI_*` series of many simulated hosts over HTTP.

For tests, the demo and benchmarks of the Prometheus source. Each simulated host runs the
agent's own sim backend (the NVML backend over the simulated NVML, with the packaged scenarios:
healthy, xid79, thermal, ...), so the readings a Prometheus scrapes here are the ones the SSH
path would stream from the same scenario. One endpoint serves many hosts, each series labelled
with its Hostname as dcgm-exporter labels them, as a few scrape targets can serve a fleet.

What is served is dcgm-exporter's default field set (its default-counters.csv): no clock-event
reasons, no ECC counts, no NVLink counters, so the source's gaps show as they would on a real
site; `--fields all` serves every DCGM field of core/prom_series.py. A lost GPU serves only its
XID series, as DCGM returns blank values for a GPU off the bus. DCGM_FI_DEV_XID_ERRORS carries
the last XID seen on the GPU, 0 before any.

HPC job labels, as dcgm-exporter adds them from its job mapping directory (one file per GPU,
one job id a line, written by a Slurm prolog): every series of a GPU that runs jobs carries
`hpc_job`, repeated once per job. `--jobs` runs the fleet's Slurm jobs as `gputui demo` places
them (collect/sim_jobs.py: multi-host data-parallel jobs, whole-host and shared hosts);
`--hpc-job HOST:GPUS=TEXT` puts any text there, as a mapping file may hold it (an empty text,
an id with its line ending, garbage), on those GPUs in place of their jobs.

    python -m gputui.collect.dcgm_sim --hosts healthy:3,xid79:1,thermal:1 \
        --endpoints 2 --ports-file ports.json [--sim-elapsed 60] [--fields default|all] \
        [--jobs] [--hpc-job sim-002:0-3=4242 ...]

writes ports.json ({"endpoints": [port, ...], "hosts": {"sim-001": port, ...}}) once every
listener is up, on 127.0.0.1 only, and serves until stdin closes or SIGTERM. SIGUSR1 injects a
fault at once, for detection benchmarks: DCGM reports XID 79 on GPU 0 of the first host.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gputui.agent.sim_backend import SimBackend
from gputui.agent.simulation import EVENT_XID
from gputui.collect.prom_fleet import DCGM_FB_FREE
from gputui.collect.scenarios import load_scenario
from gputui.collect.sim_jobs import assign_jobs
from gputui.core import prom_series as ps

#: dcgm-exporter's default field set (default-counters.csv), among the fields gputui reads.
DEFAULT_FIELDS = frozenset(
    {
        "DCGM_FI_DEV_SM_CLOCK",
        "DCGM_FI_DEV_MEM_CLOCK",
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
        "DCGM_FI_DEV_ROW_REMAP_FAILURE",
    }
)
ALL_FIELDS = frozenset(s.dcgm for s in ps.GPU_SERIES if s.dcgm is not None)
# The fewest seconds between two reads of the simulation: scrapes in between get the same text.
MIN_READ_S = 0.5
#: The seed of the fleet's job placement with --jobs (as `gputui demo`'s default).
JOBS_SEED = 0

#: Host -> GPU index -> the `hpc_job` values of its series (one series per value).
HpcJobs = dict[str, dict[int, list[str]]]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


@dataclass
class SimHost:
    """One simulated host: its backend, inventory labels and the last XID of each GPU."""

    name: str
    scenario: str
    backend: SimBackend
    labels: dict[int, str] = field(default_factory=dict)  # GPU index -> its label text
    # GPU index -> the label text of each of its series: one per HPC job, with its hpc_job
    jobs: dict[int, list[str]] = field(default_factory=dict)
    memory_total_mib: dict[int, float] = field(default_factory=dict)
    last_xid: dict[int, int] = field(default_factory=dict)
    _events_read: int = 0

    def inject_xid(self, gpu: int, xid: int) -> None:
        """DCGM reports `xid` on `gpu` from the next read on (a fault injected from outside)."""
        self.last_xid[gpu] = xid

    def set_jobs(self, gpu: int, jobs: Sequence[str]) -> None:
        """The `hpc_job` values of `gpu`'s series from the next read on (none: no label)."""
        self.jobs[gpu] = [f'{self.labels[gpu]},hpc_job="{_escape(job)}"' for job in jobs]

    def label_sets(self, gpu: int) -> list[str]:
        """The label text of each of `gpu`'s series: dcgm-exporter repeats a GPU's series once
        per job its mapping file lists."""
        return self.jobs.get(gpu) or [self.labels[gpu]]

    def read_xids(self) -> None:
        """DCGM keeps the last XID of each GPU: read it from the simulation's event log (the
        driver's record), which holds the XIDs of GPUs already lost too."""
        events = self.backend.simulation.events
        for ev in events[self._events_read :]:
            if ev.event_type == EVENT_XID:
                self.last_xid[ev.gpu] = int(ev.data)
        self._events_read = len(events)


def make_host(
    name: str, scenario: str, seed: int, elapsed_s: float | None, step_s: float | None = None
) -> SimHost:
    backend = SimBackend(load_scenario(scenario), seed=seed, event_thread=False, step_s=step_s)
    # The inventory is read before the simulation moves on, as DCGM reads it when it starts:
    # a GPU lost later keeps its UUID on its XID series.
    hello = backend.hello()
    if elapsed_s:
        backend.start_at(elapsed_s)
    host = SimHost(name, scenario, backend)
    for gpu in hello["gpus"]:
        idx = int(gpu["index"])
        host.labels[idx] = (
            f'gpu="{idx}",UUID="{_escape(str(gpu["uuid"]))}",device="nvidia{idx}",'
            f'modelName="{_escape(str(gpu["name"]))}",Hostname="{_escape(name)}"'
        )
        host.last_xid[idx] = 0
        if gpu.get("memory_total_mib") is not None:
            host.memory_total_mib[idx] = float(gpu["memory_total_mib"])
    return host


class SimExporter:
    """The exposition text of a set of simulated hosts, re-read at most every MIN_READ_S."""

    def __init__(self, hosts: Sequence[SimHost], fields: frozenset[str] = DEFAULT_FIELDS) -> None:
        self.hosts = list(hosts)
        self.series = [s for s in ps.GPU_SERIES if s.dcgm is not None and s.dcgm in fields]
        self._lock = threading.Lock()
        self._text = b""
        self._read_at = -1.0
        self.down = False  # answer 503 to every scrape (a target down)

    def fresh(self) -> None:
        """The next scrape reads the simulation again, however soon."""
        with self._lock:
            self._read_at = -1.0

    def text(self) -> bytes:
        with self._lock:
            now = time.monotonic()
            if now - self._read_at >= MIN_READ_S:
                self._text = self._render()
                self._read_at = now
            return self._text

    def _render(self) -> bytes:
        lines: dict[str, list[str]] = {s.dcgm: [] for s in self.series if s.dcgm is not None}
        xids: list[str] = []
        free: list[str] = []
        for host in self.hosts:
            sample = host.backend.sample(slow=True)
            host.read_xids()
            for reading in sample["gpus"]:
                idx = int(reading["index"])
                labels = host.label_sets(idx)
                xid = host.last_xid.get(idx, 0)
                xids.extend(f"{ps.DCGM_XID}{{{label}}} {xid}" for label in labels)
                if reading.get("status", "ok") != "ok":
                    continue  # DCGM has blank values for a GPU off the bus: no series
                for s in self.series:
                    value = reading.get(s.field)
                    if value is not None and s.dcgm is not None:
                        text = _number(value)
                        lines[s.dcgm].extend(f"{s.dcgm}{{{label}}} {text}" for label in labels)
                total = host.memory_total_mib.get(idx)
                if total is not None and reading.get("mem_used_mib") is not None:
                    left = total - reading["mem_used_mib"] - reading.get("mem_reserved_mib", 0.0)
                    text = _number(max(0.0, left))
                    free.extend(f"{DCGM_FB_FREE}{{{label}}} {text}" for label in labels)
        out: list[str] = []
        for s in self.series:
            assert s.dcgm is not None
            out.append(f"# HELP {s.dcgm} {s.help}")
            out.append(f"# TYPE {s.dcgm} {s.kind}")
            out.extend(lines[s.dcgm])
        out.append(f"# HELP {DCGM_FB_FREE} Frame buffer memory free (in MiB).")
        out.append(f"# TYPE {DCGM_FB_FREE} gauge")
        out.extend(free)
        out.append(f"# HELP {ps.DCGM_XID} Value of the last XID error encountered.")
        out.append(f"# TYPE {ps.DCGM_XID} gauge")
        out.extend(xids)
        return ("\n".join(out) + "\n").encode()


def _handler(exporter: SimExporter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            if exporter.down:
                self.send_error(503)
                return
            body = exporter.text()
            # A scraper that timed out has gone: its answer is dropped.
            with contextlib.suppress(OSError):
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a scrape a second is not news

    return Handler


def serve(exporter: SimExporter, port: int = 0) -> ThreadingHTTPServer:
    """A listener on 127.0.0.1 serving `exporter` at /metrics, in a daemon thread."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(exporter))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="dcgm-sim", daemon=True).start()
    return server


def parse_mix(text: str) -> list[str]:
    """'healthy:3,xid79:1' -> the scenario of each host, in order."""
    out: list[str] = []
    for part in text.split(","):
        name, _, count = part.strip().partition(":")
        n = int(count) if count else 1
        if not name or n < 0:
            raise ValueError(f"expected SCENARIO[:COUNT], got {part!r}")
        out.extend([name] * n)
    if not out:
        raise ValueError("no hosts")
    return out


def parse_hpc_job(text: str) -> tuple[str, list[int], str]:
    """'sim-002:0-3=4242' -> ('sim-002', [0, 1, 2, 3], '4242'); GPUS as `0,2` or `0-3`."""
    spec, sep, value = text.partition("=")
    host, _, gpus = spec.rpartition(":")
    if not sep or not host or not gpus:
        raise ValueError(f"expected HOST:GPUS=TEXT, got {text!r}")
    indices: list[int] = []
    for part in gpus.split(","):
        first, _, last = part.partition("-")
        indices.extend(range(int(first), int(last or first) + 1))
    return host, indices, value


def host_names(mix: Sequence[str], prefix: str = "sim") -> list[str]:
    """The names of `mix`'s hosts: PREFIX-001, ..."""
    width = max(3, len(str(len(mix))))
    return [f"{prefix}-{i + 1:0{width}d}" for i in range(len(mix))]


def fleet_jobs(mix: Sequence[str], prefix: str = "sim", seed: int = JOBS_SEED) -> HpcJobs:
    """The Slurm jobs of each GPU of `mix`'s hosts, placed as `gputui demo` places them
    (a Kubernetes pod is no HPC job: dcgm-exporter labels pods otherwise)."""
    hosts = [(n, load_scenario(sc)) for n, sc in zip(host_names(mix, prefix), mix, strict=True)]
    out: HpcJobs = {}
    for name, sc in assign_jobs(hosts, seed):
        for job in sc.get("job") or ():
            if job["kind"] == "slurm":
                for gpu in job["gpus"]:
                    out.setdefault(name, {}).setdefault(int(gpu), []).append(str(job["id"]))
    return out


def build(
    mix: Sequence[str],
    endpoints: int,
    elapsed_s: float | None = None,
    fields: frozenset[str] = DEFAULT_FIELDS,
    prefix: str = "sim",
    jobs: Mapping[str, Mapping[int, Sequence[str]]] | None = None,
    step_s: float | None = None,
) -> list[SimExporter]:
    """`len(mix)` simulated hosts named PREFIX-001..., dealt round-robin over `endpoints`,
    with `jobs` (host -> GPU -> `hpc_job` values) on their series."""
    hosts = [
        make_host(name, scenario, seed=i + 1, elapsed_s=elapsed_s, step_s=step_s)
        for i, (name, scenario) in enumerate(zip(host_names(mix, prefix), mix, strict=True))
    ]
    by_name = {h.name: h for h in hosts}
    for name, gpus in (jobs or {}).items():
        host = by_name.get(name)
        if host is None:
            raise ValueError(f"--hpc-job names {name!r}, which is not a host of the fleet")
        for gpu, values in gpus.items():
            if gpu not in host.labels:
                raise ValueError(f"--hpc-job names GPU {gpu} of {name}, which has no such GPU")
            host.set_jobs(gpu, values)
    n = max(1, min(endpoints, len(hosts)))
    return [SimExporter(hosts[k::n], fields) for k in range(n)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gputui.collect.dcgm_sim")
    parser.add_argument("--hosts", required=True, help="SCENARIO[:COUNT],... e.g. healthy:3,xid79")
    parser.add_argument("--endpoints", type=int, default=1)
    parser.add_argument("--ports-file", type=Path, required=True)
    parser.add_argument("--sim-elapsed", type=float, default=None)
    parser.add_argument(
        "--step-s",
        type=float,
        default=None,
        help="the simulation's step (default 0.25 s): a fleet of thousands read every tens of "
        "seconds costs each read a step per GPU, not hundreds",
    )
    parser.add_argument("--fields", choices=("default", "all"), default="default")
    parser.add_argument("--prefix", default="sim")
    parser.add_argument(
        "--jobs", action="store_true", help="hpc_job labels of the fleet's Slurm jobs"
    )
    parser.add_argument(
        "--hpc-job",
        action="append",
        default=[],
        metavar="HOST:GPUS=TEXT",
        help="hpc_job TEXT on those GPUs' series (repeat for several jobs on one GPU)",
    )
    args = parser.parse_args(argv)
    try:
        mix = parse_mix(args.hosts)
        fields = ALL_FIELDS if args.fields == "all" else DEFAULT_FIELDS
        jobs = fleet_jobs(mix, args.prefix) if args.jobs else {}
        given: HpcJobs = {}
        for text in args.hpc_job:
            host, gpus, value = parse_hpc_job(text)
            for gpu in gpus:
                given.setdefault(host, {}).setdefault(gpu, []).append(value)
        for host, by_gpu in given.items():
            jobs.setdefault(host, {}).update(by_gpu)  # in place of the fleet's jobs there
        exporters = build(
            mix, args.endpoints, args.sim_elapsed, fields, args.prefix, jobs, args.step_s
        )
    except Exception as exc:  # a bad argument or scenario: one line, not a traceback
        print(f"dcgm_sim: {exc}", file=sys.stderr)
        return 2
    servers = [serve(e) for e in exporters]
    ports = [s.server_address[1] for s in servers]
    hosts = {h.name: port for e, port in zip(exporters, ports, strict=True) for h in e.hosts}
    tmp = args.ports_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"endpoints": ports, "hosts": hosts}))
    os.replace(tmp, args.ports_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def inject(*_: object) -> None:
        exporters[0].hosts[0].inject_xid(0, 79)
        exporters[0].fresh()

    signal.signal(signal.SIGUSR1, inject)

    def until_stdin_closes() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        stop.set()

    threading.Thread(target=until_stdin_closes, daemon=True).start()
    stop.wait()
    for s in servers:
        s.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
