"""Days of a simulated host in seconds: its stream, typed, for tests and reports.

`simulate_days()` runs the agent's real NVML backend over the simulated NVML with a fake clock
moved one sample interval at a time and the simulation stepped coarsely (a minute by default,
not the live agent's quarter second), so fourteen days of an 8-GPU host at one sample a minute
take seconds. Its messages are built as the agent builds them and typed and checked by the
collector's own decoder (one JSON line each, as the agent writes them): what comes out is what a
monitor would have received from that host, only faster.

Slow drifts (docs/scenarios.md) are written per simulated day, so they show here exactly as
they would over real days.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from gputui.agent import AGENT_VERSION, PROTOCOL_VERSION
from gputui.agent.sim_backend import SimBackend
from gputui.collect.protocol import StreamDecoder
from gputui.core.model import Event, Hello, Sample

DAY_S = 86_400.0
# Where a simulated run starts on the Unix clock unless told: a midnight (UTC), so simulated
# days line up with calendar days.
DEFAULT_START_UNIX = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
DEFAULT_INTERVAL_S = 60.0
DEFAULT_SLOW_EVERY = 5  # slow fields every 5 minutes at the default interval
DEFAULT_STEP_S = 60.0


class SimulationError(Exception):
    """The simulated stream held a message the collector refuses (a simulator bug)."""


def simulate_days(
    scenario: dict[str, Any],
    days: float,
    *,
    seed: int = 0,
    host: str = "sim",
    interval_s: float = DEFAULT_INTERVAL_S,
    slow_every: int = DEFAULT_SLOW_EVERY,
    step_s: float | None = None,
    start_unix: float = DEFAULT_START_UNIX,
) -> Iterator[Hello | Sample | Event]:
    """A host's stream over `days` simulated days: its Hello, then each Sample (every
    `interval_s`, the slow fields every `slow_every`-th) with the events (XIDs, ECC, lost
    GPUs) that came before it, all stamped in simulated Unix time from `start_unix`.

    `scenario` is a scenario dict (gputui.collect.scenarios.load_scenario gives the packaged
    ones); the seed fixes the run. `step_s` is the simulation's step (default: the interval,
    at most a minute); shorter is more detailed and slower. Deterministic for its arguments."""
    if not days > 0 or not interval_s > 0 or slow_every < 1:
        raise ValueError("days and interval_s must be > 0 and slow_every >= 1")
    step = step_s if step_s is not None else min(interval_s, DEFAULT_STEP_S)
    clock = _Clock()
    decoder = StreamDecoder()
    backend = SimBackend(scenario, seed=seed, clock=clock, event_thread=False, step_s=step)
    pushed: list[dict[str, Any]] = []
    try:
        hello = {
            "type": "hello",
            "v": PROTOCOL_VERSION,
            "host": host,
            "agent_version": AGENT_VERSION,
            "backend": backend.name,
            "interval_s": interval_s,
            "slow_every": slow_every,
            **backend.hello(),
        }
        yield _typed(decoder, hello, Hello)
        backend.start_events(pushed.append)
        samples = int(days * DAY_S / interval_s) + 1
        for seq in range(samples):
            clock.t = seq * interval_s
            t = round(start_unix + clock.t, 3)
            backend.pump_events()
            for event in pushed:
                line = {"type": "event", "v": PROTOCOL_VERSION, "t": t, **event}
                yield _typed(decoder, line, Event)
            pushed.clear()
            body = backend.sample(slow=seq % slow_every == 0)
            msg = {"type": "sample", "v": PROTOCOL_VERSION, "t": t, "seq": seq, **body}
            if seq % slow_every == 0:
                msg["slow"] = True
            yield _typed(decoder, msg, Sample)
    finally:
        backend.close()


class _Clock:
    """The simulation's time: moved by simulate_days, read by the simulation."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _typed(decoder: StreamDecoder, obj: dict[str, Any], kind: type[Any]) -> Any:
    msg = decoder.decode(msgspec.json.encode(obj))
    if not isinstance(msg, kind):
        raise SimulationError(
            f"simulated {obj.get('type')} refused: {decoder.stats.last_problem or msg!r}"
        )
    return msg
