"""The jobs a node's GPUs serve, as gputui knows them when the operator acts on the node.

They fill the `{jobs}` and `{job}` placeholders of actions (Slurm's requeue names exactly these
jobs) and are listed wherever a node is marked failed: the confirmation, the dry-run and the
journal. Where they come from, best first:

- the operator named them (`--job ID`);
- the node: the jobs the agent attributed to its GPU processes in its last slow sample (the
  live monitor's, or one read by the command line for the occasion);
- the scheduler, where the node cannot say (unreachable, stale, no reading yet, a GPU too
  broken to list its processes): the jobs its last job list places on the node. This is the
  case that matters most, as a node that failed is often one that cannot answer.

A job a host reports is host text: only ids shaped like a job id (`4242`, `4242_7`, a pod UID)
reach a command, so a hostile host cannot slip an option or a second list into `{jobs}`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from gputui.core.jobs import SchedulerJob, jobs_on_host
from gputui.core.model import GpuProcess, HostSnapshot, HostState, JobKind
from gputui.core.text import plain
from gputui.ops.scheduler import age_text

# Slurm: a job id, or an array task as Slurm writes it; Kubernetes: a pod UID. Never a comma
# (it would split {jobs}), a leading "-" (an option) or white space.
_JOB_ID = re.compile(
    r"^(?:[0-9]+(?:_[0-9]+)?|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})$"
)
_READ = (HostState.STREAMING, HostState.DEGRADED)
GIVEN = "given with --job"


@dataclass(frozen=True)
class NodeJob:
    """One job on the node, with what is known of it."""

    key: str  # slurm:4242, k8s:<pod uid>
    kind: JobKind
    id: str
    user: str | None = None
    name: str | None = None
    from_scheduler: bool = False  # placed on the node by the scheduler, not seen on a GPU

    @property
    def usable(self) -> bool:
        """Its id may fill a command's argument."""
        return bool(_JOB_ID.match(self.id))

    def text(self) -> str:
        """`slurm:4242 train-llm (alice)`, marked when only the scheduler placed it here."""
        out = self.key
        if self.name:
            out += f" {self.name}"
        if self.user:
            out += f" ({self.user})"
        if self.from_scheduler:
            out += " [from the scheduler]"
        return plain(out)


@dataclass(frozen=True)
class NodeJobs:
    """The jobs on one node's GPUs, where that list comes from and what it may lack."""

    node: str
    jobs: tuple[NodeJob, ...] = ()
    source: str = ""  # in words: "given with --job", "gpu002's reading 4 s ago", ...
    gaps: tuple[str, ...] = ()  # what could not be read, each in a sentence
    known: bool = True  # False: nobody could say; `jobs` is then empty

    def ids(self, kind: JobKind | None = None) -> tuple[str, ...]:
        """The ids a command may be given, each once, in the node's GPU order."""
        return tuple(dict.fromkeys(j.id for j in self.jobs if j.usable and kind in (None, j.kind)))

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(j.key for j in self.jobs)

    @property
    def refused(self) -> tuple[NodeJob, ...]:
        """Jobs whose id is not shaped like a job id: shown, never put into a command."""
        return tuple(j for j in self.jobs if not j.usable)

    def summary(self) -> str:
        """One line: the jobs the node's failure hits, and where that comes from."""
        where = f" ({self.source})" if self.source else ""
        if not self.known:
            why = "; ".join(self.gaps) or "nothing could say"
            return plain(f"jobs on {self.node}: unknown ({why})")
        if not self.jobs:
            text = f"jobs on {self.node}: none seen on its GPUs{where}"
        else:
            listed = ", ".join(j.text() for j in self.jobs)
            text = f"jobs on {self.node}: {listed}{where}"
        if self.gaps:
            text += "; not read: " + "; ".join(self.gaps)
        return plain(text)

    def lines(self) -> list[str]:
        """The summary, and a line for every job left out of commands."""
        out = [self.summary()]
        for job in self.refused:
            out.append(f"  {plain(job.key)}: not a job id, left out of every command")
        return out


