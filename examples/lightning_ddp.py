"""A PyTorch Lightning DDP job with gputui's GPUHealthCallback on every rank.

    python examples/lightning_ddp.py --devices 8                  # this node's GPUs
    srun --ntasks-per-node=8 python examples/lightning_ddp.py --devices 8 --nodes 4
    python examples/lightning_ddp.py --cpu --devices 2 --simulate xid79   # no GPU needed

Each rank watches its own GPU and writes its heartbeat (the agent forwards it: the Jobs view
shows the job's step rate and each rank's speed beside its GPU's verdict). When any rank's GPU
turns critical or fails, every rank saves `gpu_fault.ckpt` together, stops, and exits 75 so
the launcher can restart the job on healthy nodes (docs/training.md). `--cpu --simulate`
runs the ranks on the CPU (gloo), each watching GPU RANK of a simulated host.
"""

from __future__ import annotations

import argparse
from typing import Any

import lightning.pytorch as pl
import torch

from gputui.train.lightning import GPUHealthCallback
from gputui.train.nvml import simulated


class Regression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1)
        )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


def loader(samples: int) -> torch.utils.data.DataLoader[Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(samples, 256, generator=g)
    return torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=64
    )


class SimulatedRankGpu(GPUHealthCallback):
    """On the CPU: rank R watches GPU R of the simulated host."""

    def __init__(self, scenario: str, **kwargs: Any) -> None:
        self.make = simulated(scenario)
        super().__init__(backend=self.make, **kwargs)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.device = self.make().hello()["gpus"][trainer.global_rank]["uuid"]
        super().on_fit_start(trainer, pl_module)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--samples", type=int, default=65536)
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--simulate", metavar="SCENARIO")
    args = p.parse_args()
    options: dict[str, Any] = {"every_batches": 100, "exit_on_fault": True}
    health = SimulatedRankGpu(args.simulate, **options) if args.simulate else None
    trainer = pl.Trainer(
        accelerator="cpu" if args.cpu else "gpu",
        devices=args.devices,
        num_nodes=args.nodes,
        strategy="ddp" if args.devices * args.nodes > 1 else "auto",
        max_epochs=args.epochs,
        callbacks=[health or GPUHealthCallback(**options)],
        enable_progress_bar=False,
    )
    trainer.fit(Regression(), loader(args.samples))


if __name__ == "__main__":
    main()
