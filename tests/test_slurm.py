"""`gputui node` against a real Slurm (tests/slurm.py): drain, requeue, resume, guards, spares.

Requeued jobs wait about 120 s (BeginTime) before they may run again; the tests check that
they are pending for that reason and counted a restart, without waiting for them to run.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gputui.ops.journal import Journal
from tests.slurm import SlurmCluster, slurm_cluster  # noqa: F401 - the session fixture

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
def site(slurm_cluster: SlurmCluster, tmp_path: Path) -> Iterator[Site]:  # noqa: F811
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
    assert runs == [
        ("node-state", ("scontrol", "-o", "show", "node", "gpu002"), 0),
        (
            "drain",
            ("scontrol", "update", "NodeName=gpu002", "State=DRAIN", "Reason=gputui: XID 79"),
            0,
        ),
        ("requeue-jobs", ("squeue", "-w", "gpu002", "-h", "-o", "%A"), 0),
        ("requeue-jobs", ("scontrol", "requeue", job), 0),
    ]

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
    assert errors[0].startswith(f"gputui: requeue-jobs: `scontrol requeue {stuck}` failed (exit 1)")
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
