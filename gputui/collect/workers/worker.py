"""One collector worker process: its shard of hosts on its own event loop.

Started by the UI process as `python -c` with the UI process's own gputui first on its path
(collect/workers/link.py `WORKER_ARGV`; asyncio's subprocess API, never
a fork of a process that runs threads). It reads a `Start` frame on stdin, builds its hosts'
plans with the code the in-process monitor uses (collect/fleet.py), runs an ordinary
FleetMonitor over them without the job-level straggler rule (the parent applies it over the
whole fleet), and writes one `Delta` frame per published snapshot on stdout. Operator commands
come down stdin; its end (the parent quit or was killed) or `Stop` stops the monitor, which
closes every connection and so ends every agent, and the worker exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable

import msgspec

from gputui.collect.fdlimit import load_lazy_modules, raise_soft_limit
from gputui.collect.history import HostHistory
from gputui.collect.monitor import FleetMonitor
from gputui.collect.recipes import plans_for_recipes, ssh_options
from gputui.collect.workers.frames import (
    Clear,
    Command,
    Delta,
    FrameError,
    InPlaceOf,
    MarkFailed,
    Points,
    Start,
    Stop,
    Watch,
    down_reader,
    encode,
)
from gputui.core.model import FleetEvent, FleetSnapshot, HostSnapshot

_READ_CHUNK = 1 << 16


class DeltaBuilder:
    """What changed in a monitor since the last frame: hosts by snapshot identity (each
    host's snapshot is cached until something changes), less the hello and slow sample when
    they are the objects sent before (by identity too), and history points by ring count."""

    def __init__(self, monitor: FleetMonitor) -> None:
        self.monitor = monitor
        self._sent: dict[str, HostSnapshot] = {}
        self._answered: set[str] = set()
        self._rings: dict[str, tuple[HostHistory, int]] = {}  # ring, points appended when sent
        self.urgent: list[FleetEvent] = []  # events that published at once, not yet framed

    def build(self, snap: FleetSnapshot) -> Delta:
        sent = self._sent
        changed = []
        same_hello: list[str] = []
        same_slow: list[str] = []
        for host in snap.hosts:
            before = sent.get(host.name)
            if before is host:
                continue
            sent[host.name] = host
            if before is not None:
                keep_hello = host.hello is not None and host.hello is before.hello
                keep_slow = host.slow_sample is not None and host.slow_sample is before.slow_sample
                if keep_hello:
                    same_hello.append(host.name)
                if keep_slow:
                    same_slow.append(host.name)
                if keep_hello or keep_slow:
                    host = msgspec.structs.replace(
                        host,
                        hello=None if keep_hello else host.hello,
                        slow_sample=None if keep_slow else host.slow_sample,
                    )
            changed.append(host)
        answered = []
        points = []
        for name, rt in self.monitor.hosts.items():
            if rt.answered and name not in self._answered:
                self._answered.add(name)
                answered.append(name)
            ring = rt.history
            if ring is None:
                continue
            seen = self._rings.get(name)
            new_ring = seen is None or seen[0] is not ring
            base = 0 if new_ring or seen is None else seen[1]
            if ring.appended == base and not new_ring:
                continue
            times, values = ring.since(base)
            self._rings[name] = (ring, ring.appended)
            points.append(
                Points(
                    host=name,
                    new_ring=new_ring,
                    gpus=list(rt.hello.gpus) if new_ring and rt.hello is not None else [],
                    times=times.tolist(),
                    values=values.astype("float32", copy=False).tobytes(order="C"),
                )
            )
        urgent = any(e is u for e in snap.events for u in self.urgent)
        self.urgent.clear()
        return Delta(
            t=snap.t,
            hosts=changed,
            same_hello=same_hello,
            same_slow=same_slow,
            events=list(snap.events),
            points=points,
            answered=answered,
            urgent=urgent,
        )


def apply(monitor: FleetMonitor, command: Command) -> None:
    """An operator's command, for a host of this shard (others are not ours: ignored)."""
    if isinstance(command, Watch):
        monitor.watch_processes(command.hosts)
    elif isinstance(command, Stop) or command.host not in monitor.hosts:
        return
    elif isinstance(command, MarkFailed):
        monitor.set_marked_failed(command.host, command.marked)
    elif isinstance(command, InPlaceOf):
        monitor.set_in_place_of(command.host, command.node)
    elif isinstance(command, Clear):
        monitor.clear(command.host, command.gpu)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def _read_frames(reader: asyncio.StreamReader, got: Callable[[object], None]) -> None:
    """Hand every frame on stdin to `got` until its end; a bad frame ends it too (the parent
    sees the worker exit with the reason on stderr)."""
    frames = down_reader()
    while data := await reader.read(_READ_CHUNK):
        for frame in frames.feed(data):
            got(frame)


async def serve(out_fd: int, stdin: asyncio.StreamReader) -> None:
    start: Start | None = None
    queued: list[object] = []
    first = asyncio.get_running_loop().create_future()

    def before_start(frame: object) -> None:
        if isinstance(frame, Start) and not first.done():
            first.set_result(frame)
        else:
            queued.append(frame)

    reading = asyncio.create_task(_read_frames(stdin, lambda f: handler(f)))
    handler: Callable[[object], None] = before_start
    done, _ = await asyncio.wait({reading, first}, return_when=asyncio.FIRST_COMPLETED)
    if first not in done:  # stdin ended, or a bad frame, before a Start: nothing to run
        reading.result()
        return
    start = first.result()
    raise_soft_limit()
    load_lazy_modules()
    plans, ssh = plans_for_recipes(
        start.hosts, ssh_options(start.ssh) if start.ssh is not None else None
    )
    closers: list[Callable[[], Awaitable[None]]] = [] if ssh is None else [ssh.close]
    builder: DeltaBuilder
    monitor = FleetMonitor(
        plans,
        thresholds=start.thresholds,
        tick_s=start.tick_s,
        history_len=start.history_len,
        closers=closers,
        job_stragglers=False,
        on_urgent=lambda e: builder.urgent.append(e),
    )
    builder = DeltaBuilder(monitor)
    stopped = asyncio.Event()

    def command(frame: object) -> None:
        if isinstance(frame, Stop):
            stopped.set()
        elif isinstance(frame, MarkFailed | InPlaceOf | Clear | Watch):
            apply(monitor, frame)

    async def stream() -> None:
        async for snap in monitor.snapshots():
            _write_all(out_fd, encode(builder.build(snap)))

    async with monitor:
        for frame in queued:
            command(frame)
        handler = command
        streaming = asyncio.create_task(stream())
        ended = asyncio.create_task(stopped.wait())
        await asyncio.wait({reading, streaming, ended}, return_when=asyncio.FIRST_COMPLETED)
        for task in (streaming, ended):
            task.cancel()
        if streaming.done() and not streaming.cancelled():
            streaming.result()  # a failure to write (the parent went away) ends here
    reading.cancel()
    with contextlib.suppress(asyncio.CancelledError, FrameError):
        await reading


async def _main(out_fd: int) -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(stdin), os.fdopen(0, "rb", buffering=0)
    )
    await serve(out_fd, stdin)


def main() -> int:
    # The parent decides when the worker ends (its stdin's end): a Ctrl-C in the terminal
    # reaches the whole process group, and the worker must close its connections in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Frames own stdout: anything else printed by accident goes to stderr, not into a frame.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        asyncio.run(_main(out_fd))
    except BrokenPipeError:
        return 0  # the parent is gone: nothing to tell anyone
    return 0
