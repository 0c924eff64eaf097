"""What every integration shares: the step clock, the watch thread, the heartbeat, the history.

GPUGuard (plain loops), the Keras callback and the Lightning callback each hold one
`HealthSession`; they differ only in how the loop tells them a step ended and how they stop it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from gputui.core.model import Level
from gputui.core.thresholds import Thresholds
from gputui.train import nvml
from gputui.train.check import Checker, GpuCheck
from gputui.train.faults import describe
from gputui.train.heartbeat import HeartbeatWriter, Identity, heartbeat_dir
from gputui.train.steps import StepClock
from gputui.train.watch import Watch

log = logging.getLogger("gputui.train")


class HealthSession:
    """One training process's watch over its GPU (see the integrations for the arguments)."""

    def __init__(
        self,
        *,
        framework: str,
        device: int | str | None = None,
        backend: Callable[[], Any] | None = None,
        stop_at: Level = Level.CRITICAL,
        heartbeat: bool = True,
        heartbeat_s: float = 5.0,
        identity: Identity | None = None,
        framework_uuid: Callable[[int], str | None] | None = None,
        framework_memory: Callable[[int], float | None] | None = None,
        thresholds: Thresholds | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = dict(os.environ) if env is None else env
        self.clock = StepClock()
        self.history: list[GpuCheck] = []  # every check of this process's GPU, in order
        self.identity = identity or Identity.from_env(framework, env)
        make = backend or nvml.real
        writer = HeartbeatWriter(self.identity, heartbeat_dir(env)) if heartbeat else None
        self.watch = Watch(
            lambda: Checker(make(), thresholds=thresholds),
            self.clock,
            device=device,
            framework_uuid=framework_uuid,
            framework_memory=framework_memory,
            env=env,
            stop_at=stop_at,
            heartbeat=writer,
            heartbeat_s=heartbeat_s,
            on_check=self._record,
        )
        self._reported = False
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self.watch.start()

    def _record(self, checks: tuple[GpuCheck, ...]) -> None:
        self.history.extend(checks)

    @property
    def fault(self) -> GpuCheck | None:
        """The first check at the stopping level, once there is one."""
        return self.watch.fault

    def report_fault(self) -> GpuCheck | None:
        """The fault, logged once with its reason and NVIDIA's action."""
        fault = self.watch.fault
        if fault is not None and not self._reported:
            self._reported = True
            log.error("gputui: stopping training: %s", describe(fault))
        return fault

    def check_now(self, timeout_s: float) -> tuple[GpuCheck, ...] | None:
        return self.watch.check_now(timeout_s)

    def close(self) -> None:
        self.watch.close()
