"""The field table (gputui/agent/fields.py) covers the protocol's readings and names only
NVML calls and constants the simulated NVML offers."""

from __future__ import annotations

import msgspec

from gputui.agent import nvml_backend
from gputui.agent.fields import READINGS, bytes_to_mib, milliwatts_to_w, smi_float, smi_hex
from gputui.agent.smi_parse import RESERVED_FIELD, stream_fields
from gputui.core.model import GpuReading

NOT_READINGS = {"index", "status", "error", "processes", "jobs"}


def test_every_reading_field_of_the_protocol_is_declared_once() -> None:
    names = [f.name for f in READINGS]
    assert len(names) == len(set(names))
    protocol = {f.name for f in msgspec.structs.fields(GpuReading)} - NOT_READINGS
    assert set(names) == protocol


def test_the_table_names_only_calls_and_constants_the_backend_declares() -> None:
    for field in READINGS:
        assert field.nvml in nvml_backend.NVML_FUNCTIONS, field.name
        assert set(field.nvml_args) <= set(nvml_backend.NVML_CONSTANTS), field.name


def test_every_streamed_nvidia_smi_column_of_a_reading_comes_from_the_table() -> None:
    streamed = set(stream_fields(reserved=True))
    declared = {f.smi for f in READINGS if f.smi is not None}
    readings = streamed - {"index", "uuid", "name", "memory.total"}
    readings -= {"pcie.link.gen.max", "pcie.link.width.max"}
    assert readings <= declared and RESERVED_FIELD in readings


def test_conversions() -> None:
    assert milliwatts_to_w(81234) == 81.2
    assert bytes_to_mib(615 * (1 << 20)) == 615.0
    assert smi_hex("0x0000000000000004") == 4
    assert smi_float("329.64") == 329.64
