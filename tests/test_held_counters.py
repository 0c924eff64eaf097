"""The held-clock counters (time the clocks were held down, per reason): which NVML field ids
the agent asks each driver for, what it makes of the answers, and nvidia-smi's report of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gputui.agent.fields import BY_NAME, HELD_FIELDS, held_field_ids, ns_to_us
from gputui.agent.nvml_backend import NvmlBackend
from gputui.agent.simnvml import NVML_ERROR_NOT_SUPPORTED, SimNvml
from gputui.agent.simulation import Simulation
from gputui.agent.smi_parse import bus_key, parse_held_counters
from tests.agent_sim import FakeClock

RECORDING = Path(__file__).parent / "fixtures" / "h200" / "h200-nvidia-smi-q.txt"
NEW_IDS = {
    "held_sw_power_cap_us": 74,
    "held_sync_boost_us": 76,
    "held_sw_thermal_us": 269,
    "held_hw_thermal_us": 270,
    "held_hw_power_brake_us": 271,
}
OLD_IDS = {**NEW_IDS, "held_sw_thermal_us": 251, "held_hw_thermal_us": 252}
OLD_IDS["held_hw_power_brake_us"] = 253
TWO_OLDEST = {"held_sw_power_cap_us": 74, "held_sync_boost_us": 76}


@pytest.mark.parametrize(
    ("driver", "ids"),
    [
        ("580.159.04", NEW_IDS),  # the H200 of tests/fixtures/h200
        ("580.82.07", NEW_IDS),
        ("590.44.01", NEW_IDS),
        ("580.65.06", OLD_IDS),
        ("575.51.03", OLD_IDS),
        ("570.124.06", TWO_OLDEST),  # its 251-253 are power-smoothing settings
        ("470.256.02", TWO_OLDEST),
        ("", TWO_OLDEST),
        ("not a version", TWO_OLDEST),
        (None, TWO_OLDEST),
    ],
)
def test_the_counter_field_ids_follow_the_driver_release(driver: str | None, ids: Any) -> None:
    assert held_field_ids(driver) == ids


def test_nvml_counts_nanoseconds_and_the_protocol_microseconds() -> None:
    assert ns_to_us(23_312_999_999) == 23_312_999
    assert ns_to_us(999) == 0


class SpyNvml(SimNvml):
    """The simulated NVML, saying it is another driver and recording the field ids asked."""

    def __init__(self, sim: Simulation, version: str | None = None, refuse: int = -1) -> None:
        super().__init__(sim)
        self.version = version
        self.refuse = refuse
        self.asked: list[list[int]] = []

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.version or super().nvmlSystemGetDriverVersion()

    def nvmlDeviceGetFieldValues(self, handle: Any, fieldIds: list[int]) -> list[Any]:
        self.asked.append(list(fieldIds))
        values: list[Any] = super().nvmlDeviceGetFieldValues(handle, fieldIds)
        for v in values:
            if v.fieldId == self.refuse:
                v.nvmlReturn = NVML_ERROR_NOT_SUPPORTED
        return values


def spy(
    driver: str = "580", version: str | None = None, refuse: int = -1, workload: str = "training"
) -> tuple[SpyNvml, NvmlBackend, FakeClock]:
    clock = FakeClock()
    sc = {"name": "held", "gpus": 1, "driver": driver, "workload": workload}
    nvml = SpyNvml(Simulation(sc, seed=1, clock=clock), version, refuse)
    return nvml, NvmlBackend(nvml, event_thread=False), clock


def test_one_call_reads_the_recovery_action_and_the_drivers_counters() -> None:
    nvml, backend, clock = spy()
    clock.t = 90.0
    reading = backend.sample(slow=True)["gpus"][0]
    assert nvml.asked == [[230, 74, 76, 269, 270, 271]]
    g = nvml.sim.gpus[0]
    for name in HELD_FIELDS:
        assert reading[name] == g.held_ns[name] // 1000
    # A training GPU at its power cap for most of the 90 s, never braked nor overheated.
    assert 30_000_000 < reading["held_sw_power_cap_us"] <= 90_000_000
    assert reading["held_hw_power_brake_us"] == reading["held_hw_thermal_us"] == 0
    assert reading["recovery_action"] == 0
    assert not any(name in backend.sample(slow=False)["gpus"][0] for name in HELD_FIELDS)


def test_a_driver_of_the_older_numbering_is_asked_its_own_ids() -> None:
    nvml, backend, _ = spy(version="580.65.06")
    backend.sample(slow=True)
    assert nvml.asked == [[230, 74, 76, 251, 252, 253]]


def test_a_driver_before_r575_is_asked_only_the_two_old_counters() -> None:
    for driver in ("570", "470"):
        nvml, backend, _ = spy(driver)
        reading = backend.sample(slow=True)["gpus"][0]
        assert nvml.asked[0][-2:] == [74, 76] and 251 not in nvml.asked[0]
        assert set(HELD_FIELDS) & set(reading) == {"held_sw_power_cap_us", "held_sync_boost_us"}


def test_a_refused_counter_is_left_out_and_not_asked_again() -> None:
    nvml, backend, clock = spy(refuse=271)
    first = backend.sample(slow=True)["gpus"][0]
    clock.t = 10.0
    second = backend.sample(slow=True)["gpus"][0]
    assert "held_hw_power_brake_us" not in first and "held_hw_power_brake_us" not in second
    assert nvml.asked == [[230, 74, 76, 269, 270, 271], [230, 74, 76, 269, 270]]
    assert second["held_hw_thermal_us"] == 0 and "held_sw_power_cap_us" in second


def test_an_idle_gpu_accrues_no_held_time() -> None:
    _, backend, clock = spy(workload="idle")
    clock.t = 600.0
    reading = backend.sample(slow=True)["gpus"][0]
    assert all(reading[name] == 0 for name in HELD_FIELDS)


# -- nvidia-smi -q -d PERFORMANCE ---------------------------------------------------------------


def test_the_recorded_h200_report_reads_every_counter() -> None:
    """The H200's report, taken idle before its load: each counter at 0 us, for its GPU."""
    ((key, counters),) = parse_held_counters(RECORDING.read_text())
    assert key == bus_key("00000000:00:06.0")
    assert counters == dict.fromkeys(HELD_FIELDS, 0)


