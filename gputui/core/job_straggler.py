"""Job-level stragglers: a GPU slower than its job's GPUs on the job's other hosts.

The host-level rule (core/straggler.py) compares a GPU with the other GPUs of its host, so a
host that is slow as a whole (a lower power cap, a hot aisle, a slow PCIe root, a BIOS setting)
is invisible to it: its GPUs agree with each other. In a job spread over hosts every rank does
the same work and waits for the slowest at every all-reduce, so the yardstick of a GPU is the
job's GPUs on the job's other hosts, by their median: one slow host cannot drag its own
yardstick, and a host with a single GPU of the job is judged against the job.

Everything else is the host-level rule's, shared rather than copied: the same statistics
(`_Peers`: utilisation, SM clock, and here power draw too, each against the median), the same
yardstick (busy peers, 3 in 4 of them in step) and the same time rules (`_Timeline`: in step
for 30 s and 5 outlying samples in a row to raise, 60 s judged normal to clear), so a
checkpoint write or an evaluation phase, which every rank of a job enters together, is no
judgement and raises nothing. A step time per rank, once the training-loop heartbeat reports
one, joins here as one more statistic (see `_gpu_values`).

Run once per tick by the monitor, over the jobs that span two hosts or more; a GPU is judged
when its host has a new sample, at the time that sample arrived (the collector's clock, which
the hosts of a job share; their own clocks may disagree). Findings become `job_straggler`
reasons on the GPUs' verdicts, with the GPU's own reason beside them when it has one (a
throttle, a PCIe link trained down), and events when they are raised or cleared. A GPU the
host-level rule already flags keeps that reason alone: it names the nearer peers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import msgspec

from gputui.core.jobs import Job, build_jobs, gpu_jobs
from gputui.core.model import (
    CLOCK_EVENT_GPU_IDLE,
    CLOCK_EVENT_SW_POWER_CAP,
    FleetEvent,
    FleetSnapshot,
    GpuReading,
    Hello,
    HostSnapshot,
    HostState,
    HostVerdict,
    Level,
    Reason,
    Sample,
    clock_event_words,
)
from gputui.core.reasons import fmt_num, reason, verdict_of
from gputui.core.straggler import Judged, _Peers, _Timeline, _uniform
from gputui.core.thresholds import DEFAULT_THRESHOLDS, Thresholds

CODE = "job_straggler"
PEERS = "the job's other hosts'"
_JUDGED_STATES = (HostState.STREAMING, HostState.DEGRADED)
# A GPU's own reasons that explain why it is slow, shown beside the job-level finding.
_SLOWING_CODES = frozenset(
    {
        "hw_thermal",
        "hw_power_brake",
        "hw_slowdown",
        "sw_thermal",
        "temp_slowdown",
        "pcie_downgraded",
    }
)
# Clock-event bits that say nothing about speed when no reason of the GPU's own explains it.
_QUIET_BITS = CLOCK_EVENT_GPU_IDLE

GpuKey = tuple[str, int]  # (host, GPU index)


class Finding(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A GPU that straggles behind its job."""

    job: str  # the job's key: slurm:4242
    host: str
    gpu: int
    why: str  # "SM clock 1485 MHz vs the job's other hosts' median 1980 MHz"


class _JobState:
    """One job's time rules, and the judgement that would change none of them."""

    __slots__ = ("layout", "rest", "timeline")

    def __init__(self, thresholds: Thresholds, started: bool) -> None:
        self.timeline: _Timeline[GpuKey] = _Timeline(thresholds)
        # A job seen at the rule's first look is judged as the host-level rule judges a host's
        # first samples (in step since ever: a short look judges); one that starts later waits
        # for its peers to have been in step for `straggler_in_step_s`.
        self.timeline.started = started
        self.rest: Judged | None = None
        # The job's layout when every GPU of it last answered: no GPU outside it has a track.
        self.layout: _Layout | None = None


def _reading(sample: Sample, gpu: int) -> GpuReading | None:
    """The reading of GPU `gpu` in `sample`: at its index in the list, as agents send them."""
    gpus = sample.gpus
    if gpu < len(gpus) and gpus[gpu].index == gpu:
        return gpus[gpu]
    return next((r for r in gpus if r.index == gpu), None)


_Attribution = tuple[tuple[int, str], ...]


def _attribution(sample: Sample | None) -> _Attribution:
    """The (GPU, job key) pairs of a slow sample's processes and GPUs: what build_jobs groups."""
    if sample is None:
        return ()
    return tuple((r.index, job.key) for r in sample.gpus for job in gpu_jobs(r))


class _Layout(NamedTuple):
    """A job's GPUs of one model on two hosts or more: the job's key, the model and, host by
    host, the GPU indices it runs on."""

    key: str
    model: str
    hosts: tuple[tuple[str, tuple[int, ...]], ...]
    gpus: int  # how many


