"""Training jobs as the fleet shows them: GPU processes grouped by the job the agent attributed.

The agent attributes each GPU process on its host (agent/attribution.py: Slurm job from the
cgroup path or SLURM_JOB_ID, Kubernetes pod from the cgroup path); a source that lists no
processes may name each GPU's jobs instead (GpuReading.jobs: the Prometheus source reads them
from the job label of the GPU's series). This module groups those attributions across hosts
into jobs, judges each job by the worst of its GPUs, and gives it its
own risk (survival odds, checkpoint interval) for its own GPU count. Pure functions over
snapshots: no I/O, no scheduler call. What a scheduler says of a job (name, user, start time,
nodes) arrives as `SchedulerJob`s, gathered elsewhere at most once per period for the fleet.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Literal

import msgspec

from gputui.core.hoststats import PluginStatus
from gputui.core.model import (
    Action,
    FleetSnapshot,
    GpuReading,
    Heartbeat,
    HostSnapshot,
    HostState,
    JobKind,
    JobRef,
    Level,
    Reason,
)
from gputui.core.risk_summary import JobRisk, job_risk

#: Every word a job's or a job GPU's health can show, worst first: the fleet table's order
#: (a host that cannot be read now outranks a warning: someone must look at it).
HEALTH_LABELS = (
    "failed",
    "critical",
    "unreachable",
    "no-gpu",
    "stale",
    "reconnecting",
    "warn",
    "unknown",
    "connecting",
    "ok",
)
HEALTH_RANK = {label: i for i, label in enumerate(HEALTH_LABELS)}

# Host states in which the host's readings are not current: its GPUs' jobs are not known now.
_UNREAD = (
    HostState.UNREACHABLE,
    HostState.STALE,
    HostState.RECONNECTING,
    HostState.NO_GPU,
    HostState.CONNECTING,
)
_UNREAD_LABELS = frozenset(s.value for s in _UNREAD)

#: Where a job's start time came from: the scheduler's record, or the first tick that saw it.
StartSource = Literal["scheduler", "first_seen"]


class SchedulerJob(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What the scheduler says of one job (`squeue --json`, `scontrol show job --json`, the
    Kubernetes API), keyed by the job's key (`slurm:4242`) in the mapping build_jobs reads."""

    id: str  # as the scheduler names it: "4242", "4242_7"; a pod's UID
    name: str | None = None  # the job's (or pod's) name
    user: str | None = None
    nodes: tuple[str, ...] = ()  # every node the job was given, monitored or not
    start_t: float | None = None  # Unix seconds
    gpus_per_node: int | None = None
    state: str | None = None  # RUNNING, COMPLETING, ...: the scheduler's own word


