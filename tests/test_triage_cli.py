"""`gputui triage` end to end: simulated hosts behind SSH, every scenario, every format."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from gputui.cli.app import app
from gputui.cli.exits import PluginCommand
from gputui.cli.triage_cmd import parse_duration, triage
from gputui.collect.demo import DemoFleet
from tests.openssh import free_port


def _cli() -> typer.Typer:
    """An app with `triage` alone, whatever else is registered on the real one."""
    cli = typer.Typer()
    cli.callback()(lambda: None)
    cli.command("triage", cls=PluginCommand)(triage)
    return cli


CLI = _cli()


def run(*args: str) -> Result:
    return CliRunner().invoke(CLI, ["triage", *args])


def run_json(*args: str) -> tuple[int, Any]:
    result = run(*args, "--format", "json")
    assert result.exit_code in (0, 1, 2, 3), result.output
    return result.exit_code, json.loads(result.stdout)


# scenario -> what triage must conclude about its one host
EXPECTED: dict[str, dict[str, Any]] = {
    "xid79": {
        "level": "failed",
        "exit": 2,
        "step": "drain and reboot",
        "nvidia": "reboot node",
        "worst": ("xid_79", 3),
        "actions": ["drain", "requeue-jobs"],
        "xids": [(79, 3)],
    },
    "ecc": {
        "level": "failed",
        "exit": 2,
        "step": "RMA",
        "nvidia": "RMA",
        "worst": ("xid_64", 2),
        "actions": ["drain", "requeue-jobs"],
        "xids": [(92, 2), (48, 2), (64, 2)],
    },
    "thermal": {
        "level": "critical",
        "exit": 2,
        "step": "drain and inspect",
        "nvidia": "drain",
        "worst": ("hw_thermal", 5),
        "actions": ["drain"],
        "xids": [],
    },
    "straggler": {
        "level": "warn",
        "exit": 1,
        "step": "watch",
        "nvidia": "none",
        "worst": ("straggler", 6),
        "actions": None,
        "xids": [],
    },
    "healthy": {
        "level": "ok",
        "exit": 0,
        "step": "none",
        "nvidia": "none",
        "worst": None,
        "actions": None,
        "xids": [],
    },
}


def _actions(command: str | None) -> list[str] | None:
    if command is None:
        return None
    words = command.split()
    return [words[i + 1] for i, w in enumerate(words) if w == "--action"]


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_demo_host_verdict_and_action_in_json(scenario: str) -> None:
    want = EXPECTED[scenario]
    code, doc = run_json("sim-001", "--demo", "1", "--scenario", scenario)
    assert code == doc["exit_code"] == want["exit"]
    (host,) = doc["hosts"]
    assert (host["host"], host["level"], host["step"]) == ("sim-001", want["level"], want["step"])
    assert host["nvidia_action"] == want["nvidia"]
    bad = [(f["code"], f["gpu"]) for f in host["findings"] if f["level"] != "ok"]
    assert (bad[0] if bad else None) == want["worst"]
    assert _actions(host["command"]) == want["actions"]
    assert [(x["xid"], x["gpu"]) for x in host["xids"]] == want["xids"]
    facts = host["facts"]
    assert facts["backend"] == "sim" and facts["gpus_nvml"] == facts["gpus_pci"] == 8
    assert facts["kernel_log"]["readable"] and facts["samples"] == 5
    assert len(host["gpus"]) == 8 and all(
        "temp_c" in g["readings"] for g in host["gpus"] if g["status"] == "ok"
    )
    if want["worst"] is not None:
        code_, gpu = want["worst"]
        assert host["gpus"][gpu]["level"] == want["level"]
        assert code_ in host["gpus"][gpu]["findings"]


@pytest.mark.parametrize("fmt", ["table", "markdown"])
@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_demo_host_in_text_formats(scenario: str, fmt: str) -> None:
    want = EXPECTED[scenario]
    result = run("sim-001", "--demo", "1", "--scenario", scenario, "--format", fmt)
    assert result.exit_code == want["exit"], result.output
    out = result.stdout
    assert (
        f"sim-001: {want['level'].upper() if fmt == 'table' else want['level']} -> {want['step']}"
        in out
    )
    if want["actions"]:
        assert "gputui node fail sim-001 --reason" in out
        assert " ".join(f"--action {a}" for a in want["actions"]) in out
    else:
        assert "gputui node fail" not in out
    for xid, gpu in want["xids"]:
        assert f"GPU{gpu} " in out and f"XID {xid} " in out
    if fmt == "markdown":
        assert out.startswith("# gputui triage") and "| host | verdict | step |" in out


@pytest.fixture(scope="module")
def fleet() -> Iterator[DemoFleet]:
    f = DemoFleet(2)
    f.start()
    yield f
    f.stop()


def test_configured_hosts_groups_and_site_action_names(fleet: DemoFleet, tmp_path: Path) -> None:
    """hosts.toml naming simulated hosts behind the demo's SSH servers: groups as targets, an
    unreachable host, and Kubernetes action names in the commands."""
    assert fleet.directory is not None
    dead = tmp_path / "dead_config"
    dead.write_text(f"Host gpu-dead\n  HostName 127.0.0.1\n  Port {free_port()}\n")
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(
        f"""
