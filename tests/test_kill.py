"""Killing a GPU process from the process table (gputui/ops/kill.py, gputui/ops/host_kill.py).

Real processes on a simulated host: a stand-in NVML lists a real `sleep` as its GPU's compute
process, the agent's own run loop writes its hello and a full sample (the owner, command line
and start read from the real /proc), and the collector's runtime decodes them into the monitor
that OperatorActions asks. The kill then runs through the real local path (localhost: argv,
no shell, its own session) and must end that process, journaled; a pid the reading does not
list, and a read-only configuration, are refused with nothing sent.
"""

from __future__ import annotations

import ast
import asyncio
import io
import os
import pwd
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gputui.agent.nvml_backend import NvmlBackend
from gputui.agent.runner import Runner
from gputui.agent.simnvml import SimNvml
from gputui.agent.simulation import Simulation
from gputui.agent.stream import StreamWriter
from gputui.collect.feed import HostFeed, Source
from gputui.collect.monitor import FleetMonitor, HostPlan
from gputui.config import Config, config_from_text
from gputui.config.local import local_config
from gputui.ops import host_kill
from gputui.ops.actions import READONLY_REFUSAL, ActionError, OperatorActions
from gputui.ops.journal import Journal
from gputui.ops.kill import KILL_ACTION, plan_kill
from tests.agent_sim import FakeClock

HOST_KILL = Path(host_kill.__file__)


class OneProcess:
    """A simulated NVML whose first GPU runs the given host process."""

    def __init__(self, pid: int) -> None:
        sc = {"name": "kill", "gpus": 2, "workload": "idle"}
        self._nv = SimNvml(Simulation(sc, seed=0, clock=FakeClock()))
        self._pid = pid

    def __getattr__(self, name: str) -> Any:
        return getattr(self._nv, name)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]:
        if handle.index != 0:
            return []
        return [type("Process", (), {"pid": self._pid, "usedGpuMemory": 1 << 30})()]

    def nvmlSystemGetProcessName(self, pid: int) -> str:
        return "/usr/bin/sleep"


class IdleSource(Source):
    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, feed: HostFeed) -> None:  # pragma: no cover - never started
        await asyncio.Event().wait()


def agent_lines(pid: int) -> list[bytes]:
    """What the agent writes for a host whose GPU 0 runs `pid`: its hello and one full sample,
    the process read from this machine's /proc by the agent's default hook."""
    backend = NvmlBackend(OneProcess(pid), event_thread=False)
    out = io.BytesIO()
    stop = threading.Event()
    Runner(backend, StreamWriter(out, stop), stop, host="localhost", once=True).run()
    return out.getvalue().splitlines()


def monitor_listing(pid: int) -> FleetMonitor:
    """A monitor whose latest reading of localhost lists `pid` on GPU 0."""
    monitor = FleetMonitor([HostPlan(source=IdleSource("localhost"))])
    runtime = monitor.hosts["localhost"]
    runtime.stream_started()
    for line in agent_lines(pid):
        runtime.on_line(line)
    monitor.publish()
    return monitor


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal.open(tmp_path / "journal.sqlite3")
    yield j
    j.close()


def actions(journal: Journal, monitor: FleetMonitor, **changes: Any) -> OperatorActions:
    config = msgspec.structs.replace(local_config("sim"), **changes)
    return OperatorActions(config, journal, monitor=monitor)


def start(*argv: str) -> subprocess.Popen[bytes]:
    child = subprocess.Popen(list(argv))
    time.sleep(0.2)  # past exec: /proc shows the program, not this interpreter
    return child


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    child = start("sleep", "300")
    yield child
    if child.poll() is None:
        child.kill()
    child.wait()


@pytest.fixture
def stubborn() -> Iterator[subprocess.Popen[bytes]]:
    """A process that ignores SIGTERM, as a training job stuck in a collective does."""
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(300)"
    child = start(sys.executable, "-c", code)
    yield child
    if child.poll() is None:
        child.kill()
    child.wait()


def me() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


