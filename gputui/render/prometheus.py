"""A fleet snapshot as Prometheus metric families, built when Prometheus scrapes.

`gputui exporter` serves these through prometheus-client's HTTP server and `gputui report
--format prometheus` writes the same text for node_exporter's textfile collector. One custom
collector builds every family from the newest `ExportView` at scrape time: nothing is updated
per tick, so a fleet that nobody scrapes costs nothing here, and a scrape sees one consistent
snapshot. The series' names, units and labels are those of gputui/core/prom_series.py
(docs/prometheus.md).

Label values are host data: each passes `plain()` (no control characters, no bidi overrides)
before prometheus-client escapes it for the exposition.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from gputui.core import prom_series as ps
from gputui.core.fleet_tally import Tally
from gputui.core.jobs import gpu_jobs
from gputui.core.model import FleetSnapshot, GpuInfo, GpuReading, HostSnapshot, HostState, Reason
from gputui.core.text import plain

#: Host states whose last sample is current: the readings of any other state are left out (a
#: host that stopped answering shows in its state and sample age, not as frozen readings).
CURRENT_STATES = frozenset({HostState.STREAMING, HostState.DEGRADED})
#: Longest label value written (a state's reason is a sentence; a host's text is cut here).
MAX_LABEL_CHARS = 200

_NOT_LABEL_CHAR = re.compile(r"[^A-Za-z0-9_]")


@dataclass(frozen=True)
class ExportView:
    """What one scrape shows: the newest snapshot, and for a running exporter what it counted
    over time (`tally`, None for a one-shot report) and how late it took the snapshot."""

    snapshot: FleetSnapshot
    tally: Tally | None = None
    publish_lag_s: float | None = None


def label_name(key: str) -> str:
    """A hosts.toml label's name as a Prometheus label name: characters other than letters,
    digits and `_` become `_`; a name that starts with a digit, is reserved by Prometheus
    (`__...`) or is one of gputui's own labels gets the prefix `group_`."""
    name = _NOT_LABEL_CHAR.sub("_", key) or "_"
    if name[0].isdigit() or name.startswith("__") or name in ps.RESERVED_LABELS:
        name = "group_" + name
    return name


def group_labels(hosts: Iterable[HostSnapshot]) -> list[tuple[str, str]]:
    """(hosts.toml key, exported name) of every label some host carries, sorted by name; of
    two keys that become the same name, the first in sorted order keeps it."""
    keys = sorted({key for host in hosts for key in host.labels})
    out: dict[str, str] = {}
    for key in keys:
        out.setdefault(label_name(key), key)
    return sorted(((key, name) for name, key in out.items()), key=lambda kn: kn[1])


def _text(value: str) -> str:
    return plain(value, MAX_LABEL_CHARS)


def _jobs_by_gpu(host: HostSnapshot) -> dict[int, str]:
    """GPU index -> the ids of the jobs it serves (comma-separated when several), as the agent
    attributed its processes, or its source named them, in the host's last slow sample
    (core/jobs.py)."""
    sample = host.slow_sample
    if sample is None:
        return {}
    out: dict[int, str] = {}
    for reading in sample.gpus:
        ids = sorted({job.id for job in gpu_jobs(reading)})
        if ids:
            out[reading.index] = _text(",".join(ids))
    return out


