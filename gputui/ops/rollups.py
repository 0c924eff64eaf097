"""The writer that rolls the monitor's snapshots up into the journal.

    writer = RollupWriter(journal, config.rollup_retention)
    task = asyncio.create_task(writer.run(monitor))   # until the monitor stops or cancelled

The writer rolls every snapshot up into 5-minute buckets per GPU (gputui/core/rollup.py) and
writes the buckets that closed in one transaction per interval (gputui/ops/rollup_store.py):
the 5-minute rows, each GPU's day row merged with them, and the retention that deletes what is
now too old. A bucket closes when its GPU's first sample of the next bucket arrives; the writer
waits `grace_s` after the first one closes, so the whole fleet's buckets go in one
transaction, with the buckets of hosts that sent nothing for as long (gone quiet, unreachable).
Killed at any moment, the journal keeps every interval written before, whole: what is lost is
the interval being accumulated. Stopped cleanly, the writer also writes the open buckets,
partial; the rest of such a bucket, after a restart, is merged into its row.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from gputui.core.model import FleetSnapshot
from gputui.core.rollup import BUCKET_5M_S, BUCKET_DAY_S, Rollup, RollupAccumulator, RollupRetention
from gputui.ops.journal_schema import JournalError

if TYPE_CHECKING:
    from gputui.collect.live import LiveMonitor
    from gputui.ops.journal import Journal

#: How long after a GPU's bucket closes the writer waits for the rest of the fleet's.
DEFAULT_GRACE_S = 30.0
#: Closed buckets held for writing at most: past it they are written at once (a fleet so
#: large, or a fast-forwarded simulation, that one grace period closes this many).
MAX_PENDING = 200_000


class RollupWriter:
    """Rolls the monitor's snapshots up and writes them: one transaction per interval."""

    def __init__(
        self,
        journal: Journal,
        retention: RollupRetention | None = None,
        *,
        grace_s: float = DEFAULT_GRACE_S,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.journal = journal
        self.retention = retention if retention is not None else RollupRetention()
        self.grace_s = grace_s
        self.accumulator = RollupAccumulator(BUCKET_5M_S)
        self.written = 0  # 5-minute rollups written so far
        self.transactions = 0
        self.last_error: str | None = None  # the last write that failed, for the operator
        self._clock = clock
        self._wall = wall
        self._pending: list[Rollup] = []
        self._pending_since: float | None = None
        self._swept_day: int | None = None
        self._last_snap_t: float | None = None  # the collector's clock at the last snapshot

    async def run(self, monitor: LiveMonitor) -> None:
        """Roll up every snapshot of `monitor` until it stops; write the open buckets on the
        way out (also on cancellation: what was seen is not thrown away)."""
        try:
            async for snap in monitor.snapshots():
                self.observe(snap)
                if self.due():
                    batch = self.take()
                    if not await asyncio.to_thread(self.write, batch):
                        self.requeue(batch)
        finally:
            with contextlib.suppress(Exception):
                self.write([*self.take(), *self.accumulator.close_all()])

    def observe(self, snap: FleetSnapshot) -> None:
        """Fold one snapshot in; buckets that closed wait for the next write."""
        self._last_snap_t = snap.t
        closed = self.accumulator.observe(snap)
        if closed:
            self._add(closed)

    def due(self) -> bool:
        """Whether the closed buckets should be written now."""
        if self._pending_since is None:
            return False
        return (
            self._clock() - self._pending_since >= self.grace_s or len(self._pending) >= MAX_PENDING
        )

    def take(self) -> list[Rollup]:
        """The closed buckets to write, with those of GPUs that fell behind them."""
        if not self._pending:
            return []
        # Hosts that sent nothing for the grace period (gone quiet, unreachable) have their
        # buckets written with the interval, partial; should they come back within the same
        # bucket, the rest is merged into the row.
        if self._last_snap_t is not None:
            self._add(self.accumulator.close_quiet(self._last_snap_t - self.grace_s))
        batch, self._pending, self._pending_since = self._pending, [], None
        return batch

    def write(self, batch: Sequence[Rollup]) -> bool:
        """Write `batch` in one transaction; False (and `last_error`) when that failed.

        Safe to run in a worker thread while the loop observes: it touches no pending state.
        """
        if not batch:
            return True
        now = self._wall()
        day = int(now // BUCKET_DAY_S)
        sweep = day != self._swept_day
        try:
            self.written += self.journal.write_rollups(batch, self.retention, now=now, sweep=sweep)
        except JournalError as exc:
            self.last_error = str(exc)
            return False
        self.transactions += 1
        self.last_error = None
        if sweep:
            self._swept_day = day
        return True

    def requeue(self, batch: Sequence[Rollup]) -> None:
        """Keep a batch whose write failed (disk full, the journal locked too long) for the
        next write, within MAX_PENDING: past it the oldest rollups are given up."""
        room = max(0, MAX_PENDING - len(self._pending))
        self._add(list(batch)[len(batch) - room :] if room < len(batch) else batch)

    def _add(self, closed: Sequence[Rollup]) -> None:
        if closed and self._pending_since is None:
            self._pending_since = self._clock()
        self._pending.extend(closed)
