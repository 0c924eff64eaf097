"""The monitor's lifetime beside the app's: opened after the screen is up, closed on quit.

The session runs in its own asyncio task on the app's loop (the monitor's work per tick is
small), not as a Textual worker: Textual cancels workers without waiting when an app ends, and
the monitor must be closed for certain, since closing it is what ends every remote agent. The
command line awaits `close()` after the app returns, whatever made it return.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from gputui.core.model import FleetSnapshot
from gputui.tui.ports import MonitorFactory, MonitorPort

Deliver = Callable[[FleetSnapshot], Awaitable[None]]
OnError = Callable[[BaseException], None]


class MonitorSession:
    def __init__(self, factory: MonitorFactory) -> None:
        self._factory = factory
        self.monitor: MonitorPort | None = None
        self.error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._delivering = False

    @property
    def closing(self) -> bool:
        return self._closing

    def start(self, deliver: Deliver, on_error: OnError) -> None:
        """Open the monitor and hand each snapshot to `deliver`, which applies it."""
        if self._task is None and not self._closing:
            self._task = asyncio.create_task(self._run(deliver, on_error), name="gputui-session")

    async def _run(self, deliver: Deliver, on_error: OnError) -> None:
        try:
            async with self._factory() as monitor:
                self.monitor = monitor
                if self._closing:
                    return
                # `deliver` returns once the snapshot is on screen, so a slow screen takes
                # the newest snapshot next (the monitor keeps the events of skipped ones).
                async for snapshot in monitor.snapshots():
                    self._delivering = True
                    try:
                        await deliver(snapshot)
                    finally:
                        self._delivering = False
                    if self._closing:
                        break
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a fleet that cannot start: shown in the app, not a traceback
            self.error = exc
            on_error(exc)

    async def close(self) -> None:
        """Stop the monitor (its connections, so the agents) and wait until it is closed."""
        self._closing = True
        monitor, task = self.monitor, self._task
        if monitor is not None:
            await monitor.stop()
            if task is not None and self._delivering:
                # Waiting on a screen that is gone; the context managers' exits still run.
                task.cancel()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
