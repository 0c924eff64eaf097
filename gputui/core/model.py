"""The data model shared by every layer.

The first half holds the readings exactly as the agent sends them (docs/protocol.md): they are
msgspec structs so the collector decodes a JSON line straight into the domain type, with no
copy per reading (at 1,000 hosts x 8 GPUs x 1 Hz that copy would be the hottest code in the
process). The second half holds what gputui concludes from them: verdicts, host states and the
fleet snapshot published once per tick.

Every struct here is `gc=False`: immutable, made by decoding or by the monitor, holding only
scalars, other such structs and containers of them, none can be part of a reference cycle.
Keeping the fleet's ~50,000 of them out of the cyclic garbage collector cut a full collection
with 1,000 hosts from ~30 ms to ~4 ms (measured), which the TUI would otherwise feel as a
pause, and the lines decoded every second no longer count towards young collections.

Every field that a GPU may not support is optional; None means "not reported", never zero.
Units are in the field names: _c Celsius, _w watts, _mib MiB, _mhz MHz, _pct percent, _s seconds.
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

import msgspec

PROTOCOL_VERSION = 1

# Plausible bounds of every reading, checked as a line is decoded: a value outside them is a
# decode error naming the field (docs/protocol.md), never judged and never shown. They are wide
# enough for any GPU NVML knows of (a GB200 board draws ~2.7 kW; counters are 64-bit but a
# real one never nears 2^53) and narrow enough to refuse garbage (-273 C, 1e300 W, 2^63 MHz).
Celsius = Annotated[float, msgspec.Meta(ge=-60, le=250)]
Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
Watts = Annotated[float, msgspec.Meta(ge=0, le=20_000)]
MiB = Annotated[float, msgspec.Meta(ge=0, le=1 << 30)]  # 1 PiB
MHz = Annotated[int, msgspec.Meta(ge=0, le=100_000)]
Count = Annotated[int, msgspec.Meta(ge=0, le=1 << 53)]  # cumulative hardware counters
GpuIndex = Annotated[int, msgspec.Meta(ge=0, le=1023)]
BitMask = Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]
PcieGen = Annotated[int, msgspec.Meta(ge=0, le=32)]
PcieWidth = Annotated[int, msgspec.Meta(ge=0, le=64)]
Links = Annotated[int, msgspec.Meta(ge=0, le=64)]
XidCode = Annotated[int, msgspec.Meta(ge=0, le=65_535)]
Pid = Annotated[int, msgspec.Meta(ge=0, le=(1 << 31) - 1)]
UnixTime = Annotated[float, msgspec.Meta(ge=0, le=1e11)]
IntervalS = Annotated[float, msgspec.Meta(gt=0, le=86_400)]
# A message lists at most this many GPUs (the largest NVLink domains hold 72 or 576).
MAX_GPUS = 1024

# Clock-event reason bits (nvmlDeviceGetCurrentClocksEventReasons).
CLOCK_EVENT_GPU_IDLE = 0x1
CLOCK_EVENT_APPLICATIONS_CLOCKS_SETTING = 0x2
CLOCK_EVENT_SW_POWER_CAP = 0x4
CLOCK_EVENT_HW_SLOWDOWN = 0x8
CLOCK_EVENT_SYNC_BOOST = 0x10
CLOCK_EVENT_SW_THERMAL_SLOWDOWN = 0x20
CLOCK_EVENT_HW_THERMAL_SLOWDOWN = 0x40
CLOCK_EVENT_HW_POWER_BRAKE_SLOWDOWN = 0x80
CLOCK_EVENT_DISPLAY_CLOCK_SETTING = 0x100

CLOCK_EVENT_NAMES: dict[int, str] = {
    CLOCK_EVENT_GPU_IDLE: "GPU idle",
    CLOCK_EVENT_APPLICATIONS_CLOCKS_SETTING: "application clocks setting",
    CLOCK_EVENT_SW_POWER_CAP: "software power cap",
    CLOCK_EVENT_HW_SLOWDOWN: "hardware slowdown",
    CLOCK_EVENT_SYNC_BOOST: "sync boost",
    CLOCK_EVENT_SW_THERMAL_SLOWDOWN: "software thermal slowdown",
    CLOCK_EVENT_HW_THERMAL_SLOWDOWN: "hardware thermal slowdown",
    CLOCK_EVENT_HW_POWER_BRAKE_SLOWDOWN: "hardware power brake",
    CLOCK_EVENT_DISPLAY_CLOCK_SETTING: "display clock setting",
}


def clock_event_words(mask: int) -> list[str]:
    """The clock-event reason bits of `mask` in words, lowest bit first."""
    return [name for bit, name in CLOCK_EVENT_NAMES.items() if mask & bit]


# --------------------------------------------------------------------------------------------
# Wire types: what the agent sends (protocol v1). Field names are the JSON keys.
# --------------------------------------------------------------------------------------------


class GpuInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """One GPU's inventory, read once when the agent starts."""

    index: GpuIndex
    uuid: str
    name: str
    serial: str | None = None
    pci_bus_id: str | None = None
    memory_total_mib: MiB | None = None
    power_limit_w: Watts | None = None  # enforced limit at start (TDP unless capped)
    temp_shutdown_c: Celsius | None = None
    temp_slowdown_c: Celsius | None = None
    temp_gpu_max_c: Celsius | None = None  # max operating temperature
    temp_mem_max_c: Celsius | None = None
    sm_clock_max_mhz: MHz | None = None
    mem_clock_max_mhz: MHz | None = None
    pcie_gen_max: PcieGen | None = None
    pcie_width_max: PcieWidth | None = None
    nvlink_count: Links | None = None  # links present on this GPU
    ecc_enabled: bool | None = None


