"""Jobs in the simulated fleet: who runs on which GPU, slow hosts, the demo's requeue.

The readings come from the simulator itself, fast-forwarded (tests/agent_sim.py), and the
processes are decoded into the collector's own types, so what is checked here is what the
monitor, the Jobs view and the job-level straggler rule are fed.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gputui.agent.scenario import validate_scenario
from gputui.agent.sim_backend import SimBackend
from gputui.cli.demo_setup import demo_actions, demo_config, stand_in
from gputui.collect.demo import DemoFleet, default_spares, write_scheduler
from gputui.collect.fleet import plans_for_demo
from gputui.collect.monitor import FleetMonitor
from gputui.collect.scenarios import load_scenario, spare_scenario
from gputui.collect.sim_jobs import assign_jobs, data_parallel_fleet
from gputui.core.health import HostHealth
from gputui.core.jobs import jobs_on_host
from gputui.core.model import FleetSnapshot, GpuProcess, Hello, JobRef, Sample
from gputui.ops.catalog import load_actions
from tests.agent_sim import FakeClock

T0 = 1_700_000_000.0


def samples(
    scenario: dict[str, Any], seconds: int, *, seed: int = 0, slow_every: int = 10
) -> list[Sample]:
    """One sample a second for `seconds` s, decoded as the collector decodes them."""
    clock = FakeClock()
    backend = SimBackend(scenario, seed=seed, clock=clock, event_thread=False)
    out = []
    for seq in range(seconds + 1):
        clock.t = float(seq)
        body = backend.sample(slow=seq % slow_every == 0)
        out.append(msgspec.convert({"v": 1, "t": T0 + seq, "seq": seq, **body}, Sample))
    return out


def medians(run: list[Sample], field: str, since: float, until: float) -> list[float]:
    """Per GPU, the median of `field` over the samples from `since` to `until` s."""
    window = [s for s in run if since <= s.t - T0 <= until]
    n = len(window[0].gpus)
    return [statistics.median(getattr(s.gpus[i], field) for s in window) for i in range(n)]


# -- the slow_host fault ------------------------------------------------------------------------


def test_a_slow_host_without_gpus_strikes_every_gpu_of_the_host() -> None:
    sc = validate_scenario({"gpus": 4, "fault": [{"kind": "slow_host", "at": 5}]})
    (fault,) = sc["fault"]
    assert fault == {
        "kind": "slow_host",
        "at": 5.0,
        "gpus": [0, 1, 2, 3],
        "factor": 0.8,
        "cause": "none",
    }
    with pytest.raises(
        ValueError, match=r"fault\[0\]\.cause: expected one of \['none', 'power_cap'"
    ):
        validate_scenario({"fault": [{"kind": "slow_host", "at": 5, "cause": "gremlins"}]})


@pytest.mark.parametrize("cause", ["none", "power_cap"])
def test_a_slow_host_runs_every_gpu_uniformly_slower_from_its_start(cause: str) -> None:
    slow = {"kind": "slow_host", "at": 60.0, "factor": 0.75, "cause": cause}
    healthy = {"name": "h", "workload": "training"}
    base = samples(healthy, 120, seed=4)
    run = samples({**healthy, "fault": [slow]}, 120, seed=4)
    # Before the fault the host is the healthy one, reading for reading.
    assert [s.gpus for s in run if s.t - T0 < 60] == [s.gpus for s in base if s.t - T0 < 60]
    # Past it (a second to settle), each GPU at about `factor` of its healthy self: the
    # checkpoint dips of the job, if any, fall on both runs at the same moments.
    for field in ("util_pct", "power_w"):
        before = medians(base, field, 61, 120)
        after = medians(run, field, 61, 120)
        ratios = [a / b for a, b in zip(after, before, strict=True)]
        assert all(0.7 <= r <= 0.9 for r in ratios), (field, ratios)
        assert max(ratios) - min(ratios) < 0.05, (field, ratios)  # all GPUs alike
    clocks = [
        a / b
        for a, b in zip(
            medians(run, "sm_clock_mhz", 61, 120),
            medians(base, "sm_clock_mhz", 61, 120),
            strict=True,
        )
    ]
    assert all(r < 0.96 for r in clocks), clocks
    limits = medians(run, "power_limit_w", 61, 120)
    if cause == "power_cap":
        assert limits == [525.0] * 8  # 0.75 of the H100's 700 W, as NVML's enforced limit
        assert all((s.gpus[0].clock_events or 0) & 0x4 for s in run if s.t - T0 > 61)
    else:
        assert limits == [700.0] * 8
        # Nothing in the clock-event reasons explains the slower clocks.
        assert all(not (s.gpus[0].clock_events or 0) & 0x4 for s in run if s.t - T0 > 61)


def test_a_power_capped_slow_host_gets_its_limit_back_when_the_fault_ends() -> None:
    slow = {"kind": "slow_host", "at": 10.0, "duration": 20.0, "cause": "power_cap"}
    run = samples({"name": "h", "fault": [slow]}, 40)
    limit = {round(s.t - T0): s.gpus[3].power_limit_w for s in run}
    assert (limit[5], limit[20], limit[35]) == (700.0, 560.0, 700.0)


# -- the fleet's jobs ---------------------------------------------------------------------------


def fleet(n_hosts: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """The demo's fleet: its mix, its spares, its jobs."""
    return DemoFleet(n_hosts, seed=seed, spares=default_spares(n_hosts)).assignment()


