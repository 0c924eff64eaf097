"""In-process SSH servers with scripted agents, for fast collector tests.

Stands up real asyncssh servers on loopback (generated host key, port 0) and writes the
ssh_config and known_hosts that the collector reads, as a user's ~/.ssh would hold them. Each
host runs a scripted "agent" instead of the real one, so a test can make it stream, drop the
connection, send garbage, exit non-zero or hang, on cue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from gputui.collect.ssh import SshOptions

Script = Callable[["asyncssh.SSHServerProcess[bytes]", "FakeHost"], Awaitable[int]]


def hello_line(host: str, gpus: int = 2, interval: float = 0.1, backend: str = "sim") -> bytes:
    return (
        json.dumps(
            {
                "v": 1,
                "type": "hello",
                "host": host,
                "agent_version": "test",
                "backend": backend,
                "interval_s": interval,
                "slow_every": 10,
                "gpus": [
                    {
                        "index": i,
                        "uuid": f"GPU-{host}-{i}",
                        "name": "NVIDIA H100 80GB HBM3",
                        "memory_total_mib": 81559,
                        "power_limit_w": 700,
                        "temp_slowdown_c": 89,
                        "temp_shutdown_c": 92,
                        "temp_gpu_max_c": 87,
                    }
                    for i in range(gpus)
                ],
            }
        ).encode()
        + b"\n"
    )


def sample_line(seq: int, gpus: int = 2, temp: float = 50.0, t: float = 0.0) -> bytes:
    return (
        json.dumps(
            {
                "v": 1,
                "type": "sample",
                "t": t or float(seq),
                "seq": seq,
                "gpus": [
                    {
                        "index": i,
                        "util_pct": 90,
                        "temp_c": temp,
                        "power_w": 500,
                        "mem_used_mib": 40000,
                        "sm_clock_mhz": 1980,
                        "clock_events": 0,
                    }
                    for i in range(gpus)
                ],
            }
        ).encode()
        + b"\n"
    )


async def stream_forever(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
    process.stdout.write(hello_line(host.name, interval=host.interval))
    seq = 0
    while True:
        process.stdout.write(sample_line(seq))
        seq += 1
        await asyncio.sleep(host.interval)


@dataclass
class FakeHost:
    name: str
    script: Script = stream_forever
    interval: float = 0.1
    port: int = 0
    sessions: int = 0
    commands: list[str] = field(default_factory=list)
    stdin_bytes: int = 0
    acceptor: asyncssh.SSHAcceptor | None = None
    connections: list[asyncssh.SSHServerConnection] = field(default_factory=list)

    def drop(self) -> None:
        """Kill every open connection to this host, as a network cut would."""
        for conn in list(self.connections):
            conn.abort()
        self.connections.clear()


class FakeFleet:
    """Several scripted SSH hosts plus the client-side files that point at them."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.hosts: dict[str, FakeHost] = {}
        self._untrusted: set[str] = set()
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key.write_private_key(str(directory / "id_test"))
        (directory / "id_test").chmod(0o600)

    def options(self, **overrides: object) -> SshOptions:
        base = dict(
            config_files=(self.dir / "ssh_config",),
            known_hosts=self.dir / "known_hosts",
            connect_timeout_s=5.0,
            keepalive_interval_s=1.0,
            keepalive_count_max=2,
        )
        base.update(overrides)
        return SshOptions(**base)  # type: ignore[arg-type]

    async def add(
        self, host: FakeHost, trust: bool = True, refuse_sessions: bool = False
    ) -> FakeHost:
        """Serve `host`; with `refuse_sessions` it logs clients in but opens no session (a
        restricted account), so no command ever runs."""
        fleet = self

        class Server(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                host.connections.append(conn)

            def connection_lost(self, exc: Exception | None) -> None:
                pass

            def session_requested(self) -> bool:
                return False  # asked only when no process factory serves sessions

        async def handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
            host.sessions += 1
            host.commands.append(process.command or "")

            async def drain_stdin() -> None:
                with contextlib.suppress(Exception):
                    while True:
                        data = await process.stdin.read(65536)
                        if not data:
                            break
                        host.stdin_bytes += len(data)

            reader = asyncio.ensure_future(drain_stdin())
            try:
                code = await host.script(process, host)
                process.exit(code)
            except (asyncssh.Error, OSError, asyncio.CancelledError):
                pass
            finally:
                reader.cancel()

        acceptor = await asyncssh.listen(
            "127.0.0.1",
            0,
            server_factory=Server,
            server_host_keys=[fleet.host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(
                self.client_key.export_public_key().decode()
            ),
            process_factory=None if refuse_sessions else handle,
            encoding=None,
        )
        host.acceptor = acceptor
        host.port = acceptor.get_port()
        self.hosts[host.name] = host
        if not trust:
            self._untrusted.add(host.name)
        self.write_client_files()
        return host

    def write_client_files(self) -> None:
        pub = self.host_key.export_public_key().decode().strip()
        with (self.dir / "known_hosts").open("w") as kh, (self.dir / "ssh_config").open("w") as cfg:
            for h in self.hosts.values():
                if h.name not in self._untrusted:
                    kh.write(f"[127.0.0.1]:{h.port} {pub}\n")
                cfg.write(
                    f"Host {h.name}\n  HostName 127.0.0.1\n  Port {h.port}\n  User tester\n"
                    f"  IdentityFile {self.dir / 'id_test'}\n\n"
                )

    async def close(self) -> None:
        for h in self.hosts.values():
            h.drop()
            if h.acceptor is not None:
                h.acceptor.close()
                await h.acceptor.wait_closed()
