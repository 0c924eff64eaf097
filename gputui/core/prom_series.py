"""The Prometheus series of a GPU reading: gputui's own names and dcgm-exporter's.

One table serves both directions: `gputui exporter` writes each reading field under gputui's
name, in Prometheus' base units (bytes, hertz, ratios), and the Prometheus source reads a fleet
back from either gputui's series or dcgm-exporter's `DCGM_FI_*` series, in the units DCGM
uses. A field with no DCGM counterpart is read from gputui's series only; a source that lacks
a field shows it as not available, never as ok (docs/prometheus.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from gputui.core.model import GpuReading

MIB = 1024 * 1024
MHZ = 1_000_000.0


@dataclass(frozen=True)
class GpuSeries:
    """One reading field as Prometheus series.

    `scale` turns the field's value into gputui's series value (MiB -> bytes: 1,048,576); DCGM's
    series carry the field's own unit, so they are read unscaled. `kind` is the Prometheus
    metric type of gputui's series ("gauge", or "counter" for cumulative counts, whose name ends
    in `_total`)."""

    field: str
    name: str
    help: str
    scale: float = 1.0
    kind: str = "gauge"
    dcgm: str | None = None

    def exported(self, value: float) -> float:
        """The field's value as gputui's series carries it."""
        return value * self.scale

    def from_gputui(self, value: float) -> float:
        """A gputui series' value back in the field's unit."""
        return value / self.scale


GPU_SERIES: tuple[GpuSeries, ...] = (
    # fast readings
    GpuSeries(
        "temp_c",
        "gputui_gpu_temperature_celsius",
        "GPU core temperature.",
        dcgm="DCGM_FI_DEV_GPU_TEMP",
    ),
    GpuSeries(
        "power_w",
        "gputui_gpu_power_usage_watts",
        "Board power draw.",
        dcgm="DCGM_FI_DEV_POWER_USAGE",
    ),
    GpuSeries(
        "power_limit_w",
        "gputui_gpu_power_limit_watts",
        "Enforced power limit.",
        dcgm="DCGM_FI_DEV_ENFORCED_POWER_LIMIT",
    ),
    GpuSeries(
        "util_pct",
        "gputui_gpu_utilization_ratio",
        "SM utilisation over the sample period (0-1).",
        scale=0.01,
        dcgm="DCGM_FI_DEV_GPU_UTIL",
    ),
    GpuSeries(
        "mem_util_pct",
        "gputui_gpu_memory_utilization_ratio",
        "Memory controller utilisation (0-1).",
        scale=0.01,
        dcgm="DCGM_FI_DEV_MEM_COPY_UTIL",
    ),
    GpuSeries(
        "mem_used_mib",
        "gputui_gpu_memory_used_bytes",
        "Frame buffer memory used (as nvidia-smi counts it).",
        scale=MIB,
        dcgm="DCGM_FI_DEV_FB_USED",
    ),
    GpuSeries(
        "mem_reserved_mib",
        "gputui_gpu_memory_reserved_bytes",
        "Frame buffer memory reserved by the driver and firmware.",
        scale=MIB,
        dcgm="DCGM_FI_DEV_FB_RESERVED",
    ),
    GpuSeries(
        "sm_clock_mhz",
        "gputui_gpu_sm_clock_hertz",
        "SM clock.",
        scale=MHZ,
        dcgm="DCGM_FI_DEV_SM_CLOCK",
    ),
    GpuSeries(
        "mem_clock_mhz",
        "gputui_gpu_memory_clock_hertz",
        "Memory clock.",
        scale=MHZ,
        dcgm="DCGM_FI_DEV_MEM_CLOCK",
    ),
    GpuSeries(
        "clock_events",
        "gputui_gpu_clock_event_reasons",
        "Clock-event (throttle) reason bit mask, as NVML reports it.",
        dcgm="DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
    ),
    # slow readings
    GpuSeries(
        "ecc_corrected_volatile",
        "gputui_gpu_ecc_corrected_volatile_total",
        "Corrected ECC errors since the driver loaded.",
        kind="counter",
        dcgm="DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
    ),
    GpuSeries(
        "ecc_uncorrected_volatile",
        "gputui_gpu_ecc_uncorrected_volatile_total",
        "Uncorrected ECC errors since the driver loaded.",
        kind="counter",
        dcgm="DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    ),
    GpuSeries(
        "ecc_corrected_aggregate",
        "gputui_gpu_ecc_corrected_aggregate_total",
        "Corrected ECC errors over the GPU's life.",
        kind="counter",
        dcgm="DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
    ),
    GpuSeries(
        "ecc_uncorrected_aggregate",
        "gputui_gpu_ecc_uncorrected_aggregate_total",
        "Uncorrected ECC errors over the GPU's life.",
        kind="counter",
        dcgm="DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
    ),
    GpuSeries(
        "remap_corrected",
        "gputui_gpu_remapped_rows_correctable_total",
        "Rows remapped for correctable errors.",
        kind="counter",
        dcgm="DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
    ),
    GpuSeries(
        "remap_uncorrected",
        "gputui_gpu_remapped_rows_uncorrectable_total",
        "Rows remapped for uncorrectable errors.",
        kind="counter",
        dcgm="DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    ),
    GpuSeries(
        "remap_pending",
        "gputui_gpu_row_remap_pending",
        "1 while a row remap waits for a GPU reset.",
        dcgm="DCGM_FI_DEV_ROW_REMAP_PENDING",
    ),
    GpuSeries(
        "remap_failure",
        "gputui_gpu_row_remap_failure",
        "1 once a row remap failed (no spare row left).",
        dcgm="DCGM_FI_DEV_ROW_REMAP_FAILURE",
    ),
    GpuSeries(
        "retired_pages_sbe",
        "gputui_gpu_retired_pages_single_bit_total",
        "Pages retired for single-bit errors (before Ampere).",
        kind="counter",
        dcgm="DCGM_FI_DEV_RETIRED_SBE",
    ),
    GpuSeries(
        "retired_pages_dbe",
        "gputui_gpu_retired_pages_double_bit_total",
        "Pages retired for double-bit errors (before Ampere).",
        kind="counter",
        dcgm="DCGM_FI_DEV_RETIRED_DBE",
    ),
    GpuSeries(
        "retired_pages_pending",
        "gputui_gpu_retired_pages_pending",
        "1 while a page retirement waits for a reboot.",
        dcgm="DCGM_FI_DEV_RETIRED_PENDING",
    ),
    GpuSeries(
        "pcie_gen",
        "gputui_gpu_pcie_link_generation",
        "Current PCIe link generation.",
        dcgm="DCGM_FI_DEV_PCIE_LINK_GEN",
    ),
    GpuSeries(
        "pcie_width",
        "gputui_gpu_pcie_link_width",
        "Current PCIe link width (lanes).",
        dcgm="DCGM_FI_DEV_PCIE_LINK_WIDTH",
    ),
    GpuSeries(
        "pcie_replay",
        "gputui_gpu_pcie_replay_total",
        "PCIe replays.",
        kind="counter",
        dcgm="DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
    ),
    GpuSeries("nvlink_active", "gputui_gpu_nvlink_active_links", "NVLink links up."),
    GpuSeries(
        "nvlink_replay",
        "gputui_gpu_nvlink_replay_total",
        "NVLink replay errors, summed over links.",
        kind="counter",
        dcgm="DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
    ),
    GpuSeries(
        "nvlink_recovery",
        "gputui_gpu_nvlink_recovery_total",
        "NVLink recovery errors, summed over links.",
        kind="counter",
        dcgm="DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
    ),
    GpuSeries(
        "nvlink_crc_flit",
        "gputui_gpu_nvlink_crc_flit_errors_total",
        "NVLink CRC flit errors, summed over links.",
        kind="counter",
        dcgm="DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
    ),
    GpuSeries(
        "nvlink_crc_data",
        "gputui_gpu_nvlink_crc_data_errors_total",
        "NVLink CRC data errors, summed over links.",
        kind="counter",
        dcgm="DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
    ),
    GpuSeries(
        "recovery_action",
        "gputui_gpu_recovery_action",
        "NVML's GPU recovery action: 0 none, 1 GPU reset, 2 node reboot, 3 drain P2P, "
        "4 drain and reset.",
    ),
)

# The fields named must be readings a GpuReading carries (a rename there fails here, at import).
_FIELDS = set(GpuReading.__struct_fields__)
assert all(s.field in _FIELDS for s in GPU_SERIES), "a series names no GpuReading field"

#: dcgm-exporter's XID series: the last XID value seen on the GPU (not a count).
DCGM_XID = "DCGM_FI_DEV_XID_ERRORS"
#: Label names dcgm-exporter puts on its series (REFERENCE: gpu, UUID, modelName, Hostname).
DCGM_LABEL_GPU = "gpu"
DCGM_LABEL_UUID = "UUID"
DCGM_LABEL_MODEL = "modelName"
DCGM_LABEL_HOST = "Hostname"
#: dcgm-exporter's HPC job label (set when DCGM's job mapping is configured).
DCGM_LABEL_JOB = "hpc_job"

#: gputui's own per-GPU and per-host series beyond the readings.
XID_ERRORS = "gputui_gpu_xid_errors_total"  # counter, label xid
GPU_VERDICT = "gputui_gpu_verdict_level"  # Level: 0 ok, 1 unknown, 2 warn, 3 critical, 4 failed
HOST_VERDICT = "gputui_host_verdict_level"
GPU_REASON = "gputui_gpu_reason_info"  # 1 per active reason: labels code, level, action
HOST_REASON = "gputui_host_reason_info"
HOST_STATE = "gputui_host_state_info"  # 1 for the host's state: labels state, reason
HOST_SAMPLE_AGE = "gputui_host_sample_age_seconds"  # seconds since the last sample arrived
#: Labels of gputui's series: these, then the host's group labels from hosts.toml.
LABEL_HOST = "host"
LABEL_GPU = "gpu"
LABEL_UUID = "uuid"
LABEL_MODEL = "model"
LABEL_JOB = "job_id"  # not `job`: Prometheus sets `job` to the scrape job's name

BY_FIELD: dict[str, GpuSeries] = {s.field: s for s in GPU_SERIES}
BY_NAME: dict[str, GpuSeries] = {s.name: s for s in GPU_SERIES}
BY_DCGM: dict[str, GpuSeries] = {s.dcgm: s for s in GPU_SERIES if s.dcgm is not None}

#: The slow readings (ECC, row remaps, page retirement, PCIe, NVLink, recovery action): the
#: agent reads them every `slow_every` samples only, so the exporter takes each from the host's
#: last slow sample when the newest sample lacks it. A fast reading is never taken from an older
#: sample: absent now is absent. tests/test_prom_exporter.py checks this against the agent's
#: field table.
SLOW_FIELDS: frozenset[str] = frozenset(
    s.field
    for s in GPU_SERIES
    if s.field.startswith(("ecc_", "remap_", "retired_", "pcie_", "nvlink_", "recovery_"))
)

#: More labels of gputui's series.
LABEL_XID = "xid"  # on XID_ERRORS: the XID number
LABEL_CODE = "code"  # on the reason series: the reason code (xid_79, hw_thermal, gpu_lost, ...)
LABEL_LEVEL = "level"  # on the reason series: ok, unknown, warn, critical, failed
LABEL_ACTION = "action"  # on the reason series: NVIDIA's action (none, reset GPU, RMA, ...)
LABEL_STATE = "state"  # on HOST_STATE and COLLECTOR_HOSTS: connecting, streaming, ... no-gpu
LABEL_REASON = "reason"  # on HOST_STATE: why the host is in that state, in words
#: gputui's own labels, which a hosts.toml label of the same name may not replace: such a label
#: is exported as `group_<name>`.
RESERVED_LABELS: frozenset[str] = frozenset(
    {
        LABEL_HOST,
        LABEL_GPU,
        LABEL_UUID,
        LABEL_MODEL,
        LABEL_JOB,
        LABEL_XID,
        LABEL_CODE,
        LABEL_LEVEL,
        LABEL_ACTION,
        LABEL_STATE,
        LABEL_REASON,
        "job",
        "instance",
    }
)

#: The exporter's own health: what one gputui process collects and how late it publishes.
COLLECTOR_SAMPLES = "gputui_collector_samples_total"  # counter: samples received, every host
COLLECTOR_SAMPLE_RATE = "gputui_collector_samples_per_second"  # over the last RATE_WINDOW_S
COLLECTOR_DECODE_ERRORS = "gputui_collector_decode_errors_total"  # lines that did not decode
HOST_DECODE_ERRORS = "gputui_host_decode_errors_total"  # the same, per host
COLLECTOR_PUBLISH_LAG = "gputui_collector_publish_lag_seconds"  # snapshot built -> exporter
COLLECTOR_SNAPSHOT_AGE = "gputui_collector_snapshot_age_seconds"  # at scrape time
COLLECTOR_HOSTS = "gputui_collector_hosts"  # hosts per state (label state)
RATE_WINDOW_S = 10.0