def jobs_by_id(hosts: list[tuple[str, dict[str, Any]]]) -> dict[str, list[tuple[str, Any]]]:
    """Job key -> (host, job table) for each host it runs on, in fleet order."""
    out: dict[str, list[tuple[str, Any]]] = {}
    for name, sc in hosts:
        for job in sc["job"]:
            out.setdefault(f"{job['kind']}:{job['id']}", []).append((name, job))
    return out


@pytest.mark.parametrize("n_hosts", [8, 32, 200])
def test_the_jobs_of_a_fleet_replay_for_its_seed(n_hosts: int) -> None:
    first = fleet(n_hosts, seed=3)
    assert first == fleet(n_hosts, seed=3)
    assert jobs_by_id(first) != jobs_by_id(fleet(n_hosts, seed=4))
    for _, sc in first:
        assert validate_scenario(sc) == sc


@pytest.mark.parametrize("seed", range(12))
def test_a_multi_host_job_is_one_job_on_every_host_it_spans(seed: int) -> None:
    hosts = fleet(32, seed)
    training = [name for name, sc in hosts if sc["workload"] == "training"]
    by_id = jobs_by_id(hosts)
    multi = {key: on for key, on in by_id.items() if len(on) > 1}
    assert multi, seed
    for key, on in multi.items():
        names = [name for name, _ in on]
        first = on[0][1]
        for name, job in on:
            # The same job, owner and step everywhere, over every GPU of each of its hosts.
            assert (job["id"], job["uid"], job["user"], job["step"]) == (
                first["id"],
                first["uid"],
                first["user"],
                first["step"],
            )
            assert job["gpus"] == list(range(dict(hosts)[name]["gpus"]))
        # One GPU model, consecutive hosts among its training hosts: a scheduler fills a
        # partition, and a partition holds one kind of node.
        model = dict(hosts)[names[0]]["model"]
        partition = [n for n in training if dict(hosts)[n]["model"] == model]
        start = partition.index(names[0])
        assert names == partition[start : start + len(names)], key
    # The first four training hosts of the first model run one 4-host job: the showcase.
    first_model = dict(hosts)[training[0]]["model"]
    showcase = [n for n in training if dict(hosts)[n]["model"] == first_model][:4]
    assert by_id[f"slurm:{dict(hosts)[showcase[0]]['job'][0]['id']}"] == [
        (name, dict(hosts)[name]["job"][0]) for name in showcase
    ]


