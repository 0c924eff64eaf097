"""Kernel log XIDs: the parser on recorded formats, the readers' fallbacks and refusals."""

from __future__ import annotations

import calendar
import subprocess
from pathlib import Path

import pytest

from gputui.agent import kernlog
from gputui.agent.kernlog import MAX_XIDS, parse_log, parse_time, parse_xid, read_system_log

FIXTURES = Path(__file__).parent / "fixtures" / "kernel"

# file -> (xid, pci_bus_id) of every XID line, in order
EXPECTED = {
    "journalctl_short_iso.txt": [
        (13, "0000:18:00"),
        (13, "0000:18:00"),
        (31, "0000:18:00"),
        (63, "0000:3b:00"),
        (48, "0000:3b:00"),
        (63, "0000:3b:00"),
        (74, "0000:5d:00"),
        (94, "0000:ab:00"),
        (95, "0000:ab:00"),
        (119, "0000:db:00"),
        (79, "0000:9a:00"),
    ],
    "journalctl_short_iso_colon_zone.txt": [(119, "0000:c3:00"), (79, "0000:c3:00")],
    "dmesg_iso.txt": [
        (13, "0000:07:00"),
        (13, "0000:07:00"),
        (31, "0000:0f:00"),
        (48, "0000:47:00"),
        (63, "0000:47:00"),
        (74, "0000:4e:00"),
        (94, "0000:87:00"),
        (95, "0000:90:00"),
        (119, "0000:b7:00"),
        (79, "0000:bd:00"),
    ],
    "dmesg_plain_old_drivers.txt": [
        (13, "0000:02:00"),
        (31, "0000:02:00"),
        (48, "0000:3b:00.0"),
        (63, "0000:3b:00.0"),
        (74, "0000:86:00"),
        (79, "0000:af:00"),
        (94, "0000:d8:00"),
        (95, "0000:d8:00"),
        (119, "0000:3b:00.0"),
    ],
}
CATALOGUE = {13, 31, 48, 63, 74, 79, 94, 95, 119}


def _lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_parses_to_every_xid_line_and_nothing_else(name: str) -> None:
    xids, dropped = parse_log(_lines(name), boot_t=1_700_000_000.0, since_t=None)
    assert [(x["xid"], x["pci_bus_id"]) for x in xids] == EXPECTED[name]
    assert dropped == 0
    assert all(x["text"] and "pid=" not in x["text"] and x["line"] for x in xids)


def test_the_fixtures_cover_the_xids_triage_must_know() -> None:
    assert {x for pairs in EXPECTED.values() for x, _ in pairs} >= CATALOGUE
    assert {x for x, _ in EXPECTED["journalctl_short_iso.txt"]} == CATALOGUE
    assert {x for x, _ in EXPECTED["dmesg_iso.txt"]} == CATALOGUE


def test_pid_and_process_are_taken_out_of_the_text() -> None:
    line = (
        "2024-05-14T10:12:03+0000 gpu017 kernel: NVRM: Xid (PCI:0000:3B:00): 48, pid=58222, "
        "name=pt_main_thread, An uncorrectable double bit error (DBE) has been detected"
    )
    x = parse_xid(line)
    assert x is not None
    assert (x["pid"], x["process"], x["pci_bus_id"]) == (58222, "pt_main_thread", "0000:3b:00")
    assert x["text"].startswith("An uncorrectable double bit error")
    unknown = parse_xid(
        "NVRM: Xid (PCI:0000:9a:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off "
        "the bus."
    )
    assert unknown is not None
    assert "pid" not in unknown and "process" not in unknown
    assert unknown["text"] == "GPU has fallen off the bus."
    old = parse_xid("[ 5012.1] NVRM: Xid (0000:02:00): 13, 0001 00000000 0000c1c0 00000308")
    assert old is not None and old["text"] == "0001 00000000 0000c1c0 00000308"


def test_times_in_every_reader_format() -> None:
    utc = calendar.timegm((2024, 5, 14, 10, 21, 7, 0, 0, 0))
    assert parse_time("2024-05-14T10:21:07+0000 gpu017 kernel: x", None) == utc
    assert parse_time("2024-05-14T11:21:07+01:00 h kernel: x", None) == utc
    assert parse_time("2024-05-14T10:21:07,250000+00:00 NVRM: x", None) == utc + 0.25
    assert parse_time("2024-05-14T05:21:07-0500 h kernel: x", None) == utc
    assert parse_time("[ 9300.5] NVRM: x", boot_t=1_000.0) == 10_300.5
    assert parse_time("[ 9300.5] NVRM: x", boot_t=None) is None
    assert parse_time("May 14 10:21:07 gpu017 kernel: NVRM: x", None) is None


