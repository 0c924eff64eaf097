"""`gputui report`: rendering, plugin exit codes, and the command on the demo fleet."""

from __future__ import annotations

import json
import subprocess
import sys

import msgspec

from gputui.core.hoststats import PluginStatus, fleet_status, host_stats
from gputui.core.model import (
    OK_VERDICT,
    Action,
    FleetSnapshot,
    GpuInfo,
    GpuReading,
    Hello,
    HostSnapshot,
    HostState,
    HostVerdict,
    Level,
    Reason,
    Sample,
    Verdict,
)
from gputui.render.report import report_json, report_markdown, report_table

HELLO = Hello(
    v=1,
    host="h",
    agent_version="t",
    backend="sim",
    interval_s=1.0,
    slow_every=10,
    gpus=[
        GpuInfo(
            index=i,
            uuid=f"GPU-{i}",
            name="NVIDIA H100 80GB HBM3",
            power_limit_w=700,
            memory_total_mib=81559,
        )
        for i in range(2)
    ],
)
SAMPLE = Sample(
    v=1,
    t=100.0,
    seq=5,
    gpus=[
        GpuReading(index=i, util_pct=90 + i, temp_c=60 + 10 * i, power_w=600, mem_used_mib=40000)
        for i in range(2)
    ],
)
HOT = Reason(
    code="temp_slowdown",
    level=Level.CRITICAL,
    text="GPU1 90 C >= slowdown 89 C",
    action=Action.DRAIN,
    gpu=1,
)


def host(
    name: str, state: HostState = HostState.STREAMING, verdict: Verdict = OK_VERDICT, **kw: object
) -> HostSnapshot:
    gpus = {0: OK_VERDICT, 1: verdict} if state is not HostState.UNREACHABLE else {}
    return HostSnapshot(
        name=name,
        state=state,
        hello=HELLO if state is not HostState.UNREACHABLE else None,
        sample=SAMPLE if state is not HostState.UNREACHABLE else None,
        sample_t=99.0,
        verdict=HostVerdict(host=verdict, gpus=gpus),
        **kw,  # type: ignore[arg-type]
    )


CRIT = Verdict(level=Level.CRITICAL, reasons=(HOT,))
WARN = Verdict(level=Level.WARN, reasons=(Reason(code="mem_full", level=Level.WARN, text="x"),))


def fleet(*hosts: HostSnapshot) -> FleetSnapshot:
    return FleetSnapshot(t=100.0, hosts=hosts)


def test_plugin_status_precedence() -> None:
    ok = host("a")
    unreachable = host("b", HostState.UNREACHABLE, state_reason="connection refused")
    assert fleet_status(fleet(ok)) is PluginStatus.OK
    assert fleet_status(fleet(ok, host("w", verdict=WARN))) is PluginStatus.WARNING
    assert fleet_status(fleet(ok, host("w", verdict=WARN), unreachable)) is PluginStatus.UNKNOWN
    assert fleet_status(fleet(unreachable, host("c", verdict=CRIT))) is PluginStatus.CRITICAL
    # A host the operator marked failed is known, not news.
    assert fleet_status(fleet(ok, host("c", verdict=CRIT, marked_failed=True))) is PluginStatus.OK


def test_host_stats_aggregate_the_last_sample() -> None:
    stats = host_stats(host("a"))
    assert stats.gpus == stats.gpus_reporting == 2
    assert stats.util_mean_pct == 90.5 and stats.temp_max_c == 70
    assert stats.power_w == 1200 and stats.power_limit_w == 1400


def test_json_is_worst_first_with_reasons_and_actions() -> None:
    doc = json.loads(
        report_json(
            fleet(
                host("a"),
                host("z", verdict=CRIT),
                host("m", HostState.UNREACHABLE, state_reason="refused"),
            )
        )
    )
    assert doc["status"] == "CRITICAL" and doc["exit_code"] == 2
    assert [h["name"] for h in doc["hosts"]] == ["z", "m", "a"]
    z = doc["hosts"][0]
    assert z["reasons"][0] == {
        "code": "temp_slowdown",
        "level": "critical",
        "text": "GPU1 90 C >= slowdown 89 C",
        "action": "drain",
        "gpu": 1,
        "latched": False,
    }
    assert z["action"] == "drain" and z["sample_age_s"] == 1.0
    assert z["gpus"][1]["level"] == "critical" and z["gpus"][1]["power_limit_w"] == 700
    assert doc["hosts"][1]["label"] == "unreachable" and doc["hosts"][1]["why"] == "refused"
    assert doc["summary"] == {
        "hosts": 3,
        "gpus": 4,
        "hosts_by_label": {"critical": 1, "unreachable": 1, "ok": 1},
    }


