"""The monitor of the UI process over collector worker processes.

It fits what the app and the headless commands use of FleetMonitor (gputui/tui/ports.py
MonitorPort, and `snapshot()`, `publish()`, `settled()`, `set_in_place_of()`), but never reads
a stream: each worker (link.py) owns a shard of the hosts and sends deltas; this merges them
into one FleetSnapshot per tick in the configured order, keeps each host's history rings and
the event log, and applies the job-level straggler rule over the whole fleet, which no worker
sees. When a worker fails, its hosts show `reconnecting` with the reason and keep their last
readings until its replacement streams; the others are untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence

import msgspec
import numpy as np

from gputui.collect.event_log import EventLog
from gputui.collect.history import HostHistory, Metric, history_len_for
from gputui.collect.monitor import FIRST_LOOK_S, URGENT_MIN_SPACING_S
from gputui.collect.recipes import HostRecipe
from gputui.collect.subscription import Subscribers
from gputui.collect.tick import tick_for
from gputui.collect.workers.frames import (
    Clear,
    Command,
    Delta,
    FrameError,
    InPlaceOf,
    MarkFailed,
    Points,
    Start,
    Watch,
)
from gputui.collect.workers.link import WORKER_ARGV, WorkerLink
from gputui.config import SshSettings
from gputui.core.health import Thresholds
from gputui.core.job_straggler import JobStragglerRule
from gputui.core.model import (
    FleetEvent,
    FleetSnapshot,
    Hello,
    HostSnapshot,
    HostState,
    Level,
    Sample,
)

#: Points a worker's rings hold between two frames: many ticks of the fastest host.
WORKER_RING = 64
# Past this many ticks without every worker's frame, the monitor publishes what it has: a late
# or restarting worker holds the others back by a quarter of a tick at most.
_LATE = 1.25


class WorkerHost:
    """One host in the UI process: its latest snapshot from its worker, its history rings,
    and the operator's marks (kept here too, so a replacement worker gets them back)."""

    def __init__(self, recipe: HostRecipe, clock: Callable[[], float]) -> None:
        self.name = recipe.name
        self.latest = HostSnapshot(
            name=recipe.name,
            state=HostState.CONNECTING,
            state_reason="starting",
            reason_since=clock(),
            labels=dict(recipe.labels),
            spare=recipe.spare,
        )
        self.history: HostHistory | None = None
        self._ring_gpus: tuple[str, ...] | None = None  # the GPUs (uuids) the rings are of
        self.answered = False
        # Why its worker failed, until the replacement's stream of it gets past connecting.
        self.worker_failed: str | None = None
        self.marked_failed = False
        self.in_place_of: str | None = None
        self._shown: tuple[HostSnapshot, HostSnapshot] | None = None  # latest, with the marks
        # The hello and slow sample its worker sent last (whether or not `update` took them):
        # what a snapshot sent without them stands for.
        self._wire_hello: Hello | None = None
        self._wire_slow: Sample | None = None

    def snapshot(self) -> HostSnapshot:
        """The latest snapshot with the operator's marks as they are now (a mark shows at the
        next publish, without waiting for the worker to echo it)."""
        latest = self.latest
        if latest.marked_failed == self.marked_failed and latest.in_place_of == self.in_place_of:
            return latest
        shown = self._shown
        if (
            shown is not None
            and shown[0] is latest
            and (
                shown[1].marked_failed,
                shown[1].in_place_of,
            )
            == (self.marked_failed, self.in_place_of)
        ):
            return shown[1]
        merged = msgspec.structs.replace(
            latest, marked_failed=self.marked_failed, in_place_of=self.in_place_of
        )
        self._shown = (latest, merged)
        return merged

    def receive(self, snap: HostSnapshot, same_hello: bool, same_slow: bool) -> None:
        """A snapshot off the wire: one sent without its hello or slow sample (the worker's
        previous ones, frames.Delta) gets them back before it is the host's."""
        if same_hello or same_slow:
            snap = msgspec.structs.replace(
                snap,
                hello=self._wire_hello if same_hello else snap.hello,
                slow_sample=self._wire_slow if same_slow else snap.slow_sample,
            )
        self._wire_hello, self._wire_slow = snap.hello, snap.slow_sample
        self.update(snap)

    def update(self, snap: HostSnapshot) -> None:
        """The worker's newest snapshot of this host. After a worker failed, its replacement's
        first snapshots (connecting, no readings yet) do not replace the host's last values
        and the reason: it stays `reconnecting` until its stream gets somewhere."""
        if self.worker_failed is not None:
            if snap.state is HostState.CONNECTING:
                return
            self.worker_failed = None
        self.latest = _same_parts_kept(self.latest, snap)

    def add_points(self, points: Points, capacity: int) -> None:
        if points.new_ring:
            gpus = tuple(g.uuid for g in points.gpus)
            if self.history is None or gpus != self._ring_gpus:
                # Another set of GPUs: a fresh ring, as the in-process runtime makes one. The
                # same GPUs (a replacement worker, a reconnect) keep their history.
                self.history = HostHistory(points.gpus, capacity)
                self._ring_gpus = gpus
        ring = self.history
        if ring is None or not points.times:
            return
        n = len(points.times)
        rows = ring.values.shape[0]
        values = np.frombuffer(points.values, dtype=np.float32)
        if values.size != rows * len(Metric) * n:
            raise FrameError(
                f"a frame's history points for host {self.name!r} do not fit its {rows} GPUs"
            )
        ring.extend(
            np.asarray(points.times, dtype=np.float64), values.reshape(rows, len(Metric), n)
        )


