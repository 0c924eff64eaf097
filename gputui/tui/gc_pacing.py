"""When the app lets Python's cyclic garbage collector make its full collections.

A full (generation 2) collection walks every tracked object the app holds; at 1,000 hosts
that is about 100,000 objects (Textual's strips on screen and their caches, the snapshot) and
a 40-70 ms pause. Left to itself CPython makes one whenever enough objects have survived
younger collections: every second or two with a tick redrawing thousands of cells, at any
moment, and a key press that arrives meanwhile waits for it.

`GcPacer` takes the start-up objects out of the collector (`gc.freeze`: they live as long as
the app), turns the automatic full collections off, and makes them itself, right after a tick
has been drawn, at most every `every_s` seconds and only when no key or click came in the last
`quiet_s` (an operator who is typing is not made to wait); after `force_s` it collects anyway.
Young collections stay automatic: they are short. Objects are still freed as soon as their last
reference goes; only cyclic garbage waits, at most `force_s`, for the next full collection.

What survives a full collection is frozen too. The monitor connects after the screen is up, so
its connections, host state and history rings (about 50,000 objects at 1,000 hosts) would
otherwise be walked at every full collection, for as long as they live: with the collector in
the app's process that made each pause 70-170 ms instead of 50. So a full collection walks only
what was made since the last one, and every `thaw_s` one walks everything (unfreeze, collect,
freeze): a cycle among objects that were frozen, an old connection replaced after a reconnect,
is freed then, so memory stays flat with at most `thaw_s` of such garbage waiting.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

NEVER = 1_000_000_000  # a generation-2 threshold that automatic collection never reaches


class GcPacer:
    def __init__(
        self,
        *,
        every_s: float = 10.0,
        quiet_s: float = 1.0,
        force_s: float = 30.0,
        thaw_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        collect: Callable[[], object] = gc.collect,
        freeze: Callable[[], None] = gc.freeze,
        unfreeze: Callable[[], None] = gc.unfreeze,
    ) -> None:
        self.every_s = every_s
        self.quiet_s = quiet_s
        self.force_s = force_s
        self.thaw_s = thaw_s
        self._clock = clock
        self._collect = collect
        self._freeze = freeze
        self._unfreeze = unfreeze
        self._last_collection = clock()
        self._last_thaw = self._last_collection
        self._last_input = float("-inf")
        self._saved: tuple[int, int, int] | None = None
        self.collections = 0
        self.thaws = 0  # collections that walked the frozen objects too
        self.pauses_ms: list[float] = []  # the latest pauses, for the benchmark and tests

    def start(self) -> None:
        """Freeze what exists now and take over the full collections."""
        self._freeze()
        if self._saved is None:
            self._saved = gc.get_threshold()
            gc.set_threshold(self._saved[0], self._saved[1], NEVER)
        self._last_collection = self._last_thaw = self._clock()

    def stop(self) -> None:
        """Give the full collections back to CPython (the app is leaving)."""
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            self._unfreeze()
            self._saved = None

    def input_seen(self) -> None:
        self._last_input = self._clock()

    def due(self) -> bool:
        now = self._clock()
        since = now - self._last_collection
        if since >= self.force_s:
            return True
        return since >= self.every_s and now - self._last_input >= self.quiet_s

    def after_tick(self) -> None:
        """Called once a tick is on screen: make a full collection if one is due."""
        if self._saved is None or not self.due():
            return
        started = time.perf_counter()
        thaw = self._clock() - self._last_thaw >= self.thaw_s
        if thaw:
            self._unfreeze()  # this one walks everything: frozen garbage is freed
        self._collect()
        self._freeze()  # the survivors: the next collection walks only what is newer
        self.pauses_ms = [*self.pauses_ms[-99:], (time.perf_counter() - started) * 1000]
        self.collections += 1
        self._last_collection = self._clock()
        if thaw:
            self._last_thaw = self._last_collection
            self.thaws += 1
