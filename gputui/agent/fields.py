"""The reading fields of the protocol, each declared once: name, unit, how NVML reads it, which
nvidia-smi `--query-gpu` field says the same and how its text is read, and how closely the two
must agree on a real GPU.

The NVML backend reads the fields marked `generic` straight from this table; the others share a
call or need a fallback (utilisation gives two fields in one call, memory tries v2 before v1,
the clock-event reasons have an older name, NVLink counters are summed over links) and keep
their own code there, but their NVML call is still named here. The nvidia-smi parser takes its
stream columns' fields and parsers from here, and scripts/device_check.py its tolerances.
nvitop's getters name their nvidia-smi equivalent beside them; this is that habit as data.

Standard library only: it runs on the GPU host with the rest of the agent (Python 3.8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

MIB = float(1 << 20)


# -- nvidia-smi cell parsers (its --format=csv,noheader,nounits text) -------------------------


def smi_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return round(smi_float(text))  # a driver that prints "1980.0" still means 1980


def smi_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)  # NaN is not JSON: the collector's decoder would drop the line
    return value


def smi_hex(text: str) -> int:
    return int(text, 16)  # "0x0000000000000004"


def smi_enabled(text: str) -> bool:
    if text not in ("Enabled", "Disabled"):
        raise ValueError(text)
    return text == "Enabled"


# -- NVML answer conversions ------------------------------------------------------------------


def milliwatts_to_w(value: Any) -> float:
    return round(float(value) / 1000.0, 1)


def bytes_to_mib(value: Any) -> float:
    return round(float(value) / MIB, 1)


def ns_to_us(value: Any) -> int:
    return int(value) // 1000  # NVML counts held-clock time in ns, nvidia-smi prints us


@dataclass(frozen=True)
class Field:
    """One reading field of the protocol (GpuReading) and where it comes from."""

    name: str  # the protocol's field name
    unit: str
    nvml: str  # the pynvml function that reads it
    # Names of pynvml constants passed after the device handle, e.g. NVML_TEMPERATURE_GPU.
    nvml_args: tuple[str, ...] = ()
    # NVML's answer -> the protocol's value; a builtin where one does, as it is called for every
    # GPU of every sample.
    nvml_value: Callable[[Any], Any] = int
    generic: bool = True  # False: the backend has its own code for it (see the module doc)
    slow: bool = False  # read on slow ticks only (NVML); nvidia-smi gives it every period
    smi: str | None = None  # the nvidia-smi --query-gpu field that says the same
    smi_value: Callable[[str], Any] = smi_int  # its cell text -> the protocol's value
    # The line of `nvidia-smi -q` that says the same, as "Section: Label" (for the fields
    # nvidia-smi streams on no driver, or not on every one).
    smi_report: str | None = None
    # scripts/device_check.py: (absolute, relative) tolerance between the two means over a run;
    # None: not compared.
    tolerance: tuple[float, float] | None = None


# The clock-event reasons field was renamed in driver R535; older drivers reject the new name
# with 'Field "clocks_event_reasons.active" is not a valid field to query.' (exit status 2).
SMI_REASONS = "clocks_event_reasons.active"
SMI_REASONS_OLD = "clocks_throttle_reasons.active"

# In the order the backend writes them into a reading.
READINGS = (
    # -- fast: every sample -------------------------------------------------------------------
    Field(
        "util_pct",
        "%",
        "nvmlDeviceGetUtilizationRates",
        generic=False,
        smi="utilization.gpu",
        smi_value=smi_float,
        tolerance=(15.0, 0.0),  # both average over their own windows
    ),
    Field(
        "mem_util_pct",
        "%",
        "nvmlDeviceGetUtilizationRates",
        generic=False,
        smi="utilization.memory",
        smi_value=smi_float,
        tolerance=(15.0, 0.0),
    ),
    Field(
        # v2 (nvmlMemory_v2), falling back to v1 whose `used` includes the reserved memory.
        "mem_used_mib",
        "MiB",
        "nvmlDeviceGetMemoryInfo",
        nvml_value=bytes_to_mib,
        generic=False,
        smi="memory.used",
        smi_value=smi_float,
        tolerance=(64.0, 0.02),
    ),
    Field(
        # v2 only. Constant while the driver runs; an H200 read 615 MiB through NVML, 616
        # through nvidia-smi. Only drivers whose nvidia-smi knows the field stream it.
        "mem_reserved_mib",
        "MiB",
        "nvmlDeviceGetMemoryInfo",
        nvml_value=bytes_to_mib,
        generic=False,
        smi="memory.reserved",
        smi_value=smi_float,
        tolerance=(2.0, 0.0),
    ),
    Field(
        "temp_c",
        "C",
        "nvmlDeviceGetTemperature",
        ("NVML_TEMPERATURE_GPU",),
        float,
        smi="temperature.gpu",
        smi_value=smi_float,
        tolerance=(3.0, 0.0),
    ),
    Field(
        "power_w",
        "W",
        "nvmlDeviceGetPowerUsage",
        nvml_value=milliwatts_to_w,
        smi="power.draw",
        smi_value=smi_float,
        tolerance=(15.0, 0.10),
    ),
    Field(
        "power_limit_w",
        "W",
        "nvmlDeviceGetEnforcedPowerLimit",
        nvml_value=milliwatts_to_w,
        smi="power.limit",
        smi_value=smi_float,
        tolerance=(1.0, 0.0),
    ),
    Field(
        "sm_clock_mhz",
        "MHz",
        "nvmlDeviceGetClockInfo",
        ("NVML_CLOCK_SM",),
        smi="clocks.sm",
        tolerance=(30.0, 0.05),
    ),
    Field(
        "mem_clock_mhz",
        "MHz",
        "nvmlDeviceGetClockInfo",
        ("NVML_CLOCK_MEM",),
        smi="clocks.mem",
        tolerance=(30.0, 0.02),
    ),
    Field(
        # Falls back to nvmlDeviceGetCurrentClocksThrottleReasons (and the smi field to
        # SMI_REASONS_OLD) on drivers before R535.
        "clock_events",
        "bits",
        "nvmlDeviceGetCurrentClocksEventReasons",
        generic=False,
        smi=SMI_REASONS,
        smi_value=smi_hex,
    ),
    # -- slow: every `slow_every` samples -----------------------------------------------------
    *(
        Field(
            f"ecc_{kind.lower()}_{counter.lower()}",
            "count",
            "nvmlDeviceGetTotalEccErrors",
            (f"NVML_MEMORY_ERROR_TYPE_{kind}", f"NVML_{counter}_ECC"),
            slow=True,
            smi=f"ecc.errors.{kind.lower()}.{counter.lower()}.total",
            tolerance=(0.0, 0.0) if (kind, counter) == ("UNCORRECTED", "VOLATILE") else None,
        )
        for counter in ("VOLATILE", "AGGREGATE")
        for kind in ("CORRECTED", "UNCORRECTED")
    ),
    Field(
        "remap_corrected",
        "rows",
        "nvmlDeviceGetRemappedRows",
        generic=False,
        slow=True,
        smi="remapped_rows.correctable",
    ),
    Field(
        "remap_uncorrected",
        "rows",
        "nvmlDeviceGetRemappedRows",
        generic=False,
        slow=True,
        smi="remapped_rows.uncorrectable",
    ),
    Field("remap_pending", "bool", "nvmlDeviceGetRemappedRows", generic=False, slow=True),
    Field("remap_failure", "bool", "nvmlDeviceGetRemappedRows", generic=False, slow=True),
    Field(
        "retired_pages_sbe",
        "pages",
        "nvmlDeviceGetRetiredPages",
        generic=False,
        slow=True,
        smi="retired_pages.single_bit_ecc.count",
    ),
    Field(
        "retired_pages_dbe",
        "pages",
        "nvmlDeviceGetRetiredPages",
        generic=False,
        slow=True,
        smi="retired_pages.double_bit.count",
    ),
    Field(
        "retired_pages_pending",
        "bool",
        "nvmlDeviceGetRetiredPagesPendingStatus",
        generic=False,
        slow=True,
    ),
    Field(
        "pcie_gen",
        "gen",
        "nvmlDeviceGetCurrPcieLinkGeneration",
        slow=True,
        smi="pcie.link.gen.current",
        tolerance=(0.0, 0.0),
    ),
    Field(
        "pcie_width",
        "lanes",
        "nvmlDeviceGetCurrPcieLinkWidth",
        slow=True,
        smi="pcie.link.width.current",
        tolerance=(0.0, 0.0),
    ),
    Field("pcie_replay", "count", "nvmlDeviceGetPcieReplayCounter", slow=True),
    # NVLink: per-link calls summed over the GPU's links; nvidia-smi has no --query-gpu field.
    Field("nvlink_active", "links", "nvmlDeviceGetNvLinkState", generic=False, slow=True),
    *(
        Field(
            f"nvlink_{name}",
            "count",
            "nvmlDeviceGetNvLinkErrorCounter",
            (f"NVML_NVLINK_ERROR_DL_{name.upper()}",),
            generic=False,
            slow=True,
        )
        for name in ("replay", "recovery", "crc_flit", "crc_data")
    ),
    Field(
        "recovery_action",
        "code",
        "nvmlDeviceGetFieldValues",
        ("NVML_FI_DEV_GET_GPU_RECOVERY_ACTION",),
        generic=False,
        slow=True,
    ),
    # Time the clocks were held down, per reason: cumulative counters read in one
    # nvmlDeviceGetFieldValues call with the recovery action. The field ids moved between
    # driver releases (HELD_FIELD_IDS below), so the backend picks them by the driver's
    # version, not by the pynvml constants named here.
    *(
        Field(
            f"held_{name}_us",
            "us",
            "nvmlDeviceGetFieldValues",
            (f"NVML_FI_DEV_CLOCKS_EVENT_REASON_{constant}",),
            ns_to_us,
            generic=False,
            slow=True,
            smi=f"clocks_event_reasons_counters.{smi}",
            smi_report=f"Clocks Event Reasons Counters: {label}",
        )
        for name, constant, smi, label in (
            ("sw_power_cap", "SW_POWER_CAP", "sw_power_cap", "SW Power Capping"),
            ("sync_boost", "SYNC_BOOST", "sync_boost", "Sync Boost"),
            ("sw_thermal", "SW_THERM_SLOWDOWN", "sw_thermal_slowdown", "SW Thermal Slowdown"),
            ("hw_thermal", "HW_THERM_SLOWDOWN", "hw_thermal_slowdown", "HW Thermal Slowdown"),
            (
                "hw_power_brake",
                "HW_POWER_BRAKE_SLOWDOWN",
                "hw_power_brake_slowdown",
                "HW Power Braking",
            ),
        )
    ),
)

BY_NAME = {f.name: f for f in READINGS}
HELD_FIELDS = tuple(f.name for f in READINGS if f.name.startswith("held_"))
# The clock-event reason bit (clock_events) whose time each held-clock counter counts. HW
# slowdown (0x8) has no counter of its own in NVML.
HELD_BITS = {
    "held_sw_power_cap_us": 0x4,
    "held_sync_boost_us": 0x10,
    "held_sw_thermal_us": 0x20,
    "held_hw_thermal_us": 0x40,
    "held_hw_power_brake_us": 0x80,
}

# The field ids of the held-clock counters, by the first driver version that answers them so.
# SW power cap (74) and sync boost (76) are NVML's older "perf policy" counters, there since
# NVML 11. The other three came with R575 as 251-253; from 580.82 on (nvidia-ml-py 13.580.82
# and every later release, the CUDA 13.1 nvml.h) they are 269-271, and 251-253 belong to power
# smoothing, as 251-255 already did in R570's nvml.h. Asking a driver for another branch's id
# would read a power-smoothing setting as a counter, so before R575 only the two old counters
# are asked for. Drivers between 580.65 and 580.82 are taken as the older numbering: 580.65's
# nvml.h and nvidia-smi use 251-253 (unverified for the releases in between).
HELD_FIELD_IDS: tuple[tuple[tuple[int, ...], dict[str, int]], ...] = (
    ((0,), {"held_sw_power_cap_us": 74, "held_sync_boost_us": 76}),
    (
        (575,),
        {
            "held_sw_power_cap_us": 74,
            "held_sync_boost_us": 76,
            "held_sw_thermal_us": 251,
            "held_hw_thermal_us": 252,
            "held_hw_power_brake_us": 253,
        },
    ),
    (
        (580, 82),
        {
            "held_sw_power_cap_us": 74,
            "held_sync_boost_us": 76,
            "held_sw_thermal_us": 269,
            "held_hw_thermal_us": 270,
            "held_hw_power_brake_us": 271,
        },
    ),
)


def driver_version_tuple(text: str) -> tuple[int, ...] | None:
    """(580, 159, 4) for "580.159.04"; None for text that is no driver version."""
    try:
        return tuple(int(part) for part in text.strip().split("."))
    except ValueError:
        return None


def held_field_ids(driver_version: str | None) -> dict[str, int]:
    """The held-clock counters' NVML field ids for a driver (unknown: the two oldest only)."""
    version = driver_version_tuple(driver_version or "")
    chosen = HELD_FIELD_IDS[0][1]
    for first, ids in HELD_FIELD_IDS:
        if version is not None and version >= first:
            chosen = ids
    return dict(chosen)
