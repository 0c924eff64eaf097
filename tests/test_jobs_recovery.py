"""Recovery names the job: {jobs} and {job} filled from the jobs on the node's GPUs, the Slurm
preset's requeue of exactly those jobs, the scheduler's job list where the node cannot say,
and the jobs a failure hits in the preview, the TUI's confirmation and the journal.

The scheduler commands are the stand-ins of tests/test_actions.py (node states in files, every
argv logged); tests/test_slurm.py requeues a real job on the real Slurm."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import pytest
from textual.widgets import Static
from typer.testing import CliRunner, Result

import gputui.cli.commands  # noqa: F401 - registers the commands on the app
from gputui.cli.app import app
from gputui.config import config_from_text
from gputui.core.model import (
    FleetSnapshot,
    GpuProcess,
    GpuReading,
    HostSnapshot,
    HostState,
    JobRef,
    Sample,
)
from gputui.ops.actions import ActionError, OperatorActions
from gputui.ops.journal import Journal
from gputui.ops.runner import CommandRunner
from tests.fake_fleet import FakeFleet
from tests.test_actions import HOSTS, Sched
from tests.test_scheduler import FIXTURE

SLURM = '[actions]\npresets = ["slurm"]\n'


def proc(pid: int, job: str | None, user: str = "alice", step: str = "0") -> GpuProcess:
    ref = JobRef(kind="slurm", id=job, step=step) if job is not None else None
    return GpuProcess(pid=pid, name="python", uid=1000, user=user, job=ref)


def node(
    name: str,
    gpus: dict[int, list[GpuProcess]],
    *,
    state: HostState = HostState.STREAMING,
    lost: tuple[int, ...] = (),
    age_s: float = 4.0,
) -> HostSnapshot:
    """A host whose last slow sample lists `gpus`' processes; `lost` GPUs list none."""
    readings = [GpuReading(index=i, processes=procs) for i, procs in gpus.items()]
    readings += [GpuReading(index=i, status="lost", error="GPU is lost") for i in lost]
    readings.sort(key=lambda r: r.index)
    t = time.time() - age_s
    sample = Sample(v=1, t=t, seq=0, gpus=readings, slow=True)
    return HostSnapshot(name=name, state=state, slow_sample=sample, slow_sample_t=t)


def unread(name: str) -> HostSnapshot:
    return HostSnapshot(name=name, state=HostState.UNREACHABLE, state_reason="connection refused")


class Monitor:
    """The live monitor as the ops layer reads it: its latest snapshot, and marks."""

    def __init__(self, *hosts: HostSnapshot) -> None:
        self.snap = FleetSnapshot(t=time.time(), hosts=hosts)
        self.hosts = {h.name: h for h in hosts}
        self.marked: dict[str, bool] = {}

    def snapshot(self) -> FleetSnapshot:
        return self.snap

    def set_marked_failed(self, host: str, marked: bool) -> None:
        self.marked[host] = marked


Make = Callable[..., OperatorActions]


@pytest.fixture
def sched(tmp_path: Path) -> Sched:
    return Sched(tmp_path)


@pytest.fixture
async def make(tmp_path: Path, sched: Sched) -> AsyncIterator[Make]:
    made: list[tuple[OperatorActions, Journal]] = []

    def factory(actions: str = SLURM, monitor: Monitor | None = None) -> OperatorActions:
        config = config_from_text(HOSTS + textwrap.dedent(actions), "hosts.toml")
        journal = Journal.open(tmp_path / f"journal{len(made)}.sqlite3")
        ops = OperatorActions(
            config,
            journal,
            monitor=monitor,  # type: ignore[arg-type]
            runner=CommandRunner(env=sched.env),
        )
        made.append((ops, journal))
        return ops

    yield factory
    for ops, journal in made:
        await ops.aclose()
        journal.close()


def scontrol_calls(sched: Sched) -> list[list[str]]:
    return [c for c in sched.calls() if c[0] == "scontrol" and c[1] == "requeue"]


# --------------------------------------------------------------------------------------------
# Placeholders
# --------------------------------------------------------------------------------------------


async def test_jobs_is_one_argument_and_job_one_run_per_job(make: Make) -> None:
    ops = make(
        """
        [actions.hand-over]
        steps = [
            {argv = ["echo", "{jobs}"]},
            {argv = ["sh", "-c", "echo job $0 of $1; test $0 != 12", "{job}", "{jobs}"]},
        ]
        """
    )
    jobs = await ops.read_jobs("gpu001", given=["11", "12", "13"])
    plan = ops.plan("hand-over", "gpu001", jobs=jobs)
    argvs = [s.command().argv for s in plan.steps]
    assert argvs[0] == ("echo", "11,12,13")  # one argument, whatever the number of jobs
    assert [a[3] for a in argvs[1:]] == ["11", "12", "13"]
    assert {a[4] for a in argvs[1:]} == {"11,12,13"}
    preview = "\n".join(plan.preview())
    assert "echo job $0 of $1; test $0 != 12' 12 11,12,13" in preview  # each run shown
    out: list[str] = []
    outcome = await ops.run(plan, on_output=out.append)
    # 12's run fails; 13's still runs, and the action reports the one failure.
    assert [a.status for a in outcome.actions] == ["failed"]
    assert "[hand-over]   job 13 of 11,12,13" in out
    (problem,) = outcome.errors()
    assert "' 12 11,12,13` failed (exit 1)" in problem


