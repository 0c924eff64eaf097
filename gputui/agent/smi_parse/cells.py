"""nvidia-smi's cells: the --query-gpu columns of each query and how a cell's text is read.

Cell values that are not numbers:
- `[N/A]`, `N/A`, `[Not Supported]`: the field is left out (None means "not reported").
- `[GPU requires reset]`: the whole GPU reads status "reset_required".
- `[GPU is lost]`: status "lost" for that GPU while the others keep streaming.
- `[Unknown Error]` and any other bracketed text: left out and counted.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable

# The clock-event reasons field was renamed in driver R535; older drivers reject the new name
# with 'Field "clocks_event_reasons.active" is not a valid field to query.' (exit status 2).
REASONS_FIELD = "clocks_event_reasons.active"
REASONS_FIELD_OLD = "clocks_throttle_reasons.active"
# Optional: streamed only where the driver's nvidia-smi knows it (reserved_from_probe).
RESERVED_FIELD = "memory.reserved"

ABSENT_CELLS = frozenset({"", "N/A", "[N/A]", "Not Supported", "[Not Supported]"})
STATUS_CELLS = {"[GPU requires reset]": "reset_required", "[GPU is lost]": "lost"}


def to_int(text: str) -> int:
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
def stream_columns(reasons_field: str, reserved: bool = False) -> tuple[Column, ...]:
    optional = (Column(RESERVED_FIELD, "mem_reserved_mib", _to_float),) if reserved else ()
    return (
        Column("index", "index", to_int),
        Column("uuid", None, str),
        Column("name", None, str),
        Column("temperature.gpu", "temp_c", _to_float),
        Column("utilization.gpu", "util_pct", _to_float),
        Column("utilization.memory", "mem_util_pct", _to_float),
        Column("memory.used", "mem_used_mib", _to_float),
        Column("memory.total", None, _to_float),
        Column("power.draw", "power_w", _to_float),
        Column("power.limit", "power_limit_w", _to_float),
        Column("clocks.sm", "sm_clock_mhz", to_int),
        Column("clocks.mem", "mem_clock_mhz", to_int),
        Column(reasons_field, "clock_events", _to_hex),
        # Slow signals for NVML, but nvidia-smi reads them every period at no extra cost.
        Column("pcie.link.gen.current", "pcie_gen", to_int),
        Column("pcie.link.gen.max", None, to_int),
        Column("pcie.link.width.current", "pcie_width", to_int),
        Column("pcie.link.width.max", None, to_int),
        Column("ecc.errors.uncorrected.volatile.total", "ecc_uncorrected_volatile", to_int),
        *optional,
    )


HELLO_COLUMNS = (
    Column("index", "index", to_int),
    Column("uuid", "uuid", str),
    Column("name", "name", str),
    Column("serial", "serial", str),
    Column("pci.bus_id", "pci_bus_id", str),
    Column("memory.total", "memory_total_mib", _to_float),
    Column("power.limit", "power_limit_w", _to_float),
    Column("driver_version", None, str),
    Column("clocks.max.sm", "sm_clock_max_mhz", to_int),
    Column("clocks.max.mem", "mem_clock_max_mhz", to_int),
    Column("pcie.link.gen.max", "pcie_gen_max", to_int),
    Column("pcie.link.width.max", "pcie_width_max", to_int),
    Column("persistence_mode", None, _to_enabled),
    Column("ecc.mode.current", "ecc_enabled", _to_enabled),
)
