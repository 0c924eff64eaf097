"""Run one command, here or on an SSH alias, with a timeout, streaming its output lines.

Locally the argv goes straight to execve (no shell). Remotely it is joined with shlex quoting,
which the remote account's POSIX login shell (sh, bash, zsh) splits back into the same argv;
csh-family login shells are not supported. Remote commands go through the collector's
SshContext, so they use the same ssh_config, keys and known_hosts checks as monitoring.

A local command runs in a session of its own: a timeout ends all of it, and it outlives gputui
killed with SIGKILL, so `on_start` hands its pid (its process group id) to the caller to
record (gputui/ops/orphans.py). A remote command has no group here: when gputui dies, its SSH
connection drops and the host's sshd closes the command's pipes, which ends it at its next
write (SIGPIPE); one that writes nothing more runs to its end on the host.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import shlex
import signal
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gputui.collect.host_error import HostError

if TYPE_CHECKING:
    import asyncssh

    from gputui.collect.ssh import SshContext

LOCAL = "local"
#: stdout kept whole for the next step's {job} lines; more than this is cut (and said so).
MAX_STDOUT_CHARS = 1_000_000
TAIL_CHARS = 8000
KILL_GRACE_S = 2.0
_CHUNK = 65536

OnLine = Callable[[str], None]
#: Called with the pid of a local command as soon as it has started.
OnStart = Callable[[int], None]


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    where: str = LOCAL  # "local" or an SSH alias
    timeout_s: float = 60.0
    # stdout kept whole for the caller; a scheduler's job list is far longer than {job} lines.
    keep_chars: int = MAX_STDOUT_CHARS

    @property
    def shell_text(self) -> str:
        """The argv as one shell-quoted line: what a remote shell receives, and a preview."""
        return shlex.join(self.argv)


@dataclass(frozen=True)
class CommandResult:
    exit_code: int | None  # None: it did not run, was killed by a signal, or timed out
    stdout: str = ""
    output: str = ""  # the tail of stdout and stderr, interleaved as they arrived
    error: str | None = None  # why it did not complete (not the program's own messages)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.error is None

    def lines(self) -> list[str]:
        """stdout's non-blank lines, stripped: what a per-line next step receives."""
        return [line.strip() for line in self.stdout.splitlines() if line.strip()]


class _Collector:
    """Splits a byte stream into lines for `on_line` and keeps what the result needs."""

    def __init__(
        self, on_line: OnLine | None, tail: deque[str], keep: bool, limit: int = MAX_STDOUT_CHARS
    ) -> None:
        self.on_line = on_line
        self.tail = tail
        self.keep = keep
        self.limit = limit
        self.kept: list[str] = []
        self.kept_chars = 0
        self.truncated = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""

    def feed(self, data: bytes, final: bool = False) -> None:
        lines = (self._partial + self._decoder.decode(data, final)).split("\n")
        self._partial = lines.pop()  # the unfinished last line ("" right after a newline)
        if final and self._partial:
            lines.append(self._partial)
            self._partial = ""
        for line in lines:
            self._line(line.rstrip("\r"))

    def _line(self, line: str) -> None:
        self.tail.append(line)
        if self.keep:
            if self.kept_chars + len(line) < self.limit:
                self.kept.append(line)
                self.kept_chars += len(line) + 1
            else:
                self.truncated = True
        if self.on_line is not None:
            self.on_line(line)

    @property
    def text(self) -> str:
        return "\n".join(self.kept)


def _tail_text(tail: deque[str]) -> str:
    return "\n".join(tail)[-TAIL_CHARS:]


