"""One line of nvidia-smi's stream: a GPU's CSV row, a GPU it could not open, or garbage.

A GPU nvidia-smi cannot open is a line "Unable to determine the device handle for GPU
<bus id>: ..." (or one saying the GPU is lost) in place of its row: status "lost" for that GPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .cells import ABSENT_CELLS, REASONS_FIELD, STATUS_CELLS, Column, stream_columns, to_int

if TYPE_CHECKING:
    from collections.abc import Sequence

    Json = dict[str, Any]
    BusKey = tuple[int, int, int, int]


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


def format_bus_id(key: BusKey) -> str:
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
    out = GpuLine(index=to_int(cells[0]), reading=values)
    for column, raw in zip(columns, cells):
        text = raw.strip()
        if text in ABSENT_CELLS:
            continue
        if text in STATUS_CELLS:
            # The GPU as a whole is unusable: no readings, only the status (as NVML reports).
            status = STATUS_CELLS[text]
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


def split_row(line: str, columns: Sequence[Column]) -> list[str] | None:
    cells = line.split(",")
    if len(cells) != len(columns):
        return None
    try:
        int(cells[0])
    except ValueError:
        return None
    return cells


def parse_stream_line(
    line: str, reasons_field: str = REASONS_FIELD, reserved: bool = False, counters: bool = False
) -> GpuLine | DeviceErrorLine | BadLine | None:
    """One line of the streaming command; None for a blank line."""
    if not line.strip():
        return None
    columns = stream_columns(reasons_field, reserved, counters)
    cells = split_row(line, columns)
    if cells is not None:
        return _read_cells(cells, columns)
    return parse_device_error(line) or BadLine(text=line.strip())
