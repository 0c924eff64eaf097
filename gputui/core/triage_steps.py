"""From a triage verdict to what the operator should do, and the command that starts it.

NVIDIA's recommended action (core/xid.py, core/reasons.py) says what the GPU needs; the
operator step says what to do with the node around it: keep it and restart the application,
drain it and reset a GPU, drain and reboot it, or take it out for an RMA. A step that takes the
node out of service comes with the exact `gputui node fail` command, in the site's own action
names (Slurm's drain/requeue-jobs, Kubernetes' cordon/drain).
"""

from __future__ import annotations

import enum
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import msgspec

from gputui.core.model import Action, Level

REASON_MAX_CHARS = 120


class OperatorStep(enum.Enum):
    """gputui's suggested step, from least to most disruptive."""

    NONE = "none"
    WATCH = "watch"
    RESTART_APP = "restart app"
    RESET_GPU = "reset GPU"
    DRAIN_INSPECT = "drain and inspect"
    DRAIN_REBOOT = "drain and reboot"
    RMA = "RMA"

    @property
    def rank(self) -> int:
        return _STEP_RANK[self]

    @property
    def takes_node_out(self) -> bool:
        return self.rank >= OperatorStep.RESET_GPU.rank


_STEP_RANK = {s: i for i, s in enumerate(OperatorStep)}

# Conditions around the GPU (cooling, power delivery): a reboot does not fix them, a person
# looking at the chassis does.
_AROUND_THE_GPU = frozenset(
    {"temp_high", "temp_slowdown", "sw_thermal", "hw_thermal", "hw_slowdown", "hw_power_brake"}
)


def step_for(code: str, level: Level, action: Action) -> OperatorStep:
    """The operator step for one finding."""
    if level is Level.OK:
        return OperatorStep.NONE
    if action is Action.RMA:
        return OperatorStep.RMA
    if action is Action.REBOOT_NODE:
        return OperatorStep.DRAIN_REBOOT
    if action is Action.DRAIN:
        # NVIDIA's "drain" is either "drain, then reset the GPU" (XID 95, recovery action 3/4)
        # or a hardware condition around the GPU.
        return OperatorStep.DRAIN_INSPECT if code in _AROUND_THE_GPU else OperatorStep.RESET_GPU
    if action is Action.RESET_GPU:
        return OperatorStep.RESET_GPU
    if action is Action.RESTART_APP:
        return OperatorStep.RESTART_APP
    return OperatorStep.WATCH


@dataclass(frozen=True)
class ActionVocabulary:
    """The site's action names for `gputui node fail --action`.

    `fence` takes the node out of scheduling while running work continues (Slurm drain,
    Kubernetes cordon); `evict` moves the running work away (Slurm requeue-jobs, Kubernetes
    drain). None: the site has no such action, and the command leaves it out.
    """

    fence: str | None = "drain"
    evict: str | None = "requeue-jobs"
    hosts_path: str | None = None  # given as --hosts when not the default file
    with_spare: frozenset[str] = field(default_factory=frozenset)  # hosts whose group has one


SLURM_VOCABULARY = ActionVocabulary()


class Suggestion(msgspec.Struct, frozen=True, kw_only=True):
    """What to do with a host (or GPU), and the command that starts it (None: none needed)."""

    step: OperatorStep
    text: str
    command: str | None = None


# What to do about a warning that needs no action now, by its code.
_WATCH_ADVICE = {
    "straggler": "If it holds a job back, move the job off; run `dcgmi diag -r 3` on the node "
    "at the next window.",
    "pcie_replay_rising": "A marginal link: reseat the GPU or its riser if the counter keeps "
    "climbing.",
    "nvlink_errors_rising": "Watch the counters; reset the GPU if links go down.",
    "temp_high": "Check the node's cooling before the GPU reaches its slowdown temperature.",
    "sw_thermal": "Check the node's cooling before the GPU reaches its slowdown temperature.",
    "mem_full": "The job uses nearly all GPU memory: expect out-of-memory failures.",
    "xid_63_rate": "The GPU's memory is wearing: contact NVIDIA support if the rate persists.",
    "xid_92": "The GPU's memory is wearing: contact NVIDIA support if the rate persists.",
    "kernel_log_denied": "Fix the kernel log access (see the finding) and triage again.",
    "kernel_log_unavailable": "Fix the kernel log access (see the finding) and triage again.",
}


class Concern(NamedTuple):
    """One finding as the step logic sees it."""

    step: OperatorStep
    gpu: int | None
    text: str
    code: str


def _gpus(gpus: Iterable[int | None]) -> str:
    named = sorted({g for g in gpus if g is not None})
    return ", ".join(f"GPU{g}" for g in named) or "the GPU"


