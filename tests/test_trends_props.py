"""Healthy fleets raise nothing: random healthy series, with noise and missing days.

"Healthy" is bounded on purpose, at what a sound fleet shows: GPUs of a host within a few
degrees of each other at the same power (slots differ), hosts within a couple of degrees of
each other, daily noise of a degree, power under load moving a few points with the work, the
occasional corrected ECC error or PCIe replay, a brake blip on one day, short HW slowdown
blips, a few old remapped rows, a remap pending for a day before the next reset, a link
reading below its width now and then. The same fleets with one drift added must raise that
drift's rule, so the healthy bounds are not simply below every rule's reach.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gputui.core.trends import find_trends
from tests.trend_days import base_power_pct, base_temp, gpu_day

Params = list[dict[str, Any]]  # gpu_day's arguments, one dict per GPU-day
TARGET = ("node00", 0)


@st.composite
def healthy_fleet(draw: st.DrawFn, min_days: int = 7, keep_target: bool = False) -> Params:
    """A healthy fleet's GPU-days; with `keep_target`, GPU0 of node00 misses no day.

    Hypothesis draws the fleet's shape, offsets and slope; each GPU's daily noise comes from
    a seeded generator it draws, inside the same bounds (thousands of GPU-days per example
    would take minutes drawn one value at a time).
    """
    hosts = draw(st.integers(1, 5))
    gpus = draw(st.integers(4, 8))
    days = draw(st.integers(min_days, 30))
    true_slope = draw(st.floats(0.18, 0.34))  # the fleet's own C per point of power
    blip_day = draw(st.integers(0, days - 1))
    out: Params = []
    for h in range(hosts):
        host_offset = draw(st.floats(-1.5, 1.5))
        for g in range(gpus):
            slot_offset = draw(st.floats(-2.5, 2.5))
            old_rows = draw(st.integers(0, 3))
            pending_day = draw(st.one_of(st.none(), st.integers(0, days - 1)))
            rng = random.Random(draw(st.integers(0, 2**32)))
            for d in range(days):
                kept = keep_target and (f"node{h:02}", g) == TARGET
                if not kept and rng.random() < 0.1:
                    continue  # a missing day (the host was down, the monitor was not running)
                power = base_power_pct() + rng.uniform(-5, 3)
                temp = (
                    base_temp()
                    + host_offset
                    + slot_offset
                    + true_slope * (power - base_power_pct())
                    + rng.uniform(-1, 1)
                )
                out.append(
                    {
                        "day": d,
                        "host": f"node{h:02}",
                        "gpu": g,
                        "temp_c": temp,
                        "power_pct": power,
                        "ecc": rng.randint(0, 1),
                        "replay": rng.randint(0, 3),
                        "remap_corrected": old_rows,
                        "pending": d == pending_day,
                        "brake_s": 30.0 if (d == blip_day and g == 0) else 0.0,
                        "hw_slowdown_s": 3.0 if d % 5 == 0 else 0.0,
                        "link_down_n": rng.randint(0, 3),
                    }
                )
    return out


@settings(max_examples=200, deadline=None)
@given(healthy_fleet())
def test_a_healthy_fleet_raises_nothing(fleet: Params) -> None:
    assert find_trends(gpu_day(**p) for p in fleet) == []


DRIFTS = {
    "ecc": "ecc_corrected_rising",
    "replay": "pcie_replay_rising",
    "brake": "power_brake_recurring",
    "hot": "gpu_hotter_than_peers",
    "headroom": "headroom_shrinking",
    "remaps": "remap_bank_limit",
}


def drift(p: dict[str, Any], kind: str, last: int) -> dict[str, Any]:
    """GPU0 of node00's day `p` with the drift `kind` added; `last` is the fleet's last day."""
    if (p["host"], p["gpu"]) != TARGET:
        return p
    age = last - p["day"]  # 0 on the last day
    q = dict(p)
    if kind == "ecc" and age < 7:
        q["ecc"] = 40
    elif kind == "replay" and age < 7:
        q["replay"] = 80
    elif kind == "brake" and age < 7 and age % 2 == 0:
        q["brake_s"] = 20.0
    elif kind == "hot":
        q["temp_c"] += 15
    elif kind == "headroom":
        q["temp_c"] += 0.8 * max(0, 14 - age)
    elif kind == "remaps":
        q["remap_uncorrected"] = 2 + max(0, 7 - age)
    return q


@settings(max_examples=60, deadline=None)
@given(healthy_fleet(min_days=14, keep_target=True), st.sampled_from(sorted(DRIFTS)))
def test_the_same_fleet_with_a_drift_raises_it(fleet: Params, kind: str) -> None:
    last = max(p["day"] for p in fleet)
    found = find_trends(gpu_day(**drift(p, kind, last)) for p in fleet)
    assert (DRIFTS[kind], *TARGET) in {(f.rule, f.subject.host, f.subject.gpu) for f in found}
