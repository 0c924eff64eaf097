"""The demo fleet's hosts.toml stand-in: its group, its spares, its actions.

The simulated hosts sim-001... form one group, `demo`. Its last hosts are that group's spares
(`demo_spares`; the demo fleet runs them healthy and idle, gputui.collect.demo). The actions run
locally and stand for the Slurm commands they name, so every operator flow (mark failed,
drain, requeue, bring a spare in, resume) is real without a scheduler.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gputui.collect.demo import default_spares
from gputui.config import Config, HostGroup, HostSpec

DEMO_GROUP = "demo"

# The demo's stand-in scheduler: a fixed script appends the command it was given, one argument
# per word, to a log file and prints it. The node, the spare and the reason arrive as separate
# arguments ("$@"), never as shell text, exactly as a real action's placeholders do.
_APPEND_TO_LOG = 'printf "%s\\n" "demo scheduler: $*" | tee -a "$0"'


def _logged(scheduler_log: Path, *argv: str) -> list[str]:
    """`argv` (a Slurm command line with placeholders) as the stand-in scheduler runs it."""
    return ["sh", "-c", _APPEND_TO_LOG, str(scheduler_log), *argv]


def demo_actions(scheduler_log: Path) -> dict[str, dict[str, object]]:
    """Demo actions run locally and stand for the scheduler commands they name: the demo fleet
    has no scheduler, yet every flow (preview, confirm, journal, output in the log) is real.
    The drain and the spare's activation are written to `scheduler_log`."""
    return {
        "drain": {
            "argv": _logged(
                scheduler_log,
                "scontrol",
                "update",
                "NodeName={node}",
                "State=DRAIN",
                "Reason=gputui: {reason}",
            ),
            "on_fail": True,
            "confirm": True,
            "description": f"demo: writes the Slurm drain it stands for to {scheduler_log}",
        },
        "activate-spare": {
            "argv": _logged(
                scheduler_log, "scontrol", "update", "NodeName={spare}", "State=RESUME"
            ),
            "confirm": True,
            "description": f"demo: writes the Slurm resume of the spare to {scheduler_log}",
        },
        **DEMO_ACTIONS,
    }


DEMO_ACTIONS: dict[str, dict[str, object]] = {
    "resume": {
        "argv": ["echo", "demo, no scheduler: scontrol update NodeName={node} State=RESUME"],
        "on_resume": True,
        "confirm": True,
        "description": "demo: prints the Slurm resume it stands for",
    },
    "requeue-jobs": {
        "steps": [
            {"argv": ["printf", "4101\\n4102\\n"]},
            {"argv": ["echo", "demo, no scheduler: scontrol requeue {job}"], "for_each_line": True},
        ],
        "confirm": True,
        "description": "demo: lists two jobs, prints the requeue of each",
    },
}


def demo_spares(names: Sequence[str]) -> tuple[str, ...]:
    """The spares of the demo group, its last hosts: none of one host, one of 2-7, two of 8+."""
    return tuple(names[len(names) - default_spares(len(names)) :])


def demo_config(names: Sequence[str], scheduler_log: Path) -> Config:
    """The demo fleet as a hosts.toml would list it: one group, its spares last."""
    spares = demo_spares(names)
    in_service = tuple(n for n in names if n not in spares)
    return Config(
        path=Path("demo"),
        hosts=[HostSpec(name=n, group=DEMO_GROUP) for n in in_service]
        + [HostSpec(name=n, group=DEMO_GROUP, spare=True) for n in spares],
        groups={DEMO_GROUP: HostGroup(name=DEMO_GROUP, hosts=in_service, spares=spares)},
        actions=demo_actions(scheduler_log),
    )
