"""`gputui jobs`: the training jobs on the fleet's GPUs, for people, cron and scripts.

It gathers one snapshot as `gputui report` does, waits until every host in service has said
which processes its GPUs run (the slow sample), reads the scheduler's job list once beside it
(a configured fleet whose [actions] list jobs: ops/job_list.py), groups the processes into
jobs (core/jobs.py) and prints them (render/jobs.py). Exit status as `report`'s, judged over
the jobs: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (a host's processes unknown, or a bad
argument or hosts file).
"""

from __future__ import annotations

import asyncio
import enum
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from gputui.cli.app import app
from gputui.cli.common import fail, load_hosts, open_monitor, settle
from gputui.cli.exits import PluginCommand
from gputui.collect.fleet import ssh_options
from gputui.collect.ssh import SshContext
from gputui.config import Config, ConfigError
from gputui.core.jobs import (
    SchedulerJob,
    build_jobs,
    jobs_status,
    plain_processes,
    unattributed_hosts,
    worst_first,
)
from gputui.core.model import FleetSnapshot, HostState
from gputui.core.risk import RiskSettings
from gputui.core.risk_summary import fleet_rate_per_gpu_hour
from gputui.ops.job_list import job_list_reader
from gputui.ops.journal import Journal, JournalError, resolve_journal_path
from gputui.ops.scheduler import SchedulerReader
from gputui.render.jobs import JobsReport, jobs_json, jobs_markdown, jobs_table


class JobsFormat(str, enum.Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


_READING = (HostState.STREAMING, HostState.DEGRADED)


async def _collect(hosts: Path | None, demo: int | None, wait_s: float) -> FleetSnapshot:
    """One snapshot once every host answered and every reading host sent its processes (they
    come with the slow signals, every few samples), or when `wait_s` has passed."""
    deadline = time.monotonic() + wait_s
    async with open_monitor(hosts, demo) as monitor:
        snapshot = await settle(monitor, wait_s)
        while time.monotonic() < deadline and any(
            h.state in _READING and h.slow_sample is None and not h.marked_failed
            for h in snapshot.hosts
        ):
            await asyncio.sleep(0.1)
            snapshot = monitor.publish()
        return snapshot


def _job_list(config: Config) -> tuple[SchedulerReader | None, SshContext]:
    """The reader of the scheduler's job list where the preset's actions run (None: the hosts
    file has none), and the SSH state it reaches them with."""
    ssh = SshContext(ssh_options(config.ssh))
    try:
        return job_list_reader(config, ssh=ssh), ssh
    except ConfigError as exc:  # a wrong [actions] table: said before anything is collected
        raise fail(str(exc)) from None


async def _read_job_list(
    reader: SchedulerReader | None, ssh: SshContext
) -> tuple[Mapping[str, SchedulerJob], str]:
    """The scheduler's jobs (names, users, start times, sizes) read once, and the line that
    says what they rest on, or why there are none."""
    try:
        if reader is None:
            return {}, NO_SCHEDULER
        try:
            await reader.refresh(force=True)
            return reader.jobs, reader.status()
        finally:
            await reader.aclose()
    finally:
        await ssh.close()


NO_SCHEDULER = (
    "no scheduler job list (no scheduler preset in [actions], or [scheduler] period_s = 0): "
    "the jobs as the hosts name them"
)


async def _gather(
    hosts: Path | None,
    demo: int | None,
    wait_s: float,
    job_list: tuple[SchedulerReader | None, SshContext] | None,
) -> tuple[FleetSnapshot, Mapping[str, SchedulerJob], str]:
    """The fleet's snapshot and, read beside it, the scheduler's job list."""
    if job_list is None:
        return await _collect(hosts, demo, wait_s), {}, ""
    snapshot, (told, said) = await asyncio.gather(
        _collect(hosts, demo, wait_s), _read_job_list(*job_list)
    )
    return snapshot, told, said


def _record(journal: Path | None, configured: Path | None) -> tuple[tuple[int, float] | None, str]:
    """The journal's (failures, GPU-hours) for the posterior rate, and a note when unreadable."""
    path = resolve_journal_path(journal, configured)
    if not path.exists():
        return None, ""
    try:
        with Journal.open(path) as opened:
            failures, exposure = opened.failures_and_exposure()
    except JournalError as exc:
        return None, f"journal not read ({exc}): the prior rate is used"
    return ((failures, exposure) if exposure > 0 else None), ""


@app.command("jobs", cls=PluginCommand)
def jobs(
    hosts: Annotated[
        Path | None,
        typer.Option(
            "--hosts", help="hosts.toml (default: $GPUTUI_HOSTS, then the user config dir)"
        ),
    ] = None,
    demo: Annotated[
        int | None,
        typer.Option("--demo", help="The jobs of N simulated hosts behind local SSH servers"),
    ] = None,
    fmt: Annotated[JobsFormat, typer.Option("--format", help="Output format")] = JobsFormat.table,
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for every host to answer")
    ] = 15.0,
    journal: Annotated[
        Path | None,
        typer.Option(
            "--journal",
            help="Journal whose record gives the fleet's failure rate (default: $GPUTUI_JOURNAL, "
            "hosts.toml's [journal], the state dir)",
        ),
    ] = None,
) -> None:
    """List the jobs on the fleet's GPUs.

    Each with its hosts, GPUs, user, worst verdict, run time and risk.

    Exit code: 0 OK, 1 WARNING, 2 CRITICAL (a job's worst GPU), 3 UNKNOWN (a host whose
    processes are not known, unless a job is critical; or a bad argument or hosts file).
    """
    if hosts is not None and demo is not None:
        raise fail("--hosts and --demo exclude each other")
    if demo is not None and not 1 <= demo <= 5000:
        raise fail("--demo takes a number of hosts from 1 to 5000")
    if wait <= 0:
        raise fail("--wait must be a positive number of seconds")
    settings, record, note, job_list = RiskSettings(), None, "", None
    if demo is None:
        config = load_hosts(hosts)
        settings = config.risk
        record, note = _record(journal, config.journal_path)
        job_list = _job_list(config)
    elif journal is not None:
        raise fail("--journal goes with a configured fleet, not --demo")
    snapshot, told, said = asyncio.run(_gather(hosts, demo, wait, job_list))
    rate = fleet_rate_per_gpu_hour(settings, *(record or (None, None)))
    found = worst_first(
        build_jobs(
            snapshot,
            told,
            rate_per_gpu_hour=rate,
            checkpoint_write_s=settings.checkpoint_minutes * 60,
        )
    )
    report = JobsReport(
        snapshot=snapshot,
        jobs=found,
        status=jobs_status(found, snapshot),
        leftover=plain_processes(snapshot),
        unread=unattributed_hosts(snapshot),
        rate_per_gpu_hour=rate,
        rate_source="posterior" if record is not None else "prior",
        note="; ".join(n for n in (said, note) if n),
    )
    if fmt is JobsFormat.json:
        typer.echo(jobs_json(report))
    elif fmt is JobsFormat.markdown:
        typer.echo(jobs_markdown(report), nl=False)
    else:
        width = max(80, shutil.get_terminal_size((80, 24)).columns)
        typer.echo(jobs_table(report, width=width), nl=False)
    raise typer.Exit(int(report.status))
