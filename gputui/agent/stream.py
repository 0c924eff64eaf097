"""The agent's two ends of the channel: JSON lines out; requests and end-of-input in.

Over SSH the channel is the agent's only tie to the collector. When it dies, the agent must
die with it (no orphans on GPU hosts), so both ends count as "stop": stdout refusing a write
(BrokenPipe) and stdin reaching EOF (the collector's side closed). Stdin is watched by a daemon
thread so the agent notices within one blocking read, not at its next write.

What the collector writes on stdin after the agent's hello are requests, one JSON line each
(docs/protocol.md, "Requests"); `Requests` keeps what they asked. A line that is not a request
this agent knows is ignored: a newer collector may ask for more than an older agent can do.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import threading
import time
from typing import IO, Any, Callable

from . import PROTOCOL_VERSION
from .backend import Json

# The collector drops a longer line (docs/protocol.md). A copy of its MAX_LINE_BYTES
# (gputui/collect/protocol.py), not an import: the agent runs alone on the GPU host and imports
# nothing of gputui. tests/test_agent_protocol.py keeps the two equal.
MAX_LINE_BYTES = 1 << 20


def _prune(value: Any) -> Any:
    """`value` without None entries in its dicts: an absent field means "not reported"."""
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def encode(msg: Json) -> bytes:
    """One protocol line: compact JSON, ASCII (so always valid UTF-8), newline-terminated."""
    text = json.dumps(_prune(msg), separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.encode("ascii") + b"\n"


class StreamWriter:
    """Writes messages as lines to a binary stream, one whole line at a time.

    The sampler and the event thread both write, so each line is written and flushed under
    one lock: lines never interleave, and an event reaches the collector at once.
    """

    def __init__(self, out: IO[bytes], stop: threading.Event) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._stop = stop
        self.closed = False  # the reader went away
        self.muted = False  # a scripted hang: keep the channel open, say nothing

    def write(self, msg: Json) -> bool:
        """Write `msg`; False when it was not written (muted, or the channel is gone)."""
        try:
            line = encode(msg)
        except ValueError as exc:  # NaN or infinity from a broken reading
            line = encode(_error_for(msg, "encode_failed", f"could not encode a line: {exc}"))
        if len(line) > MAX_LINE_BYTES:
            text = f"{msg.get('type')} line of {len(line)} bytes dropped (limit {MAX_LINE_BYTES})"
            line = encode(_error_for(msg, "line_too_long", text))
        with self._lock:
            if self.closed or self.muted:
                return False
            try:
                self._out.write(line)
                self._out.flush()
            except (BrokenPipeError, ConnectionResetError, ValueError, OSError):
                self._closed_under_us()
                return False
        return True

    def _closed_under_us(self) -> None:
        self.closed = True
        self._stop.set()
        # Point the descriptor at /dev/null so the interpreter's final flush of this stream
        # does not print a BrokenPipeError traceback on the way out (Python's own advice).
        try:
            fd = self._out.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass


def _error_for(msg: Json, code: str, text: str) -> Json:
    t = msg.get("t") or time.time()
    return {"type": "error", "v": msg.get("v", 1), "t": t, "code": code, "text": text}


def stdin_is_channel(fd: int = 0) -> bool:
    """True when stdin is a pipe or socket (how SSH runs a command): its EOF then means the
    collector has gone. A terminal or /dev/null says nothing about liveness."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


# A request is a few dozen bytes; a longer line is no request of ours and is skipped unread.
REQUEST_LINE_MAX = 4096


class Requests:
    """What the collector asked of this agent on its stdin, as the stdin thread reads it.

    `watch` with `processes` true: list the GPUs' processes in every sample, not only in slow
    ones (a screen that shows them is open); false: back to slow samples only."""

    def __init__(self) -> None:
        self.processes = False
        self.ignored = 0  # lines that were not a request this agent knows

    def line(self, raw: bytes) -> None:
        try:
            msg = json.loads(raw.decode("utf-8"))
        except ValueError:  # not UTF-8, or not JSON
            msg = None
        if not isinstance(msg, dict) or msg.get("v") != PROTOCOL_VERSION:
            self.ignored += 1
            return
        if msg.get("type") == "watch" and isinstance(msg.get("processes"), bool):
            self.processes = msg["processes"]
        else:
            self.ignored += 1


class LineReader:
    """Splits what arrives on stdin into lines for `on_line`; a line longer than `limit` is
    dropped whole, so garbage cannot make the agent hold more than `limit` bytes."""

    def __init__(self, on_line: Callable[[bytes], None], limit: int = REQUEST_LINE_MAX) -> None:
        self.on_line = on_line
        self.limit = limit
        self._partial = b""
        self._skipping = False  # inside a line already too long

    def feed(self, data: bytes) -> None:
        lines = data.split(b"\n")
        for n, piece in enumerate(lines):
            last = n == len(lines) - 1
            if not self._skipping:
                self._partial += piece
                if len(self._partial) > self.limit:
                    self._partial, self._skipping = b"", True
            if last:
                return
            if not self._skipping and self._partial.strip():
                self.on_line(self._partial)
            self._partial, self._skipping = b"", False


def watch_stdin(
    stop: threading.Event,
    fd: int = 0,
    on_eof: Callable[[], None] | None = None,
    on_line: Callable[[bytes], None] | None = None,
) -> threading.Thread:
    """Set `stop` when `fd` reaches end of input; each line that arrives before is handed to
    `on_line` (discarded without one)."""
    reader = LineReader(on_line) if on_line is not None else None

    def run() -> None:
        try:
            while True:
                data = os.read(fd, 65536)
                if not data:
                    break
                if reader is not None:
                    # A request that cannot be handled must not end the watch.
                    with contextlib.suppress(Exception):
                        reader.feed(data)
        except OSError:
            pass
        if on_eof is not None and not stop.is_set():
            on_eof()
        stop.set()

    thread = threading.Thread(target=run, name="stdin-watch", daemon=True)
    thread.start()
    return thread
