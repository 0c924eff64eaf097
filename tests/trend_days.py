"""Daily rollups for the trend-rule tests, built around a real H200's day.

The recording in tests/fixtures/h200 (idle, a 70 s matmul at the 700 W cap, idle) goes through
the real accumulator once; every synthetic GPU-day is that day with the readings a test
changes. So a healthy day is what a real GPU read under load (62 C at 97% of its limit, 27 C
below its 89 C slowdown limit, no errors), and a drift is that day moved.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec

from gputui.core.model import Hello, Sample
from gputui.core.rollup import BUCKET_DAY_S, Rollup, RollupAccumulator

DAY = BUCKET_DAY_S
STREAM = Path(__file__).parent / "fixtures" / "h200" / "h200-nvml-idle-load-idle.jsonl"


@functools.cache
def recorded_samples() -> tuple[Hello, list[Sample]]:
    lines = STREAM.read_text().splitlines()
    hello = msgspec.json.decode(lines[0], type=Hello)
    samples = [
        msgspec.json.decode(line, type=Sample)
        for line in lines[1:]
        if json.loads(line)["type"] == "sample"
    ]
    return hello, samples


@functools.cache
def recorded_day() -> Rollup:
    """The recording's one day, as the accumulator rolls it up."""
    hello, samples = recorded_samples()
    acc = RollupAccumulator(DAY)
    out: list[Rollup] = []
    for sample in samples:
        out += acc.add_sample("h200", hello.gpus, sample)
    out += acc.close_all()
    (day,) = out
    return day


def limits() -> tuple[float, float]:
    """The recorded GPU's (slowdown limit in C, power limit in W)."""
    hello, _ = recorded_samples()
    gpu = hello.gpus[0]
    assert gpu.temp_slowdown_c is not None and gpu.power_limit_w is not None
    return gpu.temp_slowdown_c, gpu.power_limit_w


def t0() -> int:
    """Day 0 of every synthetic series: the recording's day."""
    return recorded_day().start


def base_temp() -> float:
    r = recorded_day()
    assert r.load_temp_mean_c is not None
    return r.load_temp_mean_c


def base_power_pct() -> float:
    r = recorded_day()
    assert r.load_power_mean_w is not None
    return 100 * r.load_power_mean_w / limits()[1]


def gpu_day(
    day: int,
    *,
    host: str = "node01",
    gpu: int = 0,
    uuid: str | None = None,
    temp_c: float | None = None,
    power_pct: float | None = None,
    load_n: int | None = None,
    ecc: int | None = 0,
    ecc_uncorrected: int | None = 0,
    replay: int | None = 0,
    remap_corrected: int | None = 0,
    remap_uncorrected: int | None = 0,
    pending: bool | None = False,
    failure: bool | None = False,
    brake_s: float = 0.0,
    hw_slowdown_s: float = 0.0,
    hw_thermal_s: float = 0.0,
    link_n: int | None = None,
    link_down_n: int = 0,
    xids: dict[int, int] | None = None,
) -> Rollup:
    """GPU `gpu` of `host` on day `day` (0 = the recording's), mean temperature `temp_c` at
    `power_pct` of its limit under load (default: the recording's), with these counters."""
    rec = recorded_day()
    slowdown, limit = limits()
    temp = base_temp() if temp_c is None else temp_c
    pct = base_power_pct() if power_pct is None else power_pct
    watts = pct * limit / 100
    return msgspec.structs.replace(
        rec,
        host=host,
        gpu=gpu,
        uuid=uuid or f"GPU-{host}-{gpu}",
        start=t0() + day * DAY,
        # a day spent under load: its means are those under load
        temp_mean_c=temp,
        headroom_mean_c=slowdown - temp,
        headroom_min_c=slowdown - temp - 1,
        temp_max_c=temp + 1,
        power_mean_w=watts,
        power_limit_mean_pct=pct,
        load_n=rec.load_n if load_n is None else load_n,
        load_temp_mean_c=temp,
        load_power_mean_w=watts,
        ecc_corrected=ecc,
        ecc_uncorrected=ecc_uncorrected,
        pcie_replay=replay,
        remap_corrected=remap_corrected,
        remap_uncorrected=remap_uncorrected,
        remap_pending=pending,
        remap_failure=failure,
        held=msgspec.structs.replace(
            rec.held,
            hw_power_brake_s=brake_s,
            hw_thermal_s=hw_thermal_s,
            # nvidia-smi lists HW thermal and power brake under HW slowdown: the bit is set
            # whenever either is
            hw_slowdown_s=hw_slowdown_s + max(brake_s, hw_thermal_s),
        ),
        link_n=rec.link_n if link_n is None else link_n,
        link_down_n=link_down_n,
        xids=dict(xids or {}),
    )


def series(days: Iterable[int], **kw: Any) -> list[Rollup]:
    """One GPU over `days`, each day's readings from `kw`; a callable value is called with
    the day."""
    out = []
    for d in days:
        args = {k: (v(d) if callable(v) else v) for k, v in kw.items()}
        out.append(gpu_day(d, **args))
    return out


def host(
    days: Iterable[int], gpus: int = 8, name: str = "node01", **kw: Callable[[int, int], Any]
) -> list[Rollup]:
    """All GPUs of a host; each keyword is a function of (gpu, day)."""
    days = list(days)
    out = []
    for g in range(gpus):
        for d in days:
            out.append(gpu_day(d, host=name, gpu=g, **{k: f(g, d) for k, f in kw.items()}))
    return out
