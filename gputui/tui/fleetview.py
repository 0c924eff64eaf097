"""What the fleet table shows: one row of text cells per host, sort orders and the filter.

Pure functions of a HostSnapshot and the snapshot's time, so the table's keyed diff can compare
cells as plain tuples and tests can check rows without running the app.
"""

from __future__ import annotations

import enum
import fnmatch
import math
from collections.abc import Callable
from dataclasses import dataclass

from gputui.config import DEFAULT_INTERVAL_S
from gputui.core.hoststats import HostStats, host_stats
from gputui.core.model import HostSnapshot, HostState
from gputui.render.report import host_label, host_why
from gputui.tui.palette import LABELS

#: Sort position of each label: the worst first, hosts the operator took out last.
LABEL_RANK = {label: i for i, label in enumerate(LABELS)}

# How bad a label is, for announcing a host that got worse. "connecting" and "marked-failed" are
# not judgements of the host (start-up, the operator's own decision) and are never announced.
_SEVERITY = {
    "ok": 0,
    "unknown": 1,
    "warn": 2,
    "stale": 3,
    "reconnecting": 3,
    "unreachable": 4,
    "no-gpu": 4,
    "critical": 5,
    "failed": 6,
}

DIMMED_STATES = (
    HostState.STALE,
    HostState.RECONNECTING,
    HostState.UNREACHABLE,
    HostState.NO_GPU,
)


def severity(label: str) -> int | None:
    """How bad `label` is (larger is worse); None for labels that are never announced."""
    return _SEVERITY.get(label)


# --------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    width: int  # characters of content; each cell also gets one leading space
    right: bool = False
    # When the line is short, columns give way to WHY in this order (1 first); 0: never.
    drop: int = 0


COLUMNS = (
    Column("host", "HOST", 12),
    Column("state", "STATE", 13),
    Column("gpus", "GPU", 3, right=True, drop=4),
    Column("util", "UTIL%", 7, right=True, drop=6),
    Column("temp", "TEMP", 4, right=True, drop=5),
    Column("power", "kW", 7, right=True, drop=1),
    Column("mem", "MEM", 4, right=True, drop=2),
    Column("age", "SEEN", 4, right=True, drop=3),
    Column("why", "WHY", 160),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)
AGE = COLUMN_KEYS.index("age")
# WHY is what a row is about: it keeps at least this many cells, or two fifths of a wider
# line, and the columns that say least give way first.
WHY_MIN = 24
WHY_SHARE = 0.4


def content_width(column: Column, host_width: int) -> int:
    """Cells of `column`'s text: the host column as wide as the names, every other as its own
    width and never narrower than its header with the sort arrow after it."""
    if column.key == "host":
        return host_width
    return max(column.width, len(column.header) + 1)


def column_widths(width: int, host_width: int) -> tuple[int, ...]:
    """Each column's cells in a line `width` wide, its leading space included: 0 for a column
    left out so that WHY keeps its room (WHY itself as wide as its text may be)."""
    widths = [content_width(c, host_width) + 1 for c in COLUMNS]
    if width <= 0:  # not laid out yet: every column, as a wide screen shows them
        return tuple(widths)
    keep = max(WHY_MIN, int(width * WHY_SHARE))
    why = COLUMN_KEYS.index("why")
    for column in sorted((c for c in COLUMNS if c.drop), key=lambda c: c.drop):
        if width - (sum(widths) - widths[why]) >= keep:
            break
        widths[COLUMN_KEYS.index(column.key)] = 0
    return tuple(widths)


def fmt_age(age_s: float | None, fresh_s: float = 3.0) -> str:
    """Compact age: "now" while fresh, then 12s, 3m, 2h, 4d."""
    if age_s is None:
        return "-"
    if age_s < fresh_s:
        return "now"
    if age_s < 60:
        return f"{age_s:.0f}s"
    if age_s < 3600:
        return f"{age_s // 60:.0f}m"
    if age_s < 86400:
        return f"{age_s // 3600:.0f}h"
    return f"{age_s // 86400:.0f}d"


