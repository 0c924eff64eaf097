"""`gputui jobs`: the jobs on the fleet's GPUs as a table, JSON or Markdown, with the exit
codes of `gputui report` judged over the jobs; host text shown as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from typer.testing import CliRunner

import gputui.cli.commands
import gputui.cli.jobs_cmd
from gputui.cli.app import app
from gputui.cli.exits import EXIT_UNKNOWN
from gputui.core.hoststats import PluginStatus
from gputui.core.jobs import HEALTH_RANK, build_jobs, job_status
from gputui.core.model import FleetSnapshot, JobRef, Level
from gputui.core.risk_summary import fleet_rate_per_gpu_hour, job_risk
from gputui.render.jobs import fold_hosts
from tests.fake_fleet import R
from tests.jobs_fleet import ALICE, BOB, CAROL, DAVE, POD, JobsFleet, jobs_fleet
from tests.test_host_text import LITERAL, NASTY, assert_literal, assert_safe, md_cells

assert gputui.cli.commands  # registers every command on `app`

WORST_FIRST = ["slurm:4250", "slurm:4243", "slurm:4260", "slurm:4242", "k8s:infer/vllm-0"]


def run_on(
    monkeypatch: pytest.MonkeyPatch, snap: FleetSnapshot, *args: str, fleet: str = "--demo=10"
) -> tuple[int, str, str]:
    """`gputui jobs ARGS` on `snap` in place of a collection (the fleet's flags still apply:
    a demo's, or a hosts file's with its scheduler and journal)."""

    async def collected(hosts: Path | None, demo: int | None, wait_s: float) -> FleetSnapshot:
        return snap

    monkeypatch.setattr(gputui.cli.jobs_cmd, "_collect", collected)
    result = CliRunner().invoke(app, ["jobs", fleet, *args], env={"COLUMNS": "160"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_table_lists_jobs_worst_first_with_hosts_gpus_users_verdicts_and_risk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, _ = run_on(monkeypatch, jobs_fleet().advance(10))
    assert code == 2  # bob's and carol's jobs hold critical and failed GPUs
    lines = out.splitlines()
    assert lines[0].split() == [
        "JOB",
        "USER",
        "GPUS",
        "HOSTS",
        "STATE",
        "RUN",
        "P24H",
        "CKPT",
        "WHY",
    ]
    rows = [line.split() for line in lines[1:6]]
    assert [r[0] for r in rows] == WORST_FIRST
    p8 = f"{job_risk(8, 2e-5, 60.0).p_survive_24h:.3f}"
    assert rows[0][:7] == [
        "slurm:4250",
        "carol",
        "4",
        "gpu005",
        "failed",
        "-",
        f"{job_risk(4, 2e-5, 60).p_survive_24h:.3f}",
    ]
    assert rows[1][:5] == ["slurm:4243", "bob", "16", "gpu[003-004]", "critical"]
    assert rows[2][:5] == ["slurm:4260", "dave", "8", "gpu006", "unreachable"] and rows[2][6] == p8
    assert rows[3][:5] == ["slurm:4242", "alice", "16", "gpu[001-002]", "ok"]
    assert rows[4][:5] == ["k8s:infer/vllm-0", "svc-infer", "4", "gpu009", "ok"]
    assert "GPU3 XID 79: GPU has fallen off the bus -> reboot node" in lines[1]
    assert "gpu004: GPU5 temperature 90 C at or above the slowdown limit 89 C -> drain" in lines[2]
    assert "GPUTUI CRITICAL - 5 jobs on 48 GPUs of 7 hosts" in out
    assert "20 GPU processes serve no job, on gpu005 (4), gpu007 (8), gpu008 (8)" in out
    assert "processes not known on 3 hosts: gpu006, gpu007, gpu010" in out
    # Below the table, each troubled job's GPUs by host and reason, with NVIDIA's action.
    assert "slurm:4243: critical, recommended: drain" in out
    assert "  - gpu004 GPU5 [critical] GPU5 temperature 90 C" in out
    assert "  - gpu006 GPU0-7 [unreachable] gpu006 unreachable: connection refused" in out


def test_table_fits_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    snap = jobs_fleet().advance(10)
    found = build_jobs(snap)

    async def collected(hosts: Path | None, demo: int | None, wait_s: float) -> FleetSnapshot:
        return snap

    monkeypatch.setattr(gputui.cli.jobs_cmd, "_collect", collected)
    result = CliRunner().invoke(app, ["jobs", "--demo", "10"], env={"COLUMNS": "80"})
    table = result.stdout.split("\n\n")[0].splitlines()
    assert len(table) == 1 + len(found) and all(len(line) <= 80 for line in table)
    # Too narrow for WHY: the reasons are written out under the table.
    assert "WHY" not in table[0] and "recommended: reboot node" in result.stdout


def test_json_has_every_job_with_its_gpus_side_by_side(monkeypatch: pytest.MonkeyPatch) -> None:
    snap = jobs_fleet().advance(10)
    code, out, _ = run_on(monkeypatch, snap, "--format", "json")
    doc = json.loads(out)
    assert (doc["status"], doc["exit_code"], code) == ("CRITICAL", 2, 2)
    assert doc["rate_source"] == "prior" and doc["rate_per_gpu_hour"] == fleet_rate_per_gpu_hour()
    jobs = {j["key"]: j for j in doc["jobs"]}
    assert [j["key"] for j in doc["jobs"]] == [
        CAROL.key,
        BOB.key,
        DAVE.key,
        ALICE.key,
        POD.key,
    ]
    bob = jobs[BOB.key]
    assert (bob["user"], bob["hosts"], bob["gpus_seen"], bob["gpus_total"]) == (
        "bob",
        ["gpu003", "gpu004"],
        16,
        16,
    )
    assert (bob["label"], bob["level"], bob["action"], bob["worst_host"], bob["worst_gpu"]) == (
        "critical",
        "critical",
        "drain",
        "gpu004",
        5,
    )
    assert bob["reason"]["code"] == "temp_slowdown"
    assert bob["p_survive_24h"] == job_risk(16, 2e-5, 60.0).p_survive_24h
    interval = job_risk(16, 2e-5, 60.0).checkpoint_interval_h
    assert interval is not None and bob["checkpoint_interval_min"] == round(interval * 60, 2)
    assert bob["runtime_s"] is None and bob["step_rate_per_s"] is None
    # Every GPU of the job with its readings, as the snapshot has them.
    host = next(h for h in snap.hosts if h.name == "gpu004")
    assert host.sample is not None
    gpu5 = next(g for g in bob["gpus"] if (g["host"], g["index"]) == ("gpu004", 5))
    want = host.sample.gpus[5]
    assert (gpu5["util_pct"], gpu5["sm_clock_mhz"], gpu5["temp_c"], gpu5["label"]) == (
        want.util_pct,
        want.sm_clock_mhz,
        want.temp_c,
        "critical",
    )
    assert [(g["host"], g["index"]) for g in bob["gpus"]] == [
        (h, i) for h in ("gpu003", "gpu004") for i in range(8)
    ]
    pod = jobs[POD.key]
    assert (pod["kind"], pod["namespace"], pod["name"], pod["user"]) == (
        "k8s",
        "infer",
        "vllm-0",
        "svc-infer",
    )
    assert doc["plain_processes"] == {"count": 20, "hosts": {"gpu005": 4, "gpu007": 8, "gpu008": 8}}
    assert doc["hosts_unread"] == ["gpu006", "gpu007", "gpu010"]


def test_markdown_is_one_row_per_job(monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run_on(monkeypatch, jobs_fleet().advance(10), "--format", "markdown")
    assert code == 2
    rows = [md_cells(line) for line in out.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 5 and all(len(r) == 11 for r in rows)
    assert [r[0].strip() for r in rows[1:]] == WORST_FIRST
    assert [r[5].strip() for r in rows[1:]] == ["failed", "critical", "unreachable", "ok", "ok"]
    assert rows[2][4].strip() == r"gpu\[003-004\]"
    assert "**GPUTUI CRITICAL - 5 jobs on 48 GPUs of 7 hosts**" in out


def fleet_where(change: Callable[[JobsFleet], None]) -> FleetSnapshot:
    fleet = jobs_fleet()
    for name in ("gpu006", "gpu007"):  # out of service: their processes are known to be moot
        fleet.scripts[name].marked_failed = True
    fleet.scripts["gpu010"].said_hello = True
    for name in ("gpu003", "gpu004", "gpu005"):
        fleet.scripts[name].reasons = []
        fleet.scripts[name].lost = set()
    change(fleet)
    return fleet.advance(10)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda f: None, 0),
        (
            lambda f: setattr(
                f.scripts["gpu004"], "reasons", [R("temp_high", Level.WARN, "hot", 1)]
            ),
            1,
        ),
        (lambda f: setattr(f.scripts["gpu002"], "reasons", [R("x", Level.CRITICAL, "bad", 7)]), 2),
        (lambda f: setattr(f.scripts["gpu010"], "said_hello", False), 3),  # processes unknown
        # a critical GPU that runs no job is no job's trouble
        (lambda f: setattr(f.scripts["gpu005"], "reasons", [R("x", Level.CRITICAL, "bad", 6)]), 0),
    ],
)
def test_exit_code_is_the_worst_jobs_status(
    monkeypatch: pytest.MonkeyPatch, change: Callable[[JobsFleet], None], code: int
) -> None:
    snap = fleet_where(change)
    got, out, _ = run_on(monkeypatch, snap, "--format", "json")
    assert got == code, out
    assert json.loads(out)["exit_code"] == code
    assert max((int(job_status(j)) for j in build_jobs(snap)), default=0) <= max(code, 2)


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--demo", "0"], "--demo takes a number of hosts"),
        (["--wait", "-1"], "--wait must be a positive"),
        (["--wait", "soon"], "'--wait'"),
        (["--format", "yaml"], "'--format'"),
        (["--hosts", "x.toml", "--demo", "2"], "exclude each other"),
        (["--demo", "2", "--journal", "j.db"], "--journal goes with a configured fleet"),
        (["--hosts", "/nonexistent/hosts.toml"], "/nonexistent/hosts.toml"),
        (["--bogus"], "No such option: --bogus"),
    ],
)
def test_a_mistake_is_unknown_in_one_line(args: list[str], expect: str) -> None:
    result = CliRunner().invoke(app, ["jobs", *args])
    assert result.exit_code == EXIT_UNKNOWN, (args, result.output)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gputui: ") and expect in lines[0], lines


def nasty_snapshot() -> FleetSnapshot:
    """Job ids, users and pod names as a hostile host would send them."""
    fleet = jobs_fleet()
    nasty_job = JobRef(kind="slurm", id=NASTY[:200], step="0")
    nasty_pod = JobRef(kind="k8s", id="uid", namespace="[red]ns", name=NASTY[:200])
    fleet.placement = {
        "gpu001": {i: (nasty_job, NASTY[:200]) for i in range(8)},
        "gpu002": {i: (nasty_pod, "[bold]root") for i in range(8)},
    }
    fleet.scripts["gpu001"].reasons = [R("xid_13", Level.WARN, NASTY, 0)]
    return fleet.advance(10)


def test_host_text_is_shown_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    snap = nasty_snapshot()
    _, table, _ = run_on(monkeypatch, snap)
    assert_safe(table)
    assert "[bold]root" in table and "k8s:[red]…b>html</b>" in table  # cut in the middle
    assert_literal(table.split("\n\n", 1)[1])  # the reasons under the table, whole
    _, doc, _ = run_on(monkeypatch, snap, "--format", "json")
    assert_safe(doc)
    users = {j["user"] for j in json.loads(doc)["jobs"]}
    assert users == {NASTY[:200], "[bold]root"}  # JSON says it whole; its escapes are inert
    _, markdown, _ = run_on(monkeypatch, snap, "--format", "markdown")
    assert_safe(markdown)
    rows = [md_cells(line) for line in markdown.splitlines() if line.startswith("| ")]
    assert all(len(r) == 11 for r in rows)  # no pipe of a host's splits a row
    unescaped = re.sub(r"\\(.)", r"\1", " ".join(markdown.split()))
    for part in LITERAL:
        assert part in unescaped


def run_gputui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gputui.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "160"},
    )


def test_gputui_jobs_demo_8_lists_jobs_with_hosts_gpus_users_and_worst_verdicts() -> None:
    """The installed command over 8 simulated hosts behind local SSH servers, through the real
    collector and the agents' attribution of their simulated processes."""
    done = run_gputui("jobs", "--demo", "8", "--format", "json")
    doc = json.loads(done.stdout)
    assert done.returncode == doc["exit_code"], done.stderr
    assert doc["hosts_unread"] == []  # every host said which processes its GPUs run
    jobs = doc["jobs"]
    assert jobs and all(j["label"] in HEALTH_RANK and j["level"] for j in jobs)
    assert all(j["gpus_seen"] == len(j["gpus"]) > 0 and j["hosts"] for j in jobs)
    slurm = [j for j in jobs if j["kind"] == "slurm"]
    assert slurm and all(j["user"] for j in slurm)
    # The demo's data-parallel job spans four hosts, all their GPUs.
    wide = max(slurm, key=lambda j: len(j["hosts"]))
    assert len(wide["hosts"]) == 4 and wide["gpus_seen"] == 32
    assert {(g["host"], g["index"]) for g in wide["gpus"]} == {
        (h, i) for h in wide["hosts"] for i in range(8)
    }
    pods = [j for j in jobs if j["kind"] == "k8s"]
    assert pods and all(j["namespace"] and j["name"] for j in pods)
    # Every GPU a job runs on is a GPU of the fleet, once per job.
    for j in jobs:
        assert len({(g["host"], g["index"]) for g in j["gpus"]}) == len(j["gpus"])
        # A GPU without a process of the job is one that can no longer list any (lost).
        assert all(g["pids"] or g["label"] == "failed" for g in j["gpus"])
        assert all(g["util_pct"] is not None for g in j["gpus"] if g["pids"])
    table = run_gputui("jobs", "--demo", "8")  # a run of its own: its faults may be further on
    status = re.search(r"^GPUTUI (\w+) - (\d+) jobs? on", table.stdout, re.M)
    assert status is not None, table.stdout
    assert PluginStatus[status.group(1)] == table.returncode
    lines = table.stdout.splitlines()
    assert lines[0].split()[:5] == ["JOB", "USER", "GPUS", "HOSTS", "STATE"]
    row = next(line for line in lines if line.startswith(wide["key"] + " "))
    assert row.split()[1:4] == [wide["user"], "32", fold_hosts(wide["hosts"])]
    assert int(status.group(2)) == len(jobs)  # the same seed: the same jobs


