"""One-shot agent runs: connect, run the agent once to its end, keep every message it wrote.

The streaming collector (ssh_source) reconnects forever; a one-shot run (triage, `--once`)
instead has a deadline and a single answer per host: the decoded messages, or the reason there
are none (a HostError from connecting, the agent's own fatal error line, its exit status).
Many hosts run concurrently; the SshContext bounds concurrent handshakes fleet-wide. The SSH
client (asyncssh) is imported by the first run over SSH: a run on `localhost` needs none.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, cast

from gputui.collect.host_error import HostError
from gputui.collect.launch import EXIT_NO_PYTHON, AgentArgs, describe_exit, remote_invocation
from gputui.collect.lines import LineSplitter
from gputui.collect.protocol import StreamDecoder
from gputui.core.model import AgentError, AgentMessage, Event, Hello, Sample, TriageFacts

if TYPE_CHECKING:
    from gputui.collect.ssh import SshContext

DEFAULT_TIMEOUT_S = 90.0  # NVML start-up without persistence mode, then a slow journalctl


@dataclass(frozen=True)
class TriageArgs(AgentArgs):
    """The agent's arguments for its triage mode (gputui/agent/triage.py)."""

    samples: int = 5
    since_s: float | None = None  # kernel log window; None: since boot

    def argv(self) -> list[str]:
        args = [*super().argv(), "--triage", "--samples", str(self.samples)]
        if self.since_s is not None:
            args += ["--since", f"{self.since_s:g}"]
        return args


@dataclass(frozen=True)
class OneShotJob:
    """One host to run the agent on once."""

    host: str
    args: AgentArgs
    python: str = "python3"
    transport: Literal["ssh", "local"] = "ssh"


@dataclass(frozen=True)
class OneShotResult:
    """What one host answered: its messages in order, or why it did not finish."""

    host: str
    messages: tuple[AgentMessage, ...] = ()
    error: HostError | None = None
    exit_status: int | None = None
    bad_lines: int = 0  # lines that did not decode
    last_problem: str = ""
    elapsed_s: float = 0.0

    @property
    def hello(self) -> Hello | None:
        return next((m for m in self.messages if isinstance(m, Hello)), None)

    @property
    def samples(self) -> list[Sample]:
        return [m for m in self.messages if isinstance(m, Sample)]

    @property
    def events(self) -> list[Event]:
        return [m for m in self.messages if isinstance(m, Event)]

    @property
    def errors(self) -> list[AgentError]:
        return [m for m in self.messages if isinstance(m, AgentError)]

    @property
    def triage(self) -> TriageFacts | None:
        return next((m for m in self.messages if isinstance(m, TriageFacts)), None)


@dataclass
class _Collector:
    """A LineSink that decodes and keeps every message."""

    decoder: StreamDecoder = field(default_factory=StreamDecoder)
    messages: list[AgentMessage] = field(default_factory=list)

    def on_line(self, line: bytes) -> None:
        msg = self.decoder.decode(line)
        if msg is not None:
            self.messages.append(msg)

    def on_too_long(self, length: int) -> None:
        self.decoder.too_long(length)


def _finish(
    job: OneShotJob,
    sink: _Collector,
    start: float,
    status: int | None,
    error: HostError | None,
) -> OneShotResult:
    fatal = next((m for m in sink.messages if isinstance(m, AgentError) and m.fatal), None)
    if fatal is not None and (error is None or error.code == "agent_failed"):
        # The agent's own fatal line (no_backend, nvml_init_failed...) says more than its
        # exit status does.
        error = HostError(fatal.code, f"agent: {fatal.text}")
    stats = sink.decoder.stats
    return OneShotResult(
        host=job.host,
        messages=tuple(sink.messages),
        error=error,
        exit_status=status,
        bad_lines=stats.bad,
        last_problem=stats.last_problem,
        elapsed_s=time.monotonic() - start,
    )


def _exit_error(status: int | None, signal: str | None, stderr: str) -> HostError | None:
    if status == 0 and signal is None:
        return None
    code = "no_python" if status == EXIT_NO_PYTHON else "agent_failed"
    return HostError(code, describe_exit(status, signal, stderr))


async def run_ssh(job: OneShotJob, ssh: SshContext, timeout_s: float) -> OneShotResult:
    """Run the agent once on `job.host` over SSH, within `timeout_s` seconds in all."""
    import asyncssh

    from gputui.collect.ssh_source import AgentSession

    start = time.monotonic()
    sink = _Collector()
    try:
        conn = await asyncio.wait_for(ssh.connect(job.host), timeout_s)
    except HostError as exc:
        return _finish(job, sink, start, None, exc)
    except asyncio.TimeoutError:
        error = HostError("timeout", f"no SSH connection within {timeout_s:g} s")
        return _finish(job, sink, start, None, error)
    try:
        inv = remote_invocation(job.python, job.args)
        chan, ssh_session = await conn.create_session(
            lambda: AgentSession(sink), inv.command, encoding=None
        )
        session = cast(AgentSession, ssh_session)
        if inv.stdin:
            chan.write(inv.stdin)  # stdin then stays open: its end would stop the agent early
        left = max(0.1, timeout_s - (time.monotonic() - start))
        # asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
        # arrives as the session ends, and a cancelled triage must stop.
        await asyncio.wait({session.done}, timeout=left)
        if not session.done.done():
            chan.close()
            error = HostError("timeout", f"the agent did not finish within {timeout_s:g} s")
            return _finish(job, sink, start, session.exit_status, error)
        status, sig = session.exit_status, session.exit_signal
        return _finish(job, sink, start, status, _exit_error(status, sig, session.last_stderr))
    except (asyncssh.Error, OSError) as exc:
        return _finish(
            job, sink, start, None, HostError("ssh_error", f"cannot run the agent: {exc}")
        )
    finally:
        conn.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.wait_closed(), 5)


async def run_local(job: OneShotJob, timeout_s: float) -> OneShotResult:
    """Run the agent once as a child process (the `localhost` transport)."""
    start = time.monotonic()
    sink = _Collector()
    splitter = LineSplitter(sink.on_line, sink.on_too_long)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gputui.agent",
        *job.args.argv(),
        "--stdin-watch",
        "off",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        error = HostError("timeout", f"the agent did not finish within {timeout_s:g} s")
        return _finish(job, sink, start, None, error)
    splitter.feed(out)
    tail = [ln for ln in err.decode("utf-8", "replace").splitlines() if ln.strip()]
    status = proc.returncode
    return _finish(job, sink, start, status, _exit_error(status, None, tail[-1] if tail else ""))


async def run_oneshot(job: OneShotJob, ssh: SshContext, timeout_s: float) -> OneShotResult:
    """One host's answer; never raises for that host's failure."""
    try:
        if job.transport == "local":
            return await run_local(job, timeout_s)
        return await run_ssh(job, ssh, timeout_s)
    except Exception as exc:  # one host's surprise must not cost the others their answers
        error = HostError("collector_error", f"{type(exc).__name__}: {exc}")
        return OneShotResult(host=job.host, error=error)


async def run_oneshots(
    jobs: Sequence[OneShotJob], ssh: SshContext, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[OneShotResult]:
    """Every job's answer, in the order of `jobs`, all hosts at once."""
    return list(await asyncio.gather(*(run_oneshot(job, ssh, timeout_s) for job in jobs)))
