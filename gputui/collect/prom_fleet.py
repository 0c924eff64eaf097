"""A fleet read from Prometheus, mapped into the messages an agent would send.

Pure: no I/O. The poller (prom_source.py) hands each tick's query results here, one list of
series per metric family, and gets back per host what the SSH path would have decoded: a Hello
whose inventory comes from the series' labels (gpu index, UUID, model), a Sample of
GpuReadings, XID Events, or why the host cannot be read now (no series, stale series, series
without the labels that place them). The same host runtime, health rules, reports and TUI then
take them as they take an agent's.

Both kinds of series are read (core/prom_series.py): dcgm-exporter's `DCGM_FI_*` fields in
DCGM's units and labels (Hostname, gpu, UUID, modelName), and gputui's own names in base units
(labels host, gpu, uuid, model). A field neither kind carries for a host is left None, and the
signals that matter to the health rules are named in the Hello's `unavailable`, so the host
shows "not available from this source" rather than ok.

A GPU's job comes from the job label of its series (dcgm-exporter's `hpc_job`, or `job_id`
where a site relabels it so and on gputui's own series), held to the rules the agent holds the
ids it reads from /proc to (agent/attribution.py): digits name a Slurm job, a UUID a pod, and
any other value names none. Only the job is known, so the reading carries it as
GpuReading.jobs, never as made-up processes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gputui.agent.attribution import job_from_id
from gputui.collect.prom_api import VectorSample
from gputui.config.schema import SeriesKind
from gputui.core import prom_series as ps
from gputui.core.model import MAX_GPU_JOBS, PROTOCOL_VERSION, GpuReading
from gputui.core.text import plain

AGENT_VERSION = "prometheus"
# Label names that name the host, most specific first: dcgm-exporter's, gputui's, the target's.
HOST_LABELS = (ps.DCGM_LABEL_HOST, ps.LABEL_HOST, "instance")
UUID_LABELS = (ps.DCGM_LABEL_UUID, ps.LABEL_UUID)
MODEL_LABELS = (ps.DCGM_LABEL_MODEL, ps.LABEL_MODEL)
#: Label names that name a GPU's jobs: dcgm-exporter's, then `job_id` (gputui exporter's, and
#: what sites relabel hpc_job to). gputui's holds several ids joined by commas; dcgm-exporter
#: repeats the series once per job instead.
JOB_LABELS = (ps.DCGM_LABEL_JOB, ps.LABEL_JOB)
#: The family whose sample timestamps date a host (read through `timestamp()`).
FRESHNESS_FIELD = "temp_c"
# Signals the health rules judge, by the reading fields that carry them: a host none of whose
# series carries one of them shows it as not available from this source.
JUDGED_SIGNALS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("clock-event reasons", ("clock_events",)),
    (
        "ECC counts",
        ("ecc_uncorrected_volatile", "ecc_corrected_volatile", "ecc_uncorrected_aggregate"),
    ),
    ("remapped rows", ("remap_uncorrected", "remap_pending", "remap_failure")),
    ("PCIe link", ("pcie_gen", "pcie_width")),
    ("PCIe replays", ("pcie_replay",)),
    ("NVLink errors", ("nvlink_replay", "nvlink_recovery", "nvlink_crc_flit", "nvlink_crc_data")),
    ("recovery action", ("recovery_action",)),
)
XID_FAMILY = "xid"
# The families whose series carry a GPU's job labels for the reader: the temperature (which
# dates every host, so a read GPU has it) and the XID (which DCGM keeps for a GPU off the bus).
# dcgm-exporter puts the label on every series of the GPU; reading it off the other families
# too would add a fifth to the reader's cost per tick and name no other job.
JOB_FAMILIES = frozenset({FRESHNESS_FIELD, XID_FAMILY})
# dcgm-exporter's free frame buffer: with the used and reserved, the GPU's memory total (which
# the memory rule judges against), read once per GPU as the agent reads its inventory.
FREE_FAMILY = "mem_free"
DCGM_FB_FREE = "DCGM_FI_DEV_FB_FREE"


def _field_kinds() -> tuple[frozenset[str], frozenset[str]]:
    """The reading fields that are whole numbers, and those that are booleans."""
    ints: set[str] = set()
    bools: set[str] = set()
    info = msgspec.inspect.type_info(GpuReading)
    assert isinstance(info, msgspec.inspect.StructType)
    for f in info.fields:
        types = f.type.types if isinstance(f.type, msgspec.inspect.UnionType) else (f.type,)
        if any(isinstance(t, msgspec.inspect.IntType) for t in types):
            ints.add(f.name)
        if any(isinstance(t, msgspec.inspect.BoolType) for t in types):
            bools.add(f.name)
    return frozenset(ints), frozenset(bools)


_INT_FIELDS, _BOOL_FIELDS = _field_kinds()


@dataclass(frozen=True)
class Family:
    """One query of a tick: a reading field (or the XID family) and the names it reads."""

    key: str  # a GpuReading field, or XID_FAMILY
    dcgm: str | None
    gputui: str | None

    def names(self) -> tuple[str, ...]:
        return tuple(n for n in (self.gputui, self.dcgm) if n is not None)


def families(series: SeriesKind) -> list[Family]:
    """The families a tick queries for `series`; a field neither kind names is not queried."""
    use_dcgm = series in ("dcgm", "auto")
    use_gputui = series in ("gputui", "auto")
    out: list[Family] = []
    for s in ps.GPU_SERIES:
        fam = Family(s.field, s.dcgm if use_dcgm else None, s.name if use_gputui else None)
        if fam.names():
            out.append(fam)
    out.append(
        Family(XID_FAMILY, ps.DCGM_XID if use_dcgm else None, ps.XID_ERRORS if use_gputui else None)
    )
    if use_dcgm:
        out.append(Family(FREE_FAMILY, DCGM_FB_FREE, None))
    return out


def selector_query(names: Sequence[str], selector: str | None, wrap: str = "") -> str:
    """The PromQL of one family: its series names, narrowed by the operator's `selector`."""
    if len(names) == 1:
        inner = names[0] + (f"{{{selector}}}" if selector else "")
    else:
        matchers = [f'__name__=~"{"|".join(names)}"'] + ([selector] if selector else [])
        inner = "{" + ", ".join(matchers) + "}"
    return f"{wrap}({inner})" if wrap else inner


