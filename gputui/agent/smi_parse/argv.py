"""The nvidia-smi command lines: the inventory query, the temperature report, the probes for
fields that only some drivers know, the stream, and the one shell command that runs them all
for a collector reaching a host with no python3."""

from __future__ import annotations

import shlex

from .cells import (
    COUNTER_FIELDS,
    HELLO_COLUMNS,
    REASONS_FIELD,
    REASONS_FIELD_OLD,
    RESERVED_FIELD,
    stream_columns,
)

_INVALID_FIELD_TEXT = "is not a valid field"

CSV_FORMAT = "--format=csv,noheader,nounits"

# Marker lines that split the output of session_command() into its three parts.
MARK_HELLO = "#gputui-smi hello"
MARK_TEMPERATURE = "#gputui-smi temperature"
MARK_STREAM = "#gputui-smi stream"
# Followed by the --query-gpu argument the stream runs with, so its columns are known.
MARK_FIELDS = "#gputui-smi fields "


def stream_fields(
    reasons_field: str = REASONS_FIELD, reserved: bool = False, counters: bool = False
) -> list[str]:
    """The --query-gpu fields of the streaming command, in column order."""
    return [c.query for c in stream_columns(reasons_field, reserved, counters)]


def interval_ms(interval_s: float) -> int:
    """The -lms argument for a sample interval in seconds."""
    return max(1, round(interval_s * 1000))


def stream_argv(
    interval_s: float,
    reasons_field: str = REASONS_FIELD,
    smi: str = "nvidia-smi",
    reserved: bool = False,
    counters: bool = False,
) -> list[str]:
    """The long-lived streaming command: one CSV line per GPU every `interval_s`."""
    fields = ",".join(stream_fields(reasons_field, reserved, counters))
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


def counters_probe_argv(smi: str = "nvidia-smi") -> list[str]:
    """Asks for the held-clock counters alone, to learn whether the driver's nvidia-smi knows
    them (drivers before about 580 do not)."""
    return [smi, "--query-gpu=" + ",".join(COUNTER_FIELDS), CSV_FORMAT]


def counters_from_probe(output: str) -> bool:
    """Whether to stream the held-clock counters, from the output of counters_probe_argv():
    the rule of reserved_from_probe()."""
    return reserved_from_probe(output)


def fields_from_query(query: str) -> tuple[str, bool, bool]:
    """(clock-event field, whether memory.reserved is streamed, whether the held-clock
    counters are) of a --query-gpu argument."""
    fields = query.split("=", 1)[-1].split(",")
    reasons = REASONS_FIELD_OLD if REASONS_FIELD_OLD in fields else REASONS_FIELD
    return reasons, RESERVED_FIELD in fields, COUNTER_FIELDS[0] in fields


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
    counters_probe = " ".join(q(a) for a in counters_probe_argv(smi))
    counters = ",".join(COUNTER_FIELDS)
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
        f'case "$({counters_probe} 2>&1)" in {invalid}|"") ;; *) f="$f,{counters}" ;; esac',
        f'echo {q(MARK_FIELDS)}"$f"',
        f"echo {q(MARK_STREAM)}",
        f'exec {q(smi)} "$f" {CSV_FORMAT} -lms {interval_ms(interval_s)}',
    ]
    return "; ".join(parts)
