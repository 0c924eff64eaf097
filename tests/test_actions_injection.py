"""Hostile node names and reasons never change the shape of the argv, here or over SSH.

The action's program is Python printing the argv it received as JSON, so the test compares
what the command actually got with what the template promised: the same number of
arguments, each byte for byte. Remotely it goes through a real OpenSSH sshd and the remote
account's login shell, which is where a badly quoted string would split or run.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gputui.collect.ssh import SshContext, SshOptions
from gputui.config import config_from_text
from gputui.ops.actions import OperatorActions
from gputui.ops.journal import Journal
from gputui.ops.plans import build_plan
from gputui.ops.templates import CommandTemplate, TemplateError
from tests.openssh import OpenSshServer, ssh_keygen

ECHO = "import sys, json; print('ARGV:' + json.dumps(sys.argv[1:]))"

HOSTILE = [
    "gpu001; rm -rf /tmp/x",
    "$(touch /tmp/gputui-pwned)",
    "`id`",
    "a'b\"c",
    "'; echo pwned; '",
    '"; echo pwned; "',
    "line one\nline two\n",
    "\r\n\t tabs and CR",
    "a && b || c | d > e < f",
    "${HOME} $HOME ~root *",
    "\\' \\\" \\\\",
    "ΧΙD 79 — ГПУ упал 🔥 显卡",
    "x" * 10_000,
    "",
    " ",
    "{node} {reason} {{}}",
    "%A %s %n",
    "-- not an option when inside",
]

TEMPLATE = [
    sys.executable,
    "-c",
    ECHO,
    "{node}",
    "Reason=gputui: {reason}",
    "{reason}",
    "--node={node}",
    "{node}{reason}",
]


def expected(node: str, reason: str) -> list[str]:
    return [node, f"Reason=gputui: {reason}", reason, f"--node={node}", f"{node}{reason}"]


def actions_toml(where: str) -> str:
    argv = json.dumps(TEMPLATE)
    return f'hosts = ["gpu001"]\n[actions.echo]\nargv = {argv}\nwhere = "{where}"\n'


def pairs() -> list[tuple[str, str]]:
    # An empty value is refused as missing, and a leading "-" filling a whole argument as an
    # option (test_nul_and_leading_dash_are_refused); everything else must pass through.
    safe = [v for v in HOSTILE if v and not v.startswith("-")]
    return [(v, "XID 79") for v in safe] + [("gpu001", v) for v in safe]


async def run_echo(ops: OperatorActions, node: str, reason: str) -> list[str]:
    plan = build_plan(ops.catalog, "echo", {"node": node, "reason": reason, "operator": "op"})
    lines: list[str] = []
    outcome = await ops.run(plan, on_output=lines.append)
    (step,) = outcome.actions[0].steps
    assert step.ok, step.problem()
    # Streamed stdout, whole (the journal keeps only a tail); sshd's debug lines are skipped.
    (line,) = [ln for ln in lines if ln.startswith("[echo]   ARGV:")]
    received: list[str] = json.loads(line.split("ARGV:", 1)[1])
    return received


async def test_hostile_values_stay_single_arguments_locally(tmp_path: Path) -> None:
    config = config_from_text(actions_toml("local"))
    with Journal.open(tmp_path / "j.sqlite3") as journal:
        ops = OperatorActions(config, journal)
        for node, reason in pairs():
            assert await run_echo(ops, node, reason) == expected(node, reason)
        # What was journaled is what ran.
        assert list(journal.runs()[0].argv[3:]) == expected(*pairs()[0])


@pytest.fixture
def remote(tmp_path: Path):  # type: ignore[no-untyped-def]
    pub = ssh_keygen(tmp_path / "id_ed25519")
    server = OpenSshServer(tmp_path, "ctl", [pub])
    (tmp_path / "known_hosts").write_text(server.known_hosts_line() + "\n")
    (tmp_path / "ssh_config").write_text(
        f"Host slurmctl\n  HostName 127.0.0.1\n  Port {server.port}\n  User {server.user}\n"
        f"  IdentityFile {tmp_path / 'id_ed25519'}\n"
    )
    server.start()
    yield SshContext(
        SshOptions(config_files=(tmp_path / "ssh_config",), known_hosts=tmp_path / "known_hosts")
    )
    server.stop()


@pytest.mark.system
async def test_hostile_values_stay_single_arguments_over_ssh(tmp_path: Path, remote) -> None:  # type: ignore[no-untyped-def]
    marker = Path("/tmp/gputui-pwned")
    marker.unlink(missing_ok=True)
    config = config_from_text(actions_toml("slurmctl"))
    with Journal.open(tmp_path / "j.sqlite3") as journal:
        ops = OperatorActions(config, journal, remote)
        try:
            for node, reason in pairs():
                assert await run_echo(ops, node, reason) == expected(node, reason), (node, reason)
        finally:
            await ops.aclose()
        assert {r.where for r in journal.runs()} == {"slurmctl"}
    assert not marker.exists()


def test_nul_and_leading_dash_are_refused() -> None:
    command = CommandTemplate.parse(["prog", "{node}", "x={reason}"])
    with pytest.raises(TemplateError, match="NUL"):
        command.render({"node": "a", "reason": "b\0c"})
    with pytest.raises(TemplateError, match="starts with '-'"):
        command.render({"node": "-rf", "reason": "b"})
    assert command.render({"node": "a", "reason": "-rf"}) == ("prog", "a", "x=-rf")


no_nul = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)))
literal = st.text(st.characters(blacklist_characters="{}\0", blacklist_categories=("Cs",)))


@settings(max_examples=300, deadline=None)
@given(
    prefix=literal,
    suffix=literal,
    node=no_nul.filter(lambda s: not s.startswith("-")),
    reason=no_nul,
)
def test_rendering_never_changes_the_number_of_arguments(
    prefix: str, suffix: str, node: str, reason: str
) -> None:
    template = ["prog", "{node}", f"{prefix}{{reason}}{suffix}", "{{literal}}"]
    argv = CommandTemplate.parse(template).render({"node": node, "reason": reason})
    assert argv == ("prog", node, f"{prefix}{reason}{suffix}", "{literal}")
    # And the remote form splits back into exactly this argv.
    assert shlex.split(shlex.join(argv)) == list(argv)
