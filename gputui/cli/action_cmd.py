"""`gputui action run|list`: run one configured action on a node, or list the actions."""

from __future__ import annotations

import re
import shlex
from typing import Annotated

import typer

from gputui.cli.app import app
from gputui.cli.ops_common import (
    DryRunOption,
    JobOption,
    ListFormat,
    YesOption,
    json_text,
    operator_actions,
    preview_or_run,
    read_jobs,
    table,
    user_errors,
)
from gputui.cli.options import HostsOption, JournalOption, ReadonlyOption
from gputui.ops.catalog import ActionDef

action_app = typer.Typer(help="Run one configured action on a node, or list them.")
app.add_typer(action_app, name="action")


@action_app.command("run")
def action_run(
    name: Annotated[str, typer.Argument(help="The action, e.g. drain (see `gputui action list`)")],
    host: Annotated[str, typer.Argument(help="The node, as named in hosts.toml")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Fills {reason}")] = "",
    job: JobOption = None,
    gpu: Annotated[int | None, typer.Option("--gpu", help="Fills {gpu} (a GPU index)")] = None,
    uuid: Annotated[str | None, typer.Option("--uuid", help="Fills {uuid}")] = None,
    spare: Annotated[
        str | None, typer.Option("--spare", help="Fills {spare} (default: the proposed spare)")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Skip the scheduler-state guard (asks first)")
    ] = False,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    hosts: HostsOption = None,
    journal: JournalOption = None,
    readonly: ReadonlyOption = False,
) -> None:
    """Run action NAME for HOST. It is journaled; no node state changes (see `gputui node`).

    An action that names the node's jobs ({jobs}, {job}) gets those read from HOST's GPU
    processes (or the scheduler's job list when HOST cannot say), unless --job names them."""
    with operator_actions(hosts, journal, readonly=readonly) as ops, user_errors():
        jobs = None
        if name in ops.catalog and ops.catalog[name].names_jobs:
            jobs = read_jobs(ops, host, job)
        op = ops.prepare_action(
            name, host, reason=reason, jobs=jobs, gpu=gpu, uuid=uuid, spare=spare, force=force
        )
        preview_or_run(ops, op, yes=yes, dry_run=dry_run)


@action_app.command("list")
def action_list(
    fmt: Annotated[ListFormat, typer.Option("--format", help="Output format")] = ListFormat.table,
    hosts: HostsOption = None,
    journal: JournalOption = None,
) -> None:
    """List the actions and their commands.

    Those hosts.toml defines, presets included."""
    with operator_actions(hosts, journal) as ops:
        actions = list(ops.catalog)
    if fmt is ListFormat.json:
        typer.echo(json_text([_action_json(a) for a in actions]))
        return
    # PRESET: the preset an action comes from ("-": defined in hosts.toml). TRIGGER: the node
    # command that runs it unasked (on_fail, on_resume; "-": only when named). Then each of its
    # commands with where it runs.
    rows = [["ACTION", "PRESET", "TRIGGER", "CONFIRM", "[WHERE] COMMANDS"]]
    for a in actions:
        runs = ", ".join(filter(None, ["node fail" * a.on_fail, "node resume" * a.on_resume]))
        commands = " ; ".join(
            f"[{s.where}] {_show(s.command.text)}" + (" (per line)" * s.for_each_line)
            for s in a.steps
        )
        rows.append([a.name, a.preset or "-", runs or "-", "yes" if a.confirm else "no", commands])
    typer.echo(table(rows))


def _show(args: tuple[str, ...]) -> str:
    """A template for reading: arguments quoted only where spaces or quotes would mislead."""
    return " ".join(a if a and not _NEEDS_QUOTES.search(a) else shlex.quote(a) for a in args)


_NEEDS_QUOTES = re.compile(r"[\s'\"\\]")


def _action_json(a: ActionDef) -> dict[str, object]:
    return {
        "name": a.name,
        "preset": a.preset,
        "description": a.description,
        "confirm": a.confirm,
        "on_fail": a.on_fail,
        "on_resume": a.on_resume,
        "guard": a.guard,
        "steps": [
            {
                "argv": list(s.command.text),
                "where": s.where,
                "timeout_s": s.timeout_s,
                "for_each_line": s.for_each_line,
            }
            for s in a.steps
        ],
    }
