"""The open-files limit: raised to the hard limit at start, and one clear line when a fleet
needs more than even that."""

from __future__ import annotations

import json
import os
import pwd
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gputui.collect.fdlimit import OpenFiles, descriptors_needed

NO_USER_ENV = ("LOGNAME", "USER", "LNAME", "USERNAME")  # as under systemd or cron
GPUTUI = (sys.executable, "-m", "gputui.cli")


def _limit(soft: int, hard: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_soft_limit_is_raised_to_the_hard_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard = min(hard, 4096)
    code = (
        "import resource\n"
        "from gputui.collect.fdlimit import raise_soft_limit\n"
        "print(*raise_soft_limit(), *resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: _limit(256, hard),
        check=True,
    )
    assert [int(x) for x in done.stdout.split()] == [hard, hard, hard, hard]


def test_the_shortfall_names_the_numbers_and_the_remedy() -> None:
    needed = descriptors_needed(ssh_hosts=1100)
    assert 1100 < needed < 1300
    line = OpenFiles(hosts=1100, needed=needed, soft=1024, hard=1024).shortfall()
    assert line is not None
    assert line.startswith(f"1,100 hosts need about {needed:,} open files")
    assert "may open 1,024 (hard limit)" in line
    assert "`ulimit -n 4096`" in line and "LimitNOFILE=4096" in line
    assert OpenFiles(hosts=10, needed=60, soft=1024, hard=1024).shortfall() is None
    # A local agent holds its three pipes; the demo's servers run five descriptors a host.
    assert descriptors_needed(local_hosts=10) > descriptors_needed(ssh_hosts=30)
    assert descriptors_needed(demo_hosts=100) >= 500


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port whose connections the kernel accepts and nobody answers: each client holds its
    socket open in the SSH handshake, as hosts of a live fleet hold theirs."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4096)
        yield int(srv.getsockname()[1])


def test_a_fleet_past_the_hard_limit_is_one_line_not_per_host_errors(
    tmp_path: Path, silent_listener: int
) -> None:
    n = 400
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(f"Host h*\n  HostName 127.0.0.1\n  Port {silent_listener}\n  User ops\n")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(
        f'hosts = ["h[001-{n}]"]\n'
        "[ssh]\n"
        f'config_files = ["{ssh_config}"]\n'
        f'known_hosts = "{known_hosts}"\n'
        "connect_timeout_s = 30.0\n"
        "max_handshakes = 1000\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in NO_USER_ENV}
    done = subprocess.run(
        [*GPUTUI, "report", "--hosts", str(hosts), "--format", "json", "--wait", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        preexec_fn=lambda: _limit(256, 256),
    )
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"{n} hosts need about" in lines[0] and "may open 256 (hard limit)" in lines[0]
    assert "ulimit -n" in lines[0] and "LimitNOFILE=" in lines[0]
    doc = json.loads(done.stdout)
    assert done.returncode == 3 and len(doc["hosts"]) == n
    # The hosts that got a descriptor keep it (here: stuck in the handshake), the others fail
    # for want of one, and say so: not as a missing user name.
    states = [h["state"] for h in doc["hosts"]]
    assert states.count("connecting") > n // 4, states
    reasons = {h["state_reason"] for h in doc["hosts"] if h["state"] == "unreachable"}
    assert all("Too many open files" in r for r in reasons), reasons
    assert "Unknown local username" not in done.stdout


def test_the_local_user_is_known_after_the_descriptors_ran_out() -> None:
    # asyncssh asks getpass for the local user at every connection; without a user in the
    # environment that reads the password database, which takes a descriptor.
    code = (
        "import getpass, os\n"
        "from gputui.collect.ssh import SshContext\n"
        "SshContext()\n"
        "held = []\n"
        "try:\n"
        "    while True:\n"
        "        held.append(open(os.devnull))\n"
        "except OSError:\n"
        "    pass\n"
        "print(getpass.getuser())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in NO_USER_ENV}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        preexec_fn=lambda: _limit(128, 128),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == pwd.getpwuid(os.getuid()).pw_name


def test_the_monitor_says_it_on_stderr_and_in_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from gputui.cli import commands, common, terminal, tui_cmd  # noqa: F401  (registers all)
    from gputui.cli.app import app

    short = OpenFiles(hosts=1100, needed=1150, soft=1024, hard=1024)
    monkeypatch.setattr(common, "open_files_for_hosts", lambda specs: short)
    shown: list[list[str]] = []
    monkeypatch.setattr(tui_cmd, "_run", lambda *a, notices, **k: shown.append(list(notices)))
    # The monitor's screen is not started here, so it needs no terminal.
    monkeypatch.setattr(terminal, "need_terminal", lambda *a, **k: None)
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('hosts = ["gpu[0001-1100]"]\n')
    result = CliRunner().invoke(app, ["monitor", "--hosts", str(hosts), "--no-journal"])
    assert result.exit_code == 0, result.output
    line = short.shortfall()
    assert line is not None and result.stderr == f"gputui: {line}\n"
    assert shown == [[line]]


async def test_the_app_logs_the_shortfall_once_with_a_toast() -> None:
    from gputui.cli.tui_cmd import _events_of
    from gputui.tui.app import GpuTuiApp
    from gputui.tui.session import MonitorSession
    from tests.fake_fleet import FakeMonitor, factory, small_fleet
    from tests.test_tui_app import until

    line = OpenFiles(hosts=1100, needed=1150, soft=1024, hard=1024).shortfall()
    assert line is not None
    monitor = FakeMonitor(small_fleet())
    session = MonitorSession(factory(monitor))
    app = GpuTuiApp(session, notices=lambda: _events_of([line]))
    app.animation_level = "none"
    async with app.run_test(size=(120, 36)) as pilot:
        monitor.push(monitor.fleet.advance(1))
        await until(pilot, lambda: app.ticks > 0)
        (toast,) = [n for n in app._notifications if "open files" in n.message]
        assert toast.severity == "warning" and toast.title == "too few open files for the fleet"
        assert "ulimit -n 4096" in toast.message
        monitor.push(monitor.fleet.advance(1))
        await until(pilot, lambda: app.ticks > 1)
        assert sum("1,100 hosts need" in ln for ln in app.fleet_screen.event_log.lines()) == 1
    await session.close()
