"""Device check, start-up step: where `gputui report` and bare `gputui` spend their time on a
machine with real GPUs, beside `nvitop --once` (docs/benchmarks.md, "Start-up").

1. The machine: cores, load, each GPU's persistence mode (nvidia-smi), what numpy links as
   its BLAS, and whether torch and scipy are installed.
2. numpy's import with its BLAS thread pool and with one thread (OPENBLAS_NUM_THREADS=1):
   wall, CPU and the threads left, the pool's cost on this many cores.
3. NVML's start as bare `gputui` checks for a GPU: nvmlInit, the GPU count, nvmlShutdown; with
   no other client, then while another process holds NVML open (as bare `gputui` does for its
   agent once it found a GPU).
4. The agent, `--once` with the backend: wall and CPU, when its hello and its sample come out,
   and when it exits; and its backend in one process: its start, its hello, full and fast
   samples.
5. `python -X importtime` of `gputui report` on this machine: import time by package.
6. benchmarks/startup.py with the backend: `gputui report` and the first paint, several runs,
   beside nvitop --once where installed, with their timelines (--trace).

Everything goes to startup-check.json in --out (its path is printed), a summary to the
terminal. Needs gputui's own dependencies importable; makes no network call. Exits 1 when a
step failed to run.

    python3 scripts/device_check_startup.py [--backend nvml] [--runs 5] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REPEATS = 3

# numpy imported in a fresh interpreter: how long, and the threads its import left running.
NUMPY_PROBE = (
    "import os, time\n"
    "t = time.perf_counter()\n"
    "import numpy\n"
    "print(time.perf_counter() - t, len(os.listdir('/proc/self/task')))\n"
)
# NVML's start as bare `gputui` checks for a GPU (gputui/cli/local_mode.py, nvml_problem).
NVML_PROBE = (
    "import time\n"
    "t = time.perf_counter()\n"
    "import pynvml\n"
    "i = time.perf_counter()\n"
    "pynvml.nvmlInit()\n"
    "n = pynvml.nvmlDeviceGetCount()\n"
    "c = time.perf_counter()\n"
    "pynvml.nvmlShutdown()\n"
    "print(i - t, c - i, time.perf_counter() - c, n)\n"
)


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, str, int]:
    """(wall s, CPU s of the process and the children it reaped, stdout, exit status)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.stdout.close()
    wall = time.monotonic() - started
    code = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, out.decode(errors="replace"), code


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count(), "load_1min": os.getloadavg()[0]}
    query = ["nvidia-smi", "--query-gpu=index,name,persistence_mode,driver_version", "--format=csv"]
    try:
        smi = subprocess.run(query, capture_output=True, text=True, check=False)
        info["gpus"] = smi.stdout.strip().splitlines()[1:] if smi.returncode == 0 else smi.stderr
    except OSError as exc:  # no driver here (a dry run with the simulated backend)
        info["gpus"] = f"nvidia-smi: {exc}"
    for lib in ("numpy", "scipy", "torch", "nvitop"):
        probe = subprocess.run(
            [sys.executable, "-c", f"import {lib}; print({lib}.__version__)"],
            capture_output=True,
            text=True,
            check=False,
        )
        info[lib] = probe.stdout.strip() if probe.returncode == 0 else None
    blas = subprocess.run(
        [sys.executable, "-c", "import numpy; numpy.show_config()"],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"blas:.*?name: (\S+).*?version: (\S+)", blas.stdout, re.S)
    info["numpy_blas"] = " ".join(found.groups()) if found else None
    return info


def numpy_pool() -> dict[str, Any]:
    """numpy's import as it comes, and with one BLAS thread."""
    out: dict[str, Any] = {}
    for label, extra in (("pool", {}), ("one thread", {"OPENBLAS_NUM_THREADS": "1"})):
        env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
        runs = []
        for _ in range(REPEATS):
            wall, cpu, text, code = _timed([sys.executable, "-c", NUMPY_PROBE], {**env, **extra})
            if code != 0:
                return {"error": f"numpy does not import (exit {code})"}
            took, threads = text.split()
            runs.append(
                {"wall_s": wall, "cpu_s": cpu, "import_s": float(took), "threads": int(threads)}
            )
        out[label] = runs
    return out


