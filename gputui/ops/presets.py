"""Built-in action sets a site enables by name: `[actions] presets = ["slurm"]`.

A preset is a set of `[actions.NAME]` tables written exactly as a user would write them (so a
site can override any key), plus what only gputui can supply: how to read a node's state in
the scheduler and which actions that state guards.

A scheduler preset may also name the action that lists its jobs (Slurm: `squeue --json`):
gputui/ops/scheduler.py reads it at most once per `[scheduler] period_s` to name the jobs the
hosts see on their GPUs, and falls back on it for a node that cannot say which jobs it runs.

Guards keep gputui from undoing other people's decisions (NHC, an admin, NVIDIA's
NVSentinel). A "resume" action runs only on a node gputui itself took out of service (Slurm:
the Reason starts with "gputui:"; Kubernetes: the node carries the gputui.io/cordoned label),
and a "fence" action (drain, cordon) leaves a node that someone else already took out as it is,
rather than overwrite their reason. `--force` overrides both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from gputui.core.model import JobKind
from gputui.ops.scheduler import SchedulerRead, parse_squeue_json

Guard = Literal["none", "fence", "resume"]

#: The Reason prefix that marks a Slurm node as drained by gputui (as NHC uses "NHC:").
SLURM_REASON_PREFIX = "gputui:"
#: The Kubernetes label and annotations gputui puts on nodes it cordons.
K8S_CORDONED_LABEL = "gputui.io/cordoned"
K8S_BY_ANNOTATION = "gputui.io/cordoned-by"
K8S_REASON_ANNOTATION = "gputui.io/cordon-reason"


class StateParseError(ValueError):
    """The scheduler's answer could not be read."""


@dataclass(frozen=True)
class SchedulerState:
    """A node as the scheduler sees it, reduced to what the guards decide on."""

    out_of_service: bool  # drained, down, cordoned...
    ours: bool  # taken out of service by gputui
    text: str  # for the operator: state, reason, who and when


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    actions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    guards: Mapping[str, Guard] = field(default_factory=dict)
    state_action: str | None = None  # the action that prints the node's state
    read_state: Callable[[str], SchedulerState] | None = None  # its output -> state
    jobs_action: str | None = None  # the action that prints the scheduler's jobs
    read_jobs: Callable[[str], SchedulerRead] | None = None  # its output -> jobs
    job_kind: JobKind | None = None  # the jobs its {jobs} and {job} name


# --------------------------------------------------------------------------------------------
# Slurm
# --------------------------------------------------------------------------------------------

_SLURM_OUT = {"DRAIN", "DRAINED", "DRAINING", "DOWN", "FAIL", "FAILING"}
_SLURM_STATE = re.compile(r"(?:^|\s)State=(\S+)")
_SLURM_REASON = re.compile(r"(?:^|\s)Reason=(.*)$", re.DOTALL)
_SLURM_REASON_BY = re.compile(r"^(?P<text>.*) \[(?P<who>[^\]@]*)@(?P<when>[^\]]*)\]\s*$", re.DOTALL)


def read_slurm_state(output: str) -> SchedulerState:
    """Read `scontrol -o show node N` (one line; Reason, when set, comes last).

    `sinfo` is not used: it can print "drained" for a node that is DOWN+DRAIN.
    """
    line = output.strip()
    state_m = _SLURM_STATE.search(line)
    if not line.startswith("NodeName=") or state_m is None:
        raise StateParseError(f"not a line of `scontrol -o show node`: {line[:200]!r}")
    state = state_m.group(1)
    flags = {tok.rstrip("*~#!%$@^-") for tok in state.split("+")}
    out = bool(flags & _SLURM_OUT)
    reason, who, when = "", "", ""
    reason_m = _SLURM_REASON.search(line)
    if reason_m:
        reason = reason_m.group(1).strip()
        by = _SLURM_REASON_BY.match(reason)
        if by:
            reason, who, when = by.group("text"), by.group("who"), by.group("when")
    ours = reason.startswith(SLURM_REASON_PREFIX)
    text = state
    if "DRAIN" in flags:
        busy = flags & {"ALLOCATED", "MIXED", "COMPLETING"}
        text += " (draining: jobs still run)" if busy else " (drained)"
    if reason and reason != "(null)":
        text += f", reason {json.dumps(reason, ensure_ascii=False)}"
        if who:
            text += f" set by {who} at {when}"
    return SchedulerState(out_of_service=out, ours=out and ours, text=text)


_SLURM_UPDATE = ["scontrol", "update", "NodeName={node}"]

