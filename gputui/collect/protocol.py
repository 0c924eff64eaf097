"""Decoding the agent's JSON-lines stream (docs/protocol.md) into core.model types.

A bad line never stops a stream: it is counted and the first and last problems kept, so the
host's state can say "12 lines not understood; first: ..." while good lines keep flowing. What
counts as bad: not JSON or not a message (`malformed`), a value outside its plausible bounds
(`invalid`, naming the field: core/model.py declares the bounds), another protocol version
(`wrong_version`), a line over the length limit (`too_long`).

Every string in a message is host text: it leaves the decoder without control characters or
bidi overrides (core/text.py), so no later code can write a host's escape sequence to the
operator's terminal.

The nvidia-smi path builds its messages in this process (smi_adapter.py): they skip the JSON
round trip but not the checks. `convert_message()` validates them against the same structs and
bounds, and `StreamDecoder.accept()` counts them as `decode()` counts a line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from gputui.core.model import PROTOCOL_VERSION, AgentMessage
from gputui.core.text import plain

# 1 MiB: a sample of 8 GPUs with processes is ~3 KiB. The collector's one line limit: the
# LineSplitter (lines.py) drops a longer line before it is ever joined, and StreamDecoder refuses
# one from callers that hand it lines without splitting (tests, benchmarks). The agent writes
# to the same limit from its own copy (gputui/agent/stream.py), since it imports nothing of
# gputui; a test keeps the two equal.
MAX_LINE_BYTES = 1 << 20
PROBLEM_CHARS = 200  # a problem quoted in a reason is cut here

# Byte patterns that can start a character `plain()` removes, as they appear in a JSON line:
# any \u escape (a control character inside a JSON string must be written as one), DEL, a C1
# control or U+061C in UTF-8, and the UTF-8 lead bytes of the U+200E..U+206F block. A line with
# none of them (every sample of an agent, which writes ASCII) is decoded straight into structs.
_SUSPECT = (b"\\u", b"\x7f", b"\xc2", b"\xd8\x9c", b"\xe2\x80", b"\xe2\x81")


@dataclass(frozen=True)
class Refused:
    """What a message built in this process became when it failed validation."""

    kind: str  # "invalid" or "malformed", as DecodeStats counts them
    problem: str
    version: int | None = None  # the protocol version it said it speaks, if it said one


class _Peek(msgspec.Struct):
    """The envelope of a line that did not decode: is it another protocol version?"""

    v: Any = None


class DecodeStats:
    """Counts of what a decoder saw, for the host's state line and the benchmarks."""

    __slots__ = (
        "first_problem",
        "good",
        "invalid",
        "last_problem",
        "malformed",
        "other_version",
        "too_long",
        "wrong_version",
    )

    def __init__(self) -> None:
        self.good = 0
        self.malformed = 0
        self.invalid = 0
        self.too_long = 0
        self.wrong_version = 0
        self.other_version: int | None = None  # the version a wrong-version line spoke
        self.first_problem = ""
        self.last_problem = ""

    @property
    def bad(self) -> int:
        return self.malformed + self.invalid + self.too_long + self.wrong_version

    def problem(self, text: str) -> None:
        text = plain(text, PROBLEM_CHARS)
        if not self.first_problem:
            self.first_problem = text
        self.last_problem = text

    def line_too_long(self, length: int, limit: int) -> None:
        self.too_long += 1
        self.problem(f"line of {length} bytes over the {limit} limit, dropped")


