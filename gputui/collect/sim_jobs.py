"""Jobs for a simulated fleet: which job runs on which hosts and GPUs, decided for the fleet.

Each simulated host is its own agent process, so a job that spans hosts is decided here, on
the collector side, and handed to each host in its scenario (`[[job]]` tables,
docs/scenarios.md): every host of a multi-host job then reports the same job id, user and
uid. Deterministic for (hosts, seed), so the demo and the tests replay.

The shapes are those GPU clusters run:

- training hosts run Slurm jobs: data-parallel jobs over 2 to 4 consecutive training hosts of
  one GPU model, as a Slurm partition holds one kind of node (the first four training hosts of
  each model form a 4-host job, where there are four), whole-host
  jobs, and hosts shared by small jobs (1, 2 or 4 GPUs) with idle GPUs beside them;
- inference hosts run one Kubernetes pod each, over all their GPUs (a serving deployment);
- idle hosts (the demo's spares) run nothing.

A host shared by small jobs keeps them to two halves, or to half of its GPUs with the rest
idle: the host-level straggler rule compares a host's GPUs with each other whatever job they
serve, and one small job's checkpoint write among GPUs that other jobs keep busy would look
like a straggler to it. A host with a fault on its GPUs runs one job over all of them, so the
failing GPU belongs to a job; a `slow_host` runs in a job of several hosts, where it shows.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from typing import Any

from gputui.agent.scenario import validate_scenario

Scenario = dict[str, Any]
Hosts = list[tuple[str, Scenario]]

# The cluster's users, as its directory (LDAP) serves them to every node: one uid per name.
USERS = (
    ("mchen", 21034),
    ("apatel", 21187),
    ("okoro", 21402),
    ("svolkova", 21555),
    ("jlindqvist", 21673),
    ("rtanaka", 21890),
)
# Containers run as this uid, which the hosts' user database does not name: no user reported.
POD_UID = 1000
POD_NAMESPACE = "serving"
POD_DEPLOYMENT = "llm-serve"
# Kubernetes names pods <deployment>-<replicaset hash>-<suffix> in this alphabet.
_K8S_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

# Hosts per job, by weight, after the first 4-host job: mostly single hosts.
_HOSTS_PER_JOB = {1: 6, 2: 2, 3: 1, 4: 1}
# How a single training host shares its GPUs: the sizes of its jobs, the rest idle.
_LAYOUT_WEIGHTS = {"whole": 4, "halves": 2, "half": 1, "quarters": 1, "small": 1, "single": 1}
SHOWCASE_HOSTS = 4  # the first multi-host job: 4 hosts x all their GPUs


def _layout(name: str, n: int) -> list[int]:
    """Job sizes on a host of `n` GPUs for a layout; GPUs past their sum idle."""
    half, quarter = n // 2, n // 4
    if name == "halves" and n >= 2:
        return [half, n - half]
    if name == "half" and n >= 2:
        return [half]
    if name == "quarters" and n >= 4:
        return [quarter, quarter]
    if name == "small" and n >= 8:
        return [quarter, 1, 1]
    if name == "single" and n >= 2:
        return [1]
    return [n]


def _gpu_faults(sc: Scenario) -> bool:
    return any(f["gpus"] for f in sc["fault"])


def _slow(sc: Scenario) -> bool:
    return any(f["kind"] == "slow_host" for f in sc["fault"])


class _Draw:
    """The fleet's random choices, in one fixed order."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(f"gputui-sim-jobs-{seed}")
        self.next_id = self.rng.randint(1_200_000, 8_800_000)
        self.replicaset = "".join(self.rng.choices(_K8S_ALPHABET, k=10))

    def slurm_id(self) -> str:
        self.next_id += self.rng.randint(1, 60)  # other users' jobs came in between
        return str(self.next_id)

    def user(self) -> tuple[str, int]:
        return self.rng.choice(USERS)

    def hex(self, digits: int) -> str:
        return f"{self.rng.getrandbits(4 * digits):0{digits}x}"

    def pod(self) -> dict[str, Any]:
        uid = self.hex(32)
        suffix = "".join(self.rng.choices(_K8S_ALPHABET, k=5))
        return {
            "kind": "k8s",
            "id": f"{uid[:8]}-{uid[8:12]}-4{uid[13:16]}-{uid[16:20]}-{uid[20:]}",
            "workload": "inference",
            "uid": POD_UID,
            "namespace": POD_NAMESPACE,
            "name": f"{POD_DEPLOYMENT}-{self.replicaset}-{suffix}",
            "container": self.hex(64),
        }


