"""`localhost`: the agent as a child process, no SSH."""

from __future__ import annotations

import asyncio
import contextlib
import sys

from gputui.collect.feed import Backoff, HostFeed, Source
from gputui.collect.launch import AgentArgs, describe_exit
from gputui.collect.lines import LineSplitter
from gputui.core.model import HostState


class _AgentProtocol(asyncio.SubprocessProtocol):
    def __init__(self, feed: HostFeed) -> None:
        self.lines = 0
        self._feed = feed
        self._splitter = LineSplitter(self._on_line, feed.on_too_long)
        self.last_stderr = ""
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def _on_line(self, line: bytes) -> None:
        self.lines += 1
        self._feed.on_line(line)

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self._splitter.feed(data)
        else:
            tail = [ln for ln in data.split(b"\n") if ln.strip()]
            if tail:
                self.last_stderr = tail[-1].decode("utf-8", "replace").strip()[:300]

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


class LocalSource(Source):
    """Runs `python -m gputui.agent` with this interpreter; restarts it when it ends."""

    def __init__(self, name: str, args: AgentArgs, backoff: Backoff | None = None) -> None:
        self.name = name
        self._args = args
        self._backoff = backoff or Backoff()

    async def run(self, feed: HostFeed) -> None:
        loop = asyncio.get_running_loop()
        while True:
            feed.set_state(HostState.CONNECTING)
            transport, proto = await loop.subprocess_exec(
                lambda: _AgentProtocol(feed),
                sys.executable,
                "-m",
                "gputui.agent",
                *self._args.argv(),
            )
            try:
                await proto.exited
                # Give the pipes a moment to deliver the last lines and stderr.
                await asyncio.sleep(0.05)
            finally:
                if transport.get_returncode() is None:
                    with contextlib.suppress(ProcessLookupError):
                        transport.kill()
                    # Closing stdin is the agent's signal; kill covers a hung one.
                transport.close()
            if proto.lines:
                self._backoff.reset()
            code = transport.get_returncode()
            feed.set_state(HostState.UNREACHABLE, describe_exit(code, None, proto.last_stderr))
            await asyncio.sleep(self._backoff.next_delay())