def test_every_kind_of_host_gets_the_work_its_workload_says() -> None:
    seen_layouts = set()
    for seed in range(12):
        hosts = fleet(32, seed)
        for name, sc in hosts[-2:]:
            assert sc["job"] == [], name  # the spares wait for work
        for name, sc in hosts:
            taken = [g for job in sc["job"] for g in job["gpus"]]
            assert len(taken) == len(set(taken)), name  # one job a GPU
            if sc["workload"] == "idle":
                assert sc["job"] == [], name
            elif sc["workload"] == "inference":
                (pod,) = sc["job"]
                assert pod["kind"] == "k8s" and pod["namespace"] == "serving", name
                assert pod["name"].startswith("llm-serve-") and len(pod["container"]) == 64
                assert pod["uid"] == 1000 and "user" not in pod  # a container's uid, unnamed
            else:
                assert sc["job"] and {j["kind"] for j in sc["job"]} == {"slurm"}, name
                if any(f["gpus"] for f in sc["fault"]):  # the failing GPU is some job's
                    assert taken == list(range(sc["gpus"])), name
                seen_layouts.add(tuple(len(j["gpus"]) for j in sc["job"]))
    # Whole hosts, and hosts shared by 1-, 2- and 4-GPU jobs with idle GPUs beside them.
    assert {(8,), (4, 4), (4,), (2, 2), (2, 1, 1), (1,)} <= seen_layouts


@pytest.mark.parametrize("position", range(6))
def test_a_slow_host_always_runs_in_a_job_of_several_hosts(position: int) -> None:
    healthy = load_scenario("healthy")
    slow = load_scenario("slow_host")
    hosts = [(f"h{i}", slow if i == position else healthy) for i in range(6)]
    for seed in range(10):
        assigned = dict(assign_jobs(hosts, seed))
        (job,) = assigned[f"h{position}"]["job"]
        assert len(jobs_by_id(list(assigned.items()))[f"slurm:{job['id']}"]) > 1, seed


def test_given_hosts_keep_their_scenarios_and_spares_lose_their_jobs() -> None:
    given = data_parallel_fleet(3, seed=1)
    assert DemoFleet(3, given=given).assignment() == given
    assert spare_scenario(given[0][1])["job"] == []


# -- what the simulated hosts report ------------------------------------------------------------


def test_simulated_processes_decode_with_their_user_and_job() -> None:
    hosts = data_parallel_fleet(4, seed=2)
    (job,) = hosts[0][1]["job"]
    pids: set[int] = set()
    for seed, (_, sc) in enumerate(hosts):
        (sample,) = samples(sc, 0, seed=seed)
        for gpu in sample.gpus:
            assert gpu.processes is not None
            (proc,) = gpu.processes
            assert isinstance(proc, GpuProcess) and proc.name == "python3"
            assert (proc.uid, proc.user) == (job["uid"], job["user"])
            assert proc.job == JobRef(kind="slurm", id=job["id"], step="0", source="cgroup")
            pids.add(proc.pid)
    assert len(pids) == 32  # one rank a GPU, each its own process


def test_a_kubernetes_pod_and_idle_gpus_on_one_host() -> None:
    pod = {
        "kind": "k8s",
        "id": "0f8b2c1e-3d4a-4b5c-9d6e-7f8091a2b3c4",
        "gpus": [0, 1],
        "workload": "inference",
        "uid": 1000,
        "namespace": "serving",
        "name": "llm-serve-7d9f8b6c5-x2x4k",
        "container": "c0ffee" * 10 + "abcd",
    }
    (sample,) = samples({"name": "pod", "gpus": 4, "job": [pod]}, 0)
    procs = [gpu.processes for gpu in sample.gpus]
    assert procs[2:] == [[], []]  # GPUs no job holds run nothing
    assert procs[0] is not None and procs[1] is not None
    (a,), (b,) = procs[0], procs[1]
    assert a.pid == b.pid and a.name == "tritonserver"  # one server drives both GPUs
    assert (a.uid, a.user) == (1000, None)
    assert a.job is not None and a.job.key == f"k8s:{pod['id']}"
    assert (a.job.namespace, a.job.name, a.job.container) == (
        "serving",
        "llm-serve-7d9f8b6c5-x2x4k",
        pod["container"],
    )


