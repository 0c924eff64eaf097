"""The examples run as users run them: the seed's Keras program with the callback, on random
data shaped like MNIST, against a simulated host whose GPU 3 falls off the bus 2 s in; and the
Lightning DDP example with two CPU ranks on a healthy simulated host."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gputui.train import EXIT_GPU_FAULT

ROOT = Path(__file__).parent.parent


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KERAS_BACKEND="torch", GPUTUI_HEARTBEAT_DIR=str(cwd / "beats"))
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )


def test_the_keras_example_stops_on_the_xid_and_exits_75(tmp_path: Path) -> None:
    script = str(ROOT / "examples" / "keras_gpu_health.py")
    done = run([script, "--synthetic", "--simulate", "xid79", "--epochs", "200"], tmp_path)
    assert done.returncode == EXIT_GPU_FAULT, done.stderr[-2000:]
    assert (tmp_path / "gpu_fault.keras").is_file()
    assert "GPU 3" in done.stderr and "NVIDIA's action: reboot node" in done.stderr
    assert "GPU health per epoch, GPU 3" in done.stdout
    assert "Test accuracy" not in done.stdout  # it never got there


def test_the_lightning_example_trains_two_cpu_ranks_to_the_end(tmp_path: Path) -> None:
    script = str(ROOT / "examples" / "lightning_ddp.py")
    argv = [script, "--cpu", "--devices", "2", "--simulate", "healthy"]
    done = run([*argv, "--epochs", "2", "--samples", "512"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "GPU health per epoch, GPU 0" in done.stdout
    assert "Epoch 2:" in done.stdout and "Stopped" not in done.stdout