async def test_an_action_naming_jobs_needs_them(make: Make) -> None:
    ops = make('[actions.x]\nargv = ["echo", "{jobs}"]\n')
    with pytest.raises(ActionError, match=r"needs the node's jobs \(--job ID, repeatable\)"):
        ops.plan("x", "gpu001")


# --------------------------------------------------------------------------------------------
# The jobs seen on the node's GPUs
# --------------------------------------------------------------------------------------------


async def test_the_slurm_preset_requeues_exactly_the_jobs_seen(make: Make, sched: Sched) -> None:
    seen = node(
        "gpu002",
        {
            0: [proc(100, "4242"), proc(101, "4242", step="batch")],  # steps of one job
            1: [proc(200, "4243", user="bob"), proc(201, None)],  # and a plain process
            2: [proc(300, "4242", step="1")],
        },
    )
    ops = make(SLURM + "[scheduler]\nperiod_s = 0\n", Monitor(seen, unread("gpu001")))
    jobs = await ops.read_jobs("gpu002")
    assert jobs.ids() == ("4242", "4243")
    op = ops.prepare_fail("gpu002", "XID 79", ["requeue-jobs"], jobs=jobs)
    preview = op.preview()
    assert preview[1] == (
        "  jobs on gpu002: slurm:4242 (alice), slurm:4243 (bob) "
        "(gpu002's GPU processes as read 4 s ago)"
    )
    assert "  [local] scontrol requeue 4242,4243" in preview
    assert '    argv: ["scontrol", "requeue", "4242,4243"]' in preview
    outcome = await ops.run(op)
    assert outcome.ok
    assert scontrol_calls(sched) == [["scontrol", "requeue", "4242,4243"]]
    assert ops.journal.node_states()["gpu002"].jobs == ("slurm:4242", "slurm:4243")


async def test_no_job_on_the_node_requeues_nothing_and_says_so(make: Make, sched: Sched) -> None:
    ops = make(SLURM, Monitor(node("gpu002", {0: [proc(1, None)], 1: []})))
    jobs = await ops.read_jobs("gpu002")
    op = ops.prepare_fail("gpu002", "XID 79", ["requeue-jobs"], jobs=jobs)
    assert op.preview()[1].startswith("  jobs on gpu002: none seen on its GPUs (gpu002's GPU")
    assert op.preview()[2:] == [
        "requeue-jobs on gpu002 (needs confirmation)",
        "  nothing to do: no job seen on gpu002's GPUs",
    ]
    out: list[str] = []
    outcome = await ops.run(op, on_output=out.append)
    assert outcome.ok and outcome.actions[0].status == "skipped"
    assert out == ["[requeue-jobs] nothing to do: no job seen on gpu002's GPUs"]
    assert scontrol_calls(sched) == [] and not any(c[0] == "squeue" for c in sched.calls())
    # The failure is recorded as hitting no job: known to be none, not unknown.
    assert ops.journal.node_states()["gpu002"].jobs == ()


async def test_unknown_jobs_refuse_the_requeue_but_not_the_failure(make: Make) -> None:
    ops = make(SLURM + "[scheduler]\nperiod_s = 0\n", Monitor(unread("gpu002")))
    jobs = await ops.read_jobs("gpu002")
    assert not jobs.known
    with pytest.raises(ActionError) as err:
        ops.prepare_fail("gpu002", "XID 79", ["drain", "requeue-jobs"], jobs=jobs)
    assert str(err.value) == (
        "action requeue-jobs names the jobs on gpu002's GPUs, and they are unknown: gpu002 has "
        "not listed its GPU processes (unreachable: connection refused) (name them with --job ID)"
    )
    op = ops.prepare_fail("gpu002", "XID 79", ["drain"], jobs=jobs)
    assert op.preview()[1] == (
        "  jobs on gpu002: unknown (gpu002 has not listed its GPU processes "
        "(unreachable: connection refused))"
    )
    await ops.run(op)
    failed = ops.journal.node_states()["gpu002"]
    assert failed.state == "failed" and failed.jobs is None


