"""`gputui journal`: what the operators did and what gputui saw, oldest first.

Node state changes, every command run (with its exact argv, where, exit status; a command
whose completion was never written shows as interrupted, with what became of its process
group when it ran here) and the faults the monitor recorded.
"""

from __future__ import annotations

import enum
import shlex
import time
from typing import Annotated, Any

import typer

from gputui.cli.app import app
from gputui.cli.ops_common import (
    journal_without_hosts,
    json_text,
    local_time,
    one_line,
    parse_since,
    table,
)
from gputui.cli.options import HostsOption, JournalOption
from gputui.core.model import Level
from gputui.ops.journal import JournalError
from gputui.ops.orphans import status_text, stop_command
from gputui.ops.records import ActionRun, Fault, JournalEntry, NodeEvent


class JournalFormat(str, enum.Enum):
    table = "table"
    json = "json"


@app.command("journal")
def journal_cmd(
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only entries newer than this: 30m, 2h, 7d, or a date"),
    ] = None,
    node: Annotated[str | None, typer.Option("--node", help="Only entries of this node")] = None,
    fmt: Annotated[JournalFormat, typer.Option("--format", help="Output format")] = (
        JournalFormat.table
    ),
    hosts: HostsOption = None,
    journal: JournalOption = None,
) -> None:
    """Show the journal: node states, actions run, faults seen.

    An action cut short because gputui was stopped while it ran says what became of its
    command."""
    start = parse_since(since, time.time()) if since is not None else None
    opened = journal_without_hosts(hosts, journal)
    try:
        entries = opened.timeline(since=start, node=node)
    except JournalError as exc:
        typer.echo(f"gputui: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        opened.close()
    if fmt is JournalFormat.json:
        typer.echo(json_text([entry_json(e) for e in entries]))
        return
    if not entries:
        typer.echo(f"no journal entries{' in that time' if since else ''} ({opened.path})")
        return
    rows = [["TIME", "NODE", "WHAT", "STATUS", "DETAIL"]]
    rows += [entry_row(e) for e in entries]
    typer.echo(table(rows))


def entry_row(e: JournalEntry) -> list[str]:
    if isinstance(e, NodeEvent):
        detail = e.reason + (f" ({e.detail})" if e.detail else "")
        if e.state == "failed":  # the jobs it hit, as known then ("?": nobody could say)
            detail += "; jobs: " + ("?" if e.jobs is None else ", ".join(e.jobs) or "none")
        return [local_time(e.t), e.node, e.state.replace("_", " "), f"by {e.operator}",
                one_line(detail)]  # fmt: skip
    if isinstance(e, ActionRun):
        where = "" if e.where == "local" else f" @{e.where}"
        return [local_time(e.started), e.node, f"{e.action}{where}", _run_status(e),
                one_line(shlex.join(e.argv), 100)]  # fmt: skip
    gpu = f"GPU{e.gpu} " if e.gpu is not None else ""
    what = f"XID {e.xid}" if e.kind == "xid" and e.xid is not None else e.kind
    return [local_time(e.t), e.node, f"{gpu}{what}", _level(e.level), one_line(e.text)]


def _run_status(run: ActionRun) -> str:
    status = run.status
    if status == "failed":
        how = run.error if run.error else f"exit {run.exit_code}"
        return one_line(f"failed: {how}", 40)
    if status == "interrupted":
        return one_line(status_text(run))  # what became of its process group: kept whole
    return status


def _level(level: int) -> str:
    try:
        return Level(level).label
    except ValueError:
        return str(level)


def entry_json(e: JournalEntry) -> dict[str, Any]:
    if isinstance(e, NodeEvent):
        return {
            "type": "node_state", "t": e.t, "node": e.node, "state": e.state,
            "reason": e.reason, "operator": e.operator, "detail": e.detail,
            "jobs": list(e.jobs) if e.jobs is not None else None,
        }  # fmt: skip
    if isinstance(e, ActionRun):
        return {
            "type": "action", "t": e.started, "node": e.node, "action": e.action,
            "run_id": e.run_id, "step": e.step, "argv": list(e.argv), "where": e.where,
            "operator": e.operator, "started": e.started, "ended": e.ended,
            "exit_code": e.exit_code, "error": e.error, "status": e.status, "output": e.output,
            **_group_json(e),
        }  # fmt: skip
    assert isinstance(e, Fault)
    return {
        "type": "fault", "t": e.t, "node": e.node, "kind": e.kind, "level": _level(e.level),
        "gpu": e.gpu, "uuid": e.uuid, "xid": e.xid, "text": e.text,
    }  # fmt: skip


def _group_json(run: ActionRun) -> dict[str, Any]:
    """A local command's process group and, once interrupted, what became of it."""
    group = run.group
    stop = None
    if group is not None and run.status == "interrupted" and run.group_state != "gone":
        stop = stop_command(group.pgid)
    return {
        "pgid": group.pgid if group is not None else None,
        "process_group": run.group_state,
        "process_group_checked": run.group_checked,
        "stop_with": stop,
    }
