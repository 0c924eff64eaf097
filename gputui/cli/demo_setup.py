"""The demo fleet's hosts.toml stand-in: its group, its spares, its actions.

The simulated hosts sim-001... form one group, `demo`. Its last hosts are that group's spares
(`demo_spares`; the demo fleet runs them healthy and idle, gputui.collect.demo). The actions run
locally and stand for the Slurm commands they name, so every operator flow (mark failed,
drain, requeue, bring a spare in, resume) is real without a scheduler. The requeue is more
than words: the stand-in lists the Slurm jobs the fleet runs on the node and records the ids
it is given, and the simulated hosts of those jobs stop running them.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gputui.collect.demo import SCHEDULER_NODES, SCHEDULER_REQUEUED, default_spares
from gputui.config import Config, HostGroup, HostSpec
from gputui.ops.presets import SLURM

DEMO_GROUP = "demo"
#: The stand-in's programs, written beside the scheduler log: each action's argv is the Slurm
#: command line it stands for, after `sh <this dir>/scontrol` or `sh <this dir>/squeue`, so a
#: confirmation shows the command it stands for, not the workings of a stand-in.
STAND_IN_DIR = "demo-slurm"

# The stand-in's `scontrol`: every command is logged and printed; `requeue ID[,ID...] [ID...]`
# also checks that every id is a job the fleet runs (or requeues nothing, with scontrol's
# error) and records the ids where the simulated hosts read them. The node, the spare, the
# reason and the ids arrive as separate arguments ("$@"), never as shell text, exactly as a
# real action's placeholders do; the ids are read as lines, never expanded by the shell.
_SCONTROL = """log={log}; state={state}
printf "%s\\n" "demo scheduler: scontrol $*" | tee -a "$log"
[ "$1" = requeue ] || exit 0
shift
if [ $# -eq 0 ]; then echo "scontrol: error: no job id given" >&2; exit 1; fi
printf "%s\\n" "$@" | tr , "\\n" | while IFS= read -r id; do
  case $id in ''|*[!0-9_]*) known=no ;; *) known=yes ;; esac
  if [ $known = no ] || ! cat "$state/{nodes}"/* 2>/dev/null | grep -qxF -e "$id"; then
    echo "scontrol: error: Invalid job id specified: $id" >&2; exit 1
  fi
done || exit 1
printf "%s\\n" "$@" | tr , "\\n" >> "$state/{requeued}"
"""

# The stand-in's `squeue -w NODE -h -o %A`: the node's Slurm jobs not requeued yet, one id a
# line. Logged, not printed: its output is the list.
_SQUEUE = """log={log}; state={state}
printf "%s\\n" "demo scheduler: squeue $*" >> "$log"
if [ "$1" != -w ]; then echo "demo scheduler: no stand-in for: squeue $*" >&2; exit 1; fi
jobs="$state/{nodes}/$2"
[ -f "$jobs" ] || exit 0
grep -vxF -f "$state/{requeued}" "$jobs" || true
"""


def stand_in(scheduler_log: Path, scheduler: Path) -> dict[str, list[str]]:
    """Write the stand-in `scontrol` and `squeue` beside `scheduler_log`, logging there and
    keeping their jobs in `scheduler` (DemoFleet.scheduler); each program's argv prefix."""
    where = scheduler_log.parent / STAND_IN_DIR
    where.mkdir(mode=0o700, exist_ok=True)
    values = {
        "log": shlex.quote(str(scheduler_log)),
        "state": shlex.quote(str(scheduler)),
        "nodes": SCHEDULER_NODES,
        "requeued": SCHEDULER_REQUEUED,
    }
    programs: dict[str, list[str]] = {}
    for name, script in (("scontrol", _SCONTROL), ("squeue", _SQUEUE)):
        path = where / name
        path.write_text(f"# gputui demo: stands for Slurm's {name}\n" + script.format(**values))
        # Run by sh, not executed: a scratch directory may sit on a noexec /tmp.
        programs[name] = ["sh", str(path)]
    return programs


def _slurm(programs: dict[str, list[str]], argv: list[str]) -> list[str]:
    """`argv` (a Slurm command line with placeholders) as the stand-in runs it."""
    return [*programs[argv[0]], *argv[1:]]


def _requeue_stand_in(programs: dict[str, list[str]]) -> dict[str, object]:
    """The Slurm preset's `requeue-jobs`, each of its commands run by the stand-in, so the
    demo previews and runs what a Slurm site would, placeholders and all."""
    table: dict[str, Any] = dict(SLURM.actions["requeue-jobs"])
    if "argv" in table:
        table["argv"] = _slurm(programs, table["argv"])
    if "steps" in table:
        table["steps"] = [
            {**step, "argv": _slurm(programs, step["argv"])} for step in table["steps"]
        ]
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
    The drain, the requeues, the spare's activation and the resume are written to
    `scheduler_log`; the requeue acts on the jobs listed in `scheduler`, the running demo
    fleet's stand-in scheduler directory (DemoFleet.scheduler; without one, the node runs no
    jobs). The stand-in's programs are written beside the log (`stand_in`)."""
    state = scheduler if scheduler is not None else scheduler_log.parent / "no-scheduler"
    programs = stand_in(scheduler_log, state)
    update = ["scontrol", "update", "NodeName={node}"]
    return {
        "drain": {
            "argv": _slurm(programs, [*update, "State=DRAIN", "Reason=gputui: {reason}"]),
            "on_fail": True,
            "confirm": True,
            "description": f"demo: writes the Slurm drain it stands for to {scheduler_log}",
        },
        "activate-spare": {
            "argv": _slurm(programs, ["scontrol", "update", "NodeName={spare}", "State=RESUME"]),
            "confirm": True,
            "description": f"demo: writes the Slurm resume of the spare to {scheduler_log}",
        },
        "requeue-jobs": _requeue_stand_in(programs),
        "resume": {
            "argv": _slurm(programs, [*update, "State=RESUME"]),
            "on_resume": True,
            "confirm": True,
            "description": f"demo: writes the Slurm resume it stands for to {scheduler_log}",
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
