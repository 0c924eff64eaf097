"""The fleet's fast readings in columns, and samples judged in micro-batches.

Hosts hand their samples here as they arrive (`add`); every `BATCH_S`, at every tick and
before anything that must see a host's verdict (a pushed event, a new hello, the operator
clearing latches), the batch is flushed: every fast reading of every sample is gathered into one
float64 array, the health rules' quiet path runs over all of it at once
(core/quiet_columns.py), the readings go into the fleet's columns (`fast`: GPU slots x fast
fields, float32, NaN where not read) and history rings (collect/history.py) with one numpy
assignment each, and only the samples the vectorised checks do not settle are judged by the
Python rules (`HostHealth.evaluate`, as a sample always was before). A quiet verdict is the
verdict the full rules give: `HostHealth.quiet_verdict` answers only where they would.

A verdict therefore comes at most one batch period later than its sample (plus the time the
event loop takes to run the timer); a verdict that worsens is still published at once after
it (the monitor's urgent publish). Pushed events are not batched.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from gputui.collect.history import FleetRing, HostHistory
from gputui.core.health import SLOW_FIELDS
from gputui.core.model import GpuInfo, Hello, HostVerdict, Sample
from gputui.core.quiet_columns import (
    FAST_FIELDS,
    JUDGED,
    Col,
    every_quiet,
    peer_judgements,
    quiet_readings,
)
from gputui.core.thresholds import DEFAULT_THRESHOLDS, Thresholds

if TYPE_CHECKING:
    from gputui.core.health import HostHealth

#: Longest a sample waits to be judged (the monitor also flushes at every tick).
BATCH_S = 0.05
#: Batches smaller than this are judged sample by sample (the rules and one ring write each):
#: the vectorised path's numpy calls cost a fixed ~0.3 ms a batch, more than a few samples'
#: Python rules (a small fleet, a host driven by hand, a pushed event's early flush).
MIN_VECTOR_BATCH = 8

_fast_of = attrgetter(*FAST_FIELDS)
_index_of = attrgetter("index")
# A reading with status ok and no slow field, as (status, *slow fields) reads it.
_plain_of = attrgetter("status", *SLOW_FIELDS)
_PLAIN = ("ok",) + (None,) * len(SLOW_FIELDS)
_NAN = float("nan")
_NAN_ROW = (_NAN,) * len(FAST_FIELDS)
# The ring records util, temperature, power and memory use (history.Metric's order).
_RING_COLS = [Col.UTIL, Col.TEMP, Col.POWER]


class Judge(Protocol):
    """What the batch needs of a host: its health rules and where its verdict goes."""

    @property
    def health(self) -> HostHealth: ...

    def apply_verdict(self, verdict: HostVerdict, now: float) -> None: ...

    def judging_failed(self, exc: Exception) -> None: ...


@dataclass(eq=False)
class HostLayout:
    """One host's place in the columns under one hello."""

    judge: Judge
    hello: Hello
    history: HostHistory
    indices: tuple[int, ...]  # GPU indices of the inventory, in slot order
    # The samples of this host may take the columnar path: distinct GPU indices, the same
    # inventory order as the history's, and the batch's thresholds.
    columnar: bool


