"""GPUHealthCallback: gputui's GPU health check inside a PyTorch Lightning run, rank-aware.

    from gputui.train.lightning import GPUHealthCallback
    trainer = L.Trainer(callbacks=[GPUHealthCallback(every_batches=100)], ...)

Each rank watches its own GPU (the strategy's root device, found among NVML's GPUs by UUID),
in a background thread, and writes its heartbeat. Every `every_batches` batches and at each
epoch's end the ranks agree whether any of them has a critical or failed verdict
(`strategy.reduce_boolean_decision`, one small all-reduce, at the same batch on every rank);
if one has, every rank saves the checkpoint together (`trainer.save_checkpoint`) and sets
`trainer.should_stop`, so the whole job stops cleanly, and with `exit_on_fault` each rank exits
with EXIT_GPU_FAULT once `fit` has returned. A rank's own work per step (batch start to
backward, timed with CUDA events on a GPU, never synchronised) goes into its heartbeat, so the
monitor can compare ranks that all wait for the slowest at the all-reduce.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl

from gputui.core.model import Level
from gputui.core.thresholds import Thresholds
from gputui.train.check import GpuCheck
from gputui.train.device import torch_uuid
from gputui.train.faults import EXIT_GPU_FAULT, describe
from gputui.train.heartbeat import Identity
from gputui.train.session import HealthSession
from gputui.train.summary import summary

__all__ = ["EXIT_GPU_FAULT", "GPUHealthCallback"]


class _ForwardTimer:
    """Each step's own work: wall time on the CPU; on a GPU, CUDA events read once done
    (event.query() never blocks), so the step never synchronises with the device."""

    def __init__(self, device: Any) -> None:
        self.cuda = getattr(device, "type", "cpu") == "cuda"
        self._t0 = 0.0
        self._start: Any = None
        self._pending: list[tuple[Any, Any]] = []

    def begin(self) -> None:
        if self.cuda:
            import torch

            self._start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            self._start.record()
        else:
            self._t0 = time.perf_counter()

    def end(self) -> float | None:
        """The seconds of a step whose timing is complete now (this one on the CPU; an
        earlier one on a GPU), or None."""
        if not self.cuda:
            return time.perf_counter() - self._t0 if self._t0 else None
        import torch

        if self._start is not None:
            stop = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            stop.record()
            self._pending.append((self._start, stop))
            self._start = None
        if self._pending and self._pending[0][1].query():
            start, stop = self._pending.pop(0)
            del self._pending[:-8]  # keep a few in flight, never a growing list
            return float(start.elapsed_time(stop)) / 1000.0
        return None


def _memory(index: int) -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return float(torch.cuda.memory_allocated()) / (1 << 20)


class GPUHealthCallback(pl.Callback):
    """See the module doc. `device`, `backend`, `stop_at` and `heartbeat` as for GPUGuard
    (`device` default: the strategy's root device)."""

    def __init__(
        self,
        *,
        every_batches: int | None = 100,
        checkpoint_path: str | None = "gpu_fault.ckpt",
        exit_on_fault: bool = False,
        device: int | str | None = None,
        backend: Callable[[], Any] | None = None,
        stop_at: Level = Level.CRITICAL,
        heartbeat: bool = True,
        heartbeat_s: float = 5.0,
        epoch_timeout_s: float = 5.0,
        thresholds: Thresholds | None = None,
        print_summary: bool = True,
    ) -> None:
        super().__init__()
        if every_batches is not None and every_batches < 1:
            raise ValueError(f"every_batches: expected a number >= 1 or None, got {every_batches}")
        self.every_batches = every_batches or 0
        self.checkpoint_path = checkpoint_path
        self.exit_on_fault = exit_on_fault
        self.epoch_timeout_s = epoch_timeout_s
        self.print_summary = print_summary
        self.device = device
        self.backend = backend
        self.stop_at = stop_at
        self.heartbeat = heartbeat
        self.heartbeat_s = heartbeat_s
        self.thresholds = thresholds
        self.session: HealthSession | None = None
        self.history: list[tuple[int, tuple[GpuCheck, ...]]] = []  # (epoch from 1, checks)
        self.fault: GpuCheck | None = None  # this rank's own
        self.stopped: bool = False  # the job stopped for some rank's GPU
        self.stopped_epoch: int | None = None
        self.checkpoint: str | None = None
        self._timer: _ForwardTimer | None = None

    # -- start and end ----------------------------------------------------------------------

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        root = trainer.strategy.root_device
        device = self.device
        if device is None and getattr(root, "type", "") == "cuda":
            device = root.index if root.index is not None else 0
        identity = Identity.from_env("lightning")
        identity = Identity(
            pid=identity.pid,
            framework="lightning",
            rank=trainer.global_rank,
            local_rank=trainer.local_rank,
            world_size=trainer.world_size,
            job_kind=identity.job_kind,
            job_id=identity.job_id,
        )
        self.history, self.fault, self.stopped, self.checkpoint = [], None, False, None
        self._timer = _ForwardTimer(root)
        self.session = HealthSession(
            framework="lightning",
            device=device,
            backend=self.backend,
            stop_at=self.stop_at,
            heartbeat=self.heartbeat,
            heartbeat_s=self.heartbeat_s,
            identity=identity,
            framework_uuid=torch_uuid,
            framework_memory=_memory,
            thresholds=self.thresholds,
        )
        self.session.start()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.session is not None:
            self.session.close()
        if self.print_summary and trainer.is_global_zero:
            print(self.summary())
        if self.stopped and self.exit_on_fault:
            why = describe(self.fault) if self.fault is not None else "another rank's GPU"
            print(f"gputui: exiting with status {EXIT_GPU_FAULT}: {why}", file=sys.stderr)
            raise SystemExit(EXIT_GPU_FAULT)

    # -- steps ------------------------------------------------------------------------------

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._timer is not None:
            self._timer.begin()

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Any
    ) -> None:
        session, timer = self.session, self._timer
        if session is not None and timer is not None:
            seconds = timer.end()
            if seconds is not None:
                session.clock.compute(seconds)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        session = self.session
        if session is None:
            return
        steps = session.clock.tick(time.perf_counter())
        every = self.every_batches
        if every and steps % every == 0:
            session.watch.request()
            # Every rank reaches this batch: the place to agree, off the step's usual path.
            self._agree(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        session = self.session
        if session is None:
            return
        session.clock.pause()
        checks = session.check_now(self.epoch_timeout_s)
        if checks is not None:
            self.history.append((trainer.current_epoch + 1, checks))
        self._agree(trainer)

    def _agree(self, trainer: pl.Trainer) -> None:
        """Stop every rank, with one checkpoint, when any rank's GPU is at the stop level."""
        session = self.session
        if session is None or self.stopped:
            return
        mine = session.watch.fault is not None
        anyone = bool(trainer.strategy.reduce_boolean_decision(mine, all=False))
        if not anyone:
            return
        self.stopped = True
        self.stopped_epoch = trainer.current_epoch + 1
        if mine:
            self.fault = session.report_fault()
        if self.checkpoint_path:
            path = self.checkpoint_path.format(epoch=self.stopped_epoch)
            trainer.save_checkpoint(path)  # every rank calls it; the strategy writes it once
            self.checkpoint = path
        trainer.should_stop = True

    def summary(self) -> str:
        text = summary(self.history)
        if self.stopped:
            why = describe(self.fault) if self.fault is not None else "another rank's GPU failed"
            text += f"\nStopped in epoch {self.stopped_epoch}: {why}"
            if self.checkpoint:
                text += f"\nCheckpoint: {self.checkpoint}"
        return text
