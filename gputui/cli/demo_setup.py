"""The demo fleet as `gputui demo` runs it: its hosts.toml stand-in, its spares, its actions.

The simulated hosts sim-001... form one group, `demo`. Its last hosts are that group's spares
(`demo_spares`): they run the healthy scenario, idle, so a spare can be brought in whatever
the scenario mix gave the other hosts, and the monitor flags them as spares. The actions run
locally and stand for the Slurm commands they name, so every operator flow (mark failed,
drain, requeue, bring a spare in, resume) is real without a scheduler.

Imported by the demo command only: it loads the collector.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from gputui.agent.scenario import validate_scenario
from gputui.collect.demo import DemoFleet
from gputui.collect.fleet import plans_for_demo
from gputui.collect.monitor import FleetMonitor
from gputui.config import Config, HostGroup, HostSpec

DEMO_GROUP = "demo"
SPARE_WORKLOAD = "idle"  # a spare waits for work

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
    """The spares of the demo group: none of one host, the last of 2-7, the last two of 8+."""
    count = 0 if len(names) < 2 else 1 if len(names) < 8 else 2
    return tuple(names[len(names) - count :])


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


def spare_scenario(scenario: dict[str, Any]) -> dict[str, Any]:
    """`scenario`'s host as a spare: the same GPUs, no fault, no work."""
    spare = copy.deepcopy(scenario)
    spare.update(
        name="healthy",
        description="A spare node: healthy and idle, waiting to be brought in.",
        workload=SPARE_WORKLOAD,
        fault=[],
    )
    return validate_scenario(spare)


class SparedDemoFleet(DemoFleet):
    """The demo fleet whose last hosts (`demo_spares`) run as healthy, idle spares."""

    def _assignment(self) -> list[tuple[str, dict[str, object]]]:
        assignment = super()._assignment()
        spares = set(demo_spares([name for name, _ in assignment]))
        return [
            (name, spare_scenario(scenario) if name in spares else scenario)
            for name, scenario in assignment
        ]


@contextlib.asynccontextmanager
async def demo_fleet_with_spares(
    n_hosts: int,
    *,
    seed: int = 1,
    interval_s: float = 1.0,
    tick_s: float = 1.0,
    history_len: int = 300,
) -> AsyncIterator[tuple[DemoFleet, FleetMonitor]]:
    """The running demo fleet, its spares flagged, and a monitor over it."""
    async with SparedDemoFleet(n_hosts, seed=seed) as fleet:
        plans, ssh = plans_for_demo(fleet, interval_s)
        spares = set(demo_spares([host.name for host in fleet.hosts]))
        for plan in plans:
            plan.spare = plan.source.name in spares
        monitor = FleetMonitor(plans, tick_s=tick_s, history_len=history_len, closers=[ssh.close])
        async with monitor:
            yield fleet, monitor