def test_no_job_is_said_in_words(monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = jobs_fleet()
    fleet.placement = {}
    code, out, _ = run_on(monkeypatch, fleet.advance(10))
    assert out.startswith("No job on the fleet's GPUs.\n")
    assert "P24H" not in out and code == 3  # gpu006, gpu007 and gpu010 unread
    assert (
        "67 GPU processes serve no job, on gpu001 (8), gpu002 (8), gpu003 (8), gpu004 (8), "
        "gpu005 (7), gpu006 (8) and 3 more hosts"
    ) in out


SQUEUE = Path(__file__).parent / "fixtures" / "slurm" / "squeue-22.05.json"


def hosts_file(tmp_path: Path, actions: str) -> str:
    path = tmp_path / "hosts.toml"
    path.write_text('hosts = ["gpu[001-010]"]\n' + actions)
    return f"--hosts={path}"


def slurm_fleet() -> FleetSnapshot:
    """Slurm jobs 1 on gpu002 and 2 on gpu003-gpu004, as the captured squeue has them."""
    fleet = jobs_fleet()
    one, two = (JobRef(kind="slurm", id=i, step="0") for i in ("1", "2"))
    fleet.placement = {
        "gpu002": {i: (one, "root") for i in range(8)},
        "gpu003": {i: (two, "root") for i in range(8)},
        "gpu004": {i: (two, "root") for i in range(8)},
    }
    return fleet.advance(10)


def test_the_schedulers_job_list_names_and_dates_the_jobs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A real Slurm 22.05 `squeue --json` (the preset's list-jobs, here printed by cat)."""
    listed = f'[actions]\npresets = ["slurm"]\n[actions.list-jobs]\nargv = ["cat", "{SQUEUE}"]\n'
    squeue = {j["job_id"]: j for j in json.loads(SQUEUE.read_text())["jobs"]}
    # An hour and a half after the capture's training job started.
    snap = msgspec.structs.replace(slurm_fleet(), t=squeue[1]["start_time"] + 5400.0)
    _, out, _ = run_on(monkeypatch, snap, "--format", "json", fleet=hosts_file(tmp_path, listed))
    doc = json.loads(out)
    jobs = {j["key"]: j for j in doc["jobs"]}
    train, evaluation = jobs["slurm:1"], jobs["slurm:2"]
    assert (train["name"], train["state"], train["nodes"]) == ("train-llm", "RUNNING", ["gpu002"])
    assert evaluation["name"] == "eval" and evaluation["nodes"] == ["gpu003", "gpu004"]
    assert train["start_source"] == "scheduler"
    assert train["runtime_s"] == 5400
    assert doc["note"].startswith("cat: 4 jobs holding nodes, read ")
    _, table, _ = run_on(monkeypatch, snap, fleet=hosts_file(tmp_path, listed))
    assert table.splitlines()[0].split()[:3] == ["JOB", "NAME", "USER"]
    assert "train-llm" in table and "cat: 4 jobs holding nodes" in table
    assert re.search(r"^slurm:1 +train-llm +root +8 +gpu002 +ok +1h30m ", table, re.M), table


def test_without_the_schedulers_list_the_jobs_are_the_hosts_and_the_reason_is_said(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    snap = slurm_fleet()
    failing = '[actions]\npresets = ["slurm"]\n[actions.list-jobs]\nargv = ["false"]\n'
    code, out, _ = run_on(
        monkeypatch, snap, "--format", "json", fleet=hosts_file(tmp_path, failing)
    )
    doc = json.loads(out)
    assert doc["note"] == "false exited 1"
    assert {j["name"] for j in doc["jobs"]} == {None} and code == doc["exit_code"]
    assert all(j["runtime_s"] is None for j in doc["jobs"])
    _, out, _ = run_on(monkeypatch, snap, "--format", "json", fleet=hosts_file(tmp_path, ""))
    assert json.loads(out)["note"].startswith("no scheduler job list")
    wrong = '[actions]\npresets = ["slrum"]\n'
    code, out, err = run_on(monkeypatch, snap, fleet=hosts_file(tmp_path, wrong))
    assert code == EXIT_UNKNOWN and out == "" and err.startswith("gputui: ") and "slrum" in err
