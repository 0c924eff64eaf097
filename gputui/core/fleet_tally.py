"""What a stream of fleet snapshots adds up to: XIDs by host, GPU and code, and samples received.

A snapshot is the fleet at one tick; counters are the fleet over time. The exporter feeds every
snapshot it takes to a `FleetTally` and publishes its `Tally`, an immutable copy that another
thread (the HTTP server answering a scrape) can read while the next snapshot is counted.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from gputui.core.model import FleetSnapshot, Sample

#: (host, GPU index or None when the driver named none, XID code)
XidKey = tuple[str, int | None, int]


@dataclass(frozen=True)
class Tally:
    """The counts at one moment. `samples_per_s` is None until two snapshots span some time."""

    xids: dict[XidKey, int] = field(default_factory=dict)
    samples: int = 0
    samples_per_s: float | None = None


class FleetTally:
    """Counts XID events and samples across the snapshots it is shown, each snapshot once.

    XIDs are counted from the snapshots' events, one per event: the monitor hands a subscriber
    every event published since it last read, so none is lost when snapshots are skipped.
    Samples are counted by each host's sequence number, which the agent raises by one per
    sample: a snapshot that arrives after several samples counts all of them, and a new stream
    (its sequence starts again at 0) counts from there.
    """

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._xids: dict[XidKey, int] = {}
        self._samples = 0
        self._last: dict[str, Sample] = {}  # each host's newest sample counted
        self._history: deque[tuple[float, int]] = deque()  # (snapshot time, samples)
        self._tally = Tally()

    def observe(self, snap: FleetSnapshot) -> Tally:
        """Count `snap`; the new counts."""
        xids_changed = False
        for event in snap.events:
            if event.kind == "xid" and event.xid is not None:
                key = (event.host, event.gpu, event.xid)
                self._xids[key] = self._xids.get(key, 0) + 1
                xids_changed = True
        for host in snap.hosts:
            sample = host.sample
            if sample is None:
                continue
            last = self._last.get(host.name)
            if last is sample:
                continue
            if last is None:
                self._samples += 1
            elif sample.seq > last.seq:
                self._samples += sample.seq - last.seq
            else:  # a new stream: its samples 0..seq
                self._samples += sample.seq + 1
            self._last[host.name] = sample
        self._history.append((snap.t, self._samples))
        while len(self._history) > 2 and snap.t - self._history[1][0] >= self._window_s:
            self._history.popleft()
        first_t, first_n = self._history[0]
        rate = (self._samples - first_n) / (snap.t - first_t) if snap.t > first_t else None
        xids = dict(self._xids) if xids_changed else self._tally.xids
        self._tally = Tally(xids=xids, samples=self._samples, samples_per_s=rate)
        return self._tally

    @property
    def tally(self) -> Tally:
        return self._tally
