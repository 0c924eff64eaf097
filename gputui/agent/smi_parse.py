"""nvidia-smi's CSV output mapped to the agent protocol (docs/protocol.md), with no I/O.

This is the fallback for hosts where NVML cannot be used from Python. Everything here is pure
and stdlib-only so that two callers share it: the agent's `smi` backend (smi.py), which runs
nvidia-smi itself, and the collector, which may run nvidia-smi over SSH with no Python on the
host at all (`session_command()` and `SmiSession`).

nvidia-smi prints one CSV line per GPU per period of `-lms`, with no sample boundary, so lines
are grouped into samples here: a sample is complete when every GPU of the inventory has been
heard from, or when the index sequence starts again.

Cell values that are not numbers:
- `[N/A]`, `N/A`, `[Not Supported]`: the field is left out (None means "not reported").
- `[GPU requires reset]`: the whole GPU reads status "reset_required".
- `[GPU is lost]`, or a line "Unable to determine the device handle for GPU <bus id>: ...":
  status "lost" for that GPU while the others keep streaming.
- `[Unknown Error]` and any other bracketed text: left out and counted.

Memory: nvidia-smi's `memory.used` leaves out what the driver and firmware reserve (NVML's v2
memory info), and `memory.reserved` says how much that is. Drivers whose nvidia-smi lacks that
field reject the whole query, so it is streamed only where a probe found it (as the clock-event
reasons field is), as the last column.
"""

from __future__ import annotations

import functools
import math
import re
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from . import AGENT_VERSION, PROTOCOL_VERSION

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    Json = dict[str, Any]
    BusKey = tuple[int, int, int, int]

# The clock-event reasons field was renamed in driver R535; older drivers reject the new name
# with 'Field "clocks_event_reasons.active" is not a valid field to query.' (exit status 2).
REASONS_FIELD = "clocks_event_reasons.active"
REASONS_FIELD_OLD = "clocks_throttle_reasons.active"
_INVALID_FIELD_TEXT = "is not a valid field"
# Optional: streamed only where the driver's nvidia-smi knows it (reserved_from_probe).
RESERVED_FIELD = "memory.reserved"

CSV_FORMAT = "--format=csv,noheader,nounits"

# Marker lines that split the output of session_command() into its three parts.
MARK_HELLO = "#gputui-smi hello"
MARK_TEMPERATURE = "#gputui-smi temperature"
MARK_STREAM = "#gputui-smi stream"
# Followed by the --query-gpu argument the stream runs with, so its columns are known.
MARK_FIELDS = "#gputui-smi fields "

# --------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------

_ABSENT_CELLS = frozenset({"", "N/A", "[N/A]", "Not Supported", "[Not Supported]"})
_STATUS_CELLS = {"[GPU requires reset]": "reset_required", "[GPU is lost]": "lost"}


def _to_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return round(_to_float(text))  # a driver that prints "1980.0" still means 1980


def _to_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)  # NaN is not JSON: the collector's decoder would drop the line
    return value


def _to_hex(text: str) -> int:
    return int(text, 16)  # "0x0000000000000004"


def _to_enabled(text: str) -> bool:
    if text not in ("Enabled", "Disabled"):
        raise ValueError(text)
    return text == "Enabled"


@dataclass(frozen=True)
class Column:
    """One --query-gpu field: where its value goes and how it is read."""

    query: str  # the --query-gpu name
    key: str | None  # protocol field name; None: read, not sent per GPU
    convert: Callable[[str], Any]


@functools.lru_cache(maxsize=None)  # one table per field set, not one per line
def _stream_columns(reasons_field: str, reserved: bool = False) -> tuple[Column, ...]:
    optional = (Column(RESERVED_FIELD, "mem_reserved_mib", _to_float),) if reserved else ()
    return (
        Column("index", "index", _to_int),
        Column("uuid", None, str),
        Column("name", None, str),
        Column("temperature.gpu", "temp_c", _to_float),
        Column("utilization.gpu", "util_pct", _to_float),
        Column("utilization.memory", "mem_util_pct", _to_float),
        Column("memory.used", "mem_used_mib", _to_float),
        Column("memory.total", None, _to_float),
        Column("power.draw", "power_w", _to_float),
        Column("power.limit", "power_limit_w", _to_float),
        Column("clocks.sm", "sm_clock_mhz", _to_int),
        Column("clocks.mem", "mem_clock_mhz", _to_int),
        Column(reasons_field, "clock_events", _to_hex),
        # Slow signals for NVML, but nvidia-smi reads them every period at no extra cost.
        Column("pcie.link.gen.current", "pcie_gen", _to_int),
        Column("pcie.link.gen.max", None, _to_int),
        Column("pcie.link.width.current", "pcie_width", _to_int),
        Column("pcie.link.width.max", None, _to_int),
        Column("ecc.errors.uncorrected.volatile.total", "ecc_uncorrected_volatile", _to_int),
        *optional,
    )


