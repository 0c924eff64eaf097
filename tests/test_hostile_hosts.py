"""Broken and hostile hosts through the real collector (in-process SSH servers, FleetMonitor).

Each host here misbehaves in one way: it closes the session at once, says nothing, writes a
byte a second, sends garbage or another protocol version, has no GPU, reports impossible
values, or puts escape sequences in its text. Every one must end in a state with a reason
that says what happened, keep retrying with backoff, and never end its task silently.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import warnings
from pathlib import Path

import asyncssh
import pytest

from gputui.collect import ssh_source
from gputui.collect.feed import Backoff
from gputui.collect.history import HostHistory
from gputui.collect.host_runtime import HostRuntime
from gputui.collect.launch import AgentInvocation
from gputui.collect.monitor import FleetMonitor, HostPlan
from gputui.collect.protocol import StreamDecoder
from gputui.collect.ssh import HostError, SshContext
from gputui.collect.ssh_source import SshSource
from gputui.core.model import HostState, Sample
from gputui.render.report import report_json, report_table
from tests.sshfake import FakeFleet, FakeHost, hello_line, sample_line
from tests.test_collect_ssh import wait_until

# The stand-in agent gets a bundle on stdin, as the real one does: writing it is a stage.
INV = AgentInvocation(command="agent", stdin=b"BUNDLE" * 1000)
INTERVAL = 0.1  # hosts.toml interval of these hosts: the give-up limit is 10 of them


@pytest.fixture
async def fleet(tmp_path: Path):  # type: ignore[no-untyped-def]
    f = FakeFleet(tmp_path)
    yield f
    await f.close()


def plan(name: str, ctx: SshContext, backoff: Backoff | None = None) -> HostPlan:
    return HostPlan(
        source=SshSource(name, ctx, lambda: INV, backoff or Backoff(0.05, 0.2)),
        interval_s=INTERVAL,
    )


def tasks_alive(mon: FleetMonitor) -> bool:
    return all(not t.done() for t in mon._tasks)


async def watch_states(mon: FleetMonitor, host: str, seconds: float) -> list[tuple[HostState, str]]:
    """The host's (state, reason) as published, every 20 ms for `seconds`."""
    seen: list[tuple[HostState, str]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        snap = mon.hosts[host].snapshot()
        seen.append((snap.state, snap.state_reason))
        await asyncio.sleep(0.02)
    return seen


# -- 1. a host task never ends silently, whatever stage breaks -----------------------------


async def close_at_once(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
    process.stderr.write(b"This account is currently not available.\n")
    return 255


async def exit_before_first_line(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
    await asyncio.sleep(0.2)
    process.stderr.write(b"python3: can't open file\n")
    return 2


async def die_mid_stream(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
    process.stdout.write(hello_line(host.name, interval=INTERVAL))
    for seq in range(3):
        process.stdout.write(sample_line(seq))
        await asyncio.sleep(INTERVAL)
    process.stderr.write(b"RuntimeError: NVML went away\n")
    return 3


@pytest.mark.parametrize(
    ("script", "expect"),
    [
        (close_at_once, "code 255"),
        (exit_before_first_line, "exited with code 2: python3: can't open file"),
        (die_mid_stream, "exited with code 3: RuntimeError: NVML went away"),
    ],
    ids=["instant-close", "first-line", "mid-stream"],
)
async def test_a_broken_stage_is_a_reason_and_a_retry(
    fleet: FakeFleet, script: object, expect: str
) -> None:
    host = await fleet.add(FakeHost("gpu001", script=script))  # type: ignore[arg-type]
    async with FleetMonitor([plan("gpu001", SshContext(fleet.options()))], tick_s=0.1) as mon:
        rt = mon.hosts["gpu001"]
        await wait_until(
            lambda: host.sessions >= 3 and rt.state is HostState.UNREACHABLE, timeout=15
        )
        snap = rt.snapshot()
        assert tasks_alive(mon)
    assert snap.state is HostState.UNREACHABLE
    assert expect in snap.state_reason


async def test_connect_and_login_failures_are_reasons(fleet: FakeFleet) -> None:
    host = await fleet.add(FakeHost("gpu001"), trust=False)  # unknown host key
    ctx = SshContext(fleet.options())
    async with FleetMonitor([plan("gpu001", ctx)], tick_s=0.1) as mon:
        await wait_until(lambda: mon.hosts["gpu001"].state is HostState.UNREACHABLE)
        reason = mon.hosts["gpu001"].state_reason
        assert tasks_alive(mon)
    assert "host key" in reason and "not in" in reason
    host.acceptor.close()  # type: ignore[union-attr]


async def test_a_refused_login_is_a_reason_and_a_retry(fleet: FakeFleet, tmp_path: Path) -> None:
    host = await fleet.add(FakeHost("gpu001"))
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(tmp_path / "id_test"))
    async with FleetMonitor([plan("gpu001", SshContext(fleet.options()))], tick_s=0.1) as mon:
        rt = mon.hosts["gpu001"]
        await wait_until(lambda: len(host.connections) >= 3, timeout=10)
        assert tasks_alive(mon)
    assert rt.state is HostState.UNREACHABLE and host.sessions == 0
    assert rt.state_reason.startswith("authentication failed for tester@127.0.0.1")


async def test_a_refused_session_is_a_reason_and_a_retry(fleet: FakeFleet) -> None:
    """The host logs in but will not run a command (a restricted account, a broken sshd)."""
    host = await fleet.add(FakeHost("gpu001"), refuse_sessions=True)
    async with FleetMonitor([plan("gpu001", SshContext(fleet.options()))], tick_s=0.1) as mon:
        rt = mon.hosts["gpu001"]
        await wait_until(lambda: len(host.connections) >= 3, timeout=10)
        assert tasks_alive(mon)
    assert rt.state is HostState.UNREACHABLE and host.sessions == 0
    assert rt.state_reason.startswith("cannot start the agent: ")


async def test_an_exception_in_any_stage_becomes_the_reason(
    fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug, not a host: the source and the monitor still turn it into a state and retry."""
    await fleet.add(FakeHost("gpu001"))
    ctx = SshContext(fleet.options())
    calls = 0

    async def broken_connect(alias: str, on_phase: object = None) -> object:
        nonlocal calls
        calls += 1
        raise RuntimeError("resolver exploded")

    monkeypatch.setattr(ctx, "connect", broken_connect)
    async with FleetMonitor([plan("gpu001", ctx)], tick_s=0.1) as mon:
        await wait_until(lambda: calls >= 3)
        snap = mon.hosts["gpu001"].snapshot()
        assert tasks_alive(mon)
    assert snap.state is HostState.UNREACHABLE
    assert "collector error: RuntimeError: resolver exploded" in snap.state_reason


async def test_an_exception_handling_a_line_becomes_the_reason(
    fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = await fleet.add(FakeHost("gpu001"))

    def explode(self: HostRuntime, line: bytes) -> None:
        raise ValueError("could not broadcast")

    monkeypatch.setattr(HostRuntime, "on_line", explode)
    async with FleetMonitor([plan("gpu001", SshContext(fleet.options()))], tick_s=0.1) as mon:
        await wait_until(lambda: host.sessions >= 2)
        snap = mon.hosts["gpu001"].snapshot()
        assert tasks_alive(mon)
    assert "collector error reading the agent: ValueError: could not broadcast" in (
        snap.state_reason
    )


async def test_a_source_that_returns_is_restarted_by_the_monitor() -> None:
    from gputui.collect.feed import HostFeed, Source

    class Quits(Source):
        def __init__(self) -> None:
            self.name = "gpu001"
            self.runs = 0

        async def run(self, feed: HostFeed) -> None:
            self.runs += 1
            if self.runs == 2:
                raise HostError("x", "surprise")

    source = Quits()
    async with FleetMonitor([HostPlan(source=source)], tick_s=0.1) as mon:
        await wait_until(lambda: source.runs >= 2, timeout=5)
        await asyncio.sleep(0.05)
        snap = mon.hosts["gpu001"].snapshot()
        assert tasks_alive(mon)
    assert snap.state is HostState.UNREACHABLE
    assert snap.state_reason.startswith("collector error")


# -- 2. a stream of lines that are never understood is given up on, with the reason ---------


async def test_garbage_only_is_a_protocol_error_with_the_first_problem(fleet: FakeFleet) -> None:
    rng = random.Random(7)

    async def garbage(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
        while True:
            junk = bytes(rng.randrange(256) for _ in range(60)).replace(b"\n", b"")
            process.stdout.write(junk + b"\n")
            await asyncio.sleep(0.02)

    await fleet.add(FakeHost("gpu001", script=garbage))
    async with FleetMonitor([plan("gpu001", SshContext(fleet.options()))], tick_s=0.1) as mon:
        rt = mon.hosts["gpu001"]
        await wait_until(lambda: rt.state is HostState.UNREACHABLE, timeout=5)
    assert rt.state_reason.startswith("protocol error: ")
    assert "lines not understood in 1 s; first: malformed line: JSON is malformed" in (
        rt.state_reason
    )
    assert rt.sample is None


async def test_another_protocol_version_says_so_at_once(fleet: FakeFleet) -> None:
    async def v2(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
        hello = json.loads(hello_line(host.name))
        hello.update(v=2, backend="nvml-ng", gpus={"0": "renamed"})
        process.stdout.write(json.dumps(hello).encode() + b"\n")
        while True:
            process.stdout.write(b'{"type":"sample","v":2,"gpus":{}}\n')
            await asyncio.sleep(INTERVAL)

    await fleet.add(FakeHost("gpu001", script=v2))
    started = time.monotonic()
    async with FleetMonitor([plan("gpu001", SshContext(fleet.options()))], tick_s=0.1) as mon:
        rt = mon.hosts["gpu001"]
        await wait_until(lambda: rt.state is HostState.UNREACHABLE, timeout=5)
    assert time.monotonic() - started < 1.0  # the first line settles it
    assert rt.state_reason.startswith("agent speaks protocol v2, this gputui speaks v1")


# -- 3. the last failure stays visible while reconnecting -----------------------------------


async def test_silent_host_keeps_its_reason_through_reconnects(
    fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ssh_source, "STARTUP_GRACE_S", 1.0)

    async def silent(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
        await asyncio.sleep(3600)
        return 0

    host = await fleet.add(FakeHost("gpu001", script=silent))
    async with FleetMonitor([plan("gpu001", SshContext(fleet.options()))], tick_s=0.1) as mon:
        await wait_until(lambda: mon.hosts["gpu001"].state is HostState.UNREACHABLE, timeout=5)
        seen = await watch_states(mon, "gpu001", 3.0)
    assert host.sessions >= 3
    assert all(state is HostState.UNREACHABLE for state, _ in seen)
    assert all(reason.startswith("agent wrote nothing for 1 s") for _, reason in seen)
    assert any("reconnecting, attempt" in reason for _, reason in seen)


async def test_a_byte_a_second_is_no_line_and_says_so(
    fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ssh_source, "STARTUP_GRACE_S", 1.0)

    async def dribble(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
        while True:
            process.stdout.write(b"{")
            await asyncio.sleep(0.2)

    await fleet.add(FakeHost("gpu001", script=dribble))
    async with FleetMonitor([plan("gpu001", SshContext(fleet.options()))], tick_s=0.1) as mon:
        await wait_until(lambda: mon.hosts["gpu001"].state is HostState.UNREACHABLE, timeout=5)
        reason = mon.hosts["gpu001"].state_reason
    assert "bytes but no complete line in 1 s" in reason


# -- 4. a host still connecting says what it waits for, and since when ----------------------


async def test_report_says_what_a_connecting_host_waits_for(fleet: FakeFleet) -> None:
    async def silent(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
        await asyncio.sleep(3600)
        return 0

    await fleet.add(FakeHost("gpu001", script=silent))
    async with FleetMonitor([plan("gpu001", SshContext(fleet.options()))], tick_s=0.1) as mon:
        await asyncio.sleep(1.2)  # a --wait shorter than the agent's start-up grace
        snap = mon.publish()
    (host,) = snap.hosts
    assert host.state is HostState.CONNECTING
    table = report_table(snap, width=120)
    assert "agent started, no output yet (for 1 s)" in table
    data = json.loads(report_json(snap))
    assert data["hosts"][0]["why"] == "agent started, no output yet (for 1 s)"
    assert data["hosts"][0]["reason_since"]


# -- 5. a host with no GPU is a state, not a reconnect loop ---------------------------------


async def test_zero_gpus_is_no_gpu_not_a_crash(fleet: FakeFleet) -> None:
    async def no_gpus(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
        process.stdout.write(hello_line(host.name, gpus=0, interval=INTERVAL))
        for seq in range(100_000):
            process.stdout.write(sample_line(seq, gpus=0))
            await asyncio.sleep(INTERVAL)
        return 0

    host = await fleet.add(FakeHost("gpu001", script=no_gpus))
    async with FleetMonitor([plan("gpu001", SshContext(fleet.options()))], tick_s=0.1) as mon:
        rt = mon.hosts["gpu001"]
        await wait_until(lambda: rt.state is HostState.NO_GPU)
        await asyncio.sleep(1.5)
        assert rt.state is HostState.NO_GPU and tasks_alive(mon)
    assert host.sessions == 1  # streaming on, not reconnecting
    assert rt.state_reason == "no GPU: the agent found none on the host"


def test_history_of_a_host_without_gpus() -> None:
    history = HostHistory([], 10)
    history.append(1.0, Sample(v=1, t=1.0, seq=0, gpus=[]))
    assert len(history) == 1 and history.times().tolist() == [1.0]


# -- 6. implausible readings are decode errors naming the field, never judged or shown -------

IMPLAUSIBLE = [
    ("temp_c", -273),
    ("temp_c", 1e300),
    ("util_pct", -50),
    ("util_pct", 1e6),
    ("power_w", 1e300),
    ("mem_used_mib", -1),
    ("sm_clock_mhz", 2**63),
    ("ecc_uncorrected_volatile", -7),
    ("index", -1),
]


@pytest.mark.parametrize(("field", "value"), IMPLAUSIBLE)
def test_implausible_reading_is_an_error_naming_the_field(field: str, value: float) -> None:
    reading = {"index": 0, "util_pct": 50, "temp_c": 50}
    reading[field] = value
    line = json.dumps({"type": "sample", "v": 1, "t": 1.0, "seq": 0, "gpus": [reading]})
    decoder = StreamDecoder()
    assert decoder.decode(line.encode()) is None
    assert decoder.stats.invalid == 1
    assert f"$.gpus[0].{field}" in decoder.stats.last_problem


@pytest.mark.parametrize("xid", [-5, 2**40])
def test_implausible_xid_is_an_error(xid: int) -> None:
    line = json.dumps({"type": "event", "v": 1, "t": 1.0, "kind": "xid", "gpu": 0, "xid": xid})
    decoder = StreamDecoder()
    assert decoder.decode(line.encode()) is None
    assert "$.xid" in decoder.stats.last_problem


async def test_a_host_of_impossible_readings_is_never_judged_ok(fleet: FakeFleet) -> None:
    async def impossible(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
        process.stdout.write(hello_line(host.name, interval=INTERVAL))
        for seq in range(100_000):
            line = json.loads(sample_line(seq))
            line["gpus"][0]["util_pct"] = 125066
            line["gpus"][1]["power_w"] = 1e300
            process.stdout.write(json.dumps(line).encode() + b"\n")
            await asyncio.sleep(INTERVAL)
        return 0

    await fleet.add(FakeHost("gpu001", script=impossible))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy overflow warnings would fail here
        async with FleetMonitor([plan("gpu001", SshContext(fleet.options()))], tick_s=0.1) as mon:
            rt = mon.hosts["gpu001"]
            await wait_until(lambda: rt.state is HostState.UNREACHABLE, timeout=5)
            # Reconnected, it says hello again: still not streaming, its failure still shown.
            seen = await watch_states(mon, "gpu001", 1.5)
            snap = mon.publish()
    assert all(state is HostState.UNREACHABLE for state, _ in seen)
    assert any("reconnecting: agent said hello" in reason for _, reason in seen)
    host = snap.hosts[0]
    assert host.sample is None and host.verdict.host.level.label == "unknown"
    assert "implausible value: Expected `float` <= 100.0 - at `$.gpus[0].util_pct`" in (
        host.state_reason
    )
    assert "125066" not in report_table(snap) and "1e+300" not in report_json(snap)


# -- 7. the decode boundary: host text loses its control characters -------------------------


async def test_host_text_reaches_the_state_without_escapes(fleet: FakeFleet) -> None:
    async def hostile(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
        process.stdout.write(hello_line(host.name, interval=INTERVAL))
        error = {
            "type": "error",
            "v": 1,
            "t": 1.0,
            "code": "nvml_init_failed",
            "text": "\x1b]0;pwned\x07libnvidia-ml.so not found in [/usr/lib64/nvidia]\x1b[2J",
            "fatal": True,
        }
        process.stdout.write(json.dumps(error).encode() + b"\n")
        process.stderr.write(b"\x1b[31mred\x9b2J\n")
        return 3

    await fleet.add(FakeHost("gpu001", script=hostile))
    async with FleetMonitor([plan("gpu001", SshContext(fleet.options()))], tick_s=0.1) as mon:
        rt = mon.hosts["gpu001"]
        await wait_until(lambda: rt.state is HostState.NO_GPU, timeout=5)
        events = list(mon.events)
    assert rt.state_reason == (
        "no GPU: ]0;pwnedlibnvidia-ml.so not found in [/usr/lib64/nvidia][2J"
    )
    for event in events:
        assert "\x1b" not in event.text and "\x07" not in event.text


def test_stderr_is_kept_as_plain_text() -> None:
    class Sink:
        def on_line(self, line: bytes) -> None: ...

        def on_too_long(self, length: int) -> None: ...

    async def run() -> str:
        session = ssh_source.AgentSession(Sink())
        session.data_received(b"\x1b]0;pwned\x07oops \x9b2J\xe2\x80\xaeevil\n", 1)
        return session.last_stderr

    # ESC, BEL and the bidi override are gone; the lone C1 byte is not UTF-8: replaced.
    assert asyncio.run(run()) == "]0;pwnedoops \ufffd2Jevil"


# -- 9. localhost without a GPU: a state, a slowing retry, one log entry ---------------------


async def test_localhost_without_gpu_is_a_state_not_a_retry_storm() -> None:
    """This machine has no GPU: the real agent's NVML backend fails as it would on one."""
    from gputui.collect.launch import AgentArgs
    from gputui.collect.local_source import LocalSource

    backoff = Backoff(initial_s=0.05, cap_s=30.0)
    source = LocalSource("localhost", AgentArgs(backend="nvml"), backoff)
    async with FleetMonitor([HostPlan(source=source)], tick_s=0.1) as mon:
        rt = mon.hosts["localhost"]
        await wait_until(lambda: backoff.attempt >= 4, timeout=30)
        events = [e for e in mon.events if e.host == "localhost"]
    assert rt.state is HostState.NO_GPU
    assert rt.state_reason.startswith("no GPU: ")
    # Each failed start grows the backoff: it is not reset by the agent's own error line.
    assert backoff.attempt >= 4
    errors = [e for e in events if e.kind == "agent_error"]
    assert len(errors) == 1 and errors[0].repeat >= 4  # one entry, counted
    states = [e.text for e in events if e.kind == "state"]
    assert states == [states[0]] and states[0].startswith("connecting -> no-gpu")


async def test_event_log_counts_repeats_on_one_line() -> None:
    from textual.app import App, ComposeResult

    from gputui.core.model import FleetEvent, Level
    from gputui.tui.widgets.event_log import EventLog

    class LogApp(App[None]):
        def compose(self) -> ComposeResult:
            yield EventLog(id="log")

    def error(t: float, repeat: int) -> FleetEvent:
        text = "no_gpu: NVML sees no GPU on this host"
        return FleetEvent(
            t=t, host="localhost", kind="agent_error", text=text, level=Level.WARN, repeat=repeat
        )

    other = FleetEvent(t=2.5, host="localhost", kind="state", text="connecting -> no-gpu")
    async with LogApp().run_test() as pilot:
        log = pilot.app.query_one(EventLog)
        log.add([error(1.0, 1), other])
        log.add([error(2.0 + n, n) for n in range(2, 41)])
        await pilot.pause()
        lines = log.lines()
    assert len(lines) == 2
    assert lines[1].endswith("agent_error       x40 no_gpu: NVML sees no GPU on this host")
