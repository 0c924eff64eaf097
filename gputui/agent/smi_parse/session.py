"""Protocol messages, for a collector that runs nvidia-smi itself over SSH."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .. import AGENT_VERSION, DEFAULT_INTERVAL_S, PROTOCOL_VERSION
from .argv import MARK_FIELDS, MARK_HELLO, MARK_STREAM, MARK_TEMPERATURE, fields_from_query
from .assembler import AssembledSample, SampleAssembler, SmiStats
from .cells import REASONS_FIELD
from .hello import parse_hello

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    Json = dict[str, Any]


def hello_message(
    hello: Json, host: str, interval_s: float, agent_version: str = AGENT_VERSION
) -> Json:
    """The protocol's hello line from parse_hello()'s dict."""
    message: Json = {
        "v": PROTOCOL_VERSION,
        "type": "hello",
        "host": host,
        "agent_version": agent_version,
        "backend": "smi",
        "interval_s": interval_s,
        "slow_every": 1,  # nvidia-smi gives its slow fields in every sample
    }
    message.update(hello)
    return message


def error_message(
    now: float, code: str, text: str, gpu: int | None = None, fatal: bool = False
) -> Json:
    """The protocol's error line."""
    message: Json = {"v": PROTOCOL_VERSION, "type": "error", "t": now, "code": code, "text": text}
    if gpu is not None:
        message["gpu"] = gpu
    if fatal:
        message["fatal"] = True
    return message


class SmiStreamMapper:
    """Lines of the streaming command -> protocol messages (sample, event, error).

    For the collector: `feed(line, now)` for every line read, `poll(now)` now and then (a GPU
    that fell silent), `end(now, status, stderr)` when nvidia-smi exits.
    """

    def __init__(
        self,
        gpus: Sequence[Json] = (),
        interval_s: float = DEFAULT_INTERVAL_S,
        reasons_field: str = REASONS_FIELD,
        reserved: bool = False,
        counters: bool = False,
    ) -> None:
        self.assembler = SampleAssembler(gpus, interval_s, reasons_field, reserved, counters)
        self._seq = 0

    @property
    def stats(self) -> SmiStats:
        return self.assembler.stats

    def feed(self, line: str, now: float) -> list[Json]:
        return self._messages(self.assembler.feed(line, now), now)

    def poll(self, now: float) -> list[Json]:
        return self._messages(self.assembler.poll(now), now)

    def end(self, now: float, exit_status: int | None, last_stderr: str = "") -> list[Json]:
        """The last sample and the fatal error for nvidia-smi's exit."""
        messages = self._messages(self.assembler.flush(), now)
        text = exit_text(exit_status, last_stderr)
        messages.append(error_message(now, "smi_exited", text, fatal=True))
        return messages

    def _messages(self, samples: Iterable[AssembledSample], now: float) -> list[Json]:
        messages = [error_message(now, **p) for p in self.assembler.take_problems()]
        for sample in samples:
            for event in sample.events:
                messages.append({"v": PROTOCOL_VERSION, "type": "event", "t": sample.t, **event})
            messages.append(
                {
                    "v": PROTOCOL_VERSION,
                    "type": "sample",
                    "t": sample.t,
                    "seq": self._seq,
                    "gpus": sample.gpus,
                    "slow": True,
                }
            )
            self._seq += 1
        return messages


def exit_text(exit_status: int | None, last_stderr: str) -> str:
    """The text of the smi_exited error: its status and the last thing it said."""
    status = "was killed" if exit_status is None or exit_status < 0 else f"exited ({exit_status})"
    return f"nvidia-smi {status}" + (f": {last_stderr}" if last_stderr else "")


_NOT_FOUND = re.compile(r"nvidia-smi: (command )?not found|No such file or directory")


def hello_failure(output: str) -> tuple[str, str]:
    """Error code and text for an inventory query that listed no GPU."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if any(_NOT_FOUND.search(line) for line in lines):
        return "smi_not_found", "nvidia-smi not found on this host"
    if any("No devices were found" in line for line in lines):
        return "no_gpu", "nvidia-smi found no GPU"
    return "smi_failed", lines[-1] if lines else "nvidia-smi printed nothing"


class SmiSession:
    """The output of session_command() -> protocol messages, hello first.

    The collector runs session_command() over SSH, feeds every stdout line with the time it
    arrived, calls poll() about once per interval and end() when the channel closes.
    """

    def __init__(self, host: str, interval_s: float, agent_version: str = AGENT_VERSION) -> None:
        self.host = host
        self.interval_s = interval_s
        self.agent_version = agent_version
        self.hello: Json | None = None
        self.stream: SmiStreamMapper | None = None
        self._part = ""
        self._parts: dict[str, list[str]] = {"hello": [], "temperature": []}
        self._failed = False
        # Until the command says which it streams: (clock-event field, memory.reserved,
        # the held-clock counters).
        self._fields = (REASONS_FIELD, False, False)

    def feed(self, line: str, now: float) -> list[Json]:
        """Messages completed by one line of output."""
        text = line.rstrip("\r\n")
        if self._failed:
            return []
        if text in _MARK_PARTS:
            self._part = _MARK_PARTS[text]
            return self._start_stream(now) if self._part == "stream" else []
        if self.stream is None and text.startswith(MARK_FIELDS):
            self._fields = fields_from_query(text[len(MARK_FIELDS) :].strip())
            return []
        if self.stream is not None:
            return self.stream.feed(text, now)
        if self._part in self._parts:
            self._parts[self._part].append(text)
        return []  # before the first marker: a login banner, say

    def poll(self, now: float) -> list[Json]:
        return self.stream.poll(now) if self.stream is not None else []

    def end(self, now: float, exit_status: int | None, last_stderr: str = "") -> list[Json]:
        """Messages for the channel closing: the last sample, then a fatal error."""
        if self._failed:
            return []
        self._failed = True
        if self.stream is not None:
            return self.stream.end(now, exit_status, last_stderr)
        code, text = hello_failure("\n".join(self._parts["hello"] + [last_stderr]))
        return [error_message(now, code, text, fatal=True)]

    def _start_stream(self, now: float) -> list[Json]:
        hello = parse_hello("\n".join(self._parts["hello"]), "\n".join(self._parts["temperature"]))
        if not hello["gpus"]:
            self._failed = True
            code, text = hello_failure("\n".join(self._parts["hello"]))
            return [error_message(now, code, text, fatal=True)]
        self.hello = hello
        reasons_field, reserved, counters = self._fields
        self.stream = SmiStreamMapper(
            hello["gpus"], self.interval_s, reasons_field, reserved, counters
        )
        return [hello_message(hello, self.host, self.interval_s, self.agent_version)]


_MARK_PARTS = {MARK_HELLO: "hello", MARK_TEMPERATURE: "temperature", MARK_STREAM: "stream"}
