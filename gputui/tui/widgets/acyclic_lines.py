"""Lines handed to Textual's compositor that the cyclic garbage collector never has to free.

Textual's `Strip.divide` caches its result on the strip, including when the result is the strip
itself (one cut at the strip's full width), and the compositor divides every line it draws:
so every line drawn whole refers to itself and is freed only by a full collection. At 1,000
hosts the fleet table, the GPU grid and the host screen redraw hundreds of lines a tick, and
those cycles made each paced full collection free ~100,000 objects (130-330 ms against ~35 ms:
docs/benchmarks.md).

`acyclic(strips)` gives the compositor a `LineStrip` copy of each line instead: a `Strip` whose
`divide` and `crop_extend` answer the same as Textual's but never store the strip inside
itself. Textual's own strips (its render cache's lines) are then never divided, hold no
reference to themselves, and go when their last reference does. Widgets opt in by overriding
the public `Widget.render_lines`; Textual's classes are not changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from rich.style import Style
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget


class LineStrip(Strip):
    """A `Strip` that never caches itself (see the module's docstring)."""

    __slots__ = ()

    def divide(self, cuts: Iterable[int]) -> Sequence[Strip]:
        cuts = list(cuts)
        if [cut for cut in cuts if cut <= self.cell_length] == [self.cell_length]:
            return [self]  # Strip.divide's answer, without a cache entry holding the strip
        return super().divide(cuts)

    def crop_extend(self, start: int, end: int, style: Style | None) -> Strip:
        if start <= 0 and end == self.cell_length:
            return self  # already that width: Strip.crop_extend's answer, uncached
        return super().crop_extend(start, end, style)


def acyclic(strips: Iterable[Strip]) -> list[Strip]:
    """Each line as a LineStrip: the same segments and width."""
    return [
        strip if isinstance(strip, LineStrip) else LineStrip(list(strip), strip.cell_length)
        for strip in strips
    ]


if TYPE_CHECKING:
    _Mixin = Widget
else:
    _Mixin = object  # a plain mixin: no place in the widget's CSS type names or defaults


class AcyclicLines(_Mixin):
    """Put first among a widget's bases: its lines reach the compositor as LineStrips."""

    def render_lines(self, crop: Region) -> list[Strip]:
        return acyclic(super().render_lines(crop))
