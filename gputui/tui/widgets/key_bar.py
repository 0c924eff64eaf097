"""The footer: the focused chain's shown key bindings as one clickable line.

Textual's Footer mounts a widget per key and restyles all of them whenever focus moves or a
screen opens, which at this app's size costs tens of milliseconds per key press. One line of
text says the same, and a click on a key presses it.
"""

from __future__ import annotations

from textual.binding import ActiveBinding
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Static


class KeyBar(Static):
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        background: $footer-background;
        color: $footer-description-foreground;
    }
    """

    _shown: tuple[object, ...] | None = None

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._changed)
        self._show_keys()

    def _changed(self, screen: Screen[object]) -> None:
        if screen is self.screen:
            self._show_keys()

    def _show_keys(self) -> None:
        app = self.app
        key_style = "bold $footer-key-foreground on $footer-key-background"
        shown: list[tuple[str, ActiveBinding]] = []
        seen: set[str] = set()
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            if not binding.show or binding.action in seen or key == app.COMMAND_PALETTE_BINDING:
                continue
            seen.add(binding.action)
            shown.append((key, active))
        keys = tuple((key, active.binding.description, active.enabled) for key, active in shown)
        if keys == self._shown:
            # Bindings are refreshed after every focus move and every screen opened, mostly
            # to the same keys: an update is a layout and a redraw an update later, which
            # held the host screen's answer back by a frame.
            return
        self._shown = keys
        parts: list[Content] = []
        for key, active in shown:
            binding = active.binding
            label = Content.styled(f" {app.get_key_display(binding)} ", key_style)
            text = Content(f"{binding.description} ")
            part = Content.assemble(label, text)
            if not active.enabled:
                part = part.stylize("dim")
            parts.append(part.stylize(f"@click=press({key!r})"))
        if app.ENABLE_COMMAND_PALETTE:
            parts.append(
                Content.assemble(Content.styled(" ^p ", key_style), "palette ").stylize(
                    "@click=press('ctrl+p')"
                )
            )
        self.update(Content("").join(parts))

    def action_press(self, key: str) -> None:
        self.app.simulate_key(key)
