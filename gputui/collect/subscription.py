"""Handing published snapshots to their readers: newest wins, no event is lost.

A reader that falls behind gets the newest snapshot, not a backlog; events are carried in every
snapshot published since the reader last took one. Shared by the in-process monitor and the
monitor over worker processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

from gputui.core.model import FleetEvent, FleetSnapshot


class Subscription:
    def __init__(self) -> None:
        self.latest: FleetSnapshot | None = None
        self.pending_events: list[FleetEvent] = []
        self.wake = asyncio.Event()

    def offer(self, snap: FleetSnapshot) -> None:
        self.pending_events.extend(snap.events)
        self.latest = snap
        self.wake.set()

    def take(self) -> FleetSnapshot:
        snap = self.latest
        assert snap is not None
        events = tuple(self.pending_events)
        self.pending_events = []
        self.latest = None
        self.wake.clear()
        if events != snap.events:
            snap = FleetSnapshot(t=snap.t, hosts=snap.hosts, events=events)
        return snap


class Subscribers:
    """Everyone reading a monitor's snapshots."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []

    def __len__(self) -> int:
        return len(self._subs)

    def offer(self, snap: FleetSnapshot) -> None:
        for sub in self._subs:
            sub.offer(snap)

    def wake_all(self) -> None:
        """Wake every reader (the monitor closed: they end)."""
        for sub in self._subs:
            sub.wake.set()

    async def stream(
        self,
        latest: FleetSnapshot | None,
        logged: Sequence[FleetEvent],
        closed: Callable[[], bool],
    ) -> AsyncIterator[FleetSnapshot]:
        """Every snapshot offered from now until `closed()`; first `latest` with every event
        `logged` so far, when one was published before (a late reader starts at once)."""
        sub = Subscription()
        if latest is not None:
            sub.offer(FleetSnapshot(t=latest.t, hosts=latest.hosts, events=tuple(logged)))
        self._subs.append(sub)
        try:
            while not closed():
                await sub.wake.wait()
                if sub.latest is None:
                    continue
                yield sub.take()
        finally:
            self._subs.remove(sub)
