"""Bare `gputui` on a fresh account, in a real terminal (tmux), read back as a person would.

No hosts file anywhere. With the simulated local backend ($GPUTUI_LOCAL_BACKEND=sim: an 8-GPU
H100 host, no GPU needed), `gputui` must open on this machine's GPUs, one panel each with its
meters, and the processes below, within 2 s of being typed, as nvitop does; `q` ends it and
its agent. With no GPU either, it prints the next steps and exits 3.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need_program
from tests.test_tui_tmux import Tmux, alive, descendants

pytestmark = pytest.mark.system

#: From the command typed to this machine's GPUs on screen, on a machine with a core to spare.
OPEN_BUDGET_S = 2.0
#: The CPU that opening costs gputui's own process (imports, the app, the first screens): what
#: a busy machine cannot change, unlike the wall time.
OPEN_CPU_BUDGET_S = 1.5
#: Launches tried: the best counts, so another process's burst of CPU on a shared machine does
#: not decide it (a benchmark's minimum of repeats); any one under the budget proves it.
ATTEMPTS = 3
POLL_S = 0.05  # each look is a tmux process: looking more often slows what is measured


def _slowdown() -> float:
    """How much longer work takes here now than with a core of its own: the runnable processes
    of the last minute, and gputui's, per core; 1 when a core is free (CI runs tests beside
    other jobs, and a shared 2-core machine runs several suites at once)."""
    return max(1.0, (os.getloadavg()[0] + 1) / (os.cpu_count() or 1))


def _cpu_s(pid: int) -> float:
    """User and system CPU seconds of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _gputui_pid(tmux: Tmux) -> int:
    pane_pid = int(tmux("display-message", "-p", "-t", tmux.session, "#{pane_pid}"))
    for pid in descendants(pane_pid):
        with contextlib.suppress(OSError):
            if b"from gputui.cli import main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
    raise AssertionError("no gputui process in the pane")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(need_program("tmux"), tmp_path / "tmux.sock")
    yield t
    subprocess.run([t.binary, "-S", str(t.socket), "kill-server"], capture_output=True, check=False)


def _bare_gputui(home: Path, pythonpath: Path | None = None, **env: str) -> str:
    """The shell line that runs bare `gputui` as a user on a fresh account `home` would."""
    settings = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".state"),
        **env,
    }
    if pythonpath is not None:
        settings["PYTHONPATH"] = str(pythonpath)
    assigned = " ".join(f"{k}={shlex.quote(v)}" for k, v in settings.items())
    unset = "-u GPUTUI_HOSTS -u GPUTUI_JOURNAL -u TEXTUAL_DRIVER"
    python = shlex.quote(sys.executable)
    return (
        f"cd {shlex.quote(os.getcwd())} && env {unset} {assigned} "
        f"{python} -c 'from gputui.cli import main; main()'; echo GPUTUI_EXIT=$?; sleep 60"
    )


def _per_gpu_view(screen: str) -> bool:
    """This machine's GPUs as the per-GPU view draws them: a panel per GPU with its name and
    bar meters, and the process table below."""
    return (
        re.search(r"GPU0 NVIDIA H100", screen) is not None
        and re.search(r"util +\[[^\]]*\d+%\]", screen) is not None
        and re.search(r"^ +GPU +PID +USER", screen, re.M) is not None
    )


def _open(tmux: Tmux, home: Path, cols: int, rows: int) -> tuple[float, float, str]:
    """Start bare gputui; (seconds from launch to the GPUs on screen, the CPU seconds gputui
    spent until then, that screen)."""
    started = time.monotonic()
    tmux(
        "new-session", "-d", "-s", tmux.session, "-x", str(cols), "-y", str(rows),
        _bare_gputui(home, GPUTUI_LOCAL_BACKEND="sim"),
    )  # fmt: skip
    while True:
        screen = tmux.screen()
        if _per_gpu_view(screen):
            took = time.monotonic() - started
            return took, _cpu_s(_gputui_pid(tmux)), screen
        if "GPUTUI_EXIT=" in screen or time.monotonic() - started > 30:
            raise AssertionError(f"the per-GPU view did not open:\n{screen}")
        time.sleep(POLL_S)


