"""`gputui prevent`: the journal's GPUs and nodes to service as a table, JSON or Markdown, with
the exit codes of `gputui report`; host text shown as written; `--demo` over a simulated fleet
in a temporary journal that is gone afterwards."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
from typer.testing import CliRunner

import gputui.cli.commands
from gputui.cli.app import app
from gputui.cli.exits import EXIT_UNKNOWN
from gputui.core.hoststats import PluginStatus
from gputui.core.rollup import BUCKET_5M_S, BUCKET_DAY_S, Rollup, RollupRetention
from gputui.ops.journal import Journal
from tests.test_host_text import NASTY, assert_literal, assert_safe, md_cells
from tests.trend_days import gpu_day

assert gputui.cli.commands  # registers every command on `app`

DAY = BUCKET_DAY_S
DAYS = 8


def today() -> int:
    return int(time.time() // DAY * DAY)


def node(
    name: str = "node01",
    days: int = DAYS,
    ago: int = 0,
    gpus: int = 8,
    **per_gpu: dict[int, Any],
) -> list[Rollup]:
    """A host's GPUs over `days` days ending `ago` days before today (today included when 0),
    each day the recorded H200's under load; `per_gpu` sets a reading of some GPUs
    (`ecc={3: 40}`: GPU 3 counts 40 corrected errors a day)."""
    first = today() - (days - 1 + ago) * DAY
    out = []
    for g in range(gpus):
        for d in range(days):
            day = gpu_day(d, host=name, gpu=g, **{k: v[g] for k, v in per_gpu.items() if g in v})
            out.append(msgspec.structs.replace(day, start=first + d * DAY))
    return out


def journal_with(path: Path, rollups: Sequence[Rollup]) -> Path:
    """A journal holding `rollups`, written as the monitor writes them: each day's figures in
    one 5-minute row at the day's start, merged into the day's row by the journal."""
    with Journal.open(path) as j:
        rows = [msgspec.structs.replace(r, length_s=BUCKET_5M_S) for r in rollups]
        j.write_rollups(rows, RollupRetention(), now=time.time())
    return path


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        app, ["prevent", *args], env={"COLUMNS": "120", "GPUTUI_HOSTS": "", **(env or {})}
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def no_hosts_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No hosts.toml anywhere: the journal alone is judged."""
    monkeypatch.setattr("gputui.cli.prevent_cmd.default_hosts_path", lambda: tmp_path / "none")


pytestmark = pytest.mark.usefixtures("no_hosts_file")


# -- exit codes ---------------------------------------------------------------------------------


def test_a_gpu_whose_ecc_climbs_is_listed_with_its_evidence_and_advice_and_warns(
    tmp_path: Path,
) -> None:
    j = journal_with(tmp_path / "j.sqlite3", node(ecc={3: 40}) + node("node02"))
    code, out, err = run("--journal", str(j))
    assert code == PluginStatus.WARNING, (out, err)
    lines = out.splitlines()
    assert lines[0].split() == ["#", "SERVICE", "LEVEL", "P30D", "BENEFIT", "REMEDY", "RULES"]
    assert lines[1].split() == [
        "1",
        "node01",
        "GPU3",
        "warn",
        *lines[1].split()[4:6],
        "hardware",
        "ecc_corrected_rising",
    ]
    assert lines[2] == ""  # one item: the other GPUs and node02 are healthy
    flat = " ".join(out.split())
    assert "GPUTUI WARNING - 1 to service; 16 GPUs on 2 hosts, 8 days of rollups" in flat
    assert "GPU3 corrected ECC errors: 40/day over 7 days (limit 10/day)" in flat
    assert "advice (replace or upgrade hardware): its memory is wearing out" in flat
    assert f"rollups: journal {j}" in flat
    # The day chart: eight days, every one at the same height.
    chart = [line for line in lines if "corrected ECC errors per day, by day:" in line]
    assert chart and chart[0].split("by day: ")[1].split()[0] == "█" * DAYS


def test_critical_and_failed_findings_exit_critical(tmp_path: Path) -> None:
    j = journal_with(
        tmp_path / "j.sqlite3",
        node(ecc={3: 40}, remap_uncorrected={5: 8}) + node("node02", failure={0: True}),
    )
    code, out, _ = run("--journal", str(j), "--format", "json")
    assert code == PluginStatus.CRITICAL
    doc = json.loads(out)
    assert doc["status"] == "CRITICAL" and doc["exit_code"] == 2
    items = [(i["host"], i["gpu"], i["level"], i["findings"][0]["rule"]) for i in doc["items"]]
    # Worst first by the failure probability avoided: failed, critical, warn.
    assert items == [
        ("node02", 0, "failed", "remap_failure"),
        ("node01", 5, "critical", "remap_bank_limit"),
        ("node01", 3, "warn", "ecc_corrected_rising"),
    ]
    benefits = [i["benefit"] for i in doc["items"]]
    assert benefits == sorted(benefits, reverse=True) and benefits[-1] > 0