HELLO_COLUMNS = (
    Column("index", "index", _to_int),
    Column("uuid", "uuid", str),
    Column("name", "name", str),
    Column("serial", "serial", str),
    Column("pci.bus_id", "pci_bus_id", str),
    Column("memory.total", "memory_total_mib", _to_float),
    Column("power.limit", "power_limit_w", _to_float),
    Column("driver_version", None, str),
    Column("clocks.max.sm", "sm_clock_max_mhz", _to_int),
    Column("clocks.max.mem", "mem_clock_max_mhz", _to_int),
    Column("pcie.link.gen.max", "pcie_gen_max", _to_int),
    Column("pcie.link.width.max", "pcie_width_max", _to_int),
    Column("persistence_mode", None, _to_enabled),
    Column("ecc.mode.current", "ecc_enabled", _to_enabled),
)


# --------------------------------------------------------------------------------------------
# Command lines
# --------------------------------------------------------------------------------------------


def stream_fields(reasons_field: str = REASONS_FIELD, reserved: bool = False) -> list[str]:
    """The --query-gpu fields of the streaming command, in column order."""
    return [c.query for c in _stream_columns(reasons_field, reserved)]


def interval_ms(interval_s: float) -> int:
    """The -lms argument for a sample interval in seconds."""
    return max(1, round(interval_s * 1000))


def stream_argv(
    interval_s: float,
    reasons_field: str = REASONS_FIELD,
    smi: str = "nvidia-smi",
    reserved: bool = False,
) -> list[str]:
    """The long-lived streaming command: one CSV line per GPU every `interval_s`."""
    fields = ",".join(stream_fields(reasons_field, reserved))
    return [smi, "--query-gpu=" + fields, CSV_FORMAT, "-lms", str(interval_ms(interval_s))]


def hello_argv(smi: str = "nvidia-smi") -> list[str]:
    """The inventory query, run once."""
    return [smi, "--query-gpu=" + ",".join(c.query for c in HELLO_COLUMNS), CSV_FORMAT]


def temperature_argv(smi: str = "nvidia-smi") -> list[str]:
    """Temperature limits are not --query-gpu fields on every driver: read the -q report."""
    return [smi, "-q", "-d", "TEMPERATURE"]


def reasons_probe_argv(smi: str = "nvidia-smi") -> list[str]:
    """Asks for the new clock-event field alone, to learn whether the driver knows it."""
    return [smi, "--query-gpu=" + REASONS_FIELD, CSV_FORMAT]


def reasons_field_from_probe(output: str) -> str:
    """The clock-event field name to stream, from the output of reasons_probe_argv()."""
    return REASONS_FIELD_OLD if _INVALID_FIELD_TEXT in output else REASONS_FIELD


def reserved_probe_argv(smi: str = "nvidia-smi") -> list[str]:
    """Asks for the reserved memory alone, to learn whether the driver's nvidia-smi knows it."""
    return [smi, "--query-gpu=" + RESERVED_FIELD, CSV_FORMAT]


def reserved_from_probe(output: str) -> bool:
    """Whether to stream memory.reserved, from the output of reserved_probe_argv(). A probe
    that said nothing (it failed to run) counts as no: a field too many would fail the whole
    stream, a field too few only leaves the reserved memory unknown."""
    return bool(output.strip()) and _INVALID_FIELD_TEXT not in output


def fields_from_query(query: str) -> tuple[str, bool]:
    """(clock-event field, whether memory.reserved is streamed) of a --query-gpu argument."""
    fields = query.split("=", 1)[-1].split(",")
    reasons = REASONS_FIELD_OLD if REASONS_FIELD_OLD in fields else REASONS_FIELD
    return reasons, RESERVED_FIELD in fields