def _label(metric: Mapping[str, str], names: Iterable[str]) -> str | None:
    for name in names:
        value = metric.get(name)
        if value:
            return value
    return None


def host_of(metric: Mapping[str, str]) -> str | None:
    """The host a series belongs to: its Hostname, host or (the scrape target's) instance."""
    value = _label(metric, HOST_LABELS)
    return plain(value, 253) if value is not None else None


@dataclass
class _Gpu:
    index: int
    uuid: str
    name: str
    memory_total_mib: float | None = None


@dataclass
class HostRead:
    """What one tick read of one host."""

    gpus: dict[int, _Gpu] = field(default_factory=dict)
    readings: dict[int, dict[str, Any]] = field(default_factory=dict)
    fields_seen: set[str] = field(default_factory=set)
    newest_t: float | None = None  # the newest sample timestamp of its freshness family
    xids: dict[int, int] = field(default_factory=dict)  # gpu -> DCGM's last XID
    xid_counts: dict[tuple[int, int], float] = field(default_factory=dict)  # (gpu, xid) -> count
    free_mib: dict[int, float] = field(default_factory=dict)  # gpu -> free frame buffer (DCGM)
    job_labels: dict[int, dict[str, None]] = field(default_factory=dict)  # gpu -> label values
    unplaced: int = 0  # series without a usable gpu index or UUID label
    bad_values: list[str] = field(default_factory=list)  # NaN, infinite or unparsable values


@dataclass
class TickRead:
    """Every host's read of one tick, and Prometheus' evaluation time."""

    now: float
    hosts: dict[str, HostRead]


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _convert(key: str, value: float, from_gputui: bool) -> Any:
    if from_gputui:
        value = ps.BY_FIELD[key].from_gputui(value)
    if key in _BOOL_FIELDS:
        return value != 0
    if key in _INT_FIELDS:
        return round(value)
    return value


