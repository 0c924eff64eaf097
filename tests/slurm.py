"""A real Slurm on this machine for the action tests: slurmctld and four slurmd as gpu001-gpu004.

The recipe of REFERENCE.md: root, no systemd, munge, SlurmUser=root, linuxproc proctrack, no
accounting, every node a `slurmd -N gpu00X` on 127.0.0.1 with its own port. Everything lives in
temporary directories: its own munged (as user munge, on its own socket named in slurm.conf by
AuthInfo), its own state, so a test run never touches /etc/slurm or a munged already running,
and two runs on one machine do not meet. Daemons run in the foreground as children of the
test process and are stopped (jobs cancelled, `scontrol shutdown`, then killed) afterwards.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_SYSTEM, need_program

NODES = ("gpu001", "gpu002", "gpu003", "gpu004")
PROGRAMS = ("slurmctld", "slurmd", "scontrol", "sbatch", "squeue", "scancel", "sinfo", "munged")


def _need_root() -> None:
    if os.geteuid() == 0:
        return
    message = "a test Slurm runs its daemons as root (SlurmUser=root); not root here"
    if REQUIRE_SYSTEM:
        pytest.fail(message + " and GPUTUI_REQUIRE_SYSTEM=1 forbids skipping")
    pytest.skip(message)


def _free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_block(start: int, count: int) -> int:
    """The first port from `start` with `count` free ports in a row (17001 in the recipe)."""
    port = start
    while port < 65000:
        if all(_free(p) for p in range(port, port + count)):
            return port
        port += count
    raise RuntimeError("no free block of ports for slurmd")


@dataclass(frozen=True)
class NodeInfo:
    name: str
    state: str  # e.g. IDLE, IDLE+DRAIN, ALLOCATED+DRAIN
    reason: str  # without the "[user@time]" suffix

    @property
    def flags(self) -> set[str]:
        return {t.rstrip("*~#!%$@^-") for t in self.state.split("+")}


class SlurmCluster:
    def __init__(self, directory: Path) -> None:
        self.programs = {p: need_program(p, f"/usr/sbin/{p}") for p in PROGRAMS}
        _need_root()
        self.dir = directory
        self.conf = directory / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.munge_dir = Path(tempfile.mkdtemp(prefix="gputui-munge-"))  # reachable by munge
        self.munge_socket = self.munge_dir / "munge.socket"

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._start_munge()
        ctld_port = _port_block(16817, 1)
        node_port = _port_block(17001, len(NODES))
        state = self.dir / "state"
        state.mkdir()  # fresh: no jobs or node states from an earlier run
        for node in NODES:
            (self.dir / "spool" / node).mkdir(parents=True)
        self.conf.write_text(
            f"ClusterName=gputui\n"
            f"SlurmctldHost=localhost\n"
            f"SlurmctldPort={ctld_port}\n"
            f"SlurmUser=root\n"
            f"AuthType=auth/munge\n"
            f"AuthInfo=socket={self.munge_socket}\n"
            f"StateSaveLocation={state}\n"
            f"SlurmdSpoolDir={self.dir}/spool/%n\n"
            f"SlurmctldPidFile={self.dir}/slurmctld.pid\n"
            f"SlurmdPidFile={self.dir}/slurmd.%n.pid\n"
            f"SlurmctldLogFile={self.dir}/slurmctld.log\n"
            f"SlurmdLogFile={self.dir}/slurmd.%n.log\n"
            "ProctrackType=proctrack/linuxproc\n"
            "TaskPlugin=task/none\n"
            "MpiDefault=none\n"
            "ReturnToService=1\n"
            "SchedulerType=sched/backfill\n"
            "SelectType=select/cons_tres\n"
            "AccountingStorageType=accounting_storage/none\n"
            "JobAcctGatherType=jobacct_gather/none\n"
            "JobCompType=jobcomp/none\n"
            f"NodeName=gpu[001-004] NodeHostname=localhost NodeAddr=127.0.0.1 "
            f"Port={node_port}-{node_port + len(NODES) - 1} CPUs=1 RealMemory=500\n"
            # OverSubscribe lets two small jobs share a 1-CPU node (the no-requeue test).
            "PartitionName=gpu Nodes=gpu[001-004] Default=YES MaxTime=INFINITE State=UP "
            "OverSubscribe=YES\n"
        )
        self._spawn([self.programs["slurmctld"], "-D"], "slurmctld.out")
        self.wait(lambda: "UP" in self.run("scontrol", "ping", check=False).stdout, 30, "slurmctld")
        for node in NODES:
            self._spawn([self.programs["slurmd"], "-D", "-N", node], f"slurmd.{node}.out")
        self.wait(self.all_idle, 60, "four idle nodes")

    def _start_munge(self) -> None:
        munge = pwd.getpwnam("munge")
        key = self.munge_dir / "munge.key"
        system_key = Path("/etc/munge/munge.key")
        if system_key.exists():
            shutil.copyfile(system_key, key)
        else:
            key.write_bytes(os.urandom(1024))
        for path in (self.munge_dir, key):
            os.chown(path, munge.pw_uid, munge.pw_gid)
        key.chmod(0o600)
        self.munge_dir.chmod(0o755)  # munged wants clients able to reach its socket
        d = self.munge_dir
        self._spawn(
            [
                self.programs["munged"],
                "--foreground",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={d}/munged.pid",
                f"--log-file={d}/munged.log",
                f"--seed-file={d}/munged.seed",
            ],
            "munged.out",
            user=munge.pw_uid,
            group=munge.pw_gid,
        )
        self.wait(self.munge_socket.exists, 15, "munged")

    def _spawn(self, argv: list[str], log: str, **kw: object) -> None:
        out = (self.dir / log).open("ab")
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.env,
            **kw,  # type: ignore[call-overload]
        )
        self.procs.append(proc)

    def stop(self) -> None:
        if any(p.poll() is None for p in self.procs[1:]):
            self.cancel_all()
            self.run("scontrol", "shutdown", check=False)
        deadline = time.monotonic() + 10
        for proc in reversed(self.procs):  # slurm first, munged last
            if proc is self.procs[0]:
                proc.terminate()
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(self.munge_dir, ignore_errors=True)

    # -- commands -----------------------------------------------------------------------------

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        prog = self.programs.get(argv[0], argv[0])
        result = subprocess.run(
            [prog, *argv[1:]], env=self.env, capture_output=True, text=True, timeout=30
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {result.stderr or result.stdout}")
        return result

    def submit(self, *args: str) -> str:
        out = self.run("sbatch", "--parsable", "-o", "/dev/null", *args).stdout
        return out.strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        text = self.run("scontrol", "-o", "show", "job", job_id).stdout
        return dict(re.findall(r"(\w+)=(\S*)", text))

    def node(self, name: str) -> NodeInfo:
        line = self.run("scontrol", "-o", "show", "node", name).stdout.strip()
        state = re.search(r"\bState=(\S+)", line)
        reason = re.search(r"\bReason=(.*?)(?: \[[^\]]*\])?$", line)
        return NodeInfo(name, state.group(1) if state else "", reason.group(1) if reason else "")

    def all_idle(self) -> bool:
        return all(self.node(n).state == "IDLE" for n in NODES)

    def cancel_all(self) -> None:
        jobs = self.run("squeue", "-h", "-o", "%A", check=False).stdout.split()
        if jobs:
            self.run("scancel", *jobs, check=False)
            self.wait(
                lambda: not self.run("squeue", "-h", "-o", "%A").stdout.strip(), 30, "no jobs"
            )

    def reset(self) -> None:
        """Between tests: no jobs, every node in service."""
        self.cancel_all()
        for node in NODES:
            if self.node(node).state != "IDLE":
                self.run("scontrol", "update", f"NodeName={node}", "State=RESUME", check=False)
        self.wait(self.all_idle, 30, "four idle nodes")

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                logs = "".join(
                    f"\n--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                    for p in sorted(self.dir.glob("*.log"))
                )
                raise RuntimeError(f"timed out waiting for {what}{logs}")
            time.sleep(0.1)


@dataclass(frozen=True)
class RunningJob:
    """A batch job running `sleep` on one node of the test Slurm, and that process's pid."""

    id: str
    node: str
    pid: int


def job_process(job_id: str, command: str) -> int | None:
    """The pid of a process named `command` in job `job_id` on this machine: the one whose
    environment slurmstepd gave SLURM_JOB_ID=job_id (linuxproc keeps no job cgroup)."""
    wanted = f"SLURM_JOB_ID={job_id}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue  # ended meanwhile
        if comm == command and wanted in env:
            return int(entry)
    return None


@pytest.fixture
def running_job(slurm_cluster: SlurmCluster) -> Iterator[RunningJob]:
    """A requeueable `sleep 300` running on gpu001; cancelled afterwards."""
    slurm_cluster.reset()
    job_id = slurm_cluster.submit("--requeue", "-w", "gpu001", "--wrap", "sleep 300")
    try:
        slurm_cluster.wait(lambda: slurm_cluster.job(job_id)["JobState"] == "RUNNING", 30, "job")
        slurm_cluster.wait(lambda: job_process(job_id, "sleep") is not None, 30, "its process")
        pid = job_process(job_id, "sleep")
        assert pid is not None
        yield RunningJob(job_id, "gpu001", pid)
    finally:
        slurm_cluster.run("scancel", job_id, check=False)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
