"""What the node, action and journal commands share: opening the journal and the actions,
confirmation, running an operation with its output on the terminal, times and durations.

Opening the journal also looks for the commands of interrupted actions (gputui was killed
while one ran): one that still runs is said on stderr, with the command that stops it.

Every mistake of the user ends in `fail()`: one line on stderr and exit status 2. A command
that ran but failed exits 1.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import msgspec
import typer

from gputui.cli.common import fail, load_hosts
from gputui.collect.fleet import ssh_options
from gputui.collect.ssh import HostError, SshContext
from gputui.config import Config, ConfigError, resolve_hosts_path
from gputui.core.text import is_plain, plain
from gputui.ops.actions import ActionError, NodeJobs, OperatorActions, Outcome
from gputui.ops.journal import Journal, JournalError, resolve_journal_path
from gputui.ops.orphans import orphan_message
from gputui.ops.plans import Operation

EXIT_FAILED = 1

YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Run without asking (needed when not on a terminal)")
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Print the exact commands and where they would run")
]
JobOption = Annotated[
    list[str] | None,
    typer.Option(
        "--job",
        help="A job on the node (repeatable): fills {jobs} and {job} instead of the jobs read "
        "from the node's GPUs",
    ),
]


def open_journal(path: Path) -> Journal:
    try:
        journal = Journal.open(path)
    except JournalError as exc:
        raise fail(str(exc)) from None
    try:
        report_interrupted(journal)
    except JournalError as exc:
        journal.close()
        raise fail(str(exc)) from None
    return journal


def report_interrupted(journal: Journal) -> None:
    """Check the process groups of interrupted commands; say what became of each, once."""
    for run in journal.check_interrupted():
        typer.echo(f"gputui: {plain(orphan_message(run))}", err=True)  # its argv may quote a host


def journal_for(config: Config | None, cli_path: Path | None) -> Journal:
    configured = config.journal_path if config is not None else None
    return open_journal(resolve_journal_path(cli_path, configured))


def journal_without_hosts(hosts: Path | None, cli_path: Path | None) -> Journal:
    """The journal for commands that need no hosts file, which may still name the journal."""
    if cli_path is not None:
        return open_journal(resolve_journal_path(cli_path))
    try:
        hosts_path = resolve_hosts_path(hosts)
    except ConfigError:
        if hosts is not None:
            raise fail(f"no hosts file {hosts}") from None
        return open_journal(resolve_journal_path())  # no hosts file at all: the default
    return journal_for(load_hosts(hosts_path), None)


@contextmanager
def operator_actions(
    hosts: Path | None, journal: Path | None, *, readonly: bool = False
) -> Iterator[OperatorActions]:
    """The operator's verbs over the hosts file; `readonly` (--readonly) makes them refuse
    every request, as readonly = true in the file does (OperatorActions.refuse_if_readonly)."""
    config = load_hosts(hosts)
    if readonly:
        config = msgspec.structs.replace(config, readonly=True)
    opened = journal_for(config, journal)
    try:
        try:
            ssh = SshContext(ssh_options(config.ssh))
        except HostError as exc:
            raise fail(exc.text) from None
        try:
            ops = OperatorActions(config, opened, ssh)
        except ConfigError as exc:
            raise fail(str(exc)) from None
        try:
            yield ops
        except JournalError as exc:  # e.g. the disk is full: said plainly, not as a traceback
            raise fail(str(exc), EXIT_FAILED) from None
    finally:
        opened.close()


@contextmanager
def user_errors() -> Iterator[None]:
    """ActionError (an unknown action or host, a missing or unsafe value) as one line."""
    try:
        yield
    except ActionError as exc:
        raise fail(str(exc)) from None


def read_jobs(ops: OperatorActions, host: str, given: list[str] | None) -> NodeJobs:
    """The jobs on `host`'s GPUs: `given`, else one reading of the node, else the scheduler's
    job list (OperatorActions.read_jobs). Its connections are closed before this returns."""

    async def go() -> NodeJobs:
        try:
            return await ops.read_jobs(host, given=given or ())
        finally:
            await ops.aclose()

    try:
        return asyncio.run(go())
    except KeyboardInterrupt:
        typer.echo("gputui: interrupted while reading the node's jobs; nothing done", err=True)
        raise typer.Exit(130) from None


def show_preview(op: Operation) -> None:
    for line in op.preview():
        typer.echo(plain(line))  # a reason may quote a host's text


def confirm(op: Operation, yes: bool, what: str = "Run these commands?") -> None:
    """Ask on a terminal; refuse without --yes elsewhere. Exits when the answer is no."""
    if yes or not op.needs_confirm:
        return
    if not sys.stdin.isatty():
        raise fail(
            f"{op.summary()} needs confirmation: run it on a terminal, or add --yes "
            "(--dry-run shows the commands)"
        )
    show_preview(op)
    if not typer.confirm(what, default=False):
        typer.echo("nothing done", err=True)
        raise typer.Exit(EXIT_FAILED)


def run_operation(ops: OperatorActions, op: Operation) -> Outcome:
    """Run `op`, its commands and their output on stdout, its problems on stderr."""

    async def go() -> Outcome:
        try:
            # Command output comes from nodes and controllers: no control characters through.
            return await ops.run(op, on_output=lambda line: typer.echo(plain(line)))
        finally:
            await ops.aclose()

    try:
        outcome = asyncio.run(go())
    except KeyboardInterrupt:
        typer.echo(
            "gputui: interrupted; `gputui journal` shows what ran and what was cut short", err=True
        )
        raise typer.Exit(130) from None
    for line in outcome.errors():
        typer.echo(f"gputui: {plain(line)}", err=True)
    return outcome


def run_or_exit(ops: OperatorActions, op: Operation) -> None:
    """Run `op` (run_operation); a failed or refused command exits 1."""
    if not run_operation(ops, op).ok:
        raise typer.Exit(EXIT_FAILED)


def preview_or_run(ops: OperatorActions, op: Operation, *, yes: bool, dry_run: bool) -> bool:
    """A prepared operation, as every command that carries one out treats it: with --dry-run
    its commands are shown and nothing runs; otherwise it is confirmed (confirm()) and run,
    exiting 1 when it fails. True when it ran and succeeded."""
    if dry_run:
        show_preview(op)
        return False
    confirm(op, yes)
    run_or_exit(ops, op)
    return True


# --------------------------------------------------------------------------------------------
# Times
# --------------------------------------------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")


def parse_since(text: str, now: float) -> float:
    """`--since`: a duration back from now (90s, 30m, 2h, 7d, 1w, 1h30m) or a local date/time."""
    value = text.strip().lower()
    parts = _DURATION.findall(value)
    if parts and _DURATION.sub("", value).strip() == "":
        return now - sum(float(n) * _UNITS[u] for n, u in parts)
    try:
        return dt.datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise fail(
            f"--since: expected a duration such as 30m, 2h or 7d, or a date such as 2026-11-01, "
            f"got {json.dumps(text)}"
        ) from None


def local_time(t: float | None) -> str:
    if t is None:
        return ""
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def one_line(text: str, limit: int = 80) -> str:
    """`text` on one line for a table: control characters escaped, long text cut."""
    flat = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def table(rows: list[list[str]]) -> str:
    """Plain aligned columns (the first row is the header): greppable, no box drawing.

    Cells are shown as written, less control characters: node names, reasons and fault texts
    come from hosts and from the journal, and must not reach the terminal as escapes."""
    rows = [[plain(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def json_text(doc: object) -> str:
    """`doc` as indented JSON, non-ASCII text kept readable, but every control character,
    C1 control and bidi override escaped (json leaves the last two raw with ensure_ascii off,
    and a terminal reads 0x9b as CSI)."""
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    if is_plain(text.replace("\n", "")):
        return text
    # Outside strings a JSON document holds only ASCII, so every such character is in one.
    return "".join(c if c == "\n" or is_plain(c) else f"\\u{ord(c):04x}" for c in text)


class ListFormat(str, enum.Enum):
    """--format of the listing commands (node list, action list)."""

    table = "table"
    json = "json"
