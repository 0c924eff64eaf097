"""Which module registers each command, so that a command line imports only the one it runs.

Importing every command module costs a report most of its start-up (the journal, the triage
and prevention code, the risk tab's tables: docs/benchmarks.md, "Start-up"); a command needs
only its own module and the one that registers bare `gputui` (the app's callback, whose
options every command line is parsed against). The help that lists every command, and a word
that names none (answered with that list), still import them all, through commands.py.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

#: Registers bare `gputui` (the app's callback) and the live monitor: always imported.
DEFAULT_MODULE = "gputui.cli.tui_cmd"

#: Command or command group -> the module that registers it on the app. tests/test_cli_registry.py
#: checks it against what commands.py registers.
COMMAND_MODULES: dict[str, str] = {
    "action": "gputui.cli.action_cmd",
    "agent": "gputui.cli.agent_cmd",
    "demo": DEFAULT_MODULE,
    "exporter": "gputui.cli.exporter_cmd",
    "init": "gputui.cli.init_cmd",
    "jobs": "gputui.cli.jobs_cmd",
    "journal": "gputui.cli.journal_cmd",
    "monitor": DEFAULT_MODULE,
    "node": "gputui.cli.node_cmd",
    "prevent": "gputui.cli.prevent_cmd",
    "report": "gputui.cli.report_cmd",
    "risk": "gputui.cli.risk_cmd",
    "rules": "gputui.cli.rules_cmd",
    "serve": "gputui.cli.serve_cmd",
    "triage": "gputui.cli.triage_cmd",
}

#: Options of bare `gputui` that take a value: the word after one names no command.
_TAKES_VALUE = frozenset({"--local-backend"})


def modules_for(args: Sequence[str]) -> list[str] | None:
    """The command modules the command line `args` (without the program) needs; None for all
    of them: the help of bare `gputui`, or a first word that names no command."""
    words = iter(args)
    for word in words:
        if word == "--help":
            return None
        if word in _TAKES_VALUE:
            next(words, None)
            continue
        if word.startswith("-"):
            continue
        module = COMMAND_MODULES.get(word)
        return None if module is None else list(dict.fromkeys([DEFAULT_MODULE, module]))
    return [DEFAULT_MODULE]


def register_for(args: Sequence[str]) -> None:
    """Register on the app the commands that the command line `args` can run."""
    modules = modules_for(args)
    if modules is None:
        importlib.import_module("gputui.cli.commands")
        return
    for module in modules:
        importlib.import_module(module)