async def test_a_host_cannot_put_an_option_or_a_list_into_a_command(make: Make) -> None:
    hostile = node(
        "gpu002",
        {0: [proc(1, "-all")], 1: [proc(2, "5,6")], 2: [proc(3, "$(reboot)")], 3: [proc(4, "77")]},
    )
    ops = make(SLURM, Monitor(hostile))
    op = ops.prepare_fail("gpu002", "XID 79", ["requeue-jobs"], jobs=await ops.read_jobs("gpu002"))
    assert op.plans[0].steps[0].command().argv == ("scontrol", "requeue", "77")
    text = "\n".join(op.preview())
    assert "slurm:-all: not a job id, left out of every command" in text
    assert "slurm:5,6: not a job id" in text and "slurm:$(reboot): not a job id" in text


# --------------------------------------------------------------------------------------------
# The scheduler's job list, where the node cannot say
# --------------------------------------------------------------------------------------------


async def test_an_unreachable_node_gets_the_jobs_slurm_places_on_it(
    make: Make, sched: Sched
) -> None:
    (sched.dir / "squeue.json").write_text(FIXTURE.read_text())  # train-llm (1) on gpu002
    ops = make(SLURM, Monitor(unread("gpu002"), unread("gpu003")))
    jobs = await ops.read_jobs("gpu002")
    assert jobs.ids() == ("1",)
    assert jobs.summary().startswith(
        "jobs on gpu002: slurm:1 train-llm (root) [from the scheduler] (squeue's job list read "
    )
    assert "not read: gpu002 has not listed its GPU processes" in jobs.summary()
    again = await ops.read_jobs("gpu003")  # gpu[003-004] holds eval (2)
    assert again.ids() == ("2",)
    listed = [c for c in sched.calls() if c[0] == "squeue"]
    assert listed == [["squeue", "--json", "--states=RUNNING,COMPLETING,SUSPENDED"]]  # once
    op = ops.prepare_fail("gpu002", "XID 79", ["requeue-jobs"], jobs=jobs)
    assert (await ops.run(op)).ok
    assert scontrol_calls(sched) == [["scontrol", "requeue", "1"]]


async def test_a_lost_gpus_job_comes_from_the_scheduler_beside_those_seen(
    make: Make, sched: Sched
) -> None:
    (sched.dir / "squeue.json").write_text(FIXTURE.read_text())
    ops = make(SLURM, Monitor(node("gpu002", {0: [proc(1, "11")]}, lost=(1,))))
    jobs = await ops.read_jobs("gpu002")
    assert jobs.ids() == ("11", "1")
    assert "GPU 1 is lost: its processes cannot be listed" in jobs.summary()


async def test_a_failing_scheduler_is_said_beside_the_unknown_jobs(
    make: Make, sched: Sched
) -> None:
    (sched.dir / "squeue.fail").write_text("squeue: error: Unable to contact slurm controller")
    ops = make(SLURM, Monitor(unread("gpu002")))
    jobs = await ops.read_jobs("gpu002")
    assert not jobs.known
    assert jobs.summary() == (
        "jobs on gpu002: unknown (gpu002 has not listed its GPU processes (unreachable: "
        "connection refused); squeue exited 1: squeue: error: Unable to contact slurm "
        "controller)"
    )


async def test_the_scheduler_names_the_jobs_seen(make: Make, sched: Sched) -> None:
    (sched.dir / "squeue.json").write_text(FIXTURE.read_text())
    ops = make(SLURM, Monitor(node("gpu002", {0: [proc(1, "1", user="uid 0")]})))
    assert ops.scheduler is not None
    await ops.scheduler.refresh()  # as the live views' loop does
    jobs = await ops.read_jobs("gpu002")
    assert [j.text() for j in jobs.jobs] == ["slurm:1 train-llm (root)"]


# --------------------------------------------------------------------------------------------
# The TUI: the confirmation lists the jobs, even when no command runs
# --------------------------------------------------------------------------------------------


class JobsFleet(FakeFleet):
    """The scripted fleet, gpu005's GPU 0 serving job 4242 of alice."""

    def _sample(self, s, tick):  # type: ignore[no-untyped-def]
        sample = super()._sample(s, tick)
        if s.name != "gpu005" or not sample.slow:
            return sample
        gpus = list(sample.gpus)
        gpus[0] = msgspec.structs.replace(gpus[0], processes=[proc(4100, "4242")])
        return msgspec.structs.replace(sample, gpus=gpus)


