"""The journal's SQLite file: creating it private, the pragmas, and schema migrations.

The schema version lives in `PRAGMA user_version`; `MIGRATIONS[i]` takes a file from version
i to i + 1. Migrations run in one `BEGIN IMMEDIATE` transaction, so two processes opening a
new journal at once (the TUI and a CLI command) cannot both migrate it: the second waits for
the write lock, then finds the file already current. A file written by a newer gputui is
refused rather than guessed at. docs/operations.md shows the schema.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

#: Marks the file as a gputui journal (`PRAGMA application_id`), "gptu" in ASCII.
APPLICATION_ID = 0x67707475
#: How long a writer waits for another process's write lock before giving up.
BUSY_TIMEOUT_MS = 15_000

_V1 = (
    # Node state changes, newest row per node is its state. `state` is one of
    # failed, in_service, spare_active.
    """CREATE TABLE node_events (
        id INTEGER PRIMARY KEY,
        t REAL NOT NULL,
        node TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('failed', 'in_service', 'spare_active')),
        reason TEXT NOT NULL DEFAULT '',
        operator TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX node_events_node_t ON node_events (node, t)",
    # One row per command run: written as an intent (ended NULL) before the command starts,
    # completed after. A row whose writer died before completing it is "interrupted".
    """CREATE TABLE action_runs (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        action TEXT NOT NULL,
        node TEXT NOT NULL,
        step INTEGER NOT NULL,
        argv TEXT NOT NULL,
        location TEXT NOT NULL,
        operator TEXT NOT NULL,
        pid INTEGER NOT NULL,
        machine TEXT NOT NULL,
        started REAL NOT NULL,
        ended REAL,
        exit_code INTEGER,
        error TEXT,
        output TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX action_runs_node_started ON action_runs (node, started)",
    "CREATE INDEX action_runs_open ON action_runs (ended) WHERE ended IS NULL",
    # Faults the monitor saw. `level` is gputui.core.model.Level (3 critical, 4 failed);
    # kind is an agent event kind (xid, ecc_dbe, gpu_lost, reset_required), "verdict" (a GPU
    # turned critical or failed) or "recovered" (a GPU came back below critical).
    """CREATE TABLE faults (
        id INTEGER PRIMARY KEY,
        t REAL NOT NULL,
        node TEXT NOT NULL,
        gpu INTEGER,
        uuid TEXT,
        kind TEXT NOT NULL,
        level INTEGER NOT NULL,
        xid INTEGER,
        text TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX faults_node_t ON faults (node, t)",
    # Monitored GPU-hours per node per clock hour (`hour` = Unix time // 3600).
    """CREATE TABLE exposure (
        node TEXT NOT NULL,
        hour INTEGER NOT NULL,
        gpu_hours REAL NOT NULL,
        PRIMARY KEY (node, hour)
    ) WITHOUT ROWID""",
)

_V2 = (
    # A local command's process group, written once it has started (its pid: it leads its own
    # session), and the leader's start (boot id, clock ticks since boot) that tells the group
    # apart from a later one given the same id. NULL for remote commands and older rows.
    "ALTER TABLE action_runs ADD COLUMN pgid INTEGER",
    "ALTER TABLE action_runs ADD COLUMN pg_boot_id TEXT",
    "ALTER TABLE action_runs ADD COLUMN pg_start_ticks INTEGER",
    # What a later start of gputui found of an interrupted command's group, and when
    # (gputui/ops/orphans.py).
    "ALTER TABLE action_runs ADD COLUMN pg_state TEXT "
    "CHECK (pg_state IN ('running', 'gone', 'unverified'))",
    "ALTER TABLE action_runs ADD COLUMN pg_checked REAL",
)

_V3 = (
    # The jobs a node's failure hit, as gputui knew them when the operator marked it failed:
    # a JSON array of job keys (["slurm:4242", "k8s:<pod uid>"]); NULL when nobody could say
    # (the node unreadable, no scheduler), and for every other state change.
    "ALTER TABLE node_events ADD COLUMN jobs TEXT",
)

# The columns of both rollup tables as version 4 made them (a later change is a new step).
_ROLLUP_COLUMNS_V4 = """
        gpu_id INTEGER NOT NULL REFERENCES rollup_gpus (id),
        start INTEGER NOT NULL,
        samples INTEGER NOT NULL,
        temp_n INTEGER NOT NULL,
        temp_min_c REAL,
        temp_mean_c REAL,
        temp_max_c REAL,
        headroom_min_c REAL,
        headroom_mean_c REAL,
        power_n INTEGER NOT NULL,
        power_mean_w REAL,
        power_max_w REAL,
        power_limit_mean_pct REAL,
        util_n INTEGER NOT NULL,
        util_mean_pct REAL,
        load_n INTEGER NOT NULL,
        load_temp_mean_c REAL,
        load_power_mean_w REAL,
        held_sw_power_cap_s REAL,
        held_sync_boost_s REAL,
        held_sw_thermal_s REAL,
        held_hw_thermal_s REAL,
        held_hw_power_brake_s REAL,
        held_hw_slowdown_s REAL,
        ecc_corrected INTEGER,
        ecc_uncorrected INTEGER,
        pcie_replay INTEGER,
        link_n INTEGER NOT NULL,
        link_down_n INTEGER NOT NULL,
        remap_corrected INTEGER,
        remap_uncorrected INTEGER,
        remap_pending INTEGER,
        remap_failure INTEGER,
        xids TEXT,
        PRIMARY KEY (gpu_id, start)
"""