def session_command(interval_s: float, smi: str = "nvidia-smi") -> str:
    """One POSIX shell command that prints the hello query, the temperature report and then
    streams, each part after a marker line; `SmiSession` maps its output to protocol messages.

    It lets the collector use a host with no python3 through a single SSH exec. `exec` makes
    nvidia-smi the channel's process, so closing the channel ends it.
    """
    q = shlex.quote
    new_fields = q("--query-gpu=" + ",".join(stream_fields(REASONS_FIELD)))
    old_fields = q("--query-gpu=" + ",".join(stream_fields(REASONS_FIELD_OLD)))
    probe = " ".join(q(a) for a in reasons_probe_argv(smi))
    reserved_probe = " ".join(q(a) for a in reserved_probe_argv(smi))
    invalid = "*" + q(_INVALID_FIELD_TEXT) + "*"  # a case pattern: the stars unquoted
    parts = [
        f"echo {q(MARK_HELLO)}",
        " ".join(q(a) for a in hello_argv(smi)) + " 2>&1",
        f"echo {q(MARK_TEMPERATURE)}",
        " ".join(q(a) for a in temperature_argv(smi)) + " 2>&1",
        f"if {probe} 2>&1 | grep -q {q(_INVALID_FIELD_TEXT)}; "
        f"then f={old_fields}; else f={new_fields}; fi",
        # The same rule as reserved_from_probe(): known unless rejected or silent.
        f'case "$({reserved_probe} 2>&1)" in {invalid}|"") ;; *) f="$f,{RESERVED_FIELD}" ;; esac',
        f'echo {q(MARK_FIELDS)}"$f"',
        f"echo {q(MARK_STREAM)}",
        f'exec {q(smi)} "$f" {CSV_FORMAT} -lms {interval_ms(interval_s)}',
    ]
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------
# Lines
# --------------------------------------------------------------------------------------------

_HANDLE_ERROR = re.compile(
    r"Unable to determine the device handle for GPU\s*"
    r"(?P<bus>[0-9A-Fa-f]+:[0-9A-Fa-f]+:[0-9A-Fa-f]+\.[0-9A-Fa-f]+)?\s*:?\s*(?P<why>.*)$"
)
_GPU_IS_LOST = re.compile(r"\bGPU is lost\b", re.IGNORECASE)
_BUS_ID = re.compile(r"^([0-9A-Fa-f]+):([0-9A-Fa-f]+):([0-9A-Fa-f]+)\.([0-9A-Fa-f]+)$")


def bus_key(bus_id: str) -> BusKey | None:
    """A PCI bus id as numbers, so that "00000000:3B:00.0" (the query) and "0000:3b:00.0"
    (the lost-GPU message) compare equal."""
    m = _BUS_ID.match(bus_id.strip())
    if m is None:
        return None
    domain, bus, dev, fn = (int(part, 16) for part in m.groups())
    return (domain, bus, dev, fn)


def _format_bus_id(key: BusKey) -> str:
    return "{:08X}:{:02X}:{:02X}.{:X}".format(*key)


@dataclass
class GpuLine:
    """A CSV line of one GPU."""

    index: int
    reading: Json  # GpuReading fields
    uuid: str | None = None
    unreadable: list[str] = field(default_factory=list)  # fields that read [Unknown Error] etc.
    bad_values: list[str] = field(default_factory=list)  # fields whose text did not parse


@dataclass
class DeviceErrorLine:
    """nvidia-smi could not open a GPU; it names the GPU by PCI bus id, not by index."""

    bus: BusKey | None
    status: str  # "lost" or "error"
    text: str


@dataclass
class BadLine:
    """A line that is neither: counted, never fatal."""

    text: str


def parse_device_error(line: str) -> DeviceErrorLine | None:
    """The GPU-could-not-be-opened line, or None when `line` is not one."""
    m = _HANDLE_ERROR.search(line)
    if m is None:
        if _GPU_IS_LOST.search(line):
            return DeviceErrorLine(bus=None, status="lost", text=line.strip())
        return None
    bus = bus_key(m.group("bus")) if m.group("bus") else None
    # A permission problem says nothing about the GPU's health; anything else (GPU is lost,
    # Unknown Error) is the driver failing to reach it.
    status = "error" if "Insufficient Permissions" in m.group("why") else "lost"
    return DeviceErrorLine(bus=bus, status=status, text=line.strip())


