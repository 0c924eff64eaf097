"""The held-clock counters in nvidia-smi's `-q -d PERFORMANCE` report.

nvidia-smi prints them in a block of its own, per GPU, in microseconds:

    GPU 00000000:00:06.0
        Clocks Event Reasons Counters
            SW Power Capping                           : 23312 us
            Sync Boost                                 : 0 us
            ...

The block's lines and the protocol field each says come from the field table (fields.py,
`smi_report`). The labels alone do not say which block a line is in ("Sync Boost" is also a
line of the "Clocks Event Reasons" block above, saying Active or Not Active), so lines are read
within their block. scripts/device_check.py compares these with the agent's NVML readings.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..fields import READINGS
from .hello import GPU_SECTION
from .lines import bus_key

if TYPE_CHECKING:
    BusKey = tuple[int, int, int, int]

# (block, line) -> protocol field, for every field the report says.
_REPORT_LINES = {
    tuple(f.smi_report.split(": ", 1)): f.name for f in READINGS if f.smi_report is not None
}
_MICROSECONDS = re.compile(r"^(\d+)\s*us$")
_INDENT = re.compile(r"^( *)(\S.*?)\s*$")


def parse_held_counters(text: str) -> list[tuple[BusKey | None, dict[str, Any]]]:
    """Per GPU section of a `nvidia-smi -q` report (in report order): its PCI bus key and the
    held-clock counters it prints, in microseconds. "N/A" and unknown lines are left out."""
    sections: list[tuple[BusKey | None, dict[str, Any]]] = []
    block = ""
    block_indent = -1
    for line in text.splitlines():
        section = GPU_SECTION.match(line)
        if section:
            sections.append((bus_key(section.group(1)), {}))
            block, block_indent = "", -1
            continue
        parts = _INDENT.match(line)
        if not sections or parts is None:
            continue
        indent = len(parts.group(1))
        key, sep, value = parts.group(2).partition(":")
        key = key.strip()
        if not sep or not value.strip():
            # A block's title ("Clocks Event Reasons Counters"), or a title with no value.
            block, block_indent = key, indent
            continue
        if indent <= block_indent:
            block, block_indent = "", -1  # a line at the block's own level ends it
        name = _REPORT_LINES.get((block, key))
        number = _MICROSECONDS.match(value.strip())
        if name is not None and number:
            sections[-1][1][name] = int(number.group(1))
    return sections
