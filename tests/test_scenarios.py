"""Scenario files: the packaged ones, the schema's messages, the demo fleet mix, the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gputui.agent.scenario import FAULT_KINDS, validate_scenario
from gputui.collect.scenarios import (
    ScenarioError,
    demo_assignment,
    load_scenario,
    scenario_names,
)

CLI = [sys.executable, "-c", "from gputui.cli import main; main()"]


def test_the_packaged_scenarios_exist_and_validate() -> None:
    names = scenario_names()
    assert {"healthy", "thermal", "xid79", "ecc", "straggler", "flaky"} <= set(names)
    for name in names:
        sc = load_scenario(name)
        assert sc["name"] == name and sc["description"]


def test_xid79_fails_within_its_first_three_seconds() -> None:
    (fault,) = load_scenario("xid79")["fault"]
    assert fault["kind"] == "xid" and fault["xid"] == 79 and fault["at"] <= 3.0


def test_flaky_develops_over_minutes() -> None:
    faults = load_scenario("flaky")["fault"]
    assert len({f["kind"] for f in faults}) >= 5
    assert max(f["at"] for f in faults) >= 120


def test_a_scenario_loads_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\ngpus = 2\n[[fault]]\nkind = "hang"\nat = 1\n')
    sc = load_scenario(str(path))
    assert sc["gpus"] == 2 and sc["fault"][0]["gpus"] == []


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({"gpus": 0}, "gpus: expected an integer from 1 to 64"),
        ({"model": "B200"}, "model: expected one of"),
        ({"workload": "mining"}, "workload: expected one of"),
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"fault": {"kind": "xid"}}, "fault: expected a list"),
        ({"fault": [{"kind": "meteor", "at": 1}]}, "fault[0].kind: expected one of"),
        ({"fault": [{"kind": "xid", "gpus": [0]}]}, "fault[0].at: missing"),
        ({"fault": [{"kind": "xid", "gpus": [0], "at": 1}]}, "fault[0].xid: missing"),
        ({"fault": [{"kind": "gpu_lost", "at": 1}]}, "fault[0].gpus: missing"),
        ({"fault": [{"kind": "gpu_lost", "at": 1, "gpus": [8]}]}, "fault[0].gpus[0]: expected"),
        ({"fault": [{"kind": "gpu_lost", "at": -1, "gpus": [0]}]}, "fault[0].at: expected"),
        (
            {"fault": [{"kind": "gpu_lost", "at": "soon", "gpus": [0]}]},
            "fault[0].at: expected a number",
        ),
        (
            {"fault": [{"kind": "hang", "at": 1, "gpus": [0]}]},
            "fault[0].gpus: hang is a fault of the agent",
        ),
        ({"fault": [{"kind": "straggler", "at": 1, "gpus": [0], "factor": 2}]}, "fault[0].factor"),
        (
            {"fault": [{"kind": "ecc_dbe", "at": 1, "gpus": [0], "rate": 3}]},
            "fault[0]: unknown key 'rate'",
        ),
        (
            {"fault": [{"kind": "xid", "at": 1, "gpus": [0], "xid": True}]},
            "fault[0].xid: expected an integer",
        ),
        ({"job": {"kind": "slurm"}}, "job: expected a list"),
        ({"job": [{"kind": "pbs", "id": "1", "gpus": [0]}]}, "job[0].kind: expected one of"),
        ({"job": [{"kind": "slurm", "gpus": [0]}]}, "job[0].id: missing"),
        ({"job": [{"kind": "slurm", "id": "1"}]}, "job[0].gpus: expected a non-empty list"),
        (
            {"job": [{"kind": "slurm", "id": "12;reboot", "gpus": [0]}]},
            "job[0].id: expected a Slurm job id",
        ),
        (
            {"job": [{"kind": "k8s", "id": "42", "gpus": [0]}]},
            "job[0].id: expected a pod UID",
        ),
        (
            {"job": [{"kind": "slurm", "id": "1", "gpus": [0], "namespace": "ml"}]},
            "job[0]: unknown key 'namespace'",
        ),
        (
            {"job": [{"kind": "slurm", "id": "1", "gpus": [8]}]},
            "job[0].gpus[0]: expected an integer from 0 to 7",
        ),
        (
            {"job": [{"kind": "slurm", "id": "1", "gpus": [0], "user": "[red]root"}]},
            "job[0].user: expected a user name",
        ),
        (
            {
                "job": [
                    {"kind": "slurm", "id": "1", "gpus": [0, 1]},
                    {"kind": "slurm", "id": "2", "gpus": [1, 2]},
                ]
            },
            "job[1].gpus: GPU 1 already runs job[0]",
        ),
        ({"requeue_file": 3}, "requeue_file: expected a string"),
    ],
)
def test_schema_errors_name_the_key(doc: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError) as info:
        validate_scenario(doc)
    assert words in str(info.value)


def test_every_fault_kind_validates_with_its_defaults() -> None:
    for kind in FAULT_KINDS:
        fault: dict[str, Any] = {"kind": kind, "at": 1.0}
        if kind not in ("agent_crash", "hang"):
            fault["gpus"] = [0]
        if kind == "xid":
            fault["xid"] = 31
        assert validate_scenario({"fault": [fault]})["fault"][0]["kind"] == kind


def test_load_errors_are_one_line_with_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[[fault]]\nkind = "xid"\nat = 1\ngpus = [0]\n')
    with pytest.raises(ScenarioError, match=r"bad\.toml: fault\[0\]\.xid: missing"):
        load_scenario(str(bad))
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    with pytest.raises(ScenarioError, match=r"broken\.toml: not valid TOML"):
        load_scenario(str(broken))
    with pytest.raises(ScenarioError, match="unknown scenario 'nope'"):
        load_scenario("nope")
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(str(tmp_path / "absent.toml"))
    with pytest.raises(ScenarioError, match="fleet mix"):
        load_scenario("demo")


def test_demo_assignment_is_deterministic_and_mostly_healthy() -> None:
    fleet = demo_assignment(50, seed=7)
    assert fleet == demo_assignment(50, seed=7)
    assert fleet != demo_assignment(50, seed=8)
    assert [name for name, _ in fleet] == [f"sim-{i:03d}" for i in range(1, 51)]
    healthy = [sc for _, sc in fleet if not sc["fault"]]
    assert 30 <= len(healthy) <= 40  # 70% of 50
    faulty = [sc for _, sc in fleet if sc["fault"]]
    assert {sc["name"] for sc in faulty} >= {"xid79", "thermal", "ecc", "flaky", "straggler"}
    assert {sc["model"] for _, sc in fleet} == {"H100-SXM", "A100-SXM"}
    for _, sc in fleet:
        assert validate_scenario(sc) == sc
    # Faults start over the first minutes, not all at once.
    starts = sorted(sc["fault"][0]["at"] for sc in faulty)
    assert starts[-1] - starts[0] > 30
    assert starts[-1] <= 180 + 260


def test_demo_assignment_of_a_small_fleet() -> None:
    fleet = demo_assignment(3, seed=1)
    assert len(fleet) == 3 and fleet[0][0] == "sim-001"
    assert demo_assignment(0, seed=1) == []


def test_cli_bad_scenario_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('gpus = "eight"\n')
    done = subprocess.run(
        [*CLI, "agent", "--scenario", str(bad)],
        capture_output=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert done.stdout == b""
    err = done.stderr.decode()
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "bad.toml: gpus: expected an integer" in err


def test_cli_scenario_needs_the_sim_backend() -> None:
    done = subprocess.run(
        [*CLI, "agent", "--backend", "nvml", "--scenario", "xid79"],
        capture_output=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2 and b"--scenario needs --backend sim" in done.stderr
