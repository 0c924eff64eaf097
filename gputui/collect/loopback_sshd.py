"""SSH servers on loopback standing in for GPU hosts: what every such server process shares.

The demo fleet (demo_server.py), the ingest benchmarks and the chaos test each run their
servers in a child process, with the same arrangement with the parent: the parent writes
DIR/host_key and DIR/client_key.pub, the child listens on 127.0.0.1 with an ephemeral port,
accepts the client key only, publishes where it listens in a file under DIR (written
atomically, so the parent never reads half of it), and serves until its stdin closes (the
parent died or stopped it). What each server does with a session is its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncssh

#: What runs each session: asyncssh's process_factory, given the session's process.
SessionHandler = Callable[[asyncssh.SSHServerProcess[bytes]], object]


class _ClientKeyOnly(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True  # authentication required: public key only (authorized_client_keys)


@dataclass(frozen=True)
class ServerKeys:
    """The host key the servers present and the client keys they accept."""

    host_key: asyncssh.SSHKey
    authorized: asyncssh.SSHAuthorizedKeys

    @classmethod
    def read(cls, directory: Path) -> ServerKeys:
        """DIR/host_key and DIR/client_key.pub, as the parent wrote them."""
        return cls(
            host_key=asyncssh.read_private_key(str(directory / "host_key")),
            authorized=asyncssh.import_authorized_keys((directory / "client_key.pub").read_text()),
        )


async def listen(
    keys: ServerKeys,
    handler: SessionHandler,
    *,
    backlog: int = 100,
    keepalive_interval: float = 0,
) -> asyncssh.SSHAcceptor:
    """One listener on 127.0.0.1 (its port: `get_port()`), bytes in and out, exec only."""
    return await asyncssh.listen(
        "127.0.0.1",
        0,
        server_factory=_ClientKeyOnly,
        server_host_keys=[keys.host_key],
        authorized_client_keys=keys.authorized,
        process_factory=handler,
        encoding=None,
        allow_scp=False,
        agent_forwarding=False,
        x11_forwarding=False,
        backlog=backlog,
        keepalive_interval=keepalive_interval,
    )


def publish(path: Path, text: str) -> None:
    """Write `text` to `path` whole: the parent waits for the file, then reads it at once."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


async def until_stopped(signals: Sequence[signal.Signals] = ()) -> None:
    """Return when stdin closes (the parent died or stopped this process), or one of
    `signals` arrives."""
    loop = asyncio.get_running_loop()
    stopped = loop.create_future()

    def stop() -> None:
        if not stopped.done():
            stopped.set_result(None)

    for sig in signals:
        loop.add_signal_handler(sig, stop)

    def watch_stdin() -> None:
        with contextlib.suppress(Exception):
            sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop)

    # A daemon thread: a blocked read must not keep the process alive at exit.
    threading.Thread(target=watch_stdin, daemon=True).start()
    await stopped
