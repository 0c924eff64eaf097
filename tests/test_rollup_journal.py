"""Rollups in the journal (gputui/ops/rollups.py): rows that read back as written, day rows that
sum their 5-minute rows, retention that bounds rows and file size, the migration from schema 3
that keeps what was there, and the writer that the monitor feeds."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from gputui.core.model import (
    FleetEvent,
    FleetSnapshot,
    GpuInfo,
    GpuReading,
    Hello,
    HostSnapshot,
    HostState,
    Sample,
)
from gputui.core.rollup import (
    BUCKET_5M_S,
    BUCKET_DAY_S,
    Held,
    Rollup,
    RollupRetention,
    bucket_start,
    merge_all,
)
from gputui.ops.journal import Journal
from gputui.ops.journal_schema import MIGRATIONS, SCHEMA_VERSION
from gputui.ops.rollup_store import stored
from gputui.ops.rollups import RollupWriter
from tests.test_rollup import h200_rollups

DAY0 = 1_799_971_200  # 00:00 UTC, a multiple of 86400


def gpus(n: int) -> list[GpuInfo]:
    return [
        GpuInfo(
            index=i, uuid=f"GPU-{i}", name="NVIDIA H100", temp_slowdown_c=90.0, power_limit_w=700.0
        )
        for i in range(n)
    ]


def fleet_snapshots(
    hosts: int, per_host: int, start: float, seconds: float, step_s: float = 10.0
) -> Iterator[FleetSnapshot]:
    """A fleet sampled every `step_s` (fast-forwarded): every 3rd sample slow, counters rising."""
    inventory = gpus(per_host)
    hellos = {
        f"gpu{h:03d}": Hello(
            v=1,
            host=f"gpu{h:03d}",
            agent_version="test",
            backend="sim",
            interval_s=step_s,
            slow_every=3,
            gpus=inventory,
        )
        for h in range(hosts)
    }
    slow_samples: dict[str, Sample] = {}
    steps = int(seconds / step_s)
    for i in range(steps):
        t = start + i * step_s
        slow = i % 3 == 0
        snaps = []
        for h, (name, hello) in enumerate(hellos.items()):
            readings = [
                GpuReading(
                    index=g.index,
                    util_pct=float((i + h) % 100),
                    temp_c=40.0 + (i + g.index) % 30,
                    power_w=100.0 + (i * 7 + h) % 500,
                    power_limit_w=700.0,
                    clock_events=0x4 if (i + g.index) % 4 == 0 else 0,
                    ecc_corrected_volatile=i // 30 if slow else None,
                    pcie_replay=i // 90 if slow else None,
                    pcie_gen=5 if slow else None,
                    pcie_width=16 if slow else None,
                )
                for g in inventory
            ]
            s = Sample(v=1, t=t, seq=i, gpus=readings, slow=slow)
            if slow:
                slow_samples[name] = s
            snaps.append(
                HostSnapshot(
                    name=name,
                    state=HostState.STREAMING,
                    hello=hello,
                    sample=s,
                    slow_sample=slow_samples.get(name),
                )
            )
        yield FleetSnapshot(t=t, hosts=tuple(snaps))


def rollup(gpu: int, start: int, **kw: object) -> Rollup:
    fields: dict[str, object] = {
        "host": "gpu001",
        "gpu": gpu,
        "uuid": f"GPU-{gpu}",
        "start": start,
        "length_s": BUCKET_5M_S,
        "samples": 30,
        "temp_n": 30,
        "temp_mean_c": 60.0,
        "temp_min_c": 55.0,
        "temp_max_c": 65.0,
    }
    fields.update(kw)
    return msgspec.convert(fields, Rollup)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(tmp_path / "journal.sqlite3") as j:
        yield j


# -- rows -------------------------------------------------------------------------------------


def test_rollups_read_back_as_written(journal: Journal) -> None:
    [h200] = h200_rollups(BUCKET_5M_S)
    other = rollup(
        1,
        h200.start,
        held=Held(hw_power_brake_s=12.5, hw_slowdown_s=3.0),
        ecc_corrected=4,
        remap_pending=True,
        remap_failure=False,
        xids={79: 1, 48: 3},
    )
    assert journal.write_rollups([h200, other], RollupRetention()) == 2
    # Ordered by host ("gpu001" before "vm"), then index and time; real values to 0.01.
    got = journal.rollup_series(BUCKET_5M_S)
    assert got == [stored(other), stored(h200)]
    assert got[1] != h200  # the H200's means have more decimals than are kept
    for name in ("temp_mean_c", "power_mean_w", "power_limit_mean_pct", "load_temp_mean_c"):
        assert getattr(got[1], name) == pytest.approx(getattr(h200, name), abs=0.005), name
    assert got[1].held.sw_power_cap_s == pytest.approx(h200.held.sw_power_cap_s, abs=0.005)
    # The day rows hold the same, re-keyed to the day.
    day = bucket_start(h200.start, BUCKET_DAY_S)
    days = journal.rollup_series(BUCKET_DAY_S)
    assert days == [msgspec.structs.replace(r, start=day, length_s=BUCKET_DAY_S) for r in got]
    assert [r.xids for r in journal.latest_rollups(BUCKET_DAY_S)] == [{79: 1, 48: 3}, {}]


def test_day_rows_sum_their_five_minute_rows(journal: Journal) -> None:
    written: list[Rollup] = []
    for i in range(12):  # an hour, written interval by interval
        batch = [
            rollup(g, DAY0 + 300 * i, samples=30 + g, temp_max_c=60.0 + i, ecc_corrected=i)
            for g in range(2)
        ]
        journal.write_rollups(batch, RollupRetention())
        written += batch
    [d0, d1] = journal.rollup_series(BUCKET_DAY_S)
    assert d0 == merge_all([r for r in written if r.gpu == 0], BUCKET_DAY_S)[0]
    assert (d0.samples, d1.samples) == (12 * 30, 12 * 31)
    assert d0.temp_max_c == 71.0 and d0.ecc_corrected == sum(range(12))


def test_a_bucket_written_twice_is_merged_not_replaced(journal: Journal) -> None:
    """A partial bucket written at shutdown, the rest after a restart."""
    journal.write_rollups(
        [rollup(0, DAY0, samples=10, temp_n=10, temp_max_c=70.0)], RollupRetention()
    )
    journal.write_rollups(
        [rollup(0, DAY0, samples=20, temp_n=20, temp_mean_c=30.0, temp_max_c=50.0, xids={13: 1})],
        RollupRetention(),
    )
    [five] = journal.rollup_series(BUCKET_5M_S)
    [day] = journal.rollup_series(BUCKET_DAY_S)
    for r in (five, day):
        assert (r.samples, r.temp_max_c, r.xids) == (30, 70.0, {13: 1})
        assert r.temp_mean_c == pytest.approx((60 * 10 + 30 * 20) / 30)


def test_series_filters(journal: Journal) -> None:
    journal.write_rollups(
        [rollup(g, DAY0 + d * BUCKET_DAY_S) for g in range(3) for d in range(5)], RollupRetention()
    )
    series = journal.rollup_series(
        BUCKET_DAY_S, gpu=1, since=DAY0 + BUCKET_DAY_S + 1, until=DAY0 + 3 * BUCKET_DAY_S
    )
    assert [(r.gpu, r.start) for r in series] == [
        (1, DAY0 + BUCKET_DAY_S),
        (1, DAY0 + 2 * BUCKET_DAY_S),
    ]
    assert [r.start for r in journal.latest_rollups(BUCKET_5M_S)] == [DAY0 + 4 * BUCKET_DAY_S] * 3
    with pytest.raises(ValueError, match="not 60"):
        journal.rollup_series(60)


# -- retention --------------------------------------------------------------------------------


def _write_days(
    journal: Journal, first_day: int, days: int, gpus_: int, keep: RollupRetention
) -> None:
    for d in range(first_day, first_day + days):
        journal.write_rollups(
            [
                rollup(g, DAY0 + d * BUCKET_DAY_S + 300 * i)
                for i in range(288)
                for g in range(gpus_)
            ],
            keep,
        )


def _pages(path: Path) -> int:
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(raw.execute("PRAGMA page_count").fetchone()[0])


def test_retention_bounds_the_rows_and_the_file(tmp_path: Path) -> None:
    keep = RollupRetention(five_minute_days=2, daily_days=5)
    path = tmp_path / "journal.sqlite3"
    with Journal.open(path) as journal:
        _write_days(journal, 0, 8, 2, keep)
        rows = [
            journal._read(f"SELECT gpu_id, count(*) FROM {t} GROUP BY gpu_id")
            for t in ("rollups_5m", "rollups_1d")
        ]
        assert rows == [[(1, 2 * 288), (2, 2 * 288)], [(1, 5), (2, 5)]]
        # The oldest kept: exactly the configured number of buckets back from the newest.
        starts = [r.start for r in journal.rollup_series(BUCKET_5M_S, gpu=0)]
        assert starts[0] == DAY0 + 6 * BUCKET_DAY_S and starts[-1] == DAY0 + 8 * BUCKET_DAY_S - 300
        settled = _pages(path)
        _write_days(journal, 8, 8, 2, keep)
        # Eight more days in the same rows' room: deleted pages are reused, the file stays.
        assert _pages(path) <= settled * 1.1
        assert journal.integrity_check() == "ok"


def test_gpus_that_stopped_reporting_are_swept(journal: Journal) -> None:
    keep = RollupRetention(five_minute_days=1, daily_days=3)
    now = DAY0 + 3600.0
    # GPU 2's host has a clock a year behind: its buckets are old, but it is still reporting.
    behind = rollup(2, DAY0 - 365 * BUCKET_DAY_S)
    journal.write_rollups([rollup(0, DAY0), rollup(1, DAY0), behind], keep, now=now)
    # Two days later only GPUs 1 and 2 are written: GPU 0 is gone for longer than the 5-minute
    # rows are kept, not yet for as long as the day rows are.
    later = now + 2 * BUCKET_DAY_S
    journal.write_rollups(
        [
            rollup(1, DAY0 + 2 * BUCKET_DAY_S),
            msgspec.structs.replace(behind, start=behind.start + 300),
        ],
        keep,
        now=later,
        sweep=True,
    )
    assert {r.gpu for r in journal.rollup_series(BUCKET_5M_S)} == {1, 2}
    assert {r.gpu for r in journal.rollup_series(BUCKET_DAY_S)} == {0, 1, 2}
    # Two more days: GPU 0 is gone for longer than anything is kept, and so is its entry;
    # GPU 2 (not written for two days now) keeps its day rows.
    end = later + 2 * BUCKET_DAY_S
    journal.write_rollups([rollup(1, DAY0 + 4 * BUCKET_DAY_S)], keep, now=end, sweep=True)
    assert {r.gpu for r in journal.rollup_series(BUCKET_5M_S)} == {1}
    assert {r.gpu for r in journal.rollup_series(BUCKET_DAY_S)} == {1, 2}
    assert journal._read("SELECT uuid FROM rollup_gpus ORDER BY uuid") == [("GPU-1",), ("GPU-2",)]


def test_a_hosts_clock_far_ahead_prunes_only_its_own_rows(journal: Journal) -> None:
    keep = RollupRetention()
    journal.write_rollups([rollup(0, DAY0)], keep)
    ahead = rollup(1, DAY0, host="liar")
    journal.write_rollups(
        [ahead, msgspec.structs.replace(ahead, start=DAY0 + 400 * BUCKET_DAY_S)], keep
    )
    assert [(r.host, r.start) for r in journal.rollup_series(BUCKET_5M_S)] == [
        ("gpu001", DAY0),
        ("liar", DAY0 + 400 * BUCKET_DAY_S),
    ]


# -- migration --------------------------------------------------------------------------------


def test_migration_from_schema_3_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA journal_mode = WAL")
    for statements in MIGRATIONS[:3]:
        for statement in statements:
            raw.execute(statement)
    raw.execute("PRAGMA application_id = 1735423093")
    raw.execute("PRAGMA user_version = 3")
    raw.execute(
        "INSERT INTO node_events (t, node, state, reason, operator, jobs) "
        "VALUES (1.0, 'gpu002', 'failed', 'XID 79', 'alice', '[\"slurm:42\"]')"
    )
    raw.execute(
        "INSERT INTO faults (t, node, gpu, kind, level, xid) "
        "VALUES (2.0, 'gpu002', 0, 'xid', 4, 79)"
    )
    raw.execute("INSERT INTO exposure (node, hour, gpu_hours) VALUES ('gpu002', 500000, 8.0)")
    raw.commit()
    raw.close()
    with Journal.open(path) as journal:
        assert journal._read("PRAGMA user_version") == [(SCHEMA_VERSION,)]
        assert SCHEMA_VERSION == 4
        [event] = journal.node_events()
        assert (event.node, event.state, event.jobs) == ("gpu002", "failed", ("slurm:42",))
        assert [(f.node, f.xid) for f in journal.faults()] == [("gpu002", 79)]
        assert journal.exposure() == {"gpu002": 8.0}
        assert journal.marked_failed() == {"gpu002"}
        journal.write_rollups([rollup(0, DAY0)], RollupRetention())
        assert len(journal.rollup_series(BUCKET_5M_S)) == 1
        assert journal.integrity_check() == "ok"


# -- the writer -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_writer_one_transaction_per_interval(journal: Journal) -> None:
    clock = Clock()
    writer = RollupWriter(journal, grace_s=30.0, clock=clock, wall=lambda: DAY0 + 3 * 300)
    for snap in fleet_snapshots(3, 4, DAY0, 3 * 300 + 20, step_s=10.0):
        clock.t = snap.t  # the fleet in real time: 10 s a sample
        writer.observe(snap)
        if writer.due():
            assert writer.write(writer.take())
    assert writer.transactions == 2  # the intervals at +0 and +300 closed; +600 closes at +900
    assert not writer.due()  # the third closed at +900: still inside its grace period
    clock.t += 30
    assert writer.due()
    assert writer.write(writer.take())
    rows = journal.rollup_series(BUCKET_5M_S)
    assert [r.start for r in rows if (r.host, r.gpu) == ("gpu001", 2)] == [
        DAY0,
        DAY0 + 300,
        DAY0 + 600,
    ]
    assert len(rows) == 3 * 4 * 3
    assert all(r.samples == 30 for r in rows)
    # ECC rose by one every 30 samples (10 slow ones): 1 per interval after the first reading.
    assert [r.ecc_corrected for r in rows if (r.host, r.gpu) == ("gpu000", 0)] == [0, 1, 1]
    assert writer.written == 36


def test_writer_closes_the_buckets_of_hosts_gone_quiet(journal: Journal) -> None:
    clock = Clock()
    writer = RollupWriter(journal, grace_s=5.0, clock=clock)
    snaps = list(fleet_snapshots(2, 1, DAY0, 320, step_s=10.0))
    for snap in snaps:
        clock.t = snap.t
        quiet = snap.t >= DAY0 + 250  # gpu001 stops sending 50 s before the bucket ends
        hosts = tuple(h for h in snap.hosts if not (quiet and h.name == "gpu001"))
        writer.observe(FleetSnapshot(t=snap.t, hosts=hosts))
    clock.t += 5
    assert writer.due()
    writer.write(writer.take())
    assert sorted((r.host, r.start, r.samples) for r in journal.rollup_series(BUCKET_5M_S)) == [
        ("gpu000", DAY0, 30),
        ("gpu001", DAY0, 25),
    ]


def test_writer_keeps_a_failed_write_for_the_next(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.sqlite3")
    writer = RollupWriter(journal, grace_s=0.0)
    batch = [rollup(0, DAY0)]
    journal.close()
    assert not writer.write(batch)
    assert writer.last_error is not None and "cannot write the journal" in writer.last_error
    writer.requeue(batch)
    assert writer.take() == batch


def test_writer_counts_xids_from_the_monitors_events(journal: Journal) -> None:
    writer = RollupWriter(journal, grace_s=0.0)
    snaps = list(fleet_snapshots(1, 2, DAY0, 310, step_s=10.0))
    xid = FleetEvent(t=snaps[3].t, host="gpu000", kind="xid", text="Xid 48", gpu=1, xid=48)
    for i, snap in enumerate(snaps):
        writer.observe(snap if i != 3 else FleetSnapshot(t=snap.t, hosts=snap.hosts, events=(xid,)))
    writer.write(writer.take())
    assert {r.gpu: r.xids for r in journal.rollup_series(BUCKET_5M_S)} == {0: {}, 1: {48: 1}}


def test_a_host_with_its_clock_ahead_closes_no_other_hosts_bucket(journal: Journal) -> None:
    clock = Clock()
    writer = RollupWriter(journal, grace_s=5.0, clock=clock)
    snaps = list(fleet_snapshots(2, 1, DAY0, 250, step_s=10.0))
    for snap in snaps:
        clock.t = snap.t
        liar = snap.hosts[1]
        assert liar.sample is not None
        # 30 days and 150 s ahead: its samples cross a bucket's end at our +150 s
        ahead = msgspec.structs.replace(liar.sample, t=liar.sample.t + 30 * BUCKET_DAY_S + 150)
        hosts = (snap.hosts[0], msgspec.structs.replace(liar, sample=ahead, slow_sample=None))
        writer.observe(FleetSnapshot(t=snap.t, hosts=hosts))
    clock.t += 5
    writer.write(writer.take())
    # The liar's bucket closed and was written; gpu000's is still open, whole.
    assert [(r.host, r.start) for r in journal.rollup_series(BUCKET_5M_S)] == [
        ("gpu001", DAY0 + 30 * BUCKET_DAY_S)
    ]
    [r] = [r for r in writer.accumulator.close_all() if r.host == "gpu000"]
    assert r.samples == 25


def test_a_batch_of_many_buckets_gives_the_day_rows_interval_by_interval_does(
    tmp_path: Path,
) -> None:
    """A backlog (a simulated fleet's days, written a day at a time) merges each day's buckets
    before its row: the same day rows as one interval per transaction, in any batch order,
    the latest bucket's remapped rows last."""
    buckets = [
        rollup(
            g,
            DAY0 + 300 * i,
            samples=30 + i,
            temp_n=30 + i,
            temp_mean_c=50.0 + 0.37 * i + g,
            temp_max_c=60.0 + i,
            ecc_corrected=i % 3,
            remap_corrected=i // 4,
            remap_pending=i % 2 == 1,
            xids={63: 1} if i % 5 == 0 else {},
        )
        for g in range(2)
        for i in range(24)
    ]
    with Journal.open(tmp_path / "one.sqlite3") as one:
        for i in range(24):
            one.write_rollups([b for b in buckets if b.start == DAY0 + 300 * i], RollupRetention())
        by_interval = one.rollup_series(BUCKET_DAY_S)
    with Journal.open(tmp_path / "all.sqlite3") as batch:
        batch.write_rollups(list(reversed(buckets)), RollupRetention())
        at_once = batch.rollup_series(BUCKET_DAY_S)
        assert len(batch.rollup_series(BUCKET_5M_S)) == len(buckets)
    assert [(d.samples, d.temp_max_c, d.ecc_corrected, d.xids) for d in at_once] == [
        (d.samples, d.temp_max_c, d.ecc_corrected, d.xids) for d in by_interval
    ]
    for a, b in zip(at_once, by_interval, strict=True):
        assert a.temp_mean_c == pytest.approx(b.temp_mean_c, abs=0.01)
        assert (
            (a.remap_corrected, a.remap_pending)
            == (5, True)
            == (b.remap_corrected, b.remap_pending)
        )
