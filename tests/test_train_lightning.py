"""The Lightning callback in real PyTorch Lightning runs on the CPU, its GPU the simulated
NVML's: a scripted XID 79 in the third epoch saves a checkpoint and stops the run there; a
healthy run records every epoch and never stops; in a two-rank DDP run (gloo, CPU) a fault on
rank 1's GPU stops both ranks at the same epoch with one checkpoint.

The simulation's clock is stepped by the epochs (epoch e, from 0, ends at 10e+9 simulated
seconds), so a fault scripted at 25 s falls in the third epoch at any machine speed.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch

from gputui.agent.sim_backend import SimBackend
from gputui.core.model import Level
from gputui.train.lightning import GPUHealthCallback
from gputui.train.nvml import simulated

HERE = Path(__file__).parent


class SimClock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


class StepsTheClock(pl.Callback):
    """Moves the simulated clock to each epoch's end before the health callback looks."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.clock.t = 10.0 * trainer.current_epoch + 9.0


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def loader() -> torch.utils.data.DataLoader[Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    data = torch.utils.data.TensorDataset(x, x.sum(dim=1, keepdim=True))
    return torch.utils.data.DataLoader(data, batch_size=16)


def scenario(*faults: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "pl",
        "gpus": 2,
        "model": "A100-SXM",
        "workload": "training",
        "fault": list(faults),
    }


def uuid_of(table: dict[str, Any], index: int) -> str:
    return str(
        SimBackend(table, clock=lambda: 0.0, event_thread=False).hello()["gpus"][index]["uuid"]
    )


def trainer(callbacks: list[pl.Callback], root: Path, epochs: int = 8) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        callbacks=callbacks,
        default_root_dir=str(root),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


def test_an_xid_79_in_epoch_3_saves_a_checkpoint_and_stops_there(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUTUI_HEARTBEAT_DIR", str(tmp_path / "beats"))
    table = scenario({"kind": "xid", "xid": 79, "gpus": [1], "at": 25.0})
    clock = SimClock()
    health = GPUHealthCallback(
        device=uuid_of(table, 1),
        backend=simulated(table, clock=clock),
        every_batches=None,
        checkpoint_path=str(tmp_path / "fault-{epoch}.ckpt"),
        print_summary=False,
    )
    run = trainer([StepsTheClock(clock), health], tmp_path)
    with caplog.at_level(logging.ERROR, logger="gputui.train"):
        run.fit(Tiny(), loader())
    assert run.current_epoch == 3  # epochs 0, 1 and 2 ran (Lightning counts the next one)
    assert health.stopped and health.stopped_epoch == 3
    saved = tmp_path / "fault-3.ckpt"
    assert health.checkpoint == str(saved) and saved.is_file()
    restored = torch.load(saved, weights_only=False)
    assert restored["epoch"] == 2 and "layer.weight" in restored["state_dict"]
    fault = health.fault
    assert fault is not None and fault.gpu == 1 and fault.xids == (79,)
    assert fault.level is Level.FAILED
    assert [c.level for _, (c,) in health.history] == [Level.OK, Level.OK, Level.FAILED]
    (logged,) = [r.getMessage() for r in caplog.records if r.name == "gputui.train"]
    assert "GPU 1" in logged and "NVIDIA's action: reboot node" in logged


def test_a_healthy_run_records_every_epoch_and_never_stops(tmp_path: Path) -> None:
    table = scenario()
    clock = SimClock()
    health = GPUHealthCallback(
        device=uuid_of(table, 0),
        backend=simulated(table, clock=clock),
        every_batches=2,
        checkpoint_path=str(tmp_path / "never.ckpt"),
        heartbeat=False,
        print_summary=False,
    )
    run = trainer([StepsTheClock(clock), health], tmp_path, epochs=3)
    run.fit(Tiny(), loader())
    assert run.current_epoch == 3 and not health.stopped
    assert not (tmp_path / "never.ckpt").exists()
    assert [epoch for epoch, _ in health.history] == [1, 2, 3]
    for _, (check,) in health.history:
        assert check.gpu == 0 and check.level is Level.OK
        assert check.temp_slowdown_c == 89 and check.power_limit_w == 400
    # Every 2 batches of 4, plus each epoch's end: at least the epochs' checks were made.
    assert len(health.session.history) >= 3 if health.session else False


def test_a_fault_on_one_rank_stops_both_ranks_of_a_ddp_job(tmp_path: Path) -> None:
    """Two real DDP ranks (gloo on the CPU), each watching its own simulated GPU: rank 1's
    falls off the bus in the second epoch; both stop after it, with one checkpoint."""
    script = HERE / "train_ddp_job.py"
    env = dict(os.environ, PYTHONPATH=str(HERE.parent), GPUTUI_HEARTBEAT_DIR=str(tmp_path / "b"))
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert lines["rank0"] == "stopped epoch 2, own fault none"
    assert lines["rank1"] == "stopped epoch 2, own fault XID 79"
    assert (tmp_path / "ddp-fault.ckpt").is_file()
