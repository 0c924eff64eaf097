"""The fleet's event log: newest last, bounded, with repeats counted on one entry.

Shared by the in-process monitor and the monitor that merges worker processes' streams
(gputui/collect/workers/), so both log the same entries for the same events.
"""

from __future__ import annotations

from collections import deque

import msgspec

from gputui.core.model import FleetEvent

EVENT_LOG_LEN = 2000
# The same event as a host's last one of its kind, within this long, is counted on that entry
# ("x40") instead of logged again: a host that fails the same way at every retry stays one line.
COLLAPSE_WITHIN_S = 3600.0
_COLLAPSE_SEARCH = 256  # how far back the log is searched for the entry to count on


class EventLog:
    """`entries` is the log; `add()` logs an event or counts it on the entry it repeats."""

    def __init__(self, maxlen: int = EVENT_LOG_LEN) -> None:
        self.entries: deque[FleetEvent] = deque(maxlen=maxlen)
        # Each host's latest event of each kind, for counting repeats on it.
        self._last: dict[tuple[str, str], FleetEvent] = {}

    def add(self, event: FleetEvent) -> FleetEvent:
        """Log `event`, or count it on the host's last entry when it repeats that one; the
        entry as logged (its `repeat` is this log's own count, whatever `event` carried)."""
        key = (event.host, event.kind)
        last = self._last.get(key)
        if (
            last is not None
            and event.t - last.t < COLLAPSE_WITHIN_S
            and (last.kind, last.text, last.level, last.gpu, last.xid)
            == (event.kind, event.text, event.level, event.gpu, event.xid)
        ):
            event = msgspec.structs.replace(event, repeat=last.repeat + 1)
            # Counted in place when the entry is still near the end of the log, else logged
            # again with the running count.
            entries = self.entries
            for back in range(1, min(_COLLAPSE_SEARCH, len(entries)) + 1):
                if entries[-back] is last:
                    entries[-back] = event
                    break
            else:
                entries.append(event)
        else:
            if event.repeat != 1:  # counted elsewhere (a worker's log): this log counts anew
                event = msgspec.structs.replace(event, repeat=1)
            self.entries.append(event)
        self._last[key] = event
        return event
