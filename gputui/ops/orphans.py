"""Local commands that outlive gputui: their process group, recorded at start, checked later.

A local command runs in a session of its own (runner.py), so that a timeout can end all of
it; the same makes it outlive gputui when gputui is killed with SIGKILL. Its process group id
(its pid, as it leads the group) is therefore written to the journal as soon as it starts, and
when gputui starts again the group of each interrupted command is looked for:

- no process group with that id, or the machine rebooted since: **gone**;
- the group exists and its leader started at the recorded clock tick of the same boot (Linux's
  /proc/<pid>/stat and /proc/sys/kernel/random/boot_id): **running**. The start time, not
  the command line, is what identifies it: `sh -c '...; exec sleep 60'` changes its command
  line as it runs, its start time never changes;
- the group exists but its leader is another process (the id was reused): **gone**;
- its leader has exited (or is a zombie nobody reaped) and other members still run:
  **running**. A group id is not given to a new process while any member of the group lives,
  so the members are the command's own, unless the id went round all pids and its new leader
  exited too; with no member left but zombies: **gone**;
- the group exists but nothing can be compared (no /proc): **unverified**.

gputui never stops such a command itself: it says so and gives the command to stop it.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import NamedTuple

from gputui.core.model import FleetEvent, Level
from gputui.ops.records import ActionRun, GroupState, ProcessGroup, this_machine

PROC = Path("/proc")
# Fields of /proc/<pid>/stat (man 5 proc: 3 state, 5 pgrp, 22 starttime), counted from the
# first field after the ")" that ends the process name.
_STATE, _PGRP, _STARTTIME = 0, 2, 19


class _Stat(NamedTuple):
    state: str  # "Z": a zombie, ended but not yet reaped
    pgrp: int
    start_ticks: int


def process_group_of(pid: int, proc: Path = PROC) -> ProcessGroup:
    """The process group led by `pid` (a command just started in its own session)."""
    return ProcessGroup(pgid=pid, boot_id=boot_id(proc), start_ticks=start_ticks(pid, proc))


def boot_id(proc: Path = PROC) -> str | None:
    """This boot's random id (Linux), or None where the system has none."""
    try:
        return (proc / "sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def start_ticks(pid: int, proc: Path = PROC) -> int | None:
    """When `pid` started, in clock ticks since boot (Linux), or None (gone, or no /proc)."""
    stat = _read_stat(proc / str(pid) / "stat")
    return stat.start_ticks if stat is not None else None


def _read_stat(path: Path) -> _Stat | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    # The name in parentheses may itself hold spaces and parentheses: split after the last ")".
    fields = text.rpartition(")")[2].split()
    try:
        return _Stat(fields[_STATE], int(fields[_PGRP]), int(fields[_STARTTIME]))
    except (IndexError, ValueError):
        return None


def _live_members(pgid: int, proc: Path) -> bool:
    """Whether a process of group `pgid` runs (a zombie does not)."""
    try:
        pids = [name for name in os.listdir(proc) if name.isdigit()]
    except OSError:
        return False
    for pid in pids:
        stat = _read_stat(proc / pid / "stat")
        if stat is not None and stat.pgrp == pgid and stat.state != "Z":
            return True
    return False


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)  # signal 0: checks only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's group (the id was reused)
    return True


def probe_group(group: ProcessGroup, proc: Path = PROC) -> GroupState:
    """What became of `group` (the module docstring gives the rules)."""
    boot = boot_id(proc)
    if group.boot_id is not None and boot is not None and boot != group.boot_id:
        return "gone"  # the machine restarted since: no process of then is left
    if not group_exists(group.pgid):
        return "gone"
    if group.start_ticks is None or group.boot_id is None or boot is None:
        return "unverified"
    leader = _read_stat(proc / str(group.pgid) / "stat")
    if leader is not None and leader.start_ticks != group.start_ticks:
        return "gone"  # the id now belongs to another process
    if leader is not None and leader.state != "Z":
        return "running"
    # Its leader has ended: the group lives on in the members left, if any still runs.
    return "running" if _live_members(group.pgid, proc) else "gone"


def stop_command(pgid: int) -> str:
    """The command that stops every process of the group."""
    return f"kill -TERM -- -{pgid}"


def status_text(run: ActionRun) -> str:
    """An interrupted run's status with what became of its process group, for a listing."""
    group = run.group
    if group is None:
        return "interrupted"
    pgid = group.pgid
    if run.group_state == "running":
        return f"interrupted; its process group {pgid} is still running"
    if run.group_state == "gone":
        return f"interrupted; its process group {pgid} is gone"
    if run.group_state == "unverified":
        return f"interrupted; a process group {pgid} exists, perhaps not its own"
    if run.machine != this_machine():
        return f"interrupted; its process group {pgid} is on {run.machine}"
    return f"interrupted; process group {pgid}"


def orphan_message(run: ActionRun) -> str:
    """One sentence for the operator: which command, what became of it, what to do."""
    assert run.group is not None, "only runs with a process group are checked"
    pgid = run.group.pgid
    what = f"`{shlex.join(run.argv)}` (action {run.action} on {run.node}, interrupted)"
    if run.group_state == "running":
        return (
            f"{what} is still running as process group {pgid}; gputui leaves it alone: "
            f"stop it with `{stop_command(pgid)}`"
        )
    if run.group_state == "unverified":
        return (
            f"{what}: a process group {pgid} exists, but gputui cannot tell whether it is this "
            f"command's; look with `ps -o pid,lstart,args -p $(pgrep -d, -g {pgid})` before "
            f"stopping it with `{stop_command(pgid)}`"
        )
    return f"{what} has ended: its process group {pgid} is gone; check whether it took effect"


def orphan_events(runs: list[ActionRun], t: float) -> list[FleetEvent]:
    """The event log's lines for checked interrupted runs: a warning while one still runs."""
    return [
        FleetEvent(
            t=t,
            host=run.node,
            kind="interrupted",
            text=orphan_message(run),
            level=Level.OK if run.group_state == "gone" else Level.WARN,
        )
        for run in runs
        if run.group is not None
    ]
