"""Pacing of full garbage collections."""

from __future__ import annotations

import gc

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
