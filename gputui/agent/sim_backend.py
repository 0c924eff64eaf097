"""The `sim` backend: the NVML backend, unchanged, reading a simulated NVML."""

from __future__ import annotations

from typing import Any, Callable

from .backend import FAULT_CRASH, FAULT_HANG, Json
from .nvml_backend import NvmlBackend
from .simnvml import SimNvml
from .simulation import Simulation


class SimBackend(NvmlBackend):
    """NvmlBackend over SimNvml, plus the scripted faults of the agent process itself."""

    name = "sim"

    def __init__(
        self,
        scenario: dict[str, Any],
        seed: int = 0,
        clock: Callable[[], float] | None = None,
        event_thread: bool = True,
        step_s: float | None = None,
    ) -> None:
        self.simulation = Simulation(scenario, seed=seed, clock=clock, step_s=step_s)
        self.nvml = SimNvml(self.simulation)
        super().__init__(
            self.nvml, event_thread=event_thread, attribute_process=self.simulation.attribution
        )

    def use_clock(self, clock: Callable[[], float]) -> None:
        """Read the simulation at `clock`'s time from now on (seconds since its start), so
        triage can fast-forward to the moment a scenario's faults have developed."""
        with self.simulation.lock:
            self.simulation.clock = clock
            self.simulation.start_unix = None

    def start_at(self, elapsed_s: float) -> None:
        """Run on the real clock from `elapsed_s` seconds into the scenario, as if it had
        started that long ago: the first sample steps the simulation there, so the scenario's
        faults up to then have happened (`--sim-elapsed` of a streaming agent)."""
        sim = self.simulation
        with sim.lock:
            base = sim.clock
            sim.clock = lambda: elapsed_s + base()
            if sim.start_unix is not None:
                sim.start_unix -= elapsed_s / sim.speed

    def wall(self) -> float:
        """The simulation's own time on the real clock: a host fast-forwarded by its
        scenario's `speed` stamps its samples `speed` times faster than the clock moves."""
        sim = self.simulation
        if sim.start_unix is None or sim.speed == 1.0:
            return super().wall()
        return sim.start_unix + sim.clock()

    def hello(self) -> Json:
        out = super().hello()
        if self.simulation.start_unix is not None:
            out["sim_start"] = round(self.simulation.start_unix, 3)
        return out

    def process_fault(self) -> str | None:
        fault = self.simulation.process_fault()
        if fault == "crash":
            return FAULT_CRASH
        if fault == "hang":
            return FAULT_HANG
        return None

    def fault_text(self) -> str:
        return f"agent crashed (scenario {self.simulation.scenario['name']!r})"

    def crash_exit_code(self) -> int:
        return self.simulation.crash_exit_code()
