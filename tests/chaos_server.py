"""SSH server for the chaos fleet test: healthy simulated hosts and hosts that misbehave.

One asyncssh listener on loopback, in its own process (`python -m tests.chaos_server DIR`), so
its CPU is not the collector's; every host is an ssh_config alias of it, and the command the
collector runs names how that host behaves:

- `healthy`: the simulated agent's own lines (recorded once from `gputui.agent --backend sim`),
  a hello then an 8-GPU sample a second, time and sequence rewritten;
- `instant-close`: the session ends at once with status 255 (a forced command, a nologin
  shell), before the agent bundle can be written;
- `silent`: says nothing; `dribble`: one byte a second, never a newline;
- `garbage`: random bytes in lines; `wrong-version`: protocol v2 lines;
- `zero-gpus`: a hello and samples with no GPU; `implausible`: samples with impossible values;
- `hostile-stderr`: Rich markup and terminal escape sequences on stderr, then exit 3.

DIR holds host_key and client_key.pub; the port is written to DIR/port. Exits when stdin closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncssh

from gputui.collect.loopback_sshd import ServerKeys, listen, publish, until_stopped

Process = asyncssh.SSHServerProcess[bytes]


def recorded_lines() -> tuple[dict[str, object], list[dict[str, object]]]:
    """A hello and samples written by the real agent on the simulated backend."""
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
        ],
        capture_output=True,
        check=True,
    ).stdout.splitlines()
    messages = [json.loads(line) for line in out]
    samples = [m for m in messages if m.get("type") == "sample"]
    return messages[0], samples


class Behaviours:
    def __init__(self, interval: float) -> None:
        self.interval = interval
        hello, self.samples = recorded_lines()
        hello["interval_s"] = interval
        self.hello = hello
        self.rng = random.Random(1)

    def line(self, msg: dict[str, object]) -> bytes:
        return json.dumps(msg, separators=(",", ":")).encode() + b"\n"

    def sample(self, seq: int, **changes: object) -> bytes:
        msg = dict(self.samples[seq % len(self.samples)], t=round(time.time(), 3), seq=seq)
        gpus = [dict(g) for g in msg["gpus"]]  # type: ignore[attr-defined]
        for key, value in changes.items():
            gpus[0][key] = value
        msg["gpus"] = gpus
        return self.line(msg)

    async def every_interval(self, process: Process, make: Callable[[int], bytes]) -> int:
        await asyncio.sleep(self.rng.uniform(0, self.interval))  # hosts are not in phase
        seq = 0
        while not process.stdout.is_closing():
            process.stdout.write(make(seq))
            seq += 1
            await asyncio.sleep(self.interval)
        return 0

    async def healthy(self, process: Process) -> int:
        process.stdout.write(self.line(self.hello))
        return await self.every_interval(process, self.sample)

    async def instant_close(self, process: Process) -> int:
        return 255

    async def silent(self, process: Process) -> int:
        await asyncio.sleep(3600)
        return 0

    async def dribble(self, process: Process) -> int:
        while True:
            process.stdout.write(b"{")
            await asyncio.sleep(1)

    async def garbage(self, process: Process) -> int:
        def junk(seq: int) -> bytes:
            return bytes(self.rng.randrange(256) for _ in range(80)).replace(b"\n", b"x") + b"\n"

        return await self.every_interval(process, junk)

    async def wrong_version(self, process: Process) -> int:
        process.stdout.write(self.line({"type": "hello", "v": 2, "host": "x", "gpus": {}}))
        return await self.every_interval(
            process, lambda seq: self.line({"type": "sample", "v": 2, "seq": seq})
        )

    async def zero_gpus(self, process: Process) -> int:
        process.stdout.write(self.line(dict(self.hello, gpus=[])))
        return await self.every_interval(
            process,
            lambda seq: self.line(
                {"type": "sample", "v": 1, "t": time.time(), "seq": seq, "gpus": []}
            ),
        )

    async def implausible(self, process: Process) -> int:
        process.stdout.write(self.line(self.hello))
        return await self.every_interval(
            process, lambda seq: self.sample(seq, util_pct=125066, power_w=1e300)
        )

    async def hostile_stderr(self, process: Process) -> int:
        process.stderr.write(
            b"\x1b]0;pwned\x07libnvidia-ml.so not found in [/usr/lib64/nvidia]\x1b[2J\n"
        )
        return 3

    def get(self, command: str) -> Callable[[Process], Awaitable[int]]:
        method = getattr(self, command.strip().replace("-", "_"), None)
        return method if callable(method) else self.instant_close


async def serve(directory: Path, interval: float) -> None:
    behaviours = Behaviours(interval)
    keys = ServerKeys.read(directory)

    async def handle(process: Process) -> None:
        async def drain() -> None:
            with contextlib.suppress(Exception):
                while await process.stdin.read(65536):
                    pass

        reader = asyncio.ensure_future(drain())
        try:
            code = await behaviours.get(process.command or "")(process)
            process.exit(code)
        except (asyncssh.Error, OSError):
            pass
        finally:
            reader.cancel()

    acceptor = await listen(keys, handle, backlog=4096)
    publish(directory / "port", str(acceptor.get_port()))
    await until_stopped()
    acceptor.close()


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 1.0))
