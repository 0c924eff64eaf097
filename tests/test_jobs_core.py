"""Jobs from snapshots (gputui/core/jobs.py): grouping across hosts, the worst verdict of a
job's GPUs, scheduler enrichment, run time, per-job risk and the status of the jobs."""

from __future__ import annotations

import math

import msgspec
import pytest

from gputui.core.hoststats import PluginStatus
from gputui.core.jobs import (
    FirstSeen,
    Job,
    JobsBuilder,
    SchedulerJob,
    build_jobs,
    gpu_readings,
    job_status,
    jobs_on_host,
    jobs_status,
    plain_processes,
    unattributed_hosts,
    with_step_rates,
)
from gputui.core.model import (
    Action,
    FleetSnapshot,
    GpuProcess,
    HostState,
    JobRef,
    Level,
    Sample,
)
from gputui.core.risk_summary import job_risk
from tests.fake_fleet import T0, R
from tests.jobs_fleet import ALICE, BOB, CAROL, DAVE, POD, POD_UID, jobs_fleet
from tests.test_replay_h200 import replay


def snapshot(ticks: int = 10) -> FleetSnapshot:
    return jobs_fleet().advance(ticks)  # tick 10 carries the slow signals (processes)


def by_key(
    snap: FleetSnapshot,
    scheduler: dict[str, SchedulerJob] | None = None,
    rate: float | None = None,
    write_s: float = 60.0,
) -> dict[str, Job]:
    jobs = build_jobs(snap, scheduler, rate_per_gpu_hour=rate, checkpoint_write_s=write_s)
    return {j.key: j for j in jobs}


def test_processes_group_into_jobs_across_hosts_in_fleet_order() -> None:
    jobs = build_jobs(snapshot())
    assert [j.key for j in jobs] == [
        "slurm:4242",
        "slurm:4243",
        "slurm:4250",
        "slurm:4260",
        f"k8s:{POD_UID}",
    ]
    alice, bob, carol, dave, pod = jobs
    assert alice.hosts == ("gpu001", "gpu002") and alice.user == "alice"
    assert [(g.host, g.gpu) for g in alice.gpus] == [
        (h, i) for h in ("gpu001", "gpu002") for i in range(8)
    ]
    assert alice.gpus[9].pids == (4101,)  # the process on gpu002 GPU1
    assert alice.gpu_count == 16
    assert (pod.kind, pod.id, pod.namespace, pod.name, pod.user) == (
        "k8s",
        POD_UID,
        "infer",
        "vllm-0",
        "svc-infer",
    )
    assert pod.hosts == ("gpu009",) and len(pod.gpus) == 4
    assert (bob.hosts, carol.hosts, dave.hosts) == (("gpu003", "gpu004"), ("gpu005",), ("gpu006",))


def test_each_gpu_carries_its_latest_readings() -> None:
    fleet = jobs_fleet()
    fleet.advance(10)
    snap = fleet.advance(3)  # three fast samples after the slow one
    (alice,) = [j for j in build_jobs(snap) if j.key == ALICE.key]
    readings = gpu_readings(alice, snap)
    host = next(h for h in snap.hosts if h.name == alice.gpus[11].host)
    assert host.name == "gpu002" and host.sample is not None
    assert host.sample is not host.slow_sample
    assert readings[11] is host.sample.gpus[3]
    assert readings[11].util_pct is not None and alice.gpus[11].memory_total_mib == 81559.0
    carol = next(j for j in build_jobs(snap) if j.key == CAROL.key)
    lost = gpu_readings(carol, snap)[3]  # GPU3 fell off the bus: a reading without values
    assert lost is not None and lost.status == "lost" and lost.util_pct is None


def test_steps_of_one_job_are_one_job_and_plain_processes_are_counted_apart() -> None:
    snap = snapshot()
    host = snap.hosts[0]
    assert host.slow_sample is not None
    first = host.slow_sample.gpus[0]
    procs = [
        *(first.processes or []),
        GpuProcess(pid=9001, user="alice", job=msgspec.structs.replace(ALICE, step="batch")),
        GpuProcess(pid=9002, name="nvidia-smi"),
    ]
    gpus = [msgspec.structs.replace(first, processes=procs), *host.slow_sample.gpus[1:]]
    slow = msgspec.structs.replace(host.slow_sample, gpus=gpus)
    snap = msgspec.structs.replace(
        snap, hosts=(msgspec.structs.replace(host, slow_sample=slow), *snap.hosts[1:])
    )
    assert jobs_on_host(snap.hosts[0]) == (ALICE,)
    alice = build_jobs(snap)[0]
    assert alice.gpus[0].pids == (4100, 9001) and len(alice.gpus) == 16
    leftover = plain_processes(snap)
    # gpu001's nvidia-smi, gpu005 GPUs 4-7, gpu007's and gpu008's eight each (root's, no job)
    assert leftover.hosts == (("gpu001", 1), ("gpu005", 4), ("gpu007", 8), ("gpu008", 8))
    assert leftover.count == 21


