"""The SSH source against in-process SSH servers: streaming, reconnects, failures, scale."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import asyncssh
import pytest

from gputui.collect.feed import AgentSend, Backoff
from gputui.collect.launch import AgentInvocation
from gputui.collect.ssh import SshContext, SshOptions, cipher_preference
from gputui.collect.ssh_source import SshSource
from gputui.core.model import HostState
from tests.sshfake import FakeFleet, FakeHost, hello_line, sample_line


class RecordingFeed:
    """A HostFeed that records what the source reported."""

    def __init__(self, name: str, interval: float = 0.1) -> None:
        self.name = name
        self.interval = interval
        self.states: list[tuple[HostState, str]] = []
        self.lines: list[bytes] = []
        self.too_long: list[int] = []
        self.send: AgentSend | None = None
        self._last = time.monotonic()

    def set_state(self, state: HostState, reason: str = "") -> None:
        self.states.append((state, reason))

    def stream_started(self) -> None:
        self._last = time.monotonic()

    def stream_ended(self, reason: str) -> None:
        self.set_state(HostState.UNREACHABLE, reason)

    def retrying(self, attempt: int, phase: str) -> None:
        self.set_state(HostState.CONNECTING, phase)

    def stream_problem(self) -> str | None:
        return None

    def stream_was_healthy(self) -> bool:
        return bool(self.lines)

    def on_line(self, line: bytes) -> None:
        self._last = time.monotonic()
        self.lines.append(line)

    def on_too_long(self, length: int) -> None:
        self.too_long.append(length)

    def silent_for(self) -> float:
        return time.monotonic() - self._last

    def expected_interval(self) -> float:
        return self.interval

    def agent_channel(self, send: AgentSend | None) -> None:
        self.send = send

    def reasons(self, state: HostState) -> list[str]:
        return [r for s, r in self.states if s is state]


INVOCATION = AgentInvocation(command="gputui-agent --test", stdin=b"BUNDLE" * 100)


def fast_backoff() -> Backoff:
    return Backoff(initial_s=0.05, cap_s=0.2)


async def wait_until(cond, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(source: SshSource, feed: RecordingFeed):  # type: ignore[no-untyped-def]
    task = asyncio.create_task(source.run(feed))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def fleet(tmp_path: Path):  # type: ignore[no-untyped-def]
    f = FakeFleet(tmp_path)
    yield f
    await f.close()


async def test_streams_lines_and_ships_the_agent(fleet: FakeFleet) -> None:
    host = await fleet.add(FakeHost("gpu001"))
    ctx = SshContext(fleet.options())
    feed = RecordingFeed("gpu001")
    async with running(SshSource("gpu001", ctx, lambda: INVOCATION), feed):
        await wait_until(lambda: len(feed.lines) >= 5)
    assert feed.lines[0].startswith(b'{"v": 1, "type": "hello"')
    assert host.commands == ["gputui-agent --test"]
    assert host.stdin_bytes == len(INVOCATION.stdin)
    assert ctx.resolve("gpu001").port == host.port  # resolved through ssh_config


async def test_reconnects_after_the_server_drops_mid_stream(fleet: FakeFleet) -> None:
    host = await fleet.add(FakeHost("gpu001"))
    feed = RecordingFeed("gpu001")
    src = SshSource("gpu001", SshContext(fleet.options()), lambda: INVOCATION, fast_backoff())
    async with running(src, feed):
        await wait_until(lambda: len(feed.lines) >= 3)
        host.drop()
        await wait_until(lambda: host.sessions >= 2)
        n = len(feed.lines)
        await wait_until(lambda: len(feed.lines) >= n + 3)
    unreachable = feed.reasons(HostState.UNREACHABLE)
    assert unreachable and "connection lost" in unreachable[0]


async def test_agent_exit_code_and_last_stderr_line_become_the_reason(fleet: FakeFleet) -> None:
    async def crash(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
        process.stdout.write(hello_line(host.name))
        process.stderr.write(b"Traceback (most recent call last):\nRuntimeError: NVML went away\n")
        await asyncio.sleep(0.05)
        return 3

    await fleet.add(FakeHost("gpu001", script=crash))
    feed = RecordingFeed("gpu001")
    src = SshSource("gpu001", SshContext(fleet.options()), lambda: INVOCATION, fast_backoff())
    async with running(src, feed):
        await wait_until(lambda: bool(feed.reasons(HostState.UNREACHABLE)))
    assert feed.reasons(HostState.UNREACHABLE)[0] == (
        "agent exited with code 3: RuntimeError: NVML went away"
    )


async def test_garbage_and_over_long_lines_do_not_stop_the_stream(fleet: FakeFleet) -> None:
    async def garbage(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
        process.stdout.write(hello_line(host.name))
        process.stdout.write(b"\x00\xff not json\n")
        process.stdout.write(b"x" * (2 << 20) + b"\n")  # over the 1 MiB line limit
        for seq in range(3):
            process.stdout.write(sample_line(seq))
        await asyncio.sleep(10)
        return 0

    await fleet.add(FakeHost("gpu001", script=garbage))
    feed = RecordingFeed("gpu001")
    async with running(SshSource("gpu001", SshContext(fleet.options()), lambda: INVOCATION), feed):
        await wait_until(lambda: len(feed.lines) >= 5)
    assert feed.lines[1] == b"\x00\xff not json"
    assert feed.too_long == [2 << 20]
    assert all(b'"type": "sample"' in ln for ln in feed.lines[2:5])


async def test_a_hung_agent_is_restarted(fleet: FakeFleet) -> None:
    async def hang(process: asyncssh.SSHServerProcess[bytes], host: FakeHost) -> int:
        process.stdout.write(hello_line(host.name))
        process.stdout.write(sample_line(0))
        await asyncio.sleep(3600)  # keeps the channel open, writes nothing
        return 0

    host = await fleet.add(FakeHost("gpu001", script=hang))
    feed = RecordingFeed("gpu001", interval=0.05)
    src = SshSource("gpu001", SshContext(fleet.options()), lambda: INVOCATION, fast_backoff())
    async with running(src, feed):
        await wait_until(lambda: host.sessions >= 2)
    assert "hung" in feed.reasons(HostState.UNREACHABLE)[0]


async def test_unknown_host_key_is_refused_with_keyscan_advice(fleet: FakeFleet) -> None:
    host = await fleet.add(FakeHost("gpu001"), trust=False)
    feed = RecordingFeed("gpu001")
    async with running(SshSource("gpu001", SshContext(fleet.options()), lambda: INVOCATION), feed):
        await wait_until(lambda: bool(feed.reasons(HostState.UNREACHABLE)))
    reason = feed.reasons(HostState.UNREACHABLE)[0]
    assert "not in" in reason and f"ssh-keyscan -p {host.port} 127.0.0.1 >>" in reason
    assert host.sessions == 0


async def test_changed_host_key_is_refused(fleet: FakeFleet, tmp_path: Path) -> None:
    host = await fleet.add(FakeHost("gpu001"))
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{host.port} {other}\n")
    feed = RecordingFeed("gpu001")
    async with running(SshSource("gpu001", SshContext(fleet.options()), lambda: INVOCATION), feed):
        await wait_until(lambda: bool(feed.reasons(HostState.UNREACHABLE)))
    reason = feed.reasons(HostState.UNREACHABLE)[0]
    assert "CHANGED" in reason and "ssh-keygen" in reason and host.sessions == 0


async def test_wrong_key_is_an_auth_failure(fleet: FakeFleet, tmp_path: Path) -> None:
    await fleet.add(FakeHost("gpu001"))
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(tmp_path / "id_test"))
    feed = RecordingFeed("gpu001")
    async with running(SshSource("gpu001", SshContext(fleet.options()), lambda: INVOCATION), feed):
        await wait_until(lambda: bool(feed.reasons(HostState.UNREACHABLE)))
    assert feed.reasons(HostState.UNREACHABLE)[0].startswith("authentication failed for tester@")


async def test_refused_port_and_unknown_name_have_their_reasons(tmp_path: Path) -> None:
    (tmp_path / "ssh_config").write_text(
        "Host closed\n  HostName 127.0.0.1\n  Port 1\n"
        "Host nowhere\n  HostName no-such-host.invalid\n"
    )
    ctx = SshContext(
        SshOptions(
            config_files=(tmp_path / "ssh_config",),
            known_hosts=tmp_path / "kh",
            connect_timeout_s=3,
        )
    )
    for alias, expected in (("closed", "connection refused"), ("nowhere", "cannot resolve")):
        feed = RecordingFeed(alias)
        async with running(SshSource(alias, ctx, lambda: INVOCATION), feed):
            await wait_until(lambda f=feed: bool(f.reasons(HostState.UNREACHABLE)))  # type: ignore[misc]
        assert feed.reasons(HostState.UNREACHABLE)[0].startswith(expected)


async def test_two_hundred_hosts_with_a_handshake_bound(
    fleet: FakeFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(200):
        await fleet.add(FakeHost(f"gpu{i:03d}", interval=0.5))
    ctx = SshContext(fleet.options(max_handshakes=16))
    in_flight = peak = 0
    real_connect = asyncssh.connect

    async def counting_connect(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await real_connect(*args, **kwargs)
        finally:
            in_flight -= 1

    monkeypatch.setattr("gputui.collect.ssh.asyncssh.connect", counting_connect)
    feeds = [RecordingFeed(n, interval=0.5) for n in fleet.hosts]
    tasks = [asyncio.create_task(SshSource(f.name, ctx, lambda: INVOCATION).run(f)) for f in feeds]
    try:
        await wait_until(lambda: all(f.lines for f in feeds), timeout=60)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert 1 < peak <= 16  # handshakes overlapped, but never more than the bound
    assert all(h.sessions == 1 for h in fleet.hosts.values())


def test_cipher_preference_puts_aes_gcm_first_only_with_aes_instructions() -> None:
    with_aes = cipher_preference(True)
    without = cipher_preference(False)
    assert with_aes[:2] == ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]
    assert sorted(with_aes) == sorted(without)  # the same set, another order
    assert without[0] == "chacha20-poly1305@openssh.com"  # asyncssh's own order
