"""A command line imports only the command it runs: the registry, and what `gputui report` loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import gputui.cli.commands
from gputui.cli.app import app
from gputui.cli.registry import COMMAND_MODULES, DEFAULT_MODULE, modules_for

assert gputui.cli.commands  # registers every command on `app`


def _registered() -> dict[str, str]:
    """Every command and command group on the app -> the module that registered it."""
    out = {}
    for command in app.registered_commands:
        assert command.callback is not None
        out[command.name or command.callback.__name__] = command.callback.__module__
    for group in app.registered_groups:
        assert group.name is not None
        sub = group.typer_instance
        callbacks = [c.callback for c in sub.registered_commands]
        modules = {c.__module__ for c in callbacks if c is not None}
        assert len(modules) == 1, (group.name, modules)
        out[group.name] = modules.pop()
    return out


def test_the_registry_names_the_module_of_every_command() -> None:
    assert _registered() == COMMAND_MODULES
    callback = app.registered_callback
    assert callback is not None and callback.callback is not None
    assert callback.callback.__module__ == DEFAULT_MODULE


@pytest.mark.parametrize(
    ("args", "modules"),
    [
        ([], [DEFAULT_MODULE]),
        (["--readonly"], [DEFAULT_MODULE]),
        (["--local-backend", "sim"], [DEFAULT_MODULE]),
        # The word after --local-backend is its value, whatever it reads like.
        (["--local-backend", "report"], [DEFAULT_MODULE]),
        (["report", "--format", "json"], [DEFAULT_MODULE, "gputui.cli.report_cmd"]),
        (["report", "--help"], [DEFAULT_MODULE, "gputui.cli.report_cmd"]),
        (["node", "mark", "gpu1"], [DEFAULT_MODULE, "gputui.cli.node_cmd"]),
        (["demo", "--hosts", "4"], [DEFAULT_MODULE]),
        (["--readonly", "monitor"], [DEFAULT_MODULE]),
        # Every command: the list in the help, and the nearest name for a misspelt one.
        (["--help"], None),
        (["repor"], None),
    ],
)
def test_a_command_line_needs_its_own_module(args: list[str], modules: list[str] | None) -> None:
    assert modules_for(args) == modules


def _modules_loaded_by(
    args: list[str], tmp_path: Path
) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """Run `gputui ARGS` in a fresh interpreter; the modules it had loaded when it ended."""
    out = tmp_path / "modules.json"
    code = (
        "import atexit, json, sys\n"
        f"atexit.register(lambda: open({str(out)!r}, 'w').write(json.dumps(sorted(sys.modules))))\n"
        f"sys.argv = ['gputui', *{args!r}]\n"
        "from gputui.cli import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return set(json.loads(out.read_text())), done


def test_report_on_this_machine_loads_no_tui_ssh_numpy_nor_other_command(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('hosts = ["localhost"]\n\n[defaults]\nbackend = "sim"\n')
    loaded, done = _modules_loaded_by(["report", "--hosts", str(hosts)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "localhost" in done.stdout and "GPUTUI OK" in done.stdout
    assert "gputui.cli.report_cmd" in loaded  # the modules were read after the report ran
    others = {
        m for m in COMMAND_MODULES.values() if m not in (DEFAULT_MODULE, "gputui.cli.report_cmd")
    }
    assert not loaded & others
    for heavy in (
        "textual",
        "scipy",
        "gputui.tui",
        "gputui.ops.journal",
        "gputui.core.risk_report",
        # This machine alone needs no SSH, and one snapshot no history rings.
        "asyncssh",
        "gputui.collect.ssh",
        "gputui.collect.demo",
        "numpy",
        # The table needs no Prometheus client: only --format prometheus loads it.
        "prometheus_client",
    ):
        assert heavy not in loaded, heavy


def test_the_help_still_lists_every_command(tmp_path: Path) -> None:
    loaded, done = _modules_loaded_by(["--help"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert set(COMMAND_MODULES.values()) <= loaded
    for name in COMMAND_MODULES:
        assert f" {name} " in done.stdout or f" {name}\n" in done.stdout, name


def test_watching_this_machine_needs_no_ssh_client() -> None:
    """What bare `gputui` imports to watch localhost (its command, the hosts it reads, the
    journal and the operator's actions, the app) loads no asyncssh: only an SSH host, the demo
    or a command run on another host does."""
    modules = [
        "gputui.cli.tui_cmd",
        "gputui.cli.local_mode",
        "gputui.collect.fleet",
        "gputui.collect.local_source",
        "gputui.collect.oneshot",
        "gputui.ops.catalog",
        "gputui.ops.journal",
        "gputui.ops.actions",
        "gputui.tui.app",
        "gputui.tui.ops_operator",
    ]
    code = f"import sys\nfor m in {modules!r}:\n    __import__(m)\nprint('asyncssh' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "False"
