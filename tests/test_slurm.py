"""`gputui node` against a real Slurm (tests/slurm.py): drain, requeue, resume, guards, spares,
and the requeue of exactly the job the agent found on a node's GPU.

Requeued jobs wait about 120 s (BeginTime) before they may run again; the tests check that
they are pending for that reason and counted a restart, without waiting for them to run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gputui.agent.nvml_backend import NvmlBackend
from gputui.collect.protocol import StreamDecoder
from gputui.config import config_from_text
from gputui.core.model import FleetSnapshot, HostSnapshot, HostState, Sample
from gputui.ops.actions import OperatorActions
from gputui.ops.journal import Journal
from gputui.ops.runner import CommandRunner
from tests.slurm import RunningJob, SlurmCluster
from tests.test_attribution_slurm import OneProcess

pytestmark = pytest.mark.system

GPUTUI = [sys.executable, "-c", "from gputui.cli import main; main()"]

HOSTS = """
[groups.gpu]
hosts = ["gpu[001-003]"]
spares = ["gpu004"]

[actions]
presets = ["slurm"]
"""


class Site:
    def __init__(self, cluster: SlurmCluster, tmp: Path) -> None:
        self.cluster = cluster
        self.hosts = tmp / "hosts.toml"
        self.hosts.write_text(HOSTS)
        self.journal_path = tmp / "journal.sqlite3"

    def gputui(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **self.cluster.env,
            "GPUTUI_HOSTS": str(self.hosts),
            "GPUTUI_JOURNAL": str(self.journal_path),
        }
        return subprocess.run(
            [*GPUTUI, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    def journal(self) -> Journal:
        return Journal.open(self.journal_path)

    def running(self, *jobs: str) -> None:
        self.cluster.wait(
            lambda: all(self.cluster.job(j)["JobState"] == "RUNNING" for j in jobs), 30, "jobs"
        )


@pytest.fixture
def site(slurm_cluster: SlurmCluster, tmp_path: Path) -> Iterator[Site]:
    slurm_cluster.reset()
    yield Site(slurm_cluster, tmp_path)


def assert_requeued(cluster: SlurmCluster, job: str) -> None:
    info = cluster.job(job)
    assert info["JobState"] == "PENDING", info
    assert info["Reason"] == "BeginTime" or int(info["Restarts"]) >= 1, info


def test_fail_drains_and_requeues_then_resume_returns_the_node(site: Site) -> None:
    cluster = site.cluster
    job = cluster.submit("--requeue", "-w", "gpu002", "--wrap", "sleep 300")
    site.running(job)

    result = site.gputui(
        "node",
        "fail",
        "gpu002",
        "--reason",
        "XID 79",
        "--action",
        "drain",
        "--action",
        "requeue-jobs",
        "--yes",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert f"$ scontrol requeue {job}" in result.stdout
    # Drained: the requeued job left, so DRAINING (ALLOCATED+DRAIN) becomes DRAINED (IDLE+DRAIN).
    cluster.wait(lambda: cluster.node("gpu002").state == "IDLE+DRAIN", 30, "gpu002 drained")
    assert cluster.node("gpu002").reason == "gputui: XID 79"
    assert_requeued(cluster, job)

    with site.journal() as j:
        assert j.marked_failed() == {"gpu002"}
        runs = [(r.action, r.argv, r.exit_code) for r in j.runs()]
        hit = j.node_states()["gpu002"].jobs
    assert runs == [
        ("node-state", ("scontrol", "-o", "show", "node", "gpu002"), 0),
        (
            "drain",
            ("scontrol", "update", "NodeName=gpu002", "State=DRAIN", "Reason=gputui: XID 79"),
            0,
        ),
        ("requeue-jobs", ("scontrol", "requeue", job), 0),
    ]
    # gpu002 has no agent to ask (no SSH here): Slurm's job list said which job it runs.
    assert hit == (f"slurm:{job}",)
    assert f"jobs on gpu002: slurm:{job} wrap (root) [from the scheduler]" in result.stdout

    result = site.gputui("node", "resume", "gpu002")  # gputui's own drain: no --yes needed
    assert result.returncode == 0, result.stderr
    assert "gpu002 back in service" in result.stdout
    assert "DRAIN" not in cluster.node("gpu002").flags
    with site.journal() as j:
        assert j.node_states()["gpu002"].state == "in_service"


def test_a_job_that_cannot_be_requeued_is_one_error_and_the_rest_completes(site: Site) -> None:
    cluster = site.cluster
    stuck = cluster.submit(
        "--no-requeue", "--oversubscribe", "--mem=100", "-w", "gpu003", "--wrap", "sleep 300"
    )
    movable = cluster.submit(
        "--requeue", "--oversubscribe", "--mem=100", "-w", "gpu003", "--wrap", "sleep 300"
    )
    site.running(stuck, movable)

    result = site.gputui(
        "node",
        "fail",
        "gpu003",
        "--reason",
        "XID 48",
        "--action",
        "drain",
        "--action",
        "requeue-jobs",
        "--yes",
    )
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1, result.stderr
    # One command for both jobs; Slurm requeues each on its own and names the one it cannot.
    command = re.match(
        r"gputui: requeue-jobs: `scontrol requeue (\S+)` failed \(exit 1\)", errors[0]
    )
    assert command is not None, errors[0]
    assert sorted(command.group(1).split(",")) == sorted([stuck, movable])
    assert f"Requested operation is presently disabled for job {stuck}" in errors[0]
    assert_requeued(cluster, movable)  # the other job moved all the same
    assert cluster.job(stuck)["JobState"] == "RUNNING"
    node = cluster.node("gpu003")
    assert "DRAIN" in node.flags and node.reason == "gputui: XID 48"  # draining: stuck still runs
    assert "gpu003 marked failed" in result.stdout


def test_resuming_a_node_someone_else_drained_needs_force(site: Site) -> None:
    cluster = site.cluster
    cluster.run(
        "scontrol", "update", "NodeName=gpu001", "State=DRAIN", "Reason=maintenance: new PSU"
    )

    refused = site.gputui("node", "resume", "gpu001")
    assert refused.returncode == 1
    assert "taken out of service by someone else" in refused.stderr
    assert '"maintenance: new PSU"' in refused.stderr and "--force" in refused.stderr
    assert cluster.node("gpu001").reason == "maintenance: new PSU"

    # Marking it failed leaves their drain (and reason) as it is.
    failed = site.gputui("node", "fail", "gpu001", "--reason", "XID 79", "--yes")
    assert failed.returncode == 0, failed.stderr
    assert "left as it is" in failed.stdout
    assert cluster.node("gpu001").reason == "maintenance: new PSU"

    unconfirmed = site.gputui("node", "resume", "gpu001", "--force")
    assert unconfirmed.returncode == 2 and "needs confirmation" in unconfirmed.stderr
    forced = site.gputui("node", "resume", "gpu001", "--force", "--yes")
    assert forced.returncode == 0, forced.stderr
    assert not {"DRAIN", "DOWN"} & cluster.node("gpu001").flags


def test_a_spare_drained_by_gputui_is_brought_in(site: Site) -> None:
    cluster = site.cluster
    cluster.run("scontrol", "update", "NodeName=gpu004", "State=DRAIN", "Reason=gputui: spare")
    result = site.gputui("node", "fail", "gpu001", "--reason", "XID 95", "--spare", "--yes")
    assert result.returncode == 0, result.stderr
    assert "spare gpu004 in service in place of gpu001" in result.stdout
    assert not {"DRAIN", "DOWN"} & cluster.node("gpu004").flags
    assert cluster.node("gpu001").reason == "gputui: XID 95"
    listed = site.gputui("node", "list").stdout
    assert "spare, replaces gpu001" in listed


class Monitor:
    """The live monitor as the ops layer reads it: one host's latest snapshot."""

    def __init__(self, host: HostSnapshot) -> None:
        self.hosts = {host.name: host}
        self.snap = FleetSnapshot(t=host.slow_sample_t or 0.0, hosts=(host,))

    def snapshot(self) -> FleetSnapshot:
        return self.snap

    def set_marked_failed(self, host: str, marked: bool) -> None:
        pass


