"""Compare the agent's NVML readings with nvidia-smi's on a machine with a real NVIDIA GPU.

Runs, side by side for DURATION seconds at 1 s interval, the agent with the nvml backend and
the agent with the smi backend (one long-lived `nvidia-smi --query-gpu ... -lms 1000`), then
prints per GPU and field the mean of each and flags those that disagree beyond a tolerance.
Also reports the nvml agent's CPU use (target: under 0.5% of one core at 1 s interval).

Memory is compared as nvidia-smi counts it: the agent's used (NVML v2) against `memory.used`,
and its reserved against `memory.reserved`. Where only one side reports the reserved memory
(NVML v2 without nvidia-smi's field, or the reverse), that is flagged too.

Needs only python3 (3.8+) and pynvml (nvidia-ml-py); run from the repository root:

    python3 scripts/device_check.py [--duration 20]
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

from gputui.agent.fields import READINGS  # noqa: E402

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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=20.0)
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
    print(f"fields that disagree: {bad}")
    return 1 if bad or cpu_pct >= 0.5 else 0


if __name__ == "__main__":
    sys.exit(main())
