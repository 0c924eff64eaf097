"""A chaos fleet: 200 simulated hosts behind real SSH servers, one in ten misbehaving, watched
by the real app for two minutes.

The SSH servers run in their own process (tests/chaos_server.py). A healthy host streams the
simulated agent's own lines; a misbehaving one does what a broken or hostile host does: close
at once, say nothing, write a byte a second, send garbage or another protocol version, have no
GPU, report impossible values, or put markup and escape sequences on stderr. The app and its
collector share one event loop, as in `gputui monitor`.

What must hold: every host says why it is in its state within 45 s (the misbehaving ones name
their fault), nothing raises, the app answers keys within 100 ms while all this goes on, and
the process's memory after minute 2 is within 10% of minute 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncssh
import pytest
from textual import events
from textual.widgets import TabbedContent

from gputui.collect.feed import Backoff
from gputui.collect.launch import AgentInvocation
from gputui.collect.monitor import FleetMonitor, HostPlan
from gputui.collect.ssh import SshContext, SshOptions
from gputui.collect.ssh_source import SshSource
from gputui.core.model import HostSnapshot, HostState
from gputui.tui.app import GpuTuiApp
from gputui.tui.session import MonitorSession

HOSTS = 200
RUN_S = 120.0
REASON_WITHIN_S = 45.0

# Each misbehaviour (a command of tests/chaos_server.py) and words its host's reason must hold.
MISBEHAVIOURS: dict[str, str] = {
    "instant-close": "code 255",
    "silent": "agent wrote nothing for",
    "dribble": "bytes but no complete line",
    "garbage": "lines not understood",
    "wrong-version": "agent speaks protocol v2, this gputui speaks v1",
    "zero-gpus": "no GPU",
    "implausible": "implausible value",
    "hostile-stderr": "libnvidia-ml.so not found in [/usr/lib64/nvidia]",
}


@contextlib.contextmanager
def chaos_servers(directory: Path) -> Iterator[int]:
    """The chaos SSH server in a child process; its port."""
    for name in ("host_key", "client_key"):
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(str(directory / name))
        if name == "client_key":
            key.write_public_key(str(directory / "client_key.pub"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.chaos_server", str(directory), "1.0"],
        stdin=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not (directory / "port").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        yield int((directory / "port").read_text())
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)


def fleet_plans(directory: Path, port: int) -> tuple[list[HostPlan], SshContext, dict[str, str]]:
    """200 hosts as ssh_config aliases of the server; one in ten misbehaving."""
    pub = asyncssh.read_private_key(str(directory / "host_key")).export_public_key().decode()
    (directory / "known_hosts").write_text(f"[127.0.0.1]:{port} {pub.strip()}\n")
    names = [f"chaos-{i:03d}" for i in range(1, HOSTS + 1)]
    (directory / "ssh_config").write_text(
        f"Host chaos-*\n  HostName 127.0.0.1\n  Port {port}\n  User gputui\n"
        f"  IdentityFile {directory / 'client_key'}\n"
    )
    ssh = SshContext(
        SshOptions(config_files=(directory / "ssh_config",), known_hosts=directory / "known_hosts")
    )
    kinds = list(MISBEHAVIOURS)
    bad = {name: kinds[n % len(kinds)] for n, name in enumerate(names[5::10])}
    plans = []
    for name in names:
        # Bytes on stdin as the agent's bundle would be: writing them is a stage that can fail.
        inv = AgentInvocation(command=bad.get(name, "healthy"), stdin=b"#" * 40_000)
        source = SshSource(name, ssh, lambda inv=inv: inv, Backoff())  # type: ignore[misc]
        plans.append(HostPlan(source=source, interval_s=1.0))
    return plans, ssh, bad


async def key_latency_ms(app: GpuTuiApp, key: str, shown: Callable[[], bool]) -> float:
    posted = time.perf_counter()
    app.post_message(events.Key(key, key))
    deadline = posted + 5
    while not shown() and time.perf_counter() < deadline:
        await asyncio.sleep(0.001)
    return (time.perf_counter() - posted) * 1000


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_chaos_fleet(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with chaos_servers(tmp_path) as port:
        plans, ssh, bad = fleet_plans(tmp_path, port)
        assert len(bad) == HOSTS // 10

        def factory() -> FleetMonitor:
            return FleetMonitor(plans, closers=[ssh.close])

        app = GpuTuiApp(MonitorSession(factory), tune_gc=True)  # as `gputui monitor` runs
        app.animation_level = "none"
        started = time.monotonic()
        explained_at: dict[str, float] = {}  # when each host first said why, as expected
        latencies: list[float] = []
        rss: dict[int, float] = {}
        async with app.run_test(size=(200, 50)) as pilot:
            await pilot.pause()
            tabs = app.fleet_screen.query_one(TabbedContent)
            keys = [("2", "grid"), ("3", "risk"), ("1", "fleet")]
            while (elapsed := time.monotonic() - started) < RUN_S:
                snap = app.snapshot
                for host in snap.hosts if snap is not None else ():
                    if host.name not in explained_at and _explained(host, bad):
                        explained_at[host.name] = elapsed
                for key, tab in keys:
                    shown = lambda tab=tab: tabs.active == tab  # noqa: E731
                    latencies.append(await key_latency_ms(app, key, shown))
                    await asyncio.sleep(0.3)
                for minute in (1, 2):
                    if minute not in rss and elapsed >= 60 * minute - 2:
                        rss[minute] = rss_mib()
                await asyncio.sleep(0.5)
            final = app.snapshot
            await app.action_quit()
        await app.session.close()
    latencies.sort()
    p95 = latencies[int(0.95 * len(latencies))]
    slowest = max(explained_at.values(), default=float("nan"))
    summary = (
        f"chaos: {len(explained_at)}/{HOSTS} hosts explained, the last at {slowest:.1f} s; "
        f"keys p50 {statistics.median(latencies):.1f} ms, p95 {p95:.1f} ms, "
        f"max {latencies[-1]:.1f} ms ({len(latencies)} presses); "
        f"RSS minute 1 {rss.get(1, 0):.1f} MiB, minute 2 {rss.get(2, 0):.1f} MiB"
    )
    out, err = capfd.readouterr()
    with capfd.disabled():
        print(f"\n{summary}")
    assert final is not None
    for host in final.hosts:
        if host.name in bad:
            kind = bad[host.name]
            assert MISBEHAVIOURS[kind] in host.state_reason, (host.name, kind)
            assert host.state is not HostState.CONNECTING, (host.name, kind)
            assert "\x1b" not in host.state_reason and "\x07" not in host.state_reason
        else:
            assert host.state is HostState.STREAMING, (host.name, host.state_reason)
    late = {n: round(t, 1) for n, t in explained_at.items() if t > REASON_WITHIN_S}
    assert len(explained_at) == HOSTS and not late, late
    assert p95 < 100, f"key p95 {p95:.0f} ms"
    assert abs(rss[2] - rss[1]) / rss[1] <= 0.10, rss
    assert "Traceback" not in out + err


def _explained(host: HostSnapshot, bad: dict[str, str]) -> bool:
    """A healthy host streams; a misbehaving one is past connecting, its reason naming why."""
    if host.name in bad:
        expected = MISBEHAVIOURS[bad[host.name]]
        return host.state is not HostState.CONNECTING and expected in host.state_reason
    return host.state is HostState.STREAMING