_Models = tuple[tuple[int, str], ...]  # (GPU index, model name) of a host's inventory


def _models(hello: Hello | None) -> _Models:
    return tuple((g.index, g.name) for g in hello.gpus) if hello is not None else ()


def _layouts(job: Job, models: dict[str, dict[int, str]]) -> list[_Layout]:
    """The job's GPUs grouped by model, each group on two hosts or more. An A100 runs at
    other clocks and power than an H100 on the same work, so a job that spans models (one
    Slurm job over two partitions) is judged model by model, never one against the other."""
    on: dict[str, dict[str, list[int]]] = {}  # model -> host -> GPU indices
    for g in job.gpus:
        model = models.get(g.host, {}).get(g.gpu, "")
        on.setdefault(model, {}).setdefault(g.host, []).append(g.gpu)
    out = []
    for model, by_host in on.items():
        if len(by_host) >= 2:
            hosts = tuple((host, tuple(gpus)) for host, gpus in by_host.items())
            out.append(_Layout(job.key, model, hosts, sum(len(gpus) for _, gpus in hosts)))
    return out


class _HostGpus:
    """One host's GPUs of a job at this tick: the readings judged, and their values.

    The seam for a step time: a per-rank step time (higher is slower), once the training
    loop reports one, is gathered here beside these and compared in `_Peers` as power is."""

    __slots__ = ("clocks", "name", "powers", "readings", "utils")

    def __init__(self, name: str, readings: list[GpuReading]) -> None:
        self.name = name
        self.readings = readings
        self.utils = [r.util_pct for r in readings if r.util_pct is not None]
        self.clocks = [float(r.sm_clock_mhz) for r in readings if r.sm_clock_mhz is not None]
        self.powers = [r.power_w for r in readings if r.power_w is not None]


def _judgeable(sample: Sample, indices: tuple[int, ...]) -> list[GpuReading]:
    """The readings of these GPUs that answered with a utilisation or an SM clock."""
    gpus = sample.gpus
    n = len(gpus)
    out = []
    for i in indices:
        r = gpus[i] if i < n else None  # where agents put it; searched for only if not there
        if r is None or r.index != i:
            r = _reading(sample, i)
        if (
            r is not None
            and r.status == "ok"
            and (r.util_pct is not None or r.sm_clock_mhz is not None)
        ):
            out.append(r)
    return out


