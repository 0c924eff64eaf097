"""Heartbeats end to end: two real training processes (GPUGuard, one rank twice as slow as the
other) write their heartbeat files; the real agent on the same host (a local agent process over
the simulated NVML, the training processes' GPUs) reads them in its slow path; the monitor
decodes them, and the Jobs view shows the job's step rate and each rank's relative speed next
to its GPU's verdict. Real processes, real files, no network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gputui.agent.heartbeat import HeartbeatReader, parse
from gputui.collect.launch import AgentArgs
from gputui.collect.local_source import LocalSource
from gputui.collect.monitor import FleetMonitor, HostPlan
from gputui.core.jobs import build_jobs
from gputui.render.jobs import job_cells, job_json
from gputui.train.heartbeat import HeartbeatWriter, Identity
from tests.test_collect_ssh import wait_until

HERE = Path(__file__).parent
SEED = 7
TABLE = {
    "name": "beats",
    "gpus": 2,
    "model": "H100-SXM",
    "workload": "training",
    "job": [{"kind": "slurm", "id": "4242", "gpus": [0, 1], "user": "alice"}],
}


@pytest.fixture
def ranks(tmp_path: Path) -> Iterator[Path]:
    """Rank 0 on GPU 0 at 10 ms of work a step, rank 1 on GPU 1 at 30 ms."""
    beats = tmp_path / "beats"
    procs = []
    for rank, (gpu, step_s) in enumerate(((0, 0.01), (1, 0.03))):
        env = dict(
            os.environ,
            PYTHONPATH=str(HERE.parent),
            GPUTUI_HEARTBEAT_DIR=str(beats),
            SLURM_JOB_ID="4242",
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
        )
        argv = [sys.executable, str(HERE / "train_heartbeat_job.py"), json.dumps(TABLE)]
        argv += [str(SEED), str(gpu), str(step_s)]
        procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True))
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        yield beats
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)


async def test_the_monitor_shows_the_jobs_step_rate_and_each_ranks_speed(
    ranks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUTUI_HEARTBEAT_DIR", str(ranks))  # the agent runs as this user
    args = AgentArgs(backend="sim", scenario=TABLE, seed=SEED, interval_s=0.2, slow_every=1)
    source = LocalSource("trainhost", args)

    def two_beats(mon: FleetMonitor) -> bool:
        snap = mon.snapshot().hosts[0].slow_sample
        beats = snap.heartbeats if snap is not None else None
        return beats is not None and len(beats) == 2 and all(b.step >= 20 for b in beats)

    async with FleetMonitor([HostPlan(source=source)], tick_s=0.1) as mon:
        await wait_until(lambda: two_beats(mon), timeout=60)
        snapshot = mon.snapshot()
    (job,) = build_jobs(snapshot)
    assert job.key == "slurm:4242"
    by_gpu = {g.gpu: g for g in job.gpus}
    assert (by_gpu[0].rank, by_gpu[1].rank) == (0, 1)
    # Rank 1 does three times the work a step: a third of the speed, and the job goes at its
    # pace (sleeps overrun a little on a loaded machine, never run short).
    assert by_gpu[0].relative_speed == 1.0
    assert by_gpu[1].relative_speed is not None and 0.2 <= by_gpu[1].relative_speed <= 0.45
    assert job.step_rate_per_s is not None and 15 <= job.step_rate_per_s <= 34
    assert by_gpu[1].label == "ok"  # its GPU is healthy: the slowness is the loop's own
    cells = job_cells(job, snapshot.t)
    assert cells.steps == f"{job.step_rate_per_s:.3g}"
    gpus = job_json(job, snapshot)["gpus"]
    assert [(g["rank"], g["relative_speed"]) for g in gpus] == [
        (0, 1.0),
        (1, by_gpu[1].relative_speed),
    ]


def test_the_agent_refuses_what_is_not_a_live_processs_own_heartbeat(tmp_path: Path) -> None:
    writer = HeartbeatWriter(Identity(pid=os.getpid(), framework="torch", rank=3), tmp_path)
    writer.write(t=time.time(), step=12, step_time_s=0.5, compute_s=None, uuid="GPU-abc")
    (beat,) = HeartbeatReader([str(tmp_path)])()
    assert beat["pid"] == os.getpid() and beat["step"] == 12 and beat["rank"] == 3
    now = time.time()
    good = {"v": 1, "pid": 5, "t": now, "step": 1}
    assert parse(json.dumps(good).encode(), 5, now) is not None
    for bad in (
        {**good, "pid": 6},  # names another process than its file
        {**good, "t": now - 3600},  # stopped writing an hour ago
        {**good, "step": -1},
        {**good, "step": True},
        {**good, "step_time_s": 1e9},
        {**good, "rank": "0"},
        {**good, "v": 2},
    ):
        assert parse(json.dumps(bad).encode(), 5, now) is None, bad
    assert parse(b"\xff{", 5, now) is None
    # A file of a process that is gone, and one too long, are left out.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    gone = int(dead.stdout)
    (tmp_path / f"{gone}.json").write_text(json.dumps({**good, "pid": gone}))
    (tmp_path / "1.json").write_text(" " * 5000)
    assert [b["pid"] for b in HeartbeatReader([str(tmp_path)])()] == [os.getpid()]
    writer.remove()
    assert HeartbeatReader([str(tmp_path)])() == []