class _Families:
    """The metric families of one scrape, filled host by host."""

    def __init__(self, extra: Sequence[str]) -> None:
        host = [ps.LABEL_HOST, *extra]
        gpu = [ps.LABEL_HOST, ps.LABEL_GPU, ps.LABEL_UUID, ps.LABEL_MODEL, *extra]
        reason = [ps.LABEL_CODE, ps.LABEL_LEVEL, ps.LABEL_ACTION]
        self.readings = {
            s.field: (
                CounterMetricFamily(s.name, s.help, labels=[*gpu, ps.LABEL_JOB])
                if s.kind == "counter"
                else GaugeMetricFamily(s.name, s.help, labels=[*gpu, ps.LABEL_JOB])
            )
            for s in ps.GPU_SERIES
        }
        self.gpu_verdict = GaugeMetricFamily(
            ps.GPU_VERDICT,
            "The GPU's verdict: 0 ok, 1 unknown, 2 warn, 3 critical, 4 failed.",
            labels=[*gpu, ps.LABEL_JOB],
        )
        self.gpu_reason = GaugeMetricFamily(
            ps.GPU_REASON,
            "1 for each reason the GPU's verdict holds now, with its level and NVIDIA's action.",
            labels=[*gpu, ps.LABEL_JOB, *reason],
        )
        self.xids = CounterMetricFamily(
            ps.XID_ERRORS,
            "XID events seen since the collector started, by code.",
            labels=[*gpu, ps.LABEL_XID],
        )
        self.host_verdict = GaugeMetricFamily(
            ps.HOST_VERDICT,
            "The host's verdict, its GPUs' included: 0 ok, 1 unknown, 2 warn, 3 critical, "
            "4 failed.",
            labels=host,
        )
        self.host_reason = GaugeMetricFamily(
            ps.HOST_REASON,
            "1 for each reason of the host's verdict that names no GPU (those that do are on "
            "gputui_gpu_reason_info).",
            labels=[*host, *reason],
        )
        self.host_state = GaugeMetricFamily(
            ps.HOST_STATE,
            "1 for the host's connection state, with the reason in words.",
            labels=[*host, ps.LABEL_STATE, ps.LABEL_REASON],
        )
        self.sample_age = GaugeMetricFamily(
            ps.HOST_SAMPLE_AGE, "Seconds since the host's last sample arrived.", labels=host
        )
        self.decode_errors = CounterMetricFamily(
            ps.HOST_DECODE_ERRORS,
            "Lines of the host's agent stream that did not decode.",
            labels=host,
        )

    def all(self) -> list[Metric]:
        return [
            *self.readings.values(),
            self.gpu_verdict,
            self.gpu_reason,
            self.xids,
            self.host_verdict,
            self.host_reason,
            self.host_state,
            self.sample_age,
            self.decode_errors,
        ]


def _reason_values(r: Reason) -> tuple[str, str, str]:
    return (r.code, r.level.label, r.action.value)


def _gpu_values(
    host: str, index: int, info: GpuInfo | None, extra_values: Sequence[str]
) -> tuple[str, ...]:
    """A GPU's label values, in the order of _Families' GPU labels (host data made plain)."""
    uuid = "" if info is None else _text(info.uuid)
    model = "" if info is None else _text(info.name)
    return (host, str(index), uuid, model, *extra_values)


def _add_readings(
    fam: _Families,
    reading: GpuReading,
    slow: GpuReading | None,
    labels: tuple[str, ...],
) -> None:
    for s in ps.GPU_SERIES:
        value = getattr(reading, s.field)
        if value is None and slow is not None and s.field in ps.SLOW_FIELDS:
            value = getattr(slow, s.field)
        if value is not None:
            fam.readings[s.field].add_metric(labels, s.exported(float(value)))


def _xid_order(item: tuple[tuple[int | None, int], int]) -> tuple[int, int]:
    (index, xid), _ = item
    return (-1 if index is None else index, xid)


def _add_host(
    fam: _Families,
    host: HostSnapshot,
    extra: Sequence[tuple[str, str]],
    now: float,
    xids: dict[tuple[int | None, int], int],
) -> None:
    extra_values = [_text(host.labels.get(key, "")) for key, _ in extra]
    name = _text(host.name)
    hv = (name, *extra_values)
    fam.host_verdict.add_metric(hv, int(host.verdict.host.level))
    for r in host.verdict.host.reasons:
        if r.gpu is None:
            fam.host_reason.add_metric((*hv, *_reason_values(r)), 1)
    fam.host_state.add_metric((*hv, host.state.value, _text(host.state_reason)), 1)
    age = host.age_s(now)
    if age is not None:
        fam.sample_age.add_metric(hv, age)
    fam.decode_errors.add_metric(hv, host.decode_errors)

    infos = {g.index: g for g in host.hello.gpus} if host.hello is not None else {}
    jobs = _jobs_by_gpu(host)
    gpu_verdicts = host.verdict.gpus
    for index in sorted(infos.keys() | gpu_verdicts.keys()):
        gv = _gpu_values(name, index, infos.get(index), extra_values)
        job = jobs.get(index, "")
        verdict = gpu_verdicts.get(index)
        if verdict is not None:
            fam.gpu_verdict.add_metric((*gv, job), int(verdict.level))
            for r in verdict.reasons:
                fam.gpu_reason.add_metric((*gv, job, *_reason_values(r)), 1)
    for (on_gpu, xid), count in sorted(xids.items(), key=_xid_order):
        if on_gpu is None:  # the driver named no GPU: its labels are left empty
            gv = (name, "", "", "", *extra_values)
        else:
            gv = _gpu_values(name, on_gpu, infos.get(on_gpu), extra_values)
        fam.xids.add_metric((*gv, str(xid)), count)

    sample = host.sample
    if sample is None or host.state not in CURRENT_STATES:
        return
    slow = {r.index: r for r in host.slow_sample.gpus} if host.slow_sample is not None else {}
    for reading in sample.gpus:
        gv = _gpu_values(name, reading.index, infos.get(reading.index), extra_values)
        _add_readings(fam, reading, slow.get(reading.index), (*gv, jobs.get(reading.index, "")))