def test_a_healthy_fleet_is_ok(tmp_path: Path) -> None:
    j = journal_with(tmp_path / "j.sqlite3", node() + node("node02"))
    code, out, _ = run("--journal", str(j))
    assert code == PluginStatus.OK
    assert out.startswith("Nothing to service: no trend rule found a GPU or node drifting.")
    assert "GPUTUI OK - nothing to service; 16 GPUs on 2 hosts" in " ".join(out.split())


def test_a_journal_without_rollups_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    Journal.open(path).close()
    code, out, _ = run("--journal", str(path), "--format", "json")
    assert code == EXIT_UNKNOWN
    doc = json.loads(out)
    assert doc["status"] == "UNKNOWN" and doc["items"] == [] and doc["gpus"] == 0
    assert "no rollups to judge" in doc["note"]


def test_a_journal_no_monitor_writes_any_more_is_unknown_unless_critical(tmp_path: Path) -> None:
    stale = journal_with(tmp_path / "stale.sqlite3", node(ecc={3: 40}, ago=5))
    code, out, _ = run("--journal", str(stale))
    assert code == EXIT_UNKNOWN
    assert "days ago: is a monitor writing this journal?" in " ".join(out.split())
    worse = journal_with(tmp_path / "worse.sqlite3", node(remap_uncorrected={5: 8}, ago=5))
    assert run("--journal", str(worse))[0] == PluginStatus.CRITICAL


def test_the_journal_comes_from_the_environment_and_the_hosts_file(tmp_path: Path) -> None:
    j = journal_with(tmp_path / "j.sqlite3", node(ecc={3: 40}))
    assert run(env={"GPUTUI_JOURNAL": str(j)})[0] == PluginStatus.WARNING
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(f'hosts = ["node01"]\n[journal]\npath = "{j}"\n')
    code, out, _ = run("--hosts", str(hosts))
    assert code == PluginStatus.WARNING and "ecc_corrected_rising" in out


def test_the_last_thirty_days_are_judged(tmp_path: Path) -> None:
    """The rules look back two weeks at most; of the journal's 90 days, the last 30 are read."""
    j = journal_with(tmp_path / "j.sqlite3", node(days=40, ecc={3: 40}))
    doc = json.loads(run("--journal", str(j), "--format", "json")[1])
    assert doc["days"] == 30 and doc["gpus"] == 8
    assert doc["items"][0]["findings"][0]["rule"] == "ecc_corrected_rising"


# -- formats ------------------------------------------------------------------------------------


def test_json_carries_each_finding_with_its_figures_series_and_advice(tmp_path: Path) -> None:
    j = journal_with(tmp_path / "j.sqlite3", node(ecc={3: 40}))
    doc = json.loads(run("--journal", str(j), "--format", "json")[1])
    assert doc["schema"] == 1 and doc["rate_source"] == "prior"
    assert doc["horizon_hours"] == 720 and doc["days"] == DAYS and doc["simulated"] is None
    (item,) = doc["items"]
    assert (item["rank"], item["host"], item["gpu"], item["node"]) == (1, "node01", 3, False)
    assert item["remedies"] == ["replace or upgrade hardware"]
    assert item["p_failure"] > item["p_failure_serviced"] > 0
    assert item["benefit"] == pytest.approx(item["p_failure"] - item["p_failure_serviced"])
    (f,) = item["findings"]
    assert f["rule"] == "ecc_corrected_rising" and f["level"] == "warn"
    assert f["advice"].startswith("its memory is wearing out")
    figures = {x["name"]: (x["value"], x["unit"]) for x in f["evidence"]["figures"]}
    assert figures["rate"] == (40, "/day") and figures["limit"] == (10, "/day")
    series = f["evidence"]["series"]
    assert [p["value"] for p in series] == [40] * DAYS
    assert series[-1]["day"] == time.strftime("%Y-%m-%d", time.gmtime(today()))


def test_markdown_has_the_ranked_table_and_each_items_findings(tmp_path: Path) -> None:
    j = journal_with(tmp_path / "j.sqlite3", node(ecc={3: 40}))
    code, out, _ = run("--journal", str(j), "--format", "markdown")
    assert code == PluginStatus.WARNING
    lines = out.splitlines()
    assert lines[0].startswith("# gputui prevent (")
    row = next(line for line in lines if line.startswith("| 1 |"))
    assert [c.strip() for c in md_cells(row)][:3] == ["1", "node01 GPU3", "warn"]
    assert "## 1. node01 GPU3 (warn)" in lines
    assert any(line.startswith("- **ecc_corrected_rising** (warn): GPU3") for line in lines)
    assert any(line.startswith("  - advice (replace or upgrade hardware):") for line in lines)


