"""scripts/device_check_startup.py's own steps, run here with the simulated backend: the
agent's --once timeline and the import profile of `gputui report`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).parent.parent / "scripts" / "device_check_startup.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("device_check_startup", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_agents_once_run_is_timed_line_by_line() -> None:
    runs = load().agent_once("sim")
    assert len(runs) == 3
    for run in runs:
        assert run["exit_code"] == 0
        assert [ln["type"] for ln in run["lines"]] == ["hello", "sample"]
        hello, sample = run["lines"]
        assert 0 < hello["at_s"] <= sample["at_s"] <= run["exit_s"]
        assert run["cpu_s"] > 0


def test_the_import_profile_of_a_report_names_its_packages(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('hosts = ["localhost"]\n\n[defaults]\nbackend = "sim"\n')
    profile = load().import_profile(hosts)
    assert profile["exit_code"] == 0
    packages = profile["by_package_ms"]
    assert "gputui.cli" in packages and "typer" in packages
    assert "textual" not in packages  # a report never imports the TUI
    assert profile["total_ms"] >= max(packages.values()) > 0


def test_the_backends_start_hello_and_samples_are_timed() -> None:
    costs = load().backend_costs("sim")
    assert isinstance(costs, dict), costs
    assert costs["start_s"] > 0 and costs["hello_s"] > 0
    assert len(costs["slow_s"]) == len(costs["fast_s"]) == 2
    assert all(t > 0 for t in [*costs["slow_s"], *costs["fast_s"]])
