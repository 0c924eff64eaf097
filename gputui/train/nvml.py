"""Where a training process reads its GPUs: the real NVML, or the simulator for tests and demos.

Both are the agent's own backends, so the readings inside the loop are the readings the agent
streams to the monitor: `real` is the NVML backend over pynvml; `simulated` is the same backend
over the simulated NVML, following a scenario (gputui/scenarios/*.toml, docs/scenarios.md) with
its scripted faults (an XID 79 at a given second, a thermal runaway...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def real() -> Any:
    """The NVML backend over pynvml (raises when NVML cannot start or sees no GPU)."""
    import pynvml

    from gputui.agent.nvml_backend import NvmlBackend

    return NvmlBackend(pynvml)


def simulated(
    scenario: str | dict[str, Any],
    *,
    seed: int = 0,
    clock: Callable[[], float] | None = None,
) -> Callable[[], Any]:
    """A factory of the simulated backend for `scenario` (a packaged scenario's name, or a
    scenario table). `clock`: the simulation's seconds since its start (default: the real
    clock); a test that steps it in epochs places a fault in a given epoch. Without the real
    clock, events are pumped at each check instead of waited for in a thread."""
    from gputui.agent.sim_backend import SimBackend

    if isinstance(scenario, str):
        from gputui.collect.scenarios import load_scenario

        table: dict[str, Any] = dict(load_scenario(scenario))
    else:
        table = scenario

    def make() -> Any:
        return SimBackend(table, seed=seed, clock=clock, event_thread=clock is None)

    return make
