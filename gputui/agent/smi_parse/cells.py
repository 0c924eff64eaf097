"""nvidia-smi's cells: the --query-gpu columns of each query and how a cell's text is read.

Cell values that are not numbers:
- `[N/A]`, `N/A`, `[Not Supported]`: the field is left out (None means "not reported").
- `[GPU requires reset]`: the whole GPU reads status "reset_required".
- `[GPU is lost]`: status "lost" for that GPU while the others keep streaming.
- `[Unknown Error]` and any other bracketed text: left out and counted.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

from ..fields import (
    BY_NAME,
    HELD_FIELDS,
    SMI_REASONS,
    SMI_REASONS_OLD,
    smi_enabled,
    smi_float,
    smi_int,
)

to_int = smi_int  # also the index column's parser, in lines.py
REASONS_FIELD = SMI_REASONS
REASONS_FIELD_OLD = SMI_REASONS_OLD
# Optional: streamed only where the driver's nvidia-smi knows it (reserved_from_probe).
RESERVED_FIELD = "memory.reserved"
# Optional too: the held-clock counters (microseconds), where nvidia-smi knows them
# (counters_from_probe), after memory.reserved, in the field table's order.
COUNTER_FIELDS = tuple(str(BY_NAME[name].smi) for name in HELD_FIELDS)

ABSENT_CELLS = frozenset({"", "N/A", "[N/A]", "Not Supported", "[Not Supported]"})
STATUS_CELLS = {"[GPU requires reset]": "reset_required", "[GPU is lost]": "lost"}


@dataclass(frozen=True)
class Column:
    """One --query-gpu field: where its value goes and how it is read."""

    query: str  # the --query-gpu name
    key: str | None  # protocol field name; None: read, not sent per GPU
    convert: Callable[[str], Any]


@functools.lru_cache(maxsize=None)  # one table per field set, not one per line
def stream_columns(
    reasons_field: str, reserved: bool = False, counters: bool = False
) -> tuple[Column, ...]:
    # The reading columns take their field and parser from fields.py; their order is the
    # stream's own (recorded streams in tests/fixtures/smi are in it), new ones go last.
    optional: tuple[Column, ...] = (_reading("mem_reserved_mib"),) if reserved else ()
    if counters:
        optional += tuple(_reading(name) for name in HELD_FIELDS)
    return (
        Column("index", "index", to_int),
        Column("uuid", None, str),
        Column("name", None, str),
        _reading("temp_c"),
        _reading("util_pct"),
        _reading("mem_util_pct"),
        _reading("mem_used_mib"),
        Column("memory.total", None, smi_float),
        _reading("power_w"),
        _reading("power_limit_w"),
        _reading("sm_clock_mhz"),
        _reading("mem_clock_mhz"),
        _reading("clock_events", reasons_field),
        # Slow signals for NVML, but nvidia-smi reads them every period at no extra cost.
        _reading("pcie_gen"),
        Column("pcie.link.gen.max", None, to_int),
        _reading("pcie_width"),
        Column("pcie.link.width.max", None, to_int),
        _reading("ecc_uncorrected_volatile"),
        *optional,
    )


def _reading(name: str, query: str | None = None) -> Column:
    """The column of a reading field, its nvidia-smi field and parser from fields.py."""
    field = BY_NAME[name]
    assert field.smi is not None, name
    return Column(query or field.smi, field.name, field.smi_value)


HELLO_COLUMNS = (
    Column("index", "index", to_int),
    Column("uuid", "uuid", str),
    Column("name", "name", str),
    Column("serial", "serial", str),
    Column("pci.bus_id", "pci_bus_id", str),
    Column("memory.total", "memory_total_mib", smi_float),
    Column("power.limit", "power_limit_w", smi_float),
    Column("driver_version", None, str),
    Column("clocks.max.sm", "sm_clock_max_mhz", to_int),
    Column("clocks.max.mem", "mem_clock_max_mhz", to_int),
    Column("pcie.link.gen.max", "pcie_gen_max", to_int),
    Column("pcie.link.width.max", "pcie_width_max", to_int),
    Column("persistence_mode", None, smi_enabled),
    Column("ecc.mode.current", "ecc_enabled", smi_enabled),
)
