"""The scheduler's job list of a hosts file: which command lists the jobs, where, how often.

    reader = job_list_reader(config)          # None: no scheduler preset lists jobs, or period 0
    await reader.refresh()                    # at most once per [scheduler] period_s
    build_jobs(snapshot, reader.jobs)         # the Jobs view, `gputui jobs`
    reader.status()                           # shown beside them when it is not current

The command is the scheduler preset's `list-jobs` action (Slurm: `squeue --json`) as the hosts
file has it, so it runs where the preset's actions run (`[actions.slurm] where = "slurmctl"`)
and a site may change it like any action (`[actions.list-jobs] argv = [...]`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gputui.config import Config
from gputui.ops.catalog import ActionCatalog, load_actions
from gputui.ops.journal import local_operator
from gputui.ops.runner import Command, CommandRunner
from gputui.ops.scheduler import MAX_OUTPUT_CHARS, SchedulerReader

if TYPE_CHECKING:
    from gputui.collect.ssh import SshContext


def job_list_reader(
    config: Config,
    *,
    catalog: ActionCatalog | None = None,
    runner: CommandRunner | None = None,
    ssh: SshContext | None = None,
    operator: str | None = None,
) -> SchedulerReader | None:
    """The bounded reader of `config`'s job list; None without a scheduler preset that lists
    jobs, with `[scheduler] period_s = 0`, or when the site made the list an action for one
    node (it serves the whole fleet). ConfigError when the file's [actions] are wrong."""
    catalog = catalog if catalog is not None else load_actions(config)
    preset = catalog.scheduler
    action = catalog.jobs_action()
    period = config.scheduler_period_s
    if preset is None or preset.read_jobs is None or action is None or period <= 0:
        return None
    step = action.steps[0]
    if step.where.startswith("{") or action.needs - {"operator"}:
        return None
    who = operator if operator is not None else local_operator()
    command = Command(
        argv=step.command.render({"operator": who}),
        where=step.where,
        timeout_s=step.timeout_s,
        keep_chars=MAX_OUTPUT_CHARS,
    )
    # Its own connection by default, so a long job list never waits behind an operator's
    # command, nor one behind it.
    return SchedulerReader(
        command, preset.read_jobs, period_s=period, runner=runner or CommandRunner(ssh)
    )