async def test_a_listed_process_ends_on_sigterm_journaled(
    journal: Journal, sleeper: subprocess.Popen[bytes]
) -> None:
    ops = actions(journal, monitor_listing(sleeper.pid))
    plan = ops.prepare_kill("localhost", sleeper.pid)
    assert plan.question() == f"Kill pid {sleeper.pid} (sleep 300) of {me()} on localhost (GPU0)?"
    assert plan.grace_s == 10.0 and plan.where == "local"
    assert "SIGKILL if it is still running 10 s later" in plan.preview()[0]
    assert plan.command.argv[0] == sys.executable  # the interpreter localhost's agent runs on
    lines: list[str] = []
    outcome = await ops.kill(plan, lines.append)
    assert outcome.ok, outcome.text
    assert outcome.text == f"pid {sleeper.pid} (sleep 300) of {me()} on localhost ended"
    assert sleeper.wait(timeout=5) == -signal.SIGTERM
    assert f"gputui: SIGTERM sent to pid {sleeper.pid}" in lines
    [run] = journal.runs()
    assert (run.action, run.node, run.where, run.exit_code) == (
        KILL_ACTION,
        "localhost",
        "local",
        0,
    )
    assert run.argv == plan.command.argv and str(sleeper.pid) in run.argv
    assert run.group is not None  # a local command: its process group recorded as it started
    assert "SIGTERM sent" in run.output and "SIGKILL" not in run.output


async def test_a_process_that_ignores_sigterm_gets_sigkill_after_the_grace(
    journal: Journal, stubborn: subprocess.Popen[bytes]
) -> None:
    ops = actions(journal, monitor_listing(stubborn.pid), kill_grace_s=0.5)
    plan = ops.prepare_kill("localhost", stubborn.pid)
    began = time.monotonic()
    outcome = await ops.kill(plan)
    assert outcome.ok, outcome.text
    assert time.monotonic() - began >= 0.5
    assert stubborn.wait(timeout=5) == -signal.SIGKILL
    [run] = journal.runs()
    assert "still running 0.5 s after SIGTERM" in run.output
    assert f"SIGKILL sent to pid {stubborn.pid}" in run.output


async def test_a_pid_the_reading_does_not_list_is_refused_with_nothing_sent(
    journal: Journal, sleeper: subprocess.Popen[bytes]
) -> None:
    other = start("sleep", "300")
    try:
        ops = actions(journal, monitor_listing(sleeper.pid))
        with pytest.raises(ActionError, match=f"pid {other.pid} is not a GPU process of"):
            ops.prepare_kill("localhost", other.pid)
        with pytest.raises(ActionError, match="no host"):
            ops.prepare_kill("gpu999", sleeper.pid)
        time.sleep(0.2)
        assert other.poll() is None and sleeper.poll() is None
        assert journal.runs() == []
    finally:
        other.kill()
        other.wait()


async def test_before_any_reading_nothing_can_be_killed(
    journal: Journal, sleeper: subprocess.Popen[bytes]
) -> None:
    monitor = FleetMonitor([HostPlan(source=IdleSource("localhost"))])
    ops = actions(journal, monitor)
    with pytest.raises(ActionError, match="has not listed its GPU processes yet"):
        ops.prepare_kill("localhost", sleeper.pid)


async def test_read_only_refuses_to_prepare_and_to_run(
    journal: Journal, sleeper: subprocess.Popen[bytes]
) -> None:
    monitor = monitor_listing(sleeper.pid)
    with pytest.raises(ActionError, match="read-only"):
        actions(journal, monitor, readonly=True).prepare_kill("localhost", sleeper.pid)
    # Prepared while allowed, then the configuration turned read-only: refused when run.
    ops = actions(journal, monitor)
    plan = ops.prepare_kill("localhost", sleeper.pid)
    ops.config = msgspec.structs.replace(ops.config, readonly=True)
    with pytest.raises(ActionError) as refused:
        await ops.kill(plan)
    assert str(refused.value) == READONLY_REFUSAL
    time.sleep(0.2)
    assert sleeper.poll() is None and journal.runs() == []