def test_since_drops_older_xids_but_keeps_lines_without_a_time() -> None:
    lines = [*_lines("dmesg_iso.txt"), "NVRM: Xid (PCI:0000:01:00): 43, Ch 00000018"]
    since = calendar.timegm((2024, 11, 5, 11, 0, 0, 0, 0, 0))
    xids, _ = parse_log(lines, None, since)
    assert [x["xid"] for x in xids] == [94, 95, 119, 79, 43]


def test_a_storm_of_xids_keeps_the_newest_under_the_cap() -> None:
    lines = [f"[{i}.0] NVRM: Xid (PCI:0000:18:00): 13, pid={i}, name=p, boom" for i in range(900)]
    xids, dropped = parse_log(lines, 0.0, None)
    assert len(xids) == MAX_XIDS and dropped == 900 - MAX_XIDS
    assert xids[-1]["pid"] == 899


# -- readers ------------------------------------------------------------------------------------


class FakeHost:
    """Answers the readers' commands as a host would: program -> (status, stdout, stderr) or an
    exception to raise."""

    def __init__(self, **answers: tuple[int, str, str] | BaseException) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(argv)
        key = argv[0] + ("_iso" if "--time-format" in argv else "")
        answer = self.answers.get(key, FileNotFoundError(2, "No such file or directory"))
        if isinstance(answer, BaseException):
            raise answer
        return answer


JOURNAL = (FIXTURES / "journalctl_short_iso.txt").read_text()
DMESG_ISO = (FIXTURES / "dmesg_iso.txt").read_text()
DMESG_PLAIN = (FIXTURES / "dmesg_plain_old_drivers.txt").read_text()
DENIED = "dmesg: read kernel buffer failed: Operation not permitted\n"
HINT = (
    "Hint: You are currently not seeing messages from other users and the system.\n"
    "      Users in groups 'adm', 'systemd-journal' can see all messages.\n"
)


def test_journalctl_first_with_the_since_window() -> None:
    host = FakeHost(journalctl=(0, JOURNAL, ""))
    status, xids = read_system_log(1_715_680_000.0, None, run=host)
    assert status["source"] == "journalctl" and status["readable"]
    assert len(xids) == 11 and xids[0]["t"] is not None
    assert host.calls == [
        ["journalctl", "-k", "-o", "short-iso", "--no-pager", "--since", "@1715680000"]
    ]


def test_no_journald_falls_back_to_dmesg_iso() -> None:
    host = FakeHost(journalctl=(0, "-- No entries --\n", ""), dmesg_iso=(0, DMESG_ISO, ""))
    status, xids = read_system_log(None, None, run=host)
    assert status["source"] == "dmesg" and len(xids) == 10


def test_a_dmesg_without_time_format_gives_seconds_since_boot() -> None:
    busybox = (1, "", "dmesg: unrecognized option '--time-format'\n")
    host = FakeHost(dmesg_iso=busybox, dmesg=(0, DMESG_PLAIN, ""))
    status, xids = read_system_log(None, boot_t=1_700_000_000.0, run=host)
    assert status["source"] == "dmesg" and status["readable"]
    assert xids[0]["t"] == 1_700_005_012.123 and len(xids) == 9


def test_refused_everywhere_is_permission_denied_not_a_crash() -> None:
    host = FakeHost(journalctl=(0, HINT, ""), dmesg_iso=(1, "", DENIED), dmesg=(1, "", DENIED))
    status, xids = read_system_log(None, None, run=host)
    assert xids == []
    assert status["readable"] is False and status["source"] == "none"
    assert status["error_code"] == "permission_denied"
    assert "Operation not permitted" in status["error"] and "journalctl" in status["error"]


def test_journal_warnings_beside_real_lines_are_not_a_refusal() -> None:
    warn = "Journal file /var/log/journal/x/user-1000.journal is truncated: Permission denied\n"
    host = FakeHost(journalctl=(0, JOURNAL, warn))
    status, xids = read_system_log(None, None, run=host)
    assert status["readable"] and len(xids) == 11


def test_missing_programs_and_timeouts_are_reported() -> None:
    status, _ = read_system_log(None, None, run=FakeHost())
    assert status["error_code"] == "not_found" and not status["readable"]
    hang = subprocess.TimeoutExpired(["journalctl"], 30)
    host = FakeHost(journalctl=hang, dmesg_iso=hang, dmesg=hang)
    status, _ = read_system_log(None, None, run=host)
    assert status["error_code"] == "timeout"


def test_dmesg_restrict_is_read(tmp_path: Path) -> None:
    (tmp_path / "on").write_text("1\n")
    (tmp_path / "off").write_text("0\n")
    assert kernlog.dmesg_restricted(str(tmp_path / "on")) is True
    assert kernlog.dmesg_restricted(str(tmp_path / "off")) is False
    assert kernlog.dmesg_restricted(str(tmp_path / "missing")) is None
