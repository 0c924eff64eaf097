"""Decoding the agent's JSON-lines stream (docs/protocol.md) into core.model types.

A bad line never stops a stream: it is counted and the last problem kept, so the host's state
can say "12 malformed lines, last: ..." while good lines keep flowing.
"""

from __future__ import annotations

import msgspec

from gputui.core.model import PROTOCOL_VERSION, AgentMessage

MAX_LINE_BYTES = 1 << 20  # 1 MiB: a sample of 8 GPUs with processes is ~3 KiB


class DecodeStats:
    """Counts of what a decoder saw, for the host's state line and the benchmarks."""

    __slots__ = ("good", "last_problem", "malformed", "too_long", "wrong_version")

    def __init__(self) -> None:
        self.good = 0
        self.malformed = 0
        self.too_long = 0
        self.wrong_version = 0
        self.last_problem = ""

    @property
    def bad(self) -> int:
        return self.malformed + self.too_long + self.wrong_version


class StreamDecoder:
    """Turns lines of one agent stream into messages; never raises on bad input."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._decoder: msgspec.json.Decoder[AgentMessage] = msgspec.json.Decoder(AgentMessage)
        self.max_line_bytes = max_line_bytes
        self.stats = DecodeStats()

    def decode(self, line: bytes | str) -> AgentMessage | None:
        """The message on `line`, or None (counted in `stats`) when it is not a valid one."""
        if len(line) > self.max_line_bytes:
            self.stats.too_long += 1
            self.stats.last_problem = (
                f"line of {len(line)} bytes over the {self.max_line_bytes} limit"
            )
            return None
        if not line.strip():
            return None  # blank lines (a final empty read) are not an error
        try:
            msg = self._decoder.decode(line)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            self.stats.malformed += 1
            self.stats.last_problem = f"malformed line: {exc}"
            return None
        if msg.v != PROTOCOL_VERSION:
            self.stats.wrong_version += 1
            self.stats.last_problem = f"protocol version {msg.v}, expected {PROTOCOL_VERSION}"
            return None
        self.stats.good += 1
        return msg