def _read_cells(cells: Sequence[str], columns: Sequence[Column]) -> GpuLine:
    """Values of one split CSV line (index already checked to be a number)."""
    values: Json = {}
    out = GpuLine(index=_to_int(cells[0]), reading=values)
    for column, raw in zip(columns, cells):
        text = raw.strip()
        if text in _ABSENT_CELLS:
            continue
        if text in _STATUS_CELLS:
            # The GPU as a whole is unusable: no readings, only the status (as NVML reports).
            status = _STATUS_CELLS[text]
            out.reading = {"index": out.index, "status": status, "error": text.strip("[]")}
            return out
        if text.startswith("["):
            out.unreadable.append(column.query)
            continue
        if column.query == "uuid":
            out.uuid = text
        if column.key is None:
            continue
        try:
            values[column.key] = column.convert(text)
        except ValueError:
            out.bad_values.append(column.query)
    if out.unreadable and len(values) == 1:
        # Every value failed: reporting "ok" with no readings would hide it.
        values["status"] = "error"
        values["error"] = "nvidia-smi could not read any field"
    return out


def _split_row(line: str, columns: Sequence[Column]) -> list[str] | None:
    cells = line.split(",")
    if len(cells) != len(columns):
        return None
    try:
        int(cells[0])
    except ValueError:
        return None
    return cells


def parse_stream_line(
    line: str, reasons_field: str = REASONS_FIELD, reserved: bool = False
) -> GpuLine | DeviceErrorLine | BadLine | None:
    """One line of the streaming command; None for a blank line."""
    if not line.strip():
        return None
    columns = _stream_columns(reasons_field, reserved)
    cells = _split_row(line, columns)
    if cells is not None:
        return _read_cells(cells, columns)
    return parse_device_error(line) or BadLine(text=line.strip())


# --------------------------------------------------------------------------------------------
# Hello: inventory query and temperature report
# --------------------------------------------------------------------------------------------

_TEMPERATURE_KEYS = {
    # Exact names: the "T.Limit" variants are margins relative to a limit, not temperatures.
    "GPU Shutdown Temp": "temp_shutdown_c",
    "GPU Slowdown Temp": "temp_slowdown_c",
    "GPU Max Operating Temp": "temp_gpu_max_c",
    "Memory Max Operating Temp": "temp_mem_max_c",
}
_HEADER_KEYS = {"Driver Version": "driver_version", "CUDA Version": "cuda_version"}
_GPU_SECTION = re.compile(r"^GPU ([0-9A-Fa-f]+:[0-9A-Fa-f]+:[0-9A-Fa-f]+\.[0-9A-Fa-f]+)\s*$")
_DEGREES = re.compile(r"^(-?\d+(?:\.\d+)?)\s*C$")


@dataclass
class TemperatureReport:
    """What `nvidia-smi -q -d TEMPERATURE` says: limits per GPU section, in report order."""

    sections: list[tuple[BusKey | None, Json]] = field(default_factory=list)
    header: Json = field(default_factory=dict)  # driver_version, cuda_version


def parse_temperature_report(text: str) -> TemperatureReport:
    """Limits per GPU from the -q report; "N/A" and unknown lines are skipped."""
    report = TemperatureReport()
    for line in text.splitlines():
        section = _GPU_SECTION.match(line)
        if section:
            report.sections.append((bus_key(section.group(1)), {}))
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if not report.sections:
            if key in _HEADER_KEYS and value not in _ABSENT_CELLS:
                report.header[_HEADER_KEYS[key]] = value
            continue
        degrees = _DEGREES.match(value)
        if key in _TEMPERATURE_KEYS and degrees:
            report.sections[-1][1][_TEMPERATURE_KEYS[key]] = float(degrees.group(1))
    return report


def _merge_temperatures(gpus: list[Json], report: TemperatureReport) -> None:
    by_bus = {bus_key(g.get("pci_bus_id", "")): g for g in gpus}
    in_order = sorted(gpus, key=lambda g: int(g["index"]))
    same_count = len(in_order) == len(report.sections)
    for position, (key, limits) in enumerate(report.sections):
        gpu = by_bus.get(key) if key is not None else None
        if gpu is None and same_count:
            gpu = in_order[position]  # both list GPUs in PCI order, which is index order
        if gpu is not None:
            gpu.update(limits)


