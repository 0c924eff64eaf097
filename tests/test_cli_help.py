"""Every command's --help, read as a user at an 80-column terminal reads it.

Each help text is written once, in the command's code; the test walks every command the app
registers (commands added later are walked too) and checks that what the user sees still holds
all of it: no word lost to markup (`[journal]` read as a style tag), no `<bool>` after a flag,
no command summary cut off with "..." in a listing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import gputui.cli.commands  # noqa: F401  (registers every command)
from gputui.cli.app import app


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def _help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, color=False)
    assert result.exit_code == 0, result.output
    return result.output


def _squeezed(text: str) -> str:
    # Wrapping moves line breaks and indents; hyphenated words may break after the hyphen.
    return re.sub(r"\s+", "", text)


def _texts(command: Any) -> list[tuple[str, str]]:
    """(where, text) of every help text written for `command`: its own and its parameters'."""
    texts = [("the command's help", command.help or "")]
    for param in command.params:
        text = getattr(param, "help", None)
        if text:
            texts.append((f"the help of {param.name}", text))
    return [(where, text.replace("\b", "")) for where, text in texts if text.strip()]


def test_every_command_is_walked() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"", "monitor", "demo", "init", "report", "node fail", "action list"} <= names


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(p) or "gputui" for p, _ in COMMANDS]
)
def test_help_shows_every_word_written_for_it(path: tuple[str, ...], command: Any) -> None:
    shown = _help(path)
    for where, text in _texts(command):
        assert _squeezed(text) in _squeezed(shown), (
            f"`gputui {' '.join(path)} --help` lost part of {where}:\n{text}\n---\n{shown}"
        )


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(p) or "gputui" for p, _ in COMMANDS]
)
def test_help_labels_no_flag_with_a_type(path: tuple[str, ...], command: Any) -> None:
    shown = _help(path)
    assert "<bool>" not in shown, shown
    assert "│" not in shown and "╭" not in shown, shown  # plain text: no boxes to cut lines


def test_brackets_in_help_survive() -> None:
    # The words the markup ate, as users saw them.
    monitor = " ".join(_help(("monitor",)).split())
    assert "then [journal] path in hosts.toml" in monitor
    node_fail = " ".join(_help(("node", "fail")).split())
    assert "then [journal] path in hosts.toml" in node_fail


GROUPS = [(path, command) for path, command in COMMANDS if getattr(command, "commands", None)]


@pytest.mark.parametrize(
    ("path", "command"), GROUPS, ids=[" ".join(p) or "gputui" for p, _ in GROUPS]
)
def test_command_listings_show_whole_summaries(path: tuple[str, ...], command: Any) -> None:
    shown = _help(path)
    listing = shown.split("Commands:", 1)[1]
    rows = [line for line in listing.splitlines() if line.strip()]
    assert {
        row.split()[0] for row in rows if row.startswith("  ") and not row.startswith("   ")
    } == {name for name, sub in command.commands.items() if not sub.hidden}
    cut = [row.strip() for row in rows if row.rstrip().endswith("...")]
    assert not cut, (
        "a command's first sentence is longer than an 80-column listing shows; make it a short "
        f"sentence ending with a period: {cut}"
    )
