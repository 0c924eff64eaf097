"""A host streamed over SSH: connect, ship the agent down the channel, read lines, reconnect.

Every stage can fail on a hostile or broken host (refused, silent, closed the moment the
session opens, garbage, another protocol): each failure ends as a reason on the host and a
retry after the backoff, never as an exception that ends the host's task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol, cast

import asyncssh

from gputui.collect.feed import AgentSend, Backoff, HostFeed, Source, retry_streams
from gputui.collect.launch import EXIT_NO_PYTHON, AgentInvocation, describe_exit
from gputui.collect.lines import LineSplitter
from gputui.collect.smi_adapter import SmiLineAdapter
from gputui.collect.ssh import HostError, SshContext
from gputui.collect.watchdog import either, loop_watchdog
from gputui.core.text import plain, plain_bytes

# A stream silent for this many intervals is considered hung and restarted (the monitor has
# already shown it stale after 3).
HUNG_AFTER_INTERVALS = 10
# Before its first line an agent may legitimately be slow: NVML's start-up without persistence
# mode takes seconds, and a loaded host starts Python slowly.
STARTUP_GRACE_S = 30.0
CLOSE_WAIT_S = 5.0  # for the exit status after the channel closed or was closed


class LineSink(Protocol):
    def on_line(self, line: bytes) -> None: ...

    def on_too_long(self, length: int) -> None: ...


class AgentSession(asyncssh.SSHClientSession[bytes]):
    """Receives the agent's stdout as lines and keeps the last stderr line for the reason.

    A failure while handling a line (a bug, not the host's fault) is kept in `failure` and
    closes the channel: it must become the host's reason, not vanish inside asyncssh.
    """

    def __init__(self, feed: LineSink) -> None:
        self._splitter = LineSplitter(self._on_line, feed.on_too_long)
        self.last_stderr = ""
        self._stderr_buf = b""
        self.exit_status: int | None = None
        self.exit_signal: str | None = None
        self.done: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self.lines = 0
        self.bytes = 0  # stdout bytes, complete lines or not
        self.failure: Exception | None = None
        self._chan: asyncssh.SSHClientChannel[bytes] | None = None
        self._feed = feed

    def connection_made(self, chan: asyncssh.SSHClientChannel[bytes]) -> None:
        self._chan = chan

    def _on_line(self, line: bytes) -> None:
        self.lines += 1
        self._feed.on_line(line)

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self._keep_stderr(data)
            return
        self.bytes += len(data)
        try:
            self._splitter.feed(data)
        except Exception as exc:  # reported as the host's reason below
            if self.failure is None:
                self.failure = exc
            if self._chan is not None:
                self._chan.close()

    def _keep_stderr(self, data: bytes) -> None:
        # Only the last complete line matters (a Python traceback ends with the exception).
        buf = (self._stderr_buf + data)[-4096:]
        lines = [ln for ln in buf.split(b"\n") if ln.strip()]
        if lines:
            self.last_stderr = plain_bytes(lines[-1], 300).strip()
        self._stderr_buf = buf

    def exit_status_received(self, status: int) -> None:
        self.exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.exit_signal = plain(signal, 40)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(exc)


class SshSource(Source):
    """One host over SSH with reconnects, capped exponential backoff and a hang watchdog
    (collect/watchdog.py)."""

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
        await retry_streams(feed, self._backoff, self._attempt)

    async def _attempt(self, feed: HostFeed) -> str:
        """One connection and its agent stream, to the end: why it ended."""
        attempt = self._backoff.attempt

        def phase(text: str) -> None:
            feed.retrying(attempt, text)

        phase("connecting")
        try:
            conn = await self._ssh.connect(self.name, on_phase=phase)
        except HostError as exc:
            return exc.text
        try:
            inv = self._invocation()
            reason, streamed, status = await self._stream(conn, feed, inv, phase)
            if status == EXIT_NO_PYTHON and inv.fallback is not None and not streamed:
                reason, streamed, status = await self._stream(conn, feed, inv.fallback, phase)
            return reason
        finally:
            conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), CLOSE_WAIT_S)

    async def _stream(
        self,
        conn: asyncssh.SSHClientConnection,
        feed: HostFeed,
        inv: AgentInvocation,
        phase: Callable[[str], None],
    ) -> tuple[str, bool, int | None]:
        """Run the agent until its stream ends: why it ended, whether it streamed, exit code."""
        sink: LineSink = feed
        smi: SmiLineAdapter | None = None
        if inv.smi:
            smi = SmiLineAdapter(
                self.name, feed.expected_interval(), feed.on_message, feed.on_too_long
            )
            sink = smi
        what = "nvidia-smi" if smi is not None else "agent"
        phase(f"starting the {what}")
        feed.stream_started()
        try:
            chan, ssh_session = await conn.create_session(
                lambda: AgentSession(sink), inv.command, encoding=None
            )
        except (asyncssh.Error, OSError) as exc:
            return f"cannot start the {what}: {plain(str(exc), 200)}", False, None
        session = cast(AgentSession, ssh_session)
        if inv.stdin:
            try:
                chan.write(inv.stdin)
            except (BrokenPipeError, asyncssh.Error, OSError):
                # The host ended the session before the agent could be sent (a forced
                # command, a shell that exits at once): what it said is the reason.
                await asyncio.wait({session.done}, timeout=CLOSE_WAIT_S)
                ended = describe_exit(session.exit_status, session.exit_signal, "")
                tail = f": {session.last_stderr}" if session.last_stderr else ""
                return (
                    f"the host closed the session before the agent was sent ({ended}){tail}",
                    False,
                    session.exit_status,
                )
        phase(f"{what} started, no output yet")
        if smi is None:  # nvidia-smi reads no requests
            feed.agent_channel(_channel_writer(chan))
        try:
            ended_by = await self._watch(chan, session, feed, smi)
        finally:
            feed.agent_channel(None)
        streamed = session.lines > 0
        status = session.exit_status
        if smi is not None and status != EXIT_NO_PYTHON:
            smi.end(status, session.last_stderr)
        if ended_by is not None:
            return ended_by, streamed, None
        if session.failure is not None:
            failure = session.failure
            return (
                f"collector error reading the {what}: "
                f"{type(failure).__name__}: {plain(str(failure), 200)}",
                streamed,
                None,
            )
        lost = session.done.result() if session.done.done() else None
        if lost is not None and status is None:
            text = plain(str(lost), 200)
            if isinstance(lost, asyncssh.ConnectionLost) or "keepalive" in text.lower():
                return f"connection lost: {text}", streamed, None
            return f"connection lost: {type(lost).__name__}: {text}", streamed, None
        reason = describe_exit(status, session.exit_signal, session.last_stderr)
        if not streamed and not session.bytes and status not in (None, EXIT_NO_PYTHON):
            reason += " before writing anything"
        return reason, streamed, status

    async def _watch(
        self,
        chan: asyncssh.SSHClientChannel[bytes],
        session: AgentSession,
        feed: HostFeed,
        smi: SmiLineAdapter | None,
    ) -> str | None:
        """Wait for the stream to end; the loop's watchdog ends it for a hang or a stream that
        cannot be read (and polls nvidia-smi's output), so this task wakes only at the end.

        Returns why gputui ended it, or None when the host ended it."""
        watchdog = loop_watchdog()
        watched = watchdog.watch(
            feed,
            "nvidia-smi" if smi is not None else "agent",
            session.done,
            chan.close,
            counts=session,
            # Read at each stream's start, so that a test may shorten them.
            hang_after=HUNG_AFTER_INTERVALS,
            grace_s=STARTUP_GRACE_S,
            poll=smi.poll if smi is not None else None,
        )
        try:
            await asyncio.wait(either(watched), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watchdog.unwatch(watched)
        if watched.ended.done():
            reason = watched.ended.result()  # raises what judging or closing the stream raised
            # The watchdog closed the channel: its exit status, when it comes, is nvidia-smi's
            # last word (smi.end).
            await asyncio.wait({session.done}, timeout=CLOSE_WAIT_S)
            return reason
        if smi is not None:
            smi.poll()  # as every wake did: a partial sample before the end's flush
        return None


def _channel_writer(chan: asyncssh.SSHClientChannel[bytes]) -> AgentSend:
    """Writes a request line down the channel to the agent's stdin (asyncssh queues it)."""

    def send(line: bytes) -> bool:
        if chan.is_closing():
            return False
        try:
            chan.write(line)
        except (BrokenPipeError, asyncssh.Error, OSError):
            return False
        return True

    return send