_V4 = (
    # Per-GPU rollups for prevention (gputui/core/rollup.py, docs/prevention.md). A GPU is
    # (host, index, uuid): a replaced board in the same slot starts a new series. Rows refer
    # to it by id, so a host name is stored once, not in every one of ~2,000 rows per GPU.
    # `written`: when its rollups were last written (the collector's clock, Unix s): a GPU not
    # written for a table's retention is gone from the fleet, and its rows with it.
    """CREATE TABLE rollup_gpus (
        id INTEGER PRIMARY KEY,
        host TEXT NOT NULL,
        gpu INTEGER NOT NULL,
        uuid TEXT NOT NULL,
        written REAL NOT NULL,
        UNIQUE (host, gpu, uuid)
    )""",
    # One row per GPU per bucket: 5-minute buckets, and days (00:00 UTC) merged from them in
    # the same transaction. Keyed (gpu_id, start): a GPU's series is one range of the key, and
    # so is what retention deletes. Columns are Rollup's fields (held_* its Held); booleans
    # 0/1; xids a JSON object {"code": count}, NULL when none. NULL: not reported.
    f"CREATE TABLE rollups_5m ({_ROLLUP_COLUMNS_V4}) WITHOUT ROWID",
    f"CREATE TABLE rollups_1d ({_ROLLUP_COLUMNS_V4}) WITHOUT ROWID",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3, _V4)
SCHEMA_VERSION = len(MIGRATIONS)


class JournalError(Exception):
    """The journal cannot be opened or used; the text says why and what to do."""


def create_private(path: Path) -> None:
    """Create `path` (and its directory) readable by the owner only, tightening an old file.

    The journal holds who did what to which node and why; other local users have no business
    reading it. SQLite gives the -wal and -shm files the main file's mode.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except IsADirectoryError:
        raise JournalError(f"{path} is a directory, not a journal file") from None
    except OSError as exc:
        raise JournalError(f"cannot open the journal {path}: {exc.strerror or exc}") from None
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def tighten_sidecars(path: Path) -> None:
    """Make the -wal and -shm files 0600 too (they may predate a tightened main file)."""
    for suffix in ("-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        with contextlib.suppress(OSError):
            if side.stat().st_mode & 0o077:
                side.chmod(0o600)


def connect(path: Path) -> sqlite3.Connection:
    """An open, migrated connection to the journal at `path`."""
    create_private(path)
    try:
        conn = sqlite3.connect(
            str(path),
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE ... COMMIT
            check_same_thread=False,  # the Journal serialises access with its own lock
        )
    except sqlite3.Error as exc:
        raise JournalError(f"cannot open the journal {path}: {exc}") from None
    try:
        _configure(conn, path)
        migrate(conn, path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise JournalError(f"{path} is not a usable gputui journal: {exc}") from None
    except JournalError:
        conn.close()
        raise
    tighten_sidecars(path)
    return conn


def _configure(conn: sqlite3.Connection, path: Path) -> None:
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise JournalError(
            f"the journal {path} cannot use write-ahead logging (journal_mode is {mode}); "
            "put it on a local file system with --journal PATH"
        )
    # FULL: a commit is on disk before the call returns, so an intent or a node state that the
    # operator saw acknowledged survives a crash of the machine, not only of the process.
    conn.execute("PRAGMA synchronous = FULL")


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error).

    IMMEDIATE takes the write lock at the start, so a writer waits (busy_timeout) instead of
    failing later when a read transaction would have to be upgraded while another writes.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the file to SCHEMA_VERSION, or refuse a file that is not ours or is newer."""
    if _version_and_id(conn) == (SCHEMA_VERSION, APPLICATION_ID):
        return  # the common case: no write lock needed
    with write_transaction(conn):
        version, app_id = _version_and_id(conn)
        if app_id not in (0, APPLICATION_ID):
            raise JournalError(f"{path} is an SQLite file of another program, not a journal")
        if version == 0 and app_id == 0 and _has_tables(conn):
            raise JournalError(f"{path} is an SQLite file of another program, not a journal")
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"the journal {path} was written by a newer gputui (schema {version}; this one "
                f"reads up to {SCHEMA_VERSION}): upgrade gputui"
            )
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _version_and_id(conn: sqlite3.Connection) -> tuple[int, int]:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    return version, app_id


def _has_tables(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT count(*) FROM sqlite_schema WHERE type = 'table'").fetchone()
    return int(row[0]) > 0