def agent_sample(pid: int) -> Sample:
    """The slow sample an agent on the job's node sends, its GPU running `pid`, decoded by
    the collector's decoder: the path from /proc to the monitor's snapshot."""
    backend = NvmlBackend(OneProcess(pid), event_thread=False)
    try:
        backend.hello()
        fields = backend.sample(slow=True)
    finally:
        backend.close()
    line = json.dumps(
        {"type": "sample", "v": 1, "t": time.time(), "seq": 0, "slow": True, **fields}
    )
    sample = StreamDecoder().decode(line)
    assert isinstance(sample, Sample), line
    return sample


async def test_the_job_the_agent_found_is_requeued_for_real(
    slurm_cluster: SlurmCluster,
    running_job: RunningJob,
    tmp_path: Path,
) -> None:
    cluster, job = slurm_cluster, running_job
    sample = agent_sample(job.pid)
    node = HostSnapshot(
        name=job.node, state=HostState.STREAMING, slow_sample=sample, slow_sample_t=time.time()
    )
    config = config_from_text(HOSTS, "hosts.toml")
    journal = Journal.open(tmp_path / "journal.sqlite3")
    ops = OperatorActions(
        config,
        journal,
        monitor=Monitor(node),  # type: ignore[arg-type]
        runner=CommandRunner(env=cluster.env),
    )
    try:
        assert ops.scheduler is not None
        await ops.scheduler.refresh()  # Slurm's own job list names it
        jobs = await ops.read_jobs(job.node)
        assert jobs.ids() == (job.id,)
        assert [j.text() for j in jobs.jobs] == [f"slurm:{job.id} wrap (root)"]
        listed = ops.scheduler.jobs[f"slurm:{job.id}"]
        assert (listed.nodes, listed.state) == ((job.node,), "RUNNING")

        op = ops.prepare_fail(job.node, "XID 79", ["drain", "requeue-jobs"], jobs=jobs)
        assert f"  [local] scontrol requeue {job.id}" in op.preview()
        outcome = await ops.run(op)
        assert outcome.ok, outcome.errors()
        # Requeued: its process ends (COMPLETING), then it waits in the queue again.
        cluster.wait(lambda: cluster.job(job.id)["JobState"] == "PENDING", 30, "requeued")
        assert_requeued(cluster, job.id)
        assert journal.node_states()[job.node].jobs == (f"slurm:{job.id}",)
        requeue = [r for r in journal.runs() if r.action == "requeue-jobs"]
        assert [(r.argv, r.exit_code) for r in requeue] == [(("scontrol", "requeue", job.id), 0)]
    finally:
        await ops.aclose()
        journal.close()


def test_jobs_given_on_the_command_line_are_requeued(site: Site) -> None:
    cluster = site.cluster
    job = cluster.submit("--requeue", "-w", "gpu003", "--wrap", "sleep 300")
    site.running(job)
    dry = site.gputui("action", "run", "requeue-jobs", "gpu003", "--job", job, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"jobs on gpu003: slurm:{job} (given with --job)" in dry.stdout
    assert f"[local] scontrol requeue {job}" in dry.stdout
    assert cluster.job(job)["JobState"] == "RUNNING"  # a dry run changes nothing
    done = site.gputui("action", "run", "requeue-jobs", "gpu003", "--job", job, "--yes")
    assert done.returncode == 0, done.stderr
    cluster.wait(lambda: cluster.job(job)["JobState"] == "PENDING", 30, "requeued")
    assert_requeued(cluster, job)