def _hello_gpu(line: str, position: int, host: Json) -> Json | None:
    cells = _split_row(line, HELLO_COLUMNS)
    if cells is None:
        lost = parse_device_error(line)
        if lost is None or lost.bus is None:
            return None
        # nvidia-smi lists GPUs in index order, so a GPU it cannot open has the index of
        # its place in the list; its samples will say it is lost.
        return {"index": position, "uuid": "", "name": "", "pci_bus_id": _format_bus_id(lost.bus)}
    gpu: Json = {}
    for column, raw in zip(HELLO_COLUMNS, cells):
        text = raw.strip()
        if text in _ABSENT_CELLS or text.startswith("["):
            continue
        try:
            value = column.convert(text)
        except ValueError:
            continue
        if column.key is not None:
            gpu[column.key] = value
        else:
            host.setdefault(column.query, []).append(value)
    gpu.setdefault("uuid", "")  # required by the protocol even when unreadable
    gpu.setdefault("name", "")
    return gpu


def parse_hello(hello_csv: str, temperature_text: str = "") -> Json:
    """The backend's hello() dict from the inventory query and the -q temperature report:
    {"driver_version", "cuda_version", "persistence_mode", "gpus"}; absent keys are unknown."""
    host: Json = {}  # per-GPU values that the protocol holds once per host
    gpus: list[Json] = []
    for line in hello_csv.splitlines():
        gpu = _hello_gpu(line, len(gpus), host)
        if gpu is not None:
            gpus.append(gpu)
    report = parse_temperature_report(temperature_text)
    _merge_temperatures(gpus, report)
    hello: Json = {"gpus": sorted(gpus, key=lambda g: int(g["index"]))}
    drivers = host.get("driver_version") or [report.header.get("driver_version")]
    if drivers[0] is not None:
        hello["driver_version"] = drivers[0]
    if "cuda_version" in report.header:
        hello["cuda_version"] = report.header["cuda_version"]
    modes = host.get("persistence_mode")
    if modes:
        hello["persistence_mode"] = all(modes)
    return hello


# --------------------------------------------------------------------------------------------
# Samples: grouping lines, status changes, problems
# --------------------------------------------------------------------------------------------


@dataclass
class SmiStats:
    """Counts of what the parser saw, for error lines and tests."""

    lines: int = 0
    samples: int = 0
    bad_lines: int = 0
    unreadable_values: int = 0  # [Unknown Error] and other bracketed cells
    bad_values: int = 0
    last_bad_line: str = ""


@dataclass
class AssembledSample:
    """A complete sample: the time its first line arrived, one reading per GPU by index,
    and the events (GPU lost, reset required) it reveals."""

    t: float
    gpus: list[Json]
    events: list[Json]


def _report_now(count: int) -> bool:
    """1st, 10th, 100th, ...: a problem on every line must not flood the stream."""
    while count % 10 == 0:
        count //= 10
    return count == 1


