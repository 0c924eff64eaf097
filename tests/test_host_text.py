"""Host text in headless output: shown as written in `gputui report`, `gputui triage` and the
journal listings; never read as Rich markup, emoji shortcodes or Markdown structure, and no
control character of a host's reaches the terminal."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import gputui.cli.commands
import gputui.cli.report_cmd
from gputui.cli.app import app
from gputui.core.model import (
    Action,
    FleetSnapshot,
    GpuProcess,
    HostSnapshot,
    HostState,
    HostVerdict,
    KernelLogStatus,
    KernelXid,
    Level,
    Reason,
    Sample,
    TriageFacts,
    Verdict,
)
from gputui.core.text import plain
from gputui.core.triage import TriageInput, TriageReport, assess_host, build_report
from gputui.ops.journal import Journal
from gputui.ops.records import Fault, ProcessGroup
from gputui.render.hosttext import md, md_code
from gputui.render.report import report_json, report_markdown, report_table
from gputui.render.triage import triage_json, triage_markdown, triage_table
from tests.fake_fleet import T0, hello, reading

assert gputui.cli.commands  # registers every command on `app`

# What hosts have been seen to send, and what an attacker would.
MARKUP = "nvidia-smi not found in [/usr/lib64/nvidia]"
STYLE = "[bold red]x[/]"
EMOJI = ":thumbs_up: on 0000:ab:00.0"
OSC = "\x1b]0;pwned\x07"
CSI = "\x1b[2J"
C1 = "\x9b2J"
BIDI = "\u202eevil"
PIPE = "a|b"
NASTY = f"{MARKUP} {STYLE} {EMOJI} {OSC}{CSI}{C1} {BIDI} line\nbreak {PIPE} `tick` # <b>html</b>"
# What must be read, literally, wherever NASTY is shown whole as text.
LITERAL = ("[/usr/lib64/nvidia]", "[bold red]x[/]", ":thumbs_up:", "0000:ab:00.0", "a|b")
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def assert_plain(output: str) -> None:
    """Nothing a terminal would act on."""
    assert not UNSAFE.search(output), repr(UNSAFE.search(output))


def assert_safe(output: str) -> None:
    """Nothing a terminal would act on, and no shortcode turned into an emoji."""
    assert_plain(output)
    assert "🆎" not in output and "👍" not in output


def assert_literal(output: str) -> None:
    assert_safe(output)
    flat = " ".join(output.split())  # a long line may wrap
    for part in LITERAL:
        assert part in flat, (part, output)


def md_cells(line: str) -> list[str]:
    """A Markdown table row's cells, split where GitHub splits them (an unescaped pipe)."""
    return re.split(r"(?<!\\)\|", line.strip())[1:-1]


def md_unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


# -- gputui report ----------------------------------------------------------------------------


def nasty_fleet() -> FleetSnapshot:
    reason = Reason(code="agent_error", level=Level.CRITICAL, text=NASTY, action=Action.DRAIN)
    sample = Sample(v=1, t=T0, seq=1, gpus=[reading(i, 1) for i in range(2)])
    bad = HostSnapshot(
        name="gpu001",
        state=HostState.STREAMING,
        hello=hello("gpu001", 2),
        sample=sample,
        sample_t=T0,
        verdict=HostVerdict(host=Verdict(level=Level.CRITICAL, reasons=(reason,))),
    )
    down = HostSnapshot(name="gpu002", state=HostState.UNREACHABLE, state_reason=NASTY)
    return FleetSnapshot(t=T0, hosts=(bad, down))


def test_report_table_shows_host_text_literally() -> None:
    text = report_table(nasty_fleet(), width=400)  # MarkupError before
    assert_literal(text)
    assert f"gpu002: unreachable: {MARKUP}" in text
    assert f"- [critical] {MARKUP} {STYLE}" in text  # the level in brackets is text too


def test_report_table_cuts_host_text_without_reading_it() -> None:
    text = report_table(nasty_fleet(), width=80)
    assert_safe(text)
    assert "[/usr/li…" in text.splitlines()[1]  # cut in the WHY column, still literal


def test_report_markdown_escapes_host_text() -> None:
    text = report_markdown(nasty_fleet())
    assert_safe(text)
    rows = [line for line in text.splitlines() if line.startswith("| gpu")]
    assert len(rows) == 2
    for row in rows:
        cells = md_cells(row)
        assert len(cells) == 8, row  # the pipe in the reason stays inside its cell
        why = md_unescape(cells[6].strip())
        assert why.startswith(MARKUP) and "`tick` # <b>html</b>" in why
        assert "\\[" in cells[6] and "\\`" in cells[6] and "\\<b\\>" in cells[6]


def test_report_json_keeps_host_text_exact_and_escaped() -> None:
    text = report_json(nasty_fleet())
    assert_safe(text)  # json writes every control character as an escape
    doc = json.loads(text)
    assert doc["hosts"][0]["why"] == NASTY and doc["hosts"][1]["state_reason"] == NASTY


@pytest.fixture
def fake_collect(monkeypatch: pytest.MonkeyPatch) -> None:
    async def collect_once(
        hosts: Path | None,
        demo: int | None,
        wait_s: float,
        sim_elapsed_s: float | None = None,
        shard: object = None,
        workers: int | None = None,
    ) -> FleetSnapshot:
        return nasty_fleet()

    monkeypatch.setattr(gputui.cli.report_cmd, "collect_once", collect_once)


@pytest.mark.usefixtures("fake_collect")
@pytest.mark.parametrize("fmt", ["table", "markdown", "json"])
def test_report_command_prints_host_text_safely(fmt: str) -> None:
    result = CliRunner().invoke(app, ["report", "--demo", "2", "--format", fmt])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2  # critical: the fleet's status, not a crash
    assert_safe(result.stdout)
    assert "[/usr/lib64/nvidia" in result.stdout.replace("\\", "")


