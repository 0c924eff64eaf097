"""The app's acyclic caches and pacing of full garbage collections."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.segment import Segment
from rich.style import Style
from textual.cache import LRUCache
from textual.strip import Strip

from gputui.tui.acyclic import (
    AcyclicLRUCache,
    _original_crop_extend,
    _original_divide,
    patch_strip_self_caching,
)
from gputui.tui.gc_pacing import NEVER, GcPacer


@pytest.fixture
def no_auto_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.integers(0, 12), st.integers()),
        st.tuples(st.just("get"), st.integers(0, 12), st.none()),
        st.tuples(st.just("getitem"), st.integers(0, 12), st.none()),
        st.tuples(st.just("contains"), st.integers(0, 12), st.none()),
        st.tuples(st.just("discard"), st.integers(0, 12), st.none()),
        st.tuples(st.just("clear"), st.none(), st.none()),
    ),
    max_size=80,
)


@given(st.integers(1, 6), operations)
def test_acyclic_lru_cache_answers_as_textuals(
    maxsize: int, ops: list[tuple[str, int | None, int | None]]
) -> None:
    ours: LRUCache[int, int] = AcyclicLRUCache(maxsize)
    theirs: LRUCache[int, int] = LRUCache(maxsize)
    for op, key, value in ops:
        if op == "set":
            assert key is not None and value is not None
            ours[key] = value
            theirs[key] = value
        elif op == "get":
            assert ours.get(key, -1) == theirs.get(key, -1)  # type: ignore[arg-type]
        elif op == "getitem":
            results = []
            for cache in (ours, theirs):
                try:
                    results.append(cache[key])  # type: ignore[index]
                except KeyError:
                    results.append("missing")
            assert results[0] == results[1]
        elif op == "contains":
            assert (key in ours) == (key in theirs)
        elif op == "discard":
            ours.discard(key)  # type: ignore[arg-type]
            theirs.discard(key)  # type: ignore[arg-type]
        else:
            ours.clear()
            theirs.clear()
        assert len(ours) == len(theirs) and bool(ours) == bool(theirs)
        assert sorted(ours.keys()) == sorted(theirs.keys())
    assert (ours.hits, ours.misses) == (theirs.hits, theirs.misses)


def test_acyclic_lru_cache_leaves_nothing_for_the_cyclic_gc(no_auto_gc: None) -> None:
    for maxsize in (1, 4, 100):
        cache: LRUCache[int, list[int]] = AcyclicLRUCache(maxsize)
        for i in range(300):
            cache[i] = [i]
            cache.get(i // 2)
            if i % 50 == 0:
                cache.clear()
        cache.clear()
        del cache
    assert gc.collect() == 0


def strips() -> st.SearchStrategy[Strip]:
    words = st.lists(st.text("abcé漢 ", min_size=1, max_size=6), min_size=1, max_size=4)
    return words.map(
        lambda ws: Strip([Segment(w, Style(bold=i % 2 == 0)) for i, w in enumerate(ws)])
    )


@given(strips(), st.lists(st.integers(0, 30), max_size=4), st.integers(0, 30), st.integers(0, 30))
def test_patched_strip_methods_return_what_the_originals_return(
    strip: Strip, cuts: list[int], start: int, end: int
) -> None:
    patch_strip_self_caching()
    fresh = Strip(list(strip), strip.cell_length)  # no cached results from another call
    for c in (sorted(cuts), [strip.cell_length], [*sorted(cuts), strip.cell_length]):
        assert [list(s) for s in fresh.divide(c)] == [
            list(s) for s in _original_divide(Strip(list(strip), strip.cell_length), c)
        ]
    for s, e in ((start, end), (0, strip.cell_length)):
        if s <= e:
            ours = fresh.crop_extend(s, e, None)
            theirs = _original_crop_extend(Strip(list(strip), strip.cell_length), s, e, None)
            assert list(ours) == list(theirs) and ours.cell_length == theirs.cell_length


def test_strips_drawn_whole_are_freed_without_the_cyclic_gc(no_auto_gc: None) -> None:
    patch_strip_self_caching()
    for i in range(200):
        strip = Strip([Segment(f"line {i}")])
        assert strip.divide([strip.cell_length]) == [strip]
        assert strip.crop_extend(0, strip.cell_length, None) is strip
        del strip
    assert gc.collect() == 0


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_gc_pacer_collects_after_a_tick_when_due_and_not_while_typing() -> None:
    clock, collected = Clock(), []
    pacer = GcPacer(
        every_s=10, quiet_s=1, force_s=30, clock=clock, collect=lambda: collected.append(clock.t)
    )
    saved = gc.get_threshold()
    pacer.start()
    try:
        assert gc.get_threshold() == (saved[0], saved[1], NEVER)
        clock.t += 5
        pacer.after_tick()
        assert collected == []  # not due yet
        clock.t += 5
        pacer.input_seen()
        clock.t += 0.5
        pacer.after_tick()
        assert collected == []  # due, but a key came in half a second ago
        clock.t += 1
        pacer.after_tick()
        assert collected == [111.5]
        for _ in range(31):  # an operator typing without a pause: forced after 30 s
            clock.t += 1
            pacer.input_seen()
            pacer.after_tick()
        assert collected == [111.5, 141.5] and pacer.collections == 2
        assert len(pacer.pauses_ms) == 2
    finally:
        pacer.stop()
    assert gc.get_threshold() == saved
    pacer.after_tick()  # stopped: never collects
    assert pacer.collections == 2
