"""How often the monitor publishes a snapshot, from the sample intervals of its hosts.

A tick re-checks every host for staleness and hands one snapshot to the TUI, reports and the
journal. It follows the fleet's smallest interval, so a fast fleet's samples reach the screen
as they arrive, within two bounds (docs/architecture.md, "The monitor's tick"):

- no faster than MIN_TICK_S: past ten snapshots a second the screen shows no more and the
  subscribers only spend CPU;
- no slower than MAX_TICK_S: the SEEN column counts seconds and a host's staleness is judged at
  a tick, so a fleet of slow hosts still ticks every second. A snapshot of unchanged hosts is
  cached per host (host_runtime.py), so a tick costs little.
"""

from __future__ import annotations

from collections.abc import Iterable

MIN_TICK_S = 0.1
MAX_TICK_S = 1.0


def tick_for(intervals: Iterable[float]) -> float:
    """The tick for hosts that sample every `intervals` seconds: the smallest, within bounds."""
    return min(MAX_TICK_S, max(MIN_TICK_S, min(intervals, default=MAX_TICK_S)))
