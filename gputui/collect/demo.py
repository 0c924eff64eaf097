"""The demo fleet: simulated GPU hosts behind real SSH servers on loopback.

`DemoFleet` generates a host key and a client key in a private scratch directory (scratch.py),
starts the servers in a child process (gputui.collect.demo_server), and writes an ssh_config
and a known_hosts for them, so the collector reaches the simulated hosts exactly as it reaches
real ones: aliases resolved through ssh_config, host keys verified, the agent shipped over SSH.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from gputui.collect.scratch import make_scratch, remove_scratch, remove_stale
from gputui.collect.ssh import SshOptions
from gputui.collect.tick import MIN_TICK_S

START_TIMEOUT_S = 60.0
# `gputui demo --interval` takes less than a hosts file (gputui/config/interval.py): every
# simulated host and its SSH server run on this machine, so none samples faster than the
# monitor can tick, and past a minute the demo shows nothing moving.
DEMO_MIN_INTERVAL_S = MIN_TICK_S
DEMO_MAX_INTERVAL_S = 60.0

# The demo's stand-in scheduler (gputui/cli/demo_setup.py) keeps its state in the fleet's
# scratch: SCHEDULER_NODES/<node> lists the Slurm jobs running on a node, one id a line, and
# SCHEDULER_REQUEUED the ids requeued since, which the simulated hosts read (agent/simjobs.py).
SCHEDULER_DIR = "scheduler"
SCHEDULER_NODES = "nodes"
SCHEDULER_REQUEUED = "requeued"
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class DemoHost:
    name: str
    port: int
    scenario: dict[str, Any]
    seed: int
    spare: bool = False  # one of the fleet's spares: healthy, idle


def default_spares(n_hosts: int) -> int:
    """How many of the demo's hosts are spares: none of one host, one of 2-7, two of 8+."""
    return 0 if n_hosts < 2 else 1 if n_hosts < 8 else 2


class DemoFleetError(Exception):
    pass


def write_scheduler(
    scheduler: Path, assignment: list[tuple[str, dict[str, Any]]]
) -> list[tuple[str, dict[str, Any]]]:
    """The stand-in scheduler's files in `scheduler` for the hosts of `assignment`, and the
    assignment with each host that runs jobs told where to read their requeues."""
    nodes = scheduler / SCHEDULER_NODES
    nodes.mkdir(parents=True)
    requeued = scheduler / SCHEDULER_REQUEUED
    requeued.touch()
    out = []
    for name, sc in assignment:
        jobs = sc.get("job") or []
        if jobs and _PLAIN_NAME.fullmatch(name):  # a name that is a file name, nothing more
            ids = dict.fromkeys(j["id"] for j in jobs if j["kind"] == "slurm")
            (nodes / name).write_text("".join(f"{i}\n" for i in ids))
            sc = {**sc, "requeue_file": str(requeued)}
        out.append((name, sc))
    return out


class DemoFleet:
    """N simulated hosts; use as `async with DemoFleet(8) as fleet:`."""

    def __init__(
        self,
        n_hosts: int,
        seed: int = 1,
        scenario: str | None = None,
        spares: int = 0,
        *,
        given: Sequence[tuple[str, dict[str, Any]]] | None = None,
    ) -> None:
        if given is not None:
            n_hosts = len(given)
        if n_hosts < 1:
            raise DemoFleetError("the demo fleet needs at least one host")
        if not 0 <= spares < n_hosts:
            raise DemoFleetError("the demo fleet's spares must leave at least one host in service")
        self.n_hosts = n_hosts
        self.seed = seed
        self.scenario = scenario  # one named scenario for every host, instead of the demo mix
        self.spares = spares  # the last hosts are spares: healthy and idle
        self.given = given  # each host's name and scenario, instead of the demo mix
        self.hosts: list[DemoHost] = []
        self.directory: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def ssh_options(self) -> SshOptions:
        assert self.directory is not None
        return SshOptions(
            config_files=(self.directory / "ssh_config",),
            known_hosts=self.directory / "known_hosts",
            keepalive_interval_s=5.0,
            max_handshakes=64,
        )

    async def __aenter__(self) -> DemoFleet:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def assignment(self) -> list[tuple[str, dict[str, Any]]]:
        """Each host's name and scenario: the given ones as given, or the demo mix, or the one
        scenario, with the spares last and jobs on the others' GPUs (collect/sim_jobs.py)."""
        from gputui.collect.scenarios import demo_assignment, load_scenario, spare_scenario
        from gputui.collect.sim_jobs import assign_jobs

        if self.given is not None:
            return [(name, dict(sc)) for name, sc in self.given]
        if self.scenario is not None:
            scenario = load_scenario(self.scenario)
            hosts = [(f"sim-{i + 1:03d}", scenario) for i in range(self.n_hosts)]
        else:
            hosts = demo_assignment(self.n_hosts, self.seed)
        first_spare = self.n_hosts - self.spares
        hosts = [
            (name, spare_scenario(sc) if i >= first_spare else sc)
            for i, (name, sc) in enumerate(hosts)
        ]
        # After the spares are set: a job never spans a host that waits idle for work.
        return assign_jobs(hosts, self.seed)

    @property
    def scheduler(self) -> Path:
        """The stand-in scheduler's directory (see SCHEDULER_DIR) of the running fleet."""
        assert self.directory is not None
        return self.directory / SCHEDULER_DIR

    def start(self) -> None:
        assignment = self.assignment()
        remove_stale()  # what killed runs left: their keys and logs
        directory = make_scratch()
        self.directory = directory
        assignment = write_scheduler(self.scheduler, assignment)
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        client_key = asyncssh.generate_private_key("ssh-ed25519")
        host_key.write_private_key(str(directory / "host_key"))
        client_key.write_private_key(str(directory / "client_key"))
        client_key.write_public_key(str(directory / "client_key.pub"))
        names = [name for name, _ in assignment]
        (directory / "hosts.json").write_text(json.dumps(names))
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "gputui.collect.demo_server", str(directory)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=(directory / "server.log").open("wb"),
        )
        ports = self._wait_for_ports(directory)
        pub = host_key.export_public_key("openssh").decode().strip()
        with (
            (directory / "known_hosts").open("w") as kh,
            (directory / "ssh_config").open("w") as cfg,
        ):
            for i, (name, scenario) in enumerate(assignment):
                port = ports[name]
                kh.write(f"[127.0.0.1]:{port} {pub}\n")
                cfg.write(
                    f"Host {name}\n  HostName 127.0.0.1\n  Port {port}\n  User gputui\n"
                    f"  IdentityFile {directory / 'client_key'}\n\n"
                )
                spare = i >= self.n_hosts - self.spares
                self.hosts.append(DemoHost(name, port, scenario, self.seed * 100_003 + i, spare))

    def _wait_for_ports(self, directory: Path) -> dict[str, int]:
        deadline = time.monotonic() + START_TIMEOUT_S
        path = directory / "ports.json"
        while time.monotonic() < deadline:
            if path.exists():
                ports: dict[str, int] = json.loads(path.read_text())
                return ports
            assert self._proc is not None
            if self._proc.poll() is not None:
                log = (directory / "server.log").read_text(errors="replace").strip()
                self.stop()
                raise DemoFleetError(f"demo SSH servers failed to start: {log[-500:]}")
            time.sleep(0.02)
        self.stop()
        raise DemoFleetError(f"demo SSH servers did not start within {START_TIMEOUT_S:g} s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()  # the server's signal to stop and kill its agents
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.directory is not None:
            remove_scratch(self.directory)
            self.directory = None