class JobGpu(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One GPU a job runs on, with its verdict (its readings: gpu_readings)."""

    host: str
    gpu: int
    pids: tuple[int, ...] = ()
    label: str = "unknown"  # a HEALTH_LABELS word: the GPU's level, or why its host is unread
    level: Level = Level.UNKNOWN  # the GPU's verdict level (host-wide reasons included)
    why: str = ""  # the worst reason in words, or why the host cannot be read
    action: Action = Action.NONE  # NVIDIA's most disruptive recommended action for it
    reason: Reason | None = None  # the worst reason (None: nothing raised, or host unread)
    memory_total_mib: float | None = None
    marked_failed: bool = False  # its host was taken out of service by the operator
    # What the training process on this GPU says of itself in its heartbeat (docs/training.md):
    # its rank, its wall time and own work per step, and its speed against the job's fastest
    # rank (1.0 the fastest; 0.5 half as fast). None: no heartbeat from this GPU.
    rank: int | None = None
    step_time_s: float | None = None
    compute_s: float | None = None
    relative_speed: float | None = None


class JobHealth(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A job's worst GPU: where it is, what it is, why, and what NVIDIA recommends."""

    label: str = "unknown"
    level: Level = Level.UNKNOWN
    why: str = ""
    action: Action = Action.NONE  # the most disruptive action over all the job's GPUs
    reason: Reason | None = None
    host: str | None = None  # where the worst GPU is
    gpu: int | None = None


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
    health: JobHealth = msgspec.field(default_factory=JobHealth)
    # The job's size: the scheduler's nodes x GPUs per node when it says both (hosts gputui does
    # not monitor count too), else the GPUs seen.
    gpu_count: int = 0
    nodes: tuple[str, ...] = ()  # the scheduler's node list (empty: not enriched)
    state: str | None = None  # the scheduler's word for it
    start_t: float | None = None  # Unix seconds
    start_source: StartSource | None = None
    step_rate_per_s: float | None = None  # training steps per second, when the job reports them
    # Its survival odds over 24 h, MTBF and checkpoint interval for its own GPU count at the
    # fleet's rate (None: no rate was given).
    risk: JobRisk | None = None

    def runtime_s(self, now: float) -> float | None:
        """How long it has run at `now` (from first seen: at least that long)."""
        return None if self.start_t is None else max(0.0, now - self.start_t)


# --------------------------------------------------------------------------------------------
# Grouping
# --------------------------------------------------------------------------------------------


def gpu_jobs(reading: GpuReading) -> Iterator[JobRef]:
    """The jobs a GPU's reading names: its processes' (as the agent attributed them), then
    those its source names for the GPU itself (GpuReading.jobs), repeats included."""
    for proc in reading.processes or ():
        if proc.job is not None:
            yield proc.job
    yield from reading.jobs or ()


def jobs_on_host(host: HostSnapshot) -> tuple[JobRef, ...]:
    """The jobs seen on this host's GPUs in its last slow sample, each once, in GPU order.

    Steps of one Slurm job collapse to the job (a requeue acts on the job, not the step)."""
    sample = host.slow_sample
    if sample is None:
        return ()
    seen: dict[str, JobRef] = {}
    for reading in sample.gpus:
        for job in gpu_jobs(reading):
            if job.key not in seen:
                seen[job.key] = job
    return tuple(seen.values())


def build_jobs(
    snapshot: FleetSnapshot,
    scheduler: Mapping[str, SchedulerJob] | None = None,
    *,
    rate_per_gpu_hour: float | None = None,
    checkpoint_write_s: float = 60.0,
) -> list[Job]:
    """Every job seen on the fleet's GPUs, in order of first appearance (fleet order).

    `scheduler` (job key -> what the scheduler says) names the jobs and dates them; without it
    they are what the hosts say. With `rate_per_gpu_hour` (the fleet's posterior rate), each job
    gets its survival odds and checkpoint interval for its own GPU count."""
    return JobsBuilder().build(
        snapshot,
        scheduler,
        rate_per_gpu_hour=rate_per_gpu_hour,
        checkpoint_write_s=checkpoint_write_s,
    )


class JobsBuilder:
    """build_jobs with a memory of each host's part, for a view rebuilt every tick.

    A host's jobs change only with its slow sample (processes come every few samples), its
    verdict (one cached object while the host is quiet), its state and the operator's mark:
    a host whose inputs are the same objects as at the last call gives the same JobGpus without
    judging its GPUs again. At 1,000 hosts x 8 GPUs that is most of the work of a tick."""

    def __init__(self) -> None:
        self._parts: dict[str, tuple[tuple[object, ...], _HostPart]] = {}

    def build(
        self,
        snapshot: FleetSnapshot,
        scheduler: Mapping[str, SchedulerJob] | None = None,
        *,
        rate_per_gpu_hour: float | None = None,
        checkpoint_write_s: float = 60.0,
    ) -> list[Job]:
        parts: dict[str, tuple[tuple[object, ...], _HostPart]] = {}
        merged: dict[str, list[tuple[JobRef, str | None, tuple[JobGpu, ...], JobHealth]]] = {}
        for host in snapshot.hosts:
            if host.slow_sample is None:
                continue
            silent = _silent(host)
            inputs = _inputs(host, silent)
            old = self._parts.get(host.name)
            fresh = old is None or not _same(old[0], inputs)
            part = _host_part(host, silent) if fresh or old is None else old[1]
            parts[host.name] = (inputs, part)
            for key, piece in part.items():
                merged.setdefault(key, []).append(piece)
        self._parts = parts  # hosts gone from the fleet are forgotten
        known = scheduler or {}
        jobs = []
        for key, pieces in merged.items():
            ref = pieces[0][0]
            told = known.get(key)
            user = next((u for _, u, _, _ in pieces if u), None)
            gpus, step_rate = rank_speeds(
                tuple(g for _, _, host_gpus, _ in pieces for g in host_gpus)
            )
            built = Job(
                key=key,
                kind=ref.kind,
                id=ref.id,
                user=(told.user if told and told.user else None) or user,
                name=(told.name if told and told.name else None) or ref.name,
                namespace=ref.namespace,
                hosts=tuple(host_gpus[0].host for _, _, host_gpus, _ in pieces),
                gpus=gpus,
                health=_combine([h for _, _, _, h in pieces]),
                gpu_count=_gpu_count(len(gpus), told),
                nodes=told.nodes if told else (),
                state=told.state if told else None,
                start_t=told.start_t if told else None,
                start_source="scheduler" if told and told.start_t is not None else None,
                step_rate_per_s=step_rate,
            )
            if rate_per_gpu_hour is not None:
                built = with_risk(built, rate_per_gpu_hour, checkpoint_write_s)
            jobs.append(built)
        return jobs


# One host's share of each job on it: the job's reference, its processes' owner, its GPUs on
# the host and their worst, by job key in GPU order.
_HostPart = dict[str, tuple[JobRef, "str | None", tuple[JobGpu, ...], JobHealth]]


def _silent(host: HostSnapshot) -> frozenset[int]:
    """The host's GPUs that cannot say what they run now: lost, reset required, an error, or
    a GPU of its inventory missing from its slow sample (the Prometheus source has no reading
    of a GPU off the bus: DCGM leaves its values blank)."""
    silent = {
        r.index
        for s in (host.sample, host.slow_sample)
        if s is not None
        for r in s.gpus
        if r.status != "ok"
    }
    hello, sample = host.hello, host.slow_sample
    if hello is not None and sample is not None and len(sample.gpus) < len(hello.gpus):
        silent.update({g.index for g in hello.gpus} - {r.index for r in sample.gpus})
    return frozenset(silent)


def _inputs(host: HostSnapshot, silent: frozenset[int]) -> tuple[object, ...]:
    """What a host's part depends on."""
    return (
        host.slow_sample,
        host.verdict,
        host.hello,
        host.state,
        host.state_reason,
        host.marked_failed,
        silent,
    )


def _same(old: tuple[object, ...], new: tuple[object, ...]) -> bool:
    # The snapshot's own objects, compared by identity: equal values in a new object (a host
    # that is not quiet gets a new verdict each sample) are judged again, which is cheap for
    # the few hosts that have something to say.
    return all(a is b for a, b in zip(old[:3], new[:3], strict=True)) and old[3:] == new[3:]


def _host_part(host: HostSnapshot, silent: frozenset[int]) -> _HostPart:
    sample = host.slow_sample
    assert sample is not None
    refs: dict[str, JobRef] = {}
    users: dict[str, str] = {}
    on_host: dict[str, dict[int, list[int]]] = {}  # job key -> GPU -> pids
    for reading in sample.gpus:
        for proc in reading.processes or ():
            job = proc.job
            if job is None:
                continue
            key = job.key
            if key not in refs:
                refs[key] = job
            on_host.setdefault(key, {}).setdefault(reading.index, []).append(proc.pid)
            if proc.user and key not in users:
                users[key] = proc.user
        for job in reading.jobs or ():  # named for the GPU, with no process: no pid, no user
            key = job.key
            if key not in refs:
                refs[key] = job
            on_host.setdefault(key, {}).setdefault(reading.index, [])
    if not on_host:
        return {}
    judge = _GpuJudge(host)
    beats: dict[int, list[Heartbeat]] = {}
    for beat in sample.heartbeats or ():
        if beat.gpu is not None:
            beats.setdefault(beat.gpu, []).append(beat)
    part: _HostPart = {}
    for key, by_gpu in on_host.items():
        # A GPU that fell off the bus lists no process (nor job) any more: it counts for every
        # job of its host (a job spread over the host's GPUs stops with it).
        for index in silent - by_gpu.keys():
            by_gpu[index] = []
        gpus = tuple(
            judge.gpu(index, tuple(by_gpu[index]), _beat_of(key, by_gpu[index], beats.get(index)))
            for index in sorted(by_gpu)
        )
        part[key] = (refs[key], users.get(key), gpus, _worst(gpus))
    return part


def _beat_of(key: str, pids: list[int], beats: list[Heartbeat] | None) -> Heartbeat | None:
    """The heartbeat of job `key`'s process on a GPU: one the agent attributed to the job, or
    one from a process the GPU lists for it, or one that names no job at all."""
    for beat in beats or ():
        job = beat.job
        if (job is not None and job.key == key) or beat.pid in pids:
            return beat
    for beat in beats or ():
        if beat.job is None:
            return beat
    return None


def rank_speeds(gpus: tuple[JobGpu, ...]) -> tuple[tuple[JobGpu, ...], float | None]:
    """A job's GPUs with each rank's speed against the fastest, and the job's step rate.

    The ranks of a data-parallel job wait for each other at every all-reduce, so the job makes
    one step per step time of its slowest rank: its rate is 1 / the longest step time. A
    rank's speed compares its own work per step where every rank measures it (the waits left
    out: the ranks' wall step times are all the slowest's), else its wall step time; relative
    speed is the best rank's time over this rank's, as NVIDIA's straggler detection scores
    ranks."""
    timed = [g for g in gpus if g.step_time_s is not None]
    if not timed:
        return gpus, None
    rate = 1.0 / max(g.step_time_s for g in timed if g.step_time_s is not None)
    own = all(g.compute_s is not None for g in timed)
    times = [(g.compute_s if own else g.step_time_s) or 0.0 for g in timed]
    best = min(times)
    if best <= 0:
        return gpus, rate
    speeds = {id(g): round(best / t, 3) for g, t in zip(timed, times, strict=True)}
    return (
        tuple(
            msgspec.structs.replace(g, relative_speed=speeds[id(g)]) if id(g) in speeds else g
            for g in gpus
        ),
        rate,
    )


def _gpu_count(seen: int, told: SchedulerJob | None) -> int:
    if told is not None and told.gpus_per_node and told.nodes:
        return max(seen, told.gpus_per_node * len(told.nodes))
    return seen


class _GpuJudge:
    """One host's GPUs judged for its jobs: the GPU's own verdict, with the host's own
    reasons (those that name no GPU) counting for each GPU, and an unread host's state."""

    def __init__(self, host: HostSnapshot) -> None:
        self.host = host
        verdict = host.verdict
        self.host_reasons = tuple(r for r in verdict.host.reasons if r.gpu is None)
        hello = host.hello
        self.totals = {g.index: g.memory_total_mib for g in hello.gpus} if hello else {}
        self.unread = host.state in _UNREAD

    def gpu(self, index: int, pids: tuple[int, ...], beat: Heartbeat | None = None) -> JobGpu:
        host = self.host
        verdict = host.verdict.gpus.get(index)
        reasons = (verdict.reasons if verdict is not None else ()) + self.host_reasons
        worst = max(reasons, key=lambda r: r.level, default=None)
        level = verdict.level if verdict is not None else Level.UNKNOWN
        if worst is not None and worst.level > level:
            level = worst.level
        action = max((r.action for r in reasons), key=lambda a: a.rank, default=Action.NONE)
        label = level.label
        why = worst.text if worst is not None and worst.level > Level.OK else ""
        if self.unread and HEALTH_RANK[host.state.value] < HEALTH_RANK[label]:
            # A host that cannot be read now: its last verdict is kept where it is worse.
            label = host.state.value
            why = f"{host.name} {host.state.value}" + (
                f": {host.state_reason}" if host.state_reason else ""
            )
        return JobGpu(
            host=host.name,
            gpu=index,
            pids=pids,
            label=label,
            level=level,
            why=why,
            action=action,
            reason=worst if worst is not None and worst.level > Level.OK else None,
            memory_total_mib=self.totals.get(index),
            marked_failed=host.marked_failed,
            rank=beat.rank if beat is not None else None,
            step_time_s=beat.step_time_s if beat is not None else None,
            compute_s=beat.compute_s if beat is not None else None,
        )


def _rank(label: str, level: Level) -> tuple[int, int]:
    return HEALTH_RANK[label], -level


def _worst(gpus: Sequence[JobGpu]) -> JobHealth:
    if not gpus:
        return JobHealth()
    w = min(gpus, key=lambda g: _rank(g.label, g.level))
    action = max((g.action for g in gpus), key=lambda a: a.rank, default=Action.NONE)
    where = w.label != "ok" or w.why  # a healthy job has no worst GPU to point at
    return JobHealth(
        label=w.label,
        level=max(g.level for g in gpus),
        why=w.why,
        action=action,
        reason=w.reason,
        host=w.host if where else None,
        gpu=w.gpu if where else None,
    )


def _combine(parts: Sequence[JobHealth]) -> JobHealth:
    """The worst of the hosts' worsts: the first worst GPU in fleet order, as _worst picks."""
    if len(parts) == 1:
        return parts[0]
    w = min(parts, key=lambda h: _rank(h.label, h.level))
    return msgspec.structs.replace(
        w,
        level=max(h.level for h in parts),
        action=max((h.action for h in parts), key=lambda a: a.rank),
    )


def gpu_readings(job: Job, snapshot: FleetSnapshot) -> list[GpuReading | None]:
    """The latest fast reading of each of the job's GPUs (None: not in the host's sample), in
    the job's GPU order: what its GPUs show side by side."""
    hosts = set(job.hosts)
    samples = {h.name: h.sample for h in snapshot.hosts if h.name in hosts}
    by_gpu: dict[tuple[str, int], GpuReading] = {}
    for name, sample in samples.items():
        for r in sample.gpus if sample is not None else ():
            by_gpu[(name, r.index)] = r
    return [by_gpu.get((g.host, g.gpu)) for g in job.gpus]


def worst_first(jobs: Iterable[Job]) -> list[Job]:
    """The order an operator reads in: the worst job first, then in fleet order."""
    return sorted(jobs, key=lambda j: (HEALTH_RANK[j.health.label], -j.health.level))


# --------------------------------------------------------------------------------------------
# Risk, run time, step rate
# --------------------------------------------------------------------------------------------


def with_risk(job: Job, rate_per_gpu_hour: float, checkpoint_write_s: float) -> Job:
    """`job` with its survival odds over 24 h, MTBF and checkpoint interval for its own size."""
    figures = job_risk(max(1, job.gpu_count), rate_per_gpu_hour, checkpoint_write_s)
    return msgspec.structs.replace(job, risk=figures)


class FirstSeen:
    """When each job was first seen, for jobs whose start the scheduler does not give.

    The live views keep one across ticks; a job gone from the fleet's GPUs is forgotten (one
    that comes back is timed anew: it was requeued or restarted). A one-shot command has no
    history, so it shows no run time without the scheduler."""

    def __init__(self) -> None:
        self._first: dict[str, float] = {}

    def apply(self, jobs: Iterable[Job], now: float) -> list[Job]:
        first: dict[str, float] = {}
        out = []
        for job in jobs:
            t = first[job.key] = self._first.get(job.key, now)
            if job.start_t is None:
                job = msgspec.structs.replace(job, start_t=t, start_source="first_seen")
            out.append(job)
        self._first = first
        return out


def with_step_rates(jobs: Iterable[Job], rates: Mapping[str, float]) -> list[Job]:
    """`jobs` with the step rates their training loops report (job key -> steps per second)."""
    return [
        msgspec.structs.replace(job, step_rate_per_s=rates[job.key]) if job.key in rates else job
        for job in jobs
    ]


# --------------------------------------------------------------------------------------------
# Status and what is left over
# --------------------------------------------------------------------------------------------


# CRITICAL beats UNKNOWN beats WARNING beats OK, as in gputui report (core/hoststats.py).
_PRECEDENCE = (PluginStatus.OK, PluginStatus.WARNING, PluginStatus.UNKNOWN, PluginStatus.CRITICAL)


def job_status(job: Job) -> PluginStatus:
    """The job's monitoring-plugin status: its worst GPU's, judged as `host_status` judges a
    host. GPUs of hosts the operator marked failed are left out, as `gputui report` leaves
    those hosts out: they are known and being handled."""
    return max(
        (_gpu_status(g) for g in job.gpus if not g.marked_failed),
        key=_PRECEDENCE.index,
        default=PluginStatus.OK,
    )


def _gpu_status(gpu: JobGpu) -> PluginStatus:
    if gpu.level >= Level.CRITICAL:
        return PluginStatus.CRITICAL
    if gpu.level is Level.UNKNOWN or gpu.label in _UNREAD_LABELS:
        return PluginStatus.UNKNOWN
    if gpu.level is Level.WARN:
        return PluginStatus.WARNING
    return PluginStatus.OK


def jobs_status(jobs: Iterable[Job], snapshot: FleetSnapshot) -> PluginStatus:
    """The worst job's status; UNKNOWN at least while a host in service has not said which
    processes it runs (unread, or no slow sample yet): its jobs may be missing."""
    statuses = [job_status(job) for job in jobs]
    if any(unattributed_hosts(snapshot)):
        statuses.append(PluginStatus.UNKNOWN)
    return max(statuses, key=_PRECEDENCE.index, default=PluginStatus.OK)


def unattributed_hosts(snapshot: FleetSnapshot) -> list[str]:
    """Hosts in service whose GPUs' processes are not known now."""
    return [
        h.name
        for h in snapshot.hosts
        if not h.marked_failed and (h.state in _UNREAD or h.slow_sample is None)
    ]


class PlainProcesses(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """GPU processes that serve no job the agent found, by host (fleet order)."""

    count: int = 0
    hosts: tuple[tuple[str, int], ...] = ()


def plain_processes(snapshot: FleetSnapshot) -> PlainProcesses:
    total = 0
    per_host: list[tuple[str, int]] = []
    for host in snapshot.hosts:
        sample = host.slow_sample
        if sample is None:
            continue
        n = sum(
            1 for reading in sample.gpus for proc in reading.processes or () if proc.job is None
        )
        if n:
            per_host.append((host.name, n))
            total += n
    return PlainProcesses(count=total, hosts=tuple(per_host))