def test_worst_verdict_is_the_worst_gpu_of_the_job_with_its_reason_and_action() -> None:
    jobs = by_key(snapshot())
    alice, bob = jobs[ALICE.key], jobs[BOB.key]
    assert (alice.health.label, alice.health.level, alice.health.why) == ("ok", Level.OK, "")
    h = bob.health
    assert (h.label, h.level, h.host, h.gpu, h.action) == (
        "critical",
        Level.CRITICAL,
        "gpu004",
        5,
        Action.DRAIN,
    )
    assert h.why == "GPU5 temperature 90 C at or above the slowdown limit 89 C"
    assert h.reason is not None and h.reason.code == "temp_slowdown"
    by_gpu = {(g.host, g.gpu): g for g in bob.gpus}
    assert by_gpu[("gpu003", 2)].label == "warn" and by_gpu[("gpu003", 1)].label == "ok"


def test_a_lost_gpu_counts_for_the_jobs_of_its_host() -> None:
    carol = by_key(snapshot())[CAROL.key]
    # The job's processes were on GPUs 0-2; GPU3 fell off the bus and lists none any more.
    assert [(g.gpu, g.pids) for g in carol.gpus] == [
        (0, (4100,)),
        (1, (4101,)),
        (2, (4102,)),
        (3, ()),
    ]
    h = carol.health
    assert (h.label, h.gpu, h.action) == ("failed", 3, Action.REBOOT_NODE)
    assert "fallen off the bus" in h.why


def test_a_reason_of_the_host_counts_for_each_of_its_gpus_and_others_gpus_do_not() -> None:
    fleet = jobs_fleet()
    fleet.scripts["gpu002"].reasons = [
        R("gpu_missing", Level.WARN, "1 of 8 GPUs missing from the sample: GPU7"),
    ]
    fleet.scripts["gpu009"].gpus = 8
    fleet.scripts["gpu009"].reasons = [
        R("xid_79", Level.FAILED, "GPU6 XID 79", 6, Action.REBOOT_NODE)  # no job on GPU6
    ]
    jobs = by_key(fleet.advance(10))
    h = jobs[ALICE.key].health
    assert (h.label, h.level, h.host, h.gpu) == ("warn", Level.WARN, "gpu002", 0)
    assert h.why == "1 of 8 GPUs missing from the sample: GPU7"
    assert {g.label for g in jobs[ALICE.key].gpus if g.host == "gpu002"} == {"warn"}
    assert jobs[POD.key].health.label == "ok"


def test_an_unreachable_host_makes_its_jobs_unreachable_but_a_latched_failure_stays() -> None:
    fleet = jobs_fleet()
    snap = fleet.advance(10)
    dave = by_key(snap)[DAVE.key]
    h = dave.health
    assert (h.label, h.host) == ("unreachable", "gpu006")
    assert h.why == "gpu006 unreachable: connection refused (retrying)"
    fleet.scripts["gpu006"].reasons = [
        R("xid_79", Level.FAILED, "GPU2 XID 79", 2, Action.REBOOT_NODE, latched=True)
    ]
    h = by_key(fleet.snapshot())[DAVE.key].health
    assert (h.label, h.gpu, h.action) == ("failed", 2, Action.REBOOT_NODE)


def test_the_scheduler_names_dates_and_sizes_a_job() -> None:
    told = {
        ALICE.key: SchedulerJob(
            id="4242",
            name="llama-70b",
            user="alice.smith",
            nodes=("gpu001", "gpu002", "gpu011", "gpu012"),
            start_t=T0 - 7200,
            gpus_per_node=8,
            state="RUNNING",
        )
    }
    jobs = by_key(snapshot(), told)
    alice = jobs[ALICE.key]
    assert (alice.name, alice.user, alice.state) == ("llama-70b", "alice.smith", "RUNNING")
    assert alice.gpu_count == 32 and len(alice.gpus) == 16
    assert alice.nodes == ("gpu001", "gpu002", "gpu011", "gpu012")
    assert (alice.start_source, alice.runtime_s(T0 + 10)) == ("scheduler", 7210.0)
    bob = jobs[BOB.key]
    assert (bob.name, bob.user, bob.start_t, bob.gpu_count) == (None, "bob", None, 16)