class FleetColumns:
    """Owned by the monitor: the fast-reading columns, the rings, and the pending batch."""

    def __init__(
        self,
        capacity: int,
        hosts: int,
        thresholds: Thresholds | None = None,
        *,
        batch_s: float = BATCH_S,
    ) -> None:
        self.thresholds = thresholds or DEFAULT_THRESHOLDS
        self.batch_s = batch_s
        self.min_vector_batch = MIN_VECTOR_BATCH
        self.ring = FleetRing(capacity, hosts, 8 * max(hosts, 1))
        slots = len(self.ring.values)
        # Fleet-wide, one row per GPU slot (the ring's slots): the newest fast readings.
        self.fast = np.full((slots, len(FAST_FIELDS)), np.nan, dtype=np.float32)
        # Per slot, the quiet path's limits of the GPU there (core/health.py `_limits`).
        self._temp_limit = np.full(slots, np.inf)
        self._mem_total = np.full(slots, np.nan)
        self._mem_limit = np.full(slots, np.inf)
        self._pending: list[tuple[HostLayout, Hello, Sample, float]] = []
        self._timer: asyncio.TimerHandle | None = None
        self.batches = 0  # batches flushed (for tests and benchmarks)
        self.settled = 0  # samples the vectorised path judged without the Python rules

    # -- layout ------------------------------------------------------------------------------

    def history_for(self, old: HostHistory | None, gpus: list[GpuInfo]) -> HostHistory:
        """A host's history for a new inventory: its old time row, and its old GPU slots
        when their number is the same."""
        ring = self.ring
        if old is None:
            history = HostHistory(gpus, ring.capacity, ring=ring)
        elif len(old.slots) == len(gpus):
            history = HostHistory(
                gpus, ring.capacity, ring=ring, row=old.row, start=old.slots.start
            )
            ring.values[old.slots.start : old.slots.stop] = np.nan
        else:
            ring.give_back(old.slots.start, len(old.slots))
            history = HostHistory(gpus, ring.capacity, ring=ring, row=old.row)
        self._fit()
        return history

    def layout(self, judge: Judge, hello: Hello, history: HostHistory) -> HostLayout:
        """Where `judge`'s samples under `hello` go, with its GPUs' limits in the columns."""
        self.flush()  # pending samples were taken under the host's previous hello
        indices = tuple(g.index for g in hello.gpus)
        slots = history.slots
        columnar = (
            len(set(indices)) == len(indices) == len(slots)
            and indices == tuple(history.gpu_indices)
            and judge.health.thresholds is self.thresholds
        )
        if columnar:
            limits = judge.health.quiet_limits(hello)
            self._temp_limit[slots.start : slots.stop] = [t for t, _, _ in limits]
            self._mem_total[slots.start : slots.stop] = [m if m else np.nan for _, m, _ in limits]
            self._mem_limit[slots.start : slots.stop] = [p for _, _, p in limits]
        self.fast[slots.start : slots.stop] = np.nan
        return HostLayout(judge, hello, history, indices, columnar)

    def _fit(self) -> None:
        """Grow the per-slot arrays with the ring."""
        size, have = len(self.ring.values), len(self.fast)
        if size <= have:
            return
        fast = np.full((size, len(FAST_FIELDS)), np.nan, dtype=np.float32)
        fast[:have] = self.fast
        self.fast = fast
        for name, fill in (("_temp_limit", np.inf), ("_mem_total", np.nan), ("_mem_limit", np.inf)):
            old = getattr(self, name)
            grown = np.full(size, fill)
            grown[:have] = old
            setattr(self, name, grown)

    def readings(self, layout: HostLayout) -> npt.NDArray[np.float32]:
        """A host's newest fast readings: (GPUs of its inventory, FAST_FIELDS), a view."""
        slots = layout.history.slots
        view: npt.NDArray[np.float32] = self.fast[slots.start : slots.stop]
        return view

    # -- the batch ---------------------------------------------------------------------------

    def add(self, layout: HostLayout, hello: Hello, sample: Sample, now: float) -> None:
        """A sample to judge in the next flush (at once when no event loop runs)."""
        self._pending.append((layout, hello, sample, now))
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # driven by hand, outside a loop: judged at once
                self.flush()
                return
            self._timer = loop.call_later(self.batch_s, self.flush)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def flush(self) -> None:
        """Judge every pending sample and write its readings into the columns."""
        self.close()
        pending = self._pending
        if not pending:
            return
        self._pending = []
        self.batches += 1
        n = len(pending)
        positions = [0] * n  # ring position each sample takes, in arrival order per host
        aligned = [False] * n
        plain = [False] * n
        last = [True] * n  # the newest sample of its host in this batch
        newest: dict[int, int] = {}
        rows: list[tuple[float | int | None, ...]] = []
        starts: list[int] = []
        counts: list[int] = []
        not_ok: list[int] = []
        vector = n >= self.min_vector_batch
        for i, (layout, hello, sample, _now) in enumerate(pending):
            positions[i] = layout.history.next_slot()
            seen = newest.get(id(layout))
            if seen is not None:
                last[seen] = False
            newest[id(layout)] = i
            gpus = sample.gpus
            if not (
                vector
                and layout.columnar
                and hello is layout.hello
                and tuple(map(_index_of, gpus)) == layout.indices
            ):
                continue
            aligned[i] = True
            start = len(rows)
            starts.append(start)
            counts.append(len(gpus))
            rows.extend(map(_fast_of, gpus))
            if list(map(_plain_of, gpus)).count(_PLAIN) == len(gpus):
                plain[i] = True
            else:
                not_ok.extend(start + k for k, r in enumerate(gpus) if r.status != "ok")
        settle = [False] * n
        judged: list[int] = []
        if rows:
            settle, judged = self._write(
                pending, aligned, plain, last, positions, rows, starts, counts, not_ok
            )
        for i, (layout, hello, sample, now) in enumerate(pending):
            if not aligned[i]:
                self._write_one(layout, sample, now, positions[i], last[i])
            judge = layout.judge
            try:
                verdict = None
                if settle[i]:
                    verdict = judge.health.quiet_verdict(hello, JUDGED[judged[i]])
                if verdict is None:
                    verdict = judge.health.evaluate(hello, sample, now)
                else:
                    self.settled += 1
                judge.apply_verdict(verdict, now)
            except Exception as exc:  # one host's bad sample must not cost the others theirs
                judge.judging_failed(exc)

    def _write(
        self,
        pending: list[tuple[HostLayout, Hello, Sample, float]],
        aligned: list[bool],
        plain: list[bool],
        last: list[bool],
        positions: list[int],
        rows: list[tuple[float | int | None, ...]],
        starts: list[int],
        counts: list[int],
        not_ok: list[int],
    ) -> tuple[list[bool], list[int]]:
        """The aligned samples' readings into the columns and rings, all at once; per sample
        of the batch, whether the vectorised checks found every GPU quiet, and how the
        straggler bound judged its peers (per aligned sample, in order)."""
        values = np.array(rows, dtype=np.float64)  # None -> NaN
        if not_ok:
            values[not_ok] = np.nan  # a GPU not read has no readings, whatever it sent
        first = np.array(starts, dtype=np.intp)
        picked = [i for i, a in enumerate(aligned) if a]
        layouts = [pending[i][0] for i in picked]
        slot0 = np.array([lay.history.slots.start for lay in layouts], dtype=np.intp)
        slot = np.arange(len(values)) + np.repeat(slot0 - first, counts)
        pos = np.repeat(np.array([positions[i] for i in picked], dtype=np.intp), counts)
        ring = self.ring
        ring.t[[lay.history.row for lay in layouts], pos[first]] = [pending[i][3] for i in picked]
        mem_total = self._mem_total[slot]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            mem_pct = 100.0 * values[:, Col.MEM_USED] / mem_total
        ring_rows = np.column_stack([values[:, _RING_COLS], mem_pct])
        ring.values[slot, :, pos] = ring_rows
        newest = np.repeat(np.array([last[i] for i in picked]), counts)
        if newest.all():
            self.fast[slot] = values
        else:  # a host sampled twice in this batch: its newest sample stays in the columns
            self.fast[slot[newest]] = values[newest]
        quiet = quiet_readings(values, self._temp_limit[slot], mem_total, self._mem_limit[slot])
        calm = every_quiet(quiet, first)
        peers = peer_judgements(values, first, self.thresholds)
        settle = [False] * len(pending)
        judged = [0] * len(pending)
        for k, i in enumerate(picked):
            if plain[i] and calm[k]:
                settle[i] = True
                judged[i] = int(peers[k])
        return settle, judged

    def _write_one(
        self, layout: HostLayout, sample: Sample, now: float, position: int, newest: bool
    ) -> None:
        """A sample whose GPUs are not its inventory's, in order: written as the rules read it."""
        history = layout.history
        history.write(position, now, sample)
        if not newest:
            return
        slots = history.slots
        rows = [_NAN_ROW] * len(slots)
        at = {idx: k for k, idx in enumerate(history.gpu_indices)}
        for r in sample.gpus:
            k = at.get(r.index)
            if k is not None and r.status == "ok":
                rows[k] = _fast_of(r)
        if rows:
            self.fast[slots.start : slots.stop] = np.array(rows, dtype=np.float64)