def test_table_fits_80_columns_and_explains_troubled_hosts() -> None:
    long_reason = "connection refused by ops@gpu-node-0042.example.org:22 " * 3
    text = report_table(
        fleet(
            host("gpu-node-0001"),
            host("gpu-node-0002", verdict=CRIT),
            host("gpu-node-0042", HostState.UNREACHABLE, state_reason=long_reason),
        ),
        width=80,
    )
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert lines[0].split() == ["HOST", "STATE", "GPU", "UTIL", "TEMP", "kW", "WHY"]
    assert "gpu-node-0002  critical" in text and "GPU1 90 C >= slowdown 89 C" in text
    words = " ".join(text.split())  # the full reason, wrapped over lines
    assert f"gpu-node-0042: unreachable: {long_reason}".strip() in words
    assert "GPUTUI CRITICAL - 3 hosts, 4 GPUs" in text
    assert "recommended: drain" in text


def test_markdown_escapes_pipes() -> None:
    md = report_markdown(fleet(host("a", HostState.UNREACHABLE, state_reason="a | b")))
    assert "a \\| b" in md and md.startswith("# gputui fleet report")


def test_report_demo_json_exit_code_matches_worst_state() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gputui.cli", "report", "--demo", "8", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    doc = json.loads(done.stdout)
    assert done.returncode == doc["exit_code"] == PluginStatus[doc["status"]].value
    assert len(doc["hosts"]) == 8
    for h in doc["hosts"]:
        assert h["gpus_total"] == 8 and len(h["gpus"]) == 8
        assert all(g["util_pct"] is not None and g["temp_c"] is not None for g in h["gpus"])


def test_report_bad_arguments_and_bad_file_are_one_line_exit_3(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # 3 is UNKNOWN to a monitoring system; 2 would read as a critical fleet.
    bad = tmp_path / "hosts.toml"
    bad.write_text("hosts = [\n")
    for args, expect in (
        (["--hosts", str(bad)], "hosts.toml"),
        (["--demo", "0"], "--demo"),
        (["--demo", "2", "--hosts", str(bad)], "exclude"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "gputui.cli", "report", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 3, done.stderr
        assert expect in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_snapshot_roundtrip_types_are_msgspec() -> None:
    # The snapshot is built from msgspec structs, so it encodes for the journal and tests.
    assert msgspec.json.decode(msgspec.json.encode(SAMPLE), type=Sample) == SAMPLE


# --------------------------------------------------------------------------------------------
# --sim-elapsed: a headless demo at a moment its faults have happened
# --------------------------------------------------------------------------------------------


def _agent_once(*args: str) -> list[dict[str, object]]:
    from gputui.collect.scenarios import load_scenario

    scenario = json.dumps(load_scenario("xid79"))  # GPU 3 falls off the bus 2 s in
    done = subprocess.run(
        [sys.executable, "-m", "gputui.agent", "--backend", "sim", "--scenario-json", scenario,
         "--once", "--stdin-watch", "off", *args],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_a_streaming_agent_starts_its_simulation_that_far_in() -> None:
    at_start = _agent_once()
    assert not [m for m in at_start if m["type"] == "event"]
    later = _agent_once("--sim-elapsed", "30")
    lost = [m for m in later if m["type"] == "event" and m["kind"] == "gpu_lost"]
    assert [m["gpu"] for m in lost] == [3]
    hello = next(m for m in later if m["type"] == "hello")
    # t=0 of the simulation lies 30 s back on the real clock.
    assert abs(float(hello["sim_start"]) - (later[-1]["t"] - 30.0)) < 2.0  # type: ignore[operator]


def test_agent_args_carry_the_elapsed_time_once() -> None:
    from gputui.collect.launch import AgentArgs
    from gputui.collect.oneshot import TriageArgs

    assert "--sim-elapsed" not in AgentArgs(backend="sim").argv()
    assert AgentArgs(backend="sim", sim_elapsed_s=12.5).argv()[-2:] == ["--sim-elapsed", "12.5"]
    assert TriageArgs(backend="sim", sim_elapsed_s=90).argv().count("--sim-elapsed") == 1


def _report_demo(*args: str) -> tuple[int, dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "gputui.cli", "report", "--demo", "4", "--format", "json", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return done.returncode, json.loads(done.stdout)


def test_report_demo_at_an_elapsed_time_shows_its_faults() -> None:
    # The demo's 4 hosts: sim-002 develops ECC errors from 95 s on; the others stay healthy.
    code, doc = _report_demo()
    assert code == 0 and doc["status"] == "OK"
    code, doc = _report_demo("--sim-elapsed", "300")
    assert code == doc["exit_code"] != 0
    worst = doc["hosts"][0]  # type: ignore[index]
    assert worst["name"] == "sim-002" and worst["level"] != "ok"


def test_report_sim_elapsed_mistakes_are_one_line_exit_3() -> None:
    for args, expect in (
        (
            ["--sim-elapsed", "10"],
            "--sim-elapsed needs --demo: only simulated hosts have a scenario to start into",
        ),
        (["--demo", "2", "--sim-elapsed", "-1"], "--sim-elapsed takes 0 to 3600 seconds"),
        (["--demo", "2", "--sim-elapsed", "7200"], "--sim-elapsed takes 0 to 3600 seconds"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "gputui.cli", "report", *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 3, done.stderr
        assert done.stderr.strip() == f"gputui: {expect}"
