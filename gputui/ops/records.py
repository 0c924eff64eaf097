"""What the journal holds, as typed records (one per table row), and how failures are counted.

A *failure* is what the Bayesian rate in core/risk.py counts: one fault episode of one GPU.
An episode opens at the first fault that qualifies (a GPU's verdict turning critical or failed,
or an agent event of failed level such as XID 79, 95, 140, 64 or a lost GPU) and closes when
that GPU is seen back below critical or its node is resumed by the operator. Everything else
the GPU reports while the episode is open belongs to the same failure: an XID 79 is followed
by a lost GPU and a failed verdict, and is still one failure. docs/operations.md says the same.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from gputui.core.model import Level

NodeState = Literal["failed", "in_service", "spare_active"]
NODE_STATES: tuple[NodeState, ...] = ("failed", "in_service", "spare_active")
RunStatus = Literal["running", "ok", "failed", "interrupted"]
#: What became of an interrupted local command's process group, checked when gputui starts:
#: running (its group is still there), gone, or unverified (a group of that number exists, but
#: nothing tells whether it is the command's). gputui/ops/orphans.py makes the check.
GroupState = Literal["running", "gone", "unverified"]
GROUP_STATES: tuple[GroupState, ...] = ("running", "gone", "unverified")

#: Fault kinds coming from the agent's pushed events (FleetEvent.kind).
EVENT_FAULT_KINDS = frozenset({"xid", "ecc_dbe", "gpu_lost", "reset_required"})


@dataclass(frozen=True)
class NodeEvent:
    """A node state change the operator made (or gputui made on the operator's word)."""

    t: float
    node: str
    state: NodeState
    reason: str
    operator: str
    detail: str = ""
    id: int = 0
    # A failure's jobs (keys such as slurm:4242) as known when it was marked; None: unknown.
    jobs: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ProcessGroup:
    """A local command's process group: its id, and its leader's start to recognise it by.

    The command leads its own session, so the group id is its pid. `start_ticks` (clock ticks
    since boot, from /proc/<pid>/stat) and `boot_id` tell the group apart from a later one that
    got the same number; both are None where the system has no /proc.
    """

    pgid: int
    boot_id: str | None = None
    start_ticks: int | None = None

    def __post_init__(self) -> None:
        # 0, 1 and negative ids name our own group, every process or nothing: a stop command
        # built from one (kill -- -1) would signal far more than a command.
        if self.pgid <= 1:
            raise ValueError(f"{self.pgid} is not the process group of a command")


@dataclass(frozen=True)
class ActionRun:
    """One command gputui ran for an action: its intent and, once it ended, its completion."""

    id: int
    run_id: str  # shared by the commands of one operator request
    action: str
    node: str
    step: int
    argv: tuple[str, ...]  # exactly what was executed
    where: str  # "local" or the SSH alias it ran on
    operator: str
    pid: int  # the gputui process that wrote the intent
    machine: str  # the host name of the machine that process ran on
    started: float
    ended: float | None = None
    exit_code: int | None = None
    error: str | None = None  # gputui's own reason (timeout, SSH failure, program not found)
    output: str = ""  # the tail of stdout and stderr
    group: ProcessGroup | None = None  # local commands only, recorded once started
    group_state: GroupState | None = None  # of an interrupted command: found at a later start
    group_checked: float | None = None  # when `group_state` was found

    @property
    def status(self) -> RunStatus:
        if self.ended is None:
            return "running" if writer_alive(self.pid, self.machine) else "interrupted"
        return "ok" if self.exit_code == 0 and self.error is None else "failed"


@dataclass(frozen=True)
class Fault:
    """A fault the monitor saw on a node (see the module docstring for which ones count)."""

    t: float
    node: str
    kind: str
    level: int
    gpu: int | None = None
    uuid: str | None = None
    xid: int | None = None
    text: str = ""
    id: int = 0

    @property
    def opens_episode(self) -> bool:
        if self.kind == "verdict":
            return self.level >= Level.CRITICAL
        return self.kind in EVENT_FAULT_KINDS and self.level >= Level.FAILED

    @property
    def gpu_key(self) -> str:
        """The GPU this fault belongs to: its uuid when known, else its index on the node."""
        if self.uuid:
            return self.uuid
        return f"gpu{self.gpu}" if self.gpu is not None else "host"


JournalEntry = NodeEvent | ActionRun | Fault


def entry_time(entry: JournalEntry) -> float:
    return entry.started if isinstance(entry, ActionRun) else entry.t


_MACHINE = socket.gethostname()


def this_machine() -> str:
    return _MACHINE


def writer_alive(pid: int, machine: str) -> bool:
    """Whether the process that wrote an intent still runs (only knowable on its machine)."""
    if machine != _MACHINE:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def count_failures(
    faults: Iterable[Fault], node_events: Iterable[NodeEvent], since: float | None = None
) -> dict[str, int]:
    """Failure episodes per node that opened at or after `since` (all when None)."""
    timeline: list[tuple[float, int, Fault | NodeEvent]] = [(f.t, 1, f) for f in faults]
    # A resume at the same instant as a fault is ordered first: the fault is news.
    timeline += [(e.t, 0, e) for e in node_events if e.state == "in_service"]
    timeline.sort(key=lambda item: (item[0], item[1]))
    open_episodes: set[tuple[str, str]] = set()
    counts: dict[str, int] = {}
    for t, _, item in timeline:
        if isinstance(item, NodeEvent):
            open_episodes = {key for key in open_episodes if key[0] != item.node}
            continue
        key = (item.node, item.gpu_key)
        if item.kind == "recovered":
            open_episodes.discard(key)
        elif item.opens_episode and key not in open_episodes:
            open_episodes.add(key)
            if since is None or t >= since:
                counts[item.node] = counts.get(item.node, 0) + 1
    return counts
