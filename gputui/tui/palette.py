"""Colours of states and metrics, taken from the active Textual theme where it has one.

Health colours follow the theme's success/warning/error so `ctrl+p` > Theme recolours the fleet
with everything else; states that are not health verdicts (no data, operator's mark) and the
metric heat scale are fixed, because themes have no slot for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.color import Color
from rich.style import Style
from textual.theme import Theme

#: Every label a host or a GPU cell can show, worst first (the default sort order).
LABELS = (
    "failed",
    "critical",
    "unreachable",
    "no-gpu",
    "stale",
    "reconnecting",
    "warn",
    "unknown",
    "connecting",
    "ok",
    "marked-failed",
)

#: The labels a colour legend names: `reconnecting` (a collector worker restarting) is drawn in
#: `stale`'s colour, which names both.
LEGEND_LABELS = tuple(label for label in LABELS if label != "reconnecting")

# Labels that are not health verdicts: the theme has no colour for them.
_FIXED = {
    "failed": "#ff3df5",
    "unknown": "#9e9e9e",
    "stale": "#9575cd",
    "reconnecting": "#9575cd",
    "unreachable": "#7a7a7a",
    "no-gpu": "#7a7a7a",
    "connecting": "#4a5160",
}
_FALLBACK = {"ok": "#4ebf71", "warn": "#ffa62b", "critical": "#e5484d", "marked-failed": "#0178d4"}

#: Heat scale for metrics, cool to hot; readable on dark and light backgrounds.
HEAT = (
    "#1b4f8a",
    "#1f7fb5",
    "#1fa3a3",
    "#4ebf71",
    "#a8c93a",
    "#f2c12e",
    "#f28c28",
    "#e5484d",
)


@dataclass(frozen=True)
class Palette:
    colors: dict[str, Color]  # by label
    heat: tuple[Color, ...]
    background: Color

    @classmethod
    def from_theme(cls, theme: Theme | None) -> Palette:
        names = dict(_FALLBACK)
        if theme is not None:
            for label, value in (
                ("ok", theme.success),
                ("warn", theme.warning),
                ("critical", theme.error),
                ("marked-failed", theme.primary),
            ):
                if value:
                    names[label] = value
        names.update(_FIXED)
        background = theme.background if theme is not None and theme.background else "#121212"
        return cls(
            colors={k: Color.parse(v) for k, v in names.items()},
            heat=tuple(Color.parse(c) for c in HEAT),
            background=Color.parse(background),
        )

    def color(self, label: str) -> Color:
        return self.colors.get(label, self.colors["unknown"])

    def chip(self, label: str) -> Style:
        """The style of a state word: bold for the serious ones, reversed for failed."""
        color = self.color(label)
        if label == "failed":
            return Style(color=color, bold=True, reverse=True)
        serious = label in ("critical", "unreachable", "marked-failed")
        return Style(color=color, bold=serious)

    def heat_color(self, fraction: float) -> Color:
        """The heat colour of a value in [0, 1] (clamped)."""
        steps = len(self.heat)
        index = int(min(max(fraction, 0.0), 1.0) * steps)
        return self.heat[min(index, steps - 1)]


DEFAULT_PALETTE = Palette.from_theme(None)
