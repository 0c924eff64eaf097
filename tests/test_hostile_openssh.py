"""Hostile hosts behind a real OpenSSH sshd: what the SSH side does is OpenSSH's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from gputui.collect.feed import Backoff
from gputui.collect.launch import AgentArgs, remote_invocation
from gputui.collect.monitor import FleetMonitor, HostPlan
from gputui.collect.ssh import SshContext, SshOptions
from gputui.collect.ssh_source import SshSource
from gputui.core.model import HostState
from tests.openssh import OpenSshServer, ssh_keygen
from tests.test_collect_ssh import wait_until

pytestmark = pytest.mark.system


def context(tmp: Path, server: OpenSshServer) -> SshContext:
    (tmp / "known_hosts").write_text(server.known_hosts_line() + "\n")
    (tmp / "ssh_config").write_text(
        f"Host gpu\n  HostName 127.0.0.1\n  Port {server.port}\n  User {server.user}\n"
        f"  IdentityFile {tmp / 'id_ed25519'}\n"
    )
    return SshContext(
        SshOptions(
            config_files=(tmp / "ssh_config",),
            known_hosts=tmp / "known_hosts",
            connect_timeout_s=5,
        )
    )


async def test_a_session_closed_at_once_is_a_reason_and_a_retry(tmp_path: Path) -> None:
    """sshd runs a forced command that exits 255 the moment the session opens, before the
    agent bundle (41 KB on stdin) can be written: the write fails, and the host must say so
    and retry, not sit in `connecting` with its task gone."""
    pub = ssh_keygen(tmp_path / "id_ed25519")
    server = OpenSshServer(tmp_path, "gpu", [pub], extra_config="ForceCommand exit 255\n")
    server.start()
    try:
        ctx = context(tmp_path, server)
        inv = remote_invocation("python3", AgentArgs(backend="sim", interval_s=0.2))
        source = SshSource("gpu", ctx, lambda: inv, Backoff(0.1, 0.3))
        async with FleetMonitor([HostPlan(source=source, interval_s=0.2)], tick_s=0.1) as mon:
            rt = mon.hosts["gpu"]
            await wait_until(
                lambda: server.accepted_logins() >= 3 and rt.state is HostState.UNREACHABLE,
                timeout=20,
            )
            assert all(not t.done() for t in mon._tasks)
            reason = rt.state_reason
    finally:
        server.stop()
    assert "code 255" in reason
