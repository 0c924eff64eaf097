"""The jobs of a simulated host: which GPU runs whose processes, and the requeue of a job.

The collector decides the jobs of a simulated fleet and hands each host its share in its
scenario (`[[job]]`, docs/scenarios.md); this module plays them on the host:

- each GPU runs its job's workload profile (training, inference); a GPU without a job idles;
- a job's rhythm (checkpoint period, write and evaluation lengths, phase) is drawn from its
  id, not from the host's seed, so every host of a multi-host job writes its checkpoints at
  the same moments, as the ranks of a data-parallel job do. On the real clock the rhythm
  counts Unix time, so hosts whose agents started seconds apart are still in step;
- each process reports its owner (uid, user, job) as the real agent's attribution does;
- a Slurm job whose id appears in `requeue_file` (the demo's stand-in scheduler writes it)
  leaves the host's GPUs: its processes end and its GPUs idle, as a requeue kills the job on
  every node. Nothing starts it again: the stand-in places no jobs.
"""

from __future__ import annotations

import os
import random
import zlib
from typing import Any, Dict

from .workload import Inference, Training, Workload

# The file is read when it changes, looked at once a simulated second: a stat per host per
# second, which a thousand simulated hosts on one machine do not feel.
_REQUEUE_FILE_MAX = 1 << 20

Json = Dict[str, Any]


class _Job:
    """One job on this host: its GPUs, its processes' profile and who they belong to."""

    def __init__(self, spec: Json, rng: random.Random) -> None:
        self.spec = spec
        self.gpus: list[int] = spec["gpus"]
        if spec["workload"] == "inference":
            self.workload: Workload = Inference(rng, len(self.gpus))
        else:
            # The rhythm from the job's identity, the same on every host of the job; crc32
            # because str hashes differ between processes.
            timeline = random.Random(zlib.crc32(f"{spec['kind']}:{spec['id']}".encode()))
            self.workload = Training(rng, len(self.gpus), timeline)
        ref = {"kind": spec["kind"], "id": spec["id"], "source": spec["source"]}
        for key in ("step", "namespace", "name", "container"):
            if key in spec:
                ref[key] = spec[key]
        self.owner: Json = {"uid": spec["uid"], "job": ref}
        if "user" in spec:
            self.owner["user"] = spec["user"]
        self.pids = {pid for i in range(len(self.gpus)) for pid in self.workload.gpu_pids(i)}
        self.requeued = False


class HostJobs(Workload):
    """The workload of a host that runs scheduled jobs: per GPU, its job's, or idle."""

    name = "jobs"

    def __init__(
        self,
        rng: random.Random,
        n_gpus: int,
        jobs: list[Json],
        origin_s: float = 0.0,
        requeue_file: str | None = None,
    ) -> None:
        """`origin_s`: where the simulation's t=0 lies on the jobs' clock (its Unix start
        time on the real clock, so hosts started apart agree; 0 on an injected one)."""
        super().__init__(rng, n_gpus)
        self.origin_s = origin_s
        self.jobs = [_Job(spec, rng) for spec in jobs]
        self._slots: list[tuple[_Job, int] | None] = [None] * n_gpus
        for job in self.jobs:
            for local, index in enumerate(job.gpus):
                self._slots[index] = (job, local)
        self._requeue_file = requeue_file
        self._requeue_polled = -1  # the simulated second of the last look
        self._requeue_seen: tuple[int, int] | None = None  # (mtime_ns, size) read

    def step(self, t: float, dt: float) -> None:
        if self._requeue_file is not None and int(t) != self._requeue_polled:
            self._requeue_polled = int(t)
            self._read_requeues(self._requeue_file)
        # Every job draws its noise, requeued or not, so the others replay the same.
        for job in self.jobs:
            job.workload.step(t + self.origin_s, dt)

    def _slot(self, index: int) -> tuple[_Job, int] | None:
        slot = self._slots[index]
        return None if slot is None or slot[0].requeued else slot

    def util(self, index: int, t: float) -> tuple[float, float]:
        slot = self._slot(index)
        if slot is None:
            return 0.0, 0.0
        return slot[0].workload.util(slot[1], t + self.origin_s)

    def memory_fraction(self, index: int) -> float:
        slot = self._slot(index)
        return 0.0 if slot is None else slot[0].workload.memory_fraction(slot[1])

    def gpu_pids(self, index: int) -> list[int]:
        slot = self._slot(index)
        return [] if slot is None else slot[0].workload.gpu_pids(slot[1])

    def process_name_of(self, index: int) -> str:
        slot = self._slot(index)
        return "" if slot is None else slot[0].workload.process_name

    def owner(self, pid: int) -> Json:
        for job in self.jobs:
            if not job.requeued and pid in job.pids:
                return job.owner
        return {}

    def _read_requeues(self, path: str) -> None:
        """Requeue the Slurm jobs whose ids the stand-in scheduler has written to `path`
        (one per line, or comma-separated as `scontrol requeue 12,13` takes them)."""
        try:
            st = os.stat(path)
            if (st.st_mtime_ns, st.st_size) == self._requeue_seen:
                return
            with open(path, "rb") as f:
                text = f.read(_REQUEUE_FILE_MAX).decode("ascii", "replace")
        except OSError:
            return  # no requeue yet, or the demo is ending
        self._requeue_seen = (st.st_mtime_ns, st.st_size)
        ids = {word.strip() for line in text.splitlines() for word in line.split(",")}
        for job in self.jobs:
            if job.spec["kind"] == "slurm" and job.spec["id"] in ids:
                job.requeued = True
