"""Bare `gputui` with no hosts file (this machine, or the next steps), the terminal it needs,
`--version` and the options of bare `gputui`.

The live screen itself is read in a real terminal by tests/test_tmux_bare.py.
"""

from __future__ import annotations

import importlib.metadata
import os
import pty
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from gputui import __version__
from gputui.cli import (
    commands,  # noqa: F401  (registers every command)
    local_mode,
    tui_cmd,
)
from gputui.cli.app import app
from gputui.cli.local_mode import nvml_problem, parse_local_backend
from gputui.cli.terminal import need_terminal
from gputui.config.local import local_config


@pytest.fixture
def no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh account: no hosts file anywhere, nothing chosen by the environment."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".state"))
    for name in ("GPUTUI_HOSTS", "GPUTUI_LOCAL_BACKEND", "GPUTUI_JOURNAL", "TEXTUAL_DRIVER"):
        monkeypatch.delenv(name, raising=False)
    return home


def gputui(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gputui: ")
    return lines[0]


# --------------------------------------------------------------------------------------------
# No hosts file, no GPU: the next steps, exit 3
# --------------------------------------------------------------------------------------------


def _fake_nvml(tmp_path: Path, init_error: str | None, count: int = 0) -> Path:
    """A directory holding a `pynvml` that behaves as the real one does on such a machine."""
    folder = tmp_path / "fake_nvml"
    folder.mkdir(exist_ok=True)
    (folder / "pynvml.py").write_text(
        textwrap.dedent(
            f"""
            class NVMLError(Exception):
                pass

            INIT_ERROR = {init_error!r}

            def nvmlInit():
                if INIT_ERROR is not None:
                    raise NVMLError(INIT_ERROR)
                opened.append(True)

            def nvmlDeviceGetCount():
                return {count}

            opened = []  # nvmlInit that succeeded and no nvmlShutdown followed

            def nvmlShutdown():
                opened.clear()
            """
        )
    )
    return folder


def _bare(
    home: Path, *args: str, pythonpath: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Bare `gputui` as a user runs it, in its own process, with `home` as the account."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GPUTUI_", "XDG_")) and k != "TEXTUAL_DRIVER"
    }
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", "from gputui.cli import main; main()", *args],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_no_hosts_file_and_no_gpu_prints_the_next_steps_and_exits_3(
    no_config: Path, tmp_path: Path
) -> None:
    # A machine whose driver is missing: pynvml cannot load libnvidia-ml.
    fake = _fake_nvml(tmp_path, init_error="NVML Shared Library Not Found")
    done = _bare(no_config, pythonpath=fake)
    assert done.returncode == 3, done.stderr
    assert done.stdout == ""
    hosts = no_config / ".config" / "gputui" / "hosts.toml"
    assert done.stderr.splitlines() == [
        "gputui: nothing to watch here.",
        f"  no hosts file: {hosts} does not exist (--hosts PATH or $GPUTUI_HOSTS choose another)",
        "  no GPU on this machine: NVML does not load (NVML Shared Library Not Found)",
        "Next:",
        "  gputui demo    a simulated fleet of 32 GPU hosts, nothing to set up",
        f"  gputui init    write a starter hosts file to {hosts}, then list your hosts in it",
    ]
    assert not (no_config / ".config").exists()  # looking writes nothing


def test_this_machine_with_the_real_nvml(no_config: Path) -> None:
    """The real pynvml of this machine: without a GPU, the next steps; with one, the monitor
    is chosen (and here, without a terminal, refused as such)."""
    done = _bare(no_config)
    assert done.returncode == 3, done.stderr
    if nvml_problem() is not None:
        assert done.stderr.startswith("gputui: nothing to watch here.\n"), done.stderr
        assert "  no GPU on this machine: " in done.stderr
    else:
        assert "nothing to watch" not in done.stderr
        assert "the live monitor draws a live screen and needs a terminal" in done.stderr


