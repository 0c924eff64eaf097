"""Training jobs as the fleet shows them: GPU processes grouped by the job the agent attributed.

The agent attributes each GPU process on its host (agent/attribution.py: Slurm job from the
cgroup path or SLURM_JOB_ID, Kubernetes pod from the cgroup path); this module groups those
attributions across hosts into jobs. Pure functions over snapshots: no I/O, no scheduler call.
"""

from __future__ import annotations

import msgspec

from gputui.core.model import FleetSnapshot, HostSnapshot, JobKind, JobRef


class JobGpu(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One GPU a job runs on."""

    host: str
    gpu: int
    pids: tuple[int, ...] = ()


class Job(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A job seen on the fleet's GPUs, at one tick."""

    key: str  # slurm:4242, k8s:<pod uid>
    kind: JobKind
    id: str
    user: str | None = None  # the processes' owner on the hosts (the scheduler's, when enriched)
    name: str | None = None  # Kubernetes pod name from the hosts; Slurm job name when enriched
    namespace: str | None = None
    hosts: tuple[str, ...] = ()  # in fleet order
    gpus: tuple[JobGpu, ...] = ()  # host by host, GPU index order


def jobs_on_host(host: HostSnapshot) -> tuple[JobRef, ...]:
    """The jobs seen on this host's GPUs in its last slow sample, each once, in GPU order.

    Steps of one Slurm job collapse to the job (a requeue acts on the job, not the step)."""
    sample = host.slow_sample
    if sample is None:
        return ()
    seen: dict[str, JobRef] = {}
    for reading in sample.gpus:
        for proc in reading.processes or ():
            job = proc.job
            if job is not None and job.key not in seen:
                seen[job.key] = job
    return tuple(seen.values())


def build_jobs(snapshot: FleetSnapshot) -> list[Job]:
    """Every job seen on the fleet's GPUs, in order of first appearance (fleet order)."""
    gpus: dict[str, list[JobGpu]] = {}
    refs: dict[str, JobRef] = {}
    users: dict[str, str] = {}
    for host in snapshot.hosts:
        sample = host.slow_sample
        if sample is None:
            continue
        for reading in sample.gpus:
            pids_by_job: dict[str, list[int]] = {}
            for proc in reading.processes or ():
                job = proc.job
                if job is None:
                    continue
                refs.setdefault(job.key, job)
                pids_by_job.setdefault(job.key, []).append(proc.pid)
                if proc.user and job.key not in users:
                    users[job.key] = proc.user
            for key, pids in pids_by_job.items():
                gpus.setdefault(key, []).append(
                    JobGpu(host=host.name, gpu=reading.index, pids=tuple(pids))
                )
    jobs = []
    for key, job_gpus in gpus.items():
        ref = refs[key]
        hosts = tuple(dict.fromkeys(g.host for g in job_gpus))
        jobs.append(
            Job(
                key=key,
                kind=ref.kind,
                id=ref.id,
                user=users.get(key),
                name=ref.name,
                namespace=ref.namespace,
                hosts=hosts,
                gpus=tuple(job_gpus),
            )
        )
    return jobs
