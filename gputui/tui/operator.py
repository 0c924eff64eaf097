"""The operator's flows as the app sees them: mark failed, resume, run a configured action.

Every request is prepared first (so the exact commands can be shown and confirmed) and run
second. `OpsOperator` (gputui/tui/ops_operator.py) implements this over gputui.ops: the journal
and the action runner. `SessionOperator` is the fallback when no journal can be used: it changes
only what this session's monitor shows and says so in every outcome, so an operator is never
led to believe that a scheduler was told.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from gputui.core.model import FleetSnapshot
from gputui.tui.ports import MonitorPort

RequestKind = Literal["fail", "resume", "action", "spare", "kill"]
OnOutput = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    """How an operator request ended, in one sentence for the log."""

    ok: bool
    text: str
    refused: bool = False  # a guard refused it (another tool took the node out): --force exists


@dataclass(frozen=True)
class ActionChoice:
    """A configured action that can run on a host."""

    name: str
    description: str = ""


@dataclass(frozen=True)
class Prepared:
    """A request resolved for one host: exactly what will run, shown before it runs."""

    kind: RequestKind
    host: str
    summary: str  # `mark gpu005 failed: "XID 79"`
    preview: tuple[str, ...] = ()  # the exact commands, one per line, with where each runs
    commands: int = 0  # commands that will run; 0 when only the journal and the view change
    confirm: bool = True  # ask before running (the configured action says)
    handle: object = field(default=None, compare=False)  # the ops layer's own operation
    # The jobs the request hits, in one line ("jobs on gpu002: slurm:4242 train (alice)"):
    # marking a node failed shows them before it is done, even when no command runs.
    jobs: str = ""
    # The confirmation's question, where the request words its own (a kill names the process,
    # its user and its host); else the dialog asks about `summary`.
    question: str = ""


class OperatorPort(Protocol):
    @property
    def journaled(self) -> bool:
        """Whether requests are written to the durable journal."""
        ...

    @property
    def refusal(self) -> str | None:
        """Why every request is refused now (watch only), said before any dialog; None: not."""
        ...

    def actions(self, host: str) -> Sequence[ActionChoice]: ...

    def spare_for(self, host: str, snapshot: FleetSnapshot | None) -> str | None:
        """The healthy spare that could replace `host` (its group's first), if any."""
        ...

    async def prepare(
        self,
        kind: RequestKind,
        host: str,
        *,
        reason: str = "",
        action: str = "",
        force: bool = False,
        spare: str = "",
    ) -> Prepared:
        """Resolve a request; raises ValueError with a sentence when it cannot be done."""
        ...

    async def prepare_kill(self, host: str, pid: int) -> Prepared:
        """SIGTERM, then SIGKILL after the grace, to GPU process `pid` of `host`; its
        `summary` is the question naming the process, its user and its host (ValueError
        with a sentence when refused: read-only, not a GPU process of that host)."""
        ...

    async def run(self, prepared: Prepared, on_output: OnOutput) -> Outcome:
        """Carry out a prepared request, calling `on_output` for each line of output."""
        ...


class SessionOperator:
    """Marks and resumes hosts in this session's monitor only; runs no action."""

    NOT_JOURNALED = "this session only: no journal, no scheduler told"

    def __init__(self, monitor: Callable[[], MonitorPort | None]) -> None:
        self._monitor = monitor

    @property
    def journaled(self) -> bool:
        return False

    @property
    def refusal(self) -> str | None:
        return None

    def actions(self, host: str) -> Sequence[ActionChoice]:
        return ()

    def spare_for(self, host: str, snapshot: FleetSnapshot | None) -> str | None:
        return None

    async def prepare(
        self,
        kind: RequestKind,
        host: str,
        *,
        reason: str = "",
        action: str = "",
        force: bool = False,
        spare: str = "",
    ) -> Prepared:
        if kind in ("action", "spare"):
            raise ValueError("no actions can run without the journal")
        what = f"mark {host} failed: {reason!r}" if kind == "fail" else f"return {host} to service"
        return Prepared(kind, host, f"{what} ({self.NOT_JOURNALED})")

    async def prepare_kill(self, host: str, pid: int) -> Prepared:
        raise ValueError("no journal is open: a process is killed only where it is journaled")

    async def run(self, prepared: Prepared, on_output: OnOutput) -> Outcome:
        monitor = self._monitor()
        if monitor is None:
            return Outcome(False, "the monitor is not running")
        monitor.set_marked_failed(prepared.host, prepared.kind == "fail")
        return Outcome(True, prepared.summary)
