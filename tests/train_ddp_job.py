"""A two-rank DDP job on the CPU for tests/test_train_lightning.py: each rank watches its own
simulated GPU (GPU 0 and GPU 1 of one simulated host), rank 1's falls off the bus in the second
epoch. Prints `rank0=...` and `rank1=...` lines saying where each stopped and why."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl

from gputui.agent.sim_backend import SimBackend
from gputui.train.lightning import GPUHealthCallback
from gputui.train.nvml import simulated
from tests.test_train_lightning import SimClock, StepsTheClock, Tiny, loader

TABLE = {
    "name": "ddp",
    "gpus": 2,
    "model": "A100-SXM",
    "workload": "training",
    "fault": [{"kind": "xid", "xid": 79, "gpus": [1], "at": 15.0}],
}


class PerRank(GPUHealthCallback):
    """The health callback, watching the simulated GPU of its rank's number."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        info = SimBackend(TABLE, clock=lambda: 0.0, event_thread=False).hello()["gpus"]
        self.device = str(info[trainer.global_rank]["uuid"])
        super().on_fit_start(trainer, pl_module)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_fit_end(trainer, pl_module)
        own = f"XID {self.fault.xids[0]}" if self.fault is not None and self.fault.xids else "none"
        print(f"rank{trainer.global_rank}=stopped epoch {self.stopped_epoch}, own fault {own}")


def main() -> None:
    out = Path(sys.argv[1])
    clock = SimClock()
    health = PerRank(
        backend=simulated(TABLE, clock=clock),
        every_batches=None,
        checkpoint_path=str(out / "ddp-fault.ckpt"),
        print_summary=False,
    )
    trainer = pl.Trainer(
        max_epochs=6,
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        callbacks=[StepsTheClock(clock), health],
        default_root_dir=str(out),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Tiny(), loader())


if __name__ == "__main__":
    main()
