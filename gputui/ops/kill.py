"""Ending a GPU process from the process table: SIGTERM, then SIGKILL after a grace, journaled.

    plan = plan_kill(spec, shown, pid, grace_s=10.0)       # ActionError when it must not run
    plan.question(), plan.preview()                         # the confirmation's words
    outcome = await run_kill(journal, runner, plan, print)  # intent, the command, completion

Only a process the host listed on a GPU in its latest reading can be signalled: a pid typed
or remembered from an older reading may belong to anyone by now. The command runs on the host
as argv over the path every action takes (gputui/ops/runner.py: locally without a shell for
`localhost`, else over the collector's SSH), with the interpreter the host's agent runs on,
and it signals the process only while it is the one listed (same pid, same start time:
gputui/ops/host_kill.py). It is journaled as the actions are, before it runs and after it ends,
under the action name `kill-process`. Read-only configurations refuse it, with nothing sent
(OperatorActions.refuse_if_readonly, which calls these).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gputui.config.model import HostSpec
from gputui.config.schema import DEFAULT_KILL_GRACE_S
from gputui.core.model import GpuProcess, HostSnapshot
from gputui.core.text import plain
from gputui.ops.journal import Journal
from gputui.ops.orphans import process_group_of
from gputui.ops.plans import ActionError
from gputui.ops.runner import LOCAL, Command, CommandRunner

#: The journal's action name for a kill.
KILL_ACTION = "kill-process"
#: What the host script's exit status means (gputui/ops/host_kill.py).
_EXITS = {
    0: "ended",
    3: "was not running any more, or was another process: nothing was sent",
    4: "could not be signalled: not permitted",
    5: "is still running after SIGKILL",
}
_SCRIPT = (Path(__file__).parent / "host_kill.py").read_text(encoding="utf-8")
_COMMAND_CHARS = 120  # of a command line in the confirmation's first line

OnOutput = Callable[[str], None]


@dataclass(frozen=True)
class KillTarget:
    """A GPU process as the host's latest reading listed it."""

    host: str
    pid: int
    gpus: tuple[int, ...]
    process: GpuProcess

    @property
    def user(self) -> str:
        p = self.process
        return p.user or (f"uid {p.uid}" if p.uid is not None else "an unknown user")

    @property
    def command(self) -> str:
        return plain(self.process.cmdline or self.process.name or "an unnamed process")


@dataclass(frozen=True)
class KillPlan:
    target: KillTarget
    grace_s: float
    command: Command

    @property
    def where(self) -> str:
        return self.command.where

    def summary(self) -> str:
        t = self.target
        return f"kill pid {t.pid} of {t.user} on {t.host}"

    def question(self) -> str:
        """The confirmation: the process (pid, command), its user and its host."""
        t = self.target
        gpus = ", ".join(f"GPU{g}" for g in t.gpus)
        command = plain(t.command, _COMMAND_CHARS)
        return f"Kill pid {t.pid} ({command}) of {t.user} on {t.host} ({gpus})?"

    def preview(self) -> list[str]:
        """What will happen, in words, and the command that does it."""
        t = self.target
        where = "here" if self.where == LOCAL else f"on {self.where} over SSH"
        argv = self.command.argv
        shown = [argv[0], "-c", "<gputui/ops/host_kill.py>", *argv[3:]]
        lines = [
            f"SIGTERM to pid {t.pid} on {t.host}, then SIGKILL if it is still running "
            f"{self.grace_s:g} s later;",
            "only while pid "
            + str(t.pid)
            + " is still the process listed (its start time is checked first).",
            f"command line: {t.command}",
            f"runs {where}: {' '.join(shown)}",
            f"journaled as {KILL_ACTION}.",
        ]
        return [plain(line) for line in lines]


@dataclass(frozen=True)
class KillOutcome:
    ok: bool
    text: str
    exit_code: int | None = None
    journal_id: int = 0


def find_target(shown: HostSnapshot | None, host: str, pid: int) -> KillTarget:
    """The process `pid` as `host`'s latest reading lists it; ActionError when it does not."""
    sample = shown.slow_sample if shown is not None else None
    if sample is None:
        raise ActionError(f"{host} has not listed its GPU processes yet: nothing is killed")
    found = [(r.index, p) for r in sample.gpus for p in r.processes or () if p.pid == pid]
    if not found:
        raise ActionError(
            f"pid {pid} is not a GPU process of {host} in its latest reading: nothing is killed"
        )
    return KillTarget(host=host, pid=pid, gpus=tuple(g for g, _ in found), process=found[0][1])


def plan_kill(
    spec: HostSpec,
    shown: HostSnapshot | None,
    pid: int,
    *,
    grace_s: float = DEFAULT_KILL_GRACE_S,
    local_python: str = sys.executable,
) -> KillPlan:
    """The kill of `pid` on host `spec` (its snapshot `shown`); ActionError when refused."""
    target = find_target(shown, spec.name, pid)
    local = spec.transport == "local"
    # The interpreter the host's agent runs with: this one for localhost (collect/local_source),
    # the host's configured python over SSH.
    python = local_python if local else spec.python
    started = target.process.started_t
    argv = (
        python,
        "-c",
        _SCRIPT,
        str(pid),
        "-" if started is None else f"{started:.2f}",
        f"{grace_s:g}",
    )
    command = Command(argv=argv, where=LOCAL if local else spec.name, timeout_s=grace_s + 30.0)
    return KillPlan(target=target, grace_s=grace_s, command=command)


async def run_kill(
    journal: Journal, runner: CommandRunner, plan: KillPlan, on_output: OnOutput | None = None
) -> KillOutcome:
    """Run the plan's command, journaled: the intent before it starts, its process group as
    it starts (a local one), how it ended after. Never raises for the command's failure."""
    cmd, t = plan.command, plan.target
    intent = journal.begin_run(uuid.uuid4().hex, KILL_ACTION, t.host, 0, cmd.argv, cmd.where)

    def started(pid: int) -> None:
        nonlocal intent
        intent = journal.record_process_group(intent, process_group_of(pid))

    def line(text: str) -> None:
        if on_output is not None:
            on_output(plain(text))

    result = await runner.run(cmd, line, on_start=started)
    done = journal.end_run(intent, result.exit_code, result.output, result.error)
    what = f"pid {t.pid} ({plain(t.command, 60)}) of {t.user} on {t.host}"
    if result.error is not None:
        return KillOutcome(False, f"kill {what}: {result.error}", result.exit_code, done.id)
    code = result.exit_code
    said = _EXITS.get(code if code is not None else -1, f"kill exited with status {code}")
    return KillOutcome(code == 0, f"{what} {said}", code, done.id)
