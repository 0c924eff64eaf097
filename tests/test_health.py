"""Health rules: every reason code has a reading that raises it and one that does not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gputui.core.health import REASON_CODES, HostHealth, Thresholds
from gputui.core.model import (
    Action,
    Event,
    GpuInfo,
    GpuReading,
    Hello,
    HostVerdict,
    Level,
    Sample,
)

H100 = dict(
    name="NVIDIA H100 80GB HBM3",
    memory_total_mib=81559.0,
    power_limit_w=700.0,
    temp_shutdown_c=92.0,
    temp_slowdown_c=89.0,
    temp_gpu_max_c=87.0,
    temp_mem_max_c=95.0,
    sm_clock_max_mhz=1980,
    pcie_gen_max=5,
    pcie_width_max=16,
    nvlink_count=18,
    ecc_enabled=True,
)

HEALTHY_FAST: dict[str, Any] = dict(
    util_pct=95.0,
    mem_util_pct=40.0,
    mem_used_mib=40000.0,
    temp_c=60.0,
    power_w=600.0,
    power_limit_w=700.0,
    sm_clock_mhz=1980,
    mem_clock_mhz=2619,
    clock_events=0x4,  # SwPowerCap at TDP: normal
)
HEALTHY_SLOW: dict[str, Any] = dict(
    ecc_corrected_volatile=0,
    ecc_uncorrected_volatile=0,
    remap_corrected=0,
    remap_uncorrected=0,
    remap_pending=False,
    remap_failure=False,
    pcie_gen=5,
    pcie_width=16,
    pcie_replay=0,
    nvlink_active=18,
    nvlink_replay=0,
    nvlink_recovery=0,
    nvlink_crc_flit=0,
    nvlink_crc_data=0,
    recovery_action=0,
)


class Rig:
    """One host of `n` H100s fed samples one second apart."""

    def __init__(self, n: int = 4, thresholds: Thresholds | None = None, **info: Any) -> None:
        spec = {**H100, **info}
        self.hello = Hello(
            v=1,
            host="gpu001",
            agent_version="test",
            backend="sim",
            interval_s=1.0,
            slow_every=10,
            gpus=[GpuInfo(index=i, uuid=f"GPU-{i}", **spec) for i in range(n)],
        )
        self.n = n
        self.health = HostHealth(thresholds)
        self.t = 1_000_000.0
        self.seq = 0

    def reading(self, i: int, slow: bool, **fields: Any) -> GpuReading:
        base = {**HEALTHY_FAST, **(HEALTHY_SLOW if slow else {})}
        return GpuReading(index=i, **{**base, **fields})

    def step(
        self,
        gpus: dict[int, dict[str, Any]] | None = None,
        *,
        slow: bool = True,
        dt: float = 1.0,
        only: list[int] | None = None,
        raw: list[GpuReading] | None = None,
    ) -> HostVerdict:
        self.t += dt
        self.seq += 1
        gpus = gpus or {}
        indices = range(self.n) if only is None else only
        readings = (
            raw if raw is not None else [self.reading(i, slow, **gpus.get(i, {})) for i in indices]
        )
        sample = Sample(v=1, t=self.t, seq=self.seq, gpus=readings, slow=slow)
        return self.health.evaluate(self.hello, sample, self.t)

    def event(self, kind: Any, gpu: int | None = 0, xid: int | None = None, text: str = "") -> None:
        self.health.observe_event(
            Event(v=1, t=self.t, kind=kind, gpu=gpu, xid=xid, text=text), self.t
        )


def codes(v: HostVerdict, gpu: int = 0) -> set[str]:
    return {r.code for r in v.gpus[gpu].reasons}


def reason(v: HostVerdict, code: str, gpu: int = 0) -> Any:
    return next(r for r in v.gpus[gpu].reasons if r.code == code)


def test_healthy_host_is_ok() -> None:
    v = Rig().step()
    assert v.host.level is Level.OK and v.host.reasons == ()
    assert all(g.level is Level.OK for g in v.gpus.values())


# -- temperature -------------------------------------------------------------------------------


def test_temp_high_at_gpu_max() -> None:
    v = Rig().step({0: {"temp_c": 87.0}})
    r = reason(v, "temp_high")
    assert r.level is Level.WARN and r.text == "GPU0 87 C >= max operating 87 C"
    assert "temp_high" not in codes(Rig().step({0: {"temp_c": 86.0}}))


def test_temp_high_falls_back_to_slowdown_minus_5() -> None:
    rig = Rig(temp_gpu_max_c=None)
    assert "temp_high" in codes(rig.step({0: {"temp_c": 84.0}}))
    assert "temp_high" not in codes(Rig(temp_gpu_max_c=None).step({0: {"temp_c": 83.0}}))


def test_temp_slowdown_replaces_temp_high() -> None:
    v = Rig().step({3: {"temp_c": 89.0}})
    assert codes(v, 3) == {"temp_slowdown"}
    r = reason(v, "temp_slowdown", 3)
    assert r.level is Level.CRITICAL and r.text == "GPU3 89 C >= slowdown 89 C"
    assert codes(Rig().step({3: {"temp_c": 88.0}}), 3) == {"temp_high"}


def test_fallback_limits_when_gpu_reports_none() -> None:
    rig = Rig(temp_slowdown_c=None, temp_gpu_max_c=None)
    v = rig.step({0: {"temp_c": 87.0}, 1: {"temp_c": 82.0}, 2: {"temp_c": 81.0}})
    assert codes(v, 0) == {"temp_slowdown"} and "fallback" in reason(v, "temp_slowdown").text
    assert codes(v, 1) == {"temp_high"} and codes(v, 2) == set()


def test_own_limits_win_over_fallbacks() -> None:
    # A GPU rated for 95 C slowdown is fine at 88 C although the fallback says 87 C.
    v = Rig(temp_slowdown_c=95.0, temp_gpu_max_c=93.0).step({0: {"temp_c": 88.0}})
    assert codes(v) == set()


def test_temperature_hysteresis_in_band_keeps_and_below_clears() -> None:
    rig = Rig()
    assert "temp_high" in codes(rig.step({0: {"temp_c": 87.0}}))
    v = rig.step({0: {"temp_c": 85.0}})  # 87 - 2: still in the band
    assert "temp_high" in codes(v) and "clears below 85 C" in reason(v, "temp_high").text
    assert "temp_high" not in codes(rig.step({0: {"temp_c": 84.9}}))
    assert "temp_high" not in codes(rig.step({0: {"temp_c": 86.0}}))  # not raised from below


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=85.0, max_value=88.9), min_size=2, max_size=30))
def test_no_flap_on_temperature_oscillating_in_band(temps: list[float]) -> None:
    rig = Rig(n=1)
    levels = [rig.step({0: {"temp_c": 87.0}}).gpus[0].level]
    levels += [rig.step({0: {"temp_c": t}}).gpus[0].level for t in temps]
    assert set(levels) == {Level.WARN}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=85.0, max_value=86.99), min_size=2, max_size=30))
def test_no_raise_on_temperature_oscillating_below_limit(temps: list[float]) -> None:
    rig = Rig(n=1)
    assert {rig.step({0: {"temp_c": t}}).gpus[0].level for t in temps} == {Level.OK}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=93.0, max_value=97.0), min_size=2, max_size=30))
def test_no_flap_on_memory_oscillating_in_band(pcts: list[float]) -> None:
    rig = Rig(n=1)
    total = H100["memory_total_mib"]
    assert isinstance(total, float)
    first = rig.step({0: {"mem_used_mib": 0.96 * total}}).gpus[0].level
    levels = [rig.step({0: {"mem_used_mib": p / 100 * total}}).gpus[0].level for p in pcts]
    assert first is Level.WARN and set(levels) == {Level.WARN}


# -- memory ------------------------------------------------------------------------------------


def test_mem_full_above_95_pct() -> None:
    total = 81559.0
    v = Rig().step({0: {"mem_used_mib": 0.96 * total}})
    assert reason(v, "mem_full").text.startswith("GPU0 memory 96.0% used > 95%")
    assert "mem_full" not in codes(Rig().step({0: {"mem_used_mib": 0.95 * total}}))


# -- clock-event reasons -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mask", "code", "level"),
    [
        (0x20, "sw_thermal", Level.WARN),
        (0x08, "hw_slowdown", Level.CRITICAL),
        (0x48, "hw_thermal", Level.CRITICAL),
        (0x88, "hw_power_brake", Level.CRITICAL),
    ],
)
def test_clock_event_bits(mask: int, code: str, level: Level) -> None:
    v = Rig().step({0: {"clock_events": mask}})
    assert codes(v) == {code} and reason(v, code).level is level


@pytest.mark.parametrize("mask", [0x0, 0x1, 0x2, 0x4, 0x10, 0x100, 0x4 | 0x1])
def test_normal_clock_events_raise_nothing(mask: int) -> None:
    assert codes(Rig().step({0: {"clock_events": mask}})) == set()


def test_clock_event_held_then_dropped() -> None:
    rig = Rig()
    rig.step({0: {"clock_events": 0x40 | 0x08}})
    v = rig.step({0: {"clock_events": 0x4}}, dt=5)
    assert "hw_thermal" in codes(v) and "seen 5 s ago" in reason(v, "hw_thermal").text
    assert "hw_thermal" not in codes(rig.step({0: {"clock_events": 0x4}}, dt=6))


# -- ECC, remaps, retired pages ----------------------------------------------------------------


def test_ecc_uncorrectable_latches() -> None:
    rig = Rig()
    v = rig.step({0: {"ecc_uncorrected_volatile": 2}})
    r = reason(v, "ecc_uncorrectable")
    assert r.level is Level.CRITICAL and r.latched and r.action is Action.RESET_GPU
    assert "ecc_uncorrectable" in codes(rig.step(slow=False))  # fast sample: still there
    assert "ecc_uncorrectable" not in codes(Rig().step({0: {"ecc_uncorrected_volatile": 0}}))


def test_ecc_dbe_event_latches() -> None:
    rig = Rig()
    rig.event("ecc_dbe", gpu=1)
    assert "ecc_uncorrectable" in codes(rig.step(), 1)
    assert "ecc_uncorrectable" in codes(rig.step(), 1)


def test_remap_pending_survives_fast_samples() -> None:
    rig = Rig()
    assert reason(rig.step({0: {"remap_pending": True}}), "remap_pending").level is Level.WARN
    assert "remap_pending" in codes(rig.step(slow=False))
    assert "remap_pending" not in codes(rig.step({0: {"remap_pending": False}}))


def test_remap_failure_is_failed_and_latched() -> None:
    rig = Rig()
    r = reason(rig.step({0: {"remap_failure": True}}), "remap_failure")
    assert r.level is Level.FAILED and r.action is Action.RMA and r.latched
    assert "remap_failure" in codes(rig.step())
    assert "remap_failure" not in codes(Rig().step({0: {"remap_failure": False}}))


def test_retired_pages_pending() -> None:
    v = Rig().step({0: {"retired_pages_pending": True}})
    assert reason(v, "retired_pages_pending").level is Level.WARN
    assert codes(Rig().step({0: {"retired_pages_pending": False}})) == set()


# -- PCIe and NVLink ---------------------------------------------------------------------------


@pytest.mark.parametrize("fields", [{"pcie_gen": 4}, {"pcie_width": 8}])
def test_pcie_downgraded_under_load(fields: dict[str, int]) -> None:
    v = Rig().step({0: {**fields, "util_pct": 90.0}})
    assert reason(v, "pcie_downgraded").level is Level.WARN


def test_pcie_below_max_at_idle_is_normal() -> None:
    assert codes(Rig().step({0: {"pcie_gen": 1, "util_pct": 0.0}})) == set()
    assert codes(Rig().step({0: {"pcie_gen": 5, "pcie_width": 16, "util_pct": 95.0}})) == set()


def test_pcie_judgement_made_under_load_is_kept_at_idle() -> None:
    rig = Rig()
    rig.step({0: {"pcie_width": 8, "util_pct": 95.0}})
    assert "pcie_downgraded" in codes(rig.step({0: {"pcie_width": 8, "util_pct": 0.0}}))


@pytest.mark.parametrize(
    ("field", "code"),
    [
        ("pcie_replay", "pcie_replay_rising"),
        ("nvlink_replay", "nvlink_errors_rising"),
        ("nvlink_recovery", "nvlink_errors_rising"),
        ("nvlink_crc_flit", "nvlink_errors_rising"),
        ("nvlink_crc_data", "nvlink_errors_rising"),
    ],
)
def test_counter_rises(field: str, code: str) -> None:
    rig = Rig()
    assert code not in codes(rig.step({0: {field: 5}}))  # first sample: baseline only
    assert code not in codes(rig.step({0: {field: 5}}))  # flat
    v = rig.step({0: {field: 7}}, dt=10)
    assert reason(v, code).level is Level.WARN and "+2" in reason(v, code).text
    assert code in codes(rig.step({0: {field: 7}}, dt=10))  # held after the rise
    assert code not in codes(rig.step({0: {field: 7}}, dt=400))  # hold expired


def test_counter_rise_ignores_fast_samples_between() -> None:
    rig = Rig()
    rig.step({0: {"pcie_replay": 5}})
    rig.step(slow=False)  # no counter: no baseline change
    assert "pcie_replay_rising" not in codes(rig.step({0: {"pcie_replay": 5}}))


def test_nvlink_down() -> None:
    v = Rig().step({0: {"nvlink_active": 17}})
    r = reason(v, "nvlink_down")
    assert r.level is Level.CRITICAL and r.text == "GPU0 NVLink 17 of 18 links active"
    assert codes(Rig().step({0: {"nvlink_active": 18}})) == set()
    assert codes(Rig(nvlink_count=0).step({0: {"nvlink_active": 0}})) == set()


# -- recovery action ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "action"),
    [(1, Action.RESET_GPU), (2, Action.REBOOT_NODE), (3, Action.DRAIN), (4, Action.DRAIN)],
)
def test_recovery_action(value: int, action: Action) -> None:
    r = reason(Rig().step({0: {"recovery_action": value}}), "recovery_action")
    assert r.level is Level.CRITICAL and r.action is action
    assert codes(Rig().step({0: {"recovery_action": 0}})) == set()


# -- straggler ---------------------------------------------------------------------------------


def slow_gpu3(rig: Rig, samples: int, **fields: Any) -> HostVerdict:
    v = rig.step()
    for _ in range(samples):
        v = rig.step({3: fields or {"sm_clock_mhz": 1500}}, slow=False)
    return v


def test_straggler_by_clock_after_sustained_samples() -> None:
    th = Thresholds()
    assert "straggler" not in codes(slow_gpu3(Rig(), th.straggler_samples - 1), 3)
    v = slow_gpu3(Rig(), th.straggler_samples)
    r = reason(v, "straggler", 3)
    assert r.level is Level.WARN and "1500 MHz" in r.text
    assert all("straggler" not in codes(v, i) for i in range(3))


def test_straggler_by_utilisation() -> None:
    v = slow_gpu3(Rig(), 5, util_pct=40.0)
    assert "straggler" in codes(v, 3)


def test_straggler_needs_busy_peers_and_enough_of_them() -> None:
    idle = {i: {"util_pct": 10.0} for i in range(4)}
    rig = Rig()
    for _ in range(6):
        v = rig.step({**idle, 3: {"util_pct": 10.0, "sm_clock_mhz": 600}}, slow=False)
    assert "straggler" not in codes(v, 3)
    assert "straggler" not in codes(slow_gpu3(Rig(n=3), 6), 2)


def test_straggler_clears_only_after_the_settle_period() -> None:
    th = Thresholds()
    rig = Rig()
    slow_gpu3(rig, 5)
    assert th.straggler_settle_s >= 30  # minutes of flapping otherwise, not seconds
    # The first normal sample starts the settle period; it clears once that has passed.
    for _ in range(int(th.straggler_settle_s)):
        assert "straggler" in codes(rig.step(slow=False), 3)
    assert "straggler" not in codes(rig.step(slow=False), 3)


def test_straggler_settles_again_after_each_outlying_sample() -> None:
    th = Thresholds()
    rig = Rig()
    slow_gpu3(rig, 5)
    for _ in range(3):
        for _ in range(int(th.straggler_settle_s) - 10):
            rig.step(slow=False)
        v = rig.step({3: {"sm_clock_mhz": 1500}}, slow=False)  # slow again now and then
        assert "straggler" in codes(v, 3)


IDLE = {i: {"util_pct": 3.0, "sm_clock_mhz": 345} for i in range(4)}


def test_no_yardstick_neither_clears_nor_raises_a_straggler() -> None:
    """A checkpoint write: every GPU waits on storage, so for a while no GPU has busy peers."""
    th = Thresholds()
    rig = Rig()
    slow_gpu3(rig, 5)
    # A pause much longer than the settle period does not clear the verdict...
    for _ in range(int(th.straggler_settle_s) * 3):
        assert "straggler" in codes(rig.step(IDLE, slow=False), 3)
    # ... nor does the job's return with GPU3 as slow as before.
    for _ in range(int(th.straggler_settle_s) * 3):
        assert "straggler" in codes(rig.step({3: {"sm_clock_mhz": 1500}}, slow=False), 3)
    # Outlying samples split by pauses never add up to a new verdict either.
    rig = Rig()
    for _ in range(20):
        for _ in range(th.straggler_samples - 1):
            v = rig.step({3: {"sm_clock_mhz": 1500}}, slow=False)
        v = rig.step(IDLE, slow=False)
        assert "straggler" not in codes(v, 3)


def test_after_a_break_peers_judge_only_once_they_have_been_in_step_for_a_while() -> None:
    """GPUs that work independently fall in step by chance for a few seconds; the rule waits
    until they have stayed in step for `straggler_in_step_s` (not for the first samples it
    sees: a short look such as triage's judges what it has)."""
    th = Thresholds()
    rig = Rig()
    rig.step(IDLE, slow=False)
    in_step = int(th.straggler_in_step_s)
    assert in_step > th.straggler_samples
    for _ in range(in_step):
        assert "straggler" not in codes(rig.step({3: {"sm_clock_mhz": 1500}}, slow=False), 3)
    assert "straggler" in codes(rig.step({3: {"sm_clock_mhz": 1500}}, slow=False), 3)


# -- lost, reset required, errors, missing GPUs ------------------------------------------------


def test_gpu_lost_is_failed_latched_until_reset() -> None:
    rig = Rig()
    lost = GpuReading(index=0, status="lost", error="GPU is lost")
    v = rig.step(raw=[lost, *(rig.reading(i, True) for i in range(1, 4))])
    r = reason(v, "gpu_lost")
    assert r.level is Level.FAILED and r.latched and v.host.level is Level.FAILED
    # NVML says "lost" until the GPU is reset: reading normally again means it was.
    assert "gpu_lost" not in codes(rig.step())
    assert codes(Rig().step()) == set()


def test_gpu_lost_event_latches() -> None:
    rig = Rig()
    rig.event("gpu_lost", gpu=2)
    assert "gpu_lost" in codes(rig.step(), 2) and "gpu_lost" in codes(rig.step(), 2)


def test_reset_required() -> None:
    rig = Rig()
    v = rig.step(raw=[GpuReading(index=0, status="reset_required")])
    r = reason(v, "reset_required")
    assert r.level is Level.CRITICAL and r.action is Action.RESET_GPU and r.latched
    rig2 = Rig()
    rig2.event("reset_required", gpu=0)
    assert "reset_required" in codes(rig2.step())


def test_read_error_is_unknown() -> None:
    v = Rig(n=1).step(raw=[GpuReading(index=0, status="error", error="Unknown Error")])
    assert v.gpus[0].level is Level.UNKNOWN and codes(v) == {"read_error"}


def test_no_readings_is_unknown() -> None:
    v = Rig(n=1).step(raw=[GpuReading(index=0)])
    assert v.gpus[0].level is Level.UNKNOWN and codes(v) == {"no_readings"}


def test_missing_gpu_is_unknown_and_host_critical() -> None:
    v = Rig().step(only=[0, 1, 3])
    assert v.gpus[2].level is Level.UNKNOWN and codes(v, 2) == {"no_readings"}
    host = next(r for r in v.host.reasons if r.code == "gpu_missing")
    assert host.level is Level.CRITICAL and host.gpu is None and "GPU2" in host.text
    assert "gpu_missing" not in {r.code for r in Rig().step().host.reasons}


def test_gpu_not_in_inventory() -> None:
    rig = Rig(n=2)
    v = rig.step(raw=[rig.reading(i, True) for i in range(3)])
    assert "gpu_not_in_inventory" in {r.code for r in v.host.reasons}


def test_no_gpus() -> None:
    v = Rig(n=0).step(raw=[])
    assert v.host.level is Level.UNKNOWN and [r.code for r in v.host.reasons] == ["no_gpus"]


# -- the host verdict --------------------------------------------------------------------------


def test_host_verdict_collects_every_gpu_reason_worst_first() -> None:
    rig = Rig()
    v = rig.step({0: {"temp_c": 87.0}, 2: {"remap_failure": True}, 3: {"clock_events": 0x48}})
    assert v.host.level is Level.FAILED
    assert [r.code for r in v.host.reasons] == ["remap_failure", "hw_thermal", "temp_high"]
    assert [r.gpu for r in v.host.reasons] == [2, 3, 0]
    assert v.host.action is Action.RMA


def test_every_reason_code_has_a_test() -> None:
    here = Path(__file__).parent
    files = [*here.glob("test_health*.py"), *here.glob("test_job_straggler*.py")]
    source = "".join(f.read_text(encoding="utf-8") for f in files)
    untested = [c for c in REASON_CODES if f'"{c}"' not in source.replace(f'"{c}": ', "")]
    assert untested == []


def test_thresholds_decode_from_toml_table() -> None:
    th = msgspec.convert({"hysteresis_c": 3, "straggler_samples": 2}, Thresholds)
    assert th.hysteresis_c == 3 and th.straggler_samples == 2
    with pytest.raises(msgspec.ValidationError, match="hysteresis_cc"):
        msgspec.convert({"hysteresis_cc": 3}, Thresholds)
    with pytest.raises(msgspec.ValidationError, match="mem_used_warn_pct"):
        msgspec.convert({"mem_used_warn_pct": 120}, Thresholds)