def _quit_leaving_nothing(tmux: Tmux) -> None:
    pane_pid = int(tmux("display-message", "-p", "-t", tmux.session, "#{pane_pid}"))
    processes = descendants(pane_pid)
    assert any(
        "gputui.agent" in (Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace"))
        for p in processes
        if alive(p)
    ), "expected the local agent to run"
    tmux.keys("q")
    tmux.wait_for(lambda s: "GPUTUI_EXIT=0" in s, 20, "a clean exit")
    deadline = time.monotonic() + 5
    while {p for p in processes if alive(p)} - {pane_pid} - descendants(pane_pid):
        assert time.monotonic() < deadline, "the agent outlived the monitor"
        time.sleep(0.1)


@pytest.mark.parametrize(("cols", "rows"), [(80, 24), (120, 40)])
def test_bare_gputui_opens_on_this_machines_gpus_at_once(
    tmux: Tmux, tmp_path: Path, cols: int, rows: int
) -> None:
    budget = OPEN_BUDGET_S * _slowdown()
    times: list[tuple[float, float]] = []  # (wall, gputui's CPU) per launch
    for attempt in range(ATTEMPTS):
        home = tmp_path / f"home{attempt}"
        took, cpu, screen = _open(tmux, home, cols, rows)
        times.append((round(took, 2), round(cpu, 2)))
        if took <= budget or attempt == ATTEMPTS - 1:
            break
        _quit_leaving_nothing(tmux)
        tmux("kill-session", "-t", tmux.session)
    best = min(times)
    assert best[0] <= budget, f"launch to GPUs on screen (wall s, CPU s): {times}, {budget=:.1f}"
    assert best[1] <= OPEN_CPU_BUDGET_S, f"gputui's CPU to open: {times}"

    # What a person reads: the host and how it is read, each GPU's meters, the processes.
    assert re.search(r"^ localhost +ok +streaming", screen, re.M), screen
    assert "backend sim" in screen and "8 GPUs" in screen
    assert re.search(r"temp +\[[^\]]*\d+/\d+ C\]", screen), screen
    assert re.search(r"power +\[[^\]]*\d+/\d+ W\]", screen), screen
    assert len(re.findall(r"^ +\d +\d+ .*python3", screen, re.M)) == 8, screen  # one per GPU
    assert "q Quit" in screen
    # Nothing was written to the account but the journal: no hosts file appeared.
    assert not (home / ".config").exists()
    _quit_leaving_nothing(tmux)


def test_bare_gputui_without_a_gpu_says_how_to_go_on(tmux: Tmux, tmp_path: Path) -> None:
    # A machine without the driver: pynvml cannot load libnvidia-ml.
    fake = tmp_path / "fake_nvml"
    fake.mkdir()
    (fake / "pynvml.py").write_text(
        textwrap.dedent(
            """
            class NVMLError(Exception):
                pass

            def nvmlInit():
                raise NVMLError("NVML Shared Library Not Found")
            """
        )
    )
    home = tmp_path / "home"
    tmux(
        "new-session", "-d", "-s", tmux.session, "-x", "100", "-y", "20",
        _bare_gputui(home, pythonpath=fake),
    )  # fmt: skip
    screen = tmux.wait_for(lambda s: "GPUTUI_EXIT=" in s, 20, "the exit")
    assert "GPUTUI_EXIT=3" in screen
    assert "gputui: nothing to watch here." in screen
    assert "no GPU on this machine: NVML does not load (NVML Shared Library Not Found)" in screen
    assert re.search(r"^  gputui demo +a simulated fleet", screen, re.M)
    assert re.search(r"^  gputui init +write a starter hosts file to ", screen, re.M)
