"""A scripted fleet running training jobs, for the tests of the Jobs view (core, CLI, TUI).

It is tests/fake_fleet.py's small fleet (one host of each kind an operator meets) whose GPU
processes carry jobs as the agent attributes them: Slurm jobs over one and several hosts,
Kubernetes pods, and plain processes left without a job.
"""

from __future__ import annotations

import msgspec

from gputui.core.model import GpuProcess, GpuReading, JobRef, Sample
from tests.fake_fleet import FakeFleet, HostScript, small_fleet

ALICE = JobRef(kind="slurm", id="4242", step="0")  # gpu001-gpu002, all GPUs: healthy
BOB = JobRef(kind="slurm", id="4243", step="0")  # gpu003-gpu004: a warning and a critical GPU
CAROL = JobRef(kind="slurm", id="4250", step="batch")  # gpu005 GPUs 0-2; GPU3 falls off the bus
DAVE = JobRef(kind="slurm", id="4260", step="0")  # gpu006, unreachable since
POD_UID = "7f3c2a9e-1b2d-4c5e-8f90-a1b2c3d4e5f6"
POD = JobRef(
    kind="k8s",
    id=POD_UID,
    namespace="infer",
    name="vllm-0",
    container="cri-containerd-3f2a",
)

#: host -> GPU -> (job, user) of the one process on it; GPUs not listed run a plain process.
PLACEMENT: dict[str, dict[int, tuple[JobRef, str]]] = {
    "gpu001": {i: (ALICE, "alice") for i in range(8)},
    "gpu002": {i: (ALICE, "alice") for i in range(8)},
    "gpu003": {i: (BOB, "bob") for i in range(8)},
    "gpu004": {i: (BOB, "bob") for i in range(8)},
    "gpu005": {i: (CAROL, "carol") for i in range(3)},
    "gpu006": {i: (DAVE, "dave") for i in range(8)},
    "gpu009": {i: (POD, "svc-infer") for i in range(4)},
}


class JobsFleet(FakeFleet):
    """FakeFleet whose slow samples list each GPU's process with its owner and job."""

    def __init__(
        self, scripts: list[HostScript], placement: dict[str, dict[int, tuple[JobRef, str]]]
    ):
        super().__init__(scripts)
        self.placement = {host: dict(gpus) for host, gpus in placement.items()}  # tests change it

    def _sample(self, s: HostScript, tick: int) -> Sample:
        sample = super()._sample(s, tick)
        if not sample.slow:
            return sample
        placed = self.placement.get(s.name, {})
        gpus = [self._attributed(s.name, r, placed) for r in sample.gpus]
        return msgspec.structs.replace(sample, gpus=gpus)

    @staticmethod
    def _attributed(
        host: str, reading: GpuReading, placed: dict[int, tuple[JobRef, str]]
    ) -> GpuReading:
        if reading.processes is None:
            return reading
        owner = placed.get(reading.index)
        procs = [
            GpuProcess(
                pid=p.pid,
                name=p.name,
                used_memory_mib=p.used_memory_mib,
                uid=1000 + sum(map(ord, owner[1])) % 1000 if owner else 0,
                user=owner[1] if owner else "root",
                job=owner[0] if owner else None,
            )
            for p in reading.processes
        ]
        return msgspec.structs.replace(reading, processes=procs)


def jobs_fleet() -> JobsFleet:
    """The small fleet (gpu001-gpu010) with the jobs of PLACEMENT."""
    return JobsFleet(list(small_fleet().scripts.values()), PLACEMENT)
