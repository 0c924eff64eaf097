"""Heartbeats of a simulated host's training jobs, for the demo and the tests.

A real training loop watched by gputui writes a heartbeat file per rank (gputui/train); the
simulator's jobs have no process to write one, so a job with `heartbeat = true` in its scenario
gets its ranks' heartbeats from here, in the same fields the agent reads from files
(heartbeat.py). Its steps follow the physics of its GPUs: a rank's own work per step is the
job's base step time scaled by how far its SM clock is below the board's maximum, so a GPU held
down by a thermal slowdown, a power brake or a straggling clock computes its steps more slowly;
and the ranks of a data-parallel job wait for each other, so every rank of the job on the host
steps at the pace of the slowest. Checkpoint writes and idle GPUs make no steps.

The job's base step time is drawn from its identity, as its rhythm is (simjobs.py), so every
host of a job steps alike.
"""

from __future__ import annotations

import random
import zlib
from typing import Any, Dict

Json = Dict[str, Any]

# Below this utilisation a rank is not stepping (a checkpoint write, an idle GPU).
_BUSY_UTIL = 0.5


class _Ranks:
    """One job's ranks on this host and their progress."""

    def __init__(self, job: Any) -> None:
        self.job = job
        spec = job.spec
        rhythm = random.Random(zlib.crc32(f"beats:{spec['kind']}:{spec['id']}".encode()))
        self.base_s = rhythm.uniform(0.25, 0.8)  # seconds per step at full clocks
        self.first_rank = int(spec.get("first_rank", 0))
        self.steps = 0.0
        self.step_time_s = self.base_s
        self.compute_s = [self.base_s] * len(job.gpus)


class SimBeats:
    """The heartbeats of the jobs of `jobs` (simjobs.HostJobs) that ask for them."""

    def __init__(self, jobs: Any, gpus: list[Any]) -> None:
        self.gpus = gpus
        self.ranks = [_Ranks(j) for j in jobs.jobs if j.spec.get("heartbeat")]

    def step(self, dt: float) -> None:
        """Advance every job's steps by one simulation step of `dt` seconds."""
        for r in self.ranks:
            if r.job.requeued:
                continue
            busy = True
            for local, index in enumerate(r.job.gpus):
                g = self.gpus[index]
                if g.status != "ok" or g.util < _BUSY_UTIL:
                    busy = False
                    continue
                clock = max(g.sm_mhz, 1) / float(g.model.sm_max_mhz)
                r.compute_s[local] = r.base_s / min(1.0, clock)
            if busy:
                # Data-parallel ranks meet at every all-reduce: the slowest sets the pace.
                r.step_time_s = max(r.compute_s)
                r.steps += dt / r.step_time_s

    def beats(self, wall: float) -> list[Json]:
        """Each rank's heartbeat as the agent forwards it, written at `wall` (Unix time)."""
        out: list[Json] = []
        for r in self.ranks:
            job = r.job
            if job.requeued:
                continue
            for local, index in enumerate(job.gpus):
                g = self.gpus[index]
                if g.status != "ok":
                    continue  # a lost GPU's rank is gone with it
                pids = job.workload.gpu_pids(local)
                out.append(
                    {
                        "pid": pids[0] if pids else 0,
                        "t": round(wall, 3),
                        "step": int(r.steps),
                        "uuid": g.uuid,
                        "rank": r.first_rank + local,
                        "local_rank": local,
                        "step_time_s": round(r.step_time_s, 6),
                        "compute_s": round(r.compute_s[local], 6),
                        "framework": "simulated",
                    }
                )
        return out
