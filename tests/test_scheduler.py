"""The scheduler's job list: Slurm's `squeue --json` as 22.05 writes it (a real capture from the
test Slurm of tests/slurm.py) and as 23.02+ writes it, hostile answers, and the bound of one
call per period for the whole fleet, whoever asks."""

from __future__ import annotations

import asyncio
import copy
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from gputui.config import ConfigError, config_from_text
from gputui.ops.job_list import job_list_reader
from gputui.ops.runner import Command, CommandResult, CommandRunner, OnLine, OnStart
from gputui.ops.scheduler import (
    SchedulerParseError,
    SchedulerReader,
    parse_squeue_json,
)

FIXTURE = Path(__file__).parent / "fixtures" / "slurm" / "squeue-22.05.json"


def captured() -> dict[str, Any]:
    """`squeue --json` of Slurm 22.05.8 with five jobs: train-llm on gpu002, eval on
    gpu[003-004], a pending job, and an array of two tasks (4_1, 4_2) on gpu001."""
    return json.loads(FIXTURE.read_text())  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def test_slurm_22_05_as_captured() -> None:
    read = parse_squeue_json(FIXTURE.read_text())
    assert read.skipped == 0 and read.problem == ""
    # The pending job (3) holds no node: it is no job of the fleet's GPUs.
    assert sorted(read.jobs) == ["slurm:1", "slurm:2", "slurm:4", "slurm:5"]
    train = read.jobs["slurm:1"]
    assert (train.name, train.user, train.state, train.nodes) == (
        "train-llm",
        "root",
        "RUNNING",
        ("gpu002",),
    )
    raw = {j["job_id"]: j for j in captured()["jobs"]}
    assert train.start_t == raw[1]["start_time"] > 1.7e9
    assert read.jobs["slurm:2"].nodes == ("gpu003", "gpu004")  # gpu[003-004] expanded
    # An array task is keyed by its own job id (what its processes carry), named as people do.
    assert read.jobs["slurm:5"].id == "4_1" and read.jobs["slurm:4"].id == "4_2"
    assert train.gpus_per_node is None  # the test cluster has no GPU gres


def as_slurm_23(doc: dict[str, Any]) -> dict[str, Any]:
    """The same answer in the shape Slurm 23.02 and later write (openapi v0.0.39+): states as
    lists, numbers as {"set", "infinite", "number"}, and GPUs in gres_detail/tres strings."""
    new = copy.deepcopy(doc)
    for j in new["jobs"]:
        j["job_state"] = [j["job_state"]]
        for key in ("start_time", "node_count", "array_job_id", "array_task_id"):
            value = j.get(key)
            j[key] = {"set": value is not None, "infinite": False, "number": value or 0}
    return new


def test_slurm_23_shapes_and_gpus_per_node() -> None:
    doc = as_slurm_23(captured())
    jobs = {j["job_id"]: j for j in doc["jobs"]}
    jobs[1]["gres_detail"] = ["gpu:h100:8(IDX:0-7)"]
    jobs[2]["tres_alloc_str"] = "cpu=2,mem=1000M,node=2,billing=2,gres/gpu=16,gres/gpu:h100=16"
    jobs[5]["tres_per_node"] = "gres/gpu:2"
    read = parse_squeue_json(json.dumps(doc))
    assert read.skipped == 0
    assert sorted(read.jobs) == ["slurm:1", "slurm:2", "slurm:4", "slurm:5"]
    assert read.jobs["slurm:1"].state == "RUNNING"
    assert read.jobs["slurm:1"].start_t == jobs[1]["start_time"]["number"]
    assert read.jobs["slurm:1"].gpus_per_node == 8
    assert read.jobs["slurm:2"].gpus_per_node == 8  # 16 over its 2 nodes
    assert read.jobs["slurm:5"].gpus_per_node == 2
    assert read.jobs["slurm:5"].id == "4_1"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "not JSON"),
        ("squeue: error: Invalid user: nobody", "not JSON"),
        ("[1, 2]", "not a job list"),
        ('{"jobs": 7}', "not a job list"),
        ('{"meta": {}}', 'no "jobs" key'),
        (
            '{"errors": [{"error": "Unable to contact slurm controller", "error_number": 1}]}',
            "Unable to contact slurm controller",
        ),
    ],
)
def test_what_is_not_a_job_list_is_refused_with_a_reason(text: str, said: str) -> None:
    with pytest.raises(SchedulerParseError) as err:
        parse_squeue_json(text)
    assert said in str(err.value)


