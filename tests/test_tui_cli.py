"""`gputui monitor`, `gputui demo` and bare `gputui`: registration, arguments, import hygiene."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from gputui.cli import commands  # noqa: F401  (registers every command)
from gputui.cli.app import app


def test_commands_do_not_import_textual() -> None:
    """`gputui report` and friends load every command module: none may pull textual in."""
    code = "import sys; from gputui.cli import commands; assert 'textual' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_monitor_and_demo_are_listed() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "monitor" in result.output and "demo" in result.output


def test_bare_gputui_opens_the_monitor(monkeypatch: pytest.MonkeyPatch) -> None:
    from gputui.cli import tui_cmd

    opened: list[bool] = []
    monkeypatch.setattr(tui_cmd, "monitor", lambda **_: opened.append(True))
    result = CliRunner().invoke(app, [])
    assert result.exit_code == 0, result.output
    assert opened == [True]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "--hosts", "0"], "--hosts takes a number of hosts from 1 to 5000"),
        (["demo", "--interval", "0"], "--interval takes 0.1 to 60 seconds"),
    ],
)
def test_demo_refuses_bad_arguments_in_one_sentence(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.parametrize("interval", ["0", "7200"])
def test_agent_takes_the_intervals_a_hosts_file_takes(interval: str) -> None:
    result = CliRunner().invoke(app, ["agent", "--backend", "sim", "--interval", interval])
    assert result.exit_code == 2
    assert f"--interval: expected a number of seconds > 0 and <= 3600, got {interval}" in (
        result.output
    )


def test_monitor_without_a_hosts_file_says_where_it_looked(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("GPUTUI_HOSTS", raising=False)
    result = CliRunner().invoke(app, ["monitor", "--hosts", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2
    assert "missing.toml" in result.output
