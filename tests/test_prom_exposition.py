"""The Prometheus exposition of a snapshot: units, labels, hostile text, counting over time."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gputui.agent.fields import READINGS
from gputui.core import prom_series as ps
from gputui.core.fleet_tally import FleetTally
from gputui.core.model import (
    OK_VERDICT,
    Action,
    FleetEvent,
    FleetSnapshot,
    GpuInfo,
    GpuProcess,
    GpuReading,
    Hello,
    HostSnapshot,
    HostState,
    HostVerdict,
    JobRef,
    Level,
    Reason,
    Sample,
    Verdict,
)
from gputui.render.prometheus import ExportView, exposition, label_name
from tests.conftest import need_program

T = 1_700_000_000.0
HOSTILE = 'evil\x1b]0;pwned\x07"host\\\n\u202eflip'


def hello(name: str, gpus: int = 2, model: str = "NVIDIA H100 80GB HBM3") -> Hello:
    return Hello(
        v=1,
        host=name,
        agent_version="t",
        backend="sim",
        interval_s=1.0,
        slow_every=10,
        gpus=[GpuInfo(index=i, uuid=f"GPU-{name}-{i}", name=model) for i in range(gpus)],
    )


FAST = Sample(
    v=1,
    t=T,
    seq=20,
    gpus=[
        GpuReading(
            index=i,
            util_pct=50.0,
            mem_used_mib=1024.0,
            temp_c=61.0 + i,
            power_w=300.0,
            sm_clock_mhz=1980,
            clock_events=0x44,
        )
        for i in range(2)
    ],
)
SLOW = Sample(
    v=1,
    t=T - 5,
    seq=10,
    slow=True,
    gpus=[
        GpuReading(
            index=0,
            temp_c=10.0,  # a fast reading of an older sample: never exported
            ecc_uncorrected_volatile=2,
            remap_failure=True,
            processes=[
                GpuProcess(pid=7, job=JobRef(kind="slurm", id="4242")),
                GpuProcess(pid=8, job=JobRef(kind="slurm", id="4243", step="0")),
            ],
        ),
        GpuReading(index=1, ecc_uncorrected_volatile=0, processes=[GpuProcess(pid=9)]),
    ],
)
LOST = Reason(
    code="xid_79",
    level=Level.FAILED,
    text="GPU1 XID 79",
    action=Action.REBOOT_NODE,
    gpu=1,
    latched=True,
)
MISSING = Reason(code="gpu_missing", level=Level.CRITICAL, text="1 of 2", action=Action.REBOOT_NODE)


def host(name: str, **kw: object) -> HostSnapshot:
    fields: dict[str, object] = {
        "name": name,
        "state": HostState.STREAMING,
        "labels": {"group": "a100", "rack": "r1"},
        "hello": hello(name),
        "sample": FAST,
        "sample_t": T - 2,
        "slow_sample": SLOW,
        "slow_sample_t": T - 5,
        "verdict": HostVerdict(host=OK_VERDICT, gpus={0: OK_VERDICT, 1: OK_VERDICT}),
    }
    fields |= kw
    return HostSnapshot(**fields)  # type: ignore[arg-type]


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of the exposition by its name, parsed back by prometheus-client."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def one(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    hits = [v for lab, v in found[name] if all(lab.get(k) == w for k, w in labels.items())]
    assert len(hits) == 1, (name, labels, found.get(name))
    return hits[0]


def test_readings_are_in_base_units_with_slow_fields_from_the_slow_sample() -> None:
    text = exposition(ExportView(snapshot=FleetSnapshot(t=T, hosts=(host("gpu1"),))), now=T)
    found = samples(text.decode())
    gpu0 = {"host": "gpu1", "gpu": "0"}
    assert one(found, "gputui_gpu_memory_used_bytes", **gpu0) == 1024 * 1024 * 1024
    assert one(found, "gputui_gpu_utilization_ratio", **gpu0) == 0.5
    assert one(found, "gputui_gpu_sm_clock_hertz", **gpu0) == 1.98e9
    assert one(found, "gputui_gpu_temperature_celsius", **gpu0) == 61.0  # the newest, not 10
    assert one(found, "gputui_gpu_clock_event_reasons", **gpu0) == 0x44
    assert one(found, "gputui_gpu_ecc_uncorrected_volatile_total", **gpu0) == 2
    assert one(found, "gputui_gpu_row_remap_failure", **gpu0) == 1
    # A field neither sample carries is absent, never 0.
    assert "gputui_gpu_pcie_link_width" not in found
    assert one(found, "gputui_host_sample_age_seconds", host="gpu1") == 2.0
    labels = found["gputui_gpu_temperature_celsius"][0][0]
    assert labels == {
        "host": "gpu1",
        "gpu": "0",
        "uuid": "GPU-gpu1-0",
        "model": "NVIDIA H100 80GB HBM3",
        "group": "a100",
        "rack": "r1",
        "job_id": "4242,4243",  # two jobs share GPU0; GPU1's process has none
    }
    assert found["gputui_gpu_temperature_celsius"][1][0]["job_id"] == ""


def test_verdicts_reasons_and_states() -> None:
    bad = host(
        "gpu2",
        verdict=HostVerdict(
            host=Verdict(level=Level.FAILED, reasons=(LOST, MISSING)),
            gpus={0: OK_VERDICT, 1: Verdict(level=Level.FAILED, reasons=(LOST,))},
        ),
    )
    gone = host("gpu3", state=HostState.UNREACHABLE, state_reason="connection refused")
    snap = FleetSnapshot(t=T, hosts=(host("gpu1"), bad, gone))
    found = samples(exposition(ExportView(snapshot=snap), now=T).decode())
    assert one(found, ps.HOST_VERDICT, host="gpu1") == 0
    assert one(found, ps.HOST_VERDICT, host="gpu2") == 4
    assert one(found, ps.GPU_VERDICT, host="gpu2", gpu="1") == 4
    assert one(found, ps.GPU_VERDICT, host="gpu2", gpu="0") == 0
    reason = [lab for lab, v in found[ps.GPU_REASON] if v == 1]
    assert [(r["host"], r["gpu"], r["code"], r["level"], r["action"]) for r in reason] == [
        ("gpu2", "1", "xid_79", "failed", "reboot node")
    ]
    # The host's own reasons are those that name no GPU: GPU1's XID is not said twice.
    assert [lab["code"] for lab, _ in found[ps.HOST_REASON]] == ["gpu_missing"]
    assert one(found, ps.HOST_STATE, host="gpu3", state="unreachable", reason="connection refused")
    # An unreachable host's last readings are not exported as if current.
    assert {lab["host"] for lab, _ in found["gputui_gpu_temperature_celsius"]} == {"gpu1", "gpu2"}
    assert one(found, ps.COLLECTOR_HOSTS, state="unreachable") == 1
    assert one(found, ps.COLLECTOR_HOSTS, state="streaming") == 2
    assert one(found, ps.COLLECTOR_HOSTS, state="stale") == 0


def test_hostile_host_text_is_plain_and_escaped() -> None:
    evil = host(
        HOSTILE,
        hello=hello(HOSTILE, model=HOSTILE),
        labels={"rack-id": HOSTILE, "host": "x", "9lives": "y", "__meta": "z"},
        state=HostState.STALE,
        state_reason=HOSTILE,
    )
    text = exposition(ExportView(snapshot=FleetSnapshot(t=T, hosts=(evil,))), now=T).decode()
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    # One line per sample: a line break in host text cannot start a forged sample.
    assert all(
        re.fullmatch(r"(# (HELP|TYPE) .*|[a-z_]+(\{.*\})? \S+)", line) for line in text.splitlines()
    )
    found = samples(text)
    labels = found[ps.HOST_STATE][0][0]
    assert labels["host"] == 'evil]0;pwned"host\\ flip'  # controls gone, quotes kept as data
    assert labels["reason"] == labels["host"]
    assert labels["rack_id"] == labels["host"]
    assert (labels["group_host"], labels["group_9lives"], labels["group___meta"]) == ("x", "y", "z")


def test_label_names() -> None:
    assert label_name("rack") == "rack"
    assert label_name("rack-id.x") == "rack_id_x"
    assert label_name("job") == "group_job"  # Prometheus' own scrape label
    assert label_name("model") == "group_model"


def test_tally_counts_samples_by_sequence_and_xids_by_event() -> None:
    tally = FleetTally(window_s=10.0)

    def snap(t: float, seq: int, *events: FleetEvent) -> FleetSnapshot:
        sample = Sample(v=1, t=t, seq=seq, gpus=[])
        return FleetSnapshot(t=t, hosts=(host("h", sample=sample),), events=events)

    xid = FleetEvent(t=T, host="h", kind="xid", text="", gpu=3, xid=79)
    assert tally.observe(snap(T, 5)).samples == 1
    same = snap(T + 1, 8)
    assert tally.observe(same).samples == 4  # seq 6, 7, 8: three more
    assert tally.observe(same).samples == 4  # the same sample again counts nothing
    after = tally.observe(snap(T + 2, 1, xid, xid))  # a new stream: samples 0 and 1
    assert after.samples == 6
    assert after.xids == {("h", 3, 79): 2}
    assert after.samples_per_s == (6 - 1) / 2


def test_slow_fields_are_those_the_agent_reads_on_slow_ticks() -> None:
    agent_slow = {f.name for f in READINGS if f.slow}
    exported = {s.field for s in ps.GPU_SERIES}
    assert exported & agent_slow == ps.SLOW_FIELDS


@pytest.mark.system
def test_promtool_accepts_the_exposition(tmp_path: Path) -> None:
    promtool = need_program("promtool")
    bad = host(
        HOSTILE,
        labels={"rack-id": HOSTILE},
        verdict=HostVerdict(host=Verdict(level=Level.FAILED, reasons=(MISSING,))),
    )
    tally = FleetTally(10.0)
    xid = FleetEvent(t=T, host=HOSTILE, kind="xid", text="", gpu=1, xid=79)
    tally.observe(FleetSnapshot(t=T - 1, hosts=(host("gpu1"), bad)))
    counted = tally.observe(FleetSnapshot(t=T, hosts=(host("gpu1"), bad), events=(xid,)))
    snap = FleetSnapshot(t=T, hosts=(host("gpu1"), bad))
    text = exposition(ExportView(snapshot=snap, tally=counted, publish_lag_s=0.01), now=T)
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode() + done.stdout.decode()
    assert b'gputui_gpu_xid_errors_total{gpu="1"' in text