# A name, id or path a host sends about a process: bounded so a hostile host cannot grow us.
ShortText = Annotated[str, msgspec.Meta(max_length=256)]
Uid = Annotated[int, msgspec.Meta(ge=0, le=(1 << 32) - 1)]

JobKind = Literal["slurm", "k8s"]
# Where the attribution was read: the process's cgroup path, or its environment (SLURM_JOB_ID,
# readable by root or the process's own user only), both by the agent; or the job label of the
# GPU's series in Prometheus (dcgm-exporter's hpc_job), by the Prometheus source, per GPU.
JobSource = Literal["cgroup", "environ", "label"]
# A GPU serves a few jobs at most (shared GPUs, MPS); a longer list is refused as implausible.
MAX_GPU_JOBS = 64


class JobRef(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """The job a GPU process serves, as the agent attributed it on its host (docs/jobs.md)."""

    kind: JobKind
    id: ShortText  # Slurm job id (an array task by its own id, as requeue takes it); pod UID
    step: ShortText | None = None  # Slurm step: "0", "batch", "extern", "interactive"
    namespace: ShortText | None = None  # Kubernetes, where the host's files say
    name: ShortText | None = None  # Kubernetes pod name, where the host's files say
    container: ShortText | None = None  # Kubernetes container id from the cgroup path
    source: JobSource = "cgroup"

    @property
    def key(self) -> str:
        """Fleet-wide identity of the job: `slurm:4242`, `k8s:<pod uid>`."""
        return f"{self.kind}:{self.id}"


class GpuProcess(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """A compute process on one GPU."""

    pid: Pid
    name: str | None = None
    used_memory_mib: MiB | None = None
    uid: Uid | None = None  # owner, from /proc/PID/status
    user: ShortText | None = None  # the uid's name on that host; absent when it has none
    job: JobRef | None = None  # absent: a plain process, no scheduler job found
    # Read by the agent where it can (docs/protocol.md): NVML's per-process utilisation over
    # the last sample period, and the host's view of the process from /proc.
    sm_util_pct: Percent | None = None
    mem_util_pct: Percent | None = None
    cpu_pct: Annotated[float, msgspec.Meta(ge=0, le=100_000)] | None = None  # % of one core
    rss_mib: MiB | None = None
    started_t: UnixTime | None = None  # when the process started (Unix seconds, host clock)
    cmdline: Annotated[str, msgspec.Meta(max_length=4096)] | None = None  # args joined by spaces


# Seconds a training step may take, and the ranks a heartbeat may name (the largest jobs run on
# some 100,000 GPUs).
StepSeconds = Annotated[float, msgspec.Meta(gt=0, le=86_400)]
Rank = Annotated[int, msgspec.Meta(ge=0, le=1 << 24)]
# A slow sample lists at most this many heartbeats: one per training process, a few per GPU.
MAX_HEARTBEATS = 4 * MAX_GPUS


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """One training process's progress, as it wrote it on its host (gputui/train) and the
    agent forwarded it: its rank, its GPU, its step count and how long its steps take."""

    pid: Pid
    t: UnixTime  # when the process wrote it (host clock)
    step: Count  # steps done since the process started
    gpu: GpuIndex | None = None  # the GPU it trains on, by this host's NVML index
    uuid: ShortText | None = None
    job: JobRef | None = None  # the agent's attribution of the pid; else the process's own
    rank: Rank | None = None  # global rank (RANK), absent for a single process
    local_rank: Rank | None = None
    world_size: Annotated[int, msgspec.Meta(ge=1, le=1 << 24)] | None = None
    step_time_s: StepSeconds | None = None  # wall time per step, mean of the last window
    compute_s: StepSeconds | None = None  # the rank's own work per step (waits left out)
    framework: ShortText | None = None  # keras, lightning, torch


GpuStatus = Literal["ok", "lost", "reset_required", "error"]


class GpuReading(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """One GPU's readings in one sample.

    Fast fields come in every sample; slow fields only in samples with `slow` set (and are None
    otherwise). A GPU whose status is not "ok" carries no readings, only `error`.
    """

    index: GpuIndex
    status: GpuStatus = "ok"
    error: str | None = None  # NVML error text when status != "ok"
    # fast
    util_pct: Percent | None = None  # SM utilisation over the last sample period
    mem_util_pct: Percent | None = None  # memory controller utilisation
    mem_used_mib: MiB | None = None  # as nvidia-smi counts it: NVML v2, reserved memory apart
    mem_reserved_mib: MiB | None = None  # held by the driver and firmware (NVML v2 only)
    temp_c: Celsius | None = None
    power_w: Watts | None = None
    power_limit_w: Watts | None = None  # enforced limit now
    sm_clock_mhz: MHz | None = None
    mem_clock_mhz: MHz | None = None
    clock_events: BitMask | None = None  # clock-event reason bit mask
    # slow
    ecc_corrected_volatile: Count | None = None
    ecc_uncorrected_volatile: Count | None = None
    ecc_corrected_aggregate: Count | None = None
    ecc_uncorrected_aggregate: Count | None = None
    remap_corrected: Count | None = None  # rows remapped for correctable errors
    remap_uncorrected: Count | None = None  # rows remapped for uncorrectable errors
    remap_pending: bool | None = None  # a remap waits for a GPU reset
    remap_failure: bool | None = None  # no spare row was left
    retired_pages_sbe: Count | None = None  # pre-Ampere page retirement
    retired_pages_dbe: Count | None = None
    retired_pages_pending: bool | None = None
    pcie_gen: PcieGen | None = None
    pcie_width: PcieWidth | None = None
    pcie_replay: Count | None = None  # cumulative PCIe replay counter
    nvlink_active: Links | None = None  # links in the active state
    nvlink_replay: Count | None = None  # summed over links, cumulative
    nvlink_recovery: Count | None = None
    nvlink_crc_flit: Count | None = None
    nvlink_crc_data: Count | None = None
    # Cumulative time the clocks were held down, per reason, in microseconds since the driver
    # loaded (NVML's clock-event reason counters; nvidia-smi -q -d PERFORMANCE "Clocks Event
    # Reasons Counters"). Slow fields: prevention rollups take their deltas (docs/prevention.md).
    held_sw_power_cap_us: Count | None = None
    held_sync_boost_us: Count | None = None
    held_sw_thermal_us: Count | None = None
    held_hw_thermal_us: Count | None = None
    held_hw_power_brake_us: Count | None = None
    recovery_action: Annotated[int, msgspec.Meta(ge=0, le=255)] | None = (
        None  # 0 none, 1 GPU reset, 2 node reboot, 3 drain P2P, 4 drain+reset
    )
    processes: list[GpuProcess] | None = None
    # The jobs the GPU serves where the source knows them per GPU, not per process: the job
    # labels of its series in Prometheus (collect/prom_fleet.py). An agent never sends it: its
    # processes carry their jobs. None: not known this way (an empty list: known, no job).
    jobs: Annotated[list[JobRef], msgspec.Meta(max_length=MAX_GPU_JOBS)] | None = None


class Hello(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
    tag="hello",
    tag_field="type",
    gc=False,
):
    """First line of every stream: who is talking and which GPUs it has."""

    v: int
    host: str
    agent_version: str
    backend: Literal["nvml", "smi", "sim", "prometheus"]
    interval_s: IntervalS
    # slow signals are read every `slow_every` samples
    slow_every: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    driver_version: str | None = None
    nvml_version: str | None = None
    cuda_version: str | None = None
    gpus: Annotated[list[GpuInfo], msgspec.Meta(max_length=MAX_GPUS)] = msgspec.field(
        default_factory=list
    )
    persistence_mode: bool | None = None  # all GPUs in persistence mode
    sim_start: UnixTime | None = None  # sim backend: Unix time of the scenario's t=0
    # Signals this source cannot read at all, in words ("clock-event reasons"): shown as not
    # available from the source, never judged ok (the Prometheus source sets it).
    unavailable: list[str] | None = None


class Sample(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
    tag="sample",
    tag_field="type",
    gc=False,
):
    """One reading of every GPU."""

    v: int
    t: UnixTime  # agent's clock, Unix seconds
    seq: Annotated[int, msgspec.Meta(ge=0)]  # 0, 1, 2, ... per stream
    gpus: Annotated[list[GpuReading], msgspec.Meta(max_length=MAX_GPUS)]
    slow: bool = False  # slow fields were read in this sample
    # The training loops' own heartbeats on this host (slow samples only; docs/training.md).
    heartbeats: Annotated[list[Heartbeat], msgspec.Meta(max_length=MAX_HEARTBEATS)] | None = None


EventKind = Literal["xid", "ecc_dbe", "gpu_lost", "reset_required"]


class Event(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
    tag="event",
    tag_field="type",
    gc=False,
):
    """Something that happened between samples, pushed at once."""

    v: int
    t: UnixTime
    kind: EventKind
    gpu: GpuIndex | None = None  # index; None when NVML could not attribute it
    uuid: str | None = None
    xid: XidCode | None = None  # set for kind == "xid"
    text: str = ""


class AgentError(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
    tag="error",
    tag_field="type",
    gc=False,
):
    """A failure the agent hit. `fatal` errors are followed by the agent exiting."""

    v: int
    t: UnixTime
    code: str  # machine-readable, e.g. nvml_init_failed, no_gpu, smi_failed
    text: str
    gpu: GpuIndex | None = None
    fatal: bool = False


# --------------------------------------------------------------------------------------------
# Wire types of the agent's triage mode (`--triage`, docs/protocol.md): one `triage` line after
# the hello and the samples, with what NVML alone cannot say about the host.
# --------------------------------------------------------------------------------------------


class PciGpu(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """An NVIDIA display or 3D controller on the PCI bus (/sys/bus/pci/devices)."""

    bus_id: str  # as sysfs names it: 0000:3b:00.0
    device_id: str | None = None  # e.g. 0x2330
    class_code: str | None = None  # 0x030200 (3D controller) or 0x0300xx (VGA)
    driver: str | None = None  # bound kernel driver (nvidia, vfio-pci); absent when none
    responds: bool | None = None  # config space answers (reads 0xffff when off the bus)


class GpuFacts(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """Per-GPU facts that the stream leaves out: persistence mode and each NVLink's state."""

    index: int
    persistence_mode: bool | None = None
    nvlink_states: list[bool] | None = None  # per link, True when active


class KernelXid(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """One `NVRM: Xid` line of the kernel log."""

    xid: int
    pci_bus_id: str  # as the driver logged it: 0000:3b:00 or 0000:3b:00.0
    text: str  # the driver's message after the code (pid and name taken out)
    t: float | None = None  # Unix seconds; absent when the line carries no usable time
    pid: int | None = None
    process: str | None = None
    line: str | None = None  # the line as read (cut at 300 characters)


KernelLogSource = Literal["journalctl", "dmesg", "sim", "none"]


class KernelLogStatus(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """How the agent read the kernel log, or why it could not."""

    source: KernelLogSource  # "none": no reader worked
    readable: bool
    since_t: float | None = None  # XIDs from this time on (absent: since boot)
    lines: int = 0  # kernel log lines read
    error_code: str | None = None  # permission_denied, not_found, failed, timeout
    error: str | None = None  # what the readers said, for the operator
    dmesg_restrict: bool | None = None  # /proc/sys/kernel/dmesg_restrict
    xids_dropped: int = 0  # XID lines beyond the cap, oldest first


class TriageFacts(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag="triage", tag_field="type"
):
    """The last line of a triage run: host facts, the PCI bus, the kernel log's XIDs."""

    v: int
    t: float
    kernel_log: KernelLogStatus
    uptime_s: float | None = None
    kernel: str | None = None  # uname -r
    os: str | None = None  # PRETTY_NAME of /etc/os-release
    user: str | None = None  # the account the agent ran as
    nvml_gpu_count: int | None = None  # GPUs the backend enumerated
    pci_gpus: list[PciGpu] | None = None  # absent when sysfs could not be read
    pci_error: str | None = None
    gpus: list[GpuFacts] = msgspec.field(default_factory=list)
    xids: list[KernelXid] = msgspec.field(default_factory=list)
    sim_elapsed_s: float | None = None  # simulated hosts: the scenario time that was read


AgentMessage = Hello | Sample | Event | AgentError | TriageFacts


# --------------------------------------------------------------------------------------------
# Domain types: what gputui concludes.
# --------------------------------------------------------------------------------------------


class Level(enum.IntEnum):
    """Health level; larger is worse, so max() gives the worst."""

    OK = 0
    UNKNOWN = 1  # readings missing: not known good, not known bad
    WARN = 2
    CRITICAL = 3
    FAILED = 4

    @property
    def label(self) -> str:
        return _LEVEL_LABELS[self]


# Read for every host at every tick (host_label): worked out once, not each time.
_LEVEL_LABELS = {level: str(level.name).lower() for level in Level}


class Action(enum.Enum):
    """NVIDIA's recommended action, ordered by how much it disrupts."""

    NONE = "none"
    RESTART_APP = "restart app"
    RESET_GPU = "reset GPU"
    REBOOT_NODE = "reboot node"
    DRAIN = "drain"
    RMA = "RMA"

    @property
    def rank(self) -> int:
        return _ACTION_RANK[self]


_ACTION_RANK = {a: i for i, a in enumerate(Action)}


class Reason(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Why a GPU or host is at its level."""

    code: str  # machine code: temp_slowdown, xid_79, gpu_lost, ...
    level: Level
    text: str  # human sentence with the numbers
    action: Action = Action.NONE
    gpu: int | None = None
    latched: bool = False  # stays until cleared by the operator or a GPU reset


class Verdict(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A level with its reasons, worst first."""

    level: Level
    reasons: tuple[Reason, ...] = ()

    @property
    def worst(self) -> Reason | None:
        return self.reasons[0] if self.reasons else None

    @property
    def action(self) -> Action:
        return max((r.action for r in self.reasons), key=lambda a: a.rank, default=Action.NONE)


OK_VERDICT = Verdict(level=Level.OK)
UNKNOWN_VERDICT = Verdict(level=Level.UNKNOWN)


class HostVerdict(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The host's own verdict plus one per GPU (keyed by index)."""

    host: Verdict
    gpus: dict[int, Verdict] = msgspec.field(default_factory=dict)


class HostState(enum.Enum):
    """Connection state of a host, shown everywhere beside its health."""

    CONNECTING = "connecting"
    STREAMING = "streaming"
    DEGRADED = "degraded"  # streaming, but with fewer signals (nvidia-smi fallback, missing fields)
    STALE = "stale"  # connected, but no sample for 3 intervals
    # Its collector worker process failed and is being restarted: the last values are kept.
    RECONNECTING = "reconnecting"
    UNREACHABLE = "unreachable"
    NO_GPU = "no-gpu"  # reached, but the agent found no GPU it can read (no driver, no NVML)


class FleetEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An entry of the fleet's event log: agent events, verdict and connection changes."""

    t: float  # collector's clock, Unix seconds
    host: str
    kind: str  # xid, ecc_dbe, gpu_lost, reset_required, verdict, state, agent_error, action
    text: str
    level: Level = Level.OK
    gpu: int | None = None
    uuid: str | None = None
    xid: int | None = None
    repeat: int = 1  # the same event this many times in a row from this host (collapsed)


class HostSnapshot(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Everything known about one host at one tick."""

    name: str
    state: HostState
    state_reason: str = ""
    reason_since: float | None = None  # collector's clock when the state or reason last changed
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    hello: Hello | None = None
    sample: Sample | None = None  # last good sample (kept while stale/unreachable)
    sample_t: float | None = None  # collector's clock when `sample` arrived (Unix seconds)
    # The last sample that carried the slow signals (ECC, PCIe, NVLink, processes), and when it
    # arrived: fast samples in between carry None for them.
    slow_sample: Sample | None = None
    slow_sample_t: float | None = None
    # When `slow_sample`'s process lists arrived: with it, or later while a screen shows the
    # host's processes and its agent lists them in every sample (collect/watch.py).
    processes_t: float | None = None
    backend: str | None = None  # nvml, smi, sim: from the hello
    spare: bool = False  # listed as a spare in hosts.toml
    decode_errors: int = 0  # lines of this host's stream that did not decode
    verdict: HostVerdict = msgspec.field(default_factory=lambda: HostVerdict(host=UNKNOWN_VERDICT))
    marked_failed: bool = False  # the operator took it out of service
    in_place_of: str | None = None  # a spare brought into service: the node it replaces

    def age_s(self, now: float) -> float | None:
        """Seconds since the last sample arrived, at `now`."""
        return None if self.sample_t is None else max(0.0, now - self.sample_t)


class FleetSnapshot(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The whole fleet at one tick, published to the TUI, reports and the journal."""

    t: float
    hosts: tuple[HostSnapshot, ...]
    events: tuple[FleetEvent, ...] = ()  # new since the previous snapshot
