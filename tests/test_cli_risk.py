"""`gputui risk`: the figures it prints, its JSON, and how it refuses bad input."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from gputui.cli.app import app
from gputui.cli.risk_cmd import risk_command
from tests.test_risk import erlang_quantile

SEED = ["--gpus", "100", "--rate", "0.01", "--hours", "1", "--detect", "0.9"]


def _cli() -> typer.Typer:
    """An app with `risk` as a subcommand, whatever else is registered on the real one."""
    cli = typer.Typer()
    cli.callback()(lambda: None)
    cli.command("risk")(risk_command)
    return cli


CLI = _cli()


def run(*args: str) -> Result:
    return CliRunner().invoke(CLI, ["risk", *args])


def test_risk_is_registered_on_the_app() -> None:
    assert any(c.name == "risk" and c.callback is risk_command for c in app.registered_commands)


def run_json(*args: str) -> Any:
    result = run(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_seed_example_json() -> None:
    out = run_json(*SEED, "--recover-minutes", "10")
    assert [round(t["p"], 3) for t in out["fleet"]["pmf"]] == [0.368, 0.368, 0.184, 0.061]
    assert [t["k"] for t in out["fleet"]["pmf"]] == [0, 1, 2, 3]
    assert round(out["detection"]["p_no_undetected_failure"], 3) == 0.905
    assert round(out["recovery"]["p_within_target"], 3) == 0.632
    assert round(out["recovery"]["fleet_availability"], 3) == 0.846  # repairs overlap
    assert out["schema_version"] == 2 and out["rate_source"] == "given" and out["job"] is None


def test_a_given_rate_gives_one_consistent_set_of_figures() -> None:
    # Once the same report said P(N = 0) = 0.368 and, from the default prior,
    # "P(no failure in window) 0.998": two answers to one question.
    out = run_json(*SEED, "--recover-minutes", "10")
    assert out["bayes"] is None and out["rate_per_gpu_hour"] == 0.01
    text = run(*SEED, "--recover-minutes", "10").stdout
    assert re.search(r"0\.998(?!\d)", text) is None and "P(no failure in window)" not in text
    assert "given, taken as known" in text and "1.00e-02/GPU-h" in text
    assert "0.846" in text and "0.857" not in text


def test_json_top_level_fields_are_stable() -> None:
    out = run_json("--gpus", "8")
    assert list(out) == [
        "schema_version",
        "gpus",
        "gpus_source",
        "rate_per_gpu_hour",
        "rate_source",
        "hours",
        "fleet",
        "detection",
        "recovery",
        "job",
        "bayes",
        "health_adjusted",
    ]


def test_posterior_from_failures_and_exposure() -> None:
    out = run_json("--gpus", "800", "--failures", "3", "--exposure-gpu-hours", "576000")
    bayes = out["bayes"]
    # Default prior Gamma(1, 50,000 GPU-h); posterior Gamma(4, 626,000 GPU-h).
    assert bayes["posterior_alpha"] == pytest.approx(4)
    assert bayes["posterior_beta_gpu_hours"] == pytest.approx(626_000)
    assert bayes["posterior_mean_per_gpu_hour"] == pytest.approx(4 / 626_000)
    assert bayes["credible_95"]["low"] == pytest.approx(erlang_quantile(0.025, 4, 626_000), 1e-6)
    assert bayes["credible_95"]["high"] == pytest.approx(erlang_quantile(0.975, 4, 626_000), 1e-6)
    assert out["rate_source"] == "posterior"
    assert out["rate_per_gpu_hour"] == pytest.approx(4 / 626_000)


def test_job_and_checkpoint_figures() -> None:
    args = ["--gpus", "2048", "--rate", "2e-5", "--job-gpus", "1024", "--job-hours", "24"]
    out = run_json(*args, "--checkpoint-minutes", "2", "--restart-minutes", "15")
    job = out["job"]
    k_rate = 1024 * 2e-5
    assert job["survival_probability"] == pytest.approx(math.exp(-k_rate * 24))
    assert job["mttf_hours"] == pytest.approx(1 / k_rate)
    young = math.sqrt(2 * (2 / 60) * (1 / k_rate)) * 60
    assert job["checkpoint"]["young_interval_minutes"] == pytest.approx(young)
    assert job["checkpoint"]["daly_interval_minutes"] == pytest.approx(young - 2)
    assert 0 < job["checkpoint"]["ettr_at_optimum"] < 1


def test_table_explains_each_figure() -> None:
    result = run(*SEED, "--recover-minutes", "10")
    assert result.exit_code == 0, result.output
    text = result.stdout
    for needle in ("P(N = 0)", "0.368", "0.184", "0.061", "P(no undetected failure)", "0.905"):
        assert needle in text
    assert "P(recovery <= 10 min)" in text and "0.632" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpus", "8", "--rate", "-0.1"], "--rate"),
        (["--gpus", "8", "--detect", "1.5"], "--detect"),
        (["--gpus", "8", "--detect", "-0.1"], "--detect"),
        (["--gpus", "8", "--job-gpus", "8"], "--job-hours"),
        # A value wrong on its own is named as such, not as a missing partner.
        (["--gpus", "8", "--job-hours", "-1"], "--job-hours must be > 0, got -1"),
        (["--gpus", "8", "--job-gpus", "0"], "--job-gpus must be at least 1"),
        # A job the fleet cannot hold.
        (["--gpus", "8", "--job-gpus", "16", "--job-hours", "2"], "does not fit a fleet of"),
        (["--gpus", "8", "--job-hours", "8"], "--job-gpus"),
        (["--gpus", "8", "--failures", "3"], "--exposure-gpu-hours"),
        (["--gpus", "8", "--failures", "-1", "--exposure-gpu-hours", "10"], "--failures"),
        (["--gpus", "8", "--hours", "0"], "--hours"),
        (["--gpus", "8", "--hours", "nan"], "--hours"),
        (["--gpus", "8", "--recover-minutes", "0"], "--recover-minutes"),
        (["--gpus", "0"], "--gpus"),
        (["--gpus", "8", "--format", "xml"], "--format"),
        (["--gpus", "8", "--rate", "1e-5", "--failures", "3", "--exposure-gpu-hours", "9"], "one"),
        (["--nodes", "--gpus", "8"], "--gpus only apply to the fleet"),
        (["--nodes", "--job-gpus", "8", "--job-hours", "2"], "--job-gpus, --job-hours"),
        (["--nodes", "--rate", "0"], "--rate must be > 0"),
        ([], "--gpus N, --hosts PATH or --demo N"),
        (["--gpus", "8", "--demo", "4"], "exactly one"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith("gputui risk: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert result.stdout == ""


def test_unparsable_number_is_a_usage_error() -> None:
    result = run("--gpus", "many")
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_demo_counts_gpus_through_the_collector() -> None:
    # The real thing: 2 simulated hosts behind SSH servers, 8 GPUs each.
    out = run_json("--demo", "2")
    assert out["gpus"] == 16 and out["gpus_source"] == "demo"
    # ... and a job larger than what was counted does not fit.
    result = run("--demo", "2", "--job-gpus", "17", "--job-hours", "2")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == (
        "gputui risk: a job of --job-gpus 17 does not fit a fleet of the demo's 16 GPUs\n"
    )


def test_a_collection_without_gpus_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gputui.cli.risk_cmd.count_fleet_gpus", lambda hosts, demo: 0)
    result = run("--demo", "2")
    assert result.exit_code == 1 and "no GPU" in result.stderr and result.stdout == ""


def test_hosts_take_failures_and_exposure_from_the_journal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from gputui.core.model import Level
    from gputui.ops.journal import Journal
    from gputui.ops.records import Fault

    hosts = tmp_path / "hosts.toml"
    hosts.write_text('hosts = ["gpu1"]\n[risk]\njob_gpus = 8\njob_hours = 24\n')
    path = tmp_path / "journal.sqlite3"
    with Journal.open(path) as journal:
        # Three GPUs of three nodes fell off the bus; 576,000 GPU-hours were watched.
        journal.record_faults(
            Fault(
                t=1000.0 + i,
                node=f"gpu{i}",
                kind="xid",
                level=int(Level.FAILED),
                gpu=0,
                uuid=f"GPU-{i}",
                xid=79,
            )
            for i in range(3)
        )
        journal.add_exposure({(f"gpu{i}", h): 100.0 for i in range(8) for h in range(720)})
        assert journal.failures_and_exposure() == (3, 576_000.0)
    monkeypatch.setattr("gputui.cli.risk_cmd.count_fleet_gpus", lambda hosts, demo: 8)
    out = run_json("--hosts", str(hosts), "--journal", str(path))
    assert out["gpus"] == 8
    assert out["rate_source"] == "posterior"
    assert out["bayes"]["failures"] == 3 and out["bayes"]["exposure_gpu_hours"] == 576_000.0
    assert out["job"]["gpus"] == 8  # [risk] job_gpus from hosts.toml


def test_markdown_has_every_section() -> None:
    result = run(*SEED, "--format", "markdown")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.startswith("# gputui risk\n")
    assert "## Fleet: 100 GPUs (given), 1 h window" in text
    assert "| P(N = 1) | 0.368 |" in text and "| fleet availability | 0.846 |" in text
    assert "## Failure rate: given, taken as known" in text


# -- gputui risk --nodes -------------------------------------------------------------------------


def _journal_with_a_lemon(path: Path) -> None:
    """Eight nodes watched for 30 days; gpu05 lost five GPUs, gpu02 one, and was marked failed
    twice; a node with a hostile name saw nothing."""
    from gputui.core.model import Level
    from gputui.ops.journal import Journal
    from gputui.ops.records import Fault

    lost = [("gpu05", i) for i in range(5)] + [("gpu02", 0)]
    with Journal.open(path) as journal:
        journal.record_faults(
            Fault(
                t=1000.0 + n,
                node=node,
                kind="xid",
                level=int(Level.FAILED),
                gpu=gpu,
                uuid=f"GPU-{node}-{gpu}",
                xid=79,
            )
            for n, (node, gpu) in enumerate(lost)
        )
        nodes = [f"gpu{i:02}" for i in range(1, 8)] + ["[b]evil|n"]
        journal.add_exposure({(node, h): 8.0 for node in nodes for h in range(720)})
        journal.record_node_state("gpu05", "failed", "XID 79", t=2000.0)
        journal.record_node_state("gpu05", "in_service", t=3000.0)
        journal.record_node_state("gpu05", "failed", "XID 79", t=4000.0)


def test_nodes_rank_the_journal_against_the_fleets_rate(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    _journal_with_a_lemon(path)
    out = run_json("--nodes", "--journal", str(path))
    assert out["schema_version"] == 2
    assert out["failures"] == 6 and out["exposure_gpu_hours"] == pytest.approx(8 * 720 * 8.0)
    # The same rate as the fleet report learns from that journal: prior Gamma(1, 50,000).
    assert out["rate_source"] == "posterior"
    assert out["rate_per_gpu_hour"] == pytest.approx(7 / (50_000 + 46_080))
    nodes = out["nodes"]
    assert [n["name"] for n in nodes[:2]] == ["gpu05", "gpu02"]
    assert len(nodes) == 8
    lemon = nodes[0]
    assert lemon["failures"] == 5 and lemon["times_marked_failed"] == 2
    assert lemon["p_lemon"] > 0.9 and lemon["p_record_at_fleet_rate"] < 0.01
    assert all(n["p_lemon"] < 0.5 for n in nodes[2:])


def test_nodes_table_and_markdown_show_host_text_plain(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    _journal_with_a_lemon(path)
    table = run("--nodes", "--journal", str(path))
    assert table.exit_code == 0, table.output
    assert "Lemon nodes: 8 nodes against the fleet's 7.29e-05/GPU-h (posterior" in table.stdout
    assert "[b]evil|n" in table.stdout  # not read as markup
    rows = [line for line in table.stdout.splitlines() if "gpu0" in line]
    assert "gpu05" in rows[0] and "gpu02" in rows[1]
    markdown = run("--nodes", "--journal", str(path), "--format", "markdown")
    assert markdown.exit_code == 0, markdown.output
    assert "\\[b\\]evil\\|n" in markdown.stdout  # escaped: not a link, not a cell break
    first = markdown.stdout.splitlines()[6]
    assert first.startswith("| gpu05 | 5 | 5,760 | 2 | 3.08e-04 | ")


def test_nodes_without_a_journal_is_one_line(tmp_path: Path) -> None:
    result = run("--nodes", "--journal", str(tmp_path / "none.sqlite3"))
    assert result.exit_code == 1 and result.stdout == ""
    assert (
        result.stderr.startswith("gputui risk: no journal at ") and result.stderr.count("\n") == 1
    )
    assert not (tmp_path / "none.sqlite3").exists()  # looking did not create one


def test_nodes_with_a_given_rate(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    _journal_with_a_lemon(path)
    out = run_json("--nodes", "--journal", str(path), "--rate", "1e-3")
    assert out["rate_source"] == "given" and out["rate_per_gpu_hour"] == pytest.approx(1e-3)
    # 5 failures in 5,760 GPU-hours is what 1e-3 per GPU-hour expects: no lemon then.
    assert out["nodes"][0]["name"] == "gpu05" and out["nodes"][0]["p_lemon"] < 0.05
