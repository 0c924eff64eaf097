"""Rollups in the journal's tables: their rows, writing with merge, retention, and reading.

Functions over an open connection; `Journal` (gputui/ops/journal.py) runs them under its lock
and in its transactions, and `RollupWriter` (gputui/ops/rollups.py) decides what to write when.

A bucket written twice (a partial one at shutdown, the rest after a restart, or a host whose
clock lags) is merged with the row already there, never overwritten, so each day row always
sums its 5-minute rows. Retention (hosts.toml `[journal]`, default 7 days of 5-minute rows, 90
of day rows) is kept per GPU on every write, counted back from that GPU's newest bucket: a host
with a wrong clock can crowd out only its own rows. GPUs that stopped reporting are swept when
the writer asks (once a day), by when they were last written (`rollup_gpus.written`, the
collector's clock), their `rollup_gpus` entry with them.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from gputui.core.rollup import (
    BUCKET_5M_S,
    BUCKET_DAY_S,
    HELD_FIELDS,
    Held,
    Rollup,
    RollupRetention,
    merge,
    rekey,
)

TABLES = {BUCKET_5M_S: "rollups_5m", BUCKET_DAY_S: "rollups_1d"}

# Rollup's scalar fields in the order of the tables' columns after (gpu_id, start); the
# held_* columns and xids are coded apart.
_SCALARS = (
    "samples",
    "temp_n",
    "temp_min_c",
    "temp_mean_c",
    "temp_max_c",
    "headroom_min_c",
    "headroom_mean_c",
    "power_n",
    "power_mean_w",
    "power_max_w",
    "power_limit_mean_pct",
    "util_n",
    "util_mean_pct",
    "load_n",
    "load_temp_mean_c",
    "load_power_mean_w",
)
_COUNTERS = (
    "ecc_corrected",
    "ecc_uncorrected",
    "pcie_replay",
    "link_n",
    "link_down_n",
    "remap_corrected",
    "remap_uncorrected",
)
_FLAGS = ("remap_pending", "remap_failure")
COLUMNS: tuple[str, ...] = (
    *_SCALARS,
    *(f"held_{name}" for name in HELD_FIELDS),
    *_COUNTERS,
    *_FLAGS,
    "xids",
)
_SELECT = ", ".join(("g.host", "g.gpu", "g.uuid", "r.start", *(f"r.{c}" for c in COLUMNS)))
_INSERT_COLUMNS = ", ".join(("gpu_id", "start", *COLUMNS))
_PLACEHOLDERS = ", ".join("?" * (2 + len(COLUMNS)))

# Real values are stored in hundredths of their unit (0.01 C, W, %, s), as whole numbers in the
# REAL columns: SQLite writes a REAL with no fraction as an integer of 1 to 3 bytes, not 8, and
# halves the row (189 bytes to about 100, docs/benchmarks.md "Rollup storage").
_REALS = frozenset(
    name
    for name in (*_SCALARS, *(f"held_{n}" for n in HELD_FIELDS))
    if name.endswith(("_c", "_w", "_pct", "_s"))
)
_SCALE = 100

_xids_encoder = msgspec.json.Encoder()
_xids_decoder = msgspec.json.Decoder(dict[int, int])


# -- rows -------------------------------------------------------------------------------------


def to_row(r: Rollup, gpu_id: int) -> tuple[Any, ...]:
    """The table row of `r` (its GPU by id); real values to the nearest hundredth."""
    return (
        gpu_id,
        r.start,
        *(_stored(name, getattr(r, name)) for name in _SCALARS),
        *(_stored(f"held_{name}", getattr(r.held, name)) for name in HELD_FIELDS),
        *(getattr(r, name) for name in _COUNTERS),
        *(None if (v := getattr(r, name)) is None else int(v) for name in _FLAGS),
        _xids_encoder.encode(r.xids).decode() if r.xids else None,
    )


def from_row(row: Sequence[Any], length_s: int) -> Rollup:
    """The rollup of a row selected as `_SELECT`: host, gpu, uuid, start, COLUMNS."""
    host, gpu, uuid, start, *values = row
    fields = dict(zip(COLUMNS, values, strict=True))
    for name in _REALS:
        if fields[name] is not None:
            fields[name] = fields[name] / _SCALE
    held = Held(**{name: fields.pop(f"held_{name}") for name in HELD_FIELDS})
    xids_text = fields.pop("xids")
    for name in _FLAGS:
        if fields[name] is not None:
            fields[name] = bool(fields[name])
    return Rollup(
        host=host,
        gpu=gpu,
        uuid=uuid,
        start=start,
        length_s=length_s,
        held=held,
        xids=_xids_decoder.decode(xids_text) if xids_text else {},
        **fields,
    )


def stored(r: Rollup) -> Rollup:
    """`r` as the journal gives it back: real values to the nearest hundredth."""
    return from_row((r.host, r.gpu, r.uuid, r.start, *to_row(r, 0)[2:]), r.length_s)


def _stored(name: str, value: Any) -> Any:
    return round(value * _SCALE) if value is not None and name in _REALS else value


def table_of(length_s: int) -> str:
    try:
        return TABLES[length_s]
    except KeyError:
        raise ValueError(
            f"rollups are kept per {BUCKET_5M_S} s and per {BUCKET_DAY_S} s, not {length_s}"
        ) from None


# -- writing (inside the caller's transaction) ------------------------------------------------


def store(
    conn: sqlite3.Connection,
    rollups: Iterable[Rollup],
    retention: RollupRetention,
    *,
    now: float,
    sweep: bool = False,
) -> int:
    """Write 5-minute `rollups` and merge them into their day rows; keep the retention.

    Runs in the caller's transaction. `now` (the collector's clock, Unix s) is when these GPUs
    were last written; `sweep` also deletes the rows of GPUs not written for longer than a
    table's retention (by that clock: a GPU's own buckets may carry a wrong one). Returns the
    number of 5-minute rollups written.
    """
    rows = conn.execute("SELECT id, host, gpu, uuid FROM rollup_gpus")
    ids = {(host, gpu, uuid): gpu_id for gpu_id, host, gpu, uuid in rows}
    newest: dict[int, int] = {}
    days: dict[tuple[int, int], list[tuple[int, Rollup]]] = {}  # (gpu, day) -> (5-min start, r)
    written = 0
    for r in rollups:
        if r.length_s != BUCKET_5M_S:
            raise ValueError(f"the writer takes 5-minute rollups, not {r.length_s} s ones")
        key = (r.host, r.gpu, r.uuid)
        gpu_id = ids.get(key)
        if gpu_id is None:
            cur = conn.execute(
                "INSERT INTO rollup_gpus (host, gpu, uuid, written) VALUES (?, ?, ?, ?)",
                (*key, now),
            )
            gpu_id = ids[key] = int(cur.lastrowid or 0)
        _upsert(conn, "rollups_5m", gpu_id, r)
        day = rekey(r, BUCKET_DAY_S)
        days.setdefault((gpu_id, day.start), []).append((r.start, day))
        newest[gpu_id] = max(newest.get(gpu_id, r.start), r.start)
        written += 1
    # A day's rollups of the batch are merged here first and into its row once: a batch of
    # days (a simulated fleet, a backlog) merges each day row once, not 288 times.
    for (gpu_id, _), parts in days.items():
        parts.sort(key=lambda part: part[0])  # merge takes the later one second
        _upsert(conn, "rollups_1d", gpu_id, functools.reduce(merge, (d for _, d in parts)))
    conn.executemany("UPDATE rollup_gpus SET written = ? WHERE id = ?", [(now, i) for i in newest])
    # Counted back from each GPU's newest bucket, so exactly the configured number of
    # buckets stays: 7 days of 5-minute rows is 2,016 of them, 90 days 90 day rows.
    for length_s, table in TABLES.items():
        keep = retention.keep_s(length_s)
        conn.executemany(
            f"DELETE FROM {table} WHERE gpu_id = ? AND start <= ?",
            [(gpu_id, start - keep) for gpu_id, start in newest.items()],
        )
    if sweep:
        _sweep(conn, retention, now)
    return written


def _upsert(conn: sqlite3.Connection, table: str, gpu_id: int, r: Rollup) -> None:
    """Insert `r`'s row, or merge `r` into the row already there for its bucket."""
    row = to_row(r, gpu_id)
    cur = conn.execute(
        f"INSERT OR IGNORE INTO {table} ({_INSERT_COLUMNS}) VALUES ({_PLACEHOLDERS})", row
    )
    if cur.rowcount:
        return
    have = conn.execute(
        f"SELECT {_SELECT} FROM {table} r JOIN rollup_gpus g ON g.id = r.gpu_id "
        "WHERE r.gpu_id = ? AND r.start = ?",
        (gpu_id, r.start),
    ).fetchone()
    merged = merge(from_row(have, r.length_s), r)
    conn.execute(
        f"INSERT OR REPLACE INTO {table} ({_INSERT_COLUMNS}) VALUES ({_PLACEHOLDERS})",
        to_row(merged, gpu_id),
    )


