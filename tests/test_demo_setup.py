"""`gputui demo`'s hosts.toml stand-in: its spares, their scenario, its actions."""

from __future__ import annotations

from pathlib import Path

import pytest

from gputui.cli.demo_setup import demo_actions, demo_config, demo_spares
from gputui.collect.demo import DemoFleet, DemoFleetError
from gputui.collect.scenarios import demo_assignment, load_scenario, spare_scenario
from gputui.ops.actions import OperatorActions
from gputui.ops.catalog import load_actions
from gputui.ops.journal import Journal
from gputui.ops.nodes import choose_spare

NAMES = [f"sim-{i:03d}" for i in range(1, 33)]


@pytest.mark.parametrize(
    ("n_hosts", "spares"),
    [(1, ()), (2, ("sim-002",)), (7, ("sim-007",)), (8, ("sim-007", "sim-008"))],
)
def test_the_last_one_or_two_hosts_are_the_spares(n_hosts: int, spares: tuple[str, ...]) -> None:
    assert demo_spares(NAMES[:n_hosts]) == spares


def test_the_demo_config_lists_the_spares_of_its_group_last(tmp_path: Path) -> None:
    config = demo_config(NAMES, tmp_path / "scheduler.log")
    group = config.groups["demo"]
    assert group.hosts == tuple(NAMES[:30]) and group.spares == ("sim-031", "sim-032")
    assert [h.name for h in config.hosts] == NAMES  # file order: the spares last
    assert [h.name for h in config.hosts if h.spare] == ["sim-031", "sim-032"]
    assert choose_spare(config, "sim-005", {}) == "sim-031"
    assert choose_spare(config, "sim-031", {}) == "sim-032"  # never a spare for itself


def test_a_one_host_demo_has_no_spare(tmp_path: Path) -> None:
    config = demo_config(NAMES[:1], tmp_path / "scheduler.log")
    assert config.groups["demo"].spares == ()
    assert choose_spare(config, "sim-001", {}) is None


def test_the_spares_activation_is_a_fixed_local_argv_with_the_spare_as_one_argument(
    tmp_path: Path,
) -> None:
    log = tmp_path / "scheduler.log"
    catalog = load_actions(demo_config(NAMES, log))
    assert {"drain", "activate-spare", "resume", "requeue-jobs"} <= set(catalog.actions)
    action = catalog["activate-spare"]
    assert action.confirm and not action.on_fail and action.guard == "none"
    assert [step.where for step in action.steps] == ["local"]
    assert action.needs == {"spare"}
    argv = demo_actions(log)["activate-spare"]["argv"]
    # The Slurm command it stands for, after the stand-in's program: what a preview shows.
    program = str(tmp_path / "demo-slurm" / "scontrol")
    assert argv == ["sh", program, "update", "NodeName={spare}", "State=RESUME"]


async def test_bringing_the_spare_in_runs_the_demo_action_and_journals_it(tmp_path: Path) -> None:
    log = tmp_path / "scheduler.log"
    config = demo_config(NAMES, log)
    journal = Journal.open(tmp_path / "journal.sqlite3")
    ops = OperatorActions(config, journal)
    try:
        op = ops.prepare_spare("sim-005")
        assert op is not None and op.spare == "sim-031"
        assert any("NodeName=sim-031 State=RESUME" in line for line in op.preview())
        lines: list[str] = []
        outcome = await ops.run(op, lines.append)
        assert outcome.ok, outcome.errors()
        assert log.read_text() == "demo scheduler: scontrol update NodeName=sim-031 State=RESUME\n"
        state = journal.node_states()["sim-031"]
        assert state.state == "spare_active" and state.detail == "sim-005"
        assert ops.propose_spare("sim-006") == "sim-032"  # the next one
    finally:
        await ops.aclose()
        journal.close()


@pytest.mark.parametrize("seed", [1, 2, 7])
def test_the_spares_run_healthy_and_idle_the_others_the_demo_mix(seed: int) -> None:
    mix = demo_assignment(32, seed)
    hosts = DemoFleet(32, seed=seed, spares=2).assignment()
    assert [name for name, _ in hosts] == NAMES
    # The hosts in service run the mix, with jobs on their GPUs (tests/test_sim_jobs.py).
    assert [(name, {**sc, "job": []}) for name, sc in hosts[:30]] == mix[:30]
    for (_, spare), (_, was) in zip(hosts[30:], mix[30:], strict=True):
        assert spare["fault"] == [] and spare["workload"] == "idle" and spare["job"] == []
        assert spare["name"] == "healthy"
        assert (spare["gpus"], spare["model"]) == (was["gpus"], was["model"])


def test_a_faulty_scenario_as_a_spare_loses_its_faults() -> None:
    xid79 = load_scenario("xid79")
    assert xid79["fault"]
    spare = spare_scenario(xid79)
    assert spare["fault"] == [] and spare["workload"] == "idle"
    assert xid79["fault"]  # the original is left as it was


def test_a_demo_fleet_keeps_a_host_in_service() -> None:
    with pytest.raises(DemoFleetError, match="at least one host in service"):
        DemoFleet(2, spares=2)
    (_, first), (_, spare) = DemoFleet(2, spares=1, scenario="xid79").assignment()
    assert first["fault"] and not spare["fault"] and spare["workload"] == "idle"
