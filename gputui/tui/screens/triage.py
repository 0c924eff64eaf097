"""A host's triage report: one deep pass over SSH, shown while the monitor keeps running."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, LoadingIndicator, Static

from gputui.core.text import plain

# Host name and text width -> the report as text (gputui/render/triage.py's table form).
TriageRunner = Callable[[str, int], Awaitable[str]]
MIN_WIDTH = 40  # narrower, the report's tables would say little


class TriageScreen(ModalScreen[None]):
    """Runs the triage of one host in a worker and shows its report; escape closes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
    ]

    def __init__(self, host: str, runner: TriageRunner) -> None:
        super().__init__()
        self.host = host
        self.runner = runner
        self.report_text: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog triage"):
            title = f"Triage of {self.host}: one deep pass (samples, kernel log, PCI bus)"
            yield Label(Text(title))
            yield LoadingIndicator(id="triage-loading")
            with VerticalScroll(id="triage-scroll"):
                yield Static("", id="triage-body")
            yield Label("escape closes", classes="hint")

    def on_mount(self) -> None:
        # Once laid out: the report is rendered for the width it is shown in.
        self.call_after_refresh(self._run)

    def report_width(self) -> int:
        """Cells across the report's scroll area, less its scrollbar (always reserved)."""
        scroll = self.query_one("#triage-scroll", VerticalScroll)
        return max(MIN_WIDTH, scroll.scrollable_content_region.width)

    @work(exclusive=True, group="triage")
    async def _run(self) -> None:
        width = self.report_width()
        try:
            text = await self.runner(self.host, width)
        except Exception as exc:  # a failed triage is shown, never raised into the app
            text = f"triage failed: {type(exc).__name__}: {exc}"
        # The report is host text laid out in lines: each shown as it is (never as markup),
        # less control characters.
        text = "\n".join(plain(line) for line in text.split("\n"))
        self.report_text = text
        self.query_one("#triage-loading", LoadingIndicator).display = False
        self.query_one("#triage-body", Static).update(Text(text))

    def action_close(self) -> None:
        self.dismiss(None)