[ssh]
config_files = ["{fleet.directory / "ssh_config"}", "{dead}"]
known_hosts = "{fleet.directory / "known_hosts"}"
connect_timeout_s = 5

[groups.lost]
hosts = ["sim-001"]
backend = "sim"
scenario = "xid79"
labels = {{ gpus = "8" }}

[groups.fine]
hosts = ["sim-002", "gpu-dead"]
backend = "sim"
scenario = "healthy"

[actions]
presets = ["kubernetes"]
"""
    )
    code, doc = run_json("lost", "@fine", "--hosts", str(hosts), "--since", "1d")
    assert code == 2 and doc["since_s"] == 86400
    assert [(h["host"], h["level"]) for h in doc["hosts"]] == [
        ("sim-001", "failed"),
        ("gpu-dead", "unknown"),
        ("sim-002", "ok"),
    ]
    lost, dead_host, _ = doc["hosts"]
    assert _actions(lost["command"]) == ["cordon", "drain"]
    assert lost["command"].endswith(f"--hosts {hosts}")
    assert [x["xid"] for x in lost["xids"]] == [79]  # 96 s ago: inside the last day
    assert not dead_host["reachable"] and dead_host["error_code"] == "refused"
    assert dead_host["status"] == "UNKNOWN" and dead_host["command"] is None


def test_since_leaves_older_xids_out() -> None:
    _, doc = run_json("sim-001", "--demo", "1", "--scenario", "xid79", "--since", "30s")
    (host,) = doc["hosts"]
    assert host["xids"] == [] and host["level"] == "failed"  # the GPU is still lost


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sim-001", "--demo", "1", "--since", "soon"], "--since 'soon'"),
        (["sim-001", "--scenario", "xid79"], "--scenario needs --demo"),
        (["sim-009", "--demo", "1"], "no demo host sim-009"),
        (["sim-001", "--demo", "1", "--scenario", "nope"], "unknown scenario 'nope'"),
    ],
)
def test_bad_arguments_exit_3_with_a_reason(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 3 and message in result.output  # UNKNOWN, not CRITICAL


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90", "30m", "2h", "1d", "1h30m", "1.5h")] == [
        90,
        1800,
        7200,
        86400,
        5400,
        5400,
    ]
    for bad in ("", "0", "-5", "5x", "h", "1h 30m"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_registered_and_headless() -> None:
    from gputui.cli import commands  # noqa: F401

    assert any(c.callback is triage for c in app.registered_commands)
    code = "import sys, gputui.cli.triage_cmd; sys.exit('textual' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