async def test_a_process_that_ended_before_the_kill_ran_is_said_so(
    journal: Journal, sleeper: subprocess.Popen[bytes]
) -> None:
    ops = actions(journal, monitor_listing(sleeper.pid))
    plan = ops.prepare_kill("localhost", sleeper.pid)
    sleeper.kill()
    sleeper.wait()  # gone before the operator said yes; the reading still lists it
    outcome = await ops.kill(plan)
    assert not outcome.ok and outcome.exit_code == 3
    assert "was not running any more, or was another process: nothing was sent" in outcome.text
    [run] = journal.runs()
    assert run.exit_code == 3


def run_script(pid: int, started: str, grace: str = "1") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", HOST_KILL.read_text(), str(pid), started, grace],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_host_script_never_signals_a_process_started_at_another_time(
    sleeper: subprocess.Popen[bytes],
) -> None:
    # The pid as another process had it an hour before: the kernel gave it to this one since.
    done = run_script(sleeper.pid, f"{time.time() - 3600:.2f}")
    assert done.returncode == 3 and "nothing sent" in done.stdout
    time.sleep(0.2)
    assert sleeper.poll() is None
    for pid in ("1", "0"):  # init, and "every process of the group"
        assert run_script(int(pid), "-").returncode == 3


def test_the_host_script_checks_the_start_the_agent_reported(
    sleeper: subprocess.Popen[bytes],
) -> None:
    [_, line] = agent_lines(sleeper.pid)
    started = msgspec.json.decode(line)["gpus"][0]["processes"][0]["started_t"]
    done = run_script(sleeper.pid, f"{started:.2f}")
    assert done.returncode == 0, done.stdout
    assert sleeper.wait(timeout=5) == -signal.SIGTERM


def test_the_host_script_runs_on_python_38() -> None:
    """GPU hosts run it with their own python3, as old as 3.8 (as the agent)."""
    ast.parse(HOST_KILL.read_text(), feature_version=(3, 8))
    text = HOST_KILL.read_text()
    assert "import gputui" not in text and "from gputui" not in text


def test_a_remote_host_is_killed_over_ssh_with_its_own_python(tmp_path: Path) -> None:
    config: Config = config_from_text(
        'hosts = ["gpu001"]\nkill_grace_s = 30\n[defaults]\npython = "/opt/py/bin/python3"\n',
        "hosts.toml",
    )
    monitor = FleetMonitor([HostPlan(source=IdleSource("gpu001"))])
    runtime = monitor.hosts["gpu001"]
    runtime.stream_started()
    for line in agent_lines(os.getpid()):
        runtime.on_line(line)
    monitor.publish()
    with Journal.open(tmp_path / "j.sqlite3") as journal:
        ops = OperatorActions(config, journal, monitor=monitor)
        plan = ops.prepare_kill("gpu001", os.getpid())
    assert config.kill_grace_s == 30.0
    assert plan.where == "gpu001" and plan.command.argv[0] == "/opt/py/bin/python3"
    assert plan.command.argv[-1] == "30" and plan.command.timeout_s > 30
    assert "runs on gpu001 over SSH" in " ".join(plan.preview())


def test_the_confirmation_quotes_host_text_as_plain_text(sleeper: subprocess.Popen[bytes]) -> None:
    monitor = monitor_listing(sleeper.pid)
    shown = monitor.snapshot().hosts[0]
    assert shown.slow_sample is not None
    hostile = msgspec.structs.replace(
        shown.slow_sample.gpus[0].processes[0],  # type: ignore[index]
        user="[red]root[/red]",
        cmdline="python3 x\u202e :ab: " + "y" * 500,
    )
    gpus = [msgspec.structs.replace(shown.slow_sample.gpus[0], processes=[hostile])]
    sample = msgspec.structs.replace(shown.slow_sample, gpus=gpus)
    plan = plan_kill(
        local_config("sim").hosts[0],
        msgspec.structs.replace(shown, slow_sample=sample),
        sleeper.pid,
    )
    question = plan.question()
    assert "[red]root[/red]" in question and "\u202e" not in question
    assert len(question) < 220 and question.endswith("on localhost (GPU0)?")