def _kw(watts: float) -> str:
    kw = watts / 1000
    return f"{kw:.0f}" if kw >= 10 else f"{kw:.1f}"


def fmt_power(stats: HostStats) -> str:
    if stats.power_w is None:
        return "-"
    if stats.power_limit_w:
        return f"{_kw(stats.power_w)}/{_kw(stats.power_limit_w)}"
    return _kw(stats.power_w)


def fmt_util(stats: HostStats) -> str:
    if stats.util_mean_pct is None or stats.util_max_pct is None:
        return "-"
    return f"{stats.util_mean_pct:.0f}/{stats.util_max_pct:.0f}"


def fmt_mem(stats: HostStats) -> str:
    if stats.mem_used_mib is None or not stats.mem_total_mib:
        return "-"
    return f"{100 * stats.mem_used_mib / stats.mem_total_mib:.0f}%"


def row_why(host: HostSnapshot) -> str:
    """The WHY cell: the worst reason in words, after "spare" for a spare of its group (and
    the node it replaces, once brought into service)."""
    why = host_why(host)
    if host.spare:
        spare = f"spare for {host.in_place_of}" if host.in_place_of else "spare"
        return f"{spare} · {why}" if why else spare
    return why


def fresh_after(host: HostSnapshot) -> float:
    """Below this age a sample counts as current: a little over two sample intervals."""
    interval = host.hello.interval_s if host.hello is not None else DEFAULT_INTERVAL_S
    return max(3.0, 2.5 * interval)


@dataclass(frozen=True)
class HostRow:
    """One host's row: the label (for colour and sort), stats (for sort) and cell texts."""

    name: str
    label: str
    dimmed: bool
    stats: HostStats
    age_s: float | None
    cells: tuple[str, ...]  # in COLUMNS order, without padding


def host_row(host: HostSnapshot, now: float) -> HostRow:
    stats = host_stats(host)
    label = host_label(host)
    age = host.age_s(now)
    gpus = (
        str(stats.gpus)
        if stats.gpus_reporting == stats.gpus
        else f"{stats.gpus_reporting}/{stats.gpus}"
    )
    if host.hello is None:
        gpus = "-"
    temp = "-" if stats.temp_max_c is None else f"{stats.temp_max_c:.0f}C"
    cells = (
        host.name,
        label,
        gpus,
        fmt_util(stats),
        temp,
        fmt_power(stats),
        fmt_mem(stats),
        fmt_age(age, fresh_after(host)),
        row_why(host),
    )
    return HostRow(host.name, label, host.state in DIMMED_STATES, stats, age, cells)


def age_moved(row: HostRow, host: HostSnapshot, now: float) -> HostRow:
    """`row` of an unchanged host at a later time: only its age differs."""
    age = host.age_s(now)
    text = fmt_age(age, fresh_after(host))
    if text == row.cells[AGE]:
        return row
    cells = (*row.cells[:AGE], text, *row.cells[AGE + 1 :])
    return HostRow(row.name, row.label, row.dimmed, row.stats, age, cells)


# --------------------------------------------------------------------------------------------
# Sorting
# --------------------------------------------------------------------------------------------


class SortKey(enum.Enum):
    """Orders of the fleet table; `s` cycles them in this order."""

    STATE = "state"
    HOST = "host"
    UTIL = "util"
    TEMP = "temp"
    POWER = "power"
    AGE = "age"

    def next(self) -> SortKey:
        members = list(SortKey)
        return members[(members.index(self) + 1) % len(members)]


def _desc(x: float | None) -> float:
    """Largest first, missing values last."""
    return math.inf if x is None else -x


SORT_KEYS: dict[SortKey, Callable[[HostRow], tuple[object, ...]]] = {
    SortKey.STATE: lambda r: (LABEL_RANK.get(r.label, len(LABELS)), r.name),
    SortKey.HOST: lambda r: (r.name,),
    SortKey.UTIL: lambda r: (_desc(r.stats.util_mean_pct), r.name),
    SortKey.TEMP: lambda r: (_desc(r.stats.temp_max_c), r.name),
    SortKey.POWER: lambda r: (_desc(r.stats.power_w), r.name),
    SortKey.AGE: lambda r: (_desc(r.age_s), r.name),
}