# -- host text ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["table", "json", "markdown"])
def test_hostile_host_names_are_shown_as_written(tmp_path: Path, fmt: str) -> None:
    j = journal_with(tmp_path / "j.sqlite3", node(NASTY, ecc={3: 40}))
    code, out, _ = run("--journal", str(j), "--format", fmt)
    assert code == PluginStatus.WARNING
    if fmt == "json":
        assert json.loads(out)["items"][0]["host"] == NASTY  # data, escaped by JSON
        assert_safe(out)
    elif fmt == "markdown":
        assert_safe(out)
        row = next(line for line in out.splitlines() if line.startswith("| 1 |"))
        assert len(md_cells(row)) == 7  # the name's pipe and line break do not split the row
        assert "\\[bold red\\]x\\[/\\]" in row
    else:
        assert_literal(out)


# -- mistakes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--days", "3"], "--days go with --demo"),
        (["--seed", "3"], "--seed go with --demo"),
        (["--demo", "0"], "--demo takes a number of hosts from 1 to 64"),
        (["--demo", "65"], "--demo takes a number of hosts from 1 to 64"),
        (["--demo", "2", "--days", "0.5"], "--days takes 1 to 90 days"),
        (["--demo", "2", "--days", "nan"], "--days takes 1 to 90 days"),
        (["--demo", "2", "--journal", "x"], "--hosts and --journal do not apply"),
        (["--format", "yaml"], "Invalid value for '--format'"),
        (["--journal", "/nonexistent/j.sqlite3"], "no journal at /nonexistent/j.sqlite3"),
    ],
)
def test_mistakes_are_one_line_and_unknown(args: list[str], said: str) -> None:
    code, out, err = run(*args)
    assert code == EXIT_UNKNOWN and out == ""
    assert said in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_a_file_that_is_no_journal_is_said_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "j.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    code, out, err = run("--journal", str(bad))
    assert code == EXIT_UNKNOWN and out == ""
    assert err.startswith("gputui: cannot read the journal") or "gputui:" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


# -- the demo -----------------------------------------------------------------------------------


def test_demo_judges_a_small_simulated_fleet_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code, out, err = run("--demo", "2", "--days", "2", "--seed", "3", "--format", "json")
    doc = json.loads(out)
    assert code == doc["exit_code"] and doc["status"] in ("OK", "WARNING", "CRITICAL")
    assert (doc["gpus"], doc["hosts"], doc["days"]) == (16, 2, 2)
    assert sorted(doc["simulated"]) == ["sim-001", "sim-002"]
    assert doc["source"].startswith("a simulated fleet of 2 hosts over 2 days (seed 3)")
    assert "simulating 2 hosts over 2 days" in err
    # The temporary journal is gone (multiprocessing's own folder for its workers' server goes
    # when this process exits).
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("pymp-")] == []


@pytest.mark.slow
def test_demo_of_eight_hosts_over_a_fortnight_lists_every_drift_and_no_healthy_host() -> None:
    """`gputui prevent --demo 8 --days 14`: two healthy hosts and one of each slow drift; each
    drift is on the list with its evidence, a chart's days and its advice; the healthy hosts
    are not."""
    code, out, _ = run("--demo", "8", "--days", "14", "--format", "json")
    doc = json.loads(out)
    assert code == PluginStatus.CRITICAL == doc["exit_code"]
    assert (doc["gpus"], doc["hosts"], doc["days"]) == (64, 8, 14)
    simulated: dict[str, str] = doc["simulated"]
    remedy_of = {
        "drift_ecc": "replace or upgrade hardware",
        "drift_pcie": "replace or upgrade hardware",
        "drift_remap": "replace or upgrade hardware",
        "drift_fan": "improve cooling",
        "drift_rack": "improve cooling",
        "drift_psu": "fix power",
    }
    listed = {i["host"]: i for i in doc["items"]}
    assert set(listed) == {h for h, sc in simulated.items() if sc != "healthy"}
    for host, item in listed.items():
        assert remedy_of[simulated[host]] in item["remedies"], (host, item["remedies"])
        assert item["node"] == (simulated[host] in ("drift_rack", "drift_psu"))
        for f in item["findings"]:
            assert f["advice"] and f["evidence"]["text"] and len(f["evidence"]["series"]) >= 3
