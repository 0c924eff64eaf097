"""The hello: nvidia-smi's inventory query and its `-q -d TEMPERATURE` report, merged into
the backend's hello() dict."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .cells import ABSENT_CELLS, HELLO_COLUMNS
from .lines import bus_key, format_bus_id, parse_device_error, split_row

if TYPE_CHECKING:
    Json = dict[str, Any]
    BusKey = tuple[int, int, int, int]


_TEMPERATURE_KEYS = {
    # Exact names: the "T.Limit" variants are margins relative to a limit, not temperatures.
    "GPU Shutdown Temp": "temp_shutdown_c",
    "GPU Slowdown Temp": "temp_slowdown_c",
    "GPU Max Operating Temp": "temp_gpu_max_c",
    "Memory Max Operating Temp": "temp_mem_max_c",
}
_HEADER_KEYS = {"Driver Version": "driver_version", "CUDA Version": "cuda_version"}
GPU_SECTION = re.compile(r"^GPU ([0-9A-Fa-f]+:[0-9A-Fa-f]+:[0-9A-Fa-f]+\.[0-9A-Fa-f]+)\s*$")
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
        section = GPU_SECTION.match(line)
        if section:
            report.sections.append((bus_key(section.group(1)), {}))
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if not report.sections:
            if key in _HEADER_KEYS and value not in ABSENT_CELLS:
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
    cells = split_row(line, HELLO_COLUMNS)
    if cells is None:
        lost = parse_device_error(line)
        if lost is None or lost.bus is None:
            return None
        # nvidia-smi lists GPUs in index order, so a GPU it cannot open has the index of
        # its place in the list; its samples will say it is lost.
        return {"index": position, "uuid": "", "name": "", "pci_bus_id": format_bus_id(lost.bus)}
    gpu: Json = {}
    for column, raw in zip(HELLO_COLUMNS, cells):
        text = raw.strip()
        if text in ABSENT_CELLS or text.startswith("["):
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
