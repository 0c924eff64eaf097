"""Running the agent on simulated GPUs in tests, with the clock fast-forwarded.

run_fast() drives the real run loop (Runner) over the real NVML backend on the simulated NVML;
only time is fake: each wait of the loop moves the simulation's clock forward instead of
sleeping, and events are delivered at that moment, so ten simulated minutes take a fraction of
a second and always come out the same.
"""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from gputui.agent.runner import Runner
from gputui.agent.sim_backend import SimBackend
from gputui.agent.stream import StreamWriter

T0 = 1_700_000_000.0  # wall clock at the simulation's start


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class FastStop(threading.Event):
    """A stop event whose wait() advances the fake clock instead of sleeping."""

    def __init__(self, clock: FakeClock, backend: SimBackend) -> None:
        super().__init__()
        self.clock = clock
        self.backend = backend

    def wait(self, timeout: float | None = None) -> bool:
        if timeout:
            self.clock.t += timeout
        self.backend.pump_events()
        return self.is_set()


@dataclass
class Stream:
    lines: list[dict[str, Any]]
    raw: bytes
    rc: int
    backend: SimBackend
    samples: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.samples = [m for m in self.lines if m["type"] == "sample"]
        self.events = [m for m in self.lines if m["type"] == "event"]

    def gpu(self, index: int, since: float = 0.0, until: float = 1e18) -> list[dict[str, Any]]:
        """GPU `index`'s readings of the samples taken from `since` to `until` (seconds into
        the simulation)."""
        return [
            g
            for s in self.samples
            if since <= s["t"] - T0 <= until
            for g in s["gpus"]
            if g["index"] == index
        ]

    def slow(self, index: int, since: float = 0.0, until: float = 1e18) -> list[dict[str, Any]]:
        return [g for g in self.gpu(index, since, until) if "pcie_gen" in g]


def run_fast(
    scenario: dict[str, Any],
    *,
    until: float,
    interval: float = 1.0,
    slow_every: int = 5,
    seed: int = 0,
) -> Stream:
    clock = FakeClock()
    backend = SimBackend(scenario, seed=seed, clock=clock, event_thread=False)
    stop = FastStop(clock, backend)
    out = io.BytesIO()
    runner = Runner(
        backend,
        StreamWriter(out, stop),
        stop,
        host="sim-test",
        interval_s=interval,
        slow_every=slow_every,
        duration_s=until,
        wall=lambda: T0 + clock.t,
        monotonic=clock,
    )
    rc = runner.run()
    raw = out.getvalue()
    return Stream([json.loads(line) for line in raw.splitlines()], raw, rc, backend)


def scenario(*faults: dict[str, Any], model: str = "H100-SXM", gpus: int = 8) -> dict[str, Any]:
    return {"name": "test", "gpus": gpus, "model": model, "fault": list(faults)}
