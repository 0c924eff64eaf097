"""Compare the agent's NVML readings with nvidia-smi's on a machine with a real NVIDIA GPU.

Runs, side by side for DURATION seconds at 1 s interval, the agent with the nvml backend and
the agent with the smi backend (one long-lived `nvidia-smi --query-gpu ... -lms 1000`), then
prints per GPU and field the mean of each and flags those that disagree beyond a tolerance.
Also reports the nvml agent's CPU use (target: under 0.5% of one core at 1 s interval).

Memory is compared as nvidia-smi counts it: the agent's used (NVML v2) against `memory.used`,
and its reserved against `memory.reserved`. Where only one side reports the reserved memory
(NVML v2 without nvidia-smi's field, or the reverse), that is flagged too.

Then the held-clock counters (time the clocks were held down per reason): the agent's NVML
backend reads them, in this process, and `nvidia-smi -q -d PERFORMANCE` right after; since
they only grow, nvidia-smi's must lie between the agent's and the agent's plus the time
between the two reads. A counter only one side reports is flagged: the agent picks NVML's
field ids by the driver's release (gputui/agent/fields.py, HELD_FIELD_IDS), and this is where
a wrong guess shows. With `--load S` (and torch installed) the check runs a bf16 matmul on
every GPU for S seconds between two such comparisons, and reports, per reason, how far each
counter moved against how long the agent saw that reason's bit set (sampled every 0.1 s).

Needs only python3 (3.8+) and pynvml (nvidia-ml-py); run from the repository root:

    python3 scripts/device_check.py [--duration 20] [--load 30]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from a checkout: the agent's field table

from gputui.agent.fields import HELD_BITS, HELD_FIELDS, READINGS  # noqa: E402
from gputui.agent.smi_parse import bus_key, parse_held_counters  # noqa: E402

# field -> (absolute tolerance, relative tolerance): disagreement beyond both is flagged. Each
# field's tolerance is declared beside its NVML call and nvidia-smi field (gputui/agent/fields.py).
FAST_FIELDS = {f.name: f.tolerance for f in READINGS if f.tolerance is not None}
# Fields that both sides must report when either does.
BOTH_OR_NEITHER = ("mem_used_mib", "mem_reserved_mib")
HELLO_FIELDS = (
    "uuid",
    "name",
    "memory_total_mib",
    "power_limit_w",
    "temp_slowdown_c",
    "temp_shutdown_c",
    "temp_gpu_max_c",
    "pcie_gen_max",
    "pcie_width_max",
)


def start(backend: str, duration: float) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gputui.agent",
            "--backend",
            backend,
            "--interval",
            "1",
            "--duration",
            str(duration),
            "--stdin-watch",
            "off",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def collect(proc: subprocess.Popen[bytes]) -> tuple[list[dict], float, str]:
    """The messages, the process's CPU seconds, and its stderr."""
    out = proc.stdout.read() if proc.stdout else b""
    err = proc.stderr.read() if proc.stderr else b""
    _, _status, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    msgs = [json.loads(line) for line in out.splitlines() if line.strip()]
    return msgs, usage.ru_utime + usage.ru_stime, err.decode(errors="replace")


def means(msgs: list[dict]) -> dict[int, dict[str, float]]:
    sums: dict[int, dict[str, list[float]]] = {}
    for m in msgs:
        if m.get("type") != "sample":
            continue
        for g in m["gpus"]:
            for f in FAST_FIELDS:
                if isinstance(g.get(f), (int, float)):
                    sums.setdefault(g["index"], {}).setdefault(f, []).append(float(g[f]))
    return {i: {f: sum(v) / len(v) for f, v in fs.items()} for i, fs in sums.items()}


def field_differs(field: str, nvml: float | None, smi: float | None) -> bool:
    """Whether the two means of `field` disagree beyond its tolerance, or only one side
    reports a field both must have."""
    if nvml is None or smi is None:
        return field in BOTH_OR_NEITHER and (nvml is None) != (smi is None)
    abs_tol, rel_tol = FAST_FIELDS[field]
    return abs(nvml - smi) > max(abs_tol, rel_tol * abs(smi))


# -- held-clock counters -------------------------------------------------------------------

# Microseconds of rounding between the two readers (NVML's ns floored to us, nvidia-smi's own).
COUNTER_SLACK_US = 1