# A process that holds NVML open, as bare `gputui` does once it found a GPU
# (gputui/cli/local_mode.py), until its stdin closes.
NVML_HOLDER = "import pynvml, sys\npynvml.nvmlInit()\nprint('held', flush=True)\nsys.stdin.read()\n"


def _nvml_runs() -> list[dict[str, float]] | str:
    runs = []
    for _ in range(REPEATS):
        wall, cpu, text, code = _timed([sys.executable, "-c", NVML_PROBE], _env())
        if code != 0:
            return f"NVML does not start (exit {code})"
        imported, init, shutdown, count = text.split()
        runs.append(
            {
                "wall_s": wall,
                "cpu_s": cpu,
                "import_s": float(imported),
                "init_and_count_s": float(init),
                "shutdown_s": float(shutdown),
                "gpus": int(count),
            }
        )
    return runs


def nvml_start() -> dict[str, Any]:
    """NVML's start with no other client (each run's shutdown lets the driver take the GPUs
    down without persistence mode), then while another process holds NVML open."""
    out: dict[str, Any] = {"alone": _nvml_runs()}
    holder = subprocess.Popen(
        [sys.executable, "-c", NVML_HOLDER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_env(),
        cwd=ROOT,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        if holder.stdout.readline().strip() == b"held":
            out["while_held"] = _nvml_runs()
        else:
            out["while_held"] = "the holder could not open NVML"
    finally:
        holder.stdin.close()
        holder.wait(30)
    return out


def agent_once(backend: str) -> list[dict[str, Any]]:
    """The agent's --once run: when each line came out, when it ended, its CPU."""
    runs = []
    for _ in range(REPEATS):
        argv = [sys.executable, "-m", "gputui.agent", "--backend", backend, "--once"]
        started = time.monotonic()
        proc = subprocess.Popen(
            [*argv, "--stdin-watch", "off"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_env(),
            cwd=ROOT,
        )
        assert proc.stdout is not None
        lines = []
        for raw in proc.stdout:
            kind = json.loads(raw).get("type", "?") if raw.startswith(b"{") else "?"
            lines.append({"type": kind, "at_s": time.monotonic() - started, "bytes": len(raw)})
        _, status, usage = os.wait4(proc.pid, 0)
        proc.stdout.close()
        runs.append(
            {
                "lines": lines,
                "exit_s": time.monotonic() - started,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "exit_code": os.waitstatus_to_exitcode(status),
            }
        )
    return runs


# The agent's backend in a fresh interpreter: how long its start, its hello (the inventory),
# a full sample (slow signals: ECC, remapped rows, PCIe, NVLink, processes) and a fast one take.
SAMPLE_PROBE = """
import json, sys, time
from gputui.agent.main import build_parser, pick_backend
t = time.perf_counter()
backend = pick_backend(build_parser().parse_args(["--backend", sys.argv[1], "--once"]))
out = {"start_s": time.perf_counter() - t}
t = time.perf_counter()
backend.hello()
out["hello_s"] = time.perf_counter() - t
for slow in (True, False, True, False):
    t = time.perf_counter()
    backend.sample(slow)
    out.setdefault("slow_s" if slow else "fast_s", []).append(time.perf_counter() - t)
backend.close()
print(json.dumps(out))
"""


def backend_costs(backend: str) -> dict[str, Any] | str:
    """The agent's backend start, hello, full and fast samples, timed in one process."""
    done = subprocess.run(
        [sys.executable, "-c", SAMPLE_PROBE, backend],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        return f"the backend did not start (exit {done.returncode}): {done.stderr[-500:]}"
    costs: dict[str, Any] = json.loads(done.stdout)
    return costs


def import_profile(hosts: Path) -> dict[str, Any]:
    """`python -X importtime` of `gputui report`: milliseconds by top package, largest first."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gputui.cli", "report", "--hosts", str(hosts)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        check=False,
    )
    by_package: Counter[str] = Counter()
    for line in done.stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if found:
            parts = found.group(2).split(".")
            top = ".".join(parts[:2]) if parts[0] == "gputui" else parts[0]
            by_package[top] += int(found.group(1))
    return {
        "exit_code": done.returncode,
        "total_ms": round(sum(by_package.values()) / 1000, 1),
        "by_package_ms": {k: round(v / 1000, 1) for k, v in by_package.most_common(20)},
    }


def startup_benchmark(backend: str, runs: int, out: Path) -> dict[str, Any] | str:
    result = out / "startup.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "startup.py"),
            "--backend",
            backend,
            "--runs",
            str(runs),
            "--trace",
            "--out",
            str(result),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=1800,
    )
    print(done.stdout)
    if done.returncode != 0 or not result.exists():
        return f"benchmarks/startup.py failed (exit {done.returncode}): {done.stderr[-2000:]}"
    loaded: dict[str, Any] = json.loads(result.read_text())
    return loaded


def summary(report: dict[str, Any]) -> list[str]:
    lines = [f"machine: {json.dumps(report['machine'])}"]
    pool = report["numpy"]
    if "error" not in pool:
        for label, runs in pool.items():
            best = min(runs, key=lambda r: r["wall_s"])
            lines.append(
                f"numpy import, {label}: {best['wall_s']:.3f} s wall, {best['cpu_s']:.3f} s CPU, "
                f"{best['threads']} threads (best of {len(runs)})"
            )
    nvml = report["nvml_start"]
    for how, runs in nvml.items() if isinstance(nvml, dict) else ():
        if isinstance(runs, list):
            inits = ", ".join(f"{r['init_and_count_s']:.3f}" for r in runs)
            lines.append(f"nvmlInit + count, {how}: {inits} s; {runs[0]['gpus']} GPUs")
    for run in report["agent_once"]:
        said = ", ".join(f"{ln['type']} at {ln['at_s']:.3f} s" for ln in run["lines"])
        lines.append(
            f"agent --once: {said}; exit at {run['exit_s']:.3f} s, {run['cpu_s']:.3f} s CPU"
        )
    costs = report["backend_costs"]
    if isinstance(costs, dict):
        lines.append(
            f"backend: start {costs['start_s']:.3f} s, hello {costs['hello_s']:.3f} s, full "
            f"samples {', '.join(f'{v:.3f}' for v in costs['slow_s'])} s, fast "
            f"{', '.join(f'{v:.3f}' for v in costs['fast_s'])} s"
        )
    imports = report["imports"]
    top = ", ".join(f"{k} {v:g}" for k, v in list(imports["by_package_ms"].items())[:8])
    lines.append(f"report's imports: {imports['total_ms']:g} ms ({top} ms)")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="nvml", choices=["nvml", "auto", "smi", "sim"])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="gputui-startup-check-"))
    out.mkdir(parents=True, exist_ok=True)
    hosts = out / "hosts.toml"
    hosts.write_text(f'hosts = ["localhost"]\n\n[defaults]\nbackend = "{args.backend}"\n')
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "backend": args.backend,
        "machine": machine(),
        "numpy": numpy_pool(),
        "nvml_start": nvml_start() if args.backend != "sim" else "not asked (sim)",
        "agent_once": agent_once(args.backend),
        "backend_costs": backend_costs(args.backend),
        "imports": import_profile(hosts),
    }
    report["benchmark"] = startup_benchmark(args.backend, args.runs, out)
    (out / "startup-check.json").write_text(json.dumps(report, indent=2, default=str))
    print("\n".join(summary(report)))
    print(f"full report: {out / 'startup-check.json'}")
    failed = (
        isinstance(report["benchmark"], str)
        or report["imports"]["exit_code"] not in (0, 1, 2)
        or any(run["exit_code"] != 0 for run in report["agent_once"])
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