class FleetReader:
    """Folds each tick's query results into per-host reads."""

    def __init__(self, series: SeriesKind) -> None:
        self.families = families(series)
        self._gputui_names = {s.name for s in ps.GPU_SERIES} | {ps.XID_ERRORS}

    def read(
        self,
        now: float,
        results: Mapping[str, Sequence[VectorSample]],
        freshness: Sequence[VectorSample],
    ) -> TickRead:
        hosts: dict[str, HostRead] = {}
        for fam in self.families:
            jobs = fam.key in JOB_FAMILIES
            for item in results.get(fam.key, ()):
                self._place(hosts, fam, item, jobs)
        for item in freshness:
            name = host_of(item.metric)
            if name is None or name not in hosts:
                continue
            t = _number(item.value[1])
            host = hosts[name]
            if t is not None and (host.newest_t is None or t > host.newest_t):
                host.newest_t = t
        return TickRead(now=now, hosts=hosts)

    def _place(
        self, hosts: dict[str, HostRead], fam: Family, item: VectorSample, jobs: bool
    ) -> None:
        metric = item.metric
        name = host_of(metric)
        if name is None:
            return  # no host label at all: a series scraped outside any target (none in practice)
        host = hosts.get(name)
        if host is None:
            host = hosts[name] = HostRead()
        index_text = metric.get(ps.DCGM_LABEL_GPU)
        uuid = _label(metric, UUID_LABELS)
        index = int(index_text) if index_text is not None and index_text.isdigit() else None
        if index is None or index > 1023 or uuid is None:
            host.unplaced += 1
            return
        gpu = host.gpus.get(index)
        if gpu is None:
            model = _label(metric, MODEL_LABELS) or "unknown model"
            host.gpus[index] = _Gpu(index, plain(uuid, 128), plain(model, 128))
        if jobs:
            for label in JOB_LABELS:
                job = metric.get(label)
                if job:  # Prometheus drops an empty label: no job
                    host.job_labels.setdefault(index, {})[job] = None
        value = _number(item.value[1])
        from_gputui = metric.get("__name__") in self._gputui_names
        if value is None:
            host.bad_values.append(f"{fam.key} of GPU{index} is {plain(item.value[1], 20)}")
            return
        if fam.key == FREE_FAMILY:
            host.free_mib[index] = value
            return
        if fam.key == XID_FAMILY:
            if from_gputui:
                xid_text = metric.get("xid", "")
                if xid_text.isdigit():
                    host.xid_counts[(index, int(xid_text))] = value
            else:
                host.xids[index] = round(value)
            return
        reading = host.readings.get(index)
        if reading is None:
            reading = host.readings[index] = {"index": index}
        if fam.key in reading and not from_gputui:
            return  # gputui's own series, read first, carry more; dcgm's fills the rest
        reading[fam.key] = _convert(fam.key, value, from_gputui)
        host.fields_seen.add(fam.key)


# The longest job id is a pod UID's 36 characters: a longer value (with room for white space)
# is no id, and is neither checked nor kept in the cache.
_ID_CHARS = 64


@functools.lru_cache(maxsize=4096)
def _job(value: str) -> dict[str, Any] | None:
    # The same few ids arrive on every GPU's series at every tick: each is checked once.
    return job_from_id(value)


def jobs_of(labels: Iterable[str]) -> list[dict[str, Any]]:
    """The jobs a GPU's job label values name, each once, in order (as JobRef dicts); a value
    that is no job id names none."""
    jobs: dict[str, dict[str, Any]] = {}
    for text in labels:
        for part in text.split(","):
            job = _job(part) if len(part) <= _ID_CHARS else None
            if job is not None:
                jobs.setdefault(f"{job['kind']}:{job['id']}", job)
    return list(jobs.values())[:MAX_GPU_JOBS]


def unavailable_signals(fields_seen: set[str]) -> list[str]:
    """The judged signals none of whose fields a host's series carried."""
    return [words for words, fields in JUDGED_SIGNALS if not fields_seen.intersection(fields)]


