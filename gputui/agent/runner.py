"""The agent's main loop: hello, then one sample per interval, until told to stop.

Sampling runs on a fixed schedule (tick k at start + k * interval) rather than "sleep one
interval after each sample", so the collector sees a steady rate however long NVML takes; a
tick that falls behind is skipped, never bunched. Waiting is done on the stop event, so the
end of stdin or a signal ends the wait at once.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from . import AGENT_VERSION, DEFAULT_INTERVAL_S, PROTOCOL_VERSION
from .backend import FAULT_CRASH, FAULT_HANG, Backend, BackendError, Json
from .stream import Requests, StreamWriter

# Exit codes (docs/protocol.md).
EXIT_OK = 0
EXIT_CRASH = 1  # default of the scripted agent_crash (its exit_code may say otherwise)
EXIT_USAGE = 2
EXIT_BACKEND = 3  # no backend could start; a fatal error line says why


class Runner:
    def __init__(
        self,
        backend: Backend,
        writer: StreamWriter,
        stop: threading.Event,
        *,
        host: str,
        interval_s: float = DEFAULT_INTERVAL_S,
        slow_every: int = 10,
        duration_s: float | None = None,
        once: bool = False,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        requests: Requests | None = None,
        pump_events: bool = False,
    ) -> None:
        """`requests`: what the collector asks on stdin (stream.watch_stdin fills it).
        `pump_events`: deliver the events the backend holds before each sample, in this thread
        (a backend built without its event thread, as --once builds it)."""
        self.backend = backend
        self.writer = writer
        self.stop = stop
        self.host = host
        self.interval_s = interval_s
        self.slow_every = max(1, slow_every)
        self.duration_s = duration_s
        self.once = once
        self.wall = wall
        self.monotonic = monotonic
        self.requests = requests if requests is not None else Requests()
        self.pump_events = pump_events
        self._last_error = ""

    def _msg(self, msg_type: str, fields: Json) -> Json:
        return {"type": msg_type, "v": PROTOCOL_VERSION, "t": round(self.wall(), 3), **fields}

    def error(self, code: str, text: str, fatal: bool = False, gpu: int | None = None) -> None:
        self.writer.write(
            self._msg("error", {"code": code, "text": text, "fatal": fatal or None, "gpu": gpu})
        )

    def _event(self, event: Json) -> None:
        self.writer.write(self._msg("event", event))

    def run(self) -> int:
        """Stream until stopped; returns the process exit code."""
        try:
            return self._run()
        finally:
            self.backend.close()

    def write_hello(self) -> Json | None:
        """Write the hello line; None (after a fatal error line) when the backend cannot."""
        try:
            inventory = self.backend.hello()
        except BackendError as exc:
            self.error(exc.code, exc.text, fatal=True)
            return None
        hello = {
            "type": "hello",
            "v": PROTOCOL_VERSION,
            "host": self.host,
            "agent_version": AGENT_VERSION,
            "backend": self.backend.name,
            "interval_s": self.interval_s,
            "slow_every": 1 if self.once else self.slow_every,
        }
        hello.update(inventory)
        self.writer.write(hello)
        return hello

    def _run(self) -> int:
        if self.write_hello() is None:
            return EXIT_BACKEND
        self.backend.start_events(self._event)
        start = self.monotonic()
        next_tick = start
        seq = 0
        while not self.stop.is_set():
            fault = self.backend.process_fault()
            if fault == FAULT_CRASH:
                self.error("agent_crash", self.backend.fault_text(), fatal=True)
                return self.backend.crash_exit_code()
            self.writer.muted = fault == FAULT_HANG
            if not self.writer.muted:
                pump = getattr(self.backend, "pump_events", None)
                if self.pump_events and pump is not None:
                    pump()
                slow = self.once or seq % self.slow_every == 0
                self.backend.processes_every_sample = self.requests.processes
                try:
                    self._sample(seq, slow)
                except BackendError as exc:  # the backend cannot go on (nvidia-smi exited)
                    self.error(exc.code, exc.text, fatal=True)
                    return EXIT_BACKEND
                seq += 1
            if self.once or self.writer.closed:
                break
            now = self.monotonic()
            if self.duration_s is not None and now - start >= self.duration_s:
                break
            next_tick += self.interval_s
            if next_tick <= now:  # fell behind (a slow NVML call, a paused VM): skip ahead
                next_tick = now + self.interval_s
            self.stop.wait(next_tick - now)
        return EXIT_OK

    def _sample(self, seq: int, slow: bool) -> None:
        try:
            body = self.backend.sample(slow)
        except BackendError:
            raise
        except Exception as exc:  # a bug must not end the stream: say it, keep sampling
            text = f"sample failed: {type(exc).__name__}: {exc}"
            if text != self._last_error:  # once per distinct failure, not once a second
                self._last_error = text
                self.error("sample_failed", text)
            return
        self.writer.write(self._msg("sample", {"seq": seq, "slow": slow or None, **body}))
