"""One collector worker process as its parent sees it: started, fed, read, restarted.

A worker that exits, is killed or sends a frame that cannot be read is a failure of the whole
shard: the link says why in words (its exit status or signal, the last lines of its stderr,
what was wrong with the frame) and starts a replacement after a backoff (collect/feed.py),
replaying the operator's commands to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from gputui.collect.feed import Backoff
from gputui.collect.workers.frames import Command, Delta, FrameError, Start, Stop, encode, up_reader
from gputui.core.text import plain

#: The folder this process's gputui package is in: its workers run the same package.
PACKAGE_ROOT = str(Path(__file__).resolve().parents[3])
#: How a worker is started: this interpreter and this gputui. Not `python -m`, which puts the
#: current directory first on the worker's import path: a `gputui` folder there (another
#: version's checkout, or one planted in a shared directory) would run as the collector.
WORKER_ARGV = (
    sys.executable,
    "-c",
    f"import sys; sys.path[0] = {PACKAGE_ROOT!r}; "
    "from gputui.collect.workers.worker import main; raise SystemExit(main())",
)
#: A worker that streamed this long counts as a success: the backoff starts over.
HEALTHY_AFTER_S = 30.0
#: How long a worker has to stop (close its connections) before it is killed.
STOP_TIMEOUT_S = 10.0
_STDERR_LINES = 5  # the last lines of a worker's stderr kept for its failure's reason
_READ_CHUNK = 1 << 18


def exit_words(returncode: int, stderr_tail: Sequence[str]) -> str:
    """How a process ended, in words: "exited (SIGKILL)", "exited with status 1: <last line>"."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"exited ({name})"
    said = f": {stderr_tail[-1]}" if stderr_tail else ""
    return f"exited with status {returncode}{said}"


class WorkerLink:
    """Runs worker `number` over its shard until closed; `on_delta` gets each frame it sends,
    `on_failure` each failure's reason (the link is restarting it)."""

    def __init__(
        self,
        number: int,
        start: Start,
        *,
        on_delta: Callable[[WorkerLink, Delta], None],
        on_failure: Callable[[WorkerLink, str], None],
        replay: Callable[[], Sequence[Command]],
        argv: Sequence[str] = WORKER_ARGV,
        backoff: Backoff | None = None,
    ) -> None:
        self.number = number
        self.start = start
        self.hosts = frozenset(r.name for r in start.hosts)
        self._on_delta = on_delta
        self._on_failure = on_failure
        self._replay = replay
        self._argv = list(argv)
        self._backoff = backoff or Backoff(initial_s=0.5, cap_s=30.0)
        self.proc: asyncio.subprocess.Process | None = None
        self.streaming = False  # the current worker has sent a frame
        self.stderr_tail: deque[str] = deque(maxlen=_STDERR_LINES)
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def begin(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=f"gputui-worker-{self.number}")

    def send(self, command: Command) -> None:
        """Tell the running worker; one that is starting gets every mark in its replay."""
        proc = self.proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing():
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            proc.stdin.write(encode(command))

    async def close(self) -> None:
        """Stop the worker (it closes its connections, which ends their agents) and wait; a
        worker that does not stop in STOP_TIMEOUT_S is killed."""
        self._closing = True
        self.send(Stop())
        proc = self.proc
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()
        task = self._task
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT_S)
        except TimeoutError:
            if self.proc is not None and self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            await self._reap()

    async def _reap(self) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def _supervise(self) -> None:
        while not self._closing:
            began = time.monotonic()
            try:
                why = await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the shard shows it; the other workers go on
                why = f"failed: {type(exc).__name__}: {plain(str(exc), 200)}"
            finally:
                await self._reap()
            if self._closing:
                return
            if time.monotonic() - began > HEALTHY_AFTER_S:
                self._backoff.reset()
            self._on_failure(self, f"collector worker {self.number} {why}; restarting")
            await asyncio.sleep(self._backoff.next_delay())

    async def _run_once(self) -> str:
        """Start a worker and read it to its end: why it ended, in words."""
        self.streaming = False
        self.stderr_tail.clear()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                # Its own session: the terminal's signals (Ctrl-C, a hang-up) go to the app,
                # which stops the workers in order.
                start_new_session=True,
            )
        except OSError as exc:
            return f"could not start: {plain(str(exc), 200)}"
        self.proc = proc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(encode(self.start))
        for command in self._replay():
            proc.stdin.write(encode(command))
        stderr = asyncio.create_task(self._read_stderr(proc.stderr))
        frames = up_reader()
        try:
            # A FrameError from on_delta too: points that do not fit the host's GPUs.
            while data := await proc.stdout.read(_READ_CHUNK):
                for frame in frames.feed(data):
                    self._check(frame)
                    self.streaming = True
                    self._on_delta(self, frame)
        except FrameError as exc:
            stderr.cancel()
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            return f"sent a malformed frame ({plain(str(exc), 200)})"
        returncode = await proc.wait()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stderr, 1.0)
        if frames.pending and returncode == 0:
            return "exited in the middle of a frame"
        return exit_words(returncode, self.stderr_tail)

    def _check(self, frame: Delta) -> None:
        """A frame about hosts of another shard is as wrong as one that does not decode."""
        for host in frame.hosts:
            if host.name not in self.hosts:
                raise FrameError(f"a frame names host {host.name!r}, not of this worker")
        for points in frame.points:
            if points.host not in self.hosts:
                raise FrameError(f"a frame names host {points.host!r}, not of this worker")

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line past the stream's limit: its start is enough
                line = await stream.read(_READ_CHUNK)
            if not line:
                return
            text = plain(line.decode(errors="replace").strip(), 300)
            if text:
                self.stderr_tail.append(text)
