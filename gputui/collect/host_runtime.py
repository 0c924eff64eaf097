"""One host's live state inside the monitor: decoding, verdicts, history, state changes."""

from __future__ import annotations

import time
from collections.abc import Callable
from operator import attrgetter
from typing import TYPE_CHECKING

from gputui.collect.feed import AgentSend
from gputui.collect.protocol import Refused, StreamDecoder, version_mismatch
from gputui.collect.watch import lists_processes, watch_line, with_processes
from gputui.core.health import HostHealth, Thresholds
from gputui.core.model import (
    UNKNOWN_VERDICT,
    AgentError,
    AgentMessage,
    Event,
    FleetEvent,
    Hello,
    HostSnapshot,
    HostState,
    HostVerdict,
    Level,
    Sample,
)
from gputui.core.text import plain
from gputui.core.words import adding, counted
from gputui.core.xid import xid_words

if TYPE_CHECKING:
    from gputui.collect.columns import FleetColumns, HostLayout
    from gputui.collect.history import HostHistory

STALE_AFTER_INTERVALS = 3
# A stream whose lines have not been understood for this many intervals is given up on: every
# line garbage, another protocol version, or samples whose values are all implausible.
GIVE_UP_AFTER_INTERVALS = 10
# A stream that delivered this many good samples counts as a success: the backoff starts over.
HEALTHY_AFTER_SAMPLES = 10
# The agent's fatal errors that mean "this host has no GPU gputui can read", not a fault of the
# connection: the host shows `no-gpu` with the agent's words.
NO_GPU_CODES = frozenset({"no_gpu", "no_backend", "nvml_init_failed", "smi_not_found"})
SMI_REASON = "nvidia-smi fallback: no pushed XID events, fewer signals"
# What each pushed event says of its GPU, before the agent's own words (when they add any).
_EVENT_WORDS = {
    "gpu_lost": "is lost",
    "reset_required": "needs a GPU reset",
    "ecc_dbe": "double-bit ECC error",
}
CORE_SIGNALS = (
    ("util_pct", "utilisation"),
    ("temp_c", "temperature"),
    ("power_w", "power"),
    ("mem_used_mib", "memory"),
)
_core_signals_of = attrgetter(*(field for field, _ in CORE_SIGNALS))


def missing_signals(sample: Sample) -> str:
    """The core fast signals that GPUs in good standing did not report, e.g. "power (GPU0-7)".

    A GPU that is lost or needs a reset is judged by the health rules, not counted here.
    """
    gaps: dict[str, list[int]] = {}
    for r in sample.gpus:
        if r.status != "ok" or None not in _core_signals_of(r):
            continue  # the usual case, in one C call
        for field, words in CORE_SIGNALS:
            if getattr(r, field) is None:
                gaps.setdefault(words, []).append(r.index)
    return "; ".join(f"{w} (GPU{','.join(map(str, idx))})" for w, idx in gaps.items())


