"""The `smi` backend: the agent reads nvidia-smi instead of NVML.

For hosts whose python3 cannot load NVML bindings. nvidia-smi runs once as a long-lived
`-lms` stream (never one exec per poll: each start pays NVML's driver start-up, up to seconds
without persistence mode), and sample() takes whatever lines it has printed since the last
call. The parsing lives in smi_parse.py, shared with the collector.
"""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import time
from typing import TYPE_CHECKING

from . import DEFAULT_INTERVAL_S
from .backend import Backend, BackendError, Json
from .smi_parse import (
    AssembledSample,
    SampleAssembler,
    SmiStats,
    counters_from_probe,
    counters_probe_argv,
    exit_text,
    hello_argv,
    hello_failure,
    parse_hello,
    reasons_field_from_probe,
    reasons_probe_argv,
    reserved_from_probe,
    reserved_probe_argv,
    stream_argv,
    temperature_argv,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

QUERY_TIMEOUT_S = 30.0  # a one-off query; NVML start-up alone can take seconds
FIRST_SAMPLE_TIMEOUT_S = 15.0  # the stream's first period also pays that start-up
MAX_LINE_BYTES = 64 * 1024  # nvidia-smi's lines are ~200 bytes; anything longer is garbage


class _LineStream:
    """A child process whose stdout is read line by line without blocking the agent."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
        )
        self._selector = selectors.DefaultSelector()
        self._buffers: dict[int, bytes] = {}
        for pipe in (self.proc.stdout, self.proc.stderr):
            assert pipe is not None
            os.set_blocking(pipe.fileno(), False)
            self._selector.register(pipe.fileno(), selectors.EVENT_READ)
            self._buffers[pipe.fileno()] = b""
        self.last_stderr = ""
        self.overlong = 0  # lines dropped for being over MAX_LINE_BYTES

    @property
    def at_eof(self) -> bool:
        """Both pipes closed: nothing more will come."""
        return not self._selector.get_map()

    def read_lines(self, timeout: float) -> list[str]:
        """Complete stdout lines available within `timeout` seconds (maybe none)."""
        if self.at_eof:
            return []
        lines: list[str] = []
        for key, _ in self._selector.select(timeout):
            lines.extend(self._read(key.fd))
        return lines

    def _read(self, fd: int) -> list[str]:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return []
        if not chunk:  # EOF: keep a last line that had no newline
            self._selector.unregister(fd)
            tail, self._buffers[fd] = self._buffers[fd], b""
            return self._route(fd, [tail] if tail.strip() else [])
        data = self._buffers[fd] + chunk
        *complete, rest = data.split(b"\n")
        if len(rest) > MAX_LINE_BYTES:
            self.overlong += 1
            rest = b""
        self._buffers[fd] = rest
        return self._route(fd, complete)

    def _route(self, fd: int, raw: list[bytes]) -> list[str]:
        lines = [r.decode("utf-8", "replace").rstrip("\r") for r in raw]
        stdout = self.proc.stdout
        if stdout is not None and fd == stdout.fileno():
            return lines
        said = [line.strip() for line in lines if line.strip()]
        if said:
            self.last_stderr = said[-1][:500]
        return []

    def exit_status(self, wait_s: float) -> int | None:
        """The exit status once the process has ended; None if still running after wait_s."""
        try:
            return self.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            if self.exit_status(2.0) is None:
                self.proc.kill()
                self.proc.wait()
        self._selector.close()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


class SmiBackend(Backend):
    """nvidia-smi as an agent backend. `smi` is the command: a path, or an argv prefix (tests
    run a fake nvidia-smi script through the Python interpreter)."""

    name = "smi"
    #: nvidia-smi gives its slow fields (PCIe link, ECC) in every period, so every sample is
    #: a slow one whatever the run loop asks.
    slow_every = 1

    def __init__(
        self, interval_s: float = DEFAULT_INTERVAL_S, smi: str | Sequence[str] = "nvidia-smi"
    ) -> None:
        """Raises BackendError(smi_not_found) at once when there is no such command, so that
        picking a backend by trying them moves on."""
        self.interval_s = interval_s
        self._smi = [smi] if isinstance(smi, str) else list(smi)
        if shutil.which(self._smi[0]) is None:
            raise BackendError("smi_not_found", f"{self._smi[0]} not found on this host")
        self._stream: _LineStream | None = None
        self._assembler = SampleAssembler(interval_s=interval_s)
        self._first = True
        self._exit_error: BackendError | None = None

    @property
    def stats(self) -> SmiStats:
        """Counts of lines, samples and problems seen so far."""
        return self._assembler.stats

    # -- Backend interface ---------------------------------------------------------------

    def hello(self) -> Json:
        """Runs the inventory and temperature queries, picks the clock-event field name and
        whether to read the reserved memory and the held-clock counters, and starts the
        stream."""
        status, output = self._query(hello_argv())
        hello = parse_hello(output, self._optional_query(temperature_argv()))
        if not hello["gpus"]:
            code, text = hello_failure(output)
            raise BackendError(code, f"{text} (exit status {status})" if status else text)
        reasons_field = reasons_field_from_probe(self._optional_query(reasons_probe_argv()))
        reserved = reserved_from_probe(self._optional_query(reserved_probe_argv()))
        counters = counters_from_probe(self._optional_query(counters_probe_argv()))
        self._assembler = SampleAssembler(
            hello["gpus"], self.interval_s, reasons_field, reserved, counters
        )
        argv = stream_argv(self.interval_s, reasons_field, reserved=reserved, counters=counters)
        self._stream = self._start(self._smi + argv[1:])
        return hello

    def sample(self, slow: bool) -> Json:
        """The newest complete sample nvidia-smi has printed, waiting up to about two
        intervals for one. All fields nvidia-smi gives come every time, so `slow` is always
        true in what this returns, whatever was asked."""
        if self._exit_error is not None:
            raise self._exit_error
        stream = self._stream
        if stream is None:
            raise BackendError("smi_failed", "sample() before hello()")
        newest = self._wait_for_sample(stream, time.monotonic() + self._patience_s())
        self._first = False
        self._emit_events(newest)
        return {"gpus": newest.gpus, "slow": True}

    def take_problems(self) -> list[Json]:
        """Non-fatal problems since the last call ({"code", "text", "gpu"?}): garbage lines,
        [Unknown Error] fields. For the run loop to write as non-fatal error lines."""
        problems = self._assembler.take_problems()
        if self._stream is not None and self._stream.overlong:
            problems.append({"code": "smi_bad_line", "text": "over-long nvidia-smi line dropped"})
            self._stream.overlong = 0
        return problems

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    # -- running nvidia-smi --------------------------------------------------------------

    def _query(self, argv: list[str]) -> tuple[int, str]:
        """Runs a one-off query: (exit status, stdout and stderr)."""
        try:
            done = subprocess.run(
                self._smi + argv[1:],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=QUERY_TIMEOUT_S,
                check=False,
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            raise BackendError("smi_not_found", f"cannot run {self._smi[0]}: {exc}") from exc
        except subprocess.TimeoutExpired as exc:
            text = f"nvidia-smi did not answer within {QUERY_TIMEOUT_S:.0f} s"
            raise BackendError("smi_failed", text) from exc
        return done.returncode, done.stdout.decode("utf-8", "replace")

    def _optional_query(self, argv: list[str]) -> str:
        """A query whose failure only costs some fields (its output is parsed leniently)."""
        try:
            return self._query(argv)[1]
        except BackendError:
            return ""

    def _start(self, argv: list[str]) -> _LineStream:
        try:
            return _LineStream(argv)
        except OSError as exc:
            raise BackendError("smi_not_found", f"cannot run {argv[0]}: {exc}") from exc

    # -- reading the stream --------------------------------------------------------------

    def _patience_s(self) -> float:
        if self._first:
            return FIRST_SAMPLE_TIMEOUT_S
        return 2.0 * self.interval_s + 0.5

    def _wait_for_sample(self, stream: _LineStream, deadline: float) -> AssembledSample:
        newest: AssembledSample | None = None
        while True:
            # Once a sample is in hand, only drain what is already written, to return the
            # newest; before that, wait for the next line.
            wait = 0.0 if newest is not None else max(0.0, deadline - time.monotonic())
            lines = stream.read_lines(wait)
            newest = self._feed(lines) or newest
            if lines:
                continue
            if newest is None:
                newest = self._settled()
            if newest is None and stream.at_eof:
                newest = self._ended(stream)
            if newest is not None:
                return newest
            if time.monotonic() >= deadline:
                return self._silent()

    def _feed(self, lines: list[str]) -> AssembledSample | None:
        newest = None
        for line in lines:
            for sample in self._assembler.feed(line, time.time()):
                self._emit_events(newest)  # an older sample is dropped; its events are not
                newest = sample
        return newest

    def _settled(self) -> AssembledSample | None:
        """A partial sample whose lines stopped coming."""
        done = self._assembler.poll(time.time())
        return done[-1] if done else None

    def _ended(self, stream: _LineStream) -> AssembledSample | None:
        """nvidia-smi closed its output: return what it printed last, then fail the next
        call with its exit status and last stderr line."""
        status = stream.exit_status(2.0)
        self._exit_error = BackendError("smi_exited", exit_text(status, stream.last_stderr))
        done = self._assembler.flush()
        if done:
            return done[-1]
        raise self._exit_error

    def _silent(self) -> AssembledSample:
        waited = self._patience_s()
        return self._assembler.silent_sample(time.time(), f"nvidia-smi silent for {waited:.1f} s")

    def _emit_events(self, sample: AssembledSample | None) -> None:
        """Pushes a sample's events (GPU lost, reset required) once, as NVML's backend does."""
        emit = getattr(self, "_emit", None)  # set by start_events()
        if sample is None or emit is None:
            return
        events, sample.events = sample.events, []
        for event in events:
            emit(event)
