"""A local command's process group: recorded when it starts, found (or not) on a later start."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gputui.config import Config, HostGroup, HostSpec
from gputui.ops import orphans
from gputui.ops.actions import OperatorActions
from gputui.ops.journal import Journal
from gputui.ops.journal_schema import _V1, SCHEMA_VERSION
from gputui.ops.orphans import orphan_message, probe_group, process_group_of, status_text
from gputui.ops.records import ProcessGroup
from gputui.ops.runner import Command, CommandRunner

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="the identity check reads Linux's /proc"
)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def group() -> Iterator[subprocess.Popen[bytes]]:
    """A `sleep` leading a session of its own, as the runner starts a local command."""
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    yield proc
    with_group_killed(proc)


def with_group_killed(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


# -- the check ------------------------------------------------------------------------------


def test_a_live_group_is_running_and_a_killed_one_gone(group: subprocess.Popen[bytes]) -> None:
    recorded = process_group_of(group.pid)
    assert recorded.pgid == group.pid and recorded.boot_id and recorded.start_ticks
    assert probe_group(recorded) == "running"
    with_group_killed(group)
    assert probe_group(recorded) == "gone"


def test_an_id_given_to_another_process_is_gone(group: subprocess.Popen[bytes]) -> None:
    recorded = process_group_of(group.pid)
    assert recorded.start_ticks is not None
    earlier = ProcessGroup(group.pid, recorded.boot_id, recorded.start_ticks - 1)
    assert probe_group(earlier) == "gone"  # same number, another process: not the command


def test_a_group_of_an_earlier_boot_is_gone(group: subprocess.Popen[bytes]) -> None:
    recorded = process_group_of(group.pid)
    other_boot = ProcessGroup(group.pid, "another-boot", recorded.start_ticks)
    assert probe_group(other_boot) == "gone"


def test_without_proc_a_live_group_is_unverified(
    group: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    bare = process_group_of(group.pid, proc=tmp_path)  # a system without /proc
    assert bare == ProcessGroup(group.pid)
    assert probe_group(bare, proc=tmp_path) == "unverified"
    assert probe_group(bare) == "unverified"  # recorded without /proc: nothing to compare
    with_group_killed(group)
    assert probe_group(bare, proc=tmp_path) == "gone"  # no group at all needs no /proc


def test_a_group_whose_leader_exited_runs_on_in_its_members() -> None:
    # The leader exits at once, leaving a background sleep in its group.
    leader = subprocess.Popen(["sh", "-c", "sleep 30 & echo $!"], start_new_session=True,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    recorded = process_group_of(leader.pid)
    assert leader.stdout is not None
    member = int(leader.stdout.readline())
    leader.wait(timeout=10)
    try:
        assert probe_group(recorded) == "running"
    finally:
        os.kill(member, signal.SIGKILL)
    wait_for(lambda: probe_group(recorded) == "gone")


def process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def test_a_zombie_leader_alone_is_gone(group: subprocess.Popen[bytes]) -> None:
    recorded = process_group_of(group.pid)
    os.kill(group.pid, signal.SIGKILL)  # not waited for: a zombie until the fixture reaps it
    wait_for(lambda: process_state(group.pid) == "Z")
    assert orphans.group_exists(group.pid)  # not reaped yet: the group id is still held
    assert probe_group(recorded) == "gone"


def test_ids_that_name_more_than_a_command_are_refused() -> None:
    for pgid in (-5, 0, 1):
        with pytest.raises(ValueError):
            ProcessGroup(pgid)


# -- the journal ----------------------------------------------------------------------------


def test_a_version_1_journal_is_migrated_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    raw = sqlite3.connect(path)
    for statement in _V1:
        raw.execute(statement)
    raw.execute(
        "INSERT INTO action_runs (run_id, action, node, step, argv, location, operator, pid, "
        "machine, started) VALUES ('r', 'drain', 'gpu001', 0, '[\"true\"]', 'local', 'op', 1, "
        "'elsewhere', 5.0)"
    )
    raw.execute("PRAGMA user_version = 1")
    raw.commit()
    raw.close()
    with Journal.open(path) as j:
        (run,) = j.runs()
        assert (run.action, run.group, run.group_state) == ("drain", None, None)
        assert j.check_interrupted() == []  # no process group recorded: nothing to look for
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 2
    raw.close()


def set_column(j: Journal, run_id: int, column: str, value: object) -> None:
    raw = sqlite3.connect(j.path)
    with raw:
        raw.execute(f"UPDATE action_runs SET {column} = ? WHERE id = ?", (value, run_id))
    raw.close()


def interrupted(j: Journal, group: ProcessGroup) -> int:
    """An intent whose writer is gone, its command started as `group`."""
    run = j.begin_run("r", "slow", "gpu001", 0, ["sleep", "30"], "local")
    j.record_process_group(run, group)
    set_column(j, run.id, "pid", 2**22 + 1)  # above any pid_max: no process has it
    return run.id


def test_the_finding_is_recorded_and_gone_is_told_once(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite3") as j:
        run_id = interrupted(j, ProcessGroup(4242, "b", 7))
        (run,) = j.check_interrupted(lambda g: "running")
        assert (run.id, run.group_state) == (run_id, "running")
        assert status_text(run) == "interrupted; its process group 4242 is still running"
        assert "stop it with `kill -TERM -- -4242`" in orphan_message(run)
        assert len(j.check_interrupted(lambda g: "running")) == 1  # told on every start
        (run,) = j.check_interrupted(lambda g: "gone")
        assert run.group_state == "gone" and run.group_checked is not None
        assert "has ended: its process group 4242 is gone" in orphan_message(run)
        assert j.check_interrupted(lambda g: pytest.fail("gone is final")) == []
        (stored,) = j.runs()
        assert stored.group == ProcessGroup(4242, "b", 7) and stored.group_state == "gone"
        assert status_text(stored) == "interrupted; its process group 4242 is gone"


def test_only_interrupted_local_groups_of_this_machine_are_checked(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j.sqlite3") as j:
        mine = j.begin_run("r", "slow", "gpu001", 0, ["sleep", "30"], "local")
        j.record_process_group(mine, ProcessGroup(4242))  # its writer (this test) is alive
        other = interrupted(j, ProcessGroup(4343))
        set_column(j, other, "machine", "elsewhere")
        interrupted(j, ProcessGroup(4444))
        j.end_run(j.runs()[-1], 0)  # completed: nothing to look for
        assert j.check_interrupted(lambda g: pytest.fail(f"{g} checked")) == []
        stored = {r.id: r for r in j.runs()}
        assert status_text(stored[other]) == ("interrupted; its process group 4343 is on elsewhere")


# -- the runner and the actions -------------------------------------------------------------


def test_the_runner_hands_over_the_command_group_as_it_starts() -> None:
    seen: list[int] = []
    # The command prints its pid and its process group (field 5 of its /proc stat).
    cmd = Command(("sh", "-c", "echo $$ $(cut -d' ' -f5 /proc/$$/stat)"))
    result = asyncio.run(CommandRunner().run(cmd, None, seen.append))
    assert result.ok
    pid, pgid = map(int, result.stdout.split())
    assert seen == [pid] and pgid == pid  # it leads its own group


def test_a_command_whose_group_cannot_be_recorded_is_not_left_running(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    started: list[int] = []

    def refuse(pid: int) -> None:
        started.append(pid)
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
        raise OSError("disk full")

    cmd = Command(("sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"))
    with pytest.raises(OSError):
        asyncio.run(CommandRunner().run(cmd, None, refuse))
    assert not orphans.group_exists(started[0])


def test_an_action_journals_its_command_group(tmp_path: Path) -> None:
    config = Config(
        path=Path("test"),
        hosts=[HostSpec(name="gpu001", group="all")],
        groups={"all": HostGroup(name="all", hosts=("gpu001",))},
        # It lingers a moment, so that it is still there to be looked at once started.
        actions={"pid": {"argv": ["sh", "-c", "echo $$; sleep 0.5"], "confirm": False}},
    )
    with Journal.open(tmp_path / "j.sqlite3") as j:
        ops = OperatorActions(config, j)
        outcome = asyncio.run(ops.run(ops.prepare_action("pid", "gpu001")))
        assert outcome.ok
        (run,) = j.runs()
        assert run.group is not None and run.group.pgid == int(run.output)  # the command's pid
        assert run.group.boot_id == orphans.boot_id() and run.group.start_ticks is not None