class HostRuntime:
    """Implements the sources' HostFeed; the monitor reads its snapshot once per tick."""

    def __init__(
        self,
        name: str,
        *,
        interval_s: float,
        labels: dict[str, str] | None = None,
        spare: bool = False,
        thresholds: Thresholds | None = None,
        history_len: int = 300,
        emit: Callable[[FleetEvent, bool], None],
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        columns: FleetColumns | None = None,
    ) -> None:
        self.name = name
        self.interval_s = interval_s
        self.labels = labels or {}
        self.spare = spare
        self.in_place_of: str | None = None  # a spare in service: the node it replaces
        self.history_len = history_len
        self.health = HostHealth(thresholds)
        self.decoder = StreamDecoder()
        self.state = HostState.CONNECTING
        self.state_reason = "starting"
        self.reason_since = clock()  # when the state or its reason last changed
        self.hello: Hello | None = None
        self.sample: Sample | None = None
        self.sample_t: float | None = None
        self.slow_sample: Sample | None = None
        self.slow_sample_t: float | None = None
        self.processes_t: float | None = None  # when the slow sample's process lists arrived
        # A screen shows this host's processes: its agent lists them in every sample.
        self.processes_watched = False
        self._agent_send: AgentSend | None = None  # the current stream's way to its agent
        self._agent_said_hello = False  # requests wait for the hello (collect/watch.py)
        self.history: HostHistory | None = None
        self.verdict = HostVerdict(host=UNKNOWN_VERDICT)
        self.marked_failed = False
        self.answered = False  # sampled once, or failed once: what a one-shot report waits for
        self._emit = emit
        self._clock = clock
        self._mono = monotonic
        self._last_line_mono: float | None = None
        self._stream_start_mono = monotonic()
        self._understood_mono = self._stream_start_mono  # last hello or good sample
        self._bad_base = 0  # decoder.stats.bad when the current stream started
        self._stream_first_problem = ""
        self._wrong_base = 0  # decoder.stats.wrong_version when the current stream started
        self._stream_samples = 0
        self._stream_hello = False
        self._stream_fatal: tuple[HostState, str] | None = None  # the agent's own last word
        self._last_failure = ""  # why the last stream ended, shown while reconnecting
        self._snapshot: HostSnapshot | None = None
        self._reported_bad = 0
        self._missing = ""  # core signals absent from the last sample, in words
        # The monitor's columns: samples are judged there in batches, and the history ring is a
        # view onto the fleet's (collect/columns.py). None: each sample is judged as it comes.
        self._columns = columns if history_len > 0 else None
        self._layout: HostLayout | None = None

    # -- HostFeed ---------------------------------------------------------------------------

    def set_state(self, state: HostState, reason: str = "") -> None:
        if state is self.state and reason == self.state_reason:
            return
        old = self.state
        if state in (HostState.UNREACHABLE, HostState.NO_GPU):
            self.answered = True
        self.state = state
        self.state_reason = reason
        self.reason_since = self._clock()
        self._snapshot = None
        if state is not old:
            worse = state in (HostState.UNREACHABLE, HostState.STALE, HostState.NO_GPU)
            text = f"{old.value} -> {state.value}" + (f": {reason}" if reason else "")
            self._emit(
                FleetEvent(
                    t=self._clock(),
                    host=self.name,
                    kind="state",
                    text=text,
                    level=Level.WARN if worse else Level.OK,
                ),
                worse,  # a host lost from view is shown at once, not at the next tick
            )

    def stream_started(self) -> None:
        now = self._mono()
        self._stream_start_mono = self._understood_mono = now
        self._last_line_mono = None
        self._bad_base = self.decoder.stats.bad
        self._wrong_base = self.decoder.stats.wrong_version
        self._stream_first_problem = ""
        self._stream_samples = 0
        self._stream_hello = False
        self._stream_fatal = None
        self._agent_said_hello = False

    def agent_channel(self, send: AgentSend | None) -> None:
        self._agent_send = send
        self._agent_said_hello = False

    def watch_processes(self, on: bool) -> None:
        """List this host's processes in every sample (a screen shows them), or only in the
        slow ones; the agent is told now, or at its hello when it is starting."""
        if on == self.processes_watched:
            return
        self.processes_watched = on
        if self._agent_said_hello:
            self._tell_agent()

    def _tell_agent(self) -> None:
        send = self._agent_send
        if send is not None:
            send(watch_line(self.processes_watched))

    def stream_ended(self, reason: str) -> None:
        state, why = self._stream_fatal or (HostState.UNREACHABLE, reason)
        self._stream_fatal = None
        self._last_failure = why
        self.set_state(state, why)

    def retrying(self, attempt: int, phase: str) -> None:
        if not self._last_failure or self.state in (HostState.STREAMING, HostState.DEGRADED):
            self.set_state(HostState.CONNECTING, phase)
            return
        # The host stays in the state its last failure put it in: it is not reachable until a
        # stream works again, and the operator keeps reading why.
        self.set_state(
            self.state, f"{self._last_failure}; reconnecting, attempt {attempt}: {phase}"
        )

    def stream_problem(self) -> str | None:
        stats = self.decoder.stats
        bad = stats.bad - self._bad_base
        if not bad:
            return None
        understood = self._stream_samples > 0 or self._stream_hello
        wrong = stats.wrong_version > self._wrong_base
        if wrong and stats.other_version is not None and not understood:
            return version_mismatch(stats.other_version)  # nothing else will come of it
        waited = self._mono() - self._understood_mono
        limit = GIVE_UP_AFTER_INTERVALS * self.expected_interval()
        if waited < limit:
            return None
        return (
            f"protocol error: {bad} line{'s' if bad != 1 else ''} not understood in "
            f"{waited:.0f} s; first: {self._stream_first_problem}"
        )

    def stream_was_healthy(self) -> bool:
        return self._stream_samples >= HEALTHY_AFTER_SAMPLES

    def on_line(self, line: bytes) -> None:
        self._last_line_mono = self._mono()
        self._dispatch(self.decoder.decode(line))

    def on_message(self, message: AgentMessage | Refused) -> None:
        self._last_line_mono = self._mono()
        self._dispatch(self.decoder.accept(message))

    def _dispatch(self, msg: AgentMessage | None) -> None:
        if msg is None:
            self._note_bad_lines()
        elif isinstance(msg, Sample):
            self._on_sample(msg)
        elif isinstance(msg, Event):
            self._on_event(msg)
        elif isinstance(msg, Hello):
            self._on_hello(msg)
        elif isinstance(msg, AgentError):
            self._on_error(msg)

    def on_too_long(self, length: int) -> None:
        self._last_line_mono = self._mono()
        self.decoder.too_long(length)
        self._note_bad_lines()

    def silent_for(self) -> float:
        last = self._last_line_mono if self._last_line_mono is not None else self._stream_start_mono
        return self._mono() - last

    def expected_interval(self) -> float:
        return self.hello.interval_s if self.hello is not None else self.interval_s

    # -- messages ---------------------------------------------------------------------------

    def _on_hello(self, hello: Hello) -> None:
        self.flush()  # samples of the previous hello are judged under it
        same_gpus = self.hello is not None and [g.uuid for g in self.hello.gpus] == [
            g.uuid for g in hello.gpus
        ]
        self.hello = hello
        self._stream_hello = True
        self._understood_mono = self._mono()
        self._agent_said_hello = True
        if self.processes_watched:  # a new agent lists them in slow samples only
            self._tell_agent()
        if self.history_len > 0 and (not same_gpus or self.history is None):
            if self._columns is not None:
                self.history = self._columns.history_for(self.history, hello.gpus)
            else:
                # Imported here: a monitor that keeps no history (a one-shot report) never
                # loads numpy, which the rings are made of.
                from gputui.collect.history import HostHistory

                self.history = HostHistory(hello.gpus, self.history_len)
        if self._columns is not None and self.history is not None:
            self._layout = self._columns.layout(self, hello, self.history)
        if not hello.gpus:
            self._stream_fatal = (HostState.NO_GPU, "no GPU: the agent found none on the host")
            self.set_state(*self._stream_fatal)
        elif self.state in (HostState.STREAMING, HostState.DEGRADED, HostState.STALE):
            self._set_streaming_state()
        else:
            # Streaming begins with the first good sample: a hello followed only by samples
            # that cannot be read must neither show the host as streaming nor hide why its
            # last stream failed.
            waiting = "agent said hello, waiting for the first sample"
            if self.state is HostState.CONNECTING or not self._last_failure:
                self.set_state(HostState.CONNECTING, waiting)
            else:
                self.set_state(self.state, f"{self._last_failure}; reconnecting: {waiting}")
        self._snapshot = None

    def _set_streaming_state(self) -> None:
        """Streaming, or degraded when signals an operator relies on are missing."""
        if self.hello is not None and self.hello.backend == "smi":
            self.set_state(HostState.DEGRADED, SMI_REASON)
        elif self.hello is not None and self.hello.unavailable:
            gaps = ", ".join(self.hello.unavailable)
            more = f"; missing signals: {self._missing}" if self._missing else ""
            self.set_state(HostState.DEGRADED, f"not available from this source: {gaps}{more}")
        elif self._missing:
            self.set_state(HostState.DEGRADED, f"missing signals: {self._missing}")
        else:
            self.set_state(HostState.STREAMING)

    def _on_sample(self, sample: Sample) -> None:
        if self.hello is None:
            return  # a sample before hello cannot be interpreted; the agent always says hello
        self._understood_mono = self._mono()
        self._stream_samples += 1
        if not self.hello.gpus:
            return  # nothing to judge: the host stays `no-gpu`
        now = self._clock()
        self.sample = sample
        self.sample_t = now
        if sample.slow:
            self.slow_sample, self.slow_sample_t = sample, now
            self.processes_t = now
        elif self.slow_sample is not None and lists_processes(sample):
            # Listed at a screen's request (collect/watch.py): the views read them with the
            # slow signals, which this sample does not carry.
            self.slow_sample = with_processes(self.slow_sample, sample)
            self.processes_t = now
        self.answered = True
        missing = missing_signals(sample)
        if missing != self._missing or self.state not in (HostState.STREAMING, HostState.DEGRADED):
            self._missing = missing
            self._set_streaming_state()
        layout = self._layout
        if self._columns is not None and layout is not None:
            # Judged with the other hosts' samples at the next flush (within BATCH_S).
            self._columns.add(layout, self.hello, sample, now)
            return
        if self.history is not None:
            self.history.append(now, sample)
        self._apply_verdict(self.health.evaluate(self.hello, sample, now), now)

    def flush(self) -> None:
        """Judge the samples waiting in the monitor's batch now (every host's: one batch)."""
        if self._columns is not None:
            self._columns.flush()

    def apply_verdict(self, verdict: HostVerdict, now: float) -> None:
        """The batch's verdict of this host's sample (collect/columns.py)."""
        self._apply_verdict(verdict, now)

    def judging_failed(self, exc: Exception) -> None:
        """The rules failed on a sample of this host: shown on the host, the fleet goes on."""
        self._emit(
            FleetEvent(
                t=self._clock(),
                host=self.name,
                kind="collector_error",
                text=f"collector error judging a sample: {type(exc).__name__}: "
                f"{plain(str(exc), 200)}",
                level=Level.WARN,
            ),
            True,
        )

    def _on_event(self, event: Event) -> None:
        self.flush()  # the samples before the event are judged before it, as they came
        now = self._clock()
        self.health.observe_event(event, now)
        level = Level.WARN
        if self.hello is not None and self.sample is not None:
            self._apply_verdict(self.health.evaluate(self.hello, self.sample, now), now)
            if event.gpu is not None and event.gpu in self.verdict.gpus:
                level = self.verdict.gpus[event.gpu].level
        gpu = f"GPU{event.gpu} " if event.gpu is not None else ""
        if event.kind == "xid" and event.xid is not None:
            # NVML's own text only restates the number: the catalogue says what it is.
            text = f"{gpu}XID {event.xid}: {xid_words(event.xid, event.text)}"
        elif event.kind in _EVENT_WORDS:
            subject = f"GPU{event.gpu}" if event.gpu is not None else "a GPU"
            # The agent's "GPU 3: GPU is lost" adds nothing to "GPU3 is lost".
            text = adding(f"{subject} {_EVENT_WORDS[event.kind]}", event.text)
        else:
            text = f"{gpu}{event.kind.replace('_', ' ')}: {event.text}"
        self._emit(
            FleetEvent(
                t=now,
                host=self.name,
                kind=event.kind,
                text=text.strip(),
                level=level,
                gpu=event.gpu,
                uuid=event.uuid,
                xid=event.xid,
            ),
            True,  # pushed events are published at once, not at the next tick
        )

    def _on_error(self, err: AgentError) -> None:
        self._emit(
            FleetEvent(
                t=self._clock(),
                host=self.name,
                kind="agent_error",
                text=f"{err.code}: {err.text}",
                level=Level.WARN,
                gpu=err.gpu,
            ),
            False,
        )
        if err.fatal:
            if err.code in NO_GPU_CODES:
                why = err.text if err.text.lower().startswith("no gpu") else f"no GPU: {err.text}"
                self._stream_fatal = (HostState.NO_GPU, why)
            else:
                self._stream_fatal = (
                    HostState.UNREACHABLE,
                    f"agent error {err.code}: {err.text}",
                )
            self.set_state(*self._stream_fatal)

    def _apply_verdict(self, verdict: HostVerdict, now: float) -> None:
        old = self.verdict.host
        self.verdict = verdict
        self._snapshot = None
        new = verdict.host
        if new.level != old.level and not (old.level is Level.UNKNOWN and new.level is Level.OK):
            worst = new.worst
            text = f"{old.level.label} -> {new.level.label}"
            if worst is not None and new.level > Level.OK:
                text += f": {worst.text}"
            self._emit(
                FleetEvent(
                    t=now,
                    host=self.name,
                    kind="verdict",
                    text=text,
                    level=new.level,
                    gpu=worst.gpu if worst is not None else None,
                ),
                # Any worsening to warn or beyond is shown at once (the monitor spaces urgent
                # publishes 50 ms apart); an improvement waits for the tick.
                new.level > old.level and new.level >= Level.WARN,
            )

    def _note_bad_lines(self) -> None:
        stats = self.decoder.stats
        self._snapshot = None
        if not self._stream_first_problem:
            self._stream_first_problem = stats.last_problem
        # One log line per burst of bad input, not one per line.
        if stats.bad in (1, 10, 100, 1000) or stats.bad % 10000 == 0:
            self._emit(
                FleetEvent(
                    t=self._clock(),
                    host=self.name,
                    kind="protocol",
                    text=f"{counted(stats.bad, 'bad line')} from the agent; "
                    f"last: {stats.last_problem}",
                    level=Level.WARN,
                ),
                False,
            )

    # -- per tick ---------------------------------------------------------------------------

    def check_stale(self) -> None:
        if self.state not in (HostState.STREAMING, HostState.DEGRADED) or self.sample_t is None:
            return
        age = self._clock() - self.sample_t
        limit = STALE_AFTER_INTERVALS * self.expected_interval()
        if age > limit:
            self.set_state(HostState.STALE, f"no sample for {age:.0f} s")

    def clear(self, gpu: int | None = None) -> None:
        """Operator clears latched reasons (after a GPU reset or a repair)."""
        self.flush()
        self.health.clear(gpu)
        if self.hello is not None and self.sample is not None:
            now = self._clock()
            self._apply_verdict(self.health.evaluate(self.hello, self.sample, now), now)

    def set_marked_failed(self, marked: bool) -> None:
        if marked != self.marked_failed:
            self.marked_failed = marked
            self._snapshot = None

    def set_in_place_of(self, node: str | None) -> None:
        """This spare was brought into service in place of `node` (None: not in service)."""
        if node != self.in_place_of:
            self.in_place_of = node
            self._snapshot = None

    def snapshot(self) -> HostSnapshot:
        snap = self._snapshot
        if snap is None:
            snap = HostSnapshot(
                name=self.name,
                state=self.state,
                state_reason=self.state_reason,
                reason_since=self.reason_since,
                labels=self.labels,
                hello=self.hello,
                sample=self.sample,
                sample_t=self.sample_t,
                slow_sample=self.slow_sample,
                slow_sample_t=self.slow_sample_t,
                processes_t=self.processes_t,
                backend=self.hello.backend if self.hello is not None else None,
                spare=self.spare,
                decode_errors=self.decoder.stats.bad,
                verdict=self.verdict,
                marked_failed=self.marked_failed,
                in_place_of=self.in_place_of,
            )
            self._snapshot = snap
        return snap
