"""`gputui report` and `gputui triage` are read by monitoring systems, where exit 2 is CRITICAL:
every mistake of the user's (arguments or hosts.toml) exits 3, UNKNOWN, with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gputui.cli.app import app
from gputui.cli.exits import EXIT_UNKNOWN, EXIT_USAGE

MISTAKES = [
    (["--hosts", "/nonexistent/hosts.toml"], "/nonexistent/hosts.toml"),
    (["--hosts", "{malformed}"], "not valid TOML"),
    (["--bogus-option"], "No such option: --bogus-option"),
    (["--format", "yaml"], "'--format'"),
    (["--hosts", "{good}", "--demo", "2"], "exclude each other"),
]
OWN_MISTAKES = {
    "report": [(["--wait", "-1"], "--wait"), (["--wait", "soon"], "'--wait'")],
    "triage": [(["--timeout", "-1"], "--timeout"), (["--since", "soon"], "--since")],
}
TARGETS = {"report": [], "triage": ["gpu1"]}


def gputui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gputui.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def cases(command: str, tmp_path: Path) -> list[tuple[list[str], str]]:
    malformed = tmp_path / "malformed.toml"
    malformed.write_text("hosts = [\n")
    good = tmp_path / "hosts.toml"
    good.write_text('hosts = ["gpu1"]\n')
    out = [
        (TARGETS[command] + [a.format(malformed=malformed, good=good) for a in args], expect)
        for args, expect in MISTAKES + OWN_MISTAKES[command]
    ]
    if command == "triage":
        out.append(([], "Missing argument 'TARGET"))
    return out


@pytest.mark.parametrize("command", sorted(TARGETS))
def test_a_mistake_is_unknown_in_one_line(command: str, tmp_path: Path) -> None:
    from gputui.cli import commands  # noqa: F401  (registers every command on the app)

    for args, expect in cases(command, tmp_path):
        result = CliRunner().invoke(app, [command, *args])
        assert result.exit_code == EXIT_UNKNOWN, (args, result.exit_code, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), args
        assert result.stdout == "", (args, result.stdout)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gputui: "), (args, result.stderr)
        assert expect in lines[0], (args, lines[0])


@pytest.mark.parametrize(
    "args", [["report", "--bogus-option"], ["triage", "gpu1", "--hosts", "/nonexistent"]]
)
def test_the_installed_command_exits_3(args: list[str]) -> None:
    done = gputui(*args)
    assert done.returncode == EXIT_UNKNOWN
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_other_commands_keep_exit_2() -> None:
    done = gputui("risk", "--bogus-option")
    assert done.returncode == EXIT_USAGE
    done = gputui("risk", "--gpus", "0")
    assert done.returncode == EXIT_USAGE and "--gpus" in done.stderr


def test_help_still_exits_0() -> None:
    assert gputui("report", "--help").returncode == 0
    assert gputui("triage", "--help").returncode == 0