SLURM = Preset(
    name="slurm",
    description="Slurm: drain, down, resume, requeue-jobs, activate-spare (scontrol, squeue)",
    actions={
        "node-state": {
            "argv": ["scontrol", "-o", "show", "node", "{node}"],
            "confirm": False,
            "description": "print the node's Slurm state (read only)",
        },
        "drain": {
            "argv": [*_SLURM_UPDATE, "State=DRAIN", "Reason=gputui: {reason}"],
            "on_fail": True,
            "description": "no new jobs on the node; running jobs finish",
        },
        "down": {
            "argv": [*_SLURM_UPDATE, "State=DOWN", "Reason=gputui: {reason}"],
            "description": "take the node down now: its jobs are killed (requeueable ones requeue)",
        },
        "resume": {
            "argv": [*_SLURM_UPDATE, "State=RESUME"],
            "confirm": False,  # guarded: only nodes gputui drained are resumed without --force
            "on_resume": True,
            "description": "return a node gputui drained to service",
        },
        "requeue-jobs": {
            # One command for all of them: scontrol requeues each job of the list on its own,
            # and says which it could not (a --no-requeue job) without stopping the others.
            "argv": ["scontrol", "requeue", "{jobs}"],
            "description": "requeue the jobs seen on the node's GPUs (scontrol requeue 123,456)",
        },
        "list-jobs": {
            # Running jobs only: 23.02 and later filter (22.05 prints every job; gputui keeps
            # those holding nodes), and a long pending queue is not read every period.
            "argv": ["squeue", "--json", "--states=RUNNING,COMPLETING,SUSPENDED"],
            "confirm": False,
            "timeout_s": 30,
            "description": "print Slurm's running jobs as JSON (read only; gputui reads it at "
            "most once per [scheduler] period_s to name the jobs on the GPUs)",
        },
        "activate-spare": {
            "argv": ["scontrol", "update", "NodeName={spare}", "State=RESUME"],
            "description": 'bring the spare into service (keep spares drained "gputui: spare")',
        },
    },
    guards={"drain": "fence", "down": "fence", "resume": "resume", "activate-spare": "resume"},
    state_action="node-state",
    read_state=read_slurm_state,
    jobs_action="list-jobs",
    read_jobs=parse_squeue_json,
    job_kind="slurm",
)


# --------------------------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------------------------


def read_kubernetes_state(output: str) -> SchedulerState:
    """Read `kubectl get node N -o json`."""
    try:
        node = json.loads(output)
        spec = node.get("spec") or {}
        meta = node.get("metadata") or {}
        labels = meta.get("labels") or {}
        notes = meta.get("annotations") or {}
    except (ValueError, AttributeError):
        raise StateParseError(f"not the JSON of a node: {output.strip()[:200]!r}") from None
    cordoned = bool(spec.get("unschedulable"))
    ours = cordoned and labels.get(K8S_CORDONED_LABEL) == "true"
    if not cordoned:
        text = "schedulable"
    elif ours:
        by = notes.get(K8S_BY_ANNOTATION, "?")
        why = json.dumps(notes.get(K8S_REASON_ANNOTATION, ""), ensure_ascii=False)
        text = f"cordoned by gputui ({by}), reason {why}"
    else:
        text = f"cordoned by another tool or person (no {K8S_CORDONED_LABEL} label)"
    return SchedulerState(out_of_service=cordoned, ours=ours, text=text)


def _k8s_cordon(node: str) -> list[dict[str, Any]]:
    return [
        {"argv": ["kubectl", "cordon", node]},
        {"argv": ["kubectl", "label", "--overwrite", "node", node, f"{K8S_CORDONED_LABEL}=true"]},
        {
            "argv": [
                "kubectl",
                "annotate",
                "--overwrite",
                "node",
                node,
                f"{K8S_BY_ANNOTATION}={{operator}}",
                f"{K8S_REASON_ANNOTATION}={{reason}}",
            ]
        },
    ]


def _k8s_uncordon(node: str) -> list[dict[str, Any]]:
    return [
        {"argv": ["kubectl", "uncordon", node]},
        {"argv": ["kubectl", "label", "node", node, f"{K8S_CORDONED_LABEL}-"]},
        {
            "argv": [
                "kubectl",
                "annotate",
                "node",
                node,
                f"{K8S_BY_ANNOTATION}-",
                f"{K8S_REASON_ANNOTATION}-",
            ]
        },
    ]


_TAINT = "gputui.io/failed=true:NoSchedule"

KUBERNETES = Preset(
    name="kubernetes",
    description="Kubernetes: cordon, drain, uncordon, taint, untaint, activate-spare (kubectl)",
    actions={
        "node-state": {
            "argv": ["kubectl", "get", "node", "{node}", "-o", "json"],
            "confirm": False,
            "description": "print the node as JSON (read only)",
        },
        "cordon": {
            "steps": _k8s_cordon("{node}"),
            "on_fail": True,
            "description": "no new pods; label and annotate who cordoned it and why",
        },
        "drain": {
            "steps": [
                *_k8s_cordon("{node}"),
                {
                    "argv": [
                        "kubectl",
                        "drain",
                        "{node}",
                        "--ignore-daemonsets",
                        "--delete-emptydir-data",
                    ],
                    "timeout_s": 900,
                },
            ],
            "description": "cordon, then evict the node's pods",
        },
        "uncordon": {
            "steps": _k8s_uncordon("{node}"),
            "confirm": False,  # guarded: only nodes gputui cordoned are uncordoned
            "on_resume": True,
            "description": "return a node gputui cordoned to service",
        },
        "taint": {
            "argv": ["kubectl", "taint", "nodes", "{node}", _TAINT, "--overwrite"],
            "description": f"taint the node {_TAINT}",
        },
        "untaint": {
            "argv": ["kubectl", "taint", "nodes", "{node}", f"{_TAINT}-"],
            "description": "remove gputui's taint",
        },
        "activate-spare": {
            "steps": _k8s_uncordon("{spare}"),
            "description": "uncordon the spare (keep spares cordoned by gputui)",
        },
    },
    guards={
        "cordon": "fence",
        "drain": "fence",
        "uncordon": "resume",
        "activate-spare": "resume",
    },
    state_action="node-state",
    read_state=read_kubernetes_state,
    job_kind="k8s",
)

CUSTOM = Preset(
    name="custom",
    description="no built-in actions: only the [actions.NAME] tables the site writes",
)

PRESETS: dict[str, Preset] = {p.name: p for p in (SLURM, KUBERNETES, CUSTOM)}