class JobStragglerDetector:
    """Judges each GPU of every multi-host job against the job's other hosts over time."""

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.thresholds = thresholds or DEFAULT_THRESHOLDS
        self._jobs: dict[tuple[str, str], _JobState] = {}  # (job, GPU model) -> its state
        self._started = False  # a job has been judged: later jobs wait to be in step
        self._judged_t: dict[str, float] = {}  # host -> arrival time of its sample judged last
        # Per host: its last slow sample and the (GPU, job) pairs it lists, its hello and the
        # model of each GPU.
        self._attributions: dict[
            str, tuple[Sample | None, _Attribution, Hello | None, _Models]
        ] = {}
        self._multi: list[_Layout] = []  # the jobs on two hosts or more

    def _multi_host_jobs(self, hosts: Sequence[HostSnapshot]) -> list[_Layout]:
        """The jobs on two hosts or more, grouped by build_jobs again only when a host's
        attribution changed: a slow sample arrives every tick somewhere in a large fleet, but
        the jobs it lists change only when a job starts, ends or moves."""
        changed = len(hosts) != len(self._attributions)
        for h in hosts:
            cached = self._attributions.get(h.name)
            if cached is not None and cached[0] is h.slow_sample and cached[2] is h.hello:
                continue
            attribution = _attribution(h.slow_sample)
            models = cached[3] if cached is not None and cached[2] is h.hello else _models(h.hello)
            if cached is None or cached[1] != attribution or cached[3] != models:
                changed = True
            self._attributions[h.name] = (h.slow_sample, attribution, h.hello, models)
        if changed:
            names = {h.name for h in hosts}
            for name in [n for n in self._attributions if n not in names]:
                del self._attributions[name]
            by_host = {name: dict(cached[3]) for name, cached in self._attributions.items()}
            jobs = build_jobs(FleetSnapshot(t=0.0, hosts=tuple(hosts)))
            self._multi = [
                layout for job in jobs if len(job.hosts) >= 2 for layout in _layouts(job, by_host)
            ]
        return self._multi

    def update(self, hosts: Sequence[HostSnapshot]) -> list[Finding]:
        """Feed the fleet's host snapshots of one tick; the GPUs that straggle behind their job."""
        by_name = {
            h.name: h
            for h in hosts
            if h.state in _JUDGED_STATES and h.sample is not None and h.sample_t is not None
        }
        fresh = {n for n, h in by_name.items() if self._judged_t.get(n) != h.sample_t}
        first_look = not self._started
        seen: set[tuple[str, str]] = set()
        for job in self._multi_host_jobs(hosts):
            seen.add((job.key, job.model))
            if self._judge_job(job, by_name, fresh, first_look):
                self._started = True
        for key in [k for k in self._jobs if k not in seen]:
            del self._jobs[key]  # the job ended or no longer spans hosts: no stale flag
        self._judged_t = {n: h.sample_t for n, h in by_name.items() if h.sample_t is not None}
        return [
            Finding(job=key, host=host, gpu=gpu, why=why)
            for (key, _model), state in self._jobs.items()
            for (host, gpu), why in state.timeline.flagged.items()
        ]

    def _judge_job(
        self, job: _Layout, hosts: dict[str, HostSnapshot], fresh: set[str], first_look: bool
    ) -> bool:
        """Judge the job's GPUs whose hosts have a new sample; whether any was judged."""
        th = self.thresholds
        state = self._jobs.get((job.key, job.model))
        if state is None:
            state = self._jobs[(job.key, job.model)] = _JobState(th, started=not first_look)
        timeline = state.timeline
        # The job's GPUs with readings, by host: hosts in view and GPUs that answer only.
        groups = []
        for name, indices in job.hosts:
            host = hosts.get(name)
            if host is not None and host.sample is not None:
                readings = _judgeable(host.sample, indices)
                if readings:
                    groups.append(_HostGpus(name, readings))
        if len(groups) < 2:
            groups = []  # one host left in view: nothing to compare it with
        judged_now = sum(len(g.readings) for g in groups)
        full = judged_now == job.gpus and len(groups) == len(job.hosts)
        if not (full and state.layout is job):
            # Some GPU has no reading, or the job moved: GPUs without one lose their history.
            # (Every GPU of an unchanged job answering, as nearly always: none has a track
            # outside it, since it was last checked.)
            present = {(g.name, r.index) for g in groups for r in g.readings}
            for key in [k for k in timeline.tracks if k not in present]:
                timeline.forget(key)  # no reading: no judgement, and no stale flag
                state.rest = None
            state.layout = job if full else None
        due = [g for g in groups if g.name in fresh]
        if not due:
            return False
        utils = [u for g in groups for u in g.utils]
        clocks = [c for g in groups for c in g.clocks]
        powers = [p for g in groups for p in g.powers]
        fewest = len(utils) - max(len(g.utils) for g in groups)
        drop = th.job_straggler_power_drop_pct
        every = _uniform(utils, clocks, th, fewest, powers, drop)
        if every is not None and every is state.rest and len(timeline.tracks) == judged_now:
            return True  # another such sample changes nothing, and no GPU is new
        peers = _Peers.of(utils, clocks, powers, peers=PEERS, power_drop_pct=drop)
        for g in due:
            t = hosts[g.name].sample_t
            assert t is not None
            judged: str | Judged | None = every
            if every is None:
                # The yardstick of every GPU of this host: the job less this host.
                stick = peers.yardstick(th, sorted(g.utils), sorted(g.clocks), sorted(g.powers))
            for r in g.readings:
                if every is None:
                    judged = Judged.NO_YARDSTICK if stick is None else peers.compare(r, stick, th)
                assert judged is not None
                timeline.judge((g.name, r.index), judged, t)
        timeline.started = True
        state.rest = timeline.at_rest()
        return True


def _own_reasons(host: HostSnapshot, gpu: int) -> str:
    """What the GPU's own readings say about its speed: its slowing reasons, else the
    clock-event bits the health rules take as normal (a software power cap, with its limit)."""
    verdict = host.verdict.gpus.get(gpu)
    texts = [r.text for r in verdict.reasons if r.code in _SLOWING_CODES] if verdict else []
    if texts:
        return "; ".join(texts)
    r = _reading(host.sample, gpu) if host.sample is not None else None
    mask = (r.clock_events or 0) & ~_QUIET_BITS if r is not None else 0
    if not mask or r is None:
        return ""
    text = f"GPU{gpu} clock event: {', '.join(clock_event_words(mask))}"
    if mask & CLOCK_EVENT_SW_POWER_CAP and r.power_limit_w is not None:
        text += f" (limit {fmt_num(round(r.power_limit_w))} W)"
    return text


def finding_reason(finding: Finding, host: HostSnapshot) -> Reason:
    """The `job_straggler` reason of a finding, with the GPU's own reason beside it."""
    text = f"GPU{finding.gpu} straggles in job {finding.job}: {finding.why}"
    own = _own_reasons(host, finding.gpu)
    return reason(CODE, finding.gpu, f"{text}; {own}" if own else text)


