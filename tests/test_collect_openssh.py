"""The collector against a real OpenSSH sshd: what users actually run.

Covers an alias resolved through ssh_config (HostName/Port/User/IdentityFile), a host behind a
ProxyJump bastion (one shared bastion connection for all hosts behind it), a changed host key,
a wrong client key, and a host that goes down and comes back.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path

import pytest

from gputui.collect.feed import Backoff
from gputui.collect.launch import AgentInvocation
from gputui.collect.ssh import CIPHERS, SshContext, SshOptions
from gputui.collect.ssh_source import SshSource
from gputui.core.model import HostState
from tests.openssh import OpenSshServer, ssh_keygen
from tests.test_collect_ssh import RecordingFeed, running, wait_until

pytestmark = pytest.mark.system

# A stand-in agent: hello, then a sample every 0.1 s until its stdin closes.
STREAMER = r"""
import json, sys, threading, time, os
threading.Thread(target=lambda: (sys.stdin.buffer.read(), os._exit(0)), daemon=True).start()
print(json.dumps({"v": 1, "type": "hello", "host": os.uname().nodename, "agent_version": "t",
                  "backend": "sim", "interval_s": 0.1, "slow_every": 10, "gpus": []}), flush=True)
seq = 0
while True:
    msg = {"v": 1, "type": "sample", "t": time.time(), "seq": seq, "gpus": []}
    print(json.dumps(msg), flush=True)
    seq += 1
    time.sleep(0.1)
"""
INVOCATION = AgentInvocation(command=f"{shlex.quote(sys.executable)} -c {shlex.quote(STREAMER)}")


class Site:
    """Two sshds (a bastion and a GPU host) and the client files that reach them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.client_pub = ssh_keygen(tmp / "id_ed25519")
        self.bastion = OpenSshServer(tmp, "bastion", [self.client_pub])
        self.gpu = OpenSshServer(tmp, "gpu", [self.client_pub])
        self.known_hosts = tmp / "known_hosts"
        self.known_hosts.write_text(
            self.bastion.known_hosts_line() + "\n" + self.gpu.known_hosts_line() + "\n"
        )
        key = tmp / "id_ed25519"
        user = self.gpu.user
        (tmp / "ssh_config").write_text(
            f"Host bastion\n  HostName 127.0.0.1\n  Port {self.bastion.port}\n  User {user}\n"
            f"  IdentityFile {key}\n\n"
            f"Host gpu-direct\n  HostName 127.0.0.1\n  Port {self.gpu.port}\n  User {user}\n"
            f"  IdentityFile {key}\n\n"
            f"Host gpu-behind-1 gpu-behind-2\n  HostName 127.0.0.1\n  Port {self.gpu.port}\n"
            f"  User {user}\n  IdentityFile {key}\n  ProxyJump bastion\n"
        )

    def context(self) -> SshContext:
        return SshContext(
            SshOptions(
                config_files=(self.tmp / "ssh_config",),
                known_hosts=self.known_hosts,
                connect_timeout_s=5,
                keepalive_interval_s=1,
                keepalive_count_max=2,
            )
        )


