"""kill -9 while rollups are written: at most the interval in hand is lost, the rest is whole.

The process killed is a real one running the monitor's rollup writer over a fast-forwarded
fleet (64 GPUs, a 5-minute interval every few milliseconds), which reports each interval once
its transaction returned. It is killed with SIGKILL at a random moment, most likely inside a
transaction. The journal must then hold every reported interval, whole (all GPUs or none:
one transaction per interval), at most the one being written besides, day rows that sum their
5-minute rows, pass SQLite's integrity check, and still be private.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from gputui.ops.journal import Journal
from tests.test_rollup_journal import DAY0

HOSTS, PER_HOST = 16, 4
GPUS = HOSTS * PER_HOST

WRITER = textwrap.dedent(
    f"""
    import sys
    from gputui.ops.journal import Journal
    from gputui.ops.rollups import RollupWriter
    from tests.test_rollup_journal import fleet_snapshots

    journal = Journal.open(sys.argv[1])
    writer = RollupWriter(journal, grace_s=0.0)
    for snap in fleet_snapshots({HOSTS}, {PER_HOST}, {DAY0}, 10 * 86400, step_s=20.0):
        writer.observe(snap)
        if writer.due():
            batch = writer.take()
            assert writer.write(batch), writer.last_error
            print(min(r.start for r in batch), flush=True)
    """
)


def test_kill_9_while_writing_rollups(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    reported: list[int] = []
    rng = random.Random(os.getpid())
    target = rng.randint(20, 40)
    try:
        while len(reported) < target:
            line = proc.stdout.readline()
            assert line, f"the writer ended early: {proc.stderr.read() if proc.stderr else ''}"
            reported.append(int(line))
        time.sleep(rng.uniform(0.0, 0.02))  # somewhere in the next transactions
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    reported += [int(line) for line in proc.stdout.read().split()]  # printed before the kill

    with Journal.open(path) as journal:
        assert journal.integrity_check() == "ok"
        rows = journal.rollup_series(300)
        days = journal.rollup_series(86_400)
    per_start: dict[int, int] = {}
    for r in rows:
        per_start[r.start] = per_start.get(r.start, 0) + 1
    # Every interval reported is there, whole.
    assert all(per_start.get(start) == GPUS for start in reported), per_start
    # Beyond them, at most the one being written when the kill came, and whole if there.
    extra = sorted(set(per_start) - set(reported))
    assert extra in ([], [max(reported) + 300]), extra
    assert all(per_start[s] == GPUS for s in extra)
    # Day rows were written in the same transactions as the 5-minute ones.
    assert sum(d.samples for d in days) == sum(r.samples for r in rows) > 0
    for side in ("", "-wal", "-shm"):
        file = Path(f"{path}{side}")
        if file.exists():
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    # A plain SQLite reader agrees: the file is an ordinary database, not only ours.
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA quick_check").fetchone() == ("ok",)
    raw.close()