#: Orders by a figure of the host's GPUs (every host's is needed to order the rows).
METRIC_SORTS = frozenset({SortKey.UTIL, SortKey.TEMP, SortKey.POWER})


def _metric(key: SortKey, host: HostSnapshot) -> float | None:
    """The one figure a metric order sorts by, as host_stats works it out (same readings,
    same order of summing), without the rest of the row: at 1,000 hosts the whole row of
    every host each tick was ~50 ms, most of it for cells nobody sees."""
    sample = host.sample
    if sample is None:
        return None
    values: list[float] = []
    for r in sample.gpus:
        if r.status != "ok":
            continue
        value = (
            r.util_pct if key is SortKey.UTIL else r.temp_c if key is SortKey.TEMP else r.power_w
        )
        if value is not None:
            values.append(value)
    if not values:
        return None
    if key is SortKey.UTIL:
        return sum(values) / len(values)
    return max(values) if key is SortKey.TEMP else sum(values)


def light_sort_key(key: SortKey, host: HostSnapshot, label: str, now: float) -> tuple[object, ...]:
    """The sort key of `host`, from no more than the order needs: equal to SORT_KEYS[key] of
    its row, so a tick can leave the rows out of view as they are until they scroll in."""
    if key is SortKey.STATE:
        return (LABEL_RANK.get(label, len(LABELS)), host.name)
    if key is SortKey.AGE:
        return (_desc(host.age_s(now)), host.name)
    if key in METRIC_SORTS:
        return (_desc(_metric(key, host)), host.name)
    return (host.name,)


#: The column whose header click sorts by each order.
SORT_OF_COLUMN = {
    "state": SortKey.STATE,
    "host": SortKey.HOST,
    "util": SortKey.UTIL,
    "temp": SortKey.TEMP,
    "power": SortKey.POWER,
    "age": SortKey.AGE,
}


# --------------------------------------------------------------------------------------------
# Filtering
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Term:
    kind: str  # "state", "label" or "text"
    value: str
    key: str = ""
    negate: bool = False


class FleetFilter:
    """`/` filter: space-separated terms that must all match.

    `state:warn` (or `is:`) matches the state chip by prefix, several states with commas;
    `key=value` (or `label:key=value`) matches a host label, with * and ? wildcards; any other
    word matches the name, the state, the reason or a label value, case-insensitively. A term
    starting with `-` excludes instead.
    """

    def __init__(self, text: str = "") -> None:
        self.text = text.strip()
        self.terms = [self._parse(word) for word in self.text.split()]

    @staticmethod
    def _parse(word: str) -> _Term:
        negate = word.startswith("-") and len(word) > 1
        if negate:
            word = word[1:]
        lower = word.lower()
        for prefix in ("state:", "is:"):
            if lower.startswith(prefix):
                return _Term("state", lower[len(prefix) :], negate=negate)
        if lower.startswith("label:"):
            word = word[len("label:") :]
        if "=" in word:
            key, _, value = word.partition("=")
            return _Term("label", value, key=key, negate=negate)
        return _Term("text", lower, negate=negate)

    def __bool__(self) -> bool:
        return bool(self.terms)

    def matches(self, host: HostSnapshot, label: str, why: str) -> bool:
        """Whether `host`, whose state chip says `label` for reason `why`, passes."""
        return all(self._match(t, host, label, why) != t.negate for t in self.terms)

    @staticmethod
    def _match(term: _Term, host: HostSnapshot, label: str, why: str) -> bool:
        if term.kind == "state":
            return any(v and label.startswith(v) for v in term.value.split(","))
        if term.kind == "label":
            value = host.labels.get(term.key)
            return value is not None and fnmatch.fnmatchcase(value, term.value)
        needle = term.value
        haystack = (host.name, label, why, *host.labels.values())
        return any(needle in s.lower() for s in haystack)