@pytest.fixture
def site(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Site(tmp_path)
    s.bastion.start()
    s.gpu.start()
    yield s
    s.bastion.stop()
    s.gpu.stop()


def fast() -> Backoff:
    return Backoff(initial_s=0.1, cap_s=0.5)


async def test_alias_from_ssh_config_streams(site: Site) -> None:
    feed = RecordingFeed("gpu-direct")
    async with running(SshSource("gpu-direct", site.context(), lambda: INVOCATION), feed):
        await wait_until(lambda: len(feed.lines) >= 3)
    assert b'"type": "hello"' in feed.lines[0]
    assert site.gpu.accepted_logins() == 1


async def test_proxyjump_shares_one_bastion_connection(site: Site) -> None:
    ctx = site.context()
    feeds = [RecordingFeed("gpu-behind-1"), RecordingFeed("gpu-behind-2")]
    async with (
        running(SshSource("gpu-behind-1", ctx, lambda: INVOCATION), feeds[0]),
        running(SshSource("gpu-behind-2", ctx, lambda: INVOCATION), feeds[1]),
    ):
        await wait_until(lambda: all(len(f.lines) >= 3 for f in feeds))
    assert site.bastion.accepted_logins() == 1  # one bastion login serves both targets
    assert site.gpu.accepted_logins() == 2
    assert site.bastion.log.read_text().count("direct-tcpip") >= 2


async def test_changed_host_key_is_refused_with_advice(site: Site) -> None:
    other = ssh_keygen(site.tmp / "other_host_key")
    site.known_hosts.write_text(f"[127.0.0.1]:{site.gpu.port} {other}\n")
    feed = RecordingFeed("gpu-direct")
    async with running(SshSource("gpu-direct", site.context(), lambda: INVOCATION), feed):
        await wait_until(lambda: bool(feed.reasons(HostState.UNREACHABLE)))
    reason = feed.reasons(HostState.UNREACHABLE)[0]
    assert (
        "CHANGED" in reason
        and f"ssh-keygen -f {site.known_hosts} -R '[127.0.0.1]:{site.gpu.port}'" in reason
    )
    assert site.gpu.accepted_logins() == 0


async def test_wrong_key_is_refused_as_auth_failure(site: Site) -> None:
    (site.gpu.dir / "authorized_keys").write_text(ssh_keygen(site.tmp / "someone_else") + "\n")
    feed = RecordingFeed("gpu-direct")
    async with running(SshSource("gpu-direct", site.context(), lambda: INVOCATION), feed):
        await wait_until(lambda: bool(feed.reasons(HostState.UNREACHABLE)))
    assert feed.reasons(HostState.UNREACHABLE)[0].startswith("authentication failed for ")


async def test_host_down_then_back_without_restarting(site: Site) -> None:
    feed = RecordingFeed("gpu-direct")
    async with running(SshSource("gpu-direct", site.context(), lambda: INVOCATION, fast()), feed):
        await wait_until(lambda: len(feed.lines) >= 3)
        site.gpu.stop()
        await wait_until(lambda: any("refused" in r for r in feed.reasons(HostState.UNREACHABLE)))
        n = len(feed.lines)
        site.gpu.start()
        await wait_until(lambda: len(feed.lines) >= n + 3, timeout=20)
    first_loss = feed.reasons(HostState.UNREACHABLE)[0]
    assert "connection lost" in first_loss or "agent" in first_loss
    await asyncio.sleep(0)


FIXTURES = Path(__file__).parent / "fixtures" / "smi"


def smi_host(tmp: Path, client_pub: str, with_smi: bool) -> OpenSshServer:
    """An sshd whose sessions see a PATH with a stand-in nvidia-smi (or none)."""
    bindir = tmp / "bin"
    bindir.mkdir(exist_ok=True)
    if with_smi:
        wrapper = bindir / "nvidia-smi"
        wrapper.write_text(
            "#!/bin/sh\n"
            f"export FAKE_SMI_HELLO={FIXTURES / 'h100_hello.csv'}\n"
            f"export FAKE_SMI_TEMPERATURE={FIXTURES / 'h100_temperature.txt'}\n"
            f"export FAKE_SMI_STREAM={FIXTURES / 'h100_training.csv'}\n"
            "export FAKE_SMI_PERIOD_S=0.1\n"
            f'exec {sys.executable} {FIXTURES / "fake_nvidia_smi.py"} "$@"\n'
        )
        wrapper.chmod(0o755)
    return OpenSshServer(
        tmp, "nopython", [client_pub], extra_config=f"SetEnv PATH={bindir}:/usr/bin:/bin\n"
    )


@pytest.mark.parametrize("with_smi", [True, False], ids=["smi-fallback", "nothing"])
async def test_host_without_python_falls_back_to_nvidia_smi(tmp_path: Path, with_smi: bool) -> None:
    from gputui.collect.launch import AgentArgs, remote_invocation
    from gputui.collect.monitor import FleetMonitor, HostPlan

    client_pub = ssh_keygen(tmp_path / "id_ed25519")
    server = smi_host(tmp_path, client_pub, with_smi)
    (tmp_path / "known_hosts").write_text(server.known_hosts_line() + "\n")
    (tmp_path / "ssh_config").write_text(
        f"Host gpu\n  HostName 127.0.0.1\n  Port {server.port}\n  User {server.user}\n"
        f"  IdentityFile {tmp_path / 'id_ed25519'}\n"
    )
    ctx = SshContext(
        SshOptions(
            config_files=(tmp_path / "ssh_config",),
            known_hosts=tmp_path / "known_hosts",
            connect_timeout_s=5,
        )
    )
    # A python that does not exist on the host stands for a host without python.
    args = AgentArgs(backend="auto", interval_s=0.1)
    plan = HostPlan(
        source=SshSource("gpu", ctx, lambda: remote_invocation("no-such-python3", args), fast()),
        interval_s=0.1,
    )
    server.start()
    try:
        async with FleetMonitor([plan], tick_s=0.1) as mon:
            rt = mon.hosts["gpu"]
            if with_smi:
                await wait_until(lambda: rt.sample is not None and rt.sample.seq >= 2, timeout=20)
            else:
                await wait_until(lambda: rt.state is HostState.UNREACHABLE, timeout=20)
            snap = mon.publish().hosts[0]
    finally:
        server.stop()
    if with_smi:
        assert snap.state is HostState.DEGRADED and "nvidia-smi" in snap.state_reason
        assert snap.backend == "smi" and snap.hello is not None and len(snap.hello.gpus) == 8
        assert snap.sample is not None and snap.sample.gpus[0].temp_c is not None
    else:
        assert snap.state_reason == "neither python nor nvidia-smi found on this host"


async def test_aes_gcm_is_negotiated_unless_ssh_config_says_otherwise(site: Site) -> None:
    ctx = site.context()
    conn = await ctx.connect("gpu-direct")
    try:
        expected = "aes128-gcm@openssh.com" if CIPHERS[0].startswith("aes") else CIPHERS[0]
        assert conn.get_extra_info("recv_cipher") == expected
    finally:
        conn.close()
        await conn.wait_closed()
    # The user's Ciphers line wins, as it does for `ssh`.
    config = site.tmp / "ssh_config"
    config.write_text(
        config.read_text().replace(
            "Host gpu-direct\n",
            "Host gpu-direct\n  Ciphers aes256-ctr,chacha20-poly1305@openssh.com\n",
        )
    )
    conn = await site.context().connect("gpu-direct")
    try:
        assert conn.get_extra_info("recv_cipher") == "aes256-ctr"
    finally:
        conn.close()
        await conn.wait_closed()