class SampleAssembler:
    """Groups streamed lines into samples. Feed it every line; it returns finished samples.

    `gpus` is the hello inventory (GpuInfo dicts); without it samples still form, but a GPU
    named only by bus id cannot be given an index and a silent GPU cannot be noticed.
    """

    def __init__(
        self,
        gpus: Sequence[Json] = (),
        interval_s: float = 1.0,
        reasons_field: str = REASONS_FIELD,
        reserved: bool = False,
    ) -> None:
        self.reasons_field = reasons_field
        self.reserved = reserved  # the stream has the memory.reserved column
        self.stats = SmiStats()
        self._expected = sorted(int(g["index"]) for g in gpus)
        self._index_of_bus: dict[BusKey, int] = {}
        for gpu in gpus:
            key = bus_key(gpu.get("pci_bus_id", ""))
            if key is not None:
                self._index_of_bus[key] = int(gpu["index"])
        self._uuids = {int(g["index"]): g["uuid"] for g in gpus if g.get("uuid")}
        # A period's lines arrive within milliseconds; a group quiet for this long is done.
        self._settle_s = max(0.75 * interval_s, 0.5)
        self._group: dict[int, Json] = {}
        self._unplaced: list[DeviceErrorLine] = []
        self._last_index = -1
        self._group_t = 0.0
        self._last_line_t = 0.0
        self._status: dict[int, str] = {}
        self._unplaced_reported: set[str] = set()
        self._unplaced_events: list[Json] = []
        self._problems: list[Json] = []
        self._problem_counts: dict[tuple[str, int | None], int] = {}

    # -- input ---------------------------------------------------------------------------

    def feed(self, line: str, now: float) -> list[AssembledSample]:
        """Take one line; returns the samples it completes (usually none or one)."""
        parsed = parse_stream_line(line, self.reasons_field, self.reserved)
        if parsed is None:
            return []
        self.stats.lines += 1
        if isinstance(parsed, BadLine):
            self._bad_line(parsed.text)
            return []
        index = self._index_for(parsed)
        done = self.flush() if index is not None and self._starts_new_sample(index) else []
        if not self._group and not self._unplaced:
            self._group_t = now
        self._last_line_t = now
        self._add(parsed, index)
        if self._complete():
            done.extend(self.flush())
        return done

    def poll(self, now: float) -> list[AssembledSample]:
        """Finish a partial sample whose lines stopped coming (a GPU fell silent)."""
        if (self._group or self._unplaced) and now - self._last_line_t >= self._settle_s:
            return self.flush()
        return []

    def flush(self) -> list[AssembledSample]:
        """Finish the current sample now, whatever it holds (at the end of the stream)."""
        if not self._group and not self._unplaced:
            return []
        readings = self._place_unplaced()
        for index in self._expected:
            readings.setdefault(index, _silent(index, "no line from nvidia-smi for this GPU"))
        gpus = [readings[i] for i in sorted(readings)]
        sample = AssembledSample(t=self._group_t, gpus=gpus, events=self._status_events(gpus))
        self._group, self._unplaced, self._last_index = {}, [], -1
        self.stats.samples += 1
        return [sample]

    def take_problems(self) -> list[Json]:
        """Non-fatal problems since the last call: {"code", "text", "gpu"?}."""
        problems, self._problems = self._problems, []
        return problems

    def silent_sample(self, t: float, why: str) -> AssembledSample:
        """A sample for when nvidia-smi printed nothing: every known GPU in status error."""
        gpus = [_silent(index, why) for index in self._expected]
        return AssembledSample(t=t, gpus=gpus, events=[])

    # -- grouping ------------------------------------------------------------------------

    def _index_for(self, parsed: GpuLine | DeviceErrorLine) -> int | None:
        if isinstance(parsed, GpuLine):
            return parsed.index
        return self._index_of_bus.get(parsed.bus) if parsed.bus is not None else None

    def _starts_new_sample(self, index: int) -> bool:
        # nvidia-smi prints GPUs in index order, so a repeated or smaller index is the next
        # period; this holds even without an inventory.
        return bool(self._group or self._unplaced) and (
            index in self._group or index <= self._last_index
        )

    def _complete(self) -> bool:
        heard = len(self._group) + len(self._unplaced)
        return bool(self._expected) and heard >= len(self._expected)

    def _add(self, parsed: GpuLine | DeviceErrorLine, index: int | None) -> None:
        if isinstance(parsed, GpuLine):
            self._count_cell_problems(parsed)
            self._group[parsed.index] = parsed.reading
            if parsed.uuid:
                self._uuids.setdefault(parsed.index, parsed.uuid)
        elif index is not None:
            self._group[index] = {"index": index, "status": parsed.status, "error": parsed.text}
        else:
            self._unplaced.append(parsed)
            return
        self._last_index = index if index is not None else self._last_index

    def _place_unplaced(self) -> dict[int, Json]:
        """Give the GPUs named by an unknown bus id the indices missing from the sample:
        nvidia-smi prints them in index order, so the k-th such line is the k-th gap."""
        readings = dict(self._group)
        gaps = [i for i in self._expected if i not in readings]
        for line, index in zip(self._unplaced, gaps):
            readings[index] = {"index": index, "status": line.status, "error": line.text}
        for line in self._unplaced[len(gaps) :]:
            self._report_unplaced(line)
        return readings

    def _report_unplaced(self, line: DeviceErrorLine) -> None:
        # No index to put it under: an event with no GPU ("could not attribute it"), once.
        if line.text in self._unplaced_reported:
            return
        self._unplaced_reported.add(line.text)
        if line.status == "lost":
            self._unplaced_events.append({"kind": "gpu_lost", "text": line.text})
        else:
            self._problem("smi_device_error", line.text, None)

    # -- status changes and problems ----------------------------------------------------

    def _status_events(self, gpus: Iterable[Json]) -> list[Json]:
        """Events for GPUs that became lost or need a reset, as NVML's backend pushes them."""
        events, self._unplaced_events = self._unplaced_events, []
        for gpu in gpus:
            index, status = gpu["index"], gpu.get("status", "ok")
            if status != self._status.get(index, "ok") and status in _EVENT_OF_STATUS:
                event: Json = {"kind": _EVENT_OF_STATUS[status], "gpu": index}
                if index in self._uuids:
                    event["uuid"] = self._uuids[index]
                event["text"] = "nvidia-smi: " + str(gpu.get("error") or status)
                events.append(event)
            self._status[index] = status
        return events

    def _count_cell_problems(self, line: GpuLine) -> None:
        for query in line.unreadable:
            self.stats.unreadable_values += 1
            self._problem("smi_unknown_error", f"GPU {line.index}: {query} unreadable", line.index)
        for query in line.bad_values:
            self.stats.bad_values += 1
            self._problem("smi_bad_value", f"GPU {line.index}: {query} not a number", line.index)

    def _bad_line(self, text: str) -> None:
        self.stats.bad_lines += 1
        self.stats.last_bad_line = text[:200]
        self._problem("smi_bad_line", "unexpected nvidia-smi output: " + text[:200], None)

    def _problem(self, code: str, text: str, gpu: int | None) -> None:
        count = self._problem_counts.get((code, gpu), 0) + 1
        self._problem_counts[(code, gpu)] = count
        if not _report_now(count):
            return
        problem: Json = {"code": code, "text": text if count == 1 else f"{text} ({count} times)"}
        if gpu is not None:
            problem["gpu"] = gpu
        self._problems.append(problem)


