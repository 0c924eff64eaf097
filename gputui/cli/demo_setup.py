"""The demo fleet's hosts.toml stand-in: its group, its spares, its actions.

The simulated hosts sim-001... form one group, `demo`. Its last hosts are that group's spares
(`demo_spares`; the demo fleet runs them healthy and idle, gputui.collect.demo). The actions run
locally and stand for the Slurm commands they name, so every operator flow (mark failed,
drain, requeue, bring a spare in, resume) is real without a scheduler. The requeue is more
than words: the stand-in lists the Slurm jobs the fleet runs on the node and records the ids
it is given, and the simulated hosts of those jobs stop running them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gputui.collect.demo import SCHEDULER_NODES, SCHEDULER_REQUEUED, default_spares
from gputui.config import Config, HostGroup, HostSpec
from gputui.ops.presets import SLURM

DEMO_GROUP = "demo"

# The demo's stand-in scheduler: a fixed script appends the command it was given, one argument
# per word, to a log file and prints it. The node, the spare and the reason arrive as separate
# arguments ("$@"), never as shell text, exactly as a real action's placeholders do.
_APPEND_TO_LOG = 'printf "%s\\n" "demo scheduler: $*" | tee -a "$0"'


def _logged(scheduler_log: Path, *argv: str) -> list[str]:
    """`argv` (a Slurm command line with placeholders) as the stand-in scheduler runs it."""
    return ["sh", "-c", _APPEND_TO_LOG, str(scheduler_log), *argv]


# The stand-in's jobs: what the Slurm preset's requeue runs, answered from the demo fleet's
# stand-in scheduler directory (DemoFleet.scheduler). Arguments: the log ($0), that directory,
# then the Slurm command line.
# - `squeue -w NODE -h -o %A`: the node's Slurm jobs not requeued yet, one id a line. Logged,
#   not printed: its output is the list.
# - `scontrol requeue ID[,ID...] [ID...]`: every id must be a job the fleet runs, or nothing is
#   requeued and the error is scontrol's; then the ids are recorded where the simulated hosts
#   read them. The ids are read as lines, never expanded by the shell.
# No braces: an action's argv is a template, where `{` opens a placeholder.
_JOBS_STAND_IN = f"""state=$1; shift
case "$1 $2" in
"squeue -w")
  printf "%s\\n" "demo scheduler: $*" >> "$0"
  jobs="$state/{SCHEDULER_NODES}/$3"
  [ -f "$jobs" ] || exit 0
  grep -vxF -f "$state/{SCHEDULER_REQUEUED}" "$jobs" || true ;;
"scontrol requeue")
  printf "%s\\n" "demo scheduler: $*" | tee -a "$0"
  shift 2
  if [ $# -eq 0 ]; then echo "scontrol: error: no job id given" >&2; exit 1; fi
  printf "%s\\n" "$@" | tr , "\\n" | while IFS= read -r id; do
    case $id in ''|*[!0-9_]*) known=no ;; *) known=yes ;; esac
    if [ $known = no ] || ! cat "$state/{SCHEDULER_NODES}"/* 2>/dev/null | grep -qxF -e "$id"
    then
      echo "scontrol: error: Invalid job id specified: $id" >&2; exit 1
    fi
  done || exit 1
  printf "%s\\n" "$@" | tr , "\\n" >> "$state/{SCHEDULER_REQUEUED}" ;;
*)
  echo "demo scheduler: no stand-in for: $*" >&2; exit 1 ;;
esac
"""


def _requeue_stand_in(scheduler_log: Path, scheduler: Path) -> dict[str, object]:
    """The Slurm preset's `requeue-jobs`, each of its commands run by the stand-in, so the
    demo previews and runs what a Slurm site would, placeholders and all."""
    table: dict[str, Any] = dict(SLURM.actions["requeue-jobs"])

    def stand_in(argv: list[str]) -> list[str]:
        return ["sh", "-c", _JOBS_STAND_IN, str(scheduler_log), str(scheduler), *argv]

    if "argv" in table:
        table["argv"] = stand_in(table["argv"])
    if "steps" in table:
        table["steps"] = [{**step, "argv": stand_in(step["argv"])} for step in table["steps"]]
    table["confirm"] = True
    table["description"] = (
        "demo: requeues the node's Slurm jobs in the stand-in scheduler; the simulated hosts "
        "stop running them"
    )
    return table


def demo_actions(
    scheduler_log: Path, scheduler: Path | None = None
) -> dict[str, dict[str, object]]:
    """Demo actions run locally and stand for the scheduler commands they name: the demo fleet
    has no scheduler, yet every flow (preview, confirm, journal, output in the log) is real.
    The drain, the requeues and the spare's activation are written to `scheduler_log`; the
    requeue acts on the jobs listed in `scheduler`, the running demo fleet's stand-in
    scheduler directory (DemoFleet.scheduler; without one, the node runs no jobs)."""
    state = scheduler if scheduler is not None else scheduler_log.parent / "no-scheduler"
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
        "requeue-jobs": _requeue_stand_in(scheduler_log, state),
        **DEMO_ACTIONS,
    }


DEMO_ACTIONS: dict[str, dict[str, object]] = {
    "resume": {
        "argv": ["echo", "demo, no scheduler: scontrol update NodeName={node} State=RESUME"],
        "on_resume": True,
        "confirm": True,
        "description": "demo: prints the Slurm resume it stands for",
    },
}


def demo_spares(names: Sequence[str]) -> tuple[str, ...]:
    """The spares of the demo group, its last hosts: none of one host, one of 2-7, two of 8+."""
    return tuple(names[len(names) - default_spares(len(names)) :])


def demo_config(names: Sequence[str], scheduler_log: Path, scheduler: Path | None = None) -> Config:
    """The demo fleet as a hosts.toml would list it: one group, its spares last; `scheduler`
    is the running fleet's stand-in scheduler directory (DemoFleet.scheduler)."""
    spares = demo_spares(names)
    in_service = tuple(n for n in names if n not in spares)
    return Config(
        path=Path("demo"),
        hosts=[HostSpec(name=n, group=DEMO_GROUP) for n in in_service]
        + [HostSpec(name=n, group=DEMO_GROUP, spare=True) for n in spares],
        groups={DEMO_GROUP: HostGroup(name=DEMO_GROUP, hosts=in_service, spares=spares)},
        actions=demo_actions(scheduler_log, scheduler),
    )