def test_the_hosts_of_a_job_write_their_checkpoints_together() -> None:
    """Data-parallel ranks wait for each other: every host of the job dips at once."""
    hosts = data_parallel_fleet(4, seed=5)
    dips = []
    for seed, (_, sc) in enumerate(hosts):
        run = samples(sc, 600, seed=seed, slow_every=60)
        dips.append([round(s.t - T0) for s in run if all((g.util_pct or 0) < 10 for g in s.gpus)])
    assert len(dips[0]) >= 8  # two checkpoint writes or more in ten minutes
    assert dips[1:] == [dips[0]] * 3


def test_a_slow_host_slows_exactly_one_host_of_the_job() -> None:
    hosts = data_parallel_fleet(4, seed=6, slow_host=2, factor=0.8, at=60.0)
    assert [sc["name"] for _, sc in hosts] == ["healthy", "healthy", "slow_host", "healthy"]
    runs = [samples(sc, 240, seed=seed, slow_every=60) for seed, (_, sc) in enumerate(hosts)]
    for field in ("util_pct", "sm_clock_mhz", "power_w"):
        before = [statistics.median(medians(run, field, 0, 59)) for run in runs]
        after = [statistics.median(medians(run, field, 62, 240)) for run in runs]
        assert max(before) / min(before) < 1.03, (field, before)  # in step before the fault
        fast = [after[i] for i in (0, 1, 3)]
        assert max(fast) / min(fast) < 1.03, (field, after)  # the others stay together
        assert 0.7 <= after[2] / statistics.median(fast) <= 0.9, (field, after)


# Shared hosts: the jobs on each, the rest of the GPUs idle.
SHARED = [(4, 4), (4,), (2, 2), (2, 1, 1), (1,)]


def shared_host(sizes: tuple[int, ...]) -> dict[str, Any]:
    jobs, first = [], 0
    for n, size in enumerate(sizes):
        gpus = list(range(first, first + size))
        jobs.append({"kind": "slurm", "id": str(5000 + n), "gpus": gpus, "uid": 21034})
        first += size
    return {"name": "shared", "gpus": 8, "workload": "training", "job": jobs}


def host_stragglers(scenario: dict[str, Any], seed: int, seconds: int = 600) -> list[str]:
    """The host-level straggler reasons raised in `seconds` s of `scenario`."""
    clock = FakeClock()
    backend = SimBackend(scenario, seed=seed, clock=clock, event_thread=False)
    head = {"v": 1, "host": "sim", "agent_version": "t", "backend": "sim", "interval_s": 1.0}
    hello = msgspec.convert({**head, "slow_every": 60, **backend.hello()}, Hello)
    health = HostHealth()
    raised = []
    for seq in range(seconds + 1):
        clock.t = float(seq)
        body = {"v": 1, "t": T0 + seq, "seq": seq, **backend.sample(slow=seq % 60 == 0)}
        verdict = health.evaluate(hello, msgspec.convert(body, Sample), T0 + seq)
        raised += [f"{seq}: {r.text}" for r in verdict.host.reasons if r.code == "straggler"]
    return raised


@pytest.mark.parametrize("sizes", SHARED)
def test_a_host_shared_by_jobs_raises_no_straggler_of_its_own(sizes: tuple[int, ...]) -> None:
    """The host-level rule compares a host's GPUs whatever job they serve: the ways the fleet
    shares a host keep one job's checkpoint write or evaluation among GPUs busy with another
    job from looking like a straggler to it."""
    assert host_stragglers(shared_host(sizes), seed=0) == []