async def test_marking_failed_in_the_tui_shows_and_journals_the_jobs(tmp_path: Path) -> None:
    from gputui.config import Config, HostGroup, HostSpec
    from gputui.tui.ops_operator import OpsOperator
    from gputui.tui.screens.dialogs import PreviewDialog
    from tests.fake_fleet import small_fleet
    from tests.test_tui_app import cell, running, until

    fleet = JobsFleet(list(small_fleet().scripts.values()))
    names = tuple(fleet.scripts)
    config = Config(
        path=Path("test"),
        hosts=[HostSpec(name=n, group="train") for n in names],
        groups={"train": HostGroup(name="train", hosts=names)},
    )
    journal = Journal.open(tmp_path / "journal.sqlite3")
    holder: list[OperatorActions] = []
    async with running(fleet, operator=OpsOperator(lambda: holder[0] if holder else None)) as r:
        holder.append(OperatorActions(config, journal, monitor=r.monitor))  # type: ignore[arg-type]
        await r.tick(10 - fleet.tick % 10)  # to the next slow sample, with the processes
        await r.press("x", "enter")  # the prefilled reason; no action runs, yet it asks
        await until(r.pilot, lambda: isinstance(r.app.screen, PreviewDialog))
        shown = str(r.app.screen.query_one("#preview", Static).content)
        assert "jobs on gpu005: slurm:4242 (alice) (gpu005's GPU processes as read" in shown
        await r.press("y")
        await until(r.pilot, lambda: cell(r, "gpu005", "state") == "marked-failed")
        await holder[0].aclose()
    assert journal.node_states()["gpu005"].jobs == ("slurm:4242",)
    journal.close()


# --------------------------------------------------------------------------------------------
# The command line reads the node once
# --------------------------------------------------------------------------------------------


def cli(tmp_path: Path, *args: str) -> Result:
    (tmp_path / "hosts.toml").write_text(
        textwrap.dedent(
            """
            [groups.sim]
            hosts = ["localhost"]
            backend = "sim"
            [groups.far]
            hosts = ["gpu-unresolvable.invalid"]
            [actions.tell]
            argv = ["echo", "requeue {jobs}"]
            [scheduler]
            period_s = 0
            """
        )
    )
    env = {"GPUTUI_HOSTS": str(tmp_path / "hosts.toml"), "GPUTUI_JOURNAL": str(tmp_path / "j")}
    return CliRunner().invoke(app, list(args), env=env)


def test_node_fail_reads_the_nodes_gpu_processes_for_its_jobs(tmp_path: Path) -> None:
    # A simulated host with no job: read (not unknown), and none is found.
    dry = cli(tmp_path, "node", "fail", "localhost", "--reason", "XID 79", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.splitlines()[1] == (
        "  jobs on localhost: none seen on its GPUs (localhost's GPU processes, read now)"
    )
    told = cli(tmp_path, "action", "run", "tell", "localhost", "--yes")
    assert told.exit_code == 0, told.output
    assert "[tell] nothing to do: no job seen on localhost's GPUs" in told.stdout
    given = cli(tmp_path, "action", "run", "tell", "localhost", "--job", "7", "--job", "8", "--yes")
    assert "[tell]   requeue 7,8" in given.stdout


def test_a_node_that_cannot_be_read_is_marked_failed_with_its_jobs_unknown(
    tmp_path: Path,
) -> None:
    host = "gpu-unresolvable.invalid"
    refused = cli(tmp_path, "action", "run", "tell", host, "--yes")
    assert refused.exit_code == 2
    assert refused.stderr.startswith(
        f"gputui: action tell names the jobs on {host}'s GPUs, and they are unknown: "
        f"{host} could not be read: "
    )
    assert refused.stderr.rstrip().endswith("(name them with --job ID)")
    failed = cli(tmp_path, "node", "fail", host, "--reason", "XID 79", "--yes", "--no-spare")
    assert failed.exit_code == 0, failed.output
    assert f"jobs on {host}: unknown ({host} could not be read: " in failed.stdout
    with Journal.open(tmp_path / "j") as j:
        assert j.node_states()[host].jobs is None


def test_the_journal_shows_the_jobs_a_failure_hit(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j") as j:
        j.record_node_state("localhost", "failed", "XID 79", jobs=("slurm:4242", "slurm:4243"))
        j.record_node_state("localhost", "in_service", "resumed")
        j.record_node_state("localhost", "failed", "XID 48", jobs=())
        j.record_node_state("localhost", "failed", "XID 95")
    shown = cli(tmp_path, "journal")
    assert shown.exit_code == 0, shown.output
    details = [line.split("by ", 1)[1].split(None, 1)[1] for line in shown.stdout.splitlines()[1:]]
    assert details == [
        "XID 79; jobs: slurm:4242, slurm:4243",
        "resumed",
        "XID 48; jobs: none",
        "XID 95; jobs: ?",
    ]
    listed = json.loads(cli(tmp_path, "journal", "--format", "json").stdout)
    assert [e["jobs"] for e in listed] == [["slurm:4242", "slurm:4243"], None, [], None]
