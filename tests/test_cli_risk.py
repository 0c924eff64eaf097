"""`gputui risk`: the figures it prints, its JSON, and how it refuses bad input."""

from __future__ import annotations

import json
import math
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
    assert out["schema_version"] == 1 and out["rate_source"] == "given" and out["job"] is None


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
        (["--gpus", "8", "--job-hours", "8"], "--job-gpus"),
        (["--gpus", "8", "--failures", "3"], "--exposure-gpu-hours"),
        (["--gpus", "8", "--failures", "-1", "--exposure-gpu-hours", "10"], "--failures"),
        (["--gpus", "8", "--hours", "0"], "--hours"),
        (["--gpus", "8", "--hours", "nan"], "--hours"),
        (["--gpus", "8", "--recover-minutes", "0"], "--recover-minutes"),
        (["--gpus", "0"], "--gpus"),
        (["--gpus", "8", "--format", "xml"], "--format"),
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
