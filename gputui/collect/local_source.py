"""`localhost`: the agent as a child process, no SSH."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import subprocess
import sys
from collections.abc import Callable

from gputui.collect.feed import Backoff, HostFeed, Source
from gputui.collect.launch import AgentArgs, describe_exit
from gputui.collect.lines import LineSplitter
from gputui.core.model import HostState


class _PipeReader(asyncio.Protocol):
    """Hands a pipe's bytes to `on_data`; `closed` resolves at end of file."""

    def __init__(self, on_data: Callable[[bytes], None]) -> None:
        self.on_data = on_data
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _same(reader: _PipeReader) -> _PipeReader:
    return reader


class LocalSource(Source):
    """Runs `python -m gputui.agent` with this interpreter; restarts it when it ends.

    The process is managed with subprocess.Popen and its pipes read through the event loop,
    not with asyncio's subprocess transports: those rely on a child watcher that can report
    an exit after the loop is gone, and an agent must never outlive the monitor.
    """

    def __init__(self, name: str, args: AgentArgs, backoff: Backoff | None = None) -> None:
        self.name = name
        self._args = args
        self._backoff = backoff or Backoff()

    async def run(self, feed: HostFeed) -> None:
        loop = asyncio.get_running_loop()
        while True:
            feed.set_state(HostState.CONNECTING)
            lines = 0
            last_stderr = ""

            def on_line(line: bytes) -> None:
                nonlocal lines
                lines += 1
                feed.on_line(line)

            def on_stderr(data: bytes) -> None:
                nonlocal last_stderr
                tail = [ln for ln in data.split(b"\n") if ln.strip()]
                if tail:
                    last_stderr = tail[-1].decode("utf-8", "replace").strip()[:300]

            splitter = LineSplitter(on_line, feed.on_too_long)
            proc = subprocess.Popen(
                [sys.executable, "-m", "gputui.agent", *self._args.argv()],
                stdin=subprocess.PIPE,  # held open: its end is the agent's signal to exit
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert proc.stdout is not None and proc.stderr is not None
            out_reader, err_reader = _PipeReader(splitter.feed), _PipeReader(on_stderr)
            out_t, _ = await loop.connect_read_pipe(
                functools.partial(_same, out_reader), proc.stdout
            )
            err_t, _ = await loop.connect_read_pipe(
                functools.partial(_same, err_reader), proc.stderr
            )
            try:
                await out_reader.closed  # the agent's stdout ends when it exits
                code = await asyncio.to_thread(proc.wait)
            finally:
                # No await here: this also runs when the task is cancelled.
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                out_t.close()
                err_t.close()
                if proc.stdin is not None:
                    proc.stdin.close()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)  # reaped now: killed, it ends at once
            if lines:
                self._backoff.reset()
            feed.set_state(HostState.UNREACHABLE, describe_exit(code, None, last_stderr))
            await asyncio.sleep(self._backoff.next_delay())
