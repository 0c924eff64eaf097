"""The command line: `gputui node ...`, `gputui action ...`, `gputui journal`.

Every user mistake is one line on stderr and exit status 2, never a traceback; a command that
ran and failed exits 1.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import msgspec
import pytest
from typer.testing import CliRunner, Result

import gputui.cli.commands
from gputui.cli.app import app
from gputui.ops.actions import READONLY_REFUSAL
from gputui.ops.journal import Journal


@pytest.fixture
def site(tmp_path: Path) -> Path:
    notes = tmp_path / "notes"
    (tmp_path / "hosts.toml").write_text(
        textwrap.dedent(
            f"""
            [groups.gpu]
            hosts = ["gpu[001-003]"]
            spares = ["gpu004"]

            [actions.note]
            argv = ["sh", "-c", "printf '%s|%s\\\\n' \\"$1\\" \\"$2\\" >> {notes}", "note",
                    "{{node}}", "{{reason}}"]
            on_fail = true

            [actions.bring]
            argv = ["sh", "-c", "echo spare \\"$1\\" >> {notes}", "bring", "{{spare}}"]
            confirm = false

            [actions.broken]
            argv = ["sh", "-c", "echo no such node >&2; exit 4"]
            confirm = false
            """
        )
    )
    return tmp_path


def gputui(site: Path, *args: str) -> Result:
    env = {"GPUTUI_HOSTS": str(site / "hosts.toml"), "GPUTUI_JOURNAL": str(site / "j.sqlite3")}
    return CliRunner().invoke(app, list(args), env=env)


def one_error_line(result: Result) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gputui: ")
    return lines[0]


def test_fail_refuses_to_run_unconfirmed_without_a_terminal(site: Path) -> None:
    result = gputui(site, "node", "fail", "gpu002", "--reason", "XID 79")
    assert result.exit_code == 2
    assert "needs confirmation" in one_error_line(result) and "--yes" in result.stderr
    assert not (site / "notes").exists()
    with Journal.open(site / "j.sqlite3") as j:
        assert j.node_events() == [] and j.runs() == []


def test_fail_with_yes_runs_on_fail_actions_and_records(site: Path) -> None:
    result = gputui(site, "node", "fail", "gpu002", "--reason", "XID 79; $(reboot)", "--yes")
    assert result.exit_code == 0, result.output
    assert (site / "notes").read_text() == "gpu002|XID 79; $(reboot)\n"
    assert "gpu002 marked failed" in result.stdout
    assert "spare gpu004 can replace gpu002: gputui node spare gpu002" in result.stdout
    listed = json.loads(gputui(site, "node", "list", "--format", "json").stdout)
    assert [(n["node"], n["state"]) for n in listed] == [
        ("gpu001", "in_service"),
        ("gpu002", "failed"),
        ("gpu003", "in_service"),
        ("gpu004", "spare"),
    ]
    assert listed[1]["reason"] == "XID 79; $(reboot)"
    table = gputui(site, "node", "list").stdout
    assert "gpu002  gpu    failed" in table


def test_fail_dry_run_prints_exact_argv_and_changes_nothing(site: Path) -> None:
    result = gputui(site, "node", "fail", "gpu002", "--reason", "it's hot", "--dry-run")
    assert result.exit_code == 0
    assert "note on gpu002 (needs confirmation)" in result.stdout
    assert '"note", "gpu002", "it\'s hot"]' in result.stdout  # the argv as JSON
    assert "[local] sh -c" in result.stdout
    assert not (site / "notes").exists()
    with Journal.open(site / "j.sqlite3") as j:
        assert j.node_events() == []


def test_a_failing_action_exits_1_with_one_line_per_problem(site: Path) -> None:
    result = gputui(site, "node", "fail", "gpu001", "--reason", "x", "--action", "broken")
    assert result.exit_code == 1
    assert one_error_line(result) == (
        "gputui: broken: `sh -c 'echo no such node >&2; exit 4'` failed (exit 4): no such node"
    )
    assert "gpu001 marked failed" in result.stdout  # the decision stands


def test_spare_flag_brings_the_spare_in(site: Path) -> None:
    (site / "hosts.toml").write_text(
        (site / "hosts.toml").read_text().replace("[actions.bring]", "[actions.activate-spare]")
    )
    result = gputui(
        site, "node", "fail", "gpu001", "--reason", "x", "--action", "broken", "--spare"
    )
    assert result.exit_code == 1 and "not brought in" in result.stderr
    result = gputui(site, "node", "spare", "gpu001")
    assert result.exit_code == 0, result.output
    assert "spare gpu004 in service in place of gpu001" in result.stdout
    assert (site / "notes").read_text() == "spare gpu004\n"
    result = gputui(site, "node", "spare", "gpu003")
    assert result.exit_code == 1 and "no healthy spare" in result.stderr


def test_resume_returns_the_node(site: Path) -> None:
    gputui(site, "node", "fail", "gpu003", "--reason", "x", "--yes")
    result = gputui(site, "node", "resume", "gpu003")
    assert result.exit_code == 0, result.output
    assert "gpu003 back in service" in result.stdout
    states = json.loads(gputui(site, "journal", "--node", "gpu003", "--format", "json").stdout)
    assert [e.get("state") for e in states if e["type"] == "node_state"] == [
        "failed",
        "in_service",
    ]


def test_action_run_dry_run_and_run(site: Path) -> None:
    dry = gputui(site, "action", "run", "note", "gpu001", "--reason", "r", "--dry-run")
    assert dry.exit_code == 0 and "[local] sh -c" in dry.stdout and "argv: [" in dry.stdout
    refused = gputui(site, "action", "run", "note", "gpu001", "--reason", "r")
    assert refused.exit_code == 2 and "needs confirmation" in refused.stderr
    ran = gputui(site, "action", "run", "note", "gpu001", "--reason", "r", "--yes")
    assert ran.exit_code == 0 and (site / "notes").read_text() == "gpu001|r\n"
    with Journal.open(site / "j.sqlite3") as j:
        assert j.node_events() == []  # an action alone changes no node state
        assert [r.argv[-2:] for r in j.runs()] == [("gpu001", "r")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["node", "fail", "gpu009", "--reason", "x"], 'no host "gpu009"'),
        (["node", "fail", "gpu001", "--reason", "  "], "a reason is required"),
        (["node", "fail", "gpu001", "--reason", "x", "--action", "nte"], '(did you mean "note"?)'),
        (["action", "run", "note", "gpu001"], "needs a reason"),
        (["action", "run", "note", "gpu001", "--reason=-rf", "--yes"], "starts with '-'"),
        (["journal", "--since", "yesterday"], "--since: expected a duration"),
        (["node", "resume", "nope"], 'no host "nope"'),
    ],
)
def test_mistakes_are_one_line_and_exit_2(site: Path, args: list[str], message: str) -> None:
    result = gputui(site, *args)
    assert result.exit_code == 2, result.output
    assert message in one_error_line(result)


def test_a_bad_actions_table_is_one_line(site: Path) -> None:
    (site / "hosts.toml").write_text('hosts = ["a"]\n[actions.x]\nargv = ["p", "{nde}"]\n')
    result = gputui(site, "node", "list")
    assert result.exit_code == 2
    assert "actions.x.argv: unknown placeholder {nde}" in one_error_line(result)


def test_a_bad_journal_file_is_one_line(site: Path) -> None:
    (site / "j.sqlite3").write_text("garbage " * 200)
    result = gputui(site, "journal")
    assert result.exit_code == 2 and "not a usable gputui journal" in one_error_line(result)


def test_journal_filters_and_formats(site: Path) -> None:
    gputui(site, "node", "fail", "gpu001", "--reason", "a\nb", "--yes")
    gputui(site, "node", "fail", "gpu002", "--reason", "c", "--yes")
    table = gputui(site, "journal", "--since", "1h", "--node", "gpu001").stdout
    assert "gpu001" in table and "gpu002" not in table and "a\\nb" in table
    assert "no journal entries in that time" in gputui(site, "journal", "--since", "0s").stdout
    entries = json.loads(gputui(site, "journal", "--format", "json").stdout)
    assert {e["type"] for e in entries} == {"node_state", "action"}
    assert all(e["status"] == "ok" for e in entries if e["type"] == "action")


def test_action_list(site: Path) -> None:
    table = gputui(site, "action", "list").stdout
    assert "note" in table and "node fail" in table
    listed = json.loads(gputui(site, "action", "list", "--format", "json").stdout)
    assert listed[0]["name"] == "note" and listed[0]["steps"][0]["argv"][-1] == "{reason}"


def test_action_list_names_its_columns_for_what_they_hold(site: Path) -> None:
    header, *rows = gputui(site, "action", "list").stdout.splitlines()
    assert header.split("  ")[0] == "ACTION"
    assert [c.strip() for c in re.split(r"\s{2,}", header)] == [
        "ACTION", "PRESET", "TRIGGER", "CONFIRM", "[WHERE] COMMANDS",
    ]  # fmt: skip
    cells = {row.split()[0]: [c.strip() for c in re.split(r"\s{2,}", row)] for row in rows}
    # note runs when a node is marked failed; bring only when named; both come from hosts.toml.
    assert cells["note"][1:4] == ["-", "node fail", "yes"]
    assert cells["bring"][1:4] == ["-", "-", "no"]
    assert cells["note"][4].startswith("[local] sh -c ")


READONLY_REQUESTS = [
    ["node", "fail", "gpu002", "--reason", "XID 79", "--yes"],
    ["node", "fail", "gpu002", "--reason", "XID 79", "--dry-run"],
    ["node", "resume", "gpu002", "--yes"],
    ["node", "spare", "gpu002", "--yes"],
    ["action", "run", "bring", "gpu002", "--spare", "gpu004"],
]


@pytest.mark.parametrize(
    "args", READONLY_REQUESTS, ids=[" ".join(a[:3]) for a in READONLY_REQUESTS]
)
@pytest.mark.parametrize("how", ["flag", "file"])
def test_readonly_refuses_every_change_in_one_line(site: Path, args: list[str], how: str) -> None:
    if how == "file":
        hosts = site / "hosts.toml"
        hosts.write_text("readonly = true\n" + hosts.read_text())
        result = gputui(site, *args)
    else:
        result = gputui(site, *args, "--readonly")
    assert result.exit_code == 2
    assert one_error_line(result) == f"gputui: {READONLY_REFUSAL}"
    assert not (site / "notes").exists()  # no command ran
    with Journal.open(site / "j.sqlite3") as j:
        assert j.node_events() == [] and j.runs() == []
    # What only looks still works.
    assert "gpu002" in gputui(site, "node", "list").stdout
    assert "note" in gputui(site, "action", "list").stdout


async def test_the_monitors_operator_is_refused_the_same_way(site: Path) -> None:
    """The live monitor's requests go through the same OperatorActions (OpsOperator)."""
    from gputui.cli.common import load_hosts
    from gputui.ops.actions import ActionError, OperatorActions
    from gputui.ops.plans import Operation
    from gputui.tui.ops_operator import OpsOperator

    config = msgspec.structs.replace(load_hosts(site / "hosts.toml"), readonly=True)
    with Journal.open(site / "j.sqlite3") as journal:
        ops = OperatorActions(config, journal)
        operator = OpsOperator(lambda: ops)
        for kind in ("fail", "resume", "spare", "action"):
            with pytest.raises(ValueError, match=re.escape(READONLY_REFUSAL)):
                await operator.prepare(kind, "gpu002", reason="XID 79", action="note")
        # An operation prepared before (by anyone) does not run either.
        with pytest.raises(ActionError, match=re.escape(READONLY_REFUSAL)):
            await ops.run(Operation(kind="fail", node="gpu002", reason="XID 79"))
        assert journal.node_events() == [] and journal.runs() == []
        await ops.aclose()
