"""nvidia-smi's CSV output mapped to the agent protocol (docs/protocol.md), with no I/O.

This is the fallback for hosts where NVML cannot be used from Python. Everything here is pure
and stdlib-only so that two callers share it: the agent's `smi` backend (smi.py), which runs
nvidia-smi itself, and the collector, which may run nvidia-smi over SSH with no Python on the
host at all (`session_command()` and `SmiSession`).

One module per step, each importing only the ones before it:
cells (columns and cell values) -> argv (command lines) -> lines (one line of output) ->
hello (inventory and temperature limits) -> assembler (lines grouped into samples) ->
session (protocol messages for a collector); report (the held-clock counters of the
`-q -d PERFORMANCE` report, which scripts/device_check.py compares with NVML's) reads after
hello.

Memory: nvidia-smi's `memory.used` leaves out what the driver and firmware reserve (NVML's v2
memory info), and `memory.reserved` says how much that is. Drivers whose nvidia-smi lacks that
field reject the whole query, so it is streamed only where a probe found it (as the clock-event
reasons field is), as the last column; the held-clock counters likewise after it.
"""

from .argv import (
    CSV_FORMAT,
    MARK_FIELDS,
    MARK_HELLO,
    MARK_STREAM,
    MARK_TEMPERATURE,
    counters_from_probe,
    counters_probe_argv,
    fields_from_query,
    hello_argv,
    interval_ms,
    reasons_field_from_probe,
    reasons_probe_argv,
    reserved_from_probe,
    reserved_probe_argv,
    session_command,
    stream_argv,
    stream_fields,
    temperature_argv,
)
from .assembler import AssembledSample, SampleAssembler, SmiStats
from .cells import (
    COUNTER_FIELDS,
    HELLO_COLUMNS,
    REASONS_FIELD,
    REASONS_FIELD_OLD,
    RESERVED_FIELD,
    Column,
)
from .hello import TemperatureReport, parse_hello, parse_temperature_report
from .lines import (
    BadLine,
    DeviceErrorLine,
    GpuLine,
    bus_key,
    parse_device_error,
    parse_stream_line,
)
from .report import parse_held_counters
from .session import (
    SmiSession,
    SmiStreamMapper,
    error_message,
    exit_text,
    hello_failure,
    hello_message,
)

__all__ = [
    "COUNTER_FIELDS",
    "CSV_FORMAT",
    "HELLO_COLUMNS",
    "MARK_FIELDS",
    "MARK_HELLO",
    "MARK_STREAM",
    "MARK_TEMPERATURE",
    "REASONS_FIELD",
    "REASONS_FIELD_OLD",
    "RESERVED_FIELD",
    "AssembledSample",
    "BadLine",
    "Column",
    "DeviceErrorLine",
    "GpuLine",
    "SampleAssembler",
    "SmiSession",
    "SmiStats",
    "SmiStreamMapper",
    "TemperatureReport",
    "bus_key",
    "counters_from_probe",
    "counters_probe_argv",
    "error_message",
    "exit_text",
    "fields_from_query",
    "hello_argv",
    "hello_failure",
    "hello_message",
    "interval_ms",
    "parse_device_error",
    "parse_held_counters",
    "parse_hello",
    "parse_stream_line",
    "parse_temperature_report",
    "reasons_field_from_probe",
    "reasons_probe_argv",
    "reserved_from_probe",
    "reserved_probe_argv",
    "session_command",
    "stream_argv",
    "stream_fields",
    "temperature_argv",
]
