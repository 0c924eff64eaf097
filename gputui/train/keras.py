"""GPUHealthMonitor: the seed's Keras callback, done right (Keras 3, any backend).

    from gputui.train.keras import GPUHealthMonitor
    model.fit(x, y, epochs=10, callbacks=[GPUHealthMonitor(checkpoint_path="ckpt.keras")])

At each epoch's end (and every `every_batches` batches if asked) it checks this process's GPU:
memory used and total from NVML with the backend allocator's figure beside it, utilisation,
temperature against the GPU's slowdown limit, power against its limit, clock-event reasons, ECC
errors and XIDs since the last check, judged by gputui's own health rules. `history` holds the
checks per epoch; the summary is printed when training ends. On a critical or failed verdict it
logs the reason and NVIDIA's action, saves the model (`model.save(checkpoint_path)`), stops
training, and with `exit_on_fault` exits with EXIT_GPU_FAULT once `fit` has wound down.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import keras

from gputui.core.model import Level
from gputui.core.thresholds import Thresholds
from gputui.train.check import GpuCheck
from gputui.train.device import torch_uuid
from gputui.train.faults import EXIT_GPU_FAULT, describe
from gputui.train.heartbeat import Identity
from gputui.train.session import HealthSession
from gputui.train.summary import summary

__all__ = ["EXIT_GPU_FAULT", "GPUHealthMonitor"]


def _allocator_mib(index: int) -> float | None:
    """The Keras backend's own figure for memory in use on its first GPU, where it gives one."""
    backend = keras.backend.backend()
    try:
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return float(torch.cuda.memory_allocated()) / (1 << 20)
        elif backend == "jax":
            import jax

            gpus = [d for d in jax.local_devices() if d.platform == "gpu"]
            stats = gpus[0].memory_stats() if gpus else None
            if stats:
                return float(stats["bytes_in_use"]) / (1 << 20)
        elif backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                info = tf.config.experimental.get_memory_info("GPU:0")
                return float(info["current"]) / (1 << 20)
    except Exception:  # the figure is a courtesy: never a reason to fail a check
        return None
    return None


def _framework_uuid(ordinal: int) -> str | None:
    return torch_uuid(ordinal) if keras.backend.backend() == "torch" else None


class GPUHealthMonitor(keras.callbacks.Callback):  # type: ignore[misc]
    """See the module doc. `device`, `backend`, `stop_at` and `heartbeat` as for GPUGuard."""

    def __init__(
        self,
        *,
        every_batches: int | None = None,
        checkpoint_path: str | None = "gpu_fault.keras",
        exit_on_fault: bool = False,
        device: int | str | None = None,
        backend: Callable[[], Any] | None = None,
        stop_at: Level = Level.CRITICAL,
        heartbeat: bool = True,
        heartbeat_s: float = 5.0,
        epoch_timeout_s: float = 5.0,
        identity: Identity | None = None,
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
        self._options = {
            "device": device,
            "backend": backend,
            "stop_at": stop_at,
            "heartbeat": heartbeat,
            "heartbeat_s": heartbeat_s,
            "identity": identity,
            "thresholds": thresholds,
        }
        self.session: HealthSession | None = None
        self.history: list[tuple[int, tuple[GpuCheck, ...]]] = []  # (epoch from 1, checks)
        self.fault: GpuCheck | None = None
        self.stopped_epoch: int | None = None  # from 1, as Keras prints it
        self.checkpoint: str | None = None  # where the model was saved on a fault
        self._epoch = 0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.history = []
        self.fault = None
        self.stopped_epoch = None
        self.checkpoint = None
        self.session = HealthSession(
            framework="keras",
            framework_uuid=_framework_uuid,
            framework_memory=_allocator_mib,
            **self._options,  # type: ignore[arg-type]
        )
        self.session.start()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        session = self.session
        if session is None:
            return
        steps = session.clock.tick(time.perf_counter())
        every = self.every_batches
        if every and steps % every == 0:
            session.watch.request()
        if session.watch.fault is not None and self.fault is None:
            self._stop(session)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        session = self.session
        if session is None:
            return
        session.clock.pause()  # validation and the epoch's callbacks are not a step's time
        checks = session.check_now(self.epoch_timeout_s)
        if checks is not None:
            self.history.append((epoch + 1, checks))
        if session.watch.fault is not None and self.fault is None:
            self._stop(session)

    def _stop(self, session: HealthSession) -> None:
        fault = session.report_fault()
        if fault is None:
            return
        self.fault = fault
        self.stopped_epoch = self._epoch + 1
        if self.checkpoint_path:
            path = self.checkpoint_path.format(epoch=self._epoch + 1)
            try:
                self.model.save(path)
                self.checkpoint = path
            except Exception as exc:  # a GPU that fell off the bus may take the save with it
                print(f"gputui: checkpoint not saved to {path}: {exc}", file=sys.stderr)
        self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        session = self.session
        if session is not None:
            session.close()
        if self.print_summary:
            print(self.summary())
        if self.fault is not None and self.exit_on_fault:
            print(
                f"gputui: exiting with status {EXIT_GPU_FAULT}: {describe(self.fault)}",
                file=sys.stderr,
            )
            raise SystemExit(EXIT_GPU_FAULT)

    def summary(self) -> str:
        text = summary(self.history)
        if self.fault is not None:
            text += f"\nStopped in epoch {self.stopped_epoch}: {describe(self.fault)}"
            if self.checkpoint:
                text += f"\nCheckpoint: {self.checkpoint}"
        return text