LOAD_SCRIPT = """
import sys, threading, time, torch
seconds = float(sys.argv[1])
def burn(i):
    torch.cuda.set_device(i)
    a = torch.randn(8192, 8192, device="cuda:%d" % i, dtype=torch.bfloat16)
    b = torch.randn_like(a)
    end = time.time() + seconds
    while time.time() < end:
        for _ in range(20):
            a @ b
        torch.cuda.synchronize(i)
threads = [threading.Thread(target=burn, args=(i,)) for i in range(torch.cuda.device_count())]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def counter_problems(nvml: dict, smi: dict, apart_us: float) -> list[str]:
    """What disagrees between one GPU's held-clock counters as the agent read them and as
    nvidia-smi printed them right after, at most `apart_us` microseconds later."""
    out = []
    for name in HELD_FIELDS:
        a, b = nvml.get(name), smi.get(name)
        if a is None and b is None:
            continue
        if a is None or b is None:
            side = "nvidia-smi" if a is None else "the agent (NVML)"
            out.append(f"{name}: only {side} reports it ({b if a is None else a} us)")
        elif not -COUNTER_SLACK_US <= b - a <= apart_us + COUNTER_SLACK_US:
            out.append(f"{name}: agent {a} us, nvidia-smi {b} us, read {apart_us:.0f} us apart")
    return out


def performance_report() -> str:
    """`nvidia-smi -q -d PERFORMANCE`: the report with the held-clock counters."""
    return subprocess.run(
        ["nvidia-smi", "-q", "-d", "PERFORMANCE"], capture_output=True, text=True, check=False
    ).stdout


def read_counters(backend, buses: dict, report=performance_report) -> tuple[dict, dict, float]:
    """(agent's counters by GPU index, nvidia-smi's by GPU index, microseconds between the
    start of the agent's read and the end of nvidia-smi's)."""
    t0 = time.monotonic()
    sample = backend.sample(slow=True)
    text = report()
    apart_us = (time.monotonic() - t0) * 1e6
    nvml = {g["index"]: {k: v for k, v in g.items() if k in HELD_FIELDS} for g in sample["gpus"]}
    smi = {}
    for key, counters in parse_held_counters(text):
        if key in buses:
            smi[buses[key]] = counters
    return nvml, smi, apart_us


def compare_counters(
    backend, buses: dict, when: str, report=performance_report
) -> tuple[int, dict]:
    """Print one comparison; (disagreements, the agent's counters by GPU)."""
    nvml, smi, apart_us = read_counters(backend, buses, report)
    bad = 0
    print(
        f"\nheld-clock counters, {when} (agent | nvidia-smi -q, read {apart_us / 1e3:.0f} ms apart)"
    )
    for index in sorted(set(nvml) | set(smi)):
        problems = counter_problems(nvml.get(index, {}), smi.get(index, {}), apart_us)
        for name in HELD_FIELDS:
            a, b = nvml.get(index, {}).get(name), smi.get(index, {}).get(name)
            fa = "-" if a is None else f"{a / 1e6:.3f} s"
            fb = "-" if b is None else f"{b / 1e6:.3f} s"
            flag = "   <-- differs" if any(p.startswith(name + ":") for p in problems) else ""
            print(f"  GPU{index} {name:26} {fa:>14} | {fb:<14}{flag}")
        for p in problems:
            print(f"  GPU{index} {p}")
        bad += len(problems)
    return bad, nvml


def bits_during(backend, proc: subprocess.Popen) -> tuple[dict, float]:
    """Seconds each reason's clock-event bit was seen set per GPU while `proc` runs (fast
    samples every 0.1 s), and how long that was."""
    seen: dict = {}
    start = last = time.monotonic()
    while proc.poll() is None:
        time.sleep(0.1)
        now = time.monotonic()
        for g in backend.sample(slow=False)["gpus"]:
            bits = g.get("clock_events") or 0
            for name, bit in HELD_BITS.items():
                if bits & bit:
                    per_gpu = seen.setdefault(g["index"], {})
                    per_gpu[name] = per_gpu.get(name, 0.0) + (now - last)
        last = now
    return seen, last - start


def load_argv(load_s: float):
    """The load's command: a bf16 matmul on every GPU, or None without torch."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    return [sys.executable, "-c", LOAD_SCRIPT, str(load_s)]


def check_counters(load_s: float, nvml=None, report=performance_report, load=None) -> int:
    """Compare the held-clock counters idle and, with a load, after it; the disagreements.
    `nvml` (default pynvml), `report` (default nvidia-smi's) and `load` (default
    load_argv()) let the flow run against the simulated NVML in tests."""
    from gputui.agent.nvml_backend import NvmlBackend

    if nvml is None:
        import pynvml as nvml
    backend = NvmlBackend(nvml, event_thread=False)
    try:
        buses = {}
        for g in backend.hello()["gpus"]:
            key = bus_key(g.get("pci_bus_id", ""))
            if key is not None:
                buses[key] = g["index"]
        bad, before = compare_counters(backend, buses, "before the load", report)
        if load_s <= 0:
            return bad
        argv = load if load is not None else load_argv(load_s)
        if argv is None:
            print("torch is not installed: no load, the counters were compared idle only")
            return bad
        proc = subprocess.Popen(argv)
        seen, wall = bits_during(backend, proc)
        if proc.returncode != 0:
            print(f"the load exited with {proc.returncode}")
            bad += 1
        more, after = compare_counters(backend, buses, f"after {wall:.0f} s of load", report)
        bad += more
        print("\nover the load: counter moved | its bit seen set (0.1 s samples)")
        for index in sorted(after):
            for name in HELD_FIELDS:
                if name in after[index] and name in before.get(index, {}):
                    moved = (after[index][name] - before[index][name]) / 1e6
                    bit = seen.get(index, {}).get(name, 0.0)
                    print(f"  GPU{index} {name:26} {moved:10.1f} s | {bit:8.1f} s")
        return bad
    finally:
        backend.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument(
        "--load", type=float, default=0.0, help="seconds of matmul load for the counters check"
    )
    args = ap.parse_args()
    try:
        import pynvml  # noqa: F401
    except ImportError:
        print("pynvml is not installed: pip install nvidia-ml-py", file=sys.stderr)
        return 2
    t0 = time.time()
    nvml, smi = start("nvml", args.duration), start("smi", args.duration)
    nvml_msgs, nvml_cpu, nvml_err = collect(nvml)
    smi_msgs, _smi_cpu, smi_err = collect(smi)
    wall = time.time() - t0
    hello_n = next((m for m in nvml_msgs if m.get("type") == "hello"), None)
    hello_s = next((m for m in smi_msgs if m.get("type") == "hello"), None)
    if hello_n is None or hello_s is None:
        print("an agent produced no hello:\nnvml: " + nvml_err + "\nsmi: " + smi_err)
        return 1
    print(
        f"driver {hello_n.get('driver_version')}, NVML {hello_n.get('nvml_version')}, "
        f"CUDA {hello_n.get('cuda_version')}, {len(hello_n['gpus'])} GPU(s): "
        f"{', '.join(sorted({g['name'] for g in hello_n['gpus']}))}"
    )
    bad = 0
    print("\ninventory (nvml | nvidia-smi)")
    for gn, gs in zip(hello_n["gpus"], hello_s["gpus"]):  # noqa: B905 (runs on 3.8)
        for f in HELLO_FIELDS:
            a, b = gn.get(f), gs.get(f)
            same = a == b or (
                isinstance(a, (int, float))
                and isinstance(b, (int, float))
                and abs(a - b) <= max(1.0, 0.01 * abs(b))
            )
            flag = "" if same or b is None else "   <-- differs"
            bad += bool(flag)
            print(f"  GPU{gn['index']} {f:18} {a!s:>40} | {b!s:<40}{flag}")
    print("\nreadings, mean over the run (nvml | nvidia-smi)")
    mn, ms = means(nvml_msgs), means(smi_msgs)
    for idx in sorted(mn):
        for f in FAST_FIELDS:
            a, b = mn[idx].get(f), ms.get(idx, {}).get(f)
            if a is None and b is None:
                continue
            differs = field_differs(f, a, b)
            bad += differs
            fa = "-" if a is None else f"{a:.1f}"
            fb = "-" if b is None else f"{b:.1f}"
            print(f"  GPU{idx} {f:26} {fa:>10} | {fb:<10}{'   <-- differs' if differs else ''}")
    events = [m for m in nvml_msgs if m.get("type") in ("event", "error")]
    for e in events:
        print("  " + json.dumps(e))
    cpu_pct = 100 * nvml_cpu / wall
    print(
        f"\nnvml agent CPU: {nvml_cpu:.2f} s over {wall:.1f} s = {cpu_pct:.2f}% of one core "
        f"(target < 0.5%; includes start-up)"
    )
    bad += check_counters(args.load)
    print(f"fields that disagree: {bad}")
    return 1 if bad or cpu_pct >= 0.5 else 0


if __name__ == "__main__":
    sys.exit(main())
