"""SSH servers for the demo fleet: one listener per simulated host on loopback.

Run as a child process (`python -m gputui.collect.demo_server DIR N`) so the servers' CPU is not
the collector's. Each exec request runs the requested command through /bin/sh exactly as sshd
would, so the collector ships and starts the real agent the same way it does on a GPU host.
When the channel closes the command's stdin closes, and the agent exits.

Protocol with the parent: DIR holds host_key and client_key.pub; once every listener is up
this writes DIR/ports.json ({"sim-001": port, ...}) atomically. It exits when its stdin closes
(the parent died or stopped it), killing every agent it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import asyncssh

from gputui.collect.fdlimit import raise_soft_limit
from gputui.collect.loopback_sshd import ServerKeys, listen, publish, until_stopped


async def _run_command(
    process: asyncssh.SSHServerProcess[bytes], children: set[asyncio.subprocess.Process]
) -> None:
    command = process.command or "true"
    proc = await asyncio.create_subprocess_shell(
        command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    children.add(proc)
    feeder = asyncio.ensure_future(_feed_stdin(process, proc))
    try:
        await process.redirect(stdout=proc.stdout, stderr=proc.stderr)
        code = await proc.wait()
        # Let the redirected output drain before the exit status goes out. A command that
        # ended without reading its stdin leaves the copy of the client's bytes to it broken:
        # its exit status still goes out, as sshd sends it.
        with contextlib.suppress(asyncssh.Error, OSError):
            await process.stdout.drain()
        process.exit(code if code >= 0 else 128 - code)
    except (asyncssh.Error, OSError):
        pass
    finally:
        feeder.cancel()
        children.discard(proc)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), 2)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)


async def _feed_stdin(
    process: asyncssh.SSHServerProcess[bytes], proc: asyncio.subprocess.Process
) -> None:
    """The client's stdin to the command's, closed when the channel's ends (the agent's cue
    to exit). A command that exits without reading it is not an error: sshd does not mind."""
    assert proc.stdin is not None
    with contextlib.suppress(asyncssh.Error, OSError):
        while data := await process.stdin.read(65536):
            proc.stdin.write(data)
            await proc.stdin.drain()
    with contextlib.suppress(OSError):
        proc.stdin.close()


async def serve(directory: Path, names: list[str]) -> None:
    raise_soft_limit()  # each host costs several descriptors here (fdlimit.py)
    keys = ServerKeys.read(directory)
    children: set[asyncio.subprocess.Process] = set()

    def process_factory(process: asyncssh.SSHServerProcess[bytes]) -> asyncio.Task[None]:
        return asyncio.ensure_future(_run_command(process, children))

    servers: list[asyncssh.SSHAcceptor] = []
    ports: dict[str, int] = {}
    for name in names:
        acceptor = await listen(keys, process_factory, keepalive_interval=5)
        servers.append(acceptor)
        ports[name] = acceptor.get_port()
    publish(directory / "ports.json", json.dumps(ports))
    await until_stopped((signal.SIGTERM, signal.SIGINT, signal.SIGHUP))  # SIGHUP: terminal closed
    for acceptor in servers:
        acceptor.close()
    for proc in list(children):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    directory = Path(argv[0])
    names = json.loads((directory / "hosts.json").read_text())
    asyncio.run(serve(directory, names))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
