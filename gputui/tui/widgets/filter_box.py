"""The `/` filter input: live as you type, enter keeps the filter, escape clears it."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input


class FilterBox(Input):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "clear_filter", "Clear filter")]

    class Cleared(Message):
        def __init__(self, box: FilterBox) -> None:
            super().__init__()
            self.box = box

    def action_clear_filter(self) -> None:
        self.value = ""
        self.post_message(self.Cleared(self))