def _collector_families(view: ExportView, now: float) -> Iterator[Metric]:
    snap = view.snapshot
    hosts = GaugeMetricFamily(
        ps.COLLECTOR_HOSTS, "Hosts watched, by connection state.", labels=[ps.LABEL_STATE]
    )
    by_state = dict.fromkeys(HostState, 0)
    for host in snap.hosts:
        by_state[host.state] += 1
    for state, n in by_state.items():
        hosts.add_metric([state.value], n)
    yield hosts
    yield CounterMetricFamily(
        ps.COLLECTOR_DECODE_ERRORS,
        "Lines of the agents' streams that did not decode, every host.",
        value=sum(h.decode_errors for h in snap.hosts),
    )
    tally = view.tally
    if tally is None:  # a one-shot report: nothing counted over time
        return
    yield CounterMetricFamily(
        ps.COLLECTOR_SAMPLES, "Samples received from every host.", value=tally.samples
    )
    if tally.samples_per_s is not None:
        yield GaugeMetricFamily(
            ps.COLLECTOR_SAMPLE_RATE,
            f"Samples received per second, every host, over the last {ps.RATE_WINDOW_S:g} s.",
            value=tally.samples_per_s,
        )
    if view.publish_lag_s is not None:
        yield GaugeMetricFamily(
            ps.COLLECTOR_PUBLISH_LAG,
            "Seconds from the newest snapshot's publication to the exporter taking it.",
            value=view.publish_lag_s,
        )
    yield GaugeMetricFamily(
        ps.COLLECTOR_SNAPSHOT_AGE,
        "Seconds since the snapshot this scrape shows was published.",
        value=max(0.0, now - snap.t),
    )


def fleet_families(view: ExportView, now: float) -> list[Metric]:
    """Every metric family of `view` at time `now` (Unix seconds; sample ages are taken then)."""
    snap = view.snapshot
    extra = group_labels(snap.hosts)
    fam = _Families([name for _, name in extra])
    xids_by_host: dict[str, dict[tuple[int | None, int], int]] = {}
    if view.tally is not None:
        for (host_name, gpu, xid), count in view.tally.xids.items():
            xids_by_host.setdefault(host_name, {})[(gpu, xid)] = count
    for host in snap.hosts:
        _add_host(fam, host, extra, now, xids_by_host.get(host.name, {}))
    return [*fam.all(), *_collector_families(view, now)]


class FleetCollector(Collector):
    """A prometheus-client collector over the newest view `latest()` returns (None: nothing
    collected yet, so only what the registry's other collectors say)."""

    def __init__(
        self,
        latest: Callable[[], ExportView | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._latest = latest
        self._clock = clock

    def collect(self) -> Iterable[Metric]:
        view = self._latest()
        if view is None:
            return []
        return fleet_families(view, self._clock())


def exposition(view: ExportView, now: float | None = None) -> bytes:
    """`view` in Prometheus' text format (0.0.4), as node_exporter's textfile collector reads."""
    registry = CollectorRegistry(auto_describe=False)
    at = time.time() if now is None else now
    registry.register(FleetCollector(lambda: view, clock=lambda: at))
    return generate_latest(registry)
