"""What a trend rule reports: a finding about a GPU or a node, its evidence and its advice.

The design names three remedies for failures an operator can still prevent: better hardware,
better cooling, better power. Every finding names one of them (`Remedy`), with the rule's own
advice in words, the numbers it judged and a short daily series to chart.
"""

from __future__ import annotations

import enum

import msgspec

from gputui.core.model import Level


class Remedy(enum.Enum):
    """The design's three remedies; the value is what the views print."""

    HARDWARE = "replace or upgrade hardware"
    COOLING = "improve cooling"
    POWER = "fix power"


class Subject(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What a finding is about: one GPU (`gpu` and `uuid` set) or a whole node (both None)."""

    host: str
    gpu: int | None = None  # index on its host
    uuid: str | None = None  # the GPU itself: a replaced GPU in the same slot is another one

    @property
    def is_node(self) -> bool:
        return self.gpu is None

    @property
    def sort_key(self) -> tuple[str, int, str]:
        return (self.host, -1 if self.gpu is None else self.gpu, self.uuid or "")


class Figure(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One number the rule judged, named and with its unit ("C", "/day", "s", "" for none)."""

    name: str
    value: float
    unit: str = ""


class Point(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One day of a chart: the day's start (Unix seconds, 00:00 UTC) and its value.

    Encoded as a pair, `[day, value]`, which is what a chart reads.
    """

    day: int
    value: float


class Evidence(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Why the rule fired: a sentence with the numbers, the numbers, and a series to chart."""

    text: str
    figures: tuple[Figure, ...] = ()
    series_name: str = ""  # what `series` holds, with its unit: "load headroom (C)"
    series: tuple[Point, ...] = ()  # oldest first; days without data are left out


class Finding(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One rule's finding about one subject."""

    rule: str  # machine code: ecc_corrected_rising, gpu_hotter_than_peers, lemon_node, ...
    subject: Subject
    level: Level  # WARN: service in the next window; CRITICAL: soon; FAILED: now
    remedy: Remedy
    advice: str  # what to do, in words
    evidence: Evidence
    gpus: int = 1  # GPUs the finding covers: 1 for a GPU, the node's GPUs for a node
    # How many times the subject's failure rate the rule measured, where it measures one (a
    # lemon node's own rate against the fleet's); None: the level's hazard multiplier.
    hazard: float | None = None

    @property
    def sort_key(self) -> tuple[tuple[str, int, str], str]:
        return (self.subject.sort_key, self.rule)
