"""Hosts without Python: nvidia-smi's CSV stream turned into protocol lines.

The collector runs the agent package's `session_command()` over SSH and hands every output line
to the agent package's `SmiSession`, which produces the same protocol messages the agent
would; they are re-encoded and fed to the host runtime through the normal decoder, so a
degraded host takes exactly the path of any other.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from gputui.agent.smi_parse import SmiSession


class SmiLineAdapter:
    """A line sink that maps nvidia-smi output to protocol lines for `on_line`."""

    def __init__(
        self,
        host: str,
        interval_s: float,
        on_line: Callable[[bytes], None],
        on_too_long: Callable[[int], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = SmiSession(host, interval_s)
        self._on_line = on_line
        self.on_too_long = on_too_long
        self._clock = clock

    def _emit(self, messages: list[dict[str, object]]) -> None:
        for msg in messages:
            self._on_line(json.dumps(msg, separators=(",", ":")).encode())

    def on_line(self, line: bytes) -> None:
        self._emit(self._session.feed(line.decode("utf-8", "replace"), self._clock()))

    def poll(self) -> None:
        """Called about once per interval: completes a sample whose last GPU line is late."""
        self._emit(self._session.poll(self._clock()))

    def end(self, exit_status: int | None, last_stderr: str) -> None:
        self._emit(self._session.end(self._clock(), exit_status, last_stderr))