def given(node: str, ids: Sequence[str], kind: JobKind = "slurm") -> NodeJobs:
    """Jobs the operator named (`--job ID`, repeatable); their kind is the scheduler's."""
    jobs = tuple(NodeJob(key=f"{kind}:{i}", kind=kind, id=i) for i in dict.fromkeys(ids))
    return NodeJobs(node=node, jobs=jobs, source=GIVEN)


def unknown(node: str, why: str) -> NodeJobs:
    return NodeJobs(node=node, known=False, gaps=(plain(why),))


def from_host(host: HostSnapshot, now: float, *, source: str | None = None) -> NodeJobs:
    """The jobs attributed to `host`'s GPU processes in its last slow sample.

    Gaps: the host is not streaming now (its last reading may be old), or a GPU could not list
    its processes (lost, or an error): the jobs of that GPU are not in the list."""
    sample = host.slow_sample
    state = host.state.value + (f": {host.state_reason}" if host.state_reason else "")
    if sample is None:
        return unknown(host.name, f"{host.name} has not listed its GPU processes ({state})")
    gaps: list[str] = []
    if host.state not in _READ:
        gaps.append(f"{host.name} is {plain(state, 200)}")
    for reading in sample.gpus:
        if reading.status != "ok":
            gaps.append(f"GPU {reading.index} is {reading.status}: its processes cannot be listed")
    users = _users(p for r in sample.gpus for p in r.processes or ())
    jobs = tuple(
        NodeJob(key=ref.key, kind=ref.kind, id=ref.id, user=users.get(ref.key), name=ref.name)
        for ref in jobs_on_host(host)
    )
    if source is None:
        age = "" if host.slow_sample_t is None else f" {age_text(now - host.slow_sample_t)} ago"
        source = f"{host.name}'s GPU processes as read{age}"
    # A partial list with no job in it says nothing: the missing GPU may hold the only job.
    return NodeJobs(
        node=host.name, jobs=jobs, source=source, gaps=tuple(gaps), known=bool(jobs) or not gaps
    )


def _users(processes: Iterable[GpuProcess]) -> dict[str, str]:
    users: dict[str, str] = {}
    for proc in processes:
        if proc.job is not None and proc.user and proc.job.key not in users:
            users[proc.job.key] = proc.user
    return users


def with_scheduler(
    seen: NodeJobs,
    scheduler: Mapping[str, SchedulerJob],
    *,
    kind: JobKind,
    source: str,
    problem: str = "",
) -> NodeJobs:
    """`seen` named by the scheduler's job list (names, users) and, where the node could not
    say everything, completed by the jobs that list places on it.

    `problem` is why the list is not current (the scheduler failed); with no list at all it
    becomes one more gap."""
    named = tuple(_named(job, scheduler.get(job.key)) for job in seen.jobs)
    seen = replace(seen, jobs=named)
    if not seen.gaps or seen.source == GIVEN:
        return seen
    if not scheduler and problem:
        return replace(seen, gaps=(*seen.gaps, plain(problem, 300)))
    have = set(seen.keys)
    placed = tuple(
        # The key's id, not `4242_7`: an array task is requeued by its own job id.
        NodeJob(
            key=key,
            kind=kind,
            id=key.split(":", 1)[1],
            user=job.user,
            name=job.name,
            from_scheduler=True,
        )
        for key, job in scheduler.items()
        if seen.node in job.nodes and key not in have
    )
    # The scheduler answered for the node: the list is as known as the scheduler makes it.
    both = f"{seen.source}; {source}" if seen.jobs else source
    return replace(seen, jobs=(*seen.jobs, *placed), source=both, known=True)


def _named(job: NodeJob, told: SchedulerJob | None) -> NodeJob:
    if told is None:
        return job
    return replace(job, name=told.name or job.name, user=told.user or job.user)
