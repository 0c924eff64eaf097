"""Hosts without Python: nvidia-smi's CSV stream turned into protocol messages.

The collector runs the agent package's `session_command()` over SSH and hands every output line
to the agent package's `SmiSession`, which produces the same protocol messages the agent
would. They are built in this process, so they go to the host runtime as typed messages
(protocol.convert_message: the same structs and bounds as a decoded line, without encoding them
to JSON and decoding them again); a degraded host still takes the path of any other.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gputui.agent.smi_parse import SmiSession
from gputui.collect.protocol import Refused, convert_message
from gputui.core.model import AgentMessage


class SmiLineAdapter:
    """A line sink that maps nvidia-smi output to typed messages for `on_message`."""

    def __init__(
        self,
        host: str,
        interval_s: float,
        on_message: Callable[[AgentMessage | Refused], None],
        on_too_long: Callable[[int], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = SmiSession(host, interval_s)
        self._on_message = on_message
        self.on_too_long = on_too_long
        self._clock = clock

    def _emit(self, messages: list[dict[str, object]]) -> None:
        for msg in messages:
            self._on_message(convert_message(msg))

    def on_line(self, line: bytes) -> None:
        self._emit(self._session.feed(line.decode("utf-8", "replace"), self._clock()))

    def poll(self) -> None:
        """Called about once per interval: completes a sample whose last GPU line is late."""
        self._emit(self._session.poll(self._clock()))

    def end(self, exit_status: int | None, last_stderr: str) -> None:
        self._emit(self._session.end(self._clock(), exit_status, last_stderr))
