"""Device check, training step: on a machine with a real NVIDIA GPU, train a small model for
about a minute with the Lightning callback and again with GPUGuard, and report each one's
per-check history, the guard's overhead (benchmarks/train_overhead.py --real), and the
heartbeat the real agent reads while the loop runs. Needs torch with CUDA and lightning; no
network. Exits 0 when every part ran, the GPU was watched and the agent saw the heartbeat.

    python3 scripts/device_check_train.py [--seconds 60] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def agent_heartbeats(env: dict[str, str]) -> list[dict[str, Any]]:
    """The heartbeats the real agent forwards in one full sample (--once)."""
    done = subprocess.run(
        [sys.executable, "-m", "gputui.agent", "--backend", "nvml", "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    for line in done.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("type") == "sample":
            return list(msg.get("heartbeats") or [])
    return []


def guard_run(seconds: float) -> dict[str, Any]:
    import torch

    from gputui.train import GPUGuard

    device = torch.device("cuda", 0)
    a = torch.randn(4096, 4096, device=device, dtype=torch.bfloat16)
    guard = GPUGuard(every_steps=100, device=0, heartbeat_s=1.0)
    beats: list[dict[str, Any]] = []

    def look() -> None:
        time.sleep(seconds / 2)
        beats.extend(agent_heartbeats(dict(os.environ)))

    watcher = threading.Thread(target=look)
    watcher.start()
    end = time.monotonic() + seconds
    steps = 0
    while time.monotonic() < end:
        (a @ a).sum().item()  # a step that waits for its GPU, as a training step does
        guard.step()
        steps += 1
    watcher.join()
    history = [json.loads(json.dumps(c, default=str)) for c in _plain(guard.history)]
    out = {
        "steps": steps,
        "checks": len(guard.history),
        "history": history,
        "watch_error": guard.session.watch.error,
        "agent_heartbeats": beats,
        "uuid": guard.session.watch.uuid,
    }
    guard.close()
    return out


def _plain(checks: Any) -> list[dict[str, Any]]:
    import msgspec

    return [msgspec.to_builtins(c) for c in checks]


def lightning_run(seconds: float, out: Path) -> dict[str, Any]:
    import lightning.pytorch as pl
    import torch

    from gputui.train.lightning import GPUHealthCallback

    class Model(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(2048, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 1)
            )

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=1e-4)

    x = torch.randn(16384, 2048)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, x.mean(dim=1, keepdim=True)), batch_size=256
    )
    health = GPUHealthCallback(every_batches=20, checkpoint_path=str(out / "fault.ckpt"))
    trainer = pl.Trainer(
        accelerator="gpu",
        devices=1,
        max_time={"seconds": seconds},
        max_epochs=10_000,
        callbacks=[health],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    start = time.monotonic()
    trainer.fit(Model(), data)
    return {
        "seconds": round(time.monotonic() - start, 1),
        "epochs": trainer.current_epoch,
        "history": [[e, _plain(c)] for e, c in health.history],
        "stopped": health.stopped,
        "summary": health.summary(),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="gputui-train-check-"))
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GPUTUI_HEARTBEAT_DIR", str(out / "heartbeats"))
    report: dict[str, Any] = {}
    report["guard"] = guard_run(args.seconds)
    report["lightning"] = lightning_run(args.seconds, out)
    bench = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "train_overhead.py"),
            "--real",
            "--device",
            "0",
            "--steps",
            "1000",
            "--rounds",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    report["overhead"] = json.loads(bench.stdout) if bench.returncode == 0 else bench.stderr
    (out / "train-check.json").write_text(json.dumps(report, indent=2, default=str))
    guard = report["guard"]
    seen = [b for b in guard["agent_heartbeats"] if b.get("uuid") == guard["uuid"]]
    print(report["lightning"]["summary"])
    print(
        f"GPUGuard: {guard['steps']} steps, {guard['checks']} checks, "
        f"watch error: {guard['watch_error']}"
    )
    print(f"agent heartbeats for this GPU: {seen}")
    print(f"overhead: {json.dumps(report['overhead'])}")
    print(f"full report: {out / 'train-check.json'}")
    ok = guard["watch_error"] is None and guard["checks"] > 0 and bool(seen)
    return 0 if ok and isinstance(report["overhead"], dict) else 1


if __name__ == "__main__":
    sys.exit(main())
