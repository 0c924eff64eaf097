"""The journal: a private SQLite file in WAL mode, migrations, records, and failure counting."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gputui.core.model import Level
from gputui.ops.journal import Journal, JournalError, default_journal_path, resolve_journal_path
from gputui.ops.journal_schema import APPLICATION_ID, SCHEMA_VERSION
from gputui.ops.records import Fault, NodeEvent, count_failures


@pytest.fixture
def journal(tmp_path: Path):  # type: ignore[no-untyped-def]
    j = Journal.open(tmp_path / "state" / "journal.sqlite3")
    yield j
    j.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --------------------------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------------------------


def test_new_journal_is_private_wal_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.sqlite3"
    with Journal.open(path) as j:
        j.record_node_state("gpu001", "failed", "XID 79")
        assert mode(path) == 0o600
        assert mode(path.parent) == 0o700
        for side in ("-wal", "-shm"):
            assert mode(Path(f"{path}{side}")) == 0o600, side
        raw = sqlite3.connect(path)
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert raw.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        raw.close()
        assert j.integrity_check() == "ok"


def test_a_loose_file_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    Journal.open(path).close()
    path.chmod(0o644)
    Journal.open(path).close()
    assert mode(path) == 0o600


def test_reopening_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    with Journal.open(path) as j:
        j.record_node_state("gpu001", "failed", "XID 79")
    with Journal.open(path) as j:
        assert j.marked_failed() == {"gpu001"}


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    Journal.open(path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(JournalError, match="newer gputui"):
        Journal.open(path)


def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE t (x)")
    raw.commit()
    raw.close()
    with pytest.raises(JournalError, match="another program"):
        Journal.open(path)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database, just words " * 100)
    with pytest.raises(JournalError, match="not a usable gputui journal"):
        Journal.open(path)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="is a directory"):
        Journal.open(tmp_path)


def test_migration_from_an_empty_file_to_current(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    sqlite3.connect(path).close()  # an empty database: version 0
    with Journal.open(path) as j:
        assert j.node_states() == {}


def test_journal_path_precedence(tmp_path: Path) -> None:
    cli, env, conf = tmp_path / "cli", tmp_path / "env", tmp_path / "conf"
    environ = {"GPUTUI_JOURNAL": str(env)}
    assert resolve_journal_path(cli, conf, environ) == cli
    assert resolve_journal_path(None, conf, environ) == env
    assert resolve_journal_path(None, conf, {}) == conf
    assert resolve_journal_path(None, None, {"GPUTUI_JOURNAL": ""}) == default_journal_path()
    assert default_journal_path().name == "journal.sqlite3"


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


def test_node_states_newest_wins(journal: Journal) -> None:
    journal.record_node_state("gpu001", "failed", "XID 79", t=1.0)
    journal.record_node_state("gpu002", "failed", "hot", t=2.0)
    journal.record_node_state("gpu001", "in_service", "repaired", t=3.0)
    states = journal.node_states()
    assert states["gpu001"].state == "in_service" and states["gpu002"].reason == "hot"
    assert journal.marked_failed() == {"gpu002"}
    assert states["gpu001"].operator == journal.operator != ""


def test_spares_in_service_name_the_node_they_replace(journal: Journal) -> None:
    journal.record_node_state("spare1", "spare_active", "replaces gpu001", "gpu001", t=1.0)
    journal.record_node_state("spare2", "spare_active", "replaces gpu002", "gpu002", t=2.0)
    journal.record_node_state("spare2", "in_service", "now a regular node", t=3.0)
    assert journal.spares_in_service() == {"spare1": "gpu001"}


def test_run_intent_then_completion(journal: Journal) -> None:
    argv = ["scontrol", "update", "NodeName=gpu001", "Reason=gputui: a 'b' \"c\"\n$(x)"]
    intent = journal.begin_run("r1", "drain", "gpu001", 0, argv, "slurmctl")
    (stored,) = journal.runs()
    assert stored.argv == tuple(argv) and stored.ended is None
    assert stored.status == "running"  # its writer (this process) is alive
    journal.end_run(intent, 1, "x" * 10_000 + "tail", None)
    (done,) = journal.runs()
    assert done.exit_code == 1 and done.status == "failed" and done.where == "slurmctl"
    assert done.output.endswith("tail") and len(done.output) == 4000


def test_an_intent_whose_writer_is_gone_is_interrupted(journal: Journal) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    journal.begin_run("r1", "drain", "gpu001", 0, ["true"], "local")
    journal._write("UPDATE action_runs SET pid = ?", (dead.pid,))
    (run,) = journal.runs()
    assert run.status == "interrupted"
    assert [r.id for r in journal.interrupted_runs()] == [run.id]


def test_timeline_filters_by_time_and_node(journal: Journal) -> None:
    journal.record_node_state("gpu001", "failed", "old", t=100.0)
    journal.record_node_state("gpu002", "failed", "new", t=200.0)
    journal.record_faults([Fault(t=150.0, node="gpu002", kind="xid", level=4, xid=79)])
    assert [type(e).__name__ for e in journal.timeline()] == ["NodeEvent", "Fault", "NodeEvent"]
    assert len(journal.timeline(since=120.0)) == 2
    assert len(journal.timeline(node="gpu001")) == 1


# --------------------------------------------------------------------------------------------
# Failures and exposure: what core.risk learns from
# --------------------------------------------------------------------------------------------


def fault(t: float, kind: str, level: Level, uuid: str = "GPU-a", node: str = "n1") -> Fault:
    return Fault(t=t, node=node, kind=kind, level=int(level), gpu=0, uuid=uuid)


def test_one_gpu_failing_loudly_is_one_failure() -> None:
    faults = [
        fault(1, "xid", Level.FAILED),  # XID 79
        fault(1, "gpu_lost", Level.FAILED),
        fault(2, "verdict", Level.FAILED),
        fault(3, "xid", Level.FAILED),
    ]
    assert count_failures(faults, []) == {"n1": 1}


def test_an_episode_ends_on_recovery_or_resume() -> None:
    faults = [
        fault(1, "verdict", Level.CRITICAL),
        fault(2, "recovered", Level.OK),
        fault(3, "verdict", Level.CRITICAL),  # a second failure of the same GPU
        fault(5, "xid", Level.FAILED),  # after the operator resumed the node: a third
    ]
    resume = NodeEvent(t=4, node="n1", state="in_service", reason="", operator="op")
    assert count_failures(faults, [resume]) == {"n1": 3}
    assert count_failures(faults, [resume], since=2.5) == {"n1": 2}


def test_what_does_not_count() -> None:
    faults = [
        fault(1, "xid", Level.WARN),  # XID 13: the application
        fault(2, "xid", Level.CRITICAL),  # XID 48 alone: counted through its verdict only
        fault(3, "verdict", Level.WARN),
    ]
    assert count_failures(faults, []) == {}


def test_two_gpus_are_two_failures() -> None:
    faults = [
        fault(1, "verdict", Level.CRITICAL, "GPU-a"),
        fault(1, "verdict", Level.FAILED, "GPU-b"),
    ]
    assert count_failures(faults, []) == {"n1": 2}


def test_failures_and_exposure(journal: Journal) -> None:
    hour = 500_000
    journal.add_exposure({("n1", hour): 8.0, ("n2", hour): 4.0})
    journal.add_exposure({("n1", hour): 8.0, ("n1", hour + 1): 2.0})
    journal.record_faults([fault(hour * 3600 + 10, "xid", Level.FAILED)])
    assert journal.per_node_failures_and_exposure() == {"n1": (1, 18.0), "n2": (0, 4.0)}
    assert journal.failures_and_exposure() == (1, 22.0)
    # Since half-way through the first hour: half of it counts, the fault (at 10 s) does not.
    failures, gpu_hours = journal.failures_and_exposure(since=hour * 3600 + 1800)
    assert failures == 0 and gpu_hours == pytest.approx(8.0 + 2.0 + 2.0)


# --------------------------------------------------------------------------------------------
# Several processes at once
# --------------------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    from gputui.ops.journal import Journal
    j = Journal.open(sys.argv[1])
    for i in range(int(sys.argv[3])):
        run = j.begin_run("r", "act", sys.argv[2], i, ["true"], "local")
        j.end_run(run, 0, "")
        j.record_node_state(sys.argv[2], "failed", str(i))
    j.close()
    """
)


def test_processes_share_one_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"n{k}", "60"]) for k in range(4)
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    with Journal.open(path) as j:
        assert len(j.runs()) == 240 and all(r.status == "ok" for r in j.runs())
        assert {n: e.reason for n, e in j.node_states().items()} == {
            f"n{k}": "59" for k in range(4)
        }
        assert j.integrity_check() == "ok"


def test_no_world_readable_file_even_with_a_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        with Journal.open(tmp_path / "j.sqlite3") as j:
            j.record_node_state("n", "failed", "x")
            files = list(tmp_path.glob("j.sqlite3*"))
            assert files and all(mode(f) == 0o600 for f in files)
    finally:
        os.umask(old)


def test_a_write_that_fails_is_a_journal_error(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "j.sqlite3")
    j.close()
    with pytest.raises(JournalError, match="cannot write the journal"):
        j.record_node_state("n", "failed", "x")