def test_a_straggling_gpu_of_a_shared_host_is_still_caught() -> None:
    slow = {"kind": "straggler", "gpus": [1], "at": 60.0, "factor": 0.55}
    raised = host_stragglers({**shared_host((4, 4)), "fault": [slow]}, seed=0, seconds=300)
    assert raised and all("GPU1 straggles" in r for r in raised)


@pytest.mark.slow
@pytest.mark.parametrize("sizes", SHARED)
def test_shared_hosts_raise_no_straggler_over_many_seeds(sizes: tuple[int, ...]) -> None:
    for seed in range(2, 20):
        assert host_stragglers(shared_host(sizes), seed) == [], seed


# -- the demo's requeue -------------------------------------------------------------------------


def run_stand_in(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def test_the_stand_in_lists_a_nodes_jobs_and_records_their_requeue(tmp_path: Path) -> None:
    hosts = write_scheduler(tmp_path / "scheduler", fleet(8, seed=1))
    log = tmp_path / "scheduler.log"
    programs = stand_in(log, tmp_path / "scheduler")
    assert demo_actions(log, tmp_path / "scheduler")["requeue-jobs"]["argv"] == [
        *programs["scontrol"],
        "requeue",
        "{jobs}",
    ]
    node, sc = next((n, sc) for n, sc in hosts if any(j["kind"] == "slurm" for j in sc["job"]))
    ids = [j["id"] for j in sc["job"]]
    listed = run_stand_in([*programs["squeue"], "-w", node, "-h", "-o", "%A"])
    assert (listed.returncode, listed.stdout.split()) == (0, ids)
    done = run_stand_in([*programs["scontrol"], "requeue", ",".join(ids)])
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"demo scheduler: scontrol requeue {','.join(ids)}\n"
    assert (tmp_path / "scheduler" / "requeued").read_text().split() == ids
    assert run_stand_in([*programs["squeue"], "-w", node, "-h", "-o", "%A"]).stdout == ""
    assert log.read_text().splitlines()[-1] == f"demo scheduler: squeue -w {node} -h -o %A"
    # What no job of the fleet is, the stand-in refuses as scontrol does, and records nothing.
    for bad in ("999", "12;rm -rf /", "*"):
        refused = run_stand_in([*programs["scontrol"], "requeue", bad])
        assert refused.returncode == 1 and "Invalid job id specified" in refused.stderr, bad
    assert (tmp_path / "scheduler" / "requeued").read_text().split() == ids


def test_the_demo_requeue_runs_the_slurm_presets_commands_through_the_stand_in(
    tmp_path: Path,
) -> None:
    """Whatever commands the Slurm preset's requeue runs (a listing then one requeue a job, or
    one requeue of them all), the demo runs them, rendered from the loaded config."""
    scheduler = tmp_path / "scheduler"
    hosts = write_scheduler(scheduler, fleet(32, seed=1))
    log = tmp_path / "scheduler.log"
    action = load_actions(demo_config([n for n, _ in hosts], log, scheduler))["requeue-jobs"]
    node, sc = next((n, sc) for n, sc in hosts if len(sc["job"]) > 1)
    ids = [j["id"] for j in sc["job"]]
    values = {"node": node, "jobs": ",".join(ids), "operator": "op"}
    previous: list[str] = []
    for step in action.steps:
        assert step.where == "local"
        if step.for_each_line:
            runs = [{**values, "job": line} for line in previous]
        elif "job" in step.command.names:
            runs = [{**values, "job": job_id} for job_id in ids]
        else:
            runs = [values]
        previous = []
        for run in runs:
            done = run_stand_in(list(step.command.render(run)))
            assert done.returncode == 0, done.stderr
            previous += done.stdout.splitlines()
    assert sorted((scheduler / "requeued").read_text().split()) == sorted(ids)
    assert f"demo scheduler: scontrol requeue {ids[-1]}" in log.read_text() or (
        f"demo scheduler: scontrol requeue {','.join(ids)}" in log.read_text()
    )


def test_a_requeued_job_leaves_every_host_it_ran_on(tmp_path: Path) -> None:
    requeued = tmp_path / "requeued"
    requeued.touch()
    hosts = data_parallel_fleet(2, seed=7)
    other = {"kind": "slurm", "id": "77", "gpus": [0], "uid": 21034, "user": "mchen"}
    (job,) = hosts[0][1]["job"]
    backends, clocks = [], []
    for seed, (_, sc) in enumerate(hosts):
        moved = {**sc, "gpus": 9, "job": [*sc["job"], {**other, "gpus": [8]}]}
        clock = FakeClock()
        scenario = {**moved, "requeue_file": str(requeued)}
        backends.append(SimBackend(scenario, seed=seed, clock=clock, event_thread=False))
        clocks.append(clock)

    def jobs_now(t: float) -> list[set[str]]:
        out = []
        for clock, backend in zip(clocks, backends, strict=True):
            clock.t = t
            body = msgspec.convert(
                {"v": 1, "t": T0 + t, "seq": 0, **backend.sample(slow=True)}, Sample
            )
            out.append({p.job.id for g in body.gpus for p in g.processes or () if p.job})
        return out

    assert jobs_now(10.0) == [{job["id"], "77"}] * 2
    requeued.write_text(f"{job['id']}\n")
    assert jobs_now(12.0) == [{"77"}] * 2  # gone from both hosts; the other job runs on
    util = [backend.sample(slow=False)["gpus"] for backend in backends]
    assert all(g["util_pct"] == 0 for gpus in util for g in gpus[:8])
    assert all(gpus[8]["util_pct"] > 0 for gpus in util)


async def test_a_demo_fleet_requeue_takes_the_job_off_every_host(tmp_path: Path) -> None:
    """End to end: simulated hosts behind SSH, the monitor, the demo's requeue action."""
    hosts = data_parallel_fleet(2, seed=8)
    other = {"kind": "slurm", "id": "77", "gpus": [7], "uid": 21034, "user": "mchen"}
    hosts[1][1]["job"][0]["gpus"] = list(range(7))
    hosts[1][1]["job"].append(other)
    (job,) = hosts[0][1]["job"]
    key = f"slurm:{job['id']}"

    def jobs(snap: FleetSnapshot) -> list[set[str]]:
        return [{ref.key for ref in jobs_on_host(h)} for h in snap.hosts]

    async def until(check: Callable[[FleetSnapshot], bool]) -> list[set[str]]:
        async def first() -> list[set[str]]:
            async for snap in monitor.snapshots():
                if check(snap):
                    return jobs(snap)
            raise AssertionError("the monitor stopped")

        return await asyncio.wait_for(first(), 30)

    async with DemoFleet(2, given=hosts) as fleet:
        plans, ssh = plans_for_demo(fleet, interval_s=0.2)
        async with FleetMonitor(plans, tick_s=0.2, closers=[ssh.close]) as monitor:
            seen = await until(lambda snap: all(jobs(snap)))
            assert seen == [{key}, {key, "slurm:77"}]
            config = demo_config([n for n, _ in hosts], tmp_path / "log", fleet.scheduler)
            action = load_actions(config)["requeue-jobs"]
            values = {"node": "sim-001", "jobs": job["id"], "job": job["id"], "operator": "op"}
            for step in action.steps:
                if not step.for_each_line:
                    done = run_stand_in(list(step.command.render(values)))
                    assert done.returncode == 0, done.stderr
            seen = await until(lambda snap: key not in set().union(*jobs(snap)))
            assert seen == [set(), {"slurm:77"}]  # gone from both hosts; the other job stays
