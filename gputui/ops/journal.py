"""The journal: a durable record of what the operator decided and what gputui saw.

    journal = Journal.open(resolve_journal_path(cli_path, config.journal_path))
    journal.record_node_state("gpu002", "failed", "XID 79", jobs=("slurm:4242",))
    run = journal.begin_run(run_id, "drain", "gpu002", 0, argv, "local")   # the intent
    run = journal.record_process_group(run, process_group_of(pid))          # once it started
    journal.end_run(run, exit_code=0, output="...")                        # its completion
    failures, gpu_hours = journal.failures_and_exposure(since=None)        # for core.risk

SQLite in WAL mode with synchronous=FULL, so a change is on disk when its call returns: an
intent written before a command starts survives kill -9 (or a power cut) of gputui mid-command
and is then shown as interrupted; `check_interrupted()` finds out, on the next start, whether
such a command still runs (gputui/ops/orphans.py). Several processes (the TUI and CLI
commands) share one file; writers wait for each other (busy_timeout) instead of failing. One
Journal object may be used from several threads: a lock serialises its connection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import platformdirs

from gputui.core.rollup import BUCKET_5M_S, BUCKET_DAY_S, Rollup, RollupRetention
from gputui.ops.journal_schema import JournalError, connect, write_transaction
from gputui.ops.orphans import probe_group
from gputui.ops.records import (
    GROUP_STATES,
    NODE_STATES,
    ActionRun,
    Fault,
    GroupState,
    JournalEntry,
    NodeEvent,
    NodeState,
    ProcessGroup,
    count_failures,
    entry_time,
    this_machine,
)
from gputui.ops.rollup_store import select_latest, select_series, store

__all__ = [
    "JOURNAL_ENV",
    "OUTPUT_TAIL_CHARS",
    "ActionRun",
    "Fault",
    "Journal",
    "JournalEntry",
    "JournalError",
    "NodeEvent",
    "default_journal_path",
    "local_operator",
    "resolve_journal_path",
]

#: The environment variable naming the journal file when --journal is not given.
JOURNAL_ENV = "GPUTUI_JOURNAL"
JOURNAL_FILE_NAME = "journal.sqlite3"
#: The most output kept per command: the tail is what explains a failure.
OUTPUT_TAIL_CHARS = 4000


def default_journal_path() -> Path:
    """The journal in the user's state dir (~/.local/state/gputui/journal.sqlite3 on Linux)."""
    return platformdirs.user_state_path("gputui", appauthor=False) / JOURNAL_FILE_NAME


