"""The streams' hang watchdog (gputui/collect/watchdog.py): one registry, one timer, one pass.

The reasons' wording is the one each source's own watchdog gave; the hostile-host tests
(tests/test_hostile_hosts.py) check them again through real SSH sessions.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from gputui.agent.smi_parse.argv import MARK_HELLO, MARK_STREAM, MARK_TEMPERATURE
from gputui.collect import watchdog as wd
from gputui.collect.feed import Backoff
from gputui.collect.launch import AgentInvocation
from gputui.collect.monitor import FleetMonitor, HostPlan
from gputui.collect.ssh import SshContext
from gputui.collect.ssh_source import SshSource
from gputui.collect.watchdog import StreamWatchdog, WatchedStream, loop_watchdog
from tests.sshfake import FakeFleet, FakeHost
from tests.test_collect_ssh import RecordingFeed, wait_until

SMI_FIXTURES = Path(__file__).parent / "fixtures" / "smi"


class StubFeed(RecordingFeed):
    """A feed whose silence and problem the test sets."""

    def __init__(self, name: str = "gpu001", interval: float = 1.0) -> None:
        super().__init__(name, interval)
        self.silent = 0.0
        self.problem: str | None = None

    def silent_for(self) -> float:
        return self.silent

    def stream_problem(self) -> str | None:
        return self.problem


class Counts:
    def __init__(self, lines: int = 0, nbytes: int = 0) -> None:
        self.lines = lines
        self.bytes = nbytes


class Stream:
    """What a source hands the watchdog: its end, its way to stop, what it delivered."""

    def __init__(self, lines: int = 0, nbytes: int = 0) -> None:
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.counts = Counts(lines, nbytes)
        self.stopped = 0

    def stop(self) -> None:
        self.stopped += 1


def watch_agent(
    dog: StreamWatchdog, feed: StubFeed, stream: Stream, poll: Callable[[], None] | None = None
) -> WatchedStream:
    return dog.watch(
        feed,
        "nvidia-smi" if poll is not None else "agent",
        stream.done,
        stream.stop,
        counts=stream.counts,
        hang_after=10,
        grace_s=30.0,
        poll=poll,
    )


async def test_a_stream_past_its_hang_limit_is_ended_with_the_reason() -> None:
    dog = StreamWatchdog(asyncio.get_running_loop())
    feed, stream = StubFeed(interval=1.0), Stream(lines=5)
    watched = watch_agent(dog, feed, stream)
    feed.silent = 9.9  # within 10 intervals
    dog.sweep()
    assert not watched.ended.done() and stream.stopped == 0 and len(dog) == 1
    feed.silent = 12.2
    dog.sweep()
    assert watched.ended.result() == "agent stopped writing: no output for 12 s (hung); restarted"
    assert stream.stopped == 1  # the channel was closed
    assert len(dog) == 0  # an ended stream is no longer watched
    dog.sweep()
    assert stream.stopped == 1


async def test_the_hang_limit_follows_the_interval() -> None:
    dog = StreamWatchdog(asyncio.get_running_loop())
    feed, stream = StubFeed(interval=5.0), Stream(lines=1)
    watched = watch_agent(dog, feed, stream)
    feed.silent = 45.0
    dog.sweep()
    assert not watched.ended.done()
    feed.silent = 50.4
    dog.sweep()
    assert watched.ended.result().startswith("agent stopped writing: no output for 50 s")


@pytest.mark.parametrize(
    ("nbytes", "reason"),
    [
        (0, "agent wrote nothing for 31 s; restarted"),
        (7, "agent wrote 7 bytes but no complete line in 31 s; restarted"),
    ],
)
async def test_startup_grace_before_the_first_line(nbytes: int, reason: str) -> None:
    dog = StreamWatchdog(asyncio.get_running_loop())
    feed, stream = StubFeed(interval=1.0), Stream(lines=0, nbytes=nbytes)
    watched = watch_agent(dog, feed, stream)
    feed.silent = 29.0  # past 10 intervals, within the grace
    dog.sweep()
    assert not watched.ended.done()
    feed.silent = 31.0
    dog.sweep()
    assert watched.ended.result() == reason


async def test_a_stream_that_cannot_be_understood_is_ended_with_its_problem() -> None:
    dog = StreamWatchdog(asyncio.get_running_loop())
    feed, stream = StubFeed(), Stream(lines=40)
    watched = watch_agent(dog, feed, stream)
    feed.problem = "protocol error: 40 lines not understood in 10 s; first: malformed line"
    dog.sweep()
    assert watched.ended.result() == (
        "protocol error: 40 lines not understood in 10 s; first: malformed line; restarted"
    )


async def test_a_stream_without_a_hang_limit_is_only_checked_for_problems() -> None:
    dog = StreamWatchdog(asyncio.get_running_loop())
    feed, stream = StubFeed(), Stream()
    watched = dog.watch(feed, "agent", stream.done, stream.stop)  # a local agent
    feed.silent = 3600.0
    dog.sweep()
    assert not watched.ended.done()
    feed.problem = "agent speaks protocol v2, this gputui speaks v1"
    dog.sweep()
    assert watched.ended.result() == "agent speaks protocol v2, this gputui speaks v1; restarted"


async def test_a_stream_the_host_ended_is_not_judged_and_leaves_when_unwatched() -> None:
    dog = StreamWatchdog(asyncio.get_running_loop())
    feed, stream = StubFeed(), Stream(lines=1)
    watched = watch_agent(dog, feed, stream)
    stream.done.set_result(None)
    feed.silent = 3600.0  # its source has not run yet to unwatch it
    dog.sweep()
    assert not watched.ended.done() and stream.stopped == 0
    dog.unwatch(watched)
    assert len(dog) == 0
    dog.unwatch(watched)  # twice is harmless (the sweep may have removed it first)


async def test_nvidia_smi_is_polled_at_every_sweep_until_it_ends() -> None:
    dog = StreamWatchdog(asyncio.get_running_loop())
    feed, stream = StubFeed(interval=2.0), Stream(lines=3)
    polls: list[int] = []
    watched = watch_agent(dog, feed, stream, poll=lambda: polls.append(1))
    assert dog.sweep() == 2.0  # nvidia-smi needs a pass every interval
    dog.sweep()
    assert len(polls) == 2
    feed.silent = 20.5
    dog.sweep()
    assert watched.ended.result().startswith("nvidia-smi stopped writing: no output for 20 s")
    dog.sweep()
    assert len(polls) == 3


async def test_a_failure_judging_one_stream_is_its_reason_and_spares_the_others() -> None:
    dog = StreamWatchdog(asyncio.get_running_loop())

    class Broken(StubFeed):
        def stream_problem(self) -> str | None:
            raise ValueError("bug")

    broken, fine = Stream(lines=1), Stream(lines=1)
    bad = watch_agent(dog, Broken(), broken)
    good = watch_agent(dog, StubFeed(), fine)
    dog.sweep()
    with pytest.raises(ValueError, match="bug"):
        bad.ended.result()
    assert not good.ended.done() and len(dog) == 1


async def test_a_source_gone_before_reading_its_failure_leaves_nothing_to_log() -> None:
    loop = asyncio.get_running_loop()
    logged: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: logged.append(context))
    try:
        dog = StreamWatchdog(loop)

        class Broken(StubFeed):
            def stream_problem(self) -> str | None:
                raise ValueError("bug")

        watched = watch_agent(dog, Broken(), Stream(lines=1))
        dog.sweep()
        dog.unwatch(watched)  # as the source's `finally` does when it is cancelled
        del watched
        gc.collect()
        assert logged == []
    finally:
        loop.set_exception_handler(None)


async def test_many_streams_one_pass() -> None:
    dog = StreamWatchdog(asyncio.get_running_loop())
    feeds = [StubFeed(f"gpu{i:05d}") for i in range(10_000)]
    streams = [Stream(lines=1) for _ in feeds]
    watched = [watch_agent(dog, f, s) for f, s in zip(feeds, streams, strict=True)]
    hung = set(range(0, 10_000, 97))
    for i in hung:
        feeds[i].silent = 11.0
    assert dog.sweep() == 2.5  # a quarter of the hang limit, the agents' own step before
    assert dog.sweeps == 1
    ended = {i for i, w in enumerate(watched) if w.ended.done()}
    assert ended == hung
    assert len(dog) == 10_000 - len(hung)
    assert all(streams[i].stopped == 1 for i in hung)


async def test_one_timer_for_every_stream_and_none_once_all_ended() -> None:
    loop = asyncio.get_running_loop()
    dog = StreamWatchdog(loop)
    feeds = [StubFeed(interval=0.01) for _ in range(20)]  # a step below the shortest sweep
    streams = [Stream(lines=1) for _ in feeds]
    for f, s in zip(feeds, streams, strict=True):
        watch_agent(dog, f, s)
    await asyncio.sleep(0.35)
    assert 2 <= dog.sweeps <= 5  # every MIN_SWEEP_S, for all 20 streams
    for f in feeds:
        f.silent = 100.0
    await asyncio.sleep(0.25)
    assert len(dog) == 0 and all(s.stopped == 1 for s in streams)
    assert dog._timer is None  # nothing left to watch: nothing wakes


async def test_the_loop_shares_one_watchdog() -> None:
    assert loop_watchdog() is loop_watchdog()


# -- the sources' side: a watched stream no longer wakes on its own -------------------------


class FakeChannel:
    def __init__(self, session: FakeSession) -> None:
        self.session = session
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.session.done.get_loop().call_soon(self.session.end)


class FakeSession:
    """The parts of AgentSession the watch reads."""

    def __init__(self) -> None:
        self.done: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self.lines = 1
        self.bytes = 100

    def end(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def test_watched_streams_set_no_timer_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """50 SSH streams watched for 1 s at a 0.1 s interval: each one's own watchdog woke every
    0.25 s (200 timers in all); the loop's watchdog sets one timer per sweep for all."""
    loop = asyncio.get_running_loop()
    timers: list[Any] = []
    call_at = loop.call_at

    def counting_call_at(when: float, callback: Any, *args: Any, **kw: Any) -> Any:
        timers.append(callback)
        return call_at(when, callback, *args, **kw)

    monkeypatch.setattr(loop, "call_at", counting_call_at)
    source = SshSource("gpu001", None, lambda: None)  # type: ignore[arg-type]
    feeds = [StubFeed(f"gpu{i:03d}", interval=0.1) for i in range(50)]
    sessions = [FakeSession() for _ in feeds]
    tasks = [
        asyncio.create_task(source._watch(FakeChannel(s), s, f, None))  # type: ignore[arg-type]
        for s, f in zip(sessions, feeds, strict=True)
    ]
    await asyncio.sleep(1.0)
    assert not any(t.done() for t in tasks)
    assert len(loop_watchdog()) == 50
    assert len(timers) <= 6, timers  # about 4 sweeps, whatever the number of streams
    feeds[0].silent = 5.0  # hung: the sweep ends it and says why
    sessions[1].end()  # the host ended it: no reason of gputui's
    await asyncio.wait(tasks[:2], timeout=2.0)
    assert tasks[0].result() == "agent stopped writing: no output for 5 s (hung); restarted"
    assert tasks[1].result() is None
    for s in sessions[2:]:
        s.end()
    await asyncio.gather(*tasks[2:])
    assert len(loop_watchdog()) == 0 and loop_watchdog()._timer is None


