"""What the commands, the journal recorder and the operator's actions use of a running
monitor: the in-process FleetMonitor and the monitor over worker processes
(gputui/collect/workers/monitor.py) both fit it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from gputui.core.model import FleetEvent, FleetSnapshot

if TYPE_CHECKING:  # numpy, which the rings are made of, loads only where history is kept
    from gputui.collect.history import HostHistory


class LiveHost(Protocol):
    """A host as a monitor's readers see it: its history rings (None before its hello)."""

    @property
    def history(self) -> HostHistory | None: ...


class LiveMonitor(Protocol):
    @property
    def tick_s(self) -> float: ...

    @property
    def hosts(self) -> Mapping[str, LiveHost]: ...

    @property
    def events(self) -> Sequence[FleetEvent]: ...

    def check_stale(self) -> None:
        """Judge every host's staleness now, as each tick does."""
        ...

    def publish(self) -> FleetSnapshot:
        """Build the snapshot now and hand it to every subscriber."""
        ...

    def snapshot(self) -> FleetSnapshot:
        """The most recent snapshot (built now if none was published yet)."""
        ...

    def snapshots(self) -> AsyncIterator[FleetSnapshot]: ...

    def settled(self) -> bool:
        """Every host has answered (sampled) or failed."""
        ...

    def set_marked_failed(self, host: str, marked: bool) -> None: ...

    def set_in_place_of(self, host: str, node: str | None) -> None: ...

    def clear(self, host: str, gpu: int | None = None) -> None: ...

    def watch_processes(self, hosts: Collection[str]) -> None: ...

    async def stop(self) -> None: ...