def _sweep(conn: sqlite3.Connection, retention: RollupRetention, now: float) -> None:
    """Delete the rows of GPUs gone (removed from the fleet, replaced) for a table's retention,
    and the GPUs gone for the longest one."""
    longest = 0
    for length_s, table in TABLES.items():
        keep = retention.keep_s(length_s)
        longest = max(longest, keep)
        conn.execute(
            f"DELETE FROM {table} WHERE gpu_id IN (SELECT id FROM rollup_gpus WHERE written <= ?)",
            (now - keep,),
        )
    conn.execute("DELETE FROM rollup_gpus WHERE written <= ?", (now - longest,))


# -- reading ----------------------------------------------------------------------------------


def select_series(
    conn: sqlite3.Connection,
    length_s: int,
    *,
    host: str | None = None,
    gpu: int | None = None,
    uuid: str | None = None,
    since: float | None = None,
    until: float | None = None,
) -> list[Rollup]:
    """Rollups of `length_s` buckets, per GPU oldest first, filtered as asked.

    `since`/`until` select buckets that overlap [since, until).
    """
    table = table_of(length_s)
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (("g.host", host), ("g.gpu", gpu), ("g.uuid", uuid)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        clauses.append("r.start > ?")
        params.append(since - length_s)
    if until is not None:
        clauses.append("r.start < ?")
        params.append(until)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(
        f"SELECT {_SELECT} FROM rollup_gpus g JOIN {table} r ON r.gpu_id = g.id{where} "
        "ORDER BY g.host, g.gpu, g.uuid, r.start",
        params,
    ).fetchall()
    return [from_row(row, length_s) for row in rows]


def select_latest(conn: sqlite3.Connection, length_s: int) -> list[Rollup]:
    """The newest rollup of `length_s` of every GPU, ordered by host and index."""
    table = table_of(length_s)
    rows = conn.execute(
        f"SELECT {_SELECT} FROM rollup_gpus g JOIN {table} r ON r.gpu_id = g.id "
        f"WHERE r.start = (SELECT max(start) FROM {table} WHERE gpu_id = g.id) "
        "ORDER BY g.host, g.gpu, g.uuid",
    ).fetchall()
    return [from_row(row, length_s) for row in rows]