def _same_parts_kept(old: HostSnapshot, new: HostSnapshot) -> HostSnapshot:
    """`new`, with `old`'s hello and slow sample where the new ones are the same.

    A frame leaves out a hello or slow sample its worker sent before (`receive` puts the
    parent's copy back), but a replacement worker's first frames, or a reconnect that reads
    the same inventory again, bring equal ones anew. Kept as the same objects, as the
    in-process monitor hands them over, the caches that go by identity (the job straggler
    rule's attributions and GPU models) hold across ticks, and the app lets go of fewer
    objects each tick (at 3,000 hosts the rule redid every host's attribution each tick).
    """
    hello = new.hello
    if hello is not None and hello is not old.hello and hello == old.hello:
        hello = old.hello
    # The worker's runtime replaces its slow sample only with a new slow_sample_t or, for a
    # screen's process lists, processes_t: the same times, the same slow sample (comparing
    # the samples themselves cost more than all the rest of a host's update).
    slow = new.slow_sample
    if (
        slow is not None
        and old.slow_sample is not None
        and slow is not old.slow_sample
        and new.slow_sample_t == old.slow_sample_t
        and new.processes_t == old.processes_t
    ):
        slow = old.slow_sample
    if hello is new.hello and slow is new.slow_sample:
        return new
    return msgspec.structs.replace(new, hello=hello, slow_sample=slow)