def _chunks(
    training: list[int], hosts: Sequence[tuple[str, Scenario]], draw: _Draw
) -> list[list[int]]:
    """The training hosts (positions) cut into jobs' host lists, in fleet order."""
    chunks: list[list[int]] = []
    i = 0
    while i < len(training):
        left = len(training) - i
        if not chunks and left >= SHOWCASE_HOSTS:
            k = SHOWCASE_HOSTS
        else:
            sizes = list(_HOSTS_PER_JOB)
            k = min(left, draw.rng.choices(sizes, weights=list(_HOSTS_PER_JOB.values()))[0])
        chunks.append(training[i : i + k])
        i += k
    # A slow host alone is merely a slow job: it joins its neighbour's job, where it shows.
    j = 0
    while j < len(chunks):
        if len(chunks) > 1 and len(chunks[j]) == 1 and _slow(hosts[chunks[j][0]][1]):
            into = j + 1 if j + 1 < len(chunks) else j - 1
            merged = sorted(chunks[j] + chunks[into])
            chunks[min(j, into)] = merged
            del chunks[max(j, into)]
            j = 0
            continue
        j += 1
    return chunks


def _slurm_job(gpus: list[int], step: str, job_id: str, user: tuple[str, int]) -> Scenario:
    return {
        "kind": "slurm",
        "id": job_id,
        "gpus": gpus,
        "workload": "training",
        "uid": user[1],
        "user": user[0],
        "step": step,
    }


def assign_jobs(hosts: Sequence[tuple[str, Scenario]], seed: int) -> Hosts:
    """`hosts` (fleet order) with jobs on their GPUs; hosts that list jobs already keep them.

    Deterministic for (hosts, seed); every host of a multi-host job gets the same id, user
    and uid."""
    draw = _Draw(seed)
    jobs: dict[int, list[dict[str, Any]]] = {}
    training = [
        i for i, (_, sc) in enumerate(hosts) if sc["workload"] == "training" and not sc["job"]
    ]
    # A Slurm partition is one kind of node: a job spans hosts of one GPU model.
    by_model: dict[str, list[int]] = {}
    for i in training:
        by_model.setdefault(hosts[i][1]["model"], []).append(i)
    chunks = [chunk for group in by_model.values() for chunk in _chunks(group, hosts, draw)]
    for chunk in chunks:
        user, job_id = draw.user(), draw.slurm_id()
        if len(chunk) > 1:
            for i in chunk:  # srun's step 0 on every node of the job
                n = hosts[i][1]["gpus"]
                jobs[i] = [_slurm_job(list(range(n)), "0", job_id, user)]
            continue
        (i,) = chunk
        sc = hosts[i][1]
        names = list(_LAYOUT_WEIGHTS)
        layout = draw.rng.choices(names, weights=list(_LAYOUT_WEIGHTS.values()))[0]
        sizes = [sc["gpus"]] if _gpu_faults(sc) else _layout(layout, sc["gpus"])
        jobs[i], first = [], 0
        for size in sizes:
            if jobs[i]:  # the host's further jobs are other users'
                user, job_id = draw.user(), draw.slurm_id()
            step = draw.rng.choice(("0", "batch"))  # srun'd, or the batch script itself
            gpus = list(range(first, first + size))
            jobs[i].append(_slurm_job(gpus, step, job_id, user))
            first += size
    for i, (_, sc) in enumerate(hosts):
        if sc["workload"] == "inference" and not sc["job"]:
            jobs[i] = [{**draw.pod(), "gpus": list(range(sc["gpus"]))}]
    out: Hosts = []
    for i, (name, sc) in enumerate(hosts):
        if i in jobs:
            sc = validate_scenario({**copy.deepcopy(sc), "job": jobs[i]})
        out.append((name, sc))
    return out


def data_parallel_fleet(
    n_hosts: int = 4,
    seed: int = 0,
    *,
    slow_host: int | None = None,
    factor: float = 0.8,
    cause: str = "none",
    at: float = 30.0,
    model: str = "H100-SXM",
    gpus: int = 8,
) -> Hosts:
    """`n_hosts` healthy training hosts (sim-001, ...) running one data-parallel Slurm job
    over all their GPUs; with `slow_host` (a position), that host slowed from `at` s on to
    `factor` of the others (a `slow_host` fault with `cause`): a job-level straggler."""
    draw = _Draw(seed)
    user, job_id = draw.user(), draw.slurm_id()
    out: Hosts = []
    for i in range(n_hosts):
        faults = []
        if i == slow_host:
            faults = [{"kind": "slow_host", "at": at, "factor": factor, "cause": cause}]
        sc = {
            "name": "slow_host" if faults else "healthy",
            "description": f"host {i + 1} of {n_hosts} of Slurm job {job_id}",
            "gpus": gpus,
            "model": model,
            "workload": "training",
            "fault": faults,
            "job": [_slurm_job(list(range(gpus)), "0", job_id, user)],
        }
        out.append((f"sim-{i + 1:03d}", validate_scenario(sc)))
    return out
