"""The Prometheus source against a real Prometheus scraping the simulated dcgm-exporter.

One Prometheus and one simulated fleet per module (starting them costs about 3 s on 2 cores):
two healthy hosts, one whose GPU 3 fell off the bus (XID 79) and one whose GPU 5 overheats,
each 120 s into its scenario. `gputui report` reads them through the Prometheus source and
must judge them as the local agent path judges the same scenarios.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gputui.cli.common import settle
from gputui.collect.launch import AgentArgs
from gputui.collect.local_source import LocalSource
from gputui.collect.monitor import FleetMonitor, HostPlan
from gputui.collect.scenarios import load_scenario
from tests.openssh import free_port
from tests.prometheus import PrometheusServer, SimDcgm, hosts_file

pytestmark = pytest.mark.system

ELAPSED_S = 120.0
# The simulated fleet, host by host (dcgm_sim names them sim-001... in this order).
SCENARIOS = {"sim-001": "healthy", "sim-002": "healthy", "sim-003": "xid79", "sim-004": "thermal"}
MIX = "healthy:2,xid79:1,thermal:1"


class Fleet:
    def __init__(self, sim: SimDcgm, prom: PrometheusServer, directory: Path) -> None:
        self.sim = sim
        self.prom = prom
        self.dir = directory


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    directory = tmp_path_factory.mktemp("prom")
    sim = SimDcgm(directory, MIX, endpoints=2, elapsed_s=ELAPSED_S)
    sim.start()
    prom = PrometheusServer(directory / "prom", [f"127.0.0.1:{p}" for p in sim.endpoints])
    try:
        prom.start()
        yield Fleet(sim, prom, directory)
    finally:
        prom.stop()
        sim.stop()


def report(hosts: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gputui.cli", "report", "--hosts", str(hosts), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def report_json(hosts: Path) -> tuple[int, dict[str, dict[str, object]]]:
    done = report(hosts, "--format", "json", "--wait", "10")
    assert done.stdout, done.stderr
    doc = json.loads(done.stdout)
    assert done.returncode == doc["exit_code"]
    return done.returncode, {h["name"]: h for h in doc["hosts"]}


async def local_levels() -> dict[str, str]:
    """The verdict of each scenario through the local agent path (the agent over the simulated
    NVML, its JSON lines decoded by the collector), 120 s into it."""
    plans = [
        HostPlan(
            source=LocalSource(
                name,
                AgentArgs(
                    backend="sim",
                    host=name,
                    scenario=load_scenario(scenario),
                    seed=1,
                    sim_elapsed_s=ELAPSED_S,
                ),
            )
        )
        for name, scenario in SCENARIOS.items()
    ]
    async with FleetMonitor(plans, history_len=0) as monitor:
        await settle(monitor, 30)
        await asyncio.sleep(2)  # the events the first samples carry have been judged
        snap = monitor.publish()
    return {h.name: h.verdict.host.level.label for h in snap.hosts}


def test_report_through_prometheus_judges_as_the_local_agent_path(fleet: Fleet) -> None:
    code, hosts = report_json(hosts_file(fleet.dir / "all.toml", fleet.prom.url))
    assert sorted(hosts) == sorted(SCENARIOS)
    through_prom = {name: str(h["level"]) for name, h in hosts.items()}
    expected = {"sim-001": "ok", "sim-002": "ok", "sim-003": "failed", "sim-004": "critical"}
    assert through_prom == expected
    assert asyncio.run(local_levels()) == expected
    assert code == 2  # CRITICAL: a failed host counts as critical
    xid = hosts["sim-003"]["reasons"][0]  # type: ignore[index]
    assert "XID 79" in xid["text"] and xid["gpu"] == 3
    assert "GPU5" in hosts["sim-004"]["reasons"][0]["text"]  # type: ignore[index]
    for h in hosts.values():
        assert h["backend"] == "prometheus" and h["gpus_total"] == 8
    # The memory total, which the memory rule judges against: DCGM's used + free (its reserved
    # is not among dcgm-exporter's defaults, so the total is short of the H100's by that much).
    gpu = hosts["sim-001"]["gpus"][0]  # type: ignore[index]
    assert 81559 - 1024 < gpu["mem_total_mib"] <= 81559


def test_signals_dcgm_does_not_export_show_as_not_available(fleet: Fleet) -> None:
    _, hosts = report_json(hosts_file(fleet.dir / "gaps.toml", fleet.prom.url))
    healthy = hosts["sim-001"]
    assert healthy["state"] == "degraded"
    reason = str(healthy["state_reason"])
    assert reason.startswith("not available from this source:")
    for signal in ("clock-event reasons", "ECC counts", "NVLink errors", "recovery action"):
        assert signal in reason
    assert "remapped rows" not in reason  # dcgm-exporter's defaults carry those
    gpu = healthy["gpus"][0]  # type: ignore[index]
    assert gpu["clock_events"] is None and gpu["temp_c"] is not None


def test_a_listed_host_without_series_is_unreachable_and_exits_3(fleet: Fleet) -> None:
    path = hosts_file(fleet.dir / "listed.toml", fleet.prom.url, hosts=["sim-001", "ghost"])
    code, hosts = report_json(path)
    assert code == 3
    assert hosts["ghost"]["state"] == "unreachable"
    assert "no series of this host in Prometheus" in str(hosts["ghost"]["state_reason"])
    assert hosts["sim-001"]["level"] == "ok"


def test_selector_narrows_the_fleet_and_a_bad_one_is_prometheus_words(fleet: Fleet) -> None:
    narrow = hosts_file(
        fleet.dir / "sel.toml", fleet.prom.url, "selector = 'Hostname=\"sim-002\"'\n"
    )
    code, hosts = report_json(narrow)
    assert list(hosts) == ["sim-002"] and code == 0
    bad = hosts_file(fleet.dir / "badsel.toml", fleet.prom.url, "selector = 'Hostname=~\"(\"'\n")
    done = report(bad)
    assert done.returncode == 3
    assert "bad_data" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_prometheus_down_is_one_reason_for_every_host_exit_3(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = report(hosts_file(tmp_path / "down.toml", url))
    assert done.returncode == 3 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"gputui: cannot list the fleet from Prometheus: cannot reach {url}: connection refused "
        "(is Prometheus running there?)"
    )
    code, hosts = report_json(hosts_file(tmp_path / "listed.toml", url, hosts=["a", "b"]))
    assert code == 3
    reasons = {str(h["state_reason"]) for h in hosts.values()}
    assert reasons == {f"Prometheus: cannot reach {url}: connection refused (is Prometheus "
                       "running there?)"}  # fmt: skip
    assert {h["state"] for h in hosts.values()} == {"unreachable"}


def test_a_prometheus_that_refuses_the_credentials_exits_3(fleet: Fleet, tmp_path: Path) -> None:
    # Prometheus' own basic auth (web config); the hash is of no password the test sends.
    web = (
        "basic_auth_users:\n  alice: $2y$10$Zq0i1u1dZkE6bCEo7oJ3xOcm2ZgqCq4V5YkJYq5uJ3Yv6Y0eHc5eW\n"
    )
    prom = PrometheusServer(tmp_path / "auth", ["127.0.0.1:1"], web_config=web)
    prom.start(wait_scrapes=False)
    try:
        password = tmp_path / "password"
        password.write_text("wrong-secret\n")
        extra = f'basic_auth_user = "alice"\nbasic_auth_password_file = "{password}"\n'
        path = hosts_file(tmp_path / "auth.toml", prom.url, extra, hosts=["a"])
        done = report(path, "--format", "json", "--wait", "5")
        assert done.returncode == 3
        (host,) = json.loads(done.stdout)["hosts"]
        assert host["state"] == "unreachable"
        assert host["state_reason"] == (
            f"Prometheus: {prom.url} refused the query: HTTP 401 unauthorized; check "
            "basic_auth_user and basic_auth_password_file"
        )
        assert "wrong-secret" not in done.stdout + done.stderr  # the secret is never shown
    finally:
        prom.stop()
