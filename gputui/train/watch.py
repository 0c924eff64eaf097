"""The background thread that reads NVML for a training process, so its step never does.

The thread starts NVML (which may take seconds on a GPU without persistence mode), finds this
process's GPU (device.py), then sleeps until one of three things wakes it: the loop asking for
a check (every N steps, an epoch's end), an XID or ECC event pushed by NVML's event thread
(judged at once, so a GPU that falls off the bus stops the loop within a step), or the time to
rewrite the heartbeat file. Each wake reads NVML once at most. The loop reads the outcome from
two attributes (`latest`, `fault`), replaced whole, never locked.

A host where NVML cannot start or the GPU cannot be named is not watched: the reason is logged
once and kept in `error`, heartbeats are still written, and training goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from gputui.core.model import Level
from gputui.train.check import Checker, GpuCheck, watched
from gputui.train.device import resolve
from gputui.train.heartbeat import HeartbeatWriter
from gputui.train.steps import StepClock, Window

log = logging.getLogger("gputui.train")


class Watch:
    """Reads and judges this process's GPU in a daemon thread (see the module doc)."""

    def __init__(
        self,
        make_checker: Callable[[], Checker],
        clock: StepClock,
        *,
        device: int | str | None = None,
        framework_uuid: Callable[[int], str | None] | None = None,
        framework_memory: Callable[[int], float | None] | None = None,
        env: Mapping[str, str] | None = None,
        stop_at: Level = Level.CRITICAL,
        heartbeat: HeartbeatWriter | None = None,
        heartbeat_s: float = 5.0,
        on_check: Callable[[tuple[GpuCheck, ...]], None] | None = None,
    ) -> None:
        self.make_checker = make_checker
        self.clock = clock
        self.device = device
        self.framework_uuid = framework_uuid
        self.framework_memory = framework_memory
        self.env = env
        self.stop_at = stop_at
        self.heartbeat = heartbeat
        self.heartbeat_s = heartbeat_s
        self.on_check = on_check
        # What the loop reads: each replaced whole by the thread.
        self.latest: tuple[GpuCheck, ...] | None = None
        self.fault: GpuCheck | None = None
        self.error: str | None = None
        self.uuid: str | None = None
        self.checks = 0
        self.check_cost_s = 0.0  # NVML and judging, summed over the checks (off the loop)
        self._due = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._done = threading.Condition()
        self._window = Window()
        self._checker: Checker | None = None
        self._thread = threading.Thread(target=self._run, name="gputui-train", daemon=True)

    # -- the loop's side: never blocks ------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def request(self) -> None:
        """Ask for a check; returns at once."""
        self._due = True
        self._wake.set()

    def check_now(self, timeout_s: float) -> tuple[GpuCheck, ...] | None:
        """Ask for a check and wait for it, at most `timeout_s` (for an epoch's end, not a
        step): the checks, or None when there was none in time or nothing is watched."""
        with self._done:
            before = self.checks
            self.request()
            self._done.wait_for(
                lambda: self.checks > before or self.error is not None or self._stop.is_set(),
                timeout_s,
            )
            return self.latest if self.checks > before else None

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        if self.heartbeat is not None:
            self.heartbeat.remove()

    # -- the thread ---------------------------------------------------------------------------

    def _start_checker(self) -> None:
        try:
            checker = self.make_checker()
        except Exception as exc:  # no NVML, no GPU: training goes on unwatched
            self._give_up(f"NVML: {exc}")
            return
        try:
            ordinal = self.device if isinstance(self.device, int) else None
            uuid = None
            if self.framework_uuid is not None and not isinstance(self.device, str):
                uuid = self.framework_uuid(ordinal if ordinal is not None else 0)
            index = resolve(
                checker.gpus, device=self.device, framework_uuid=uuid, env=self.env or {}
            )
        except Exception as exc:
            checker.close()
            self._give_up(str(exc))
            return
        checker.watch = (index,)
        self.uuid = next(g.uuid for g in checker.gpus if g.index == index)
        checker.on_event = self.request
        self._checker = checker

    def _give_up(self, why: str) -> None:
        log.warning("gputui: this process's GPU is not watched: %s", why)
        with self._done:
            self.error = why
            self._done.notify_all()

    def _run(self) -> None:
        self._start_checker()
        next_beat = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            self._wake.wait(max(0.0, next_beat - now))
            self._wake.clear()
            if self._stop.is_set():
                break
            checked = False
            if self._due and self._checker is not None:
                self._due = False
                self._check(self._checker)
                checked = True
            if checked or time.monotonic() >= next_beat:
                self._beat()
                next_beat = time.monotonic() + self.heartbeat_s
        if self._checker is not None:
            self._checker.close()

    def _check(self, checker: Checker) -> None:
        start = time.perf_counter()
        try:
            checks = checker.check(self.framework_memory)
        except Exception as exc:  # a failing read must not end the watch
            log.warning("gputui: GPU check failed: %s: %s", type(exc).__name__, exc)
            checks = None
        self.check_cost_s += time.perf_counter() - start
        with self._done:
            if checks is not None:
                self.latest = checks
                if self.fault is None:
                    self.fault = watched(checks, self.stop_at)
            self.checks += 1
            self._done.notify_all()
        if checks is not None and self.on_check is not None:
            self.on_check(checks)

    def _beat(self) -> None:
        if self.heartbeat is None:
            return
        window = self._window
        window.update(self.clock)
        try:
            self.heartbeat.write(
                t=time.time(),
                step=self.clock.steps,
                step_time_s=window.step_time_s,
                compute_s=window.compute_s,
                uuid=self.uuid,
            )
        except OSError as exc:
            log.warning("gputui: heartbeat not written to %s: %s", self.heartbeat.path, exc)
            self.heartbeat = None
