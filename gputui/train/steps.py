"""Step timing that costs the training step almost nothing.

The step only adds to running totals (a clock read and a few additions, well under a
microsecond); the background thread reads the totals and takes the differences since its last
look, so the step never locks, allocates or waits. A gap the loop asks to leave out (an epoch's
end, a validation pass) is not counted as a step's time.
"""

from __future__ import annotations


class StepClock:
    """Running totals of the training loop's steps, written by the loop only."""

    __slots__ = ("_last", "compute_n", "compute_s", "steps", "timed", "timed_s")

    def __init__(self) -> None:
        self.steps = 0  # steps ended
        self.timed = 0  # steps whose wall time is counted (not the first after a pause)
        self.timed_s = 0.0  # their wall time, summed
        self.compute_n = 0  # steps whose own work was timed
        self.compute_s = 0.0
        self._last: float | None = None

    def tick(self, now: float) -> int:
        """A step ended at `now` (perf_counter seconds); the steps ended so far."""
        last = self._last
        if last is not None:
            self.timed_s += now - last
            self.timed += 1
        self._last = now
        self.steps += 1
        return self.steps

    def pause(self) -> None:
        """The time until the next step's end is not a step's (an epoch's end, validation)."""
        self._last = None

    def compute(self, seconds: float) -> None:
        """The step's own work took `seconds` (waits for other ranks left out)."""
        self.compute_s += seconds
        self.compute_n += 1


class Window:
    """The means of the steps since the previous call, read from a StepClock by one reader."""

    def __init__(self) -> None:
        self._seen = (0, 0.0, 0, 0.0)
        self.step_time_s: float | None = None
        self.compute_s: float | None = None

    def update(self, clock: StepClock) -> None:
        # Read each total once: the loop may add to them meanwhile, and a figure one step
        # behind its pair only moves a mean by one step's share.
        now = (clock.timed, clock.timed_s, clock.compute_n, clock.compute_s)
        n, s, cn, cs = (a - b for a, b in zip(now, self._seen, strict=True))
        if n > 0 and s > 0:
            self.step_time_s = s / n
        if cn > 0 and cs > 0:
            self.compute_s = cs / cn
        self._seen = now
