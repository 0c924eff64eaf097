"""The sim backend's hello says when its scenario's t=0 was (docs/protocol.md, sim_start)."""

from __future__ import annotations

import time

from gputui.agent.sim_backend import SimBackend
from gputui.collect.scenarios import load_scenario


def test_hello_carries_the_simulation_start_on_the_real_clock() -> None:
    before = time.time()
    backend = SimBackend(load_scenario("healthy"), seed=1, event_thread=False)
    try:
        start = backend.hello()["sim_start"]
    finally:
        backend.close()
    assert before - 0.01 <= start <= time.time() + 0.01


def test_no_simulation_start_on_an_injected_clock() -> None:
    backend = SimBackend(load_scenario("healthy"), seed=1, clock=lambda: 5.0, event_thread=False)
    try:
        assert "sim_start" not in backend.hello()
    finally:
        backend.close()