def test_each_job_gets_its_own_risk_at_the_fleets_rate() -> None:
    rate = 3e-5
    jobs = by_key(snapshot(), rate=rate, write_s=90.0)
    alice, pod = jobs[ALICE.key], jobs[POD.key]
    assert alice.risk == job_risk(16, rate, 90.0)
    assert pod.risk == job_risk(4, rate, 90.0)
    assert alice.risk is not None and pod.risk is not None
    # The larger job: lower odds of a quiet day, shorter checkpoint interval.
    assert alice.risk.p_survive_24h < pod.risk.p_survive_24h
    assert math.isclose(alice.risk.p_survive_24h, math.exp(-16 * rate * 24))
    a, b = alice.risk.checkpoint_interval_h, pod.risk.checkpoint_interval_h
    assert a is not None and b is not None and a < b
    assert all(j.risk is None for j in build_jobs(snapshot()))  # no rate given: no figures


def test_the_scheduler_size_sets_the_risk() -> None:
    told = {
        BOB.key: SchedulerJob(id="4243", nodes=tuple(f"n{i}" for i in range(8)), gpus_per_node=8)
    }
    bob = by_key(snapshot(), told, rate=2e-5)[BOB.key]
    assert bob.risk == job_risk(64, 2e-5, 60.0)


def test_first_seen_times_a_job_until_it_is_gone() -> None:
    fleet = jobs_fleet()
    seen = FirstSeen()
    told = {BOB.key: SchedulerJob(id="4243", start_t=T0 - 60)}
    first = seen.apply(build_jobs(fleet.advance(10), told), T0 + 10)
    later = {j.key: j for j in seen.apply(build_jobs(fleet.advance(20), told), T0 + 30)}
    alice, bob = later[ALICE.key], later[BOB.key]
    assert (alice.start_t, alice.start_source, alice.runtime_s(T0 + 30)) == (
        T0 + 10,
        "first_seen",
        20.0,
    )
    assert (bob.start_t, bob.start_source) == (T0 - 60, "scheduler")
    assert len(first) == 5
    # Alice's job leaves gpu001 and gpu002; when it comes back it is timed anew.
    placement = fleet.placement
    saved = placement.pop("gpu001"), placement.pop("gpu002")
    gone = seen.apply(build_jobs(fleet.advance(10)), T0 + 40)
    assert ALICE.key not in {j.key for j in gone}
    placement["gpu001"], placement["gpu002"] = saved
    back = {j.key: j for j in seen.apply(build_jobs(fleet.advance(10)), T0 + 50)}
    assert back[ALICE.key].start_t == T0 + 50


def test_step_rates_attach_to_their_jobs() -> None:
    jobs = with_step_rates(build_jobs(snapshot()), {ALICE.key: 2.5})
    assert [j.step_rate_per_s for j in jobs] == [2.5, None, None, None, None]


def test_status_is_the_worst_job_and_unknown_while_processes_are_not_known() -> None:
    fleet = jobs_fleet()
    snap = fleet.advance(10)
    jobs = build_jobs(snap)
    # gpu006 unreachable, gpu007 stale, gpu010 connecting: their processes are not known now.
    assert unattributed_hosts(snap) == ["gpu006", "gpu007", "gpu010"]
    assert jobs_status(jobs, snap) is PluginStatus.CRITICAL  # bob's and carol's jobs
    healthy = [j for j in jobs if j.key in (ALICE.key, POD.key)]
    assert jobs_status(healthy, snap) is PluginStatus.UNKNOWN
    for name in ("gpu006", "gpu007"):
        fleet.scripts[name].marked_failed = True  # taken out by the operator: known, left out
    fleet.scripts["gpu010"].said_hello = True
    snap = fleet.advance(10)
    assert unattributed_hosts(snap) == []
    assert jobs_status(healthy, snap) is PluginStatus.OK
    # Dave's job still shows where it ran, but its host is the operator's now.
    (dave,) = [j for j in build_jobs(snap) if j.key == DAVE.key]
    assert dave.health.label == "unreachable" and job_status(dave) is PluginStatus.OK
    fleet.scripts["gpu004"].reasons = []  # bob's job keeps gpu003's warning
    warn = [j for j in build_jobs(fleet.snapshot()) if j.key == BOB.key]
    assert jobs_status(warn, fleet.snapshot()) is PluginStatus.WARNING
    assert jobs_status([], fleet.snapshot()) is PluginStatus.OK


