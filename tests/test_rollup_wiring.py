"""The monitor writes rollups into the journal it opens (gputui/cli/tui_cmd.py's Wiring), and
hosts.toml's [journal] keys set how long they are kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gputui.cli.tui_cmd import Wiring
from gputui.config import Config, HostGroup, HostSpec, config_from_text
from gputui.config.errors import ConfigError
from gputui.core.model import FleetSnapshot
from gputui.core.rollup import BUCKET_5M_S, RollupRetention, bucket_start
from gputui.ops.journal import Journal
from tests.fake_fleet import T0, FakeFleet, FakeMonitor, small_fleet

TICKS = 420  # 7 minutes of 1 s samples: parts of 3 buckets, the last written at the exit


class FanOutMonitor(FakeMonitor):
    """Every subscriber gets every snapshot, as the real monitor's: the journal recorder and
    the rollup writer each subscribe."""

    def __init__(self, fleet: FakeFleet) -> None:
        super().__init__(fleet)
        self._subs: list[asyncio.Queue[FleetSnapshot | None]] = []

    def push(self, snapshot: FleetSnapshot) -> None:
        self.latest = snapshot
        for q in self._subs:
            q.put_nowait(snapshot)

    async def snapshots(self) -> AsyncIterator[FleetSnapshot]:
        q: asyncio.Queue[FleetSnapshot | None] = asyncio.Queue()
        self._subs.append(q)
        while (snap := await q.get()) is not None:
            yield snap

    async def stop(self) -> None:
        for q in self._subs:
            q.put_nowait(None)


async def test_the_monitor_wiring_writes_rollups(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    fleet = small_fleet()
    names = tuple(fleet.scripts)
    config = Config(
        path=Path("test"),
        hosts=[HostSpec(name=n, group="all") for n in names],
        groups={"all": HostGroup(name="all", hosts=names)},
    )
    monitor = FanOutMonitor(fleet)
    fleet.advance(1)  # the journal recorder reads the fleet as it starts: a first sample
    async with Wiring(path, use_journal=True).attach(monitor, config):  # type: ignore[arg-type]
        while len(monitor._subs) < 2:  # the recorder and the writer subscribed
            await asyncio.sleep(0)
        for _ in range(TICKS):
            monitor.push(fleet.advance(1))
            for _ in range(3):
                await asyncio.sleep(0)  # the writer takes each snapshot
    with Journal.open(path) as journal:
        rows = journal.rollup_series(BUCKET_5M_S)
        days = journal.rollup_series(86_400)
    # Every sample the writer saw (T0 + 2 on) once, in the bucket of its time.
    expected: dict[int, int] = {}
    for t in range(int(T0) + 2, int(T0) + 2 + TICKS):
        expected[bucket_start(t, BUCKET_5M_S)] = expected.get(bucket_start(t, BUCKET_5M_S), 0) + 1
    gpu001 = {r.start: r.samples for r in rows if (r.host, r.gpu) == ("gpu001", 0)}
    assert gpu001 == expected and len(expected) == 3
    # Every host that said hello; gpu006 and gpu007 with the one sample they sent before they
    # stopped, gpu005's lost GPU with a bucket but no readings.
    assert {r.host for r in rows} == {f"gpu{i:03d}" for i in (1, 2, 3, 4, 5, 6, 7, 8, 9)}
    lost = [r for r in rows if (r.host, r.gpu) == ("gpu005", 3)]
    assert lost and all(r.samples == 0 for r in lost)
    # gpu004's GPU5 runs at 90 C (+-2), 28 C above its peers at the same power, past its own
    # 89 C slowdown limit.
    hot = [r for r in rows if (r.host, r.gpu) == ("gpu004", 5)]
    peer = [r for r in rows if (r.host, r.gpu) == ("gpu004", 4)]
    assert [r.temp_max_c for r in hot] == [92.0] * 3
    assert [r.headroom_min_c for r in hot] == [-3.0] * 3
    assert len(peer) == 3
    [hot_day] = [d for d in days if (d.host, d.gpu) == ("gpu004", 5)]
    [peer_day] = [d for d in days if (d.host, d.gpu) == ("gpu004", 4)]
    assert hot_day.load_n == peer_day.load_n > 0
    assert hot_day.load_power_mean_w == pytest.approx(peer_day.load_power_mean_w, rel=0.02)
    gap = hot_day.load_temp_mean_c - peer_day.load_temp_mean_c  # type: ignore[operator]
    assert gap == pytest.approx(28.0, abs=1.0)
    # The day rows sum the 5-minute ones.
    assert sum(d.samples for d in days) == sum(r.samples for r in rows)


def test_retention_comes_from_the_journal_table() -> None:
    text = 'hosts = ["a"]\n[journal]\nrollup_5m_days = 3\nrollup_daily_days = 30\n'
    assert config_from_text(text, "hosts.toml").rollup_retention == RollupRetention(
        five_minute_days=3, daily_days=30
    )
    default = config_from_text('hosts = ["a"]', "hosts.toml").rollup_retention
    assert (default.five_minute_days, default.daily_days) == (7, 90)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("rollup_5m_days = 0", "journal.rollup_5m_days: expected a whole number >= 1"),
        (
            "rollup_daily_days = 9999",
            "journal.rollup_daily_days: expected a whole number >= 1 and <= 3660, got 9999",
        ),
        ("rollup_days = 3", 'unknown key "rollup_days" (did you mean "rollup_5m_days"?)'),
    ],
)
def test_bad_retention_is_named(line: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_text(f'hosts = ["a"]\n[journal]\n{line}\n', "hosts.toml")
    assert expected in str(info.value)
