"""Jobs in the simulated fleet: who runs on which GPU, slow hosts, the demo's requeue.

The readings come from the simulator itself, fast-forwarded (tests/agent_sim.py), and the
processes are decoded into the collector's own types, so what is checked here is what the
monitor, the Jobs view and the job-level straggler rule are fed.
"""

from __future__ import annotations

import statistics
from typing import Any

import msgspec
import pytest

from gputui.agent.scenario import validate_scenario
from gputui.agent.sim_backend import SimBackend
from gputui.core.model import Sample
from tests.agent_sim import FakeClock

T0 = 1_700_000_000.0


def samples(
    scenario: dict[str, Any], seconds: int, *, seed: int = 0, slow_every: int = 10
) -> list[Sample]:
    """One sample a second for `seconds` s, decoded as the collector decodes them."""
    clock = FakeClock()
    backend = SimBackend(scenario, seed=seed, clock=clock, event_thread=False)
    out = []
    for seq in range(seconds + 1):
        clock.t = float(seq)
        body = backend.sample(slow=seq % slow_every == 0)
        out.append(msgspec.convert({"v": 1, "t": T0 + seq, "seq": seq, **body}, Sample))
    return out


def medians(run: list[Sample], field: str, since: float, until: float) -> list[float]:
    """Per GPU, the median of `field` over the samples from `since` to `until` s."""
    window = [s for s in run if since <= s.t - T0 <= until]
    n = len(window[0].gpus)
    return [statistics.median(getattr(s.gpus[i], field) for s in window) for i in range(n)]


# -- the slow_host fault ------------------------------------------------------------------------


def test_a_slow_host_without_gpus_strikes_every_gpu_of_the_host() -> None:
    sc = validate_scenario({"gpus": 4, "fault": [{"kind": "slow_host", "at": 5}]})
    (fault,) = sc["fault"]
    assert fault == {
        "kind": "slow_host",
        "at": 5.0,
        "gpus": [0, 1, 2, 3],
        "factor": 0.8,
        "cause": "none",
    }
    with pytest.raises(
        ValueError, match=r"fault\[0\]\.cause: expected one of \['none', 'power_cap'"
    ):
        validate_scenario({"fault": [{"kind": "slow_host", "at": 5, "cause": "gremlins"}]})


@pytest.mark.parametrize("cause", ["none", "power_cap"])
def test_a_slow_host_runs_every_gpu_uniformly_slower_from_its_start(cause: str) -> None:
    slow = {"kind": "slow_host", "at": 60.0, "factor": 0.75, "cause": cause}
    healthy = {"name": "h", "workload": "training"}
    base = samples(healthy, 120, seed=4)
    run = samples({**healthy, "fault": [slow]}, 120, seed=4)
    # Before the fault the host is the healthy one, reading for reading.
    assert [s.gpus for s in run if s.t - T0 < 60] == [s.gpus for s in base if s.t - T0 < 60]
    # Past it (a second to settle), each GPU at about `factor` of its healthy self: the
    # checkpoint dips of the job, if any, fall on both runs at the same moments.
    for field in ("util_pct", "power_w"):
        before = medians(base, field, 61, 120)
        after = medians(run, field, 61, 120)
        ratios = [a / b for a, b in zip(after, before, strict=True)]
        assert all(0.7 <= r <= 0.9 for r in ratios), (field, ratios)
        assert max(ratios) - min(ratios) < 0.05, (field, ratios)  # all GPUs alike
    clocks = [
        a / b
        for a, b in zip(
            medians(run, "sm_clock_mhz", 61, 120),
            medians(base, "sm_clock_mhz", 61, 120),
            strict=True,
        )
    ]
    assert all(r < 0.96 for r in clocks), clocks
    limits = medians(run, "power_limit_w", 61, 120)
    if cause == "power_cap":
        assert limits == [525.0] * 8  # 0.75 of the H100's 700 W, as NVML's enforced limit
        assert all((s.gpus[0].clock_events or 0) & 0x4 for s in run if s.t - T0 > 61)
    else:
        assert limits == [700.0] * 8
        # Nothing in the clock-event reasons explains the slower clocks.
        assert all(not (s.gpus[0].clock_events or 0) & 0x4 for s in run if s.t - T0 > 61)


def test_a_power_capped_slow_host_gets_its_limit_back_when_the_fault_ends() -> None:
    slow = {"kind": "slow_host", "at": 10.0, "duration": 20.0, "cause": "power_cap"}
    run = samples({"name": "h", "fault": [slow]}, 40)
    limit = {round(s.t - T0): s.gpus[3].power_limit_w for s in run}
    assert (limit[5], limit[20], limit[35]) == (700.0, 560.0, 700.0)
