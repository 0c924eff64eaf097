"""Operator actions: what the TUI and the CLI call to take nodes out, bring them back, and
bring spares in. Every command is journaled as an intent before it runs and completed after.

    ops = OperatorActions(config, journal, ssh_context, monitor=monitor)   # monitor optional
    op = ops.prepare_fail("gpu002", "XID 79")            # on_fail actions, or actions=[...]
    print("\\n".join(op.preview()))                       # the exact argv and where
    if not op.needs_confirm or operator_says_yes():
        outcome = await ops.run(op, on_output=print)     # streams "[drain] $ scontrol ..."
    outcome.ok, outcome.errors()

Failures of one command are reported, never raised: a failed step stops its action and the
actions after it, except a step run once per job or per line, where every job is tried and
each failure is reported on its own.

The jobs on a node (`read_jobs`) come from the live monitor's snapshot, or, on the command
line, from one reading of the node's GPU processes; where the node cannot say, from the
scheduler's job list, read at most once per `[scheduler] period_s` (gputui/ops/scheduler.py).
"""

from __future__ import annotations

import json
import shlex
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from gputui.collect.fleet import agent_args, sim_scenarios, ssh_options
from gputui.collect.live import LiveMonitor
from gputui.collect.oneshot import OneShotJob, run_oneshot
from gputui.config import Config
from gputui.config.errors import did_you_mean
from gputui.core.model import FleetSnapshot, HostSnapshot, HostState, JobKind
from gputui.ops import node_jobs
from gputui.ops.catalog import LOCAL, ActionCatalog, load_actions
from gputui.ops.job_list import job_list_reader
from gputui.ops.journal import Journal
from gputui.ops.kill import KillOutcome, KillPlan, plan_kill, run_kill
from gputui.ops.node_jobs import NodeJobs
from gputui.ops.nodes import NodeStatus, choose_spare, node_statuses
from gputui.ops.orphans import process_group_of
from gputui.ops.plans import ActionError, Operation, Plan, PlannedStep, build_plan
from gputui.ops.presets import SchedulerState, StateParseError
from gputui.ops.records import NodeEvent
from gputui.ops.runner import Command, CommandResult, CommandRunner
from gputui.ops.scheduler import SchedulerReader, age_text
from gputui.ops.templates import TemplateError

if TYPE_CHECKING:
    from gputui.collect.ssh import SshContext

__all__ = [
    "ActionError",
    "ActionOutcome",
    "NodeJobs",
    "Operation",
    "OperatorActions",
    "Outcome",
    "Plan",
    "StepOutcome",
]

#: Why every request is refused when the hosts file (or --readonly) says watch only.
READONLY_REFUSAL = (
    "read-only: this gputui only watches (--readonly, or readonly = true in hosts.toml); "
    "nothing is marked, resumed, run or signalled"
)

#: The longest the command line waits for a node to list its GPU processes: an SSH connection
#: (10 s by default) and the agent's start (NVML without persistence mode takes seconds).
NODE_READ_TIMEOUT_S = 20.0

OnOutput = Callable[[str], None]
ActionStatus = Literal["ok", "failed", "refused", "skipped", "not_run"]


@dataclass(frozen=True)
class StepOutcome:
    argv: tuple[str, ...]
    where: str
    exit_code: int | None
    error: str | None = None
    output: str = ""  # tail of stdout and stderr
    journal_id: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.error is None

    def problem(self) -> str:
        """One line: the command, how it ended, and its last line of output."""
        how = self.error or f"exit {self.exit_code}"
        last = next((ln.strip() for ln in reversed(self.output.splitlines()) if ln.strip()), "")
        where = "" if self.where == LOCAL else f" on {self.where}"
        text = f"`{shlex.join(self.argv)}`{where} failed ({how})"
        return f"{text}: {last}" if last and last not in how else text