def _host_level(host: HostSnapshot, gpu: int) -> bool:
    verdict = host.verdict.gpus.get(gpu)
    return verdict is not None and any(r.code == "straggler" for r in verdict.reasons)


def with_reasons(host: HostSnapshot, reasons: Sequence[Reason]) -> HostSnapshot:
    """`host` with `reasons` (one per GPU at most) added to its GPUs' verdicts and its own."""
    if not reasons:
        return host
    gpus = dict(host.verdict.gpus)
    for r in reasons:
        assert r.gpu is not None
        old = gpus[r.gpu]
        gpus[r.gpu] = verdict_of([*old.reasons, r], old.level)
    old_host = host.verdict.host
    verdict = HostVerdict(host=verdict_of([*old_host.reasons, *reasons], old_host.level), gpus=gpus)
    return msgspec.structs.replace(host, verdict=verdict)


def _gpus(indices: Sequence[int]) -> str:
    return f"GPU{','.join(map(str, sorted(indices)))}"


class JobStragglerRule:
    """The monitor's side of the rule: judge, add the reasons to the verdicts, log changes."""

    def __init__(self, thresholds: Thresholds | None = None) -> None:
        self.detector = JobStragglerDetector(thresholds)
        self._shown: dict[tuple[str, str, int], str] = {}  # (job, host, GPU) -> why, last tick
        # Per host: the snapshot and reasons a merged snapshot was made from, and that snapshot.
        self._merged: dict[str, tuple[HostSnapshot, tuple[Reason, ...], HostSnapshot]] = {}

    def apply(
        self, hosts: tuple[HostSnapshot, ...], t: float
    ) -> tuple[tuple[HostSnapshot, ...], list[FleetEvent]]:
        """The host snapshots with the job-level reasons in their verdicts, and the events
        of the GPUs raised or cleared since the last call (at collector time `t`)."""
        findings = self.detector.update(hosts)
        if not findings and not self._shown:
            self._merged.clear()
            return hosts, []
        by_name = {h.name: h for h in hosts}
        shown: dict[tuple[str, str, int], str] = {}
        reasons: dict[str, dict[int, Reason]] = {}
        for f in findings:
            host = by_name[f.host]
            if f.gpu not in host.verdict.gpus or _host_level(host, f.gpu):
                continue
            shown[(f.job, f.host, f.gpu)] = f.why
            # One reason per GPU: a GPU shared by two jobs names the first that finds it.
            reasons.setdefault(f.host, {}).setdefault(f.gpu, finding_reason(f, host))
        events = self._events(shown, by_name, t)
        self._shown = shown
        out = []
        for host in hosts:
            mine = tuple(reasons.get(host.name, {}).values())
            if not mine:
                self._merged.pop(host.name, None)
                out.append(host)
                continue
            cached = self._merged.get(host.name)
            if cached is not None and cached[0] is host and cached[1] == mine:
                out.append(cached[2])  # unchanged: the same object, as the host's own cache
                continue
            merged = with_reasons(host, mine)
            self._merged[host.name] = (host, mine, merged)
            out.append(merged)
        return tuple(out), events

    def _events(
        self,
        shown: dict[tuple[str, str, int], str],
        hosts: dict[str, HostSnapshot],
        t: float,
    ) -> list[FleetEvent]:
        """One event per host and job whose GPUs were raised, and one per those cleared."""
        raised: dict[tuple[str, str], list[int]] = {}
        cleared: dict[tuple[str, str], list[int]] = {}
        for key in shown.keys() - self._shown.keys():
            raised.setdefault(key[:2], []).append(key[2])
        for key in self._shown.keys() - shown.keys():
            cleared.setdefault(key[:2], []).append(key[2])
        events = []
        for (job, host), gpus in sorted(raised.items()):
            first = min(gpus)
            verb = "straggles" if len(gpus) == 1 else "straggle"
            text = f"{_gpus(gpus)} {verb} in job {job}: {shown[(job, host, first)]}"
            own = _own_reasons(hosts[host], first) if host in hosts else ""
            events.append(
                FleetEvent(
                    t=t,
                    host=host,
                    kind=CODE,
                    text=f"{text}; {own}" if own else text,
                    level=Level.WARN,
                    gpu=first if len(gpus) == 1 else None,
                )
            )
        for (job, host), gpus in sorted(cleared.items()):
            events.append(
                FleetEvent(
                    t=t,
                    host=host,
                    kind=CODE,
                    text=f"{_gpus(gpus)} no longer flagged as straggling in job {job}",
                    level=Level.OK,
                    gpu=gpus[0] if len(gpus) == 1 else None,
                )
            )
        return events
