"""Journal bytes per GPU for the prevention rollups, at a retention (default 7 + 90 days).

Writes `--days` of 5-minute rollups for `--gpus` GPUs (8 per host) through the journal's own
writer path (Journal.write_rollups: 5-minute rows, day rows merged in the same transaction,
retention), fast-forwarded, and measures the file at chosen days:

- the rollups' values are the real H200's 5-minute rollup (tests/fixtures/h200) with noise
  per GPU and bucket, so every mean is a full double as it is live; ECC and replay deltas, a
  rare XID, held-clock seconds as a busy fleet has them;
- one transaction per `--batch` intervals (default 12, an hour: the file's size does not
  depend on it, and an interval per transaction with synchronous=FULL would time fsync);
- at each checkpoint the WAL is checkpointed, then the file's pages, its free pages (freed
  by retention, reused by the next writes) and each table's bytes (SQLite's dbstat) are read;
  at the end the file is VACUUMed into a copy for its compact size.

    python benchmarks/rollup_size.py --gpus 64 --days 100 --at 1 7 30 90 100 \
        --out benchmarks/results/rollup-size.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from gputui.core.model import AgentMessage, Hello, Sample
from gputui.core.rollup import (
    BUCKET_5M_S,
    BUCKET_DAY_S,
    HELD_FIELDS,
    Held,
    Rollup,
    RollupAccumulator,
    RollupRetention,
)
from gputui.ops.journal import Journal

RECORDING = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "h200"
DAY0 = 1_796_342_400  # 2026-12-04 00:00 UTC, the recording's day
PER_HOST = 8


def h200_rollup() -> Rollup:
    """The real H200's 5-minute rollup: the template every GPU's buckets vary."""
    decoder = msgspec.json.Decoder(AgentMessage)
    acc = RollupAccumulator(BUCKET_5M_S)
    hello: Hello | None = None
    for line in (RECORDING / "h200-nvml-idle-load-idle.jsonl").read_bytes().splitlines():
        message = decoder.decode(line)
        if isinstance(message, Hello):
            hello = message
        elif isinstance(message, Sample) and hello is not None:
            acc.add_sample(hello.host, hello.gpus, message)
    [r] = acc.close_all()
    return r


def varied(base: Rollup, host: str, gpu: int, start: int, rng: random.Random) -> Rollup:
    """`base` as one GPU's bucket: 300 samples, every float moved, counters as a fleet's."""

    def f(x: float | None) -> float | None:
        return None if x is None else x * rng.uniform(0.9, 1.1)

    return msgspec.structs.replace(
        base,
        host=host,
        gpu=gpu,
        uuid=f"GPU-{host}-{gpu}",
        start=start,
        samples=300,
        temp_n=300,
        power_n=300,
        util_n=300,
        load_n=rng.randint(0, 300),
        temp_min_c=f(base.temp_min_c),
        temp_mean_c=f(base.temp_mean_c),
        temp_max_c=f(base.temp_max_c),
        headroom_min_c=f(base.headroom_min_c),
        headroom_mean_c=f(base.headroom_mean_c),
        power_mean_w=f(base.power_mean_w),
        power_max_w=f(base.power_max_w),
        power_limit_mean_pct=f(base.power_limit_mean_pct),
        util_mean_pct=f(base.util_mean_pct),
        load_temp_mean_c=f(base.load_temp_mean_c),
        load_power_mean_w=f(base.load_power_mean_w),
        held=Held(**{name: rng.choice((0.0, rng.uniform(0, 300))) for name in HELD_FIELDS}),
        ecc_corrected=rng.choice((0, 0, 0, rng.randint(1, 50))),
        pcie_replay=rng.choice((0, 0, 0, 0, rng.randint(1, 20))),
        link_n=30,
        xids={79: 1} if rng.random() < 1e-4 else {},
    )


def measure(path: Path) -> dict[str, Any]:
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = int(raw.execute("PRAGMA page_size").fetchone()[0])
        pages = int(raw.execute("PRAGMA page_count").fetchone()[0])
        free = int(raw.execute("PRAGMA freelist_count").fetchone()[0])
        tables = dict(
            raw.execute(
                "SELECT name, sum(pgsize) FROM dbstat WHERE name IN "
                "('rollups_5m', 'rollups_1d', 'rollup_gpus', 'sqlite_autoindex_rollup_gpus_1') "
                "GROUP BY name"
            ).fetchall()
        )
        rows = {
            t: int(raw.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
            for t in ("rollups_5m", "rollups_1d")
        }
    return {
        "file_bytes": page * pages,
        "free_bytes": page * free,
        "table_bytes": tables,
        "rows": rows,
    }


def run(gpus: int, days: int, at: list[int], batch: int, seed: int = 1) -> dict[str, Any]:
    keep = RollupRetention()
    base = h200_rollup()
    rng = random.Random(seed)
    names = [
        (f"gpu{h:04d}", g)
        for h in range((gpus + PER_HOST - 1) // PER_HOST)
        for g in range(PER_HOST)
    ]
    names = names[:gpus]
    points: list[dict[str, Any]] = []
    write_s = 0.0
    transactions = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "journal.sqlite3"
        journal = Journal.open(path)
        base_pages = measure(path)["file_bytes"]  # an empty journal: the other tables
        intervals_per_day = BUCKET_DAY_S // BUCKET_5M_S
        for day in range(days):
            for first in range(0, intervals_per_day, batch):
                rollups = [
                    varied(base, host, gpu, DAY0 + day * BUCKET_DAY_S + i * BUCKET_5M_S, rng)
                    for i in range(first, min(first + batch, intervals_per_day))
                    for host, gpu in names
                ]
                now = DAY0 + day * BUCKET_DAY_S + (first + batch) * BUCKET_5M_S
                t0 = time.perf_counter()
                journal.write_rollups(rollups, keep, now=now, sweep=first == 0)
                write_s += time.perf_counter() - t0
                transactions += 1
            if day + 1 in at:
                point = {"day": day + 1, **measure(path)}
                point["file_bytes_per_gpu"] = (point["file_bytes"] - base_pages) / gpus
                points.append(point)
                print(json.dumps(point), flush=True)
        journal.close()
        compact = Path(tmp) / "vacuumed.sqlite3"
        with sqlite3.connect(path) as raw:
            raw.execute(f"VACUUM INTO '{compact}'")
        vacuumed = compact.stat().st_size
    last = points[-1]
    kept_5m = min(days, keep.five_minute_days)
    kept_1d = min(days, keep.daily_days)
    return {
        "gpus": gpus,
        "days": days,
        "retention": {"five_minute_days": keep.five_minute_days, "daily_days": keep.daily_days},
        "points": points,
        "vacuumed_bytes": vacuumed,
        "vacuumed_bytes_per_gpu": (vacuumed - base_pages) / gpus,
        "bytes_per_gpu_day_5m": last["table_bytes"]["rollups_5m"] / (gpus * kept_5m),
        "bytes_per_gpu_day_1d": last["table_bytes"]["rollups_1d"] / (gpus * kept_1d),
        "bytes_per_row_5m": last["table_bytes"]["rollups_5m"] / last["rows"]["rollups_5m"],
        "write_ms_per_gpu_interval": 1000 * write_s / (gpus * days * intervals_per_day),
        "transactions": transactions,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=64)
    ap.add_argument("--days", type=int, default=100)
    ap.add_argument("--at", type=int, nargs="+", default=[1, 7, 30, 90, 100])
    ap.add_argument("--batch", type=int, default=12, help="intervals per transaction")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    result = run(args.gpus, args.days, sorted(args.at), args.batch)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
