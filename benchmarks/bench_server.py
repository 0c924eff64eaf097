"""SSH servers standing in for GPU hosts, in their own process, for the ingest benchmarks.

One asyncssh listener on loopback serves every simulated host (each host is an ssh_config
alias pointing at it). Commands:

- `bench-stream ...` or the gputui agent bootstrap: a hello line, then one 8-GPU sample line
  per interval, as the agent writes them, until the channel closes;
- `bench-once`: one sample line, then exit (what exec-per-poll tools run every interval).

`bench-stream NAME` (or the bootstrap's `--host NAME`) names the host, so faults can be
injected on it through the control socket DIR/control.sock, one command a line, answered
`ok UNIX_TIME` (when the fault began on the host) or `unknown NAME`:

- `xid NAME`: the host's agent pushes an XID 79 event on GPU 0 at once (as NVML's event wait
  hands it over);
- `hot NAME`: GPU 0 of the host reads 110 C from its next sample on (a sampled fault: it shows
  at the host's next sample, up to one interval later);
- `cool NAME`: the host's samples are as recorded again.

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


def hot_gpu0(template: str) -> str:
    """The sample template with GPU 0 at 110 C (past every temperature limit)."""
    msg = json.loads(template)
    msg["gpus"][0]["temp_c"] = 110.0
    return json.dumps(msg, separators=(",", ":"))


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

    hot_templates = [hot_gpu0(t) for t in templates]
    streams: dict[str, asyncssh.SSHWriter[bytes]] = {}  # named hosts' stdout
    hot: set[str] = set()

    def sample(seq: int, name: str = "") -> bytes:
        text = (hot_templates if name in hot else templates)[seq % len(templates)]
        text = text.replace('"@T@"', f"{time.time():.3f}").replace('"@SEQ@"', str(seq))
        return (text + "\n").encode()

    async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            what, _, name = line.decode().strip().partition(" ")
            out = streams.get(name)
            if out is None:
                writer.write(f"unknown {name}\n".encode())
                continue
            began = time.time()
            if what == "xid":
                event = {
                    "type": "event",
                    "v": 1,
                    "t": began,
                    "kind": "xid",
                    "gpu": 0,
                    "xid": 79,
                    "text": "GPU has fallen off the bus",
                }
                out.write(json.dumps(event).encode() + b"\n")
            elif what == "hot":
                hot.add(name)
            else:
                hot.discard(name)
            writer.write(f"ok {began:.6f}\n".encode())
            await writer.drain()
        writer.close()

    async def handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
        command = process.command or ""
        words = command.split()
        name = ""  # bench-stream NAME, or the agent bootstrap's --host NAME
        if words[:1] == ["bench-stream"] and len(words) > 1:
            name = words[1]
        elif "--host" in words[:-1]:
            name = words[words.index("--host") + 1]

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
            if name:
                streams[name] = process.stdout
            await asyncio.sleep(rng.uniform(0, interval))  # hosts are not in phase
            seq = 0
            next_t = time.monotonic()
            while not process.stdout.is_closing():
                process.stdout.write(sample(seq, name))
                seq += 1
                next_t += interval
                await asyncio.sleep(max(0.0, next_t - time.monotonic()))
        except (asyncssh.Error, OSError):
            pass
        finally:
            reader.cancel()
            if name and streams.get(name) is process.stdout:
                del streams[name]

    acceptor = await listen(keys, handle, backlog=4096)
    controller = await asyncio.start_unix_server(control, path=str(directory / "control.sock"))
    publish(directory / "port", str(acceptor.get_port()))
    await until_stopped()
    controller.close()
    acceptor.close()


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1]), float(sys.argv[2])))
