"""The interface between a source (one host's stream) and the monitor that owns its state.

Sources only report what they see; the monitor decides what it means. Keeping this a small
protocol lets SSH, local subprocess and in-memory test sources share one monitor.
"""

from __future__ import annotations

import abc
import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Protocol

from gputui.collect.protocol import Refused
from gputui.core.model import AgentMessage, HostState
from gputui.core.text import plain

#: Writes a line to the agent's stdin; False when it could not be written (the channel is
#: closing, or full).
AgentSend = Callable[[bytes], bool]


class HostFeed(Protocol):
    """What a source calls as things happen on its host."""

    name: str

    def set_state(self, state: HostState, reason: str = "") -> None: ...

    def stream_started(self) -> None:
        """A new agent stream begins: silence and bad lines are counted from now."""
        ...

    def stream_ended(self, reason: str) -> None:
        """The stream ended for `reason`; the host shows it until a stream works again (an
        error line the agent sent before it ended, "no GPU", says more and is kept)."""
        ...

    def retrying(self, attempt: int, phase: str) -> None:
        """A reconnect is under way (`attempt` since the last good stream), now at `phase`;
        the last failure stays visible beside it."""
        ...

    def on_line(self, line: bytes) -> None: ...

    def on_message(self, message: AgentMessage | Refused) -> None:
        """A message built in this process rather than read as a line (nvidia-smi's output
        mapped by the collector), already typed by protocol.convert_message(); a refused one
        is counted as a bad line would be."""
        ...

    def on_too_long(self, length: int) -> None: ...

    def silent_for(self) -> float:
        """Seconds since the last line arrived on the current stream."""
        ...

    def expected_interval(self) -> float:
        """The sample interval the host streams at, in seconds."""
        ...

    def stream_problem(self) -> str | None:
        """Why the current stream cannot be understood, once that has lasted long enough to
        give up on it (or at once for another protocol version); None while it is fine."""
        ...

    def stream_was_healthy(self) -> bool:
        """The current stream delivered samples long enough to count as a success: the
        reconnect backoff starts over only then, so an agent that fails at once (no GPU, a
        crash after its hello) is retried ever more slowly, not every second."""
        ...

    def agent_channel(self, send: AgentSend | None) -> None:
        """How to write a request to the current stream's agent (collect/watch.py), from its
        start; None when the stream ended, or when it cannot take requests (nvidia-smi's)."""
        ...


class Source(abc.ABC):
    """One host's stream: connects, runs the agent, reconnects, until cancelled."""

    name: str

    @abc.abstractmethod
    async def run(self, feed: HostFeed) -> None:
        """Stream forever; returns only when cancelled.

        A failure of any stage (connect, login, starting the agent, sending it, reading it)
        ends as `feed.stream_ended(reason)` and a retry after the backoff; the monitor still
        guards against an exception that escapes (FleetMonitor.supervise)."""


class Backoff:
    """Capped exponential backoff with "equal jitter": a delay drawn from [ceiling/2, ceiling].

    Jitter spreads the reconnects of a fleet that lost its network at the same moment,
    so sshd's MaxStartups is not hit by a synchronised storm.
    """

    def __init__(
        self, initial_s: float = 1.0, cap_s: float = 60.0, rng: random.Random | None = None
    ) -> None:
        self.initial_s = initial_s
        self.cap_s = cap_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.initial_s * (2**self.attempt))
        self.attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


async def retry_streams(
    feed: HostFeed, backoff: Backoff, attempt: Callable[[HostFeed], Awaitable[str]]
) -> None:
    """Run `attempt` (one stream, to its end: why it ended) again and again, with `backoff`
    between tries; any exception it lets out is the host's reason, never the task's end."""
    while True:
        try:
            reason = await attempt(feed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any surprise is this host's reason
            reason = f"collector error: {type(exc).__name__}: {plain(str(exc), 200)}"
        if feed.stream_was_healthy():
            backoff.reset()
        feed.stream_ended(reason)
        await asyncio.sleep(backoff.next_delay())
