"""`localhost`: the agent as a child process, no SSH."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import subprocess
import sys
from collections.abc import Callable
from typing import IO

from gputui.collect.feed import AgentSend, Backoff, HostFeed, Source, retry_streams
from gputui.collect.launch import AgentArgs, describe_exit
from gputui.collect.lines import LineSplitter
from gputui.collect.watchdog import either, loop_watchdog
from gputui.core.text import plain_bytes


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


def _nothing() -> None:
    """The watchdog's way to stop a local agent: nothing, its source kills it on the way out."""


def _pipe_writer(pipe: IO[bytes]) -> AgentSend:
    """Writes a request line to the agent's stdin without ever blocking the event loop: a
    line is far shorter than a pipe's atomic write, so it goes whole or not at all (an agent
    that stopped reading its stdin)."""
    fd = pipe.fileno()
    os.set_blocking(fd, False)

    def send(line: bytes) -> bool:
        try:
            return os.write(fd, line) == len(line)
        except OSError:  # full (BlockingIOError), or the agent is gone (BrokenPipeError)
            return False

    return send


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
        await retry_streams(feed, self._backoff, self._attempt)

    async def _attempt(self, feed: HostFeed) -> str:
        """One run of the agent, to its end: why it ended."""
        loop = asyncio.get_running_loop()
        feed.retrying(self._backoff.attempt, "starting the agent")
        feed.stream_started()
        last_stderr = ""

        def on_stderr(data: bytes) -> None:
            nonlocal last_stderr
            tail = [ln for ln in data.split(b"\n") if ln.strip()]
            if tail:
                last_stderr = plain_bytes(tail[-1], 300).strip()

        splitter = LineSplitter(feed.on_line, feed.on_too_long)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gputui.agent", *self._args.argv()],
                stdin=subprocess.PIPE,  # held open: its end is the agent's signal to exit
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            return f"cannot start the agent: {exc}"
        assert proc.stdout is not None and proc.stderr is not None and proc.stdin is not None
        feed.agent_channel(_pipe_writer(proc.stdin))
        # Said before its pipes are read, not after: an agent that started while the event
        # loop was busy (the app importing) has its first lines waiting, read as soon as the
        # pipe is connected, and this must not put a streaming host back to connecting.
        feed.retrying(self._backoff.attempt, "agent started, no output yet")
        out_reader, err_reader = _PipeReader(splitter.feed), _PipeReader(on_stderr)
        transports: list[asyncio.ReadTransport] = []
        try:
            for reader, pipe in ((out_reader, proc.stdout), (err_reader, proc.stderr)):
                transport, _ = await loop.connect_read_pipe(functools.partial(_same, reader), pipe)
                transports.append(transport)
            # The agent's stdout ends when it exits; meanwhile the loop's watchdog gives up on
            # a stream that cannot be understood (the agent is killed below).
            watchdog = loop_watchdog()
            watched = watchdog.watch(feed, "agent", out_reader.closed, _nothing)
            try:
                await asyncio.wait(either(watched), return_when=asyncio.FIRST_COMPLETED)
            finally:
                watchdog.unwatch(watched)
            if watched.ended.done():
                return watched.ended.result()
            code = await asyncio.to_thread(proc.wait)
        finally:
            # No await here: this also runs when the task is cancelled.
            feed.agent_channel(None)
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            for transport in transports:
                transport.close()
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)  # reaped now: killed, it ends at once
        return describe_exit(code, None, last_stderr)
