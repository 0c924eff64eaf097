"""kill -9 in the middle: the journal keeps everything acknowledged and shows the cut command.

The process killed is the real `gputui node fail`, stopped while its action's command runs
(after the intent was written, before the completion).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from gputui.ops.journal import Journal

GPUTUI = [sys.executable, "-c", "from gputui.cli import main; main()"]


def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_kill_9_between_intent_and_completion(tmp_path: Path) -> None:
    pidfile = tmp_path / "command.pid"
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(
        textwrap.dedent(
            f"""
            hosts = ["gpu001"]
            [actions.slow]
            argv = ["sh", "-c", "echo $$ > {pidfile}; exec sleep 60"]
            confirm = false
            """
        )
    )
    path = tmp_path / "journal.sqlite3"
    proc = subprocess.Popen(
        [
            *GPUTUI,
            "node",
            "fail",
            "gpu001",
            "--reason",
            "XID 79",
            "--action",
            "slow",
            "--hosts",
            str(hosts),
            "--journal",
            str(path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)  # the orphaned command
        proc.kill()
    with Journal.open(path) as j:
        assert j.integrity_check() == "ok"
        assert j.marked_failed() == {"gpu001"}  # acknowledged before the command started
        (run,) = j.runs()
        assert run.action == "slow" and run.ended is None and run.status == "interrupted"
        assert run.argv == ("sh", "-c", f"echo $$ > {pidfile}; exec sleep 60")
    shown = subprocess.run(
        [*GPUTUI, "journal", "--journal", str(path), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    statuses = [e.get("status") for e in json.loads(shown.stdout) if e["type"] == "action"]
    assert statuses == ["interrupted"]
    table = subprocess.run(
        [*GPUTUI, "journal", "--journal", str(path)], capture_output=True, text=True, check=True
    )
    assert "interrupted" in table.stdout


WRITER = textwrap.dedent(
    """
    import sys
    from gputui.ops.journal import Journal
    j = Journal.open(sys.argv[1])
    i = 0
    while True:
        j.record_node_state(f"n{i % 7}", "failed", str(i))
        run = j.begin_run("r", "act", "n", i, ["true"], "local")
        print(i, run.id, flush=True)  # acknowledged: both calls returned
        i += 1
    """
)


def test_nothing_acknowledged_is_lost_on_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    acked: list[tuple[int, int]] = []
    for line in proc.stdout:
        i, run_id = map(int, line.split())
        acked.append((i, run_id))
        if len(acked) >= 40:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    acked += [tuple(map(int, line.split())) for line in proc.stdout if line.strip()]  # type: ignore[misc]
    with Journal.open(path) as j:
        assert j.integrity_check() == "ok"
        reasons = {e.reason for e in j.node_events()}
        runs = {r.id for r in j.runs()}
        for i, run_id in acked:
            assert str(i) in reasons and run_id in runs