@pytest.mark.parametrize("attributed", [False, True])
def test_a_real_h200_training_process(attributed: bool) -> None:
    """The recorded H200 under load: its python3 process is a plain process, or, attributed to
    a Slurm job, a one-GPU job carrying what the GPU said (full load at the power cap: ok)."""
    _, _, after = replay()
    message, snap = next((m, s) for m, s in after if m["seq"] == 40)
    host = snap.hosts[0]
    assert host.slow_sample is not None
    if attributed:
        job = JobRef(kind="slurm", id="77", step="0", source="environ")

        def attribute(sample: Sample) -> Sample:
            gpus = [
                msgspec.structs.replace(
                    g,
                    processes=[
                        msgspec.structs.replace(p, uid=1000, user="trainer", job=job)
                        for p in g.processes or ()
                    ],
                )
                for g in sample.gpus
            ]
            return msgspec.structs.replace(sample, gpus=gpus)

        host = msgspec.structs.replace(host, slow_sample=attribute(host.slow_sample))
        snap = msgspec.structs.replace(snap, hosts=(host,))
    jobs = build_jobs(snap)
    if not attributed:
        assert jobs == []
        assert plain_processes(snap).hosts == (("h200-vm", 1),)
        return
    (one,) = jobs
    assert (one.key, one.user, one.hosts, one.health.label) == (
        "slurm:77",
        "trainer",
        ("h200-vm",),
        "ok",
    )
    (gpu,) = one.gpus
    (reading,) = gpu_readings(one, snap)
    want = message["gpus"][0]
    assert gpu.pids == (484,) and reading is not None
    assert (reading.util_pct, reading.power_w, reading.sm_clock_mhz) == (
        want["util_pct"],
        want["power_w"],
        want["sm_clock_mhz"],
    )
    assert gpu.memory_total_mib == 143771.0
    assert plain_processes(snap).count == 0
    assert jobs_status(jobs, snap) is PluginStatus.OK


def test_hosts_without_processes_read_yet_make_no_job() -> None:
    snap = jobs_fleet().advance(5)  # no slow sample yet but gpu006's and gpu007's last ones
    assert [j.key for j in build_jobs(snap)] == [DAVE.key]
    assert plain_processes(snap).hosts == (("gpu007", 8),)
    assert len(unattributed_hosts(snap)) == 9  # every host but the one marked failed
    assert {h.state for h in snap.hosts if h.slow_sample is None} == {
        HostState.STREAMING,
        HostState.CONNECTING,
    }


def test_the_builder_reuses_a_hosts_part_only_while_its_inputs_are_the_same_objects() -> None:
    """The live view's builder gives what build_jobs gives, tick after tick, while a host whose
    processes, verdict and state did not change is not judged again."""
    fleet = jobs_fleet()
    builder = JobsBuilder()
    snaps = [fleet.advance(10)]
    for tick in range(1, 25):
        if tick == 8:
            fleet.scripts["gpu004"].reasons = []  # bob's critical GPU cools down
        if tick == 15:
            fleet.scripts["gpu001"].state = HostState.STALE
        if tick == 20:
            fleet.placement.pop("gpu002")  # alice's job leaves gpu002
        snaps.append(fleet.advance())
    for snap in snaps:
        assert builder.build(snap, rate_per_gpu_hour=2e-5) == build_jobs(
            snap, rate_per_gpu_hour=2e-5
        )
    # As the monitor publishes them: a quiet host's verdict and its slow sample are the same
    # objects from tick to tick while only its fast readings move.
    snap = snaps[-1]
    first = builder.build(snap)
    moved = msgspec.structs.replace(
        snap,
        hosts=tuple(msgspec.structs.replace(h, sample=h.slow_sample) for h in snap.hosts),
    )
    again = builder.build(moved)
    assert again == first
    assert all(
        a is b
        for j, k in zip(first, again, strict=True)
        for a, b in zip(j.gpus, k.gpus, strict=True)
    )
    changed = msgspec.structs.replace(
        moved, hosts=tuple(msgspec.structs.replace(h, marked_failed=True) for h in moved.hosts)
    )
    third = builder.build(changed)
    assert all(g.marked_failed for j in third for g in j.gpus)
