"""Modal dialogs of the operator flows: reason, confirmation, action choice, argv preview.

Each dialog returns its answer through `dismiss` (None or False for cancel), so a flow reads
top to bottom in one worker: ask, preview, confirm, run.

Questions, reasons and previews quote host text (a reason is often a host's own words): every
one is shown as a Text through `plain()`, never as markup, and a prefilled reason is plain too.

Every text wraps at the dialog's width, and the buttons stay on screen however long the text:
they are docked at the dialog's foot and the text above them scrolls (at 80x24 a preview of
the drain and the requeue is taller than the screen).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from gputui.core.text import plain
from gputui.tui.operator import ActionChoice, Prepared


def _text(text: str) -> Text:
    return Text(plain(text))


# Scoped to each dialog's screen: the buttons at the foot, the body scrolling above them, and
# titles as wide as the dialog so that they wrap (a Label is as wide as its text, and cut).
DIALOG_CSS = """
.dialog-title {
    width: 100%;
}
.dialog-body {
    height: auto;
    max-height: 100%;
}
.dialog-buttons {
    dock: bottom;
}
"""


class ReasonDialog(ModalScreen[str | None]):
    """Ask why a host is taken out of service; the reason is prefilled and editable."""

    DEFAULT_CSS = DIALOG_CSS
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self, host: str, reason: str, *, hint: str = "Reason:", ok_label: str = "Mark failed"
    ) -> None:
        super().__init__()
        self.host = host
        self.reason = plain(reason)
        self.hint = hint
        self.title_text = f"Mark {host} failed"
        self.ok_label = ok_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(_text(self.title_text), classes="dialog-title")
            yield Static(_text(self.hint))
            yield Input(self.reason, placeholder="why this host is out of service", id="reason")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.ok_label, variant="error", id="ok", disabled=not self.reason)
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        self.query_one("#ok", Button).disabled = not event.value.strip()

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        value = self.query_one(Input).value.strip()
        if value:
            self.dismiss(value)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmDialog(ModalScreen[bool]):
    """A yes/no question; `y` and `n` answer it too."""

    DEFAULT_CSS = DIALOG_CSS
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "answer(False)", "No"),
        Binding("y", "answer(True)", "Yes"),
    ]

    def __init__(self, question: str, detail: str = "", *, yes: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.detail = detail
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes} (y)", variant="warning", id="yes")
                yield Button("No (n)", id="no")
            with VerticalScroll(classes="dialog-body"):
                yield Static(_text(self.question), classes="dialog-title")
                if self.detail:
                    yield Static(_text(self.detail), classes="dialog-detail")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class ActionPicker(ModalScreen[tuple[str, str] | None]):
    """Choose a configured action for a host and give its reason."""

    DEFAULT_CSS = DIALOG_CSS
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, host: str, choices: Sequence[ActionChoice], reason: str) -> None:
        super().__init__()
        self.host = host
        self.choices = list(choices)
        self.reason = plain(reason)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(_text(f"Run an action on {self.host}"), classes="dialog-title")
            options = [
                Option(
                    Text.assemble((plain(c.name), "bold"), plain(f"  {c.description}")), id=c.name
                )
                for c in self.choices
            ]
            yield OptionList(*options, id="actions")
            yield Label("Reason:")
            yield Input(self.reason, placeholder="why", id="reason")
            yield Label("enter: preview the exact command   escape: cancel", classes="dim")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()
        self.query_one(OptionList).highlighted = 0

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self.dismiss((event.option.id, self.query_one(Input).value.strip()))

    @on(Input.Submitted)
    def _submitted(self) -> None:
        option_list = self.query_one(OptionList)
        if option_list.highlighted is not None:
            option = option_list.get_option_at_index(option_list.highlighted)
            if option.id is not None:
                self.dismiss((option.id, self.query_one(Input).value.strip()))

    def action_cancel(self) -> None:
        self.dismiss(None)


class PreviewDialog(ModalScreen[bool]):
    """Show exactly what a request will run, and where, before it runs."""

    DEFAULT_CSS = DIALOG_CSS
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "answer(False)", "Cancel"),
        Binding("y", "answer(True)", "Run"),
    ]

    def __init__(self, prepared: Prepared, *, question: str = "") -> None:
        super().__init__()
        self.prepared = prepared
        self.question = question or f"{prepared.summary}?"

    def compose(self) -> ComposeResult:
        p = self.prepared
        with Vertical(classes="dialog wide"):
            with Horizontal(classes="dialog-buttons"):
                yield Button("Run (y)" if p.commands else "Do it (y)", variant="error", id="yes")
                yield Button("Cancel (n)", id="no")
            with VerticalScroll(classes="dialog-body"):
                yield Static(_text(self.question), classes="dialog-title")
                if p.preview:
                    # One line per command: each line plain, the breaks between them kept.
                    preview = Text("\n".join(plain(line) for line in p.preview))
                    yield Static(preview, id="preview", classes="dialog-detail")
                else:
                    yield Static(
                        Text("No command runs: only the journal and this view change."),
                        id="preview",
                        classes="dialog-detail dim",
                    )

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class LinesDialog(ModalScreen[None]):
    """Lines to read whole (an event log entry's), wrapped; escape or enter closes."""

    DEFAULT_CSS = DIALOG_CSS
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,enter", "close", "Close")]

    def __init__(self, title: str, lines: Sequence[str]) -> None:
        super().__init__()
        self.title_text = title
        self.lines = [plain(line) for line in lines]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static(Text("escape closes", style="dim"), classes="dialog-buttons")
            with VerticalScroll(classes="dialog-body"):
                yield Static(_text(self.title_text), classes="dialog-title")
                # One entry a line, each wrapped; a blank line between them keeps them apart.
                yield Static(Text("\n\n".join(self.lines)), id="lines", classes="dialog-detail")

    def action_close(self) -> None:
        self.dismiss(None)
