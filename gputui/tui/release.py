"""Letting go of the previous snapshot a few hosts at a time, once the new one is on screen.

With the collector in worker processes every host snapshot is decoded afresh each tick, so
each tick the app also lets go of a whole fleet's worth of the previous tick's objects (its
samples, readings, verdicts and reasons). Freed where the last reference went, that was inside
the tick handler: at 3,000 hosts x 8 GPUs about half of the fleet table's tick
(docs/benchmarks.md, "3,000 hosts: what a tick costs"), one pause before the screen showed the
tick, and a key pressed meanwhile waited for all of it.

The app hands the replaced snapshot's hosts to a `Release` before the widgets move on, so
theirs are never the last references. Once the tick is drawn, `start` lets them go `chunk` at a
time, one chunk per turn of the event loop: the same work, after the screen update, in pieces
that a key press or the next tick waits for one of at most.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gputui.core.model import FleetSnapshot, HostSnapshot


class Release:
    def __init__(self, chunk: int = 200) -> None:
        self.chunk = chunk
        self._held: list[HostSnapshot] = []
        self._running = False
        self._then: list[Callable[[], None]] = []

    @property
    def held(self) -> int:
        """Hosts not let go yet."""
        return len(self._held)

    def hold(self, snapshot: FleetSnapshot) -> None:
        """Keep `snapshot`'s hosts until `start` lets them go."""
        self._held.extend(snapshot.hosts)

    def start(self, then: Callable[[], None] | None = None) -> None:
        """Let the held hosts go, a chunk per turn of the running event loop; `then` once
        none is held (the paced full collection: it need not walk what is let go anyway)."""
        if then is not None:
            self._then.append(then)
        if not self._held:
            self._done()
            return
        if self._running:
            return
        self._running = True
        asyncio.get_running_loop().call_soon(self._step)

    def _step(self) -> None:
        del self._held[-self.chunk :]
        if self._held:
            asyncio.get_running_loop().call_soon(self._step)
        else:
            self._running = False
            self._done()

    def _done(self) -> None:
        then, self._then = self._then, []
        for callback in then:
            callback()