@dataclass
class HostTracker:
    """What the source remembers of one host between ticks: inventory, XIDs, sequence."""

    name: str
    interval_s: float
    gpus: dict[int, _Gpu] = field(default_factory=dict)
    unavailable: list[str] = field(default_factory=list)
    last_xid: dict[int, int] = field(default_factory=dict)
    xid_counts: dict[tuple[int, int], float] = field(default_factory=dict)
    last_t: float | None = None
    seq: int = 0
    hello_sent: bool = False

    def messages(self, read: HostRead) -> list[dict[str, Any]]:
        """The protocol messages (as dicts, for protocol.convert_message) of a fresh read."""
        out: list[dict[str, Any]] = []
        changed = False
        for index, gpu in read.gpus.items():
            known = self.gpus.get(index)
            if known is not None and known.memory_total_mib is not None:
                gpu.memory_total_mib = known.memory_total_mib  # read once, as the inventory
            elif index in read.free_mib and "mem_used_mib" in read.readings.get(index, {}):
                reading = read.readings[index]
                total = read.free_mib[index] + reading["mem_used_mib"]
                gpu.memory_total_mib = total + reading.get("mem_reserved_mib", 0.0)
            if known != gpu:
                self.gpus[index] = gpu
                changed = True
        unavailable = unavailable_signals(read.fields_seen)
        if read.unplaced:
            unavailable.append(
                f"{read.unplaced} series without a gpu index or UUID label (not placed)"
            )
        if read.bad_values:
            shown = "; ".join(read.bad_values[:3])
            more = f" and {len(read.bad_values) - 3} more" if len(read.bad_values) > 3 else ""
            unavailable.append(f"values that are not numbers: {shown}{more}")
        if unavailable != self.unavailable:
            self.unavailable = unavailable
            changed = True
        if changed or not self.hello_sent:
            out.append(self._hello())
            self.hello_sent = True
        t = read.newest_t if read.newest_t is not None else 0.0
        self.last_t = t
        for index, labels in read.job_labels.items():
            # Only a GPU with readings carries its jobs: one without (DCGM's blank values of
            # a GPU off the bus) counts for every job of its host (core/jobs.py).
            values = read.readings.get(index)
            if values is not None:
                jobs = jobs_of(labels)
                if jobs:
                    values["jobs"] = jobs
        out.append(
            {
                "type": "sample",
                "v": PROTOCOL_VERSION,
                "t": t,
                "seq": self.seq,
                "slow": True,
                "gpus": [read.readings[i] for i in sorted(read.readings)],
            }
        )
        self.seq += 1
        out.extend(self._xid_events(read, t))
        return out

    def _hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "v": PROTOCOL_VERSION,
            "host": self.name,
            "agent_version": AGENT_VERSION,
            "backend": "prometheus",
            "interval_s": self.interval_s,
            "slow_every": 1,
            "gpus": [
                {"index": g.index, "uuid": g.uuid, "name": g.name}
                | ({"memory_total_mib": g.memory_total_mib} if g.memory_total_mib else {})
                for g in sorted(self.gpus.values(), key=lambda g: g.index)
            ],
            "unavailable": self.unavailable or None,
        }

    def _xid_events(self, read: HostRead, t: float) -> list[dict[str, Any]]:
        """DCGM's XID field holds the last XID, not a count: a change to a nonzero value is an
        XID (so is a nonzero value at the first read: it happened, when is unknown). gputui's
        own series count XIDs by code: any rise is one."""
        events: list[dict[str, Any]] = []
        for index, xid in sorted(read.xids.items()):
            before = self.last_xid.get(index)
            self.last_xid[index] = xid
            if xid != 0 and xid != before:
                events.append(self._event(index, xid, t, "DCGM's last XID"))
        for (index, xid), count in sorted(read.xid_counts.items()):
            before_count = self.xid_counts.get((index, xid), 0.0)
            self.xid_counts[(index, xid)] = count
            if count > before_count:
                events.append(self._event(index, xid, t, "counted by gputui's exporter"))
        return events

    def _event(self, index: int, xid: int, t: float, text: str) -> dict[str, Any]:
        gpu = self.gpus.get(index)
        return {
            "type": "event",
            "v": PROTOCOL_VERSION,
            "t": t,
            "kind": "xid",
            "gpu": index,
            "uuid": gpu.uuid if gpu is not None else None,
            "xid": xid,
            "text": text,
        }