@dataclass(frozen=True)
class ActionOutcome:
    action: str
    node: str
    status: ActionStatus
    steps: tuple[StepOutcome, ...] = ()
    note: str = ""  # why it was refused, skipped or not run; what the scheduler said

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "skipped")

    def problems(self) -> list[str]:
        if self.status == "refused" or (self.status == "failed" and self.note):
            return [f"{self.action}: {self.note}"]
        return [f"{self.action}: {s.problem()}" for s in self.steps if not s.ok]


@dataclass(frozen=True)
class Outcome:
    operation: Operation
    actions: tuple[ActionOutcome, ...] = ()
    state: NodeEvent | None = None  # the node state change recorded, if any
    run_id: str = ""

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.actions)

    @property
    def refused(self) -> bool:
        return any(a.status == "refused" for a in self.actions)

    def errors(self) -> list[str]:
        """One line per problem, ready to print."""
        return [line for a in self.actions for line in a.problems()]


@dataclass
class _Emitter:
    on_output: OnOutput | None
    prefix: str = ""

    def __call__(self, text: str) -> None:
        if self.on_output is not None:
            self.on_output(f"[{self.prefix}] {text}" if self.prefix else text)


class OperatorActions:
    """The operator's verbs over one hosts file, one journal and (optionally) a live monitor.

    Raises ConfigError at construction when the file's [actions] are wrong, ActionError from
    the prepare_* and plan methods when a request cannot be planned (unknown host or action,
    missing or unsafe value). `run` never raises for a command that fails.
    """

    def __init__(
        self,
        config: Config,
        journal: Journal,
        ssh: SshContext | None = None,
        *,
        monitor: LiveMonitor | None = None,
        runner: CommandRunner | None = None,
    ) -> None:
        self.config = config
        self.journal = journal
        self.catalog: ActionCatalog = load_actions(config)
        self.monitor = monitor
        self._runner = runner or CommandRunner(ssh)
        self.scheduler: SchedulerReader | None = job_list_reader(
            config, catalog=self.catalog, runner=runner, ssh=ssh, operator=journal.operator
        )

    async def aclose(self) -> None:
        """Close the SSH connections opened for remote actions and the scheduler's list."""
        await self._runner.aclose()
        if self.scheduler is not None:
            await self.scheduler.aclose()

    # -- jobs ---------------------------------------------------------------------------------

    @property
    def job_kind(self) -> JobKind:
        """The kind of job the scheduler preset acts on (Slurm without one)."""
        sched = self.catalog.scheduler
        return sched.job_kind if sched is not None and sched.job_kind else "slurm"

    async def read_jobs(
        self, host: str, *, given: Sequence[str] = (), read_node: bool = True
    ) -> NodeJobs:
        """The jobs on `host`'s GPUs: `given` ids, else the monitor's last reading of the host,
        else (with `read_node`) one reading of the host now; completed by the scheduler's job
        list where the host could not say, and named by it where it was read."""
        self._check_host(host)
        if given:
            seen = node_jobs.given(host, given, self.job_kind)
        elif (shown := self._monitored(host)) is not None:
            seen = node_jobs.from_host(shown, time.time())
        elif read_node:
            seen = await self._read_node(host)
        else:
            seen = node_jobs.unknown(host, f"{host} was not read")
        reader = self.scheduler
        if reader is None:
            return seen
        if seen.gaps:
            await reader.refresh()  # at most once per period, whoever asks
        if reader.read_t is None and not seen.gaps:
            return seen
        age = "" if reader.read_t is None else f" read {age_text(time.time() - reader.read_t)} ago"
        return node_jobs.with_scheduler(
            seen,
            reader.jobs,
            kind=self.job_kind,
            source=f"{reader.program}'s job list{age}",
            problem="" if reader.ok else reader.status(),
        )

    def _monitored(self, host: str) -> HostSnapshot | None:
        """`host` as the live monitor's latest snapshot shows it (None without a monitor)."""
        if self.monitor is None:
            return None
        return next((h for h in self.monitor.snapshot().hosts if h.name == host), None)

    async def _read_node(self, host: str) -> NodeJobs:
        """One reading of `host`'s GPU processes (the agent's --once: hello and a full sample)."""
        spec = self.config.host(host)
        scenario = sim_scenarios(self.config.hosts).get(host) if spec.backend == "sim" else None
        job = OneShotJob(
            host=host,
            args=agent_args(spec, scenario, once=True),
            python=spec.python,
            transport=spec.transport,
        )
        from gputui.collect.ssh import SshContext  # asyncssh: imported once it is needed

        ssh = SshContext(ssh_options(self.config.ssh))
        try:
            result = await run_oneshot(job, ssh, NODE_READ_TIMEOUT_S)
        finally:
            await ssh.close()
        if result.error is not None:
            return node_jobs.unknown(host, f"{host} could not be read: {result.error.text}")
        sample = next((s for s in reversed(result.samples) if s.slow), None)
        if sample is None:
            return node_jobs.unknown(host, f"{host} sent no full sample")
        now = time.time()
        snap = HostSnapshot(
            name=host, state=HostState.STREAMING, slow_sample=sample, slow_sample_t=now
        )
        return node_jobs.from_host(snap, now, source=f"{host}'s GPU processes, read now")

    # -- looking ------------------------------------------------------------------------------

    def nodes(self) -> list[NodeStatus]:
        """Every configured node with its operator state (failed, spare, ...)."""
        return node_statuses(self.config, self.journal.node_states())

    def propose_spare(self, host: str, snapshot: FleetSnapshot | None = None) -> str | None:
        """The first healthy spare of `host`'s group (see nodes.choose_spare), or None."""
        self._check_host(host)
        return choose_spare(self.config, host, self.journal.node_states(), snapshot)

    # -- planning -----------------------------------------------------------------------------

    def plan(
        self,
        action: str,
        host: str,
        *,
        reason: str = "",
        jobs: NodeJobs | None = None,
        gpu: int | str | None = None,
        uuid: str | None = None,
        spare: str | None = None,
        snapshot: FleetSnapshot | None = None,
    ) -> Plan:
        """Action `action` for `host` with these values, every argv rendered (ActionError).

        `jobs` (read_jobs) fills {jobs} and {job}; without it an action naming them is refused.
        """
        self._check_host(host)
        values = {"node": host, "reason": reason, "operator": self.journal.operator}
        for key, value in (("gpu", gpu), ("uuid", uuid)):
            if value is not None:
                values[key] = str(value)
        try:
            needs_spare = "spare" in self.catalog[action].needs
        except KeyError as exc:
            raise ActionError(str(exc.args[0])) from None
        if spare is not None:
            self._check_host(spare)
            values["spare"] = spare
        elif needs_spare:
            found = self.propose_spare(host, snapshot)
            if found is None:
                group = self.config.host(host).group
                raise ActionError(
                    f"action {action} needs a spare, and group {group} has no healthy spare "
                    "left (give one with --spare NAME)"
                )
            values["spare"] = found
        return build_plan(self.catalog, action, values, jobs=jobs)

    def prepare_fail(
        self,
        host: str,
        reason: str,
        actions: Sequence[str] | None = None,
        *,
        jobs: NodeJobs | None = None,
    ) -> Operation:
        """Mark `host` failed, then run `actions` (default: those with on_fail = true).

        `jobs` (read_jobs): the jobs the failure hits, listed in the preview and the journal,
        and the values of {jobs} and {job}."""
        reason, names = self.check_fail(host, reason, actions)
        plans = tuple(self.plan(name, host, reason=reason, jobs=jobs) for name in names)
        return Operation(kind="fail", node=host, plans=plans, reason=reason, jobs=jobs)

    def check_fail(
        self, host: str, reason: str, actions: Sequence[str] | None = None
    ) -> tuple[str, list[str]]:
        """The reason and action names of a request to mark `host` failed; ActionError for an
        unknown host or action, or no reason (before anything is read or run)."""
        self.refuse_if_readonly()
        self._check_host(host)
        reason = reason.strip()
        if not reason:
            raise ActionError("a reason is required to mark a node failed (--reason TEXT)")
        names = [a.name for a in self.catalog.on_fail] if actions is None else list(actions)
        for name in names:
            try:
                self.catalog[name]
            except KeyError as exc:
                raise ActionError(str(exc.args[0])) from None
        return reason, names

    def prepare_resume(self, host: str, force: bool = False) -> Operation:
        """Return `host` to service: its on_resume actions, guarded unless `force`."""
        self.refuse_if_readonly()
        self._check_host(host)
        last = self.journal.node_states().get(host)
        reason = last.reason if last is not None and last.state == "failed" else "resumed"
        plans = tuple(self.plan(a.name, host, reason=reason) for a in self.catalog.on_resume)
        return Operation(kind="resume", node=host, plans=plans, reason=reason, force=force)

    def prepare_spare(
        self, host: str, spare: str | None = None, snapshot: FleetSnapshot | None = None
    ) -> Operation | None:
        """Bring `spare` (default: the proposed one) into service in place of `host`.

        None when no spare is given and none is healthy. Without an activate-spare action the
        activation is only recorded in the journal.
        """
        self.refuse_if_readonly()
        chosen = spare if spare is not None else self.propose_spare(host, snapshot)
        if chosen is None:
            return None
        self._check_host(chosen)
        reason = f"replaces {host}"
        plans: tuple[Plan, ...] = ()
        if "activate-spare" in self.catalog:
            plans = (self.plan("activate-spare", host, reason=reason, spare=chosen),)
        return Operation(kind="spare", node=host, plans=plans, reason=reason, spare=chosen)

    def prepare_action(
        self,
        action: str,
        host: str,
        *,
        reason: str = "",
        jobs: NodeJobs | None = None,
        gpu: int | str | None = None,
        uuid: str | None = None,
        spare: str | None = None,
        force: bool = False,
    ) -> Operation:
        """One action on its own (`gputui action run`); no node state is recorded."""
        self.refuse_if_readonly()
        plan = self.plan(action, host, reason=reason, jobs=jobs, gpu=gpu, uuid=uuid, spare=spare)
        shown = jobs if plan.action.names_jobs else None
        return Operation(
            kind="action", node=host, plans=(plan,), reason=reason, force=force, jobs=shown
        )

    # -- processes ----------------------------------------------------------------------------

    def prepare_kill(self, host: str, pid: int) -> KillPlan:
        """SIGTERM, then SIGKILL after hosts.toml's kill_grace_s, to GPU process `pid` of `host`
        (gputui/ops/kill.py); ActionError when read-only, or when the live monitor's latest
        reading of the host does not list `pid` on a GPU."""
        self.refuse_if_readonly()
        self._check_host(host)
        spec = self.config.host(host)
        return plan_kill(spec, self._monitored(host), pid, grace_s=self.config.kill_grace_s)

    async def kill(self, plan: KillPlan, on_output: OnOutput | None = None) -> KillOutcome:
        """Carry out a prepared kill, journaled. It is planned again first: read-only may have
        been set since, and the process may have left the GPU (ActionError, nothing sent)."""
        again = self.prepare_kill(plan.target.host, plan.target.pid)
        if again.target.process.started_t != plan.target.process.started_t:
            raise ActionError(
                f"pid {plan.target.pid} on {plan.target.host} is another process than the one "
                "confirmed: nothing is killed"
            )
        return await run_kill(self.journal, self._runner, plan, on_output)

    def refuse_if_readonly(self) -> None:
        """ActionError when the configuration says watch only (Config.readonly). Every request
        that changes a node, a scheduler or a process is refused here, as it is prepared and
        again as it runs, whether it comes from the command line or the live monitor."""
        if self.config.readonly:
            raise ActionError(READONLY_REFUSAL)

    def _check_host(self, host: str) -> None:
        try:
            self.config.host(host)
        except KeyError:
            names = [h.name for h in self.config.hosts]
            raise ActionError(
                f"no host {json.dumps(host, ensure_ascii=False)} in {self.config.path}"
                f"{did_you_mean(host, names)}"
            ) from None

    # -- running ------------------------------------------------------------------------------

    async def run(self, work: Operation | Plan, on_output: OnOutput | None = None) -> Outcome:
        """Carry out an operation (or one plan), journaling each command before and after.

        ActionError, before anything is journaled or run, when the configuration is read-only."""
        self.refuse_if_readonly()
        op = (
            work
            if isinstance(work, Operation)
            else Operation(kind="action", node=work.node, plans=(work,))
        )
        run_id = uuid.uuid4().hex
        state: NodeEvent | None = None
        if op.kind == "fail":
            # The operator's decision is recorded first: it stands even if a command fails.
            hit = op.jobs.keys if op.jobs is not None and op.jobs.known else None
            state = self.journal.record_node_state(op.node, "failed", op.reason, jobs=hit)
            self._mark(op.node, True)
        results: list[ActionOutcome] = []
        for plan in op.plans:
            if results and not results[-1].ok:
                results.append(
                    ActionOutcome(
                        plan.action.name, plan.node, "not_run", note="an earlier action failed"
                    )
                )
                continue
            results.append(await self._run_plan(plan, op.force, run_id, on_output))
        ok = all(r.ok for r in results)
        if ok and op.kind == "resume":
            state = self.journal.record_node_state(op.node, "in_service", op.reason)
            self._mark(op.node, False)
        elif ok and op.kind == "spare" and op.spare is not None:
            state = self.journal.record_node_state(op.spare, "spare_active", op.reason, op.node)
            if self.monitor is not None and op.spare in self.monitor.hosts:
                self.monitor.set_in_place_of(op.spare, op.node)
        return Outcome(operation=op, actions=tuple(results), state=state, run_id=run_id)

    def _mark(self, host: str, failed: bool) -> None:
        if self.monitor is not None and host in self.monitor.hosts:
            self.monitor.set_marked_failed(host, failed)

    async def _run_plan(
        self, plan: Plan, force: bool, run_id: str, on_output: OnOutput | None
    ) -> ActionOutcome:
        name = plan.action.name
        emit = _Emitter(on_output, name)
        note = ""
        if plan.idle:
            emit(plan.idle)
            if not plan.steps:
                return ActionOutcome(name, plan.node, "skipped", note=plan.idle)
        if plan.probe is not None and not force:
            checked = await self._check_guard(plan, run_id, emit)
            if isinstance(checked, ActionOutcome):
                return checked
            note = checked
        steps: list[StepOutcome] = []
        previous: CommandResult | None = None
        failed_jobs: int | None = None  # the index of a per-job step that failed for a job
        for step in plan.steps:
            if failed_jobs is not None and step.index != failed_jobs:
                return ActionOutcome(name, plan.node, "failed", tuple(steps), note)
            if step.per_line:
                jobs = previous.lines() if previous is not None else []
                if not jobs:
                    emit(f"nothing for step {step.index + 1}: the step above printed no lines")
                results = [await self._run_line(plan, step, job, run_id, emit) for job in jobs]
                steps += results
                if not all(r.ok for r in results):
                    return ActionOutcome(name, plan.node, "failed", tuple(steps), note)
                continue
            outcome, previous = await self._run_command(plan, step, step.command(), run_id, emit)
            steps.append(outcome)
            if not outcome.ok and step.per_job:
                failed_jobs = step.index  # the other jobs are tried all the same
            elif not outcome.ok:
                return ActionOutcome(name, plan.node, "failed", tuple(steps), note)
        status: ActionStatus = "failed" if failed_jobs is not None else "ok"
        return ActionOutcome(name, plan.node, status, tuple(steps), note)

    async def _check_guard(self, plan: Plan, run_id: str, emit: _Emitter) -> ActionOutcome | str:
        """The scheduler state's verdict: an outcome that ends the action, or a note to go on."""
        assert plan.probe is not None
        name, node = plan.action.name, plan.guard_node
        state_name = self.catalog.state_action()
        probe_plan = Plan(
            action=state_name if state_name is not None else plan.action,
            node=node,
            values=plan.probe.values,
            steps=(plan.probe,),
        )
        outcome, result = await self._run_command(
            probe_plan, plan.probe, plan.probe.command(), run_id, emit, quiet=True
        )
        sched = self.catalog.scheduler
        if not outcome.ok or sched is None or sched.read_state is None:
            return ActionOutcome(
                name,
                plan.node,
                "failed",
                (outcome,),
                f"cannot read the scheduler state of {node}: {outcome.problem()}",
            )
        try:
            state: SchedulerState = sched.read_state(result.stdout)
        except StateParseError as exc:
            return ActionOutcome(name, plan.node, "failed", (outcome,), str(exc))
        emit(f"{node} in {sched.name}: {state.text}")
        guard = plan.action.guard
        if guard == "resume" and not state.out_of_service:
            note = f"{node} is already in service in {sched.name} ({state.text}); nothing to do"
            emit(note)
            return ActionOutcome(name, plan.node, "skipped", (outcome,), note)
        if guard == "resume" and not state.ours:
            return ActionOutcome(
                name,
                plan.node,
                "refused",
                (outcome,),
                f"{node} was taken out of service by someone else ({state.text}); gputui "
                "returns only nodes it took out itself: add --force to do it anyway",
            )
        if guard == "fence" and state.out_of_service and not state.ours:
            note = (
                f"{node} is already out of service by someone else ({state.text}); left as "
                "it is (--force overrides)"
            )
            emit(note)
            return ActionOutcome(name, plan.node, "skipped", (outcome,), note)
        return ""

    async def _run_line(
        self, plan: Plan, step: PlannedStep, job: str, run_id: str, emit: _Emitter
    ) -> StepOutcome:
        try:
            command = step.command(job)
        except TemplateError as exc:
            # A line that cannot be one safe argument is reported, not run.
            emit(f"line {job[:80]!r} skipped: {exc}")
            return StepOutcome(argv=(), where=step.where, exit_code=None, error=str(exc))
        outcome, _ = await self._run_command(plan, step, command, run_id, emit)
        return outcome

    async def _run_command(
        self,
        plan: Plan,
        step: PlannedStep,
        command: Command,
        run_id: str,
        emit: _Emitter,
        *,
        quiet: bool = False,
    ) -> tuple[StepOutcome, CommandResult]:
        where = "" if command.where == LOCAL else f"   (on {command.where})"
        emit(f"$ {command.shell_text}{where}")
        intent = self.journal.begin_run(
            run_id, plan.action.name, plan.node, step.index, command.argv, command.where
        )

        def started(pid: int) -> None:
            # Written the moment it runs: if gputui is killed now, the command lives on in its
            # own session, and the next start finds its group here (orphans.py).
            nonlocal intent
            intent = self.journal.record_process_group(intent, process_group_of(pid))

        on_line = None if quiet else (lambda s: emit(f"  {s}"))
        result = await self._runner.run(command, on_line, on_start=started)
        done = self.journal.end_run(intent, result.exit_code, result.output, result.error)
        if not result.ok:
            emit(result.error or f"exit {result.exit_code}")
        outcome = StepOutcome(
            argv=command.argv,
            where=command.where,
            exit_code=result.exit_code,
            error=result.error,
            output=result.output,
            journal_id=done.id,
        )
        return outcome, result
