"""Plans: an action with its values filled in, showing the exact argv before anything runs.

    plan = build_plan(catalog, "drain", {"node": "gpu002", "reason": "XID 79", ...})
    plan.preview()   # ['drain on gpu002 (needs confirmation)', '  local: scontrol update ...']

An Operation is what the operator asks for (mark failed, resume, activate a spare, run one
action): its plans plus the node state it records. The TUI and the CLI show `preview()`, ask
for confirmation when `needs_confirm`, then hand the operation to OperatorActions.run.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from gputui.ops.catalog import LOCAL, ActionCatalog, ActionDef, StepDef
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

    def preview(self) -> list[str]:
        """The exact commands, one per line, with where each runs."""
        a = self.action
        head = f"{a.name} on {self.node}" + (" (needs confirmation)" if a.confirm else "")
        lines = [head]
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
        for plan in self.plans:
            lines += plan.preview()
        if not self.plans and self.kind != "action":
            lines.append("  (no scheduler action configured: recorded in the journal only)")
        return lines


def build_plan(
    catalog: ActionCatalog, name: str, values: Mapping[str, str], *, probe: bool = True
) -> Plan:
    """The plan of action `name` for `values` (node, reason, ...); ActionError if it can't be.

    Every command that does not depend on an earlier step's output is rendered here, so an
    unsafe or missing value is refused before anything runs.
    """
    try:
        action = catalog[name]
    except KeyError as exc:
        raise ActionError(str(exc.args[0])) from None
    missing = sorted(n for n in action.needs if not values.get(n))
    if missing:
        raise ActionError(f"action {name} needs {_needs_text(missing)}")
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
        probe=probe_step,
        guard_node=guard_node,
    )


def _planned(step: StepDef, values: Mapping[str, str], index: int) -> PlannedStep:
    where = step.where
    if where in ("{node}", "{spare}"):
        where = values[where[1:-1]]
    return PlannedStep(step=step, values=dict(values), where=where, index=index)


def _render_or_raise(name: str, step: PlannedStep) -> None:
    try:
        step.preview_argv  # noqa: B018 - rendering checks every value
    except TemplateError as exc:
        raise ActionError(f"action {name}: {exc}") from None


_NEEDS = {
    "reason": "a reason (--reason TEXT)",
    "job": "a job id (--job ID)",
    "gpu": "a GPU index (--gpu N)",
    "uuid": "a GPU uuid (--uuid UUID)",
    "spare": "a spare node (--spare NAME)",
    "node": "a node",
    "operator": "an operator name",
}


def _needs_text(names: list[str]) -> str:
    return " and ".join(_NEEDS.get(n, n) for n in names)