class WorkerMonitor:
    """Collects `recipes` in `workers` worker processes; `async with` starts and stops them.

    Ticks as FleetMonitor does (tick.py) unless `tick_s` is given; each host keeps
    `history_len` points (None: what the fleet's size allows, 0: none)."""

    def __init__(
        self,
        recipes: Sequence[HostRecipe],
        workers: int,
        *,
        ssh: SshSettings | None = None,
        thresholds: Thresholds | None = None,
        tick_s: float | None = None,
        history_len: int | None = None,
        clock: Callable[[], float] = time.time,
        closers: Sequence[Callable[[], Awaitable[None]]] = (),
        worker_argv: Sequence[str] = WORKER_ARGV,
    ) -> None:
        if workers < 1:
            raise ValueError("a monitor over worker processes needs at least one worker")
        recipes = list(recipes)
        self.tick_s = tick_s if tick_s is not None else tick_for(r.interval_s for r in recipes)
        self.history_len = history_len if history_len is not None else history_len_for(len(recipes))
        self._clock = clock
        self._closers = list(closers)
        self.hosts: dict[str, WorkerHost] = {}
        for recipe in recipes:
            if recipe.name in self.hosts:
                raise ValueError(f"host {recipe.name} listed twice")
            self.hosts[recipe.name] = WorkerHost(recipe, clock)
        self._log = EventLog()
        self.events = self._log.entries
        self._new_events: list[FleetEvent] = []
        self._job_stragglers = JobStragglerRule(thresholds)
        self._subs = Subscribers()
        self._latest: FleetSnapshot | None = None
        self._closed = False
        self._watched: list[str] = []
        self._wake = asyncio.Event()
        self._urgent = False
        self._last_publish = 0.0
        self._fresh: set[int] = set()  # workers heard from since the last publish
        self._ticker: asyncio.Task[None] | None = None
        n = min(workers, len(recipes)) or 1
        per = -(-len(recipes) // n)  # contiguous shards: a group stays together
        shards = [recipes[i : i + per] for i in range(0, len(recipes), per)] or [[]]
        self.links = [
            WorkerLink(
                number,
                Start(
                    worker=number,
                    hosts=shard,
                    ssh=ssh,
                    thresholds=thresholds,
                    tick_s=self.tick_s,
                    history_len=WORKER_RING if self.history_len > 0 else 0,
                ),
                on_delta=self._on_delta,
                on_failure=self._on_failure,
                replay=self._replay,
                argv=worker_argv,
            )
            for number, shard in enumerate(shards, 1)
        ]
        self._link_of = {name: link for link in self.links for name in link.hosts}

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> WorkerMonitor:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start(self) -> None:
        for link in self.links:
            link.begin()
        self._ticker = asyncio.create_task(self._tick(), name="gputui-tick")

    async def stop(self) -> None:
        """Stop every worker (each closes its connections, ending their agents) and wait."""
        if self._closed:
            return
        self._closed = True
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await asyncio.gather(*(link.close() for link in self.links), return_exceptions=True)
        for close in self._closers:  # shared resources (the demo's servers)
            with contextlib.suppress(Exception):
                await close()
        self._subs.wake_all()

    # -- what the workers send ---------------------------------------------------------------

    def _on_delta(self, link: WorkerLink, delta: Delta) -> None:
        hosts = self.hosts
        same_hello, same_slow = set(delta.same_hello), set(delta.same_slow)
        for snap in delta.hosts:
            hosts[snap.name].receive(snap, snap.name in same_hello, snap.name in same_slow)
        for points in delta.points:
            hosts[points.host].add_points(points, self.history_len)
        for name in delta.answered:
            if name in hosts:
                hosts[name].answered = True
        for event in delta.events:
            self._new_events.append(self._log.add(event))
        self._fresh.add(link.number)
        if delta.urgent:
            self._urgent = True
            self._wake.set()
        elif len(self._fresh) >= sum(1 for k in self.links if k.streaming):
            self._wake.set()  # every running worker has ticked: publish their tick now

    def _on_failure(self, link: WorkerLink, why: str) -> None:
        """Every host of the failed worker shows why, keeping its last readings."""
        now = self._clock()
        for name in sorted(link.hosts, key=list(self.hosts).index):
            host = self.hosts[name]
            host.worker_failed = why
            old = host.latest
            host.latest = msgspec.structs.replace(
                old, state=HostState.RECONNECTING, state_reason=why, reason_since=now
            )
            if old.state is not HostState.RECONNECTING:
                text = f"{old.state.value} -> {HostState.RECONNECTING.value}: {why}"
                self._new_events.append(
                    self._log.add(
                        FleetEvent(t=now, host=name, kind="state", text=text, level=Level.WARN)
                    )
                )
        self._fresh.discard(link.number)
        self._urgent = True  # a shard lost from view is shown at once
        self._wake.set()

    def _replay(self) -> list[Command]:
        """What a new worker must be told: the operator's marks and the watched hosts."""
        commands: list[Command] = []
        for host in self.hosts.values():
            if host.marked_failed:
                commands.append(MarkFailed(host=host.name, marked=True))
            if host.in_place_of is not None:
                commands.append(InPlaceOf(host=host.name, node=host.in_place_of))
        if self._watched:
            commands.append(Watch(hosts=list(self._watched)))
        return commands

    # -- ticks --------------------------------------------------------------------------------

    async def _tick(self) -> None:
        """Publish when every streaming worker has sent its tick's frame, at once for an
        urgent one (at most one every URGENT_MIN_SPACING_S), and on a timer when a worker is
        late or none streams yet."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.tick_s
        while not self.settled() and not self._wake.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(FIRST_LOOK_S)
        self._wake.clear()
        self.publish()
        while True:
            timer = loop.call_later(self.tick_s * _LATE, self._wake.set)
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
            self.publish()

    def check_stale(self) -> None:
        """Staleness is judged where the streams are read: each worker judges its hosts at
        every tick of its own, and its frame of that tick carries the result here."""

    def publish(self) -> FleetSnapshot:
        """Merge the workers' latest host snapshots now and hand them to every subscriber."""
        now = self._clock()
        hosts = tuple(h.snapshot() for h in self.hosts.values())
        hosts, job_events = self._job_stragglers.apply(hosts, now)
        for event in job_events:
            self._new_events.append(self._log.add(event))
        snap = FleetSnapshot(t=now, hosts=hosts, events=tuple(self._new_events))
        self._new_events = []
        self._fresh.clear()
        self._latest = snap
        self._last_publish = time.monotonic()
        self._subs.offer(snap)
        return snap

    def snapshot(self) -> FleetSnapshot:
        """The most recent snapshot (built now if none was published yet)."""
        return self._latest if self._latest is not None else self.publish()

    async def snapshots(self) -> AsyncIterator[FleetSnapshot]:
        """Every published snapshot, newest-wins; the newest first when one was published."""
        async for snap in self._subs.stream(self._latest, self.events, lambda: self._closed):
            yield snap

    def settled(self) -> bool:
        """Every host has answered (sampled) or failed: what `gputui report` waits for."""
        return all(h.answered for h in self.hosts.values())

    # -- operator -----------------------------------------------------------------------------

    def set_marked_failed(self, host: str, marked: bool) -> None:
        self.hosts[host].marked_failed = marked
        self._link_of[host].send(MarkFailed(host=host, marked=marked))

    def set_in_place_of(self, host: str, node: str | None) -> None:
        self.hosts[host].in_place_of = node
        self._link_of[host].send(InPlaceOf(host=host, node=node))

    def clear(self, host: str, gpu: int | None = None) -> None:
        self._link_of[host].send(Clear(host=host, gpu=gpu))

    def watch_processes(self, hosts: Collection[str]) -> None:
        """List the processes of exactly `hosts` in every sample; names not known are
        ignored. Every worker is told (each keeps its own hosts of the list)."""
        self._watched = [name for name in hosts if name in self.hosts]
        for link in self.links:
            link.send(Watch(hosts=[n for n in self._watched if n in link.hosts]))
