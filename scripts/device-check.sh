#!/usr/bin/env bash
# On a machine with a real NVIDIA GPU: run the agent's nvml backend for ~20 s beside nvidia-smi,
# print both side by side with every field that disagrees, and the agent's CPU use; then compare
# the held-clock counters (time the clocks were held down per reason) with nvidia-smi -q, idle
# and after LOAD seconds (default 30) of a bf16 matmul on every GPU where torch is installed;
# then the training step (TRAIN) and the start-up step (STARTUP), each described where it runs.
# Needs python3 (3.8+), nvidia-smi and pynvml (installed here from PyPI if missing and reachable).
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi -L
python3 -c "import pynvml" 2>/dev/null || python3 -m pip install -q nvidia-ml-py \
    || { echo "pynvml missing and PyPI unreachable: install nvidia-ml-py" >&2; exit 2; }
python3 scripts/device_check.py --duration "${DURATION:-20}" --load "${LOAD:-30}"
# Inside the training loop (docs/training.md): TRAIN seconds (default 60) of a small model with
# the Lightning callback and with GPUGuard, their history, the guard's overhead and the
# heartbeat the agent forwards. Needs torch with CUDA and lightning; TRAIN=0 leaves it out.
if [ "${TRAIN:-60}" != "0" ]; then
    if python3 -c "import torch, lightning; assert torch.cuda.is_available()" 2>/dev/null; then
        python3 scripts/device_check_train.py --seconds "${TRAIN:-60}"
    else
        echo "training step left out: torch with CUDA and lightning are needed" >&2
    fi
fi
# Start-up (docs/benchmarks.md, "Start-up"): `gputui report` on this machine and bare gputui's
# first paint, beside nvitop --once where installed, with the profile that explains them (numpy's
# BLAS pool, NVML's start, the agent's --once, -X importtime, timelines). STARTUP runs of each
# (default 5); STARTUP=0 leaves it out. Needs gputui's own dependencies importable.
if [ "${STARTUP:-5}" != "0" ]; then
    if python3 -c "import gputui.cli.report_cmd, textual" 2>/dev/null; then
        python3 scripts/device_check_startup.py --backend nvml --runs "${STARTUP:-5}"
    else
        echo "start-up step left out: gputui's dependencies are not importable" >&2
    fi
fi
