"""One hang watchdog for every stream: a registry swept by a single timer of the event loop.

A stream's source registers it while it runs and awaits only its end; the sweep ends the
streams that went silent for too long or that cannot be understood, each with the reason it
would have had from a watchdog of its own. Before, every host's source woke on its own timer
(a quarter of its hang limit, or every interval for nvidia-smi): at 1,000 hosts a profile put
those wakes at about 9% of the collector's CPU; one pass costs about a microsecond a stream
(benchmarks/watchdog_sweep.py, docs/benchmarks.md §1). A plain loop, not a deadline array:
the array's pass is cheaper, but keeping it current costs a store on every line and the
stream problems still need a look at each stream.

The sweep comes as often as the most demanding stream needs it, never less often than that
stream's own timer came before: nvidia-smi streams every interval (their output is polled
from the sweep), agent streams every quarter of their hang limit, streams watched only for
lines they cannot understand every PROBLEM_CHECK_S. Between sweeps nothing wakes.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from gputui.collect.feed import HostFeed

# A stream with no hang limit (a local agent, whose pipe ends when it does) is still checked
# this often for lines it cannot understand.
PROBLEM_CHECK_S = 2.5
# The sweep never comes more often than this, whatever a stream's interval: the monitor's
# fastest tick (collect/tick.py).
MIN_SWEEP_S = 0.1


class StreamCounts(Protocol):
    """What a stream has delivered so far, for the wording of a hang's reason."""

    @property
    def lines(self) -> int: ...

    @property
    def bytes(self) -> int: ...


class WatchedStream:
    """A running stream under watch; `ended` resolves with the reason when the sweep ends it.

    `done` is the stream's own end (the host closed it): a stream whose `done` is resolved is
    never judged, its source is about to unregister it. `stop` is called when the sweep ends
    the stream (it closes the channel); the source, woken by `ended`, does the rest.
    """

    __slots__ = ("counts", "done", "ended", "feed", "grace_s", "hang_after", "poll", "stop", "what")

    def __init__(
        self,
        feed: HostFeed,
        what: str,
        done: asyncio.Future[Any],
        stop: Callable[[], None],
        counts: StreamCounts | None,
        hang_after: float,
        grace_s: float,
        poll: Callable[[], None] | None,
    ) -> None:
        self.feed = feed
        self.what = what  # "agent" or "nvidia-smi", as the reasons name it
        self.done = done
        self.stop = stop
        self.counts = counts  # None: no hang limit, only lines it cannot understand
        self.hang_after = hang_after  # intervals of silence that mean hung
        self.grace_s = grace_s  # the least hang limit before the first line
        self.poll = poll
        self.ended: asyncio.Future[str] = done.get_loop().create_future()

    def step(self, interval: float) -> float:
        """How long this stream may wait for its next check: what its own timer waited."""
        if self.poll is not None:
            return interval  # nvidia-smi's partial sample is completed about every interval
        if self.counts is not None:
            return self.hang_after * interval / 4
        return PROBLEM_CHECK_S

    def verdict(self, interval: float) -> str | None:
        """Why the stream must end now, or None while it is fine (or ended by itself)."""
        if self.poll is not None:
            self.poll()
        if self.done.done():
            return None
        feed = self.feed
        problem = feed.stream_problem()
        if problem is not None:
            return f"{problem}; restarted"
        counts = self.counts
        if counts is None:
            return None
        limit = self.hang_after * interval
        if not counts.lines:
            limit = max(limit, self.grace_s)
        silent = feed.silent_for()
        if silent > limit:
            return silence_reason(self.what, counts, silent)
        return None


def silence_reason(what: str, counts: StreamCounts, silent: float) -> str:
    """The reason for a stream ended by the hang watchdog."""
    if counts.lines:
        return f"{what} stopped writing: no output for {silent:.0f} s (hung); restarted"
    if counts.bytes:
        return (
            f"{what} wrote {counts.bytes} bytes but no complete line in {silent:.0f} s; restarted"
        )
    return f"{what} wrote nothing for {silent:.0f} s; restarted"


