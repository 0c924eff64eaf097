"""`gputui node fail|resume|spare|list`: take nodes out of service, bring them and spares back.

Each command prints the commands it runs and their output, records everything in the journal,
and exits 0 when all went well, 1 when a command failed or was refused (the problems are on
stderr, one line each), 2 for a mistake in the request or the hosts file.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from gputui.cli.app import app
from gputui.cli.ops_common import (
    EXIT_FAILED,
    DryRunOption,
    JobOption,
    ListFormat,
    YesOption,
    confirm,
    json_text,
    local_time,
    one_line,
    operator_actions,
    preview_or_run,
    read_jobs,
    run_operation,
    run_or_exit,
    show_preview,
    table,
    user_errors,
)
from gputui.cli.options import HostsOption, JournalOption, ReadonlyOption
from gputui.core.text import plain
from gputui.ops.actions import OperatorActions
from gputui.ops.nodes import NodeStatus
from gputui.ops.plans import Operation

node_app = typer.Typer(
    help="Mark nodes failed, return them to service, bring spares in.",
    no_args_is_help=True,
)
app.add_typer(node_app, name="node")


@node_app.command("fail")
def node_fail(
    host: Annotated[str, typer.Argument(help="The node, as named in hosts.toml")],
    reason: Annotated[str, typer.Option("--reason", "-r", help='Why, e.g. "XID 79"')],
    action: Annotated[
        list[str] | None,
        typer.Option(
            "--action",
            "-a",
            help="An action to run (repeatable, in order); default: those with on_fail = true",
        ),
    ] = None,
    spare: Annotated[
        bool | None,
        typer.Option(
            "--spare/--no-spare",
            help="Bring the group's first healthy spare in (default: ask on a terminal)",
        ),
    ] = None,
    job: JobOption = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    hosts: HostsOption = None,
    journal: JournalOption = None,
    readonly: ReadonlyOption = False,
) -> None:
    """Mark HOST failed and take it out of the scheduler.

    Runs the on_fail actions (drain it, requeue its jobs...) or those --action names.

    The jobs it hits are read from HOST's GPU processes (or, when HOST cannot say, from the
    scheduler's job list), listed, journaled, and passed to actions as {jobs} and {job}."""
    with operator_actions(hosts, journal, readonly=readonly) as ops, user_errors():
        ops.check_fail(host, reason, action)  # a mistake is said before the node is read
        jobs = read_jobs(ops, host, job)
        op = ops.prepare_fail(host, reason, action, jobs=jobs)
        spare_op = ops.prepare_spare(host) if spare is not False else None
        if dry_run:
            show_preview(op)
            if spare_op is not None:
                typer.echo("then, " + ("with --spare" if spare else "if confirmed") + ":")
                show_preview(spare_op)
            return
        confirm(op, yes)
        if spare and spare_op is not None:
            confirm(spare_op, yes, "And bring the spare in?")  # asked before anything runs
        outcome = run_operation(ops, op)
        typer.echo(f"{host} marked failed: {json_text(op.reason)}")
        typer.echo(plain(jobs.summary()))  # as journaled with it
        if spare_op is None:
            if spare:
                typer.echo(f"gputui: no healthy spare left in {host}'s group", err=True)
        elif not outcome.ok:
            if spare:
                typer.echo(
                    f"gputui: spare {spare_op.spare} not brought in, as an action failed; "
                    f"when ready: gputui node spare {host}",
                    err=True,
                )
        elif spare:
            _bring_spare(ops, spare_op)
        elif spare is None and sys.stdin.isatty():
            show_preview(spare_op)
            if typer.confirm(f"Bring spare {spare_op.spare} into service?", default=False):
                _bring_spare(ops, spare_op)
        elif spare is None:
            typer.echo(f"spare {spare_op.spare} can replace {host}: gputui node spare {host}")
        if not outcome.ok or (spare and spare_op is None):
            raise typer.Exit(EXIT_FAILED)


def _bring_spare(ops: OperatorActions, op: Operation) -> None:
    run_or_exit(ops, op)
    _spare_in_service(op)


def _spare_in_service(op: Operation) -> None:
    typer.echo(f"spare {op.spare} in service in place of {op.node}")


@node_app.command("resume")
def node_resume(
    host: Annotated[str, typer.Argument(help="The node, as named in hosts.toml")],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Resume even a node someone else took out of service (asks first)",
        ),
    ] = False,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    hosts: HostsOption = None,
    journal: JournalOption = None,
    readonly: ReadonlyOption = False,
) -> None:
    """Return HOST to service.

    Resumes it in the scheduler if gputui took it out, and records it."""
    with operator_actions(hosts, journal, readonly=readonly) as ops, user_errors():
        op = ops.prepare_resume(host, force)
        if preview_or_run(ops, op, yes=yes, dry_run=dry_run):
            typer.echo(f"{host} back in service")


@node_app.command("spare")
def node_spare(
    host: Annotated[str, typer.Argument(help="The failed node the spare replaces")],
    spare: Annotated[
        str | None,
        typer.Option("--spare", help="The spare to use (default: the group's first healthy one)"),
    ] = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    hosts: HostsOption = None,
    journal: JournalOption = None,
    readonly: ReadonlyOption = False,
) -> None:
    """Bring a spare into service in place of HOST.

    The first healthy spare of HOST's group, or --spare; runs activate-spare."""
    with operator_actions(hosts, journal, readonly=readonly) as ops, user_errors():
        op = ops.prepare_spare(host, spare)
        if op is None:
            typer.echo(f"gputui: no healthy spare left in {host}'s group", err=True)
            raise typer.Exit(EXIT_FAILED)
        if preview_or_run(ops, op, yes=yes, dry_run=dry_run):
            _spare_in_service(op)


@node_app.command("list")
def node_list(
    fmt: Annotated[ListFormat, typer.Option("--format", help="Output format")] = ListFormat.table,
    hosts: HostsOption = None,
    journal: JournalOption = None,
) -> None:
    """List the nodes with their states.

    Every node of hosts.toml: in service, failed, spare, spare in use."""
    with operator_actions(hosts, journal) as ops:
        nodes = ops.nodes()
    if fmt is ListFormat.json:
        typer.echo(json_text([_node_json(n) for n in nodes]))
        return
    rows = [["NODE", "GROUP", "STATE", "SINCE", "BY", "REASON"]]
    for n in nodes:
        state = n.status.replace("_", " ")
        if n.status == "spare_active" and n.detail:
            state = f"spare, replaces {n.detail}"
        reason = n.reason if n.status == "failed" else ""
        rows.append(
            [
                n.name,
                n.group,
                state,
                local_time(n.since) if n.status != "spare" else "",
                n.operator if n.status != "spare" else "",
                one_line(reason),
            ]
        )
    typer.echo(table(rows))


def _node_json(n: NodeStatus) -> dict[str, object]:
    return {
        "node": n.name,
        "group": n.group,
        "spare": n.spare,
        "state": n.status,
        "reason": n.reason,
        "operator": n.operator,
        "since": n.since,
        "detail": n.detail,
    }
