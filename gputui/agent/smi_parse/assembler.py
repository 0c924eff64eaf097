"""Lines grouped into samples, with the status changes and problems they reveal.

nvidia-smi prints one CSV line per GPU per period of `-lms`, with no sample boundary: a sample
is complete when every GPU of the inventory has been heard from, or when the index sequence
starts again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import DEFAULT_INTERVAL_S
from .cells import REASONS_FIELD
from .lines import BadLine, DeviceErrorLine, GpuLine, bus_key, parse_stream_line

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    Json = dict[str, Any]
    BusKey = tuple[int, int, int, int]


@dataclass
class SmiStats:
    """Counts of what the parser saw, for error lines and tests."""

    lines: int = 0
    samples: int = 0
    bad_lines: int = 0
    unreadable_values: int = 0  # [Unknown Error] and other bracketed cells
    bad_values: int = 0
    last_bad_line: str = ""


@dataclass
class AssembledSample:
    """A complete sample: the time its first line arrived, one reading per GPU by index,
    and the events (GPU lost, reset required) it reveals."""

    t: float
    gpus: list[Json]
    events: list[Json]


def _report_now(count: int) -> bool:
    """1st, 10th, 100th, ...: a problem on every line must not flood the stream."""
    while count % 10 == 0:
        count //= 10
    return count == 1


class SampleAssembler:
    """Groups streamed lines into samples. Feed it every line; it returns finished samples.

    `gpus` is the hello inventory (GpuInfo dicts); without it samples still form, but a GPU
    named only by bus id cannot be given an index and a silent GPU cannot be noticed.
    """

    def __init__(
        self,
        gpus: Sequence[Json] = (),
        interval_s: float = DEFAULT_INTERVAL_S,
        reasons_field: str = REASONS_FIELD,
        reserved: bool = False,
        counters: bool = False,
    ) -> None:
        self.reasons_field = reasons_field
        self.reserved = reserved  # the stream has the memory.reserved column
        self.counters = counters  # and the held-clock counters' columns
        self.stats = SmiStats()
        self._expected = sorted(int(g["index"]) for g in gpus)
        self._index_of_bus: dict[BusKey, int] = {}
        for gpu in gpus:
            key = bus_key(gpu.get("pci_bus_id", ""))
            if key is not None:
                self._index_of_bus[key] = int(gpu["index"])
        self._uuids = {int(g["index"]): g["uuid"] for g in gpus if g.get("uuid")}
        # A period's lines arrive within milliseconds; a group quiet for this long is done.
        self._settle_s = max(0.75 * interval_s, 0.5)
        self._group: dict[int, Json] = {}
        self._unplaced: list[DeviceErrorLine] = []
        self._last_index = -1
        self._group_t = 0.0
        self._last_line_t = 0.0
        self._status: dict[int, str] = {}
        self._unplaced_reported: set[str] = set()
        self._unplaced_events: list[Json] = []
        self._problems: list[Json] = []
        self._problem_counts: dict[tuple[str, int | None], int] = {}

    # -- input ---------------------------------------------------------------------------

    def feed(self, line: str, now: float) -> list[AssembledSample]:
        """Take one line; returns the samples it completes (usually none or one)."""
        parsed = parse_stream_line(line, self.reasons_field, self.reserved, self.counters)
        if parsed is None:
            return []
        self.stats.lines += 1
        if isinstance(parsed, BadLine):
            self._bad_line(parsed.text)
            return []
        index = self._index_for(parsed)
        done = self.flush() if index is not None and self._starts_new_sample(index) else []
        if not self._group and not self._unplaced:
            self._group_t = now
        self._last_line_t = now
        self._add(parsed, index)
        if self._complete():
            done.extend(self.flush())
        return done

    def poll(self, now: float) -> list[AssembledSample]:
        """Finish a partial sample whose lines stopped coming (a GPU fell silent)."""
        if (self._group or self._unplaced) and now - self._last_line_t >= self._settle_s:
            return self.flush()
        return []

    def flush(self) -> list[AssembledSample]:
        """Finish the current sample now, whatever it holds (at the end of the stream)."""
        if not self._group and not self._unplaced:
            return []
        readings = self._place_unplaced()
        for index in self._expected:
            readings.setdefault(index, _silent(index, "no line from nvidia-smi for this GPU"))
        gpus = [readings[i] for i in sorted(readings)]
        sample = AssembledSample(t=self._group_t, gpus=gpus, events=self._status_events(gpus))
        self._group, self._unplaced, self._last_index = {}, [], -1
        self.stats.samples += 1
        return [sample]

    def take_problems(self) -> list[Json]:
        """Non-fatal problems since the last call: {"code", "text", "gpu"?}."""
        problems, self._problems = self._problems, []
        return problems

    def silent_sample(self, t: float, why: str) -> AssembledSample:
        """A sample for when nvidia-smi printed nothing: every known GPU in status error."""
        gpus = [_silent(index, why) for index in self._expected]
        return AssembledSample(t=t, gpus=gpus, events=[])

    # -- grouping ------------------------------------------------------------------------

    def _index_for(self, parsed: GpuLine | DeviceErrorLine) -> int | None:
        if isinstance(parsed, GpuLine):
            return parsed.index
        return self._index_of_bus.get(parsed.bus) if parsed.bus is not None else None

    def _starts_new_sample(self, index: int) -> bool:
        # nvidia-smi prints GPUs in index order, so a repeated or smaller index is the next
        # period; this holds even without an inventory.
        return bool(self._group or self._unplaced) and (
            index in self._group or index <= self._last_index
        )

    def _complete(self) -> bool:
        heard = len(self._group) + len(self._unplaced)
        return bool(self._expected) and heard >= len(self._expected)

    def _add(self, parsed: GpuLine | DeviceErrorLine, index: int | None) -> None:
        if isinstance(parsed, GpuLine):
            self._count_cell_problems(parsed)
            self._group[parsed.index] = parsed.reading
            if parsed.uuid:
                self._uuids.setdefault(parsed.index, parsed.uuid)
        elif index is not None:
            self._group[index] = {"index": index, "status": parsed.status, "error": parsed.text}
        else:
            self._unplaced.append(parsed)
            return
        self._last_index = index if index is not None else self._last_index

    def _place_unplaced(self) -> dict[int, Json]:
        """Give the GPUs named by an unknown bus id the indices missing from the sample:
        nvidia-smi prints them in index order, so the k-th such line is the k-th gap."""
        readings = dict(self._group)
        gaps = [i for i in self._expected if i not in readings]
        for line, index in zip(self._unplaced, gaps):
            readings[index] = {"index": index, "status": line.status, "error": line.text}
        for line in self._unplaced[len(gaps) :]:
            self._report_unplaced(line)
        return readings

    def _report_unplaced(self, line: DeviceErrorLine) -> None:
        # No index to put it under: an event with no GPU ("could not attribute it"), once.
        if line.text in self._unplaced_reported:
            return
        self._unplaced_reported.add(line.text)
        if line.status == "lost":
            self._unplaced_events.append({"kind": "gpu_lost", "text": line.text})
        else:
            self._problem("smi_device_error", line.text, None)

    # -- status changes and problems ----------------------------------------------------

    def _status_events(self, gpus: Iterable[Json]) -> list[Json]:
        """Events for GPUs that became lost or need a reset, as NVML's backend pushes them."""
        events, self._unplaced_events = self._unplaced_events, []
        for gpu in gpus:
            index, status = gpu["index"], gpu.get("status", "ok")
            if status != self._status.get(index, "ok") and status in _EVENT_OF_STATUS:
                event: Json = {"kind": _EVENT_OF_STATUS[status], "gpu": index}
                if index in self._uuids:
                    event["uuid"] = self._uuids[index]
                event["text"] = "nvidia-smi: " + str(gpu.get("error") or status)
                events.append(event)
            self._status[index] = status
        return events

    def _count_cell_problems(self, line: GpuLine) -> None:
        for query in line.unreadable:
            self.stats.unreadable_values += 1
            self._problem("smi_unknown_error", f"GPU {line.index}: {query} unreadable", line.index)
        for query in line.bad_values:
            self.stats.bad_values += 1
            self._problem("smi_bad_value", f"GPU {line.index}: {query} not a number", line.index)

    def _bad_line(self, text: str) -> None:
        self.stats.bad_lines += 1
        self.stats.last_bad_line = text[:200]
        self._problem("smi_bad_line", "unexpected nvidia-smi output: " + text[:200], None)

    def _problem(self, code: str, text: str, gpu: int | None) -> None:
        count = self._problem_counts.get((code, gpu), 0) + 1
        self._problem_counts[(code, gpu)] = count
        if not _report_now(count):
            return
        problem: Json = {"code": code, "text": text if count == 1 else f"{text} ({count} times)"}
        if gpu is not None:
            problem["gpu"] = gpu
        self._problems.append(problem)


_EVENT_OF_STATUS = {"lost": "gpu_lost", "reset_required": "reset_required"}


def _silent(index: int, why: str) -> Json:
    return {"index": index, "status": "error", "error": why}
