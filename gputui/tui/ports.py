"""What the app needs from the collector, as a small protocol.

The app is written against `MonitorPort`, not `FleetMonitor`, so that tests and benchmarks can
drive it with scripted snapshots (no SSH, no clock) and the app can never reach into the
connections behind the monitor: data moves one way, from the monitor to the widgets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from gputui.collect.history import HostHistory
from gputui.core.model import FleetEvent, FleetSnapshot


class HasHistory(Protocol):
    """A host's runtime as far as the app reads it: its history rings (None before hello)."""

    @property
    def history(self) -> HostHistory | None: ...


class MonitorPort(Protocol):
    """The running monitor as the app sees it (gputui.collect.monitor.FleetMonitor fits)."""

    @property
    def hosts(self) -> Mapping[str, HasHistory]: ...

    @property
    def events(self) -> Sequence[FleetEvent]: ...

    def snapshots(self) -> AsyncIterator[FleetSnapshot]:
        """Published snapshots, newest-wins; events of skipped snapshots are carried over."""
        ...

    def set_marked_failed(self, host: str, marked: bool) -> None: ...

    def clear(self, host: str, gpu: int | None = None) -> None: ...

    def watch_processes(self, hosts: Collection[str]) -> None:
        """List the processes of exactly `hosts` in every sample (a screen shows them), the
        others' in slow samples only (gputui/collect/watch.py)."""
        ...

    async def stop(self) -> None:
        """Close every connection (their agents exit with them); idempotent."""
        ...


#: Opens the monitor when the app starts and closes it when the app quits. The app opens it
#: itself (rather than being handed a running one) so the screen is up before the first
#: connection is made: starting the demo fleet takes seconds. A fleet of local agents costs the
#: screen nothing to start: the command line opens it first and this hands it over
#: (gputui/cli/tui_cmd.py), so the agents start while the app loads.
MonitorFactory = Callable[[], AbstractAsyncContextManager[MonitorPort]]