def test_min_sweep_is_the_monitors_fastest_tick() -> None:
    from gputui.collect.tick import MIN_TICK_S

    assert wd.MIN_SWEEP_S == MIN_TICK_S


async def test_nvidia_smis_partial_sample_is_completed_by_the_sweep(tmp_path: Path) -> None:
    """nvidia-smi prints 7 of its 8 GPUs, then nothing: the sweep's poll completes the sample
    (the eighth GPU in error) long before the hang limit would restart the stream."""

    def fixture(name: str) -> list[str]:
        return (SMI_FIXTURES / name).read_text().splitlines()

    period = fixture("h100_training.csv")[:7]
    output = [
        MARK_HELLO,
        *fixture("h100_hello.csv"),
        MARK_TEMPERATURE,
        *fixture("h100_temperature.txt"),
        MARK_STREAM,
        *period,
    ]

    async def smi(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
        process.stdout.write("".join(line + "\n" for line in output).encode())
        await asyncio.sleep(3600)
        return 0

    fleet = FakeFleet(tmp_path)
    try:
        host = await fleet.add(FakeHost("gpu001", script=smi))
        source = SshSource(
            "gpu001",
            SshContext(fleet.options()),
            lambda: AgentInvocation(command="nvidia-smi", smi=True),
            Backoff(0.05, 0.2),
        )
        interval = 0.5  # nvidia-smi's settle: 0.5 s; the hang limit: 5 s
        async with FleetMonitor([HostPlan(source=source, interval_s=interval)]) as mon:
            rt = mon.hosts["gpu001"]
            await wait_until(lambda: rt.hello is not None, timeout=5)
            started = time.monotonic()
            await wait_until(lambda: rt.sample is not None, timeout=5)
            waited = time.monotonic() - started
            sessions = host.sessions
        assert sessions == 1 and waited < 3.0  # the poll, not the end of the stream
        assert rt.sample is not None
        assert [g.status for g in rt.sample.gpus][:7] == ["ok"] * 7
        assert rt.sample.gpus[7].status != "ok"
    finally:
        await fleet.close()
