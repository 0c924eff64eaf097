"""FleetMonitor over scripted SSH hosts: states, verdicts, events, snapshots."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncssh
import pytest

from gputui.collect.feed import Backoff
from gputui.collect.launch import AgentInvocation
from gputui.collect.monitor import FleetMonitor, HostPlan
from gputui.collect.ssh import SshContext, SshOptions
from gputui.collect.ssh_source import SshSource
from gputui.core.model import FleetSnapshot, HostState, Level
from tests.sshfake import FakeFleet, FakeHost, hello_line, sample_line
from tests.test_collect_ssh import wait_until

INV = AgentInvocation(command="agent")


@pytest.fixture
async def fleet(tmp_path: Path):  # type: ignore[no-untyped-def]
    f = FakeFleet(tmp_path)
    yield f
    await f.close()


def plan(name: str, ctx: SshContext, interval: float = 0.1) -> HostPlan:
    return HostPlan(
        source=SshSource(name, ctx, lambda: INV, Backoff(0.05, 0.2)),
        interval_s=interval,
        labels={"rack": "r1"},
    )


async def test_snapshot_carries_state_readings_and_verdict(fleet: FakeFleet) -> None:
    await fleet.add(FakeHost("gpu001"))
    ctx = SshContext(fleet.options())
    async with FleetMonitor([plan("gpu001", ctx)], tick_s=0.1) as mon:
        await wait_until(mon.settled)
        snap = mon.publish()
    (host,) = snap.hosts
    assert host.state is HostState.STREAMING
    assert host.labels == {"rack": "r1"}
    assert host.sample is not None and host.sample.gpus[0].temp_c == 50.0
    assert host.verdict.host.level is Level.OK
    assert host.hello is not None and len(host.hello.gpus) == 2


async def test_hot_gpu_turns_critical_and_is_logged(fleet: FakeFleet) -> None:
    async def heat(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
        process.stdout.write(hello_line(host.name))
        for seq in range(1000):
            process.stdout.write(sample_line(seq, temp=50.0 if seq < 3 else 90.0))
            await asyncio.sleep(0.05)
        return 0

    await fleet.add(FakeHost("gpu001", script=heat))
    async with FleetMonitor([plan("gpu001", SshContext(fleet.options()))], tick_s=0.1) as mon:
        await wait_until(lambda: mon.snapshot().hosts[0].verdict.host.level >= Level.CRITICAL)
    verdicts = [e for e in mon.events if e.kind == "verdict"]
    assert verdicts and verdicts[-1].level is Level.CRITICAL and "89" in verdicts[-1].text


async def test_xid_event_latches_and_is_published_at_once(fleet: FakeFleet) -> None:
    async def xid(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
        process.stdout.write(hello_line(host.name))
        process.stdout.write(sample_line(0))
        await asyncio.sleep(0.2)
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
        for seq in range(1, 1000):
            process.stdout.write(sample_line(seq))
            await asyncio.sleep(0.05)
        return 0

    await fleet.add(FakeHost("gpu001", script=xid))
    seen = []
    async with FleetMonitor([plan("gpu001", SshContext(fleet.options()))], tick_s=5.0) as mon:

        async def consume() -> None:
            async for snap in mon.snapshots():
                seen.extend(snap.events)
                if any(e.kind == "xid" for e in snap.events):
                    return

        # With a 5 s tick, only the urgent path can deliver the event within 2 s.
        await asyncio.wait_for(consume(), 2.0)
        await asyncio.sleep(0.3)  # more healthy samples arrive
        host = mon.publish().hosts[0]
    assert host.verdict.gpus[1].level is Level.FAILED
    assert any(r.code == "xid_79" and r.latched for r in host.verdict.host.reasons)


async def test_silent_host_goes_stale_then_unreachable_as_hung(fleet: FakeFleet) -> None:
    async def hang(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
        process.stdout.write(hello_line(host.name, interval=0.05))
        process.stdout.write(sample_line(0))
        await asyncio.sleep(3600)
        return 0

    await fleet.add(FakeHost("gpu001", script=hang))
    async with FleetMonitor(
        [plan("gpu001", SshContext(fleet.options()), 0.05)], tick_s=0.05
    ) as mon:
        await wait_until(lambda: mon.hosts["gpu001"].state is HostState.STALE)
        stale = mon.snapshot().hosts[0]
        await wait_until(lambda: any("hung" in e.text for e in mon.events))
    assert stale.sample is not None  # last good values are kept
    assert "no sample for" in stale.state_reason


async def test_garbage_is_counted_not_fatal(fleet: FakeFleet) -> None:
    async def garbage(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
        process.stdout.write(hello_line(host.name))
        for seq in range(1000):
            process.stdout.write(b"{not json\n" + sample_line(seq))
            await asyncio.sleep(0.05)
        return 0

    await fleet.add(FakeHost("gpu001", script=garbage))
    async with FleetMonitor([plan("gpu001", SshContext(fleet.options()))], tick_s=0.1) as mon:
        await wait_until(lambda: mon.hosts["gpu001"].decoder.stats.malformed >= 5)
        snap = mon.publish()
    assert snap.hosts[0].state is HostState.STREAMING
    assert snap.hosts[0].decode_errors >= 5
    assert any(e.kind == "protocol" for e in mon.events)


async def test_missing_core_signals_make_the_host_degraded(fleet: FakeFleet) -> None:
    async def no_power(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
        process.stdout.write(hello_line(host.name))
        for seq in range(1000):
            msg = json.loads(sample_line(seq))
            for g in msg["gpus"]:
                del g["power_w"]
            process.stdout.write(json.dumps(msg).encode() + b"\n")
            await asyncio.sleep(0.05)
        return 0

    await fleet.add(FakeHost("gpu001", script=no_power))
    async with FleetMonitor([plan("gpu001", SshContext(fleet.options()))], tick_s=0.1) as mon:
        await wait_until(lambda: mon.hosts["gpu001"].state is HostState.DEGRADED)
        snap = mon.publish().hosts[0]
    assert snap.state_reason == "missing signals: power (GPU0,1)"


async def test_the_last_slow_sample_is_kept_between_fast_ones(fleet: FakeFleet) -> None:
    async def slow_then_fast(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
        process.stdout.write(hello_line(host.name))
        for seq in range(1000):
            msg = json.loads(sample_line(seq))
            if seq % 5 == 0:
                msg["slow"] = True
                for g in msg["gpus"]:
                    g["ecc_uncorrected_volatile"] = seq
            process.stdout.write(json.dumps(msg).encode() + b"\n")
            await asyncio.sleep(0.02)
        return 0

    await fleet.add(FakeHost("gpu001", script=slow_then_fast))
    async with FleetMonitor([plan("gpu001", SshContext(fleet.options()))], tick_s=0.1) as mon:
        rt = mon.hosts["gpu001"]
        await wait_until(lambda: rt.sample is not None and rt.sample.seq % 5 == 3)
        snap = mon.publish().hosts[0]
    assert snap.sample is not None and not snap.sample.slow
    assert snap.slow_sample is not None and snap.slow_sample.slow
    assert snap.slow_sample.seq == snap.sample.seq - 3
    assert snap.slow_sample.gpus[0].ecc_uncorrected_volatile == snap.slow_sample.seq


async def test_localhost_streams_through_a_subprocess_without_ssh(tmp_path: Path) -> None:
    from gputui.collect.fleet import monitor_config
    from gputui.config import config_from_text

    config = config_from_text(
        'hosts = ["localhost"]\n[defaults]\nbackend = "sim"\nscenario = "xid79"\ninterval = 0.2\n',
        "hosts.toml",
    )
    assert config.hosts[0].transport == "local"
    async with monitor_config(config, tick_s=0.1) as mon:
        rt = mon.hosts["localhost"]
        await wait_until(lambda: any(e.kind == "xid" for e in mon.events), timeout=20)
        snap = mon.publish().hosts[0]
    assert snap.state is HostState.STREAMING and snap.backend == "sim"
    assert snap.hello is not None and len(snap.hello.gpus) == 8
    assert snap.verdict.gpus[3].level is Level.FAILED  # the scenario's XID 79 on GPU 3
    assert rt.sample is not None


async def test_a_warning_is_published_at_once_not_at_the_next_tick(fleet: FakeFleet) -> None:
    async def warm(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
        process.stdout.write(hello_line(host.name))
        process.stdout.write(sample_line(0))
        await asyncio.sleep(0.3)
        for seq in range(1, 1000):  # above max operating temperature, below slowdown: a warning
            process.stdout.write(sample_line(seq, temp=88.0))  # max 87 C, slowdown 89 C
            await asyncio.sleep(0.05)
        return 0

    await fleet.add(FakeHost("gpu001", script=warm))
    async with FleetMonitor([plan("gpu001", SshContext(fleet.options()))], tick_s=5.0) as mon:

        async def consume() -> None:
            async for snap in mon.snapshots():
                if any(e.kind == "verdict" and e.level is Level.WARN for e in snap.events):
                    return

        # With a 5 s tick, only the urgent path can deliver the warning within 2 s.
        await asyncio.wait_for(consume(), 2.0)


@pytest.mark.parametrize(
    ("hosts", "tick"),
    [
        ("interval = 0.5", 0.5),  # a fast fleet is published as fast as it samples
        ("interval = 2", 1.0),  # a slow one still ticks every second (SEEN, staleness)
        ("interval = 0.02", 0.1),  # never more than ten snapshots a second
        ('interval = 2\n[groups.fast]\nhosts = ["b"]\ninterval = 0.25', 0.25),  # the fastest
    ],
)
def test_a_configured_fleet_ticks_with_its_fastest_host(hosts: str, tick: float) -> None:
    from gputui.collect.fleet import plans_for_config
    from gputui.config import config_from_text

    config = config_from_text(f'hosts = ["a"]\n[defaults]\n{hosts}\n', "hosts.toml")
    plans, _ssh = plans_for_config(config)
    assert FleetMonitor(plans).tick_s == tick


def test_a_tick_given_is_kept_and_an_empty_fleet_ticks_every_second() -> None:
    ctx = SshContext(SshOptions())
    assert FleetMonitor([plan("gpu001", ctx, 0.5)], tick_s=5.0).tick_s == 5.0
    assert FleetMonitor([]).tick_s == 1.0


async def test_the_first_snapshot_goes_out_once_every_host_answered() -> None:
    from gputui.collect.fleet import monitor_config
    from gputui.config import config_from_text

    config = config_from_text('hosts = ["localhost"]\n[defaults]\nbackend = "sim"\n', "hosts.toml")
    # With an hour's tick, only the first answer can publish within the wait.
    async with monitor_config(config, tick_s=3600.0) as mon:

        async def first() -> object:
            async for snap in mon.snapshots():
                return snap
            raise AssertionError("the monitor stopped")

        snap = await asyncio.wait_for(first(), 30.0)
    assert isinstance(snap, FleetSnapshot)
    (host,) = snap.hosts
    assert host.state is HostState.STREAMING
    assert host.sample is not None and len(host.sample.gpus) == 8


async def test_a_fleet_that_has_not_answered_is_published_at_the_first_tick(
    fleet: FakeFleet,
) -> None:
    async def mute(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
        await asyncio.sleep(60)  # connected, never a line
        return 0

    await fleet.add(FakeHost("gpu001", script=mute))
    async with FleetMonitor([plan("gpu001", SshContext(fleet.options()))], tick_s=0.3) as mon:

        async def first() -> object:
            async for snap in mon.snapshots():
                return snap
            raise AssertionError("the monitor stopped")

        snap = await asyncio.wait_for(first(), 30.0)
        assert not mon.settled()
    assert isinstance(snap, FleetSnapshot)
    assert snap.hosts[0].state is HostState.CONNECTING and snap.hosts[0].sample is None


async def test_a_local_agent_whose_lines_wait_in_the_pipe_is_streaming_at_once() -> None:
    """Bare gputui opens the monitor, then imports the app, holding the event loop while the
    agent writes its first lines: read as soon as its pipe is connected, they make the host
    streaming, and nothing after that may put it back to connecting."""
    import time

    from gputui.collect.fleet import monitor_config
    from gputui.config import config_from_text

    config = config_from_text('hosts = ["localhost"]\n[defaults]\nbackend = "sim"\n', "hosts.toml")
    async with monitor_config(config, tick_s=3600.0) as mon:
        await asyncio.sleep(0)  # the source starts its agent
        time.sleep(2.0)  # the loop held, as by an import: the agent's lines wait in the pipe

        async def first() -> object:
            async for snap in mon.snapshots():
                return snap
            raise AssertionError("the monitor stopped")

        snap = await asyncio.wait_for(first(), 30.0)
    assert isinstance(snap, FleetSnapshot)
    (host,) = snap.hosts
    assert host.sample is not None
    assert host.state is HostState.STREAMING, (host.state, host.state_reason)


async def test_a_late_subscriber_starts_from_the_newest_snapshot_and_every_event() -> None:
    """The app subscribes after the monitor opened (bare gputui opens it first): it gets the
    snapshot published before it came, with the events logged so far, not the next tick's."""
    from gputui.collect.fleet import monitor_config
    from gputui.config import config_from_text

    config = config_from_text('hosts = ["localhost"]\n[defaults]\nbackend = "sim"\n', "hosts.toml")

    async def first(mon: FleetMonitor) -> FleetSnapshot:
        async for snap in mon.snapshots():
            return snap
        raise AssertionError("the monitor stopped")

    async with monitor_config(config, tick_s=3600.0) as mon:
        early = await asyncio.wait_for(first(mon), 30.0)
        late = await asyncio.wait_for(first(mon), 30.0)  # an hour's tick: only the newest
    assert late.t == early.t and late.hosts == early.hosts
    logged = [e.text for e in mon.events]
    assert late.events and [e.text for e in late.events] == logged[: len(late.events)]
    assert any(e.kind == "state" and "streaming" in e.text for e in late.events)