def _step_text(step: OperatorStep, gpus: str, level: Level, worst: Concern | None) -> str:
    when = "" if level >= Level.CRITICAL else " at the next maintenance window"
    if step is OperatorStep.NONE or worst is None:
        return "No action: nothing wrong was found."
    if step is OperatorStep.WATCH and level is Level.UNKNOWN:
        return f"Not judged: {worst.text}. Triage again once that is fixed."
    if step is OperatorStep.WATCH:
        advice = _WATCH_ADVICE.get(worst.code, "Triage again if it gets worse.")
        return f"Keep it in service: {worst.text}. {advice}"
    if step is OperatorStep.RESTART_APP:
        return (
            "Restart or resubmit the job; the node stays in service (an application-level "
            "XID). Escalate if it repeats on one GPU across jobs."
        )
    if step is OperatorStep.RESET_GPU:
        return (
            f"Drain the node{when}, let or move its jobs off, reset {gpus} "
            "(nvidia-smi -r -i N; reboot if the reset fails), then resume it."
        )
    if step is OperatorStep.DRAIN_INSPECT:
        return (
            f"Drain the node{when} and check its cooling and power (fans, inlet temperature, "
            "PSU and BMC logs) before it runs jobs again."
        )
    if step is OperatorStep.DRAIN_REBOOT:
        return (
            f"Drain the node{when}, move its jobs, reboot or power-cycle it; "
            f"RMA {gpus} if it recurs."
        )
    return f"Take the node out{when}, move its jobs and open an RMA for {gpus}."


# What else a step does on the way: the steps it makes unnecessary. A reboot resets every GPU,
# but no reboot or reset fixes a fan, so "drain and inspect" is never covered by another step.
_COVERS = {
    OperatorStep.RMA: {OperatorStep.DRAIN_REBOOT, OperatorStep.RESET_GPU},
    OperatorStep.DRAIN_REBOOT: {OperatorStep.RESET_GPU},
}
_ALSO = {
    OperatorStep.DRAIN_INSPECT: "Also check the cooling and power of {gpus}.",
    OperatorStep.RESET_GPU: "Also reset {gpus} while the node is drained.",
    OperatorStep.DRAIN_REBOOT: "Also reboot it for {gpus}.",
}


def _also(step: OperatorStep, concerns: list[Concern]) -> str:
    """Sentences for the other steps the host needs that `step` does not take care of."""
    out = []
    for other, sentence in _ALSO.items():
        if other is step or other in _COVERS.get(step, set()):
            continue
        gpus = [c.gpu for c in concerns if c.step is other]
        if gpus:
            out.append(sentence.format(gpus=_gpus(gpus)))
    return " ".join(out)


def fail_command(
    host: str, reason: str, actions: Iterable[str], vocab: ActionVocabulary, spare: bool
) -> str:
    """The `gputui node fail` command line, every word shell-quoted."""
    if len(reason) > REASON_MAX_CHARS:
        reason = reason[: REASON_MAX_CHARS - 3].rstrip() + "..."
    words = ["gputui", "node", "fail", host, "--reason", reason]
    for name in actions:
        words += ["--action", name]
    if spare:
        words.append("--spare")
    if vocab.hosts_path:
        words += ["--hosts", vocab.hosts_path]
    return shlex.join(words)


def suggest(
    host: str,
    level: Level,
    concerns: Iterable[Concern],
    vocab: ActionVocabulary = SLURM_VOCABULARY,
) -> Suggestion:
    """The host's step: the most disruptive of its findings' steps (`concerns`, worst first).

    A node is taken out (and the command given) only for critical and failed verdicts; a
    warning that asks for more says so for the next maintenance window instead.
    """
    listed = list(concerns)
    if not listed:
        return Suggestion(
            step=OperatorStep.NONE, text=_step_text(OperatorStep.NONE, "", level, None)
        )
    step = max((c.step for c in listed), key=lambda s: s.rank)
    gpus = _gpus(c.gpu for c in listed if c.step is step)
    worst = listed[0]  # the worst finding names the node's problem, whatever its step
    text = _step_text(step, gpus, level, worst)
    if step.takes_node_out:
        text = f"{text} {_also(step, listed)}".rstrip()
    if level < Level.CRITICAL or not step.takes_node_out:
        return Suggestion(step=step, text=text)
    names = [vocab.fence]
    if level >= Level.FAILED or step in (OperatorStep.DRAIN_REBOOT, OperatorStep.RMA):
        names.append(vocab.evict)  # the jobs on a lost or failed GPU are not coming back
    actions = [n for n in names if n]
    spare = step is OperatorStep.RMA and host in vocab.with_spare
    command = fail_command(host, f"triage: {worst.text}", actions, vocab, spare)
    return Suggestion(step=step, text=text, command=command)
