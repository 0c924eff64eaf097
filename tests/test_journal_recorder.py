"""The recorder: the monitor's faults and exposure, written into the journal."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncssh
import pytest

from gputui.collect.feed import Backoff
from gputui.collect.launch import AgentInvocation
from gputui.collect.monitor import FleetMonitor, HostPlan
from gputui.collect.ssh import SshContext
from gputui.collect.ssh_source import SshSource
from gputui.core.model import (
    FleetEvent,
    FleetSnapshot,
    GpuInfo,
    Hello,
    HostSnapshot,
    HostState,
    HostVerdict,
    Level,
    Reason,
    Verdict,
)
from gputui.ops.journal import Journal
from gputui.ops.recorder import JournalRecorder
from tests.sshfake import FakeFleet, FakeHost, hello_line, sample_line
from tests.test_collect_ssh import wait_until


@pytest.fixture
def journal(tmp_path: Path):  # type: ignore[no-untyped-def]
    j = Journal.open(tmp_path / "j.sqlite3")
    yield j
    j.close()


def hello(name: str, gpus: int = 2) -> Hello:
    return Hello(
        v=1,
        host=name,
        agent_version="t",
        backend="sim",
        interval_s=1.0,
        slow_every=10,
        gpus=[GpuInfo(index=i, uuid=f"GPU-{name}-{i}", name="H100") for i in range(gpus)],
    )


def host(
    name: str,
    levels: dict[int, Level] | None = None,
    *,
    state: HostState = HostState.STREAMING,
    marked: bool = False,
    gpus: int = 2,
) -> HostSnapshot:
    verdicts = {
        i: Verdict(level=lv, reasons=(Reason(code="x", level=lv, text=f"GPU{i} {lv.label}"),))
        for i, lv in (levels or {}).items()
    }
    return HostSnapshot(
        name=name,
        state=state,
        hello=hello(name, gpus),
        marked_failed=marked,
        verdict=HostVerdict(host=Verdict(level=Level.OK), gpus=verdicts),
    )


HOUR0 = 1_800_000_000.0  # on an hour boundary


def test_exposure_counts_watched_gpus_only(journal: Journal) -> None:
    rec = JournalRecorder(journal, max_gap_s=30)
    for k in range(4):
        rec.observe(
            FleetSnapshot(
                t=HOUR0 + 10 * k,
                hosts=(
                    host("a"),  # 2 GPUs, watched
                    host("b", gpus=8, marked=True),  # marked failed: not exposure
                    host("c", state=HostState.UNREACHABLE),  # not watched
                ),
            )
        )
    rec.observe(FleetSnapshot(t=HOUR0 + 30 + 3600, hosts=(host("a"),)))  # a gap: not counted
    rec.flush()
    assert journal.per_node_failures_and_exposure() == {"a": (0, pytest.approx(2 * 30 / 3600))}


def test_nodes_marked_by_another_process_leave_exposure(journal: Journal) -> None:
    journal.record_node_state("a", "failed", "by the CLI")
    rec = JournalRecorder(journal)
    rec.sync_marks()
    rec.observe(FleetSnapshot(t=HOUR0, hosts=(host("a"), host("b"))))
    rec.observe(FleetSnapshot(t=HOUR0 + 10, hosts=(host("a"), host("b"))))
    rec.flush()
    assert set(journal.exposure()) == {"b"}


def test_faults_and_recoveries_are_recorded_with_the_gpu_uuid(journal: Journal) -> None:
    rec = JournalRecorder(journal)
    xid = FleetEvent(
        t=HOUR0, host="a", kind="xid", text="XID 79", level=Level.FAILED, gpu=1, xid=79
    )
    noise = FleetEvent(t=HOUR0, host="a", kind="state", text="streaming", level=Level.OK)
    rec.observe(FleetSnapshot(t=HOUR0, hosts=(host("a"),), events=(xid, noise)))
    rec.observe(FleetSnapshot(t=HOUR0 + 1, hosts=(host("a", {1: Level.FAILED}),)))
    rec.observe(FleetSnapshot(t=HOUR0 + 2, hosts=(host("a", {1: Level.UNKNOWN}),)))
    rec.observe(FleetSnapshot(t=HOUR0 + 3, hosts=(host("a", {1: Level.OK}),)))
    rec.observe(FleetSnapshot(t=HOUR0 + 4, hosts=(host("a", {0: Level.CRITICAL}),)))
    faults = journal.faults()
    assert [(f.kind, f.gpu, f.uuid, f.level) for f in faults] == [
        ("xid", 1, "GPU-a-1", Level.FAILED),
        ("verdict", 1, "GPU-a-1", Level.FAILED),
        ("recovered", 1, "GPU-a-1", Level.OK),
        ("verdict", 0, "GPU-a-0", Level.CRITICAL),
    ]
    assert journal.failures_and_exposure()[0] == 2  # XID 79 + its verdict, then GPU0


INV = AgentInvocation(command="agent")


async def test_recorder_follows_a_live_monitor(tmp_path: Path, journal: Journal) -> None:
    async def xid(process: asyncssh.SSHServerProcess[bytes], h: FakeHost) -> int:
        process.stdout.write(hello_line(h.name))
        for seq in range(1000):
            process.stdout.write(sample_line(seq))
            if seq == 5:
                event = {
                    "v": 1,
                    "type": "event",
                    "t": 1.0,
                    "kind": "xid",
                    "gpu": 1,
                    "xid": 79,
                    "text": "GPU has fallen off the bus",
                }
                process.stdout.write(json.dumps(event).encode() + b"\n")
            await asyncio.sleep(0.05)
        return 0

    fleet = FakeFleet(tmp_path)
    try:
        await fleet.add(FakeHost("gpu001", script=xid))
        ctx = SshContext(fleet.options())
        source = SshSource("gpu001", ctx, lambda: INV, Backoff(0.05, 0.2))
        async with FleetMonitor([HostPlan(source=source, interval_s=0.1)], tick_s=0.1) as mon:
            rec = JournalRecorder(journal, mon, flush_every_s=0.3)
            task = asyncio.create_task(rec.run())
            await wait_until(lambda: len(journal.faults()) >= 2 and bool(journal.exposure()))
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await fleet.close()
    kinds = {(f.kind, f.uuid) for f in journal.faults()}
    assert ("xid", "GPU-gpu001-1") in kinds and ("verdict", "GPU-gpu001-1") in kinds
    failures, gpu_hours = journal.failures_and_exposure()
    assert failures == 1 and 0 < gpu_hours < 0.01
