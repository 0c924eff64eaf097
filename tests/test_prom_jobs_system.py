"""`gputui jobs` through a real Prometheus scraping the simulated dcgm-exporter with HPC job
labels: the jobs are dcgm-exporter's `hpc_job` values, as a Slurm prolog writes them into its
job mapping files.

The fleet: three training hosts running the Slurm jobs `gputui demo` would place on them
(sim-001 alone in one job; sim-002 and sim-003, whose GPU 3 fell off the bus with XID 79, in
another), 120 s into their scenarios. On sim-001, GPU 5 serves a second job (4242) beside its
host's, GPU 6's label is empty and GPU 7's is hostile text (an escape sequence that would
retitle the terminal, Rich markup, a bidi override).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from gputui.collect.dcgm_sim import fleet_jobs, parse_mix
from tests.prometheus import PrometheusServer, SimDcgm, hosts_file

pytestmark = pytest.mark.system

MIX = "healthy:2,xid79:1"
HOSTILE = "\x1b]0;owned\x07[bold red]4242[/]\u202e"
EXTRA = [
    "--jobs",
    "--hpc-job",
    "sim-001:6=",
    "--hpc-job",
    f"sim-001:7={HOSTILE}",
]


@pytest.fixture(scope="module")
def jobs_doc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, dict[str, Any]]]:
    """`gputui jobs --format json`'s exit code and document over the fleet."""
    directory = tmp_path_factory.mktemp("promjobs")
    host_job = fleet_jobs(parse_mix(MIX))["sim-001"][5][0]
    extra = [*EXTRA, "--hpc-job", f"sim-001:5={host_job}", "--hpc-job", "sim-001:5=4242"]
    sim = SimDcgm(directory, MIX, endpoints=2, elapsed_s=120.0, extra=extra)
    sim.start()
    prom = PrometheusServer(directory / "prom", [f"127.0.0.1:{p}" for p in sim.endpoints])
    try:
        prom.start()
        # Prometheus keeps the labels as served: GPU 7's hostile text, GPU 6's none at all.
        served = prom.query('DCGM_FI_DEV_GPU_TEMP{Hostname="sim-001", gpu=~"6|7"}')
        metrics: list[dict[str, str]] = [r["metric"] for r in served]  # type: ignore[misc]
        labels = {m["gpu"]: m.get("hpc_job") for m in metrics}
        assert labels == {"6": None, "7": HOSTILE}
        hosts = hosts_file(directory / "prom.toml", prom.url)
        args = ["jobs", "--hosts", str(hosts), "--format", "json", "--wait", "10"]
        args += ["--journal", str(directory / "j.db")]  # none there: the prior rate
        done = subprocess.run(
            [sys.executable, "-m", "gputui.cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.stdout, done.stderr
        assert "owned" not in done.stdout + done.stderr and "\x1b" not in done.stdout
        yield done.returncode, json.loads(done.stdout)
    finally:
        prom.stop()
        sim.stop()


def gpus(job: dict[str, Any]) -> list[tuple[str, int]]:
    return [(g["host"], g["index"]) for g in job["gpus"]]


def test_hpc_job_labels_are_the_fleets_jobs(jobs_doc: tuple[int, dict[str, Any]]) -> None:
    _, doc = jobs_doc
    placed = fleet_jobs(parse_mix(MIX))
    alone, shared = placed["sim-001"][0][0], placed["sim-002"][0][0]
    jobs = {j["id"]: j for j in doc["jobs"]}
    assert sorted(jobs) == sorted([alone, shared, "4242"])
    assert all(j["kind"] == "slurm" and j["user"] is None for j in jobs.values())
    # sim-001's GPUs 6 (empty label) and 7 (hostile label) serve no job.
    assert gpus(jobs[alone]) == [("sim-001", i) for i in range(6)]
    assert gpus(jobs["4242"]) == [("sim-001", 5)]
    assert jobs[shared]["hosts"] == ["sim-002", "sim-003"]
    assert gpus(jobs[shared]) == [(h, i) for h in ("sim-002", "sim-003") for i in range(8)]
    # No process is made up: Prometheus knows the job of each GPU, not its processes.
    assert all(g["pids"] == [] for j in jobs.values() for g in j["gpus"])
    assert doc["plain_processes"]["count"] == 0
    # Each job's risk for its own size, at the prior rate.
    assert jobs[shared]["gpus_total"] == 16 and jobs["4242"]["gpus_total"] == 1
    assert jobs[shared]["p_survive_24h"] < jobs["4242"]["p_survive_24h"] < 1


def test_the_job_on_the_lost_gpu_is_failed_and_the_exit_critical(
    jobs_doc: tuple[int, dict[str, Any]],
) -> None:
    code, doc = jobs_doc
    shared = fleet_jobs(parse_mix(MIX))["sim-002"][0][0]
    job = next(j for j in doc["jobs"] if j["id"] == shared)
    assert job["label"] == "failed" and (job["worst_host"], job["worst_gpu"]) == ("sim-003", 3)
    assert "XID 79" in job["why"]
    assert code == 2 and doc["status"] == "CRITICAL"
    others = [j for j in doc["jobs"] if j["id"] != shared]
    assert all(j["label"] != "failed" for j in others)
