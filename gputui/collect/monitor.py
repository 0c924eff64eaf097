"""FleetMonitor: runs every host's source, folds their streams into state, publishes snapshots.

Data moves one way: sources -> HostRuntime -> one FleetSnapshot per tick -> subscribers (TUI,
reports, the journal). Subscribers never reach back into connections. A subscriber that falls
behind gets the newest snapshot, not a backlog; events are carried in every snapshot published
since the subscriber last read, so none is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gputui.collect.event_log import EventLog
from gputui.collect.feed import Backoff, Source
from gputui.collect.host_runtime import HostRuntime
from gputui.collect.subscription import Subscribers
from gputui.collect.tick import tick_for
from gputui.config import DEFAULT_INTERVAL_S
from gputui.core.health import Thresholds
from gputui.core.job_straggler import JobStragglerRule
from gputui.core.model import FleetEvent, FleetSnapshot
from gputui.core.text import plain

if TYPE_CHECKING:
    from gputui.collect.columns import FleetColumns

URGENT_MIN_SPACING_S = 0.05  # pushed events publish at once, but at most 20 times a second
# Before the first tick, how often the monitor looks whether every host has answered: the first
# snapshot goes out then (docs/benchmarks.md, "Start-up").
FIRST_LOOK_S = 0.02


@dataclass
class HostPlan:
    """A host to monitor: its source and how to present it."""

    source: Source
    interval_s: float = DEFAULT_INTERVAL_S
    labels: dict[str, str] = field(default_factory=dict)
    spare: bool = False


class FleetMonitor:
    """Owns per-host state and the tick; `async with` starts and stops every source.

    Unless `tick_s` is given, it ticks with the fleet's fastest host, within tick.py's bounds.
    Unless `history_len` is given, each host keeps the history its fleet's size allows
    (gputui/collect/history.py); 0 keeps none (a one-shot report, which then needs no numpy).
    Without `job_stragglers`, the job-level straggler rule is left to whoever merges this
    monitor's hosts with others (a worker process sees only its shard of the fleet), and
    `on_urgent` hears of each event that publishes at once, as it is logged.
    """

    def __init__(
        self,
        plans: Sequence[HostPlan],
        *,
        thresholds: Thresholds | None = None,
        tick_s: float | None = None,
        history_len: int | None = None,
        clock: Callable[[], float] = time.time,
        closers: Sequence[Callable[[], Awaitable[None]]] = (),
        job_stragglers: bool = True,
        on_urgent: Callable[[FleetEvent], None] | None = None,
    ) -> None:
        self.tick_s = tick_s if tick_s is not None else tick_for(p.interval_s for p in plans)
        self._closers = list(closers)
        self._clock = clock
        self._plans = list(plans)
        if history_len is None:  # a small fleet charts an hour, a large one 5 minutes
            from gputui.collect.history import history_len_for  # numpy: only with history

            history_len = history_len_for(len(self._plans))
        self.history_len = history_len
        # The fleet's readings in columns, judged in micro-batches; none without history (a
        # one-shot report judges each sample as it comes, and loads no numpy).
        self.columns: FleetColumns | None = None
        if history_len > 0:
            from gputui.collect.columns import FleetColumns

            self.columns = FleetColumns(history_len, len(self._plans), thresholds)
        self.hosts: dict[str, HostRuntime] = {}
        for plan in self._plans:
            name = plan.source.name
            if name in self.hosts:
                raise ValueError(f"host {name} listed twice")
            self.hosts[name] = HostRuntime(
                name,
                interval_s=plan.interval_s,
                labels=plan.labels,
                spare=plan.spare,
                thresholds=thresholds,
                history_len=history_len,
                emit=self._on_event,
                clock=clock,
                columns=self.columns,
            )
        # Across hosts, once per tick: a GPU slower than its job's GPUs on the other hosts.
        self._job_stragglers = JobStragglerRule(thresholds) if job_stragglers else None
        self._on_urgent = on_urgent
        self._log = EventLog()
        self.events = self._log.entries
        self._new_events: list[FleetEvent] = []
        self._subs = Subscribers()
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()  # set by the tick timer or by an urgent event
        self._urgent = False
        self._last_publish = 0.0
        self._latest: FleetSnapshot | None = None
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> FleetMonitor:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start(self) -> None:
        for plan in self._plans:
            runtime = self.hosts[plan.source.name]
            task = asyncio.create_task(self._supervise(plan.source, runtime), name=runtime.name)
            self._tasks.append(task)
        self._tasks.append(asyncio.create_task(self._ticker(), name="gputui-tick"))

    async def stop(self) -> None:
        """Cancel every source (closing its connection, which ends its agent) and wait."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.columns is not None:
            self.columns.close()
        for close in self._closers:  # shared resources (the SSH context's bastions)
            with contextlib.suppress(Exception):
                await close()
        self._subs.wake_all()

    async def _supervise(self, source: Source, runtime: HostRuntime) -> None:
        """Run a host's source for as long as the monitor runs.

        Sources turn every failure into a reason themselves; this is the last guard, so that
        a host's task never ends silently (its row would show `connecting` forever)."""
        backoff = Backoff()
        while True:
            try:
                await source.run(runtime)
                why = "collector error: the host's stream stopped"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the host shows it; the others go on
                why = f"collector error: {type(exc).__name__}: {plain(str(exc), 200)}"
            runtime.stream_ended(why)
            await asyncio.sleep(backoff.next_delay())

    # -- events and ticks -------------------------------------------------------------------

    def _on_event(self, event: FleetEvent, urgent: bool) -> None:
        event = self._log.add(event)
        self._new_events.append(event)
        if urgent:
            if self._on_urgent is not None:
                self._on_urgent(event)
            self._urgent = True
            self._wake.set()

    async def _ticker(self) -> None:
        # A timer that sets an event, not asyncio.wait_for: on Python 3.11 wait_for can swallow
        # a cancellation that arrives as its inner wait completes (an urgent event at the
        # moment of shutdown), which left the monitor's stop() waiting forever.
        loop = asyncio.get_running_loop()
        await self._first_answers()
        if not self._wake.is_set():  # else an urgent event publishes below, at once
            self.check_stale()
            self.publish()
        next_tick = time.monotonic()
        while True:
            next_tick += self.tick_s
            timer = loop.call_later(max(0.0, next_tick - time.monotonic()), self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()
            self._wake.clear()
            if self._urgent:
                self._urgent = False
                since = time.monotonic() - self._last_publish
                if since < URGENT_MIN_SPACING_S:
                    await asyncio.sleep(URGENT_MIN_SPACING_S - since)
                next_tick -= self.tick_s  # an urgent publish does not shift the regular tick
            else:
                self.check_stale()
            self.publish()
            if time.monotonic() - next_tick > self.tick_s:
                next_tick = time.monotonic()  # fell behind (suspended laptop): don't burst

    async def _first_answers(self) -> None:
        """Wait until every host has answered, an urgent event came, or the first tick is due.

        The first snapshot goes out as soon as the fleet has answered rather than a whole tick
        after the start: a local agent's first sample comes within a tenth of a second, and the
        screen opens on it (bare `gputui` showed this machine's GPUs 0.9 s later before)."""
        deadline = time.monotonic() + self.tick_s
        while not self.settled() and not self._wake.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(FIRST_LOOK_S, left))

    def check_stale(self) -> None:
        """Judge every host's staleness now (each tick does)."""
        for runtime in self.hosts.values():
            runtime.check_stale()

    def publish(self) -> FleetSnapshot:
        """Build the snapshot now and hand it to every subscriber."""
        self.flush()
        now = self._clock()
        hosts = tuple(rt.snapshot() for rt in self.hosts.values())
        # The job-level rule sees the whole fleet, which no host's runtime does: its reasons
        # join the published verdicts here, and its events this snapshot's.
        if self._job_stragglers is not None:
            hosts, job_events = self._job_stragglers.apply(hosts, now)
            for event in job_events:
                self._on_event(event, False)
        snap = FleetSnapshot(t=now, hosts=hosts, events=tuple(self._new_events))
        self._new_events = []
        self._latest = snap
        self._last_publish = time.monotonic()
        self._subs.offer(snap)
        return snap

    def flush(self) -> None:
        """Judge every sample waiting in the batch now (publish does it at every tick)."""
        if self.columns is not None:
            self.columns.flush()

    def snapshot(self) -> FleetSnapshot:
        """The most recent snapshot (built now if none was published yet)."""
        return self._latest if self._latest is not None else self.publish()

    async def snapshots(self) -> AsyncIterator[FleetSnapshot]:
        """Every published snapshot, newest-wins when the consumer is slower than the tick;
        the newest one first when one was published before."""
        async for snap in self._subs.stream(self._latest, self.events, lambda: self._closed):
            yield snap

    # -- operator ---------------------------------------------------------------------------

    def set_marked_failed(self, host: str, marked: bool) -> None:
        self.hosts[host].set_marked_failed(marked)

    def set_in_place_of(self, host: str, node: str | None) -> None:
        self.hosts[host].set_in_place_of(node)

    def clear(self, host: str, gpu: int | None = None) -> None:
        self.hosts[host].clear(gpu)

    def watch_processes(self, hosts: Collection[str]) -> None:
        """List the processes of exactly `hosts` in every sample (a screen shows them), and
        of every other host in its slow samples only: only hosts on screen pay for it.
        Names the monitor does not know are ignored (collect/watch.py)."""
        wanted = set(hosts)
        for name, runtime in self.hosts.items():
            runtime.watch_processes(name in wanted)

    def settled(self) -> bool:
        """Every host has answered (sampled) or failed: what `gputui report` waits for."""
        return all(rt.answered for rt in self.hosts.values())