_EVENT_OF_STATUS = {"lost": "gpu_lost", "reset_required": "reset_required"}


def _silent(index: int, why: str) -> Json:
    return {"index": index, "status": "error", "error": why}


# --------------------------------------------------------------------------------------------
# Protocol messages, for a collector that runs nvidia-smi itself
# --------------------------------------------------------------------------------------------


def hello_message(
    hello: Json, host: str, interval_s: float, agent_version: str = AGENT_VERSION
) -> Json:
    """The protocol's hello line from parse_hello()'s dict."""
    message: Json = {
        "v": PROTOCOL_VERSION,
        "type": "hello",
        "host": host,
        "agent_version": agent_version,
        "backend": "smi",
        "interval_s": interval_s,
        "slow_every": 1,  # nvidia-smi gives its slow fields in every sample
    }
    message.update(hello)
    return message


def error_message(
    now: float, code: str, text: str, gpu: int | None = None, fatal: bool = False
) -> Json:
    """The protocol's error line."""
    message: Json = {"v": PROTOCOL_VERSION, "type": "error", "t": now, "code": code, "text": text}
    if gpu is not None:
        message["gpu"] = gpu
    if fatal:
        message["fatal"] = True
    return message


class SmiStreamMapper:
    """Lines of the streaming command -> protocol messages (sample, event, error).

    For the collector: `feed(line, now)` for every line read, `poll(now)` now and then (a GPU
    that fell silent), `end(now, status, stderr)` when nvidia-smi exits.
    """

    def __init__(
        self,
        gpus: Sequence[Json] = (),
        interval_s: float = 1.0,
        reasons_field: str = REASONS_FIELD,
        reserved: bool = False,
    ) -> None:
        self.assembler = SampleAssembler(gpus, interval_s, reasons_field, reserved)
        self._seq = 0

    @property
    def stats(self) -> SmiStats:
        return self.assembler.stats

    def feed(self, line: str, now: float) -> list[Json]:
        return self._messages(self.assembler.feed(line, now), now)

    def poll(self, now: float) -> list[Json]:
        return self._messages(self.assembler.poll(now), now)

    def end(self, now: float, exit_status: int | None, last_stderr: str = "") -> list[Json]:
        """The last sample and the fatal error for nvidia-smi's exit."""
        messages = self._messages(self.assembler.flush(), now)
        text = exit_text(exit_status, last_stderr)
        messages.append(error_message(now, "smi_exited", text, fatal=True))
        return messages

    def _messages(self, samples: Iterable[AssembledSample], now: float) -> list[Json]:
        messages = [error_message(now, **p) for p in self.assembler.take_problems()]
        for sample in samples:
            for event in sample.events:
                messages.append({"v": PROTOCOL_VERSION, "type": "event", "t": sample.t, **event})
            messages.append(
                {
                    "v": PROTOCOL_VERSION,
                    "type": "sample",
                    "t": sample.t,
                    "seq": self._seq,
                    "gpus": sample.gpus,
                    "slow": True,
                }
            )
            self._seq += 1
        return messages


