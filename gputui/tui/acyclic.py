"""Caches that leave no reference cycles behind, so the app's garbage goes by reference count.

Objects in a reference cycle are freed only by the cyclic garbage collector, and its full
collections walk everything the app holds: at 1,000 hosts a 40-70 ms pause, every second or
two when a tick leaves thousands of cyclic objects behind. Two kinds of cycle made nearly all
of the app's cyclic garbage (found with gc.DEBUG_SAVEALL over a 1,000-host run):

- `textual.cache.LRUCache` keeps its entries in a ring of `[prev, next, key, value]` lists.
  `clear()` drops the dict but leaves the ring, and evicting from a one-entry cache leaves a
  link that points at itself: every cleared or evicted value (rendered lines, the table's
  row offsets, one tuple per row) becomes cyclic garbage. DataTable clears its caches on
  every sort, row change and cursor move. `AcyclicLRUCache` has the same interface over an
  OrderedDict (a C implementation with no cycles) and replaces DataTable's caches in
  `FleetTable`.
- `Strip.divide` and `Strip.crop_extend` cache their result on the strip even when the
  result is the strip itself (one cut at its full width; a crop to its full width), so every
  line the compositor draws whole refers to itself. `patch_strip_self_caching` makes those two
  return the strip without caching it: the same result, with no cycle. It is applied once,
  when the app is imported; tests check the results match the originals.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, KeysView, Sequence
from typing import Any, Generic, TypeVar

from rich.style import Style
from textual.cache import LRUCache
from textual.strip import Strip

K = TypeVar("K")
V = TypeVar("V")


class AcyclicLRUCache(LRUCache[K, V], Generic[K, V]):
    """`textual.cache.LRUCache`'s behaviour (size bound, least recently used out first, hit
    and miss counts) without its linked ring."""

    __slots__ = ("_entries",)

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self._entries: OrderedDict[K, V] = OrderedDict()

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def keys(self) -> KeysView[K]:
        return self._entries.keys()

    def set(self, key: K, value: V) -> None:
        entries = self._entries
        if key in entries:
            # As LRUCache: a key already present keeps its value and its place.
            return
        entries[key] = value
        if len(entries) > self.maxsize:
            entries.popitem(last=False)

    __setitem__ = set

    def get(self, key: K, default: Any = None) -> Any:
        entries = self._entries
        if key not in entries:
            self.misses += 1
            return default
        entries.move_to_end(key)
        self.hits += 1
        return entries[key]

    def __getitem__(self, key: K) -> V:
        entries = self._entries
        if key not in entries:
            self.misses += 1
            raise KeyError(key)
        entries.move_to_end(key)
        self.hits += 1
        return entries[key]

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def discard(self, key: K) -> None:
        self._entries.pop(key, None)


_original_divide = Strip.divide
_original_crop_extend = Strip.crop_extend


def _divide(self: Strip, cuts: Iterable[int]) -> Sequence[Strip]:
    cuts = list(cuts)
    length = self.cell_length
    if [cut for cut in cuts if cut <= length] == [length]:
        return [self]  # what the original returns, without caching [self] on self
    return _original_divide(self, cuts)


def _crop_extend(self: Strip, start: int, end: int, style: Style | None) -> Strip:
    if start == 0 and end == self.cell_length:
        return self  # extend to its own length and crop to all of it: the strip itself
    return _original_crop_extend(self, start, end, style)


def patch_strip_self_caching() -> None:
    """Make `Strip.divide` and `Strip.crop_extend` stop caching a strip on itself."""
    Strip.divide = _divide  # type: ignore[method-assign]
    Strip.crop_extend = _crop_extend  # type: ignore[method-assign]
