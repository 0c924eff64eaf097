"""A real Slurm job's process, attributed to its job by the agent (tests/slurm.py's cluster).

The job runs `sleep 300` under slurmstepd on gpu001. The NVML backend reads a simulated GPU
that lists that real pid as its compute process, so the process goes through the same slow read
a GPU host's does, and the default attributor reads the real /proc: from the job's cgroup when
the cluster tracks processes with proctrack/cgroup, else (linuxproc, the test cluster's recipe)
from the environment slurmstepd gave it.
"""

from __future__ import annotations

import pwd
import re
from collections.abc import Iterator
from typing import Any

import pytest

from gputui.agent.attribution import ProcAttribution
from gputui.agent.nvml_backend import NvmlBackend
from gputui.agent.simnvml import SimNvml
from gputui.agent.simulation import Simulation
from tests.agent_sim import FakeClock
from tests.slurm import RunningJob, SlurmCluster

pytestmark = pytest.mark.system


class OneProcess:
    """A simulated NVML whose first GPU runs the given host process."""

    def __init__(self, pid: int) -> None:
        sc = {"name": "slurm", "gpus": 1, "workload": "idle"}
        self._nv = SimNvml(Simulation(sc, seed=0, clock=FakeClock()))
        self._pid = pid

    def __getattr__(self, name: str) -> Any:
        return getattr(self._nv, name)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]:
        entry = type("Process", (), {"pid": self._pid, "usedGpuMemory": 1 << 30})
        return [entry()]

    def nvmlSystemGetProcessName(self, pid: int) -> str:
        return "/usr/bin/sleep"


def proctrack(cluster: SlurmCluster) -> str:
    m = re.search(r"^ProctrackType=(\S+)", cluster.conf.read_text(), re.M)
    return m.group(1) if m else "proctrack/cgroup"  # Slurm's default


@pytest.fixture
def backend(running_job: RunningJob) -> Iterator[NvmlBackend]:
    b = NvmlBackend(OneProcess(running_job.pid), event_thread=False)
    b.hello()
    yield b
    b.close()


def test_the_agent_names_the_slurm_job_of_a_real_process(
    slurm_cluster: SlurmCluster,
    running_job: RunningJob,
    backend: NvmlBackend,
) -> None:
    assert isinstance(backend.attribute_process, ProcAttribution)  # the real /proc reader
    [proc] = backend.sample(slow=True)["gpus"][0]["processes"]
    assert proc["pid"] == running_job.pid
    source = "cgroup" if proctrack(slurm_cluster) == "proctrack/cgroup" else "environ"
    assert proc["job"]["kind"] == "slurm"
    assert proc["job"]["id"] == running_job.id
    assert proc["job"]["source"] == source
    owner = slurm_cluster.job(running_job.id)["UserId"]  # "root(0)"
    assert proc["uid"] == int(owner.split("(")[1].rstrip(")"))
    assert proc["user"] == pwd.getpwuid(proc["uid"]).pw_name == owner.split("(")[0]
