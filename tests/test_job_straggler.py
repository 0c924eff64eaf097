"""The job-level straggler rule on hand-built fleets: each host judged by its own `HostHealth`
(so the host-level rule runs beside it, as in the monitor), the job-level rule over them.

A training job spread over hosts: every GPU does the same work, so a host that is slow as a
whole (every GPU of it at 75%) is invisible to the host-level rule and must be found against
the job's other hosts, with the same time rules: not before its outlying samples are counted,
not through a checkpoint dip, and never on a healthy job.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from statistics import median
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gputui.collect.feed import HostFeed, Source
from gputui.collect.monitor import FleetMonitor, HostPlan
from gputui.core.health import HostHealth
from gputui.core.job_straggler import PEERS, JobStragglerDetector, JobStragglerRule
from gputui.core.model import (
    FleetEvent,
    GpuInfo,
    GpuProcess,
    GpuReading,
    Hello,
    HostSnapshot,
    HostState,
    JobRef,
    Level,
    Sample,
)
from gputui.core.straggler import Judged, _Peers
from gputui.core.thresholds import Thresholds
from tests.test_health import H100, HEALTHY_FAST, HEALTHY_SLOW

TH = Thresholds()
T0 = 1_700_000_000.0
FOUR_HOSTS = {f"gpu{i:03d}": 8 for i in range(1, 5)}
SLOW_HOST = "gpu003"

Values = Callable[[str, int, float], dict[str, Any]]


def busy(host: str, gpu: int, t: float) -> dict[str, Any]:
    return {}


def hello(host: str, n: int) -> Hello:
    gpus = [
        msgspec.convert({"index": i, "uuid": f"GPU-{host}-{i}", **H100}, GpuInfo) for i in range(n)
    ]
    return Hello(
        v=1,
        host=host,
        agent_version="t",
        backend="sim",
        interval_s=1.0,
        slow_every=10,
        gpus=gpus,
    )


class Fleet:
    """Hosts of H100s, each GPU running a process of the job its host is listed under, sampled
    once a second (a slow sample every 10) and judged as the monitor judges them."""

    def __init__(
        self,
        layout: dict[str, int],
        jobs: Mapping[str, Iterable[str]] | None = None,
        thresholds: Thresholds = TH,
    ) -> None:
        self.layout = layout
        listed = jobs if jobs is not None else {"42": list(layout)}
        self.job_of = {host: job for job, hosts in listed.items() for host in hosts}
        self.hellos = {host: hello(host, n) for host, n in layout.items()}
        self.health = {host: HostHealth(thresholds) for host in layout}
        self.slow: dict[str, Sample] = {}
        self.rule = JobStragglerRule(thresholds)
        self.state: dict[str, HostState] = dict.fromkeys(layout, HostState.STREAMING)
        self.seq = 0
        self.events: list[FleetEvent] = []

    def sample(self, host: str, t: float, values: Values) -> Sample:
        slow = self.seq % 10 == 0
        job = self.job_of.get(host)
        gpus = []
        for i in range(self.layout[host]):
            fields: dict[str, Any] = {**HEALTHY_FAST, **(HEALTHY_SLOW if slow else {})}
            if slow and job is not None:
                ref = JobRef(kind="slurm", id=job, step="0")
                pid = 1000 + i
                fields["processes"] = [GpuProcess(pid=pid, uid=1000, user="alice", job=ref)]
            fields.update(values(host, i, t))
            gpus.append(GpuReading(index=i, **fields))
        return Sample(v=1, t=T0 + t, seq=self.seq, gpus=gpus, slow=slow)

    def tick(self, t: float, values: Values = busy) -> tuple[HostSnapshot, ...]:
        """Every host samples at `t` seconds; the snapshots as the monitor publishes them."""
        hosts = []
        for host in self.layout:
            sample = self.sample(host, t, values)
            if sample.slow:
                self.slow[host] = sample
            verdict = self.health[host].evaluate(self.hellos[host], sample, T0 + t)
            hosts.append(
                HostSnapshot(
                    name=host,
                    state=self.state[host],
                    hello=self.hellos[host],
                    sample=sample,
                    sample_t=T0 + t,
                    slow_sample=self.slow[host],
                    slow_sample_t=T0 + t,
                    verdict=verdict,
                )
            )
        self.seq += 1
        published, events = self.rule.apply(tuple(hosts), T0 + t)
        self.events.extend(events)
        return published

    def run(self, start: float, end: float, values: Values = busy) -> list[tuple[float, Flags]]:
        """Ticks from `start` to `end` seconds; (t, GPUs carrying a job-level reason) each."""
        return [
            (float(t), flagged(self.tick(float(t), values))) for t in range(int(start), int(end))
        ]


Flags = set[tuple[str, int]]


def flagged(hosts: Iterable[HostSnapshot], code: str = "job_straggler") -> Flags:
    return {
        (h.name, i)
        for h in hosts
        for i, v in h.verdict.gpus.items()
        for r in v.reasons
        if r.code == code
    }


def texts(hosts: Iterable[HostSnapshot], code: str = "job_straggler") -> list[str]:
    return [r.text for h in hosts for r in h.verdict.host.reasons if r.code == code]


def slow_host(host: str, factor: float, since: float = 0.0, until: float = 1e9) -> Values:
    """Every GPU of `host` at `factor` of the others' utilisation, SM clock and power."""

    def values(name: str, gpu: int, t: float) -> dict[str, Any]:
        if name != host or not since <= t < until:
            return {}
        return {
            "util_pct": 95.0 * factor,
            "sm_clock_mhz": int(1980 * factor // 15 * 15),
            "power_w": 600.0 * factor,
            "clock_events": 0,  # below the power cap: no clock-event bit explains it
        }

    return values


def all_gpus(host: str, n: int = 8) -> Flags:
    return {(host, i) for i in range(n)}


# -- a uniformly slow host -------------------------------------------------------------------


def test_a_uniformly_slow_host_of_a_four_host_job_is_flagged_after_its_outlying_samples() -> None:
    fleet = Fleet(FOUR_HOSTS)
    at = 60.0  # the job has been in step for a minute when one host slows down
    run = fleet.run(0, 90, slow_host(SLOW_HOST, 0.75, since=at))
    first = next(t for t, flags in run if flags)
    # Raised at its straggler_samples-th outlying sample, not one sample before.
    assert first == at + TH.straggler_samples - 1
    assert all(flags == set() for t, flags in run if t < first)
    assert all(flags == all_gpus(SLOW_HOST) for t, flags in run if t >= first)
    hosts = fleet.tick(90.0, slow_host(SLOW_HOST, 0.75, since=at))
    # The host-level rule cannot see it: the slow host's GPUs agree with each other.
    assert flagged(hosts, "straggler") == set()
    (slow,) = [h for h in hosts if h.name == SLOW_HOST]
    assert slow.verdict.host.level is Level.WARN
    text = texts([slow])[0]
    assert text == (
        "GPU0 straggles in job slurm:42: SM clock 1485 MHz vs the job's other hosts' "
        "median 1980 MHz"
    )
    # The event log says it once, for the eight GPUs together.
    (event,) = [e for e in fleet.events if e.kind == "job_straggler"]
    assert event.host == SLOW_HOST and event.level is Level.WARN and event.t == T0 + first
    assert event.text.startswith("GPU0,1,2,3,4,5,6,7 straggle in job slurm:42: SM clock 1485 MHz")


def test_a_slow_host_seen_at_the_first_look_is_judged_at_once() -> None:
    """As the host-level rule judges a host's first samples (gputui triage takes 5)."""
    run = Fleet(FOUR_HOSTS).run(0, 10, slow_host(SLOW_HOST, 0.75))
    assert next(t for t, flags in run if flags) == TH.straggler_samples - 1


def test_a_job_that_starts_later_waits_for_its_peers_to_be_in_step() -> None:
    fleet = Fleet({**FOUR_HOSTS, "gpu005": 8, "gpu006": 8}, {"7": ["gpu005", "gpu006"]})
    fleet.run(0, 20)  # the rule has looked at the fleet: job 7 on two hosts
    for host in FOUR_HOSTS:
        fleet.job_of[host] = "42"  # job 42 starts on four idle hosts, one of them slow
    run = fleet.run(20, 80, slow_host(SLOW_HOST, 0.75))
    first = next(t for t, flags in run if flags)
    # Its processes are seen at the next slow sample (t=20), then 30 s in step.
    assert first == 20 + TH.straggler_in_step_s
    assert run[-1][1] == all_gpus(SLOW_HOST)


def test_a_flagged_host_stays_through_a_checkpoint_and_clears_after_the_settle_time() -> None:
    fleet = Fleet(FOUR_HOSTS)
    slow = slow_host(SLOW_HOST, 0.75, until=100.0)

    def dip_at_100(host: str, gpu: int, t: float) -> dict[str, Any]:
        if 100 <= t < 115:  # every rank writes its checkpoint at once
            return {"util_pct": 2.0, "sm_clock_mhz": 1980, "power_w": 120.0}
        return slow(host, gpu, t)

    run = dict(fleet.run(0, 250, dip_at_100))
    assert run[50.0] == all_gpus(SLOW_HOST)
    # A dip is no judgement: the host, normal again after it, clears only after judged
    # normal for the settle time from its first normal sample (t=115).
    cleared = min(t for t, flags in run.items() if t > 100 and not flags)
    assert cleared == 115 + TH.straggler_settle_s
    assert all(not flags for t, flags in run.items() if t >= cleared)
    kinds = [(e.level, e.text) for e in fleet.events]
    assert kinds[0][0] is Level.WARN and len(kinds) == 2
    assert kinds[1] == (
        Level.OK,
        "GPU0,1,2,3,4,5,6,7 no longer flagged as straggling in job slurm:42",
    )


# -- what raises nothing ---------------------------------------------------------------------


def noisy(seed: int) -> Values:
    """A healthy job: every GPU's utilisation, clock and power wander by a few percent."""
    rng = random.Random(seed)

    def values(host: str, gpu: int, t: float) -> dict[str, Any]:
        return {
            "util_pct": rng.uniform(88.0, 100.0),
            "sm_clock_mhz": rng.choice([1890, 1935, 1980]),
            "power_w": rng.uniform(560.0, 700.0),
        }

    return values


def synchronized_dips(seed: int) -> Values:
    """Every 100 s the whole job writes a checkpoint for 15 s and evaluates for 10 s at half
    load; the hosts enter and leave each phase up to a second apart, as real ranks do."""
    rng = random.Random(seed)
    skew = {host: rng.uniform(0.0, 1.0) for host in FOUR_HOSTS}
    steady = noisy(seed)

    def values(host: str, gpu: int, t: float) -> dict[str, Any]:
        phase = (t + skew[host]) % 100
        if 80 <= phase < 95:
            return {"util_pct": rng.uniform(0.0, 6.0), "sm_clock_mhz": 1980, "power_w": 110.0}
        if 95 <= phase < 100:
            return {"util_pct": rng.uniform(35.0, 60.0), "sm_clock_mhz": 1980, "power_w": 330.0}
        return steady(host, gpu, t)

    return values


@pytest.mark.parametrize("seed", range(3))
def test_a_healthy_multi_host_job_raises_nothing(seed: int) -> None:
    fleet = Fleet(FOUR_HOSTS)
    assert all(not flags for _, flags in fleet.run(0, 600, noisy(seed)))
    assert fleet.events == []


@pytest.mark.parametrize("seed", range(3))
def test_a_job_in_synchronized_dips_raises_nothing(seed: int) -> None:
    fleet = Fleet(FOUR_HOSTS)
    assert all(not flags for _, flags in fleet.run(0, 600, synchronized_dips(seed)))
    assert fleet.events == []


def test_hosts_of_separate_jobs_are_not_compared() -> None:
    """Two two-host jobs, one at 75% throughout: its hosts agree with each other."""
    jobs = {"1": ["gpu001", "gpu002"], "2": ["gpu003", "gpu004"]}
    fleet = Fleet(FOUR_HOSTS, jobs)
    slow: Values = lambda h, g, t: slow_host(h, 0.75)(h, g, t) if h in jobs["2"] else {}  # noqa: E731
    assert all(not flags for _, flags in fleet.run(0, 60, slow))


# -- a one-GPU host, two hosts, the GPU's own reason, the host-level rule -------------------


def test_a_one_gpu_host_of_a_multi_host_job_is_judged_against_the_job() -> None:
    layout = {"gpu001": 8, "gpu002": 8, "gpu003": 8, "solo": 1}
    fleet = Fleet(layout)
    assert all(not flags for _, flags in fleet.run(0, 60))
    run = fleet.run(60, 100, slow_host("solo", 0.75, since=70.0))
    assert run[-1][1] == {("solo", 0)}
    assert next(t for t, flags in run if flags) == 70 + TH.straggler_samples - 1


def test_in_a_two_host_job_the_slower_host_is_the_one_flagged() -> None:
    fleet = Fleet({"gpu001": 8, "gpu002": 8})
    run = fleet.run(0, 40, slow_host("gpu002", 0.75))
    assert run[-1][1] == all_gpus("gpu002")


def test_the_gpu_s_own_reason_stands_beside_the_job_level_one() -> None:
    fleet = Fleet(FOUR_HOSTS)

    def capped(host: str, gpu: int, t: float) -> dict[str, Any]:
        # A power limit set low on one host: its GPUs hold the cap at 450 W, clocks trimmed.
        if host != SLOW_HOST:
            return {}
        return {"sm_clock_mhz": 1500, "power_w": 450.0, "power_limit_w": 450.0}

    hosts = [fleet.tick(float(t), capped) for t in range(10)][-1]
    assert texts(hosts)[0] == (
        "GPU0 straggles in job slurm:42: SM clock 1500 MHz vs the job's other hosts' median "
        "1980 MHz; GPU0 clock event: software power cap (limit 450 W)"
    )

    fleet = Fleet(FOUR_HOSTS)

    def downtrained(host: str, gpu: int, t: float) -> dict[str, Any]:
        # A host whose PCIe links trained down to Gen3: each GPU's own reason says it.
        if host != SLOW_HOST:
            return {}
        slow = {"util_pct": 65.0, "sm_clock_mhz": 1980, "power_w": 450.0, "clock_events": 0}
        return {**slow, "pcie_gen": 3} if fleet.seq % 10 == 0 else slow

    hosts = [fleet.tick(float(t), downtrained) for t in range(10)][-1]
    assert texts(hosts)[0] == (
        "GPU0 straggles in job slurm:42: util 65% vs the job's other hosts' median 95%; "
        "GPU0 PCIe Gen3 < max Gen5 at 65% util"
    )


def test_a_gpu_the_host_level_rule_flags_keeps_that_reason_alone() -> None:
    fleet = Fleet(FOUR_HOSTS)

    def one_slow_gpu(host: str, gpu: int, t: float) -> dict[str, Any]:
        return {"sm_clock_mhz": 1200, "clock_events": 0} if (host, gpu) == ("gpu001", 6) else {}

    hosts = [fleet.tick(float(t), one_slow_gpu) for t in range(10)][-1]
    assert flagged(hosts, "straggler") == {("gpu001", 6)}
    assert flagged(hosts) == set() and fleet.events == []


def test_power_far_below_the_job_is_an_outlier_unless_turned_off() -> None:
    def low_power(host: str, gpu: int, t: float) -> dict[str, Any]:
        return {"power_w": 400.0} if host == SLOW_HOST else {}

    fleet = Fleet(FOUR_HOSTS)
    hosts = [fleet.tick(float(t), low_power) for t in range(10)][-1]
    assert texts(hosts)[0].startswith("GPU0 straggles in job slurm:42: power 400 W vs")
    off = Fleet(FOUR_HOSTS, thresholds=Thresholds(job_straggler_power_drop_pct=100.0))
    assert flagged([off.tick(float(t), low_power) for t in range(10)][-1]) == set()


def test_a_host_out_of_view_loses_its_flags_and_is_no_yardstick() -> None:
    fleet = Fleet(FOUR_HOSTS)
    slow = slow_host(SLOW_HOST, 0.75)
    assert fleet.run(0, 10, slow)[-1][1] == all_gpus(SLOW_HOST)
    fleet.state[SLOW_HOST] = HostState.STALE
    assert fleet.run(10, 12, slow)[-1][1] == set()
    # With two hosts stale, the two left are one slow and one not: the slow one is judged
    # against the single other host still in view.
    fleet.state[SLOW_HOST] = HostState.STREAMING
    fleet.state["gpu001"] = fleet.state["gpu002"] = HostState.UNREACHABLE
    run = fleet.run(12, 60, slow)
    assert run[-1][1] == all_gpus(SLOW_HOST)


def test_a_host_back_in_view_is_in_step_from_its_first_sample_back() -> None:
    fleet = Fleet(FOUR_HOSTS)
    fleet.run(0, 40)
    fleet.state[SLOW_HOST] = HostState.STALE
    fleet.run(40, 50)
    fleet.state[SLOW_HOST] = HostState.STREAMING
    run = fleet.run(50, 100, slow_host(SLOW_HOST, 0.75, since=70.0))
    # Five outlying samples from t=70, but in step only since t=50: raised at t=80.
    assert next(t for t, flags in run if flags) == 50 + TH.straggler_in_step_s


def test_a_host_the_job_leaves_loses_its_flags_at_once() -> None:
    fleet = Fleet(FOUR_HOSTS)
    slow = slow_host(SLOW_HOST, 0.75)
    assert fleet.run(0, 15, slow)[-1][1] == all_gpus(SLOW_HOST)
    del fleet.job_of[SLOW_HOST]  # its ranks are gone: the job goes on with three hosts
    run = dict(fleet.run(15, 30, slow))
    assert run[19.0] == all_gpus(SLOW_HOST)  # listed in the slow sample of t=10 still
    assert run[20.0] == set() and run[29.0] == set()


# -- the statistics: the host-level rule's, with the whole host taken out ----------------------


def plain_judge(reading: GpuReading, others: list[GpuReading]) -> str | Judged:
    """The job-level rule in words: medians of the job's GPUs on the other hosts."""
    utils = [p.util_pct for p in others if p.util_pct is not None]
    if len(utils) < TH.straggler_min_peers:
        return Judged.NO_YARDSTICK
    peer_util = median(utils)
    if peer_util < TH.straggler_min_util_pct:
        return Judged.NO_YARDSTICK
    near = [u for u in utils if abs(u - peer_util) <= TH.straggler_peer_spread_pct]
    if len(near) < 0.75 * len(utils):
        return Judged.NO_YARDSTICK
    if reading.util_pct is not None and reading.util_pct < peer_util - TH.straggler_util_drop_pct:
        return f"util {reading.util_pct:.0f}% vs {PEERS} median {peer_util:.0f}%"
    clocks = [p.sm_clock_mhz for p in others if p.sm_clock_mhz is not None]
    if reading.sm_clock_mhz is not None and len(clocks) >= TH.straggler_min_peers:
        peer_clock = median(clocks)
        if reading.sm_clock_mhz < peer_clock * (1 - TH.straggler_clock_drop_pct / 100):
            return f"SM clock {reading.sm_clock_mhz} MHz vs {PEERS} median {peer_clock:.0f} MHz"
    powers = [p.power_w for p in others if p.power_w is not None]
    if reading.power_w is not None and len(powers) >= TH.straggler_min_peers:
        peer_power = median(powers)
        if reading.power_w < peer_power * (1 - TH.job_straggler_power_drop_pct / 100):
            return f"power {reading.power_w:.0f} W vs {PEERS} median {peer_power:.0f} W"
    return Judged.NORMAL


def plain_job_outlier(reading: GpuReading, others: list[GpuReading]) -> str | None:
    judged = plain_judge(reading, others)
    return judged if isinstance(judged, str) else None


gpu = st.tuples(
    st.one_of(st.none(), st.integers(0, 100).map(float)),
    st.one_of(st.none(), st.integers(200, 2000)),
    st.one_of(st.none(), st.integers(50, 700).map(float)),
)


@given(st.lists(st.lists(gpu, min_size=1, max_size=5), min_size=2, max_size=5))
def test_medians_without_the_host_match_the_definition(
    hosts: list[list[tuple[float | None, int | None, float | None]]],
) -> None:
    readings = [
        [
            GpuReading(index=i, util_pct=u, sm_clock_mhz=c, power_w=p)
            for i, (u, c, p) in enumerate(h)
        ]
        for h in hosts
    ]
    every = [r for h in readings for r in h]
    peers = _Peers.of(
        [r.util_pct for r in every if r.util_pct is not None],
        [r.sm_clock_mhz for r in every if r.sm_clock_mhz is not None],
        [r.power_w for r in every if r.power_w is not None],
        peers=PEERS,
        power_drop_pct=TH.job_straggler_power_drop_pct,
    )
    for n, host in enumerate(readings):
        stick = peers.yardstick(
            TH,
            sorted(r.util_pct for r in host if r.util_pct is not None),
            sorted(float(r.sm_clock_mhz) for r in host if r.sm_clock_mhz is not None),
            sorted(r.power_w for r in host if r.power_w is not None),
        )
        others = [r for m, h in enumerate(readings) if m != n for r in h]
        for reading in host:
            judged = None if stick is None else peers.compare(reading, stick, TH)
            assert (judged if isinstance(judged, str) else None) == plain_job_outlier(
                reading, others
            )


# -- in the monitor ----------------------------------------------------------------------------


class Idle(Source):
    """A source that is never started: the test feeds the hosts' runtimes itself."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, feed: HostFeed) -> None:  # pragma: no cover - never started
        raise AssertionError("not started in this test")


def test_the_monitor_publishes_job_level_reasons_and_events_beside_the_hosts_own() -> None:
    now = [T0]
    plans = [HostPlan(source=Idle(name), interval_s=1.0) for name in FOUR_HOSTS]
    monitor = FleetMonitor(plans, tick_s=1.0, clock=lambda: now[0])
    feeder = Fleet(FOUR_HOSTS)  # makes the samples; the monitor's runtimes judge them
    for name, runtime in monitor.hosts.items():
        runtime.on_message(feeder.hellos[name])
    slow = slow_host(SLOW_HOST, 0.75)
    snaps = []
    for t in range(8):
        now[0] = T0 + t
        for name, runtime in monitor.hosts.items():
            runtime.on_message(feeder.sample(name, float(t), slow))
        feeder.seq += 1
        snaps.append(monitor.publish())
    last = snaps[-1]
    assert flagged(last.hosts) == all_gpus(SLOW_HOST)
    # The host's own runtime keeps its own verdict: the job-level reason is the fleet's.
    assert monitor.hosts[SLOW_HOST].verdict.host.level is Level.OK
    raised = [e for s in snaps for e in s.events if e.kind == "job_straggler"]
    assert len(raised) == 1 and raised[0].host == SLOW_HOST
    assert [e for e in monitor.events if e.kind == "job_straggler"] == raised
    # Nothing changed between two publishes: the same merged snapshot, not a new one.
    again = monitor.publish()
    (a,) = [h for h in last.hosts if h.name == SLOW_HOST]
    (b,) = [h for h in again.hosts if h.name == SLOW_HOST]
    assert a is b


# -- the shortcuts change nothing ------------------------------------------------------------


class PlainJobStragglers:
    """One job's rule without shortcuts: every GPU judged against the other hosts' GPUs at
    every sample, the time rules as docs/health.md words them."""

    def __init__(self) -> None:
        self.in_step_since: dict[tuple[str, int], float | None] = {}
        self.outlying: dict[tuple[str, int], int] = {}
        self.normal_since: dict[tuple[str, int], float] = {}
        self.flagged: dict[tuple[str, int], str] = {}
        self.first = True

    def update(self, hosts: dict[str, list[GpuReading] | None], t: float) -> dict[Any, str]:
        th = TH
        groups = {
            name: [r for r in readings if r.status == "ok" and _answers(r)]
            for name, readings in hosts.items()
            if readings is not None
        }
        groups = {name: rs for name, rs in groups.items() if rs}
        if len(groups) < 2:
            groups = {}
        present = {(name, r.index) for name, rs in groups.items() for r in rs}
        for key in [k for k in self.in_step_since if k not in present]:
            del self.in_step_since[key], self.outlying[key]
            self.normal_since.pop(key, None)
            self.flagged.pop(key, None)
        for name, rs in groups.items():
            others = [r for other, g in groups.items() if other != name for r in g]
            for r in rs:
                key = (name, r.index)
                judged = plain_judge(r, others)
                if judged is Judged.NO_YARDSTICK:
                    self.in_step_since[key] = None
                    self.outlying[key] = 0
                    continue
                since = self.in_step_since.get(key)
                if since is None:
                    since = self.in_step_since[key] = float("-inf") if self.first else t
                sustained = t - since >= th.straggler_in_step_s
                if isinstance(judged, str):
                    self.outlying[key] = self.outlying.get(key, 0) + 1
                    self.normal_since.pop(key, None)
                    if key in self.flagged or (
                        self.outlying[key] >= th.straggler_samples and sustained
                    ):
                        self.flagged[key] = judged
                else:
                    self.outlying[key] = 0
                    if key in self.flagged:
                        start = self.normal_since.setdefault(key, t)
                        if sustained and t - start >= th.straggler_settle_s:
                            del self.flagged[key], self.normal_since[key]
        if groups:
            self.first = False
        return dict(self.flagged)


def _answers(r: GpuReading) -> bool:
    return r.util_pct is not None or r.sm_clock_mhz is not None


def snapshots(hosts: dict[str, list[GpuReading] | None], t: float) -> list[HostSnapshot]:
    """Host snapshots of one job "1" on every GPU listed; a host given None is out of view."""
    out = []
    for name, readings in hosts.items():
        n = len(readings) if readings is not None else 3
        ref = JobRef(kind="slurm", id="1")
        listed = [GpuReading(index=i, processes=[GpuProcess(pid=i + 1, job=ref)]) for i in range(n)]
        slow = Sample(v=1, t=T0, seq=0, gpus=listed, slow=True)
        sample = Sample(v=1, t=T0 + t, seq=1, gpus=readings or [])
        out.append(
            HostSnapshot(
                name=name,
                state=HostState.STREAMING if readings is not None else HostState.STALE,
                sample=sample,
                sample_t=T0 + t,
                slow_sample=slow,
            )
        )
    return out


values = st.tuples(
    st.sampled_from([None, 0.0, 40.0, 60.0, 70.0, 74.0, 75.0, 90.0, 99.0, 100.0]),
    st.sampled_from([None, 300, 1500, 1700, 1782, 1980]),
    st.sampled_from([None, 100.0, 440.0, 450.0, 600.0]),
    st.sampled_from(["ok", "ok", "ok", "error"]),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1, 4), min_size=2, max_size=4),  # GPUs per host
    st.data(),
)
def test_the_rule_flags_what_the_plain_rule_flags(sizes: list[int], data: st.DataObject) -> None:
    names = [f"h{i}" for i in range(len(sizes))]
    detector, plain = JobStragglerDetector(), PlainJobStragglers()
    t = 0.0
    for _ in range(data.draw(st.integers(1, 10))):
        hosts: dict[str, list[GpuReading] | None] = {}
        for name, n in zip(names, sizes, strict=True):
            gpus = data.draw(st.one_of(st.none(), st.lists(values, min_size=n, max_size=n)))
            hosts[name] = (
                None
                if gpus is None
                else [
                    GpuReading(index=i, util_pct=u, sm_clock_mhz=c, power_w=p)
                    if status == "ok"
                    else GpuReading(index=i, status="error")
                    for i, (u, c, p, status) in enumerate(gpus)
                ]
            )
        repeat, dt = data.draw(st.integers(1, 8)), data.draw(st.sampled_from([1.0, 7.0, 31.0]))
        for _ in range(repeat):
            t += dt
            found = {(f.host, f.gpu): f.why for f in detector.update(snapshots(hosts, t))}
            assert found == plain.update(hosts, t)


# -- a job over two GPU models ---------------------------------------------------------------


def a100(fleet: Fleet, *hosts: str) -> None:
    """`hosts` run A100s: another model name, a 400 W limit and a 1410 MHz SM clock."""
    for host in hosts:
        gpus = [
            msgspec.structs.replace(
                g, name="NVIDIA A100-SXM4-80GB", power_limit_w=400.0, sm_clock_max_mhz=1410
            )
            for g in fleet.hellos[host].gpus
        ]
        fleet.hellos[host] = msgspec.structs.replace(fleet.hellos[host], gpus=gpus)


def on_a100(*hosts: str, slow: str | None = None, factor: float = 1.0) -> Values:
    """A100 hosts at their own clock and power, the `slow` one at `factor` of them."""

    def values(name: str, gpu: int, t: float) -> dict[str, Any]:
        if name not in hosts:
            return {}
        f = factor if name == slow else 1.0
        out: dict[str, Any] = {
            "util_pct": 95.0 * f,
            "sm_clock_mhz": int(1410 * f // 15 * 15),
            "power_w": 380.0 * f,
            "power_limit_w": 400.0,
        }
        if name == slow:
            out["clock_events"] = 0  # below the power cap: no clock-event bit explains it
        return out

    return values


def test_a_job_over_two_models_compares_each_gpu_with_its_own_model_only() -> None:
    hosts = {f"gpu{i:03d}": 8 for i in range(1, 7)}
    fleet = Fleet(hosts)
    a100(fleet, "gpu005", "gpu006")
    # Every A100 is 29% below the H100s' clock and 37% below their power, doing the same work.
    run = fleet.run(0, 120, on_a100("gpu005", "gpu006"))
    assert all(flags == set() for _, flags in run)
    assert [e for e in fleet.events if e.kind == "job_straggler"] == []


def test_a_slow_host_among_a_jobs_a100s_is_found_against_the_a100s() -> None:
    hosts = {f"gpu{i:03d}": 8 for i in range(1, 8)}
    fleet = Fleet(hosts)
    a100(fleet, "gpu005", "gpu006", "gpu007")
    values = on_a100("gpu005", "gpu006", "gpu007", slow="gpu007", factor=0.75)
    run = fleet.run(0, 90, values)
    assert run[-1][1] == all_gpus("gpu007")
    slow = [h for h in fleet.tick(90.0, values) if h.name == "gpu007"]
    # The other A100s' clock is the yardstick, not the H100s' 1980 MHz.
    assert texts(slow)[0] == (
        "GPU0 straggles in job slurm:42: SM clock 1050 MHz vs the job's other hosts' "
        "median 1410 MHz"
    )