class StreamDecoder:
    """Turns lines of one agent stream into messages; never raises on bad input."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._decoder: msgspec.json.Decoder[AgentMessage] = msgspec.json.Decoder(AgentMessage)
        self.max_line_bytes = max_line_bytes
        self.stats = DecodeStats()

    def too_long(self, length: int) -> None:
        """Count a line of `length` bytes dropped for the limit, by a splitter or by decode():
        the one place an over-long line is recorded, so every source reports it alike."""
        self.stats.line_too_long(length, self.max_line_bytes)

    def decode(self, line: bytes | str) -> AgentMessage | None:
        """The message on `line`, or None (counted in `stats`) when it is not a valid one."""
        # A line from a LineSplitter is within the limit already; this catches the rest.
        if len(line) > self.max_line_bytes:
            self.too_long(len(line))
            return None
        if not line.strip():
            return None  # blank lines (a final empty read) are not an error
        raw = line.encode("utf-8", "replace") if isinstance(line, str) else line
        try:
            if any(p in raw for p in _SUSPECT):
                msg = _decode_sanitised(raw)
            else:
                msg = self._decoder.decode(raw)
        except msgspec.ValidationError as exc:
            self._not_understood(raw, *_refusal(exc))
            return None
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            self._not_understood(raw, "malformed", f"malformed line: {exc}")
            return None
        return self._checked(msg)

    def accept(self, made: AgentMessage | Refused) -> AgentMessage | None:
        """A message built in this process (see convert_message), counted as decode() counts
        a line: the message when it is good, None (counted in `stats`) when not."""
        if isinstance(made, Refused):
            self._count_refused(made.version, made.kind, made.problem)
            return None
        return self._checked(made)

    def _checked(self, msg: AgentMessage) -> AgentMessage | None:
        if msg.v != PROTOCOL_VERSION:
            self._wrong_version(msg.v)
            return None
        self.stats.good += 1
        return msg

    def _not_understood(self, raw: bytes, kind: str, problem: str) -> None:
        self._count_refused(_peek_version(raw), kind, problem)

    def _count_refused(self, version: int | None, kind: str, problem: str) -> None:
        # Another protocol version fails to decode as this one: say so, not "malformed".
        if version is not None and version != PROTOCOL_VERSION:
            self._wrong_version(version)
            return
        if kind == "invalid":
            self.stats.invalid += 1
        else:
            self.stats.malformed += 1
        self.stats.problem(problem)

    def _wrong_version(self, version: int) -> None:
        self.stats.wrong_version += 1
        self.stats.other_version = version
        self.stats.problem(version_mismatch(version))


def version_mismatch(version: int) -> str:
    return f"agent speaks protocol v{version}, this gputui speaks v{PROTOCOL_VERSION}"


def convert_message(obj: Mapping[str, Any]) -> AgentMessage | Refused:
    """A protocol message built in this process as a dict (what the agent would have written
    as a line), typed and validated exactly as a decoded line: same structs, same bounds, host
    text stripped of control characters. No JSON encoding or decoding on the way."""
    try:
        msg: AgentMessage = msgspec.convert(_sanitise(obj), AgentMessage)
    except msgspec.ValidationError as exc:
        v = obj.get("v")
        version = v if isinstance(v, int) and not isinstance(v, bool) else None
        return Refused(*_refusal(exc), version=version)
    return msg


def _refusal(exc: msgspec.ValidationError) -> tuple[str, str]:
    """The kind of a validation failure and its problem text, as DecodeStats counts them."""
    if _out_of_bounds(exc):
        return "invalid", f"implausible value: {exc}"
    return "malformed", f"not a protocol message: {exc}"


def _out_of_bounds(exc: msgspec.ValidationError) -> bool:
    """Whether msgspec refused a value for its bounds (not for its type or a missing field)."""
    text = str(exc)
    return "out of range" in text or any(op in text for op in ("` >", "` <"))


def _peek_version(raw: bytes) -> int | None:
    try:
        v = msgspec.json.decode(raw, type=_Peek).v
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _decode_sanitised(raw: bytes) -> AgentMessage:
    """The slow path for a line that may carry control characters: strip them from every
    string, then validate into the message types exactly as the fast path would."""
    obj = msgspec.json.decode(raw)
    msg: AgentMessage = msgspec.convert(_sanitise(obj), AgentMessage)
    return msg


def _sanitise(obj: object) -> object:
    if isinstance(obj, str):
        return plain(obj)
    if isinstance(obj, dict):
        return {plain(k) if isinstance(k, str) else k: _sanitise(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_sanitise(v) for v in obj]
    return obj
