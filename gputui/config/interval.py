"""The sample interval: gputui's default and the one range it accepts, stated once.

hosts.toml is validated against this range (schema.py); `gputui agent` checks its --interval
with `interval_problem()`, and the collector's defaults (AgentArgs, HostPlan, the demo fleet,
triage) read DEFAULT_INTERVAL_S from here. `gputui demo` takes a narrower range inside this one
(gputui/collect/demo.py), and the monitor's tick follows the fleet's smallest interval
(gputui/collect/tick.py). The agent keeps its own default and argument check: it runs alone on
the GPU host and imports nothing of gputui.
"""

from __future__ import annotations

DEFAULT_INTERVAL_S = 1.0
# An hour: the slowest rate at which a live monitor still tells the operator something; a larger
# number is more likely a slip of unit (milliseconds) than a wish.
MAX_INTERVAL_S = 3600.0
# What an accepted interval is, in the words of an error message ("expected ...").
INTERVAL_EXPECTED = f"a number of seconds > 0 and <= {MAX_INTERVAL_S:g}"


def interval_problem(seconds: float) -> str | None:
    """None when `seconds` is an interval gputui accepts; else what was expected and found."""
    if 0 < seconds <= MAX_INTERVAL_S:  # NaN fails both comparisons
        return None
    return f"expected {INTERVAL_EXPECTED}, got {seconds:g}"