class StreamWatchdog:
    """The registry of running streams of one event loop and the timer that sweeps it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # Insertion-ordered, O(1) to remove: a stream leaves when it ends, in any order.
        self._streams: dict[WatchedStream, None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.sweeps = 0  # how many passes were made (tests, benchmarks)

    def __len__(self) -> int:
        return len(self._streams)

    def watch(
        self,
        feed: HostFeed,
        what: str,
        done: asyncio.Future[Any],
        stop: Callable[[], None],
        *,
        counts: StreamCounts | None = None,
        hang_after: float = 0.0,
        grace_s: float = 0.0,
        poll: Callable[[], None] | None = None,
    ) -> WatchedStream:
        """Watch a stream until `unwatch` or until the sweep ends it (then it is unwatched)."""
        stream = WatchedStream(feed, what, done, stop, counts, hang_after, grace_s, poll)
        self._streams[stream] = None
        # Its first check comes no later than its own timer would have come.
        self._schedule(max(MIN_SWEEP_S, stream.step(feed.expected_interval())))
        return stream

    def unwatch(self, stream: WatchedStream) -> None:
        self._streams.pop(stream, None)
        ended = stream.ended
        if ended.done() and not ended.cancelled():
            # Marked as seen: a source cancelled as the sweep ended its stream with an error
            # never reads it, and asyncio would log "exception never retrieved" for it.
            ended.exception()
        if not self._streams and self._timer is not None:
            self._timer.cancel()  # nothing to watch: no wakes at all
            self._timer = None

    def sweep(self) -> float:
        """One pass over every stream: end those that must end. Returns how soon the next
        pass is due (the shortest step any stream needs)."""
        self.sweeps += 1
        step = float("inf")
        ending: list[tuple[WatchedStream, str | BaseException]] = []
        for stream in self._streams:
            try:
                interval = stream.feed.expected_interval()
                why = stream.verdict(interval)
                step = min(step, stream.step(interval))
            except Exception as exc:  # a bug: the host's reason, as it was in its own task
                ending.append((stream, exc))
                continue
            if why is not None:
                ending.append((stream, why))
        # Ended after the pass: ending a stream may run callbacks, never while iterating.
        for stream, outcome in ending:
            self._streams.pop(stream, None)
            _end(stream, outcome)
        return max(MIN_SWEEP_S, step)

    def _schedule(self, delay: float) -> None:
        """Have the next sweep come within `delay` seconds (sooner if one is due sooner)."""
        when = self._loop.time() + delay
        if self._timer is not None:
            if self._timer.when() <= when:
                return
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        delay = MIN_SWEEP_S
        try:
            delay = self.sweep()
        finally:  # whatever happened, the streams stay watched
            if self._streams:
                self._schedule(delay)


def either(stream: WatchedStream) -> set[asyncio.Future[Any]]:
    """What a source awaits: its stream's own end, or the watchdog ending it."""
    return {stream.done, stream.ended}


def _end(stream: WatchedStream, why: str | BaseException) -> None:
    """End a stream the sweep gave up on: close it, then wake its source with the reason (or
    the exception that judging or closing it raised, which its source lets out as before)."""
    if isinstance(why, str):
        try:
            stream.stop()
        except Exception as exc:
            why = exc
    if stream.ended.done():
        return
    if isinstance(why, BaseException):
        stream.ended.set_exception(why)
    else:
        stream.ended.set_result(why)


_WATCHDOGS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StreamWatchdog] = (
    weakref.WeakKeyDictionary()
)


def loop_watchdog() -> StreamWatchdog:
    """The running event loop's watchdog: every source of a loop shares one registry and one
    timer (a monitor, or sources run without one as in the tests)."""
    loop = asyncio.get_running_loop()
    watchdog = _WATCHDOGS.get(loop)
    if watchdog is None:
        watchdog = _WATCHDOGS[loop] = StreamWatchdog(loop)
    return watchdog
