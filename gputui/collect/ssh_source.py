"""A host streamed over SSH: connect, ship the agent down the channel, read lines, reconnect."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol, cast

import asyncssh

from gputui.collect.feed import Backoff, HostFeed, Source
from gputui.collect.launch import EXIT_NO_PYTHON, AgentInvocation, describe_exit
from gputui.collect.lines import LineSplitter
from gputui.collect.smi_adapter import SmiLineAdapter
from gputui.collect.ssh import HostError, SshContext
from gputui.core.model import HostState

# A stream silent for this many intervals is considered hung and restarted (the monitor has
# already shown it stale after 3).
HUNG_AFTER_INTERVALS = 10
# Before its first line an agent may legitimately be slow: NVML's start-up without persistence
# mode takes seconds, and a loaded host starts Python slowly.
STARTUP_GRACE_S = 30.0


class LineSink(Protocol):
    def on_line(self, line: bytes) -> None: ...

    def on_too_long(self, length: int) -> None: ...


class AgentSession(asyncssh.SSHClientSession[bytes]):
    """Receives the agent's stdout as lines and keeps the last stderr line for the reason."""

    def __init__(self, feed: LineSink) -> None:
        self._splitter = LineSplitter(self._on_line, feed.on_too_long)
        self.last_stderr = ""
        self._stderr_buf = b""
        self.exit_status: int | None = None
        self.exit_signal: str | None = None
        self.done: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self.lines = 0
        self._feed = feed

    def _on_line(self, line: bytes) -> None:
        self.lines += 1
        self._feed.on_line(line)

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self._keep_stderr(data)
        else:
            self._splitter.feed(data)

    def _keep_stderr(self, data: bytes) -> None:
        # Only the last complete line matters (a Python traceback ends with the exception).
        buf = (self._stderr_buf + data)[-4096:]
        lines = [ln for ln in buf.split(b"\n") if ln.strip()]
        if lines:
            self.last_stderr = lines[-1].decode("utf-8", "replace").strip()[:300]
        self._stderr_buf = buf

    def exit_status_received(self, status: int) -> None:
        self.exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.exit_signal = signal

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(exc)


class SshSource(Source):
    """One host over SSH with reconnects, capped exponential backoff and a hang watchdog."""

    def __init__(
        self,
        name: str,
        ssh: SshContext,
        invocation: Callable[[], AgentInvocation],
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self._ssh = ssh
        self._invocation = invocation
        self._backoff = backoff or Backoff()

    async def run(self, feed: HostFeed) -> None:
        reason = ""
        while True:
            feed.set_state(HostState.CONNECTING, f"reconnecting: {reason}" if reason else "")
            try:
                conn = await self._ssh.connect(self.name)
            except HostError as exc:
                reason = exc.text
                feed.set_state(HostState.UNREACHABLE, reason)
                await asyncio.sleep(self._backoff.next_delay())
                continue
            try:
                inv = self._invocation()
                reason, streamed, status = await self._stream(conn, feed, inv)
                if status == EXIT_NO_PYTHON and inv.fallback is not None and not streamed:
                    reason, streamed, status = await self._stream(conn, feed, inv.fallback)
            finally:
                conn.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.wait_closed(), 5)
            if streamed:
                self._backoff.reset()
            feed.set_state(HostState.UNREACHABLE, reason)
            await asyncio.sleep(self._backoff.next_delay())

    async def _stream(
        self, conn: asyncssh.SSHClientConnection, feed: HostFeed, inv: AgentInvocation
    ) -> tuple[str, bool, int | None]:
        """Run the agent until its stream ends: why it ended, whether it streamed, exit code."""
        sink: LineSink = feed
        smi: SmiLineAdapter | None = None
        if inv.smi:
            smi = SmiLineAdapter(
                self.name, feed.expected_interval(), feed.on_line, feed.on_too_long
            )
            sink = smi
        try:
            chan, ssh_session = await conn.create_session(
                lambda: AgentSession(sink), inv.command, encoding=None
            )
        except (asyncssh.Error, OSError) as exc:
            return f"cannot start the agent: {exc}", False, None
        session = cast(AgentSession, ssh_session)
        if inv.stdin:
            chan.write(inv.stdin)
        hung = False
        while not session.done.done():
            interval = feed.expected_interval()
            # The watchdog wakes every interval only where nvidia-smi's output needs polling;
            # otherwise a quarter of the hang limit is precise enough and costs a quarter.
            step = interval if smi is not None else HUNG_AFTER_INTERVALS * interval / 4
            await asyncio.wait({session.done}, timeout=step)
            if smi is not None:
                smi.poll()
            limit = HUNG_AFTER_INTERVALS * interval
            if not session.lines:
                limit = max(limit, STARTUP_GRACE_S)
            if feed.silent_for() > limit and not session.done.done():
                hung = True
                chan.close()
                await asyncio.wait({session.done}, timeout=5)
                break
        streamed = session.lines > 0
        status = session.exit_status
        if smi is not None and status != EXIT_NO_PYTHON:
            smi.end(status, session.last_stderr)
        if hung:
            what = "nvidia-smi" if smi is not None else "agent"
            if not streamed:
                return f"{what} wrote nothing for {STARTUP_GRACE_S:g} s; restarted", False, None
            silent = HUNG_AFTER_INTERVALS * feed.expected_interval()
            return f"{what} stopped writing for {silent:g} s (hung); restarted", streamed, None
        lost = session.done.result() if session.done.done() else None
        if lost is not None and status is None:
            if isinstance(lost, asyncssh.ConnectionLost) or "keepalive" in str(lost).lower():
                return f"connection lost: {lost}", streamed, None
            return f"connection lost: {type(lost).__name__}: {lost}", streamed, None
        reason = describe_exit(status, session.exit_signal, session.last_stderr)
        return reason, streamed, status