# -- gputui triage ----------------------------------------------------------------------------


def nasty_triage_report() -> TriageReport:
    info = hello("0000:ab:00", 2)
    gpu0 = msgspec.structs.replace(info.gpus[0], pci_bus_id="0000:ab:00.0", name=NASTY)
    info = msgspec.structs.replace(info, gpus=[gpu0, info.gpus[1]])
    procs = [GpuProcess(pid=7, name=NASTY)]
    sample = Sample(v=1, t=T0, seq=1, gpus=[reading(0, 1, processes=procs), reading(1, 1)])
    facts = TriageFacts(
        v=1,
        t=T0,
        kernel_log=KernelLogStatus(source="dmesg", readable=True),
        kernel=NASTY,
        os=NASTY,
        xids=[KernelXid(xid=79, pci_bus_id="0000:ab:00", text=NASTY, pid=7, process=NASTY)],
    )
    up = assess_host(TriageInput(host="0000:ab:00", hello=info, samples=(sample,), facts=facts))
    down = assess_host(TriageInput(host="gpu002", error_code="unreachable", error=NASTY))
    return build_report([up, down], T0, None)


def test_triage_table_shows_host_text_literally() -> None:
    report = nasty_triage_report()
    text = triage_table(report, width=400)
    assert_literal(text)
    assert "0000:ab:00 " in text.splitlines()[1]  # the host column: no emoji for `:ab:`
    assert "GPU0 0000:ab:00 XID 79" in text


def test_triage_markdown_escapes_host_text() -> None:
    text = triage_markdown(nasty_triage_report())
    assert_safe(text)
    table = [line for line in text.splitlines() if line.startswith("| 0000") or "| gpu002" in line]
    assert [len(md_cells(row)) for row in table] == [6, 6]
    assert "## 0000:ab:00: failed" in text
    xid = next(line for line in text.splitlines() if line.startswith("- time ? GPU0"))
    assert "\\[/usr/lib64/nvidia\\]" in xid and "a\\|b" in xid and "\\`tick\\`" in xid
    assert "\\<b\\>html\\</b\\>" in xid and "\\#" in xid
    assert md_unescape(xid).endswith(f"(pid 7 {plain(NASTY)})")  # all of it, as plain text


def test_triage_json_keeps_host_text_exact_and_escaped() -> None:
    text = triage_json(nasty_triage_report())
    assert_safe(text)
    doc = json.loads(text)
    assert doc["hosts"][0]["xids"][0]["text"] == NASTY


# -- the journal listings ---------------------------------------------------------------------


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "j.sqlite3"
    j = Journal.open(path)
    j.record_faults([Fault(t=T0, node=f"gpu001{CSI}", kind="xid", level=3, xid=79, text=NASTY)])
    j.close()
    yield path


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_journal_listing_shows_host_text_safely(journal: Path, fmt: str) -> None:
    result = CliRunner().invoke(app, ["journal", "--journal", str(journal), "--format", fmt])
    assert result.exit_code == 0, result.output
    assert_safe(result.stdout)
    if fmt == "json":
        fault = json.loads(result.stdout)[0]
        assert fault["text"] == NASTY and fault["node"] == f"gpu001{CSI}"  # exact, escaped
    else:
        assert MARKUP in result.stdout and "gpu001[2J" in result.stdout


def test_an_interrupted_commands_notice_shows_host_text_safely(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    with Journal.open(path) as j:
        argv = ["scontrol", "update", f"Reason={NASTY}"]  # a reason quoting a host
        run = j.begin_run("r", "drain", "gpu001", 0, argv, "local")
        j.record_process_group(run, ProcessGroup(2**22 + 1, "b", 7))  # above any pid_max
    raw = sqlite3.connect(path)
    with raw:  # its writer is gone: interrupted
        raw.execute("UPDATE action_runs SET pid = ? WHERE id = ?", (2**22 + 1, run.id))
    raw.close()
    result = CliRunner().invoke(app, ["journal", "--journal", str(path)])
    assert result.exit_code == 0, result.output
    assert "has ended: its process group" in result.stderr and MARKUP in result.stderr
    assert_safe(result.stderr)
    assert_safe(result.stdout)


# -- the helpers, over any text ---------------------------------------------------------------


def test_md_code_holds_any_backticks() -> None:
    assert md_code("a") == "`a`"
    assert md_code("x ``y`` z") == "```x ``y`` z```"
    assert md_code("`start") == "`` `start ``"
    assert md_code("") == ""


@given(st.text())
def test_md_cell_is_one_cell_of_plain_text(text: str) -> None:
    cell = md(text)
    assert_plain(cell)
    row = f"| {cell} | next |"
    cells = md_cells(row)
    assert len(cells) == 2 and cells[1] == " next "
    assert not re.search(r"(?<!\\)[`<>\[\]|*_#]", cell.replace("\\\\", ""))


@given(st.text(), st.text(), st.text(min_size=1, max_size=30))
def test_report_table_over_any_host_text(why: str, state_reason: str, name: str) -> None:
    reason = Reason(code="x", level=Level.WARN, text=why)
    hosts = (
        HostSnapshot(
            name=name,
            state=HostState.STREAMING,
            verdict=HostVerdict(host=Verdict(level=Level.WARN, reasons=(reason,))),
        ),
        HostSnapshot(name=name + "2", state=HostState.UNREACHABLE, state_reason=state_reason),
    )
    snapshot = FleetSnapshot(t=T0, hosts=hosts)
    assert_plain(report_table(snapshot, width=80))
    assert_plain(report_markdown(snapshot))