class CommandRunner:
    """Runs Commands; holds one SSH connection per alias until `aclose()`."""

    def __init__(self, ssh: SshContext | None = None, env: Mapping[str, str] | None = None):
        self._ssh = ssh
        self._env = dict(env) if env is not None else None
        self._conns: dict[str, asyncssh.SSHClientConnection] = {}

    async def aclose(self) -> None:
        conns, self._conns = self._conns, {}
        for conn in conns.values():
            conn.close()
            with contextlib.suppress(Exception):
                await conn.wait_closed()

    async def run(
        self, cmd: Command, on_line: OnLine | None = None, on_start: OnStart | None = None
    ) -> CommandResult:
        """Run `cmd`; `on_start` gets a local command's pid (a remote one has none here)."""
        if cmd.where == LOCAL:
            return await self._run_local(cmd, on_line, on_start)
        return await self._run_remote(cmd, on_line)

    # -- here ---------------------------------------------------------------------------------

    async def _run_local(
        self, cmd: Command, on_line: OnLine | None, on_start: OnStart | None
    ) -> CommandResult:
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env,
                start_new_session=True,  # its own process group: a timeout kills all of it
            )
        except FileNotFoundError:
            return CommandResult(None, error=f"{cmd.argv[0]}: program not found")
        except PermissionError:
            return CommandResult(None, error=f"{cmd.argv[0]}: not executable (permission denied)")
        except OSError as exc:
            return CommandResult(None, error=f"{cmd.argv[0]}: cannot start: {exc}")
        assert proc.stdout is not None and proc.stderr is not None
        if on_start is not None:
            try:
                on_start(proc.pid)
            except BaseException:
                await _kill_group(proc)  # not recorded: not left running where none can see it
                raise
        tail: deque[str] = deque(maxlen=400)
        out = _Collector(on_line, tail, keep=True, limit=cmd.keep_chars)
        err = _Collector(on_line, tail, keep=False)

        async def pump(stream: asyncio.StreamReader, sink: _Collector) -> None:
            while chunk := await stream.read(_CHUNK):
                sink.feed(chunk)
            sink.feed(b"", final=True)

        async def finish() -> int:
            await asyncio.gather(pump(proc.stdout, out), pump(proc.stderr, err))  # type: ignore[arg-type]
            return await proc.wait()

        try:
            code = await asyncio.wait_for(finish(), cmd.timeout_s)
        except asyncio.TimeoutError:
            await _kill_group(proc)
            return CommandResult(
                None,
                out.text,
                _tail_text(tail),
                f"timed out after {cmd.timeout_s:g} s and was killed",
            )
        except asyncio.CancelledError:
            await _kill_group(proc)
            raise
        return _result(code, out, tail)

    # -- there --------------------------------------------------------------------------------

    async def _connection(self, alias: str) -> asyncssh.SSHClientConnection:
        conn = self._conns.get(alias)
        if conn is None or conn.is_closed():
            if self._ssh is None:
                from gputui.collect.ssh import SshContext  # asyncssh: for remote commands only

                self._ssh = SshContext()
            conn = await self._ssh.connect(alias)
            self._conns[alias] = conn
        return conn

    async def _run_remote(self, cmd: Command, on_line: OnLine | None) -> CommandResult:
        import asyncssh  # only commands run on another host need the SSH client

        tail: deque[str] = deque(maxlen=400)
        out = _Collector(on_line, tail, keep=True, limit=cmd.keep_chars)
        err = _Collector(on_line, tail, keep=False)
        try:
            conn = await self._connection(cmd.where)
        except HostError as exc:
            return CommandResult(None, error=f"cannot reach {cmd.where}: {exc.text}")
        process: asyncssh.SSHClientProcess[bytes] | None = None

        async def pump(stream: asyncssh.SSHReader[bytes], sink: _Collector) -> None:
            while chunk := await stream.read(_CHUNK):
                sink.feed(chunk)
            sink.feed(b"", final=True)

        async def finish() -> asyncssh.SSHClientProcess[bytes]:
            nonlocal process
            process = await conn.create_process(cmd.shell_text, encoding=None)
            process.stdin.write_eof()
            await asyncio.gather(pump(process.stdout, out), pump(process.stderr, err))
            await process.wait_closed()
            return process

        try:
            done = await asyncio.wait_for(finish(), cmd.timeout_s)
        except asyncio.TimeoutError:
            if process is not None:
                process.close()  # closing the channel ends the session's command
            return CommandResult(
                None,
                out.text,
                _tail_text(tail),
                f"timed out after {cmd.timeout_s:g} s on {cmd.where} (session closed)",
            )
        except asyncio.CancelledError:
            if process is not None:
                process.close()
            raise
        except (asyncssh.Error, OSError) as exc:
            self._conns.pop(cmd.where, None)
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            return CommandResult(
                None, out.text, _tail_text(tail), f"SSH to {cmd.where} failed: {reason}"
            )
        if done.exit_status is None or done.exit_status < 0:
            signame = done.exit_signal[0] if done.exit_signal else "unknown"
            return CommandResult(
                None, out.text, _tail_text(tail), f"killed by signal {signame} on {cmd.where}"
            )
        return _result(done.exit_status, out, tail)


def _result(code: int, out: _Collector, tail: deque[str]) -> CommandResult:
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        return CommandResult(None, out.text, _tail_text(tail), f"killed by signal {name}")
    error = (
        "its output was longer than gputui keeps; the rest was dropped" if out.truncated else None
    )
    return CommandResult(code, out.text, _tail_text(tail), error)


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the command's process group, then SIGKILL what is left after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), KILL_GRACE_S)
            return
        except asyncio.TimeoutError:
            continue
