"""`gputui report` and the monitor on a hosts.toml that points at real OpenSSH servers.

The real agent is shipped over SSH and run with the host's python3 on the simulated backend;
one host is reached directly, one through a ProxyJump bastion.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gputui.collect.fleet import monitor_config
from gputui.config import load_config
from gputui.core.model import HostState, Sample
from tests.test_collect_openssh import Site, site  # noqa: F401 - the fixture
from tests.test_collect_ssh import wait_until

pytestmark = pytest.mark.system


def write_hosts(lab: Site, scenario: str = "healthy") -> Path:
    path = lab.tmp / "hosts.toml"
    path.write_text(
        "[ssh]\n"
        f'config_files = ["{lab.tmp / "ssh_config"}"]\n'
        f'known_hosts = "{lab.known_hosts}"\n'
        "connect_timeout_s = 5\nkeepalive_interval_s = 1\nkeepalive_count_max = 2\n"
        "[groups.lab]\n"
        'hosts = ["gpu-direct", "gpu-behind-1"]\n'
        'labels = { rack = "r7" }\n'
        f'backend = "sim"\nscenario = "{scenario}"\ninterval = 0.5\n'
    )
    return path


def test_report_over_real_sshd_alias_and_proxyjump(site: Site) -> None:  # noqa: F811
    hosts = write_hosts(site)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gputui.cli",
            "report",
            "--hosts",
            str(hosts),
            "--format",
            "json",
            "--wait",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    doc = json.loads(done.stdout)
    assert done.returncode == doc["exit_code"] == 0, done.stderr
    by_name = {h["name"]: h for h in doc["hosts"]}
    assert set(by_name) == {"gpu-direct", "gpu-behind-1"}
    for h in by_name.values():
        assert h["state"] == "streaming" and h["labels"]["rack"] == "r7"
        assert h["gpus_total"] == 8 and len(h["gpus"]) == 8
        assert all(g["temp_c"] is not None for g in h["gpus"])
    assert site.bastion.accepted_logins() == 1


async def test_host_down_and_back_without_restarting_the_monitor(site: Site) -> None:  # noqa: F811
    config = load_config(write_hosts(site))
    async with monitor_config(config, tick_s=0.2) as mon:
        direct = mon.hosts["gpu-direct"]
        await wait_until(lambda: direct.sample is not None, timeout=30)
        site.gpu.stop()
        await wait_until(lambda: direct.state is HostState.UNREACHABLE, timeout=20)
        down = mon.publish()
        last_before = direct.sample
        site.gpu.start()
        restarted_at = time.time()
        await wait_until(lambda: direct.state is HostState.STREAMING, timeout=90)
        # A hello alone makes the host streaming again, and the last values are kept: only a
        # sample the agent read after sshd came back proves the new stream delivers readings.
        with contextlib.suppress(AssertionError):
            await wait_until(lambda: _read_after(direct.sample, restarted_at), timeout=30)
        back = direct.sample
    reason = next(h for h in down.hosts if h.name == "gpu-direct").state_reason
    assert reason  # says why: connection lost / refused
    assert (
        next(h for h in down.hosts if h.name == "gpu-direct").sample is not None
    )  # last values kept
    assert back is not last_before and _read_after(back, restarted_at), (
        f"no sample after the reconnect: the last was read at {back.t if back else None}, "
        f"sshd restarted at {restarted_at}"
    )


def _read_after(sample: Sample | None, t: float) -> bool:
    """Whether the agent read this sample after `t` (its clock is this machine's: same host)."""
    return sample is not None and sample.t > t