def exit_text(exit_status: int | None, last_stderr: str) -> str:
    """The text of the smi_exited error: its status and the last thing it said."""
    status = "was killed" if exit_status is None or exit_status < 0 else f"exited ({exit_status})"
    return f"nvidia-smi {status}" + (f": {last_stderr}" if last_stderr else "")


_NOT_FOUND = re.compile(r"nvidia-smi: (command )?not found|No such file or directory")


def hello_failure(output: str) -> tuple[str, str]:
    """Error code and text for an inventory query that listed no GPU."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if any(_NOT_FOUND.search(line) for line in lines):
        return "smi_not_found", "nvidia-smi not found on this host"
    if any("No devices were found" in line for line in lines):
        return "no_gpu", "nvidia-smi found no GPU"
    return "smi_failed", lines[-1] if lines else "nvidia-smi printed nothing"


class SmiSession:
    """The output of session_command() -> protocol messages, hello first.

    The collector runs session_command() over SSH, feeds every stdout line with the time it
    arrived, calls poll() about once per interval and end() when the channel closes.
    """

    def __init__(self, host: str, interval_s: float, agent_version: str = AGENT_VERSION) -> None:
        self.host = host
        self.interval_s = interval_s
        self.agent_version = agent_version
        self.hello: Json | None = None
        self.stream: SmiStreamMapper | None = None
        self._part = ""
        self._parts: dict[str, list[str]] = {"hello": [], "temperature": []}
        self._failed = False
        self._fields = (REASONS_FIELD, False)  # until the command says which it streams

    def feed(self, line: str, now: float) -> list[Json]:
        """Messages completed by one line of output."""
        text = line.rstrip("\r\n")
        if self._failed:
            return []
        if text in _MARK_PARTS:
            self._part = _MARK_PARTS[text]
            return self._start_stream(now) if self._part == "stream" else []
        if self.stream is None and text.startswith(MARK_FIELDS):
            self._fields = fields_from_query(text[len(MARK_FIELDS) :].strip())
            return []
        if self.stream is not None:
            return self.stream.feed(text, now)
        if self._part in self._parts:
            self._parts[self._part].append(text)
        return []  # before the first marker: a login banner, say

    def poll(self, now: float) -> list[Json]:
        return self.stream.poll(now) if self.stream is not None else []

    def end(self, now: float, exit_status: int | None, last_stderr: str = "") -> list[Json]:
        """Messages for the channel closing: the last sample, then a fatal error."""
        if self._failed:
            return []
        self._failed = True
        if self.stream is not None:
            return self.stream.end(now, exit_status, last_stderr)
        code, text = hello_failure("\n".join(self._parts["hello"] + [last_stderr]))
        return [error_message(now, code, text, fatal=True)]

    def _start_stream(self, now: float) -> list[Json]:
        hello = parse_hello("\n".join(self._parts["hello"]), "\n".join(self._parts["temperature"]))
        if not hello["gpus"]:
            self._failed = True
            code, text = hello_failure("\n".join(self._parts["hello"]))
            return [error_message(now, code, text, fatal=True)]
        self.hello = hello
        reasons_field, reserved = self._fields
        self.stream = SmiStreamMapper(hello["gpus"], self.interval_s, reasons_field, reserved)
        return [hello_message(hello, self.host, self.interval_s, self.agent_version)]


_MARK_PARTS = {MARK_HELLO: "hello", MARK_TEMPERATURE: "temperature", MARK_STREAM: "stream"}
