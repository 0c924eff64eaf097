"""Bar meters as htop and nvitop draw them: `util [█████████▍          87%]`.

htop's frame (the label, then the bar and its value in brackets) with nvitop's eighth blocks,
so a bar 30 characters long moves by 0.4% rather than 3%; the value follows the bar inside the
brackets, as nvitop writes it, and is never drawn over it.
"""

from __future__ import annotations

import math

from rich.color import Color
from rich.style import Style
from rich.text import Text

#: A cell filled by 0/8 to 8/8 of its width.
EIGHTHS = " ▏▎▍▌▋▊▉█"
#: The least bar worth drawing: below it, label and value alone.
MIN_BAR = 4


def bar_cells(fraction: float, width: int) -> str:
    """`fraction` (clamped to [0, 1]) of `width` cells in eighth blocks, padded with spaces.

    A value above zero shows at least one eighth: an idle GPU and one at 1% must differ."""
    if width <= 0:
        return ""
    if math.isnan(fraction):
        return " " * width
    eighths = round(min(max(fraction, 0.0), 1.0) * width * 8)
    if fraction > 0 and eighths == 0:
        eighths = 1
    full, part = divmod(eighths, 8)
    cells = "█" * full + (EIGHTHS[part] if part else "")
    return cells.ljust(width)


def meter(
    label: str,
    fraction: float | None,
    value: str,
    width: int,
    color: Color | None = None,
) -> Text:
    """`label [bar value]` in exactly `width` cells (fewer only when even the value does not
    fit). `fraction` None: nothing read, the bar is empty and the value says so. The bar
    stops short of the value, so the figure reads whole however full the bar."""
    head = f"{label} "
    inner = width - len(head) - 2  # the brackets
    bar = inner - len(value) - 1  # a space between the bar and the value
    if bar < MIN_BAR:  # no room for a bar: the figure alone
        return Text.assemble((head, "dim"), value[: max(width - len(head), 0)])
    cells = bar_cells(0.0 if fraction is None else fraction, bar)
    text = Text(no_wrap=True, overflow="crop")
    text.append(head, style="dim")
    text.append("[", style="bold")
    text.append(cells, style=Style(color=color) if color is not None else "")
    text.append(" ")
    text.append(value, style="bold")
    text.append("]", style="bold")
    return text
