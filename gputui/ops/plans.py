"""Plans: an action with its values filled in, showing the exact argv before anything runs.

    plan = build_plan(catalog, "drain", {"node": "gpu002", "reason": "XID 79", ...})
    plan.preview()   # ['drain on gpu002 (needs confirmation)', '  local: scontrol update ...']

An Operation is what the operator asks for (mark failed, resume, activate a spare, run one
action): its plans plus the node state it records. The TUI and the CLI show `preview()`, ask
for confirmation when `needs_confirm`, then hand the operation to OperatorActions.run.

An action that names the node's jobs is planned from a NodeJobs (gputui/ops/node_jobs.py):
`{jobs}` becomes their ids joined by commas in one argument, and a step using `{job}` is
planned once per job, so the preview shows every command with its id. With no job on the node
those steps have nothing to do and are left out (an action left with no step is skipped, and
says why); with the jobs unknown the action is refused before anything runs.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from gputui.core.words import counted
from gputui.ops.catalog import JOB_PLACEHOLDERS, LOCAL, ActionCatalog, ActionDef, StepDef
from gputui.ops.node_jobs import NodeJobs
from gputui.ops.presets import PRESETS
from gputui.ops.runner import Command
from gputui.ops.templates import TemplateError


class ActionError(Exception):
    """An action that cannot be planned as asked: the text says what to give instead."""


@dataclass(frozen=True)
class PlannedStep:
    step: StepDef
    values: Mapping[str, str]
    where: str  # "local" or the SSH alias, with {node}/{spare} resolved
    index: int
    per_job: bool = False  # one of the runs of a {job} step, one per job on the node

    @property
    def per_line(self) -> bool:
        return self.step.for_each_line

    def command(self, job: str | None = None) -> Command:
        """The command to run (for a per-line step, the one for `job`)."""
        values = dict(self.values) if job is None else {**self.values, "job": job}
        argv = self.step.command.render(values)
        return Command(argv=argv, where=self.where, timeout_s=self.step.timeout_s)

    @property
    def preview_argv(self) -> tuple[str, ...]:
        """The argv to show; a per-line step shows `{job}` where each line will go."""
        if not self.per_line:
            return self.command().argv
        # Shown only, never run: a literal "{job}" marks where each line will go.
        return self.step.command.render({**self.values, "job": "{job}"})


@dataclass(frozen=True)
class Plan:
    action: ActionDef
    node: str
    values: Mapping[str, str]
    steps: tuple[PlannedStep, ...]
    probe: PlannedStep | None = None  # reads the scheduler state the action's guard decides on
    guard_node: str = ""  # the node that state is read for (the spare for activate-spare)
    idle: str = ""  # why steps were left out (no job on the node); with no step, it is skipped

    def preview(self) -> list[str]:
        """The exact commands, one per line, with where each runs."""
        a = self.action
        # The node the commands act on: the spare, for an action that brings one in.
        target = self.guard_node or self.node
        head = f"{a.name} on {target}"
        if target != self.node:
            head += f" in place of {self.node}"
        head += " (needs confirmation)" if a.confirm else ""
        lines = [head]
        if self.idle:
            lines.append(f"  {self.idle}")
        if self.probe is not None:
            check = "refuses" if a.guard == "resume" else "skips"
            lines.append(
                f"  first reads {self.guard_node}'s scheduler state and {check} a node taken "
                "out of service by someone else (--force overrides):"
            )
            lines += _step_lines(self.probe, "    ")
        for step in self.steps:
            lines += _step_lines(step, "  ")
        return lines


def _step_lines(step: PlannedStep, indent: str) -> list[str]:
    argv = step.preview_argv
    where = "local" if step.where == LOCAL else f"on {step.where}"
    lines = [f"{indent}[{where}] {shlex.join(argv)}"]
    if step.per_line:
        lines.append(f"{indent}  once per output line of the step above, as {{job}}")
    lines.append(f"{indent}  argv: {json.dumps(list(argv), ensure_ascii=False)}")
    return lines


OperationKind = Literal["fail", "resume", "spare", "action"]


@dataclass(frozen=True)
class Operation:
    kind: OperationKind
    node: str
    plans: tuple[Plan, ...] = ()
    reason: str = ""
    force: bool = False  # guards off: resume or fence nodes someone else took out
    spare: str | None = None  # kind "spare": the spare to bring into service
    jobs: NodeJobs | None = None  # the jobs the node's GPUs serve, as far as known

    @property
    def needs_confirm(self) -> bool:
        # Overriding another tool's decision is never done without the operator's yes.
        return self.force or any(p.action.confirm for p in self.plans)

    def summary(self) -> str:
        if self.kind == "fail":
            return f"mark {self.node} failed: {json.dumps(self.reason, ensure_ascii=False)}"
        if self.kind == "resume":
            return f"return {self.node} to service" + (" (forced)" if self.force else "")
        if self.kind == "spare":
            return f"bring spare {self.spare} into service in place of {self.node}"
        names = ", ".join(p.action.name for p in self.plans)
        return f"run {names} on {self.node}"

    def preview(self) -> list[str]:
        lines = [self.summary()]
        if self.jobs is not None:
            lines += [f"  {line}" for line in self.jobs.lines()]
        for plan in self.plans:
            lines += plan.preview()
        if not self.plans and self.kind != "action":
            lines.append("  (no scheduler action configured: recorded in the journal only)")
        return lines


def build_plan(
    catalog: ActionCatalog,
    name: str,
    values: Mapping[str, str],
    *,
    probe: bool = True,
    jobs: NodeJobs | None = None,
) -> Plan:
    """The plan of action `name` for `values` (node, reason, ...); ActionError if it can't be.

    `jobs` fills {jobs} and {job} (see the module's docstring). Every command that does not
    depend on an earlier step's output is rendered here, so an unsafe or missing value is
    refused before anything runs.
    """
    try:
        action = catalog[name]
    except KeyError as exc:
        raise ActionError(str(exc.args[0])) from None
    filled = JOB_PLACEHOLDERS if jobs is not None else frozenset()
    missing = sorted(n for n in action.needs - filled if not values.get(n))
    if missing:
        raise ActionError(f"action {name} needs {_needs_text(missing)}")
    idle = ""
    if jobs is not None and action.names_jobs:
        steps, idle = _job_steps(action, values, jobs)
    else:
        steps = tuple(_planned(step, values, i) for i, step in enumerate(action.steps))
    for step in steps:
        _render_or_raise(name, step)
    guard_node = values[action.guard_target]
    probe_step: PlannedStep | None = None
    state = catalog.state_action()
    if probe and action.guard != "none" and state is not None:
        probe_step = _planned(state.steps[0], {**values, "node": guard_node}, 0)
        _render_or_raise(state.name, probe_step)
    return Plan(
        action=action,
        node=values["node"],
        values=dict(values),
        steps=steps,
        probe=probe_step if steps else None,  # nothing to guard when nothing runs
        guard_node=guard_node,
        idle=idle,
    )


def _job_steps(
    action: ActionDef, values: Mapping[str, str], jobs: NodeJobs
) -> tuple[tuple[PlannedStep, ...], str]:
    """The steps of an action that names the node's jobs, and why some were left out."""
    if not jobs.known:
        raise ActionError(
            f"action {action.name} names the jobs on {jobs.node}'s GPUs, and they are unknown: "
            f"{'; '.join(jobs.gaps) or 'nothing could say'} (name them with --job ID)"
        )
    preset = PRESETS.get(action.preset or "")
    kind = preset.job_kind if preset is not None else None
    ids = jobs.ids(kind)
    steps: list[PlannedStep] = []
    left_out = 0
    for i, step in enumerate(action.steps):
        used = step.command.names & JOB_PLACEHOLDERS
        if step.for_each_line:
            used = used - {"job"}  # its {job} is each line of the step before
        if not used:
            steps.append(_planned(step, values, i))
        elif not ids:
            left_out += 1
        elif "job" in used:
            base = {**values, "jobs": ",".join(ids)}
            steps += [_planned(step, {**base, "job": job}, i, per_job=True) for job in ids]
        else:
            steps.append(_planned(step, {**values, "jobs": ",".join(ids)}, i))
    idle = ""
    if left_out:
        what = "nothing to do" if not steps else f"{counted(left_out, 'step')} left out"
        if not jobs.jobs:
            idle = f"{what}: no job seen on {jobs.node}'s GPUs"
        else:
            idle = f"{what}: no {kind or 'usable'} job id among the jobs on {jobs.node}'s GPUs"
    return tuple(steps), idle


def _planned(
    step: StepDef, values: Mapping[str, str], index: int, *, per_job: bool = False
) -> PlannedStep:
    where = step.where
    if where in ("{node}", "{spare}"):
        where = values[where[1:-1]]
    return PlannedStep(step=step, values=dict(values), where=where, index=index, per_job=per_job)


def _render_or_raise(name: str, step: PlannedStep) -> None:
    try:
        step.preview_argv  # noqa: B018 - rendering checks every value
    except TemplateError as exc:
        raise ActionError(f"action {name}: {exc}") from None


_NEEDS = {
    "reason": "a reason (--reason TEXT)",
    "job": "a job id (--job ID)",
    "jobs": "the node's jobs (--job ID, repeatable)",
    "gpu": "a GPU index (--gpu N)",
    "uuid": "a GPU uuid (--uuid UUID)",
    "spare": "a spare node (--spare NAME)",
    "node": "a node",
    "operator": "an operator name",
}


def _needs_text(names: list[str]) -> str:
    return " and ".join(_NEEDS.get(n, n) for n in names)