@pytest.mark.parametrize(
    ("init_error", "count", "problem"),
    [
        ("NVML Shared Library Not Found", 0, "NVML does not load (NVML Shared Library Not Found)"),
        ("Driver Not Loaded", 0, "NVML does not load (Driver Not Loaded)"),
        (None, 0, "NVML loads, and sees no GPU"),
        (None, 2, None),
    ],
)
def test_nvml_problem_reads_what_nvml_answers(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    init_error: str | None,
    count: int,
    problem: str | None,
) -> None:
    folder = _fake_nvml(tmp_path, init_error, count)
    module = types.ModuleType("pynvml")
    exec((folder / "pynvml.py").read_text(), module.__dict__)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    assert nvml_problem() == problem
    # With a GPU, NVML stays open so the driver keeps the GPUs set up for the agent; without
    # one, nothing is left open.
    assert module.opened == ([True] if problem is None else [])


def test_without_the_nvml_bindings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    problem = nvml_problem()
    assert problem is not None and problem.startswith("the NVML bindings (nvidia-ml-py) are not")


# --------------------------------------------------------------------------------------------
# Which backend reads this machine
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("auto", ("auto", None)),
        ("nvml", ("nvml", None)),
        ("smi", ("smi", None)),
        ("sim", ("sim", None)),
        ("sim:thermal", ("sim", "thermal")),
        (" sim ", ("sim", None)),
    ],
)
def test_local_backend_values(text: str, parsed: tuple[str, str | None]) -> None:
    assert parse_local_backend(text) == parsed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gpu", "expected auto, nvml, smi, sim or sim:SCENARIO, got 'gpu'"),
        ("nvml:x", "got 'nvml:x' (only sim takes a scenario)"),
        ("", "got ''"),
    ],
)
def test_local_backend_mistakes(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_local_backend(text)
    assert message in str(info.value)


def test_the_local_backend_is_chosen_without_looking_for_a_gpu(
    no_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # sim needs no GPU: NVML is not even asked. Without a terminal the monitor then refuses,
    # naming what prints this machine's readings instead.
    asked: list[bool] = []
    monkeypatch.setattr(local_mode, "nvml_problem", lambda: asked.append(True))
    for args, env in (
        (["--local-backend", "sim"], {}),
        (["monitor", "--local-backend", "sim:thermal"], {}),
        ([], {"GPUTUI_LOCAL_BACKEND": "sim"}),
    ):
        result = gputui(*args, env=env)
        assert result.exit_code == 3, result.output
        line = one_error_line(result)
        assert "needs a terminal" in line and "`gputui agent --once`" in line
    assert asked == []


def test_local_backend_mistakes_are_one_line(no_config: Path) -> None:
    result = gputui("--local-backend", "gpu")
    assert result.exit_code == 2
    assert one_error_line(result) == (
        "gputui: --local-backend: expected auto, nvml, smi, sim or sim:SCENARIO, got 'gpu'"
    )
    result = gputui(env={"GPUTUI_LOCAL_BACKEND": "sim:no-such"})
    assert result.exit_code == 2
    assert "no-such" in one_error_line(result)


def test_local_backend_with_a_hosts_file_is_refused(no_config: Path, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('hosts = ["localhost"]\n')
    result = gputui("monitor", "--hosts", str(hosts), "--local-backend", "sim")
    assert result.exit_code == 2
    assert "--local-backend chooses how this machine is read when there is no hosts file" in (
        one_error_line(result)
    )


def test_a_named_hosts_file_that_is_missing_stays_an_error(no_config: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    for result in (
        gputui("monitor", "--hosts", str(missing)),
        gputui(env={"GPUTUI_HOSTS": str(missing)}),
    ):
        assert result.exit_code == 2
        assert f"no hosts file: {missing}" in one_error_line(result)


def test_the_local_config_watches_localhost_through_a_local_agent() -> None:
    (spec,) = local_config().hosts
    assert (spec.name, spec.transport, spec.backend, spec.scenario) == (
        "localhost", "local", "auto", None,
    )  # fmt: skip
    (sim,) = local_config("sim").hosts
    assert (sim.backend, sim.scenario) == ("sim", "healthy")
    assert local_config("sim", "xid79").hosts[0].scenario == "xid79"


# --------------------------------------------------------------------------------------------
# A terminal to draw on
# --------------------------------------------------------------------------------------------


def test_demo_without_a_terminal_is_one_line_and_exit_3(no_config: Path) -> None:
    result = gputui("demo", "--hosts", "4")
    assert result.exit_code == 3
    assert one_error_line(result) == (
        "gputui: gputui demo draws a live screen and needs a terminal, and its output and input "
        "are not one; for a file or a script, `gputui report --demo 4` prints one snapshot"
    )


def test_demo_redirected_to_a_file_ends_at_once_and_writes_nothing(tmp_path: Path) -> None:
    """`gputui demo > file` from a terminal: stdin is one, stdout is not."""
    out = tmp_path / "out.txt"
    master, tty = pty.openpty()  # `tty`: the terminal the command is typed on
    started = time.monotonic()
    try:
        with out.open("w") as stdout:
            done = subprocess.run(
                [sys.executable, "-c", "from gputui.cli import main; main()", "demo"],
                stdin=tty, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=60,
                env={k: v for k, v in os.environ.items() if k != "TEXTUAL_DRIVER"},
            )  # fmt: skip
    finally:
        os.close(master)
        os.close(tty)
    assert done.returncode == 3
    assert time.monotonic() - started < 30
    assert out.read_text() == ""  # not one escape code
    assert done.stderr.count("\n") == 1 and "its output is not one" in done.stderr


def test_monitor_without_a_terminal_names_report(no_config: Path, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('hosts = ["localhost"]\n')
    result = gputui("monitor", "--hosts", str(hosts))
    assert result.exit_code == 3
    assert one_error_line(result).endswith("`gputui report` prints one snapshot")


def test_another_textual_driver_needs_no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    # textual-serve runs the app with its output on a pipe to the browser.
    monkeypatch.setenv("TEXTUAL_DRIVER", "textual.drivers.web_driver:WebDriver")
    need_terminal("gputui demo")
    monkeypatch.delenv("TEXTUAL_DRIVER")
    with pytest.raises(typer.Exit) as info:  # under pytest, neither stream is a terminal
        need_terminal("gputui demo")
    assert info.value.exit_code == 3


# --------------------------------------------------------------------------------------------
# The options of bare gputui
# --------------------------------------------------------------------------------------------


def test_version_is_the_installed_one() -> None:
    result = gputui("--version")
    assert result.exit_code == 0
    assert result.stdout == f"gputui {__version__}\n"
    assert __version__ == importlib.metadata.version("gputui")


def test_bare_gputui_passes_its_options_to_the_monitor(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[dict[str, object]] = []
    monkeypatch.setattr(tui_cmd, "monitor", lambda **kw: opened.append(kw))
    assert gputui().exit_code == 0
    assert gputui("--readonly", "--local-backend", "sim").exit_code == 0
    assert opened == [
        {"readonly": False, "local_backend": None},
        {"readonly": True, "local_backend": "sim"},
    ]


def test_options_of_bare_gputui_before_a_command_are_refused(no_config: Path) -> None:
    result = gputui("--readonly", "journal")
    assert result.exit_code == 2
    assert one_error_line(result) == (
        "gputui: --readonly before a command applies only to bare `gputui`; put it after "
        "`journal` where it takes it (`gputui journal --help`)"
    )


def test_the_event_log_says_what_is_watched_and_why() -> None:
    # Its start is what an 80-column event log shows; the rest is in the entry's details.
    text = tui_cmd._local_notice(local_config("sim"))
    assert text.startswith("no hosts file: this machine only (localhost, simulated, scenario")
    assert "`gputui init` writes a hosts file" in text
    assert "(localhost, auto)" in tui_cmd._local_notice(local_config())
