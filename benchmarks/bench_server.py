"""SSH servers standing in for GPU hosts, in their own process, for the ingest benchmarks.

One asyncssh listener on loopback serves every simulated host (each host is an ssh_config
alias pointing at it). Commands:

- `bench-stream ...` or the gputui agent bootstrap: a hello line, then one 8-GPU sample line
  per interval, as the agent writes them, until the channel closes;
- `bench-once`: one sample line, then exit (what exec-per-poll tools run every interval).

Sample lines are real lines of the simulated agent, with their time and sequence number
rewritten, so the collector decodes exactly what it would decode from a host.

    python benchmarks/bench_server.py DIR INTERVAL_S
writes DIR/port once listening; exits when its stdin closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import asyncssh

from gputui.collect.fdlimit import raise_soft_limit
from gputui.collect.loopback_sshd import ServerKeys, listen, publish, until_stopped


def recorded_lines() -> tuple[bytes, list[str]]:
    """A hello and sample templates (time and sequence left as markers) from the real agent."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gputui.agent",
            "--backend",
            "sim",
            "--interval",
            "0.02",
            "--duration",
            "0.5",
            "--stdin-watch",
            "off",
            "--slow-every",
            "10",
        ],
        capture_output=True,
        check=True,
    ).stdout.splitlines()
    templates = []
    for line in out[1:]:
        msg = json.loads(line)
        if msg.get("type") == "sample":
            msg["t"], msg["seq"] = "@T@", "@SEQ@"
            templates.append(json.dumps(msg, separators=(",", ":")))
    return out[0], templates


def hello_for(recorded: bytes, interval: float) -> bytes:
    """The recorded hello, announcing the interval the server streams at."""
    hello = json.loads(recorded)
    hello["interval_s"] = interval
    return json.dumps(hello, separators=(",", ":")).encode() + b"\n"


async def serve(directory: Path, interval: float) -> None:
    raise_soft_limit()
    recorded_hello, templates = recorded_lines()
    hello = hello_for(recorded_hello, interval)
    keys = ServerKeys.read(directory)
    rng = random.Random(1)

    def sample(seq: int) -> bytes:
        text = templates[seq % len(templates)]
        text = text.replace('"@T@"', f"{time.time():.3f}").replace('"@SEQ@"', str(seq))
        return (text + "\n").encode()

    async def handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
        command = process.command or ""

        async def drain() -> None:
            with contextlib.suppress(Exception):
                while await process.stdin.read(65536):
                    pass

        reader = asyncio.ensure_future(drain())
        try:
            if command.startswith("bench-once"):
                process.stdout.write(sample(rng.randrange(1 << 20)))
                process.exit(0)
                return
            process.stdout.write(hello)
            await asyncio.sleep(rng.uniform(0, interval))  # hosts are not in phase
            seq = 0
            next_t = time.monotonic()
            while not process.stdout.is_closing():
                process.stdout.write(sample(seq))
                seq += 1
                next_t += interval
                await asyncio.sleep(max(0.0, next_t - time.monotonic()))
        except (asyncssh.Error, OSError):
            pass
        finally:
            reader.cancel()

    acceptor = await listen(keys, handle, backlog=4096)
    publish(directory / "port", str(acceptor.get_port()))
    await until_stopped()
    acceptor.close()


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1]), float(sys.argv[2])))
