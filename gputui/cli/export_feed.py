"""The exporter's side of the monitor: every snapshot taken, counted, and the newest view kept.

The monitor publishes on the event loop; Prometheus scrapes on the HTTP server's threads. The
feed hands the two one immutable `ExportView` at a time: a scrape reads whichever view is newest
when it starts, and the loop replaces it with the next one without waiting for any scrape.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from gputui.collect.live import LiveMonitor
from gputui.core.fleet_tally import FleetTally, Tally
from gputui.core.model import FleetSnapshot
from gputui.core.prom_series import RATE_WINDOW_S
from gputui.render.prometheus import ExportView


class ExportFeed:
    """Follows one monitor; `latest()` is the view a scrape shows (None before the first)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tally = FleetTally(RATE_WINDOW_S)
        self._view: ExportView | None = None

    def latest(self) -> ExportView | None:
        return self._view

    @property
    def tally(self) -> Tally:
        return self._tally.tally

    def take(self, snap: FleetSnapshot) -> ExportView:
        """Count `snap` and make it the view scrapes show."""
        tally = self._tally.observe(snap)
        lag = max(0.0, self._clock() - snap.t)
        self._view = ExportView(snapshot=snap, tally=tally, publish_lag_s=lag)
        return self._view

    async def follow(self, monitor: LiveMonitor) -> None:
        """Take every snapshot `monitor` publishes, until it stops (or this task is cancelled)."""
        async for snap in monitor.snapshots():
            self.take(snap)

    async def start(self, monitor: LiveMonitor) -> asyncio.Task[None]:
        """`follow` in a task, subscribed before this returns: no snapshot published from here
        on, nor its events, is missed."""
        task = asyncio.create_task(self.follow(monitor), name="gputui-export-feed")
        await asyncio.sleep(0)  # its first step subscribes to the monitor
        return task

    async def reached(self, snap: FleetSnapshot, timeout_s: float = 5.0) -> None:
        """Wait until the feed took `snap` (published already), or `timeout_s` passed."""
        deadline = time.monotonic() + timeout_s
        while (self._view is None or self._view.snapshot.t < snap.t) and (
            time.monotonic() < deadline
        ):
            await asyncio.sleep(0.01)
