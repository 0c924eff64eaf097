"""The footer: the focused chain's shown key bindings as one clickable line.

Textual's Footer mounts a widget per key and restyles all of them whenever focus moves or a
screen opens, which at this app's size costs tens of milliseconds per key press. One line of
text says the same, and a click on a key presses it.

The line fits its width: bindings of one `Binding.Group` share an entry (`[ ] Prev/next`);
when the padded form (` x Mark failed `) is too wide the keys close up (`x Mark failed`), and
on a terminal narrower still the command palette's entry goes first (`?` lists every key).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.content import Content
from textual.screen import Screen
from textual.widgets import Static

from gputui.tui.widgets.acyclic_lines import AcyclicLines

KEY_STYLE = "bold $footer-key-foreground on $footer-key-background"


@dataclass(frozen=True)
class KeyEntry:
    """One entry of the bar: its keys (key, shown as) and what they do."""

    keys: tuple[tuple[str, str], ...]
    description: str
    enabled: bool = True


def key_entries(screen: Screen[object]) -> tuple[KeyEntry, ...]:
    """The shown bindings of `screen`'s focused chain, each group's keys in one entry."""
    app = screen.app
    entries: list[KeyEntry] = []
    seen: set[str] = set()
    last_group: object = None
    for key, active in screen.active_bindings.items():
        binding = active.binding
        if not binding.show or binding.action in seen or key == app.COMMAND_PALETTE_BINDING:
            continue
        seen.add(binding.action)
        shown = (key, app.get_key_display(binding))
        group = binding.group
        if group is not None and group == last_group and entries:
            prev = entries[-1]
            entries[-1] = KeyEntry((*prev.keys, shown), prev.description, prev.enabled)
        else:
            description = group.description if group is not None else binding.description
            entries.append(KeyEntry((shown,), description, active.enabled))
        last_group = group
    return tuple(entries)


def _entry(entry: KeyEntry, compact: bool) -> Content:
    """` x Mark failed ` (keys padded), or compact: ` x Mark failed` (one space before).

    A click on an entry presses its key; on a group's entry, the key clicked."""
    pad = "" if compact else " "
    if len(entry.keys) == 1:
        key, shown = entry.keys[0]
        label = Content.styled(f"{pad}{shown}{pad}", KEY_STYLE)
        click = f"@click=press({key!r})"
    else:
        keys = [
            Content.styled(shown, KEY_STYLE).stylize(f"@click=press({key!r})")
            for key, shown in entry.keys
        ]
        space = Content.styled(" ", KEY_STYLE)
        label = space.join(keys)
        if not compact:
            label = Content.assemble(space, label, space)
        click = ""
    if compact:
        part = Content.assemble(" ", label, f" {entry.description}")
    else:
        part = Content.assemble(label, f"{entry.description} ")
    if click:
        part = part.stylize(click)
    return part if entry.enabled else part.stylize("dim")


def key_line(entries: tuple[KeyEntry, ...], width: int, palette: bool = True) -> Content:
    """The bar for `entries` in `width` cells: padded if it fits, else compact, else compact
    without the palette's entry (and, past that, cut at the right edge)."""
    tail = (KeyEntry((("ctrl+p", "^p"),), "palette"),) if palette else ()
    for compact, shown in ((False, entries + tail), (True, entries + tail), (True, entries)):
        line = Content("").join(_entry(e, compact) for e in shown)
        # The padded form's last space may fall off the edge.
        if line.cell_length - (0 if compact else 1) <= width:
            return line
    return line


class KeyBar(AcyclicLines, Static):
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

    def on_resize(self) -> None:
        self._show_keys()

    def _changed(self, screen: Screen[object]) -> None:
        if screen is self.screen:
            self._show_keys()

    def _show_keys(self) -> None:
        app = self.app
        entries = key_entries(self.screen)
        width = self.size.width or app.size.width  # docked across the screen
        shown = (entries, width)
        if shown == self._shown:
            # Bindings are refreshed after every focus move and every screen opened, mostly
            # to the same keys: an update is a layout and a redraw an update later, which
            # held the host screen's answer back by a frame.
            return
        self._shown = shown
        self.update(key_line(entries, width, app.ENABLE_COMMAND_PALETTE), layout=False)

    def action_press(self, key: str) -> None:
        self.app.simulate_key(key)