def resolve_journal_path(
    cli_path: Path | None = None,
    configured: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """`--journal PATH`, else $GPUTUI_JOURNAL, else hosts.toml's [journal] path, else default."""
    env = os.environ if environ is None else environ
    if cli_path is not None:
        return cli_path.expanduser()
    if env.get(JOURNAL_ENV):
        return Path(env[JOURNAL_ENV]).expanduser()
    if configured is not None:
        return configured.expanduser()
    return default_journal_path()


def local_operator() -> str:
    """The local user name, recorded as the operator of every change."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers): the uid still identifies
        return f"uid {os.getuid()}"


class Journal:
    """One open journal file. Use `Journal.open(path)`; close it (or use `with`) when done."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._lock = threading.Lock()
        self.operator = local_operator()

    @classmethod
    def open(cls, path: Path | str | None = None) -> Journal:
        """Open (creating and migrating as needed) the journal at `path` (default location)."""
        resolved = Path(path) if path is not None else default_journal_path()
        return cls(resolved, connect(resolved))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; SQLite's failures (locked too long, disk full) as JournalError."""
        with self._lock:
            try:
                with write_transaction(self._conn) as conn:
                    yield conn
            except sqlite3.Error as exc:
                raise JournalError(f"cannot write the journal {self.path}: {exc}") from None

    def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._transaction() as conn:
            cur = conn.execute(sql, params)
            return int(cur.lastrowid or 0)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return list(self._conn.execute(sql, params).fetchall())
            except sqlite3.DatabaseError as exc:
                raise JournalError(f"cannot read the journal {self.path}: {exc}") from None

    # -- node states --------------------------------------------------------------------------

    def record_node_state(
        self,
        node: str,
        state: NodeState,
        reason: str = "",
        detail: str = "",
        *,
        t: float | None = None,
        jobs: Sequence[str] | None = None,
    ) -> NodeEvent:
        """Record that `node` is now `state`; returns the row as written (committed).

        `jobs`: the keys of the jobs a failure hits (None: unknown)."""
        if state not in NODE_STATES:
            raise ValueError(f"unknown node state {state!r}")
        event = NodeEvent(
            t=time.time() if t is None else t,
            node=node,
            state=state,
            reason=reason,
            operator=self.operator,
            detail=detail,
            jobs=tuple(jobs) if jobs is not None else None,
        )
        row_id = self._write(
            "INSERT INTO node_events (t, node, state, reason, operator, detail, jobs) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                event.t,
                node,
                state,
                reason,
                event.operator,
                detail,
                None if event.jobs is None else json.dumps(list(event.jobs), ensure_ascii=False),
            ),
        )
        return dataclasses.replace(event, id=row_id)

    def node_states(self) -> dict[str, NodeEvent]:
        """The latest state change of every node that has one."""
        rows = self._read(
            "SELECT id, t, node, state, reason, operator, detail, jobs FROM node_events n "
            "WHERE id = (SELECT max(id) FROM node_events WHERE node = n.node) ORDER BY node"
        )
        return {row[2]: _node_event(row) for row in rows}

    def marked_failed(self) -> set[str]:
        """Nodes whose latest state is failed."""
        return {node for node, ev in self.node_states().items() if ev.state == "failed"}

    def spares_in_service(self) -> dict[str, str]:
        """Spares whose latest state is spare_active -> the node each replaces."""
        return {
            node: ev.detail for node, ev in self.node_states().items() if ev.state == "spare_active"
        }

    # -- action runs --------------------------------------------------------------------------

    def begin_run(
        self, run_id: str, action: str, node: str, step: int, argv: Sequence[str], where: str
    ) -> ActionRun:
        """Write the intent to run `argv`; committed to disk before this returns."""
        run = ActionRun(
            id=0,
            run_id=run_id,
            action=action,
            node=node,
            step=step,
            argv=tuple(argv),
            where=where,
            operator=self.operator,
            pid=os.getpid(),
            machine=this_machine(),
            started=time.time(),
        )
        row_id = self._write(
            "INSERT INTO action_runs (run_id, action, node, step, argv, location, operator, "
            "pid, machine, started) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                action,
                node,
                step,
                json.dumps(list(argv), ensure_ascii=False),
                where,
                run.operator,
                run.pid,
                run.machine,
                run.started,
            ),
        )
        return dataclasses.replace(run, id=row_id)

    def record_process_group(self, run: ActionRun, group: ProcessGroup) -> ActionRun:
        """Note the process group of the started command `run`: what a later start checks."""
        self._write(
            "UPDATE action_runs SET pgid = ?, pg_boot_id = ?, pg_start_ticks = ? WHERE id = ?",
            (group.pgid, group.boot_id, group.start_ticks, run.id),
        )
        return dataclasses.replace(run, group=group)

    def end_run(
        self, run: ActionRun, exit_code: int | None, output: str = "", error: str | None = None
    ) -> ActionRun:
        """Complete the intent `run` with how the command ended."""
        ended = time.time()
        tail = output[-OUTPUT_TAIL_CHARS:]
        self._write(
            "UPDATE action_runs SET ended = ?, exit_code = ?, error = ?, output = ? WHERE id = ?",
            (ended, exit_code, error, tail, run.id),
        )
        return dataclasses.replace(run, ended=ended, exit_code=exit_code, error=error, output=tail)

    def runs(self, *, since: float | None = None, node: str | None = None) -> list[ActionRun]:
        where, params = _filters("started", since, node)
        rows = self._read(f"SELECT {_RUN_COLUMNS} FROM action_runs{where} ORDER BY id", params)
        return [_action_run(row) for row in rows]

    def interrupted_runs(self) -> list[ActionRun]:
        """Intents never completed whose writer is gone: the command may or may not have run."""
        rows = self._read(f"SELECT {_RUN_COLUMNS} FROM action_runs WHERE ended IS NULL")
        return [r for r in map(_action_run, rows) if r.status == "interrupted"]

    def check_interrupted(
        self, probe: Callable[[ProcessGroup], GroupState] = probe_group
    ) -> list[ActionRun]:
        """Look for the process group of each interrupted command this machine ran, record
        what became of it, and return the runs to tell the operator of: those whose group is
        still there (or cannot be told apart) and those found gone by this call."""
        news: list[ActionRun] = []
        machine = this_machine()
        for run in self.interrupted_runs():
            if run.group is None or run.machine != machine or run.group_state == "gone":
                continue  # no local group to look for, or already known to be gone
            state = probe(run.group)
            if state != run.group_state:
                run = self._record_group_state(run, state)
            news.append(run)
        return news

    def _record_group_state(self, run: ActionRun, state: GroupState) -> ActionRun:
        checked = time.time()
        self._write(
            "UPDATE action_runs SET pg_state = ?, pg_checked = ? WHERE id = ? AND ended IS NULL",
            (state, checked, run.id),
        )
        return dataclasses.replace(run, group_state=state, group_checked=checked)

    # -- faults and exposure ------------------------------------------------------------------

    def record_faults(self, faults: Iterable[Fault]) -> None:
        rows = [(f.t, f.node, f.gpu, f.uuid, f.kind, int(f.level), f.xid, f.text) for f in faults]
        if not rows:
            return
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO faults (t, node, gpu, uuid, kind, level, xid, text) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def faults(self, *, since: float | None = None, node: str | None = None) -> list[Fault]:
        where, params = _filters("t", since, node)
        rows = self._read(
            f"SELECT id, t, node, gpu, uuid, kind, level, xid, text FROM faults{where} "
            "ORDER BY t, id",
            params,
        )
        return [
            Fault(
                id=r[0],
                t=r[1],
                node=r[2],
                gpu=r[3],
                uuid=r[4],
                kind=r[5],
                level=r[6],
                xid=r[7],
                text=r[8],
            )
            for r in rows
        ]

    def add_exposure(self, gpu_hours: Mapping[tuple[str, int], float]) -> None:
        """Add monitored GPU-hours, keyed by (node, clock hour = Unix time // 3600)."""
        rows = [(node, hour, value) for (node, hour), value in gpu_hours.items() if value > 0]
        if not rows:
            return
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO exposure (node, hour, gpu_hours) VALUES (?, ?, ?) "
                "ON CONFLICT (node, hour) DO UPDATE SET gpu_hours = gpu_hours + excluded.gpu_hours",
                rows,
            )

    def exposure(self, since: float | None = None) -> dict[str, float]:
        """Monitored GPU-hours per node since `since`; the hour that straddles it is pro-rated."""
        if since is None:
            rows = self._read("SELECT node, sum(gpu_hours) FROM exposure GROUP BY node")
            return {node: float(total) for node, total in rows}
        first = int(since // 3600)
        rows = self._read("SELECT node, hour, gpu_hours FROM exposure WHERE hour >= ?", (first,))
        totals: dict[str, float] = {}
        for node, hour, value in rows:
            share = 1.0 if hour > first else max(0.0, (hour + 1) * 3600 - since) / 3600
            totals[node] = totals.get(node, 0.0) + value * share
        return totals

    # -- what core.risk learns from -----------------------------------------------------------

    def per_node_failures_and_exposure(
        self, since: float | None = None
    ) -> dict[str, tuple[int, float]]:
        """(failures, GPU-hours of monitored exposure) per node since `since` (all time: None).

        Failures are fault episodes (records.py explains which faults open one); exposure is
        the GPU-hours the monitor watched a node while it was not marked failed.
        """
        counts = count_failures(self.faults(), self.node_events(), since)
        exposure = self.exposure(since)
        nodes = sorted(set(counts) | set(exposure))
        return {n: (counts.get(n, 0), exposure.get(n, 0.0)) for n in nodes}

    def failures_and_exposure(self, since: float | None = None) -> tuple[int, float]:
        """The fleet's (failures, GPU-hours) since `since`: the Bayesian rate's data."""
        per_node = self.per_node_failures_and_exposure(since)
        return (
            sum(f for f, _ in per_node.values()),
            sum(e for _, e in per_node.values()),
        )

    # -- rollups (gputui/ops/rollups.py) -------------------------------------------------------

    def write_rollups(
        self,
        rollups: Iterable[Rollup],
        retention: RollupRetention,
        *,
        now: float | None = None,
        sweep: bool = False,
    ) -> int:
        """Write 5-minute rollups and their day rows in one transaction, keeping `retention`
        (gputui/ops/rollup_store.py); `sweep` also deletes the rows of GPUs gone."""
        when = time.time() if now is None else now
        with self._transaction() as conn:
            return store(conn, rollups, retention, now=when, sweep=sweep)

    def rollup_series(
        self,
        length_s: int = BUCKET_DAY_S,
        *,
        host: str | None = None,
        gpu: int | None = None,
        uuid: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[Rollup]:
        """Per-GPU series of day (or 5-minute) rollups, oldest first, filtered as asked."""
        with self._lock:
            try:
                return select_series(
                    self._conn, length_s, host=host, gpu=gpu, uuid=uuid, since=since, until=until
                )
            except sqlite3.DatabaseError as exc:
                raise JournalError(f"cannot read the journal {self.path}: {exc}") from None

    def latest_rollups(self, length_s: int = BUCKET_5M_S) -> list[Rollup]:
        """Every GPU's newest rollup of `length_s` seconds."""
        with self._lock:
            try:
                return select_latest(self._conn, length_s)
            except sqlite3.DatabaseError as exc:
                raise JournalError(f"cannot read the journal {self.path}: {exc}") from None

    # -- the timeline -------------------------------------------------------------------------

    def node_events(
        self, *, since: float | None = None, node: str | None = None
    ) -> list[NodeEvent]:
        where, params = _filters("t", since, node)
        rows = self._read(
            "SELECT id, t, node, state, reason, operator, detail, jobs FROM node_events"
            f"{where} ORDER BY t, id",
            params,
        )
        return [_node_event(row) for row in rows]

    def timeline(
        self, *, since: float | None = None, node: str | None = None
    ) -> list[JournalEntry]:
        """Node state changes, action runs and faults, oldest first."""
        entries: list[JournalEntry] = [
            *self.node_events(since=since, node=node),
            *self.runs(since=since, node=node),
            *self.faults(since=since, node=node),
        ]
        entries.sort(key=entry_time)
        return entries

    def integrity_check(self) -> str:
        """SQLite's own verdict on the file: "ok" when sound."""
        return "; ".join(str(r[0]) for r in self._read("PRAGMA integrity_check"))


_RUN_COLUMNS = (
    "id, run_id, action, node, step, argv, location, operator, pid, machine, started, ended, "
    "exit_code, error, output, pgid, pg_boot_id, pg_start_ticks, pg_state, pg_checked"
)


def _filters(column: str, since: float | None, node: str | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if since is not None:
        clauses.append(f"{column} >= ?")
        params.append(since)
    if node is not None:
        clauses.append("node = ?")
        params.append(node)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _node_event(row: tuple[Any, ...]) -> NodeEvent:
    return NodeEvent(
        id=row[0],
        t=row[1],
        node=row[2],
        state=row[3],
        reason=row[4],
        operator=row[5],
        detail=row[6],
        jobs=_jobs(row[7]),
    )


def _jobs(text: str | None) -> tuple[str, ...] | None:
    """The jobs column: a JSON array of keys; anything else (NULL, a hand edit) is unknown."""
    if text is None:
        return None
    try:
        keys = json.loads(text)
    except ValueError:
        return None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        return None
    return tuple(keys)


def _action_run(row: tuple[Any, ...]) -> ActionRun:
    return ActionRun(
        id=row[0],
        run_id=row[1],
        action=row[2],
        node=row[3],
        step=row[4],
        argv=tuple(json.loads(row[5])),
        where=row[6],
        operator=row[7],
        pid=row[8],
        machine=row[9],
        started=row[10],
        ended=row[11],
        exit_code=row[12],
        error=row[13],
        output=row[14],
        group=_process_group(row[15], row[16], row[17]),
        group_state=row[18] if row[18] in GROUP_STATES else None,
        group_checked=row[19],
    )


def _process_group(
    pgid: int | None, boot_id: str | None, start_ticks: int | None
) -> ProcessGroup | None:
    if pgid is None or pgid <= 1:  # none recorded (remote, older), or not a command's group
        return None
    return ProcessGroup(pgid, boot_id, start_ticks)