def test_hostile_jobs_cost_only_themselves() -> None:
    doc = captured()
    good = next(j for j in doc["jobs"] if j["job_id"] == 1)
    good["name"] = "\x1b]0;owned\x07train\u202e" + "x" * 10_000
    good["user_name"] = "root\x9b2J"
    hostile: list[Any] = [
        {**good, "job_id": "1; rm -rf /"},  # not an integer
        {**good, "job_id": -4},
        {"name": "no id"},
        "a string",
        7,
        {**good, "job_id": 77, "nodes": "gpu[1-99999999]"},  # kept, with no nodes named
        {**good, "job_id": 78, "job_state": 42, "start_time": "soon", "gres_detail": [1, None]},
    ]
    doc["jobs"] = [good, *hostile]
    read = parse_squeue_json(json.dumps(doc))
    assert read.skipped == 5 and "could not be read" in read.problem
    assert sorted(read.jobs) == ["slurm:1", "slurm:77", "slurm:78"]
    name = read.jobs["slurm:1"].name or ""
    assert name.startswith("]0;ownedtrain") and len(name) <= 256
    assert "\x1b" not in name and "\x07" not in name and "\u202e" not in name
    assert read.jobs["slurm:1"].user == "root2J"
    assert read.jobs["slurm:77"].nodes == ()
    odd = read.jobs["slurm:78"]
    assert (odd.state, odd.start_t, odd.gpus_per_node) == (None, None, None)


# --------------------------------------------------------------------------------------------
# The bound: one call per period for the whole fleet
# --------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingRunner(CommandRunner):
    """Answers with the captured job list (or `result`), slowly enough to overlap callers."""

    def __init__(self, result: CommandResult | None = None) -> None:
        super().__init__()
        self.calls: list[tuple[str, ...]] = []
        self.result = result or CommandResult(0, stdout=FIXTURE.read_text())

    async def run(
        self, cmd: Command, on_line: OnLine | None = None, on_start: OnStart | None = None
    ) -> CommandResult:
        self.calls.append(cmd.argv)
        await asyncio.sleep(0.01)
        return self.result


def reader(runner: CommandRunner, clock: FakeClock, period_s: float = 60.0) -> SchedulerReader:
    return SchedulerReader(
        Command(("squeue", "--json")),
        parse_squeue_json,
        period_s=period_s,
        runner=runner,
        clock=clock,
        wall=clock,
    )


async def test_two_ticks_within_the_period_make_one_call() -> None:
    clock, runner = FakeClock(), CountingRunner()
    r = reader(runner, clock)
    await r.refresh()
    clock.now += 59.0
    await r.refresh()
    assert len(runner.calls) == 1 and len(r.jobs) == 4
    clock.now += 1.0
    await r.refresh()
    assert len(runner.calls) == 2


async def test_callers_at_once_share_one_call() -> None:
    clock, runner = FakeClock(), CountingRunner()
    r = reader(runner, clock)
    await asyncio.gather(*(r.refresh() for _ in range(50)))  # every view, host and request
    assert len(runner.calls) == 1 and "slurm:1" in r.jobs


async def test_a_failing_scheduler_is_not_asked_again_within_the_period() -> None:
    clock = FakeClock()
    runner = CountingRunner(CommandResult(1, output="squeue: error: Unable to contact slurm"))
    r = reader(runner, clock)
    for _ in range(5):
        await r.refresh()
        clock.now += 10.0
    assert len(runner.calls) == 1
    assert r.status() == "squeue exited 1: squeue: error: Unable to contact slurm"
    assert not r.ok and r.jobs == {}


async def test_the_run_loop_reads_once_per_period() -> None:
    clock, runner = FakeClock(), CountingRunner()
    r = reader(runner, clock, period_s=0.05)
    r._clock = asyncio.get_running_loop().time  # the loop sleeps in real time
    task = asyncio.create_task(r.run())
    await asyncio.sleep(0.28)
    task.cancel()
    # 0.28 s at one call per 0.05 s (each taking 0.01 s): 5 or 6 calls, never one per tick.
    assert 4 <= len(runner.calls) <= 7


# --------------------------------------------------------------------------------------------
# What the views are told
# --------------------------------------------------------------------------------------------


def fake_squeue(tmp_path: Path, body: str) -> Path:
    """A `squeue` program running `body` (Python), at an absolute path."""
    prog = tmp_path / "squeue"
    prog.write_text(f"#!{sys.executable}\nimport sys\n" + textwrap.dedent(body))
    prog.chmod(0o755)
    return prog


