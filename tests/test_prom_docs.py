"""docs/prometheus.md's series table is the table of gputui/core/prom_series.py."""

from __future__ import annotations

import re
from pathlib import Path

from gputui.core import prom_series as ps
from gputui.render.prom_rules import rule_xids

DOC = Path(__file__).resolve().parent.parent / "docs" / "prometheus.md"
UNITS = {
    "_celsius": "°C",
    "_watts": "W",
    "_ratio": "ratio (0-1)",
    "_bytes": "bytes",
    "_hertz": "Hz",
}
FLAGS = ("remap_pending", "remap_failure", "retired_pages_pending")


def unit(series: ps.GpuSeries) -> str:
    """The unit the docs name, read from the series' name (Prometheus' naming convention)."""
    for suffix, word in UNITS.items():
        if series.name.endswith(suffix):
            return word
    if series.name.endswith("_total"):
        return "count"
    return "0 or 1" if series.field in FLAGS else "number"


def test_the_series_table_is_prom_series() -> None:
    rows = [
        [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        for line in DOC.read_text().splitlines()
        if line.startswith("| `gputui_gpu_") and "GpuReading" not in line
    ]
    documented = [row for row in rows if row[0] in ps.BY_NAME]
    expected = [
        [s.name, s.kind, unit(s), s.field, s.dcgm if s.dcgm is not None else "—"]
        for s in ps.GPU_SERIES
    ]
    assert documented == expected


def test_the_docs_name_every_xid_with_a_rule() -> None:
    text = DOC.read_text()
    listed = re.search(r"critical or failed \(([\d, ]+)\), and\s+94 and 154", text)
    assert listed is not None
    named = [int(x) for x in listed.group(1).split(", ")]
    assert sorted([*named, 94, 154]) == rule_xids()
