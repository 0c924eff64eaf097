"""Imports every command module so that each registers its commands on the app."""

from __future__ import annotations

from gputui.cli import action_cmd  # noqa: F401
from gputui.cli import agent_cmd  # noqa: F401
from gputui.cli import jobs_cmd  # noqa: F401
from gputui.cli import journal_cmd  # noqa: F401
from gputui.cli import node_cmd  # noqa: F401
from gputui.cli import prevent_cmd  # noqa: F401
from gputui.cli import report_cmd  # noqa: F401
from gputui.cli import risk_cmd  # noqa: F401
from gputui.cli import serve_cmd  # noqa: F401
from gputui.cli import tui_cmd  # noqa: F401
from gputui.cli import triage_cmd  # noqa: F401
from gputui.cli import init_cmd  # noqa: F401
from gputui.cli import exporter_cmd  # noqa: F401
from gputui.cli import rules_cmd  # noqa: F401
