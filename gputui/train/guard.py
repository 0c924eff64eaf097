"""GPUGuard: the GPU health check for a plain training loop.

    guard = GPUGuard(every_steps=100)
    for batch in data:
        train_step(batch)
        guard.step()          # raises GPUFault on a critical or failed verdict
    guard.close()

`step()` only counts and times the step and, every `every_steps`, asks the background thread
for a check; it never reads NVML and never waits (gputui/train/watch.py). The verdict of a
check shows at the first `step()` after it; an XID or ECC event is judged the moment NVML
pushes it. `history` holds every check of this process's GPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from gputui.core.model import Level
from gputui.core.thresholds import Thresholds
from gputui.train.check import GpuCheck
from gputui.train.device import torch_uuid
from gputui.train.faults import GPUFault
from gputui.train.heartbeat import Identity
from gputui.train.session import HealthSession


def _torch_memory(index: int) -> float | None:
    """torch's allocated MiB on its current CUDA device, where torch is loaded and on CUDA."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not torch.cuda.is_available():
            return None
        return float(torch.cuda.memory_allocated()) / (1 << 20)
    except Exception:
        return None


class GPUGuard:
    """Watches this process's GPU for a plain loop (see the module doc).

    `device`: the GPU's UUID, or the framework's CUDA ordinal (default: torch's current
    device, else LOCAL_RANK's); `backend`: a factory of the agent backend to read (default the
    real NVML; gputui.train.nvml.simulated for tests); `stop_at`: the verdict that stops
    training (CRITICAL: critical or failed); `heartbeat`: write the heartbeat file the agent
    forwards to the monitor."""

    def __init__(
        self,
        every_steps: int | None = 100,
        *,
        device: int | str | None = None,
        backend: Callable[[], Any] | None = None,
        stop_at: Level = Level.CRITICAL,
        heartbeat: bool = True,
        heartbeat_s: float = 5.0,
        identity: Identity | None = None,
        thresholds: Thresholds | None = None,
        framework: str = "torch",
    ) -> None:
        if every_steps is not None and every_steps < 1:
            raise ValueError(f"every_steps: expected a number >= 1 or None, got {every_steps}")
        self.every_steps = every_steps or 0
        self.session = HealthSession(
            framework=framework,
            device=device,
            backend=backend,
            stop_at=stop_at,
            heartbeat=heartbeat,
            heartbeat_s=heartbeat_s,
            identity=identity,
            framework_uuid=torch_uuid,
            framework_memory=_torch_memory,
            thresholds=thresholds,
        )
        self._clock = self.session.clock
        self._watch = self.session.watch
        self.session.start()

    def step(self) -> None:
        """A training step ended: count it, ask for a check every `every_steps`, and raise
        GPUFault if a check found the GPU critical or failed."""
        steps = self._clock.tick(time.perf_counter())
        every = self.every_steps
        if every and steps % every == 0:
            self._watch.request()
        if self._watch.fault is not None:
            raise GPUFault(self.session.report_fault() or self._watch.fault)

    def compute(self, seconds: float) -> None:
        """The step's own work took `seconds` (waits for other ranks left out): the monitor
        then compares ranks by it (docs/training.md)."""
        self._clock.compute(seconds)

    def check(self, timeout_s: float = 5.0) -> tuple[GpuCheck, ...] | None:
        """A check now, waited for (at most `timeout_s`): for the end of an epoch, not a step."""
        checks = self.session.check_now(timeout_s)
        if self._watch.fault is not None:
            raise GPUFault(self.session.report_fault() or self._watch.fault)
        return checks

    @property
    def history(self) -> list[GpuCheck]:
        return self.session.history

    @property
    def steps(self) -> int:
        return self._clock.steps

    def close(self) -> None:
        """Stop the thread and remove the heartbeat file."""
        self.session.close()

    def __enter__(self) -> GPUGuard:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
