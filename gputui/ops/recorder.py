"""Writes what the monitor sees into the journal: faults as they happen, exposure in batches.

    recorder = JournalRecorder(journal, monitor)
    task = asyncio.create_task(recorder.run())   # until the monitor stops or the task is cancelled

Faults: every XID, double-bit ECC, lost-GPU and reset-required event, and every GPU verdict
that turns critical or failed (and its return below critical, which ends the fault episode).
Events carry the GPU's uuid, taken from the host's inventory when the agent did not attribute
one, so one GPU is one key whatever reported it.

Exposure: GPU-hours while a host streams and is not marked failed, accumulated in memory per
(node, clock hour) and written every `flush_every_s` and when the recorder stops: one small
transaction a minute instead of one per tick. A gap between snapshots longer than `max_gap_s`
(a suspended laptop, a stalled loop) counts nothing: gputui was not watching then.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from gputui.collect.live import LiveMonitor
from gputui.core.model import FleetEvent, FleetSnapshot, HostSnapshot, HostState, Level
from gputui.ops.journal import Journal
from gputui.ops.records import EVENT_FAULT_KINDS, Fault

DEFAULT_FLUSH_EVERY_S = 60.0
DEFAULT_MAX_GAP_S = 30.0
_WATCHED = (HostState.STREAMING, HostState.DEGRADED)


class JournalRecorder:
    def __init__(
        self,
        journal: Journal,
        monitor: LiveMonitor | None = None,
        *,
        flush_every_s: float = DEFAULT_FLUSH_EVERY_S,
        max_gap_s: float = DEFAULT_MAX_GAP_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.journal = journal
        self.monitor = monitor
        self.flush_every_s = flush_every_s
        self.max_gap_s = max_gap_s
        self._clock = clock
        self._last_flush = clock()
        self._last_t: float | None = None
        self._pending: dict[tuple[str, int], float] = {}
        self._levels: dict[tuple[str, int], Level] = {}
        self._marked: set[str] = set()

    async def run(self) -> None:
        """Record every snapshot of the monitor until it stops; flush on the way out."""
        assert self.monitor is not None, "run() needs the monitor to subscribe to"
        self.sync_marks()
        try:
            async for snap in self.monitor.snapshots():
                self.observe(snap)
                if self._clock() - self._last_flush >= self.flush_every_s:
                    await asyncio.to_thread(self.flush)
                    self.sync_marks()
        finally:
            # Also on cancellation: exposure seen so far is not thrown away.
            with contextlib.suppress(Exception):
                self.flush()

    def sync_marks(self) -> None:
        """Take marks made by other processes (a CLI `node fail`) into the monitor."""
        self._marked = self.journal.marked_failed()
        in_service = self.journal.spares_in_service()
        if self.monitor is not None:
            for name in self.monitor.hosts:
                self.monitor.set_marked_failed(name, name in self._marked)
                self.monitor.set_in_place_of(name, in_service.get(name))

    def observe(self, snap: FleetSnapshot) -> None:
        """Fold one snapshot in: faults are written now, exposure is kept for the next flush."""
        hosts = {h.name: h for h in snap.hosts}
        faults = [f for ev in snap.events if (f := self._event_fault(ev, hosts)) is not None]
        for host in snap.hosts:
            faults += self._verdict_faults(host, snap.t)
        if faults:
            self.journal.record_faults(faults)
        self._add_exposure(snap)

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        self._last_flush = self._clock()
        self.journal.add_exposure(pending)

    # -- faults -------------------------------------------------------------------------------

    @staticmethod
    def _event_fault(ev: FleetEvent, hosts: dict[str, HostSnapshot]) -> Fault | None:
        if ev.kind not in EVENT_FAULT_KINDS:
            return None
        uuid = ev.uuid or _uuid_of(hosts.get(ev.host), ev.gpu)
        return Fault(
            t=ev.t,
            node=ev.host,
            kind=ev.kind,
            level=int(ev.level),
            gpu=ev.gpu,
            uuid=uuid,
            xid=ev.xid,
            text=ev.text,
        )

    def _verdict_faults(self, host: HostSnapshot, t: float) -> list[Fault]:
        out: list[Fault] = []
        for index, verdict in host.verdict.gpus.items():
            key = (host.name, index)
            level = verdict.level
            if level is Level.UNKNOWN:
                continue  # no readings is not a recovery
            before = self._levels.get(key, Level.OK)
            self._levels[key] = level
            if level >= Level.CRITICAL and level > before:
                kind, text = "verdict", verdict.worst.text if verdict.worst else level.label
            elif before >= Level.CRITICAL > level:
                kind, text = "recovered", f"{before.label} -> {level.label}"
            else:
                continue
            out.append(
                Fault(
                    t=t,
                    node=host.name,
                    kind=kind,
                    level=int(level),
                    gpu=index,
                    uuid=_uuid_of(host, index),
                    text=text,
                )
            )
        return out

    # -- exposure -----------------------------------------------------------------------------

    def _add_exposure(self, snap: FleetSnapshot) -> None:
        last, self._last_t = self._last_t, snap.t
        if last is None:
            return
        dt = snap.t - last
        if dt <= 0 or dt > self.max_gap_s:
            return
        hour = int(snap.t // 3600)
        for host in snap.hosts:
            if host.state not in _WATCHED or host.hello is None or not host.hello.gpus:
                continue
            if host.marked_failed or host.name in self._marked:
                continue  # taken out of service: its hours are not exposure
            key = (host.name, hour)
            self._pending[key] = self._pending.get(key, 0.0) + len(host.hello.gpus) * dt / 3600


def _uuid_of(host: HostSnapshot | None, index: int | None) -> str | None:
    if host is None or host.hello is None or index is None:
        return None
    return next((g.uuid for g in host.hello.gpus if g.index == index), None)
