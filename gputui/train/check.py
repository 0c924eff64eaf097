"""One check of this process's GPUs: NVML through the agent's backend, judged by core's rules.

The training process reads its GPUs with the code the agent runs on every host
(gputui/agent/nvml_backend.py, on pynvml or on the simulated NVML) and judges them with the
monitor's own health rules (gputui/core/health.py), so a verdict inside the loop is the verdict
the fleet monitor shows. A `Checker` is not thread-safe and never runs in the training step:
gputui/train/watch.py runs it in a background thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from gputui.core.health import HostHealth
from gputui.core.model import (
    PROTOCOL_VERSION,
    Action,
    Event,
    GpuReading,
    Hello,
    Level,
    Reason,
    Sample,
    Verdict,
    clock_event_words,
)
from gputui.core.reasons import verdict_of
from gputui.core.thresholds import Thresholds
from gputui.train.device import NvmlGpu

Json = dict[str, Any]


class GpuCheck(msgspec.Struct, frozen=True, kw_only=True):
    """One GPU at one check: the readings the seed's callback recorded and what they mean."""

    t: float  # Unix time of the check
    gpu: int  # NVML's index
    uuid: str
    status: str = "ok"  # ok, lost, reset_required, error (NVML's word for the board)
    mem_used_mib: float | None = None  # NVML, as nvidia-smi counts it
    mem_total_mib: float | None = None
    framework_mem_mib: float | None = None  # the framework's allocator, where it says
    util_pct: float | None = None
    temp_c: float | None = None
    temp_slowdown_c: float | None = None  # the GPU's own slowdown limit
    power_w: float | None = None
    power_limit_w: float | None = None
    clock_events: int | None = None
    clock_event_words: tuple[str, ...] = ()
    ecc_corrected_new: int | None = None  # volatile ECC errors since the previous check
    ecc_uncorrected_new: int | None = None
    xids: tuple[int, ...] = ()  # XIDs on this GPU since the previous check
    verdict: Verdict = msgspec.field(default_factory=lambda: Verdict(level=Level.UNKNOWN))

    @property
    def level(self) -> Level:
        return self.verdict.level

    @property
    def worst(self) -> Reason | None:
        return self.verdict.worst

    @property
    def action(self) -> Action:
        return self.verdict.action


def _delta(now: int | None, before: int | None) -> int | None:
    if now is None:
        return None
    if before is None or now < before:  # the first check, or the GPU was reset
        return 0
    return now - before


class Checker:
    """Reads and judges the GPUs `watch` (NVML indices) of this host; one call per check.

    `backend`: an agent backend (NvmlBackend over pynvml, or SimBackend), started and owned
    here. `framework_memory(index)`: the framework allocator's MiB on that GPU, or None."""

    def __init__(
        self,
        backend: Any,
        *,
        host: str = "localhost",
        thresholds: Thresholds | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.clock = clock
        # The training process asks NVML about its own GPU; who owns each process on it is
        # the monitor's business, and reading /proc for it would cost every check.
        backend.attribute_process = lambda pid: {}
        body = backend.hello()
        self.hello = msgspec.convert(
            {
                "v": PROTOCOL_VERSION,
                "host": host,
                "agent_version": "train",
                "backend": backend.name,
                "interval_s": 1.0,
                "slow_every": 1,
                **body,
            },
            Hello,
        )
        self.gpus = [NvmlGpu(g.index, g.uuid, g.name) for g in self.hello.gpus]
        self.watch: tuple[int, ...] = tuple(g.index for g in self.gpus)
        self.health = HostHealth(thresholds)
        self._events: list[Json] = []
        # Called (from NVML's event thread) when an event arrives: the watch checks at once.
        self.on_event: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._seq = 0
        self._ecc: dict[int, tuple[int | None, int | None]] = {}
        # A backend built without its event thread (a test's simulated NVML, stepped by a fake
        # clock) holds its events until pumped: each check pumps them.
        self._pump = getattr(backend, "_event_thread", True) is False
        backend.start_events(self._on_event)

    def _on_event(self, event: Json) -> None:
        with self._lock:
            self._events.append(event)
        on_event = self.on_event
        if on_event is not None:
            on_event()

    def check(
        self, framework_memory: Callable[[int], float | None] | None = None
    ) -> tuple[GpuCheck, ...]:
        """Read every watched GPU once (slow signals included) and judge it."""
        if self._pump:
            self.backend.pump_events()
        now = self.clock()
        with self._lock:
            events, self._events = self._events, []
        xids: dict[int, list[int]] = {}
        for raw in events:
            event = msgspec.convert({"v": PROTOCOL_VERSION, "t": now, **raw}, Event)
            self.health.observe_event(event, now)
            if event.kind == "xid" and event.gpu is not None and event.xid is not None:
                xids.setdefault(event.gpu, []).append(event.xid)
        body = self.backend.sample(True)
        sample = msgspec.convert(
            {"v": PROTOCOL_VERSION, "t": now, "seq": self._seq, "slow": True, **body}, Sample
        )
        self._seq += 1
        verdict = self.health.evaluate(self.hello, sample, now)
        host_reasons = tuple(r for r in verdict.host.reasons if r.gpu is None)
        readings = {r.index: r for r in sample.gpus}
        infos = {g.index: g for g in self.hello.gpus}
        out = []
        for index in self.watch:
            own = verdict.gpus.get(index)
            reasons = (own.reasons if own is not None else ()) + host_reasons
            floor = own.level if own is not None else Level.UNKNOWN
            judged = verdict_of(reasons, floor)
            r = readings.get(index) or GpuReading(index=index, status="error")
            info = infos.get(index)
            before = self._ecc.get(index, (None, None))
            self._ecc[index] = (r.ecc_corrected_volatile, r.ecc_uncorrected_volatile)
            out.append(
                GpuCheck(
                    t=now,
                    gpu=index,
                    uuid=info.uuid if info is not None else "",
                    status=r.status,
                    mem_used_mib=r.mem_used_mib,
                    mem_total_mib=info.memory_total_mib if info is not None else None,
                    framework_mem_mib=framework_memory(index) if framework_memory else None,
                    util_pct=r.util_pct,
                    temp_c=r.temp_c,
                    temp_slowdown_c=info.temp_slowdown_c if info is not None else None,
                    power_w=r.power_w,
                    power_limit_w=r.power_limit_w,
                    clock_events=r.clock_events,
                    clock_event_words=tuple(clock_event_words(r.clock_events or 0)),
                    ecc_corrected_new=_delta(r.ecc_corrected_volatile, before[0]),
                    ecc_uncorrected_new=_delta(r.ecc_uncorrected_volatile, before[1]),
                    xids=tuple(xids.get(index, ())),
                    verdict=judged,
                )
            )
        return tuple(out)

    def close(self) -> None:
        self.backend.close()


def watched(checks: Sequence[GpuCheck], level: Level) -> GpuCheck | None:
    """The first check at `level` or worse, the worst first; None when every GPU is better."""
    bad = [c for c in checks if c.level >= level]
    return max(bad, key=lambda c: c.level) if bad else None
