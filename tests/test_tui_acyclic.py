"""Pacing of full garbage collections."""

from __future__ import annotations

import gc
import weakref

from gputui.tui.gc_pacing import NEVER, GcPacer


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


def test_gc_pacer_freezes_what_survives_and_walks_everything_every_thaw() -> None:
    clock, log = Clock(), []
    pacer = GcPacer(
        every_s=10,
        quiet_s=1,
        force_s=30,
        thaw_s=60,
        clock=clock,
        collect=lambda: log.append("collect"),
        freeze=lambda: log.append("freeze"),
        unfreeze=lambda: log.append("unfreeze"),
    )
    pacer.start()
    try:
        for _ in range(7):  # 70 s of ticks: a collection every 10 s
            clock.t += 10
            pacer.after_tick()
    finally:
        pacer.stop()
    # Each collection walks what came since the last (its survivors frozen); the sixth, 60 s
    # after the start, walks everything first.
    assert log == [
        "freeze",
        *["collect", "freeze"] * 5,
        *["unfreeze", "collect", "freeze"],
        *["collect", "freeze"],
        "unfreeze",
    ]
    assert pacer.collections == 7 and pacer.thaws == 1


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_a_cycle_that_survived_a_collection_is_freed_at_the_next_thaw() -> None:
    clock = Clock()
    pacer = GcPacer(every_s=10, quiet_s=1, force_s=30, thaw_s=60, clock=clock)
    a, b = Node(), Node()
    a.other, b.other = b, a  # alive through the first collection, then garbage
    gone = weakref.ref(a)
    pacer.start()
    try:
        clock.t += 10
        pacer.after_tick()  # a and b survive: frozen
        del a, b
        clock.t += 10
        pacer.after_tick()
        assert gone() is not None  # frozen: an ordinary collection does not walk them
        clock.t += 40
        pacer.after_tick()  # 60 s: the thaw
        assert gone() is None
    finally:
        pacer.stop()