def _report(text: str, **values: str) -> str:
    """The recording with some counter lines' values replaced (by their label)."""
    lines = text.splitlines()
    start = lines.index("    Clocks Event Reasons Counters")
    for i in range(start + 1, start + 6):
        label = lines[i].split(":")[0].strip()
        if label in values:
            lines[i] = lines[i].split(":")[0] + ": " + values[label]
    return "\n".join(lines)


def test_counters_are_read_in_their_own_block() -> None:
    text = _report(
        RECORDING.read_text(),
        **{"SW Power Capping": "23312000 us", "Sync Boost": "N/A", "HW Power Braking": "9 us"},
    )
    # "Sync Boost : Not Active" in the reasons block above must not be read as a counter, nor
    # "N/A" in the counters block.
    ((_, counters),) = parse_held_counters(text)
    assert counters == {
        "held_sw_power_cap_us": 23_312_000,
        "held_sw_thermal_us": 0,
        "held_hw_thermal_us": 0,
        "held_hw_power_brake_us": 9,
    }


def test_two_gpus_each_keep_their_own_counters() -> None:
    one = RECORDING.read_text().split("GPU 00000000:00:06.0", 1)[1]
    report = (
        "==============NVSMI LOG==============\n\n"
        + "GPU 00000000:18:00.0"
        + _report(one, **{"SW Power Capping": "5 us"})
        + "\nGPU 00000000:2A:00.0"
        + _report(one, **{"HW Thermal Slowdown": "7 us"})
    )
    (a, ca), (b, cb) = parse_held_counters(report)
    assert (a, b) == (bus_key("00000000:18:00.0"), bus_key("00000000:2a:00.0"))
    assert (ca["held_sw_power_cap_us"], ca["held_hw_thermal_us"]) == (5, 0)
    assert (cb["held_sw_power_cap_us"], cb["held_hw_thermal_us"]) == (0, 7)


def test_a_report_without_the_block_reads_nothing() -> None:
    """Drivers before the counters print no such block."""
    text = RECORDING.read_text().replace("Clocks Event Reasons Counters", "Something Else")
    assert parse_held_counters(text) == [(bus_key("00000000:00:06.0"), {})]


def test_every_counter_names_its_nvidia_smi_fields() -> None:
    for name in HELD_FIELDS:
        field = BY_NAME[name]
        assert field.smi is not None and field.smi.startswith("clocks_event_reasons_counters.")
        assert field.smi_report is not None
        assert field.smi_report.startswith("Clocks Event Reasons Counters: ")
        assert field.slow and field.nvml == "nvmlDeviceGetFieldValues"
