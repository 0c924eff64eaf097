"""Jobs from a Prometheus source: the job label of a GPU's series (dcgm-exporter's `hpc_job`,
`job_id` where a site relabels it, gputui exporter's own `job_id`) attributes the GPU to its
job in the model the SSH agent's attribution fills, so jobs, per-job risk and the job-level
straggler rule work without SSH. Only the job per GPU is known: no process is made up.

A scripted Prometheus answers the source's queries here; tests/test_prom_jobs_system.py runs
the same through a real Prometheus and `gputui jobs`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from gputui.collect.host_runtime import HostRuntime
from gputui.collect.prom_api import VectorSample
from gputui.collect.prom_fleet import FleetReader, HostTracker, jobs_of
from gputui.collect.prom_source import PromFleetSource
from gputui.config.model import PromSettings
from gputui.config.schema import SeriesKind
from gputui.core.job_straggler import JobStragglerRule
from gputui.core.jobs import build_jobs, job_status, jobs_on_host
from gputui.core.model import MAX_GPU_JOBS, FleetSnapshot, HostSnapshot, JobRef, Level
from gputui.core.risk_summary import job_risk
from gputui.render.prometheus import ExportView, exposition

T0 = 1_700_000_000.0
TEMP = "DCGM_FI_DEV_GPU_TEMP"
XID = "DCGM_FI_DEV_XID_ERRORS"
HOSTILE = "\x1b]0;owned\x07[bold red]4242[/]\u202e"
# A GPU at work: the core signals (no "missing signals") and a clock for the straggler rule.
BUSY = {
    TEMP: 62.0,
    "DCGM_FI_DEV_POWER_USAGE": 600.0,
    "DCGM_FI_DEV_GPU_UTIL": 95.0,
    "DCGM_FI_DEV_FB_USED": 60000.0,
    "DCGM_FI_DEV_SM_CLOCK": 1980.0,
}


@dataclass
class FakePrometheus:
    """Answers the source's instant queries from `series` (dcgm-exporter's names), all of
    them scraped at `now`, as Prometheus would for one family each."""

    now: float = T0
    series: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def gpu(
        self,
        host: str,
        index: int,
        jobs: tuple[str, ...] = (),
        label: str = "hpc_job",
        values: dict[str, float] | None = None,
        xid: int = 0,
    ) -> None:
        """A GPU's series, repeated once per job as dcgm-exporter repeats them; `values`
        None: only its XID series (DCGM's blank values for a GPU off the bus)."""
        base = {"gpu": str(index), "UUID": f"GPU-{host}-{index}", "Hostname": host}
        base["modelName"] = "NVIDIA H100 80GB HBM3"
        for job in jobs or (None,):
            labels = base if job is None else {**base, label: job}
            for name, value in (values or {}).items():
                self.series.append((name, labels, value))
            self.series.append((XID, labels, float(xid)))

    def set(self, host: str, name: str, value: float) -> None:
        self.series = [
            (n, labels, value if n == name and labels["Hostname"] == host else v)
            for n, labels, v in self.series
        ]

    async def query(self, promql: str) -> tuple[float, list[VectorSample]]:
        if promql.startswith("timestamp("):
            return self.now, [
                VectorSample(metric=labels, value=(self.now, str(self.now)))
                for n, labels, _ in self.series
                if n == TEMP
            ]
        name = promql.split("{")[0]
        return self.now, [
            VectorSample(metric={"__name__": n, **labels}, value=(self.now, repr(v)))
            for n, labels, v in self.series
            if n == name
        ]


class Fleet:
    """Hosts read through the Prometheus source (one poller, a runtime per host)."""

    def __init__(self, prom: FakePrometheus, hosts: list[str], series: SeriesKind = "dcgm") -> None:
        settings = PromSettings(
            url="http://prom:9090", series=series, scrape_interval_s=1, query_interval_s=1
        )
        self.prom = prom
        self.poller = PromFleetSource(settings, client=prom, clock=lambda: prom.now)  # type: ignore[arg-type]
        self.runtimes = [
            HostRuntime(name, interval_s=1, history_len=0, emit=lambda e, u: None) for name in hosts
        ]
        for runtime in self.runtimes:
            self.poller.register(runtime.name, runtime)

    def tick(self) -> FleetSnapshot:
        asyncio.run(self.poller.tick())
        hosts = tuple(r.snapshot() for r in self.runtimes)
        return FleetSnapshot(t=self.prom.now, hosts=hosts)


def gpus_of(snapshot: FleetSnapshot) -> dict[str, list[tuple[str, int]]]:
    return {j.key: [(g.host, g.gpu) for g in j.gpus] for j in build_jobs(snapshot)}


def host(snapshot: FleetSnapshot, name: str) -> HostSnapshot:
    return next(h for h in snapshot.hosts if h.name == name)


# --------------------------------------------------------------------------------------------
# hpc_job -> jobs
# --------------------------------------------------------------------------------------------


def two_hosts() -> FakePrometheus:
    """Slurm job 4242 on GPUs 0-1 of h1 and h2; h1's GPU 2 serves no job, its GPU 3 two
    (4242 and 77: dcgm-exporter repeats the GPU's series per job)."""
    prom = FakePrometheus()
    for i in (0, 1):
        prom.gpu("h1", i, ("4242",), values=BUSY)
    prom.gpu("h1", 2, values=BUSY)
    prom.gpu("h1", 3, ("4242", "77"), values=BUSY)
    for i in (0, 1):
        prom.gpu("h2", i, ("4242",), values=BUSY)
    return prom


def test_hpc_job_labels_attribute_each_gpu_to_its_job_across_hosts() -> None:
    snapshot = Fleet(two_hosts(), ["h1", "h2"]).tick()
    jobs = {j.key: j for j in build_jobs(snapshot, rate_per_gpu_hour=2e-5)}
    assert list(jobs) == ["slurm:4242", "slurm:77"]
    big, small = jobs["slurm:4242"], jobs["slurm:77"]
    assert big.hosts == ("h1", "h2") and big.gpu_count == 5
    assert [(g.host, g.gpu) for g in big.gpus] == [
        ("h1", 0), ("h1", 1), ("h1", 3), ("h2", 0), ("h2", 1),
    ]  # fmt: skip
    assert [(g.host, g.gpu) for g in small.gpus] == [("h1", 3)]
    # Only the job per GPU is known: no process, no pid, no user is made up.
    assert all(g.pids == () for g in big.gpus) and big.user is None
    h1 = host(snapshot, "h1")
    assert h1.slow_sample is not None
    assert all(r.processes is None for r in h1.slow_sample.gpus)
    assert h1.slow_sample.gpus[2].jobs is None  # no label, no job
    assert jobs_on_host(h1) == (
        JobRef(kind="slurm", id="4242", source="label"),
        JobRef(kind="slurm", id="77", source="label"),
    )
    # Per-job risk, for the job's own GPU count, and its status from its GPUs' verdicts.
    assert big.risk == job_risk(5, 2e-5, 60.0) and small.risk == job_risk(1, 2e-5, 60.0)
    assert big.health.level is Level.OK and job_status(big).value == 0


def test_relabelled_job_id_reads_as_hpc_job_and_pod_uids_as_pods() -> None:
    pod = "5f3b8c2e-9a41-4d7e-b6c0-2e8f1a7d9c34"
    prom = FakePrometheus()
    prom.gpu("h1", 0, ("4242",), label="job_id", values=BUSY)
    prom.gpu("h1", 1, (pod,), label="job_id", values=BUSY)
    assert gpus_of(Fleet(prom, ["h1"]).tick()) == {
        "slurm:4242": [("h1", 0)],
        f"k8s:{pod}": [("h1", 1)],
    }


def test_an_empty_label_gives_no_job() -> None:
    # Prometheus drops a label whose value is empty; a stub that keeps one is read alike.
    prom = FakePrometheus()
    prom.gpu("h1", 0, ("",), values=BUSY)
    prom.gpu("h1", 1, values=BUSY)
    snapshot = Fleet(prom, ["h1"]).tick()
    assert build_jobs(snapshot) == []
    sample = host(snapshot, "h1").slow_sample
    assert sample is not None and [r.jobs for r in sample.gpus] == [None, None]


def test_a_hostile_label_names_no_job_and_reaches_no_output() -> None:
    prom = FakePrometheus()
    prom.gpu("h1", 0, (HOSTILE,), values=BUSY)
    prom.gpu("h1", 1, ("4242\n; rm -rf /",), values=BUSY)
    prom.gpu("h1", 2, ("x" * 100_000,), values=BUSY)
    prom.gpu("h1", 3, ("4242",), values=BUSY)  # beside them, a good one still counts
    snapshot = Fleet(prom, ["h1"]).tick()
    assert gpus_of(snapshot) == {"slurm:4242": [("h1", 3)]}
    h1 = host(snapshot, "h1")
    assert h1.verdict.host.level is Level.OK  # a label is no reading: nothing is judged on it
    text = exposition(ExportView(snapshot=snapshot), now=T0).decode()
    assert "owned" not in text and "\x1b" not in text and "rm -rf" not in text
    assert 'job_id="4242"' in text


def test_many_jobs_on_one_gpu_are_bounded() -> None:
    labels = [str(1000 + i) for i in range(MAX_GPU_JOBS + 10)]
    assert len(jobs_of(labels)) == MAX_GPU_JOBS
    assert jobs_of(["4242", "4242", "4242,77"]) == [
        {"kind": "slurm", "id": "4242", "source": "label"},
        {"kind": "slurm", "id": "77", "source": "label"},
    ]


def test_a_gpu_off_the_bus_counts_for_the_job_of_its_host() -> None:
    """DCGM has no reading of a lost GPU, only its XID: the GPU counts for its host's jobs,
    as a lost GPU does on the SSH path, and makes the job failed."""
    prom = FakePrometheus()
    for i in (0, 1, 2):
        prom.gpu("h1", i, ("4242",), values=BUSY)
    prom.gpu("h1", 3, ("4242",), xid=79)
    snapshot = Fleet(prom, ["h1"]).tick()
    (job,) = build_jobs(snapshot)
    assert [g.gpu for g in job.gpus] == [0, 1, 2, 3] and job.gpus[3].label == "failed"
    assert job.health.level is Level.FAILED and job.health.gpu == 3
    assert "XID 79" in job.health.why


# --------------------------------------------------------------------------------------------
# The job-level straggler rule
# --------------------------------------------------------------------------------------------


def test_a_slow_host_of_a_job_named_by_hpc_job_is_a_job_straggler() -> None:
    prom = FakePrometheus()
    names = ["h1", "h2", "h3"]
    for name in names:
        for i in range(4):
            prom.gpu(name, i, ("4242",), values=BUSY)
    fleet = Fleet(prom, names)
    rule = JobStragglerRule()
    flags: set[tuple[str, int]] = set()
    for t in range(12):
        if t == 2:  # every GPU of h3 slows to 75%: its own GPUs agree, the job's do not
            for name, value in (("DCGM_FI_DEV_SM_CLOCK", 1485.0), ("DCGM_FI_DEV_GPU_UTIL", 71.0)):
                prom.set("h3", name, value)
            prom.set("h3", "DCGM_FI_DEV_POWER_USAGE", 450.0)
        prom.now = T0 + t
        snapshot = fleet.tick()
        published, _ = rule.apply(snapshot.hosts, prom.now)
        flags = {
            (h.name, i)
            for h in published
            for i, v in h.verdict.gpus.items()
            for r in v.reasons
            if r.code == "job_straggler"
        }
    assert flags == {("h3", i) for i in range(4)}


# --------------------------------------------------------------------------------------------
# gputui exporter's series read back
# --------------------------------------------------------------------------------------------


def test_jobs_exported_as_job_id_read_back_the_same() -> None:
    """gputui exporter labels each GPU series with `job_id` (several ids joined by commas):
    a source that reads gputui exporters attributes the GPUs as the exported fleet did."""
    first = Fleet(two_hosts(), ["h1", "h2"]).tick()
    text = exposition(ExportView(snapshot=first), now=T0).decode()
    assert 'job_id="4242,77"' in text  # h1's GPU 3: two jobs on one label
    exported = FakePrometheus()

    async def query(promql: str) -> tuple[float, list[VectorSample]]:
        """The exported text as Prometheus would answer for it (gputui's names)."""
        timestamps = promql.startswith("timestamp(")
        name = promql.removeprefix("timestamp(").split("{")[0].rstrip(")")
        out = []
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name:
                    metric = s.labels if timestamps else {"__name__": s.name, **s.labels}
                    value = str(T0) if timestamps else repr(s.value)
                    out.append(VectorSample(metric=metric, value=(T0, value)))
        return T0, out

    exported.query = query  # type: ignore[method-assign]
    again = Fleet(exported, ["h1", "h2"], series="gputui").tick()
    assert gpus_of(again) == gpus_of(first)
    h1 = host(again, "h1").slow_sample
    assert h1 is not None and all(r.processes is None for r in h1.gpus)


def test_the_reader_splits_gputui_job_id_into_its_jobs() -> None:
    reader = FleetReader("auto")
    ours = VectorSample(
        metric={
            "__name__": "gputui_gpu_temperature_celsius",
            **{"host": "h2", "gpu": "1", "uuid": "GPU-b", "model": "A100", "job_id": "9,8"},
        },
        value=(T0, "60"),
    )
    read = reader.read(T0, {"temp_c": [ours]}, [])
    (sample,) = [
        m for m in HostTracker("h2", 1.0).messages(read.hosts["h2"]) if m["type"] == "sample"
    ]
    assert [j["id"] for j in sample["gpus"][0]["jobs"]] == ["9", "8"]