async def test_status_of_a_good_reading_then_a_failure(tmp_path: Path) -> None:
    state = tmp_path / "fail"
    prog = fake_squeue(
        tmp_path,
        f"""
        from pathlib import Path
        if Path({str(state)!r}).exists():
            print("slurm_load_jobs error: Unable to contact slurm controller", file=sys.stderr)
            sys.exit(1)
        print(Path({str(FIXTURE)!r}).read_text())
        """,
    )
    clock = FakeClock()
    r = SchedulerReader(
        Command((str(prog), "--json")), parse_squeue_json, period_s=30, clock=clock, wall=clock
    )
    assert r.status() == "squeue not read yet"
    await r.refresh()
    clock.now += 40
    assert r.status() == "squeue: 4 jobs holding nodes, read 40 s ago"
    state.touch()
    await r.refresh()
    clock.now += 20
    # The last good list stays, and its age and the failure are both said.
    assert r.status() == (
        "squeue exited 1: slurm_load_jobs error: Unable to contact slurm controller; "
        "the jobs as squeue gave them 60 s ago"
    )
    assert len(r.jobs) == 4 and not r.ok
    assert [key for key, _ in r.on_node("gpu003")] == ["slurm:2"]
    await r.aclose()


async def test_status_of_a_missing_scheduler_and_of_garbage(tmp_path: Path) -> None:
    clock = FakeClock()
    missing = SchedulerReader(
        Command(("no-such-squeue-gputui", "--json")), parse_squeue_json, period_s=30, clock=clock
    )
    await missing.refresh()
    assert missing.status() == "no-such-squeue-gputui: program not found"

    prog = fake_squeue(tmp_path, 'print("<html>502 Bad Gateway</html>")\n')
    garbage = SchedulerReader(Command((str(prog), "--json")), parse_squeue_json, period_s=30)
    await garbage.refresh()
    assert garbage.status().startswith(f"{prog} --json: not JSON")
    assert garbage.jobs == {}


async def test_a_job_list_longer_than_kept_is_refused_whole(tmp_path: Path) -> None:
    prog = fake_squeue(tmp_path, f"print(open({str(FIXTURE)!r}).read())\n")
    r = SchedulerReader(
        Command((str(prog), "--json"), keep_chars=2000), parse_squeue_json, period_s=30
    )
    await r.refresh()
    assert r.jobs == {} and "longer than gputui keeps" in r.status()


# --------------------------------------------------------------------------------------------
# The setting
# --------------------------------------------------------------------------------------------


def test_the_period_is_a_setting_of_the_hosts_file() -> None:
    hosts = 'hosts = ["gpu001"]\n'
    assert config_from_text(hosts).scheduler_period_s == 60.0
    assert config_from_text(hosts + "[scheduler]\nperiod_s = 0\n").scheduler_period_s == 0.0
    assert config_from_text(hosts + "[scheduler]\nperiod_s = 300\n").scheduler_period_s == 300
    with pytest.raises(ConfigError) as err:
        config_from_text(hosts + "[scheduler]\nperiod_s = 2\n")
    assert "scheduler.period_s: expected a number of seconds: 0 (never read" in str(err.value)
    with pytest.raises(ConfigError) as err:
        config_from_text(hosts + "[scheduler]\nperiod = 2\n")
    assert 'unknown key "period"' in str(err.value)


def test_the_job_list_runs_where_the_presets_actions_run() -> None:
    hosts = 'hosts = ["gpu001"]\n'

    def reader_of(text: str) -> SchedulerReader | None:
        return job_list_reader(config_from_text(hosts + textwrap.dedent(text)), operator="op")

    assert reader_of("") is None  # no scheduler preset
    assert reader_of('[actions]\npresets = ["kubernetes"]\n') is None  # lists no jobs (yet)
    slurm = '[actions]\npresets = ["slurm"]\n'
    assert reader_of(slurm + "[scheduler]\nperiod_s = 0\n") is None
    r = reader_of(slurm + '[actions.slurm]\nwhere = "slurmctl"\n[scheduler]\nperiod_s = 120\n')
    assert r is not None and r.period_s == 120
    assert r.command.where == "slurmctl"
    assert r.command.argv == ("squeue", "--json", "--states=RUNNING,COMPLETING,SUSPENDED")
    changed = reader_of(slurm + '[actions.list-jobs]\nargv = ["sudo", "squeue", "--json"]\n')
    assert changed is not None and changed.command.argv == ("sudo", "squeue", "--json")
    # A list for one node cannot serve the fleet.
    assert reader_of(slurm + '[actions.list-jobs]\nwhere = "{node}"\n') is None
