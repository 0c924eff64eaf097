"""`gputui exporter` over real agents behind SSH, scraped over HTTP as Prometheus scrapes it;
its command line's mistakes; `gputui report --format prometheus --output`."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gputui.cli.export_feed import ExportFeed
from gputui.cli.exporter_cmd import start_server
from gputui.collect.demo import DemoFleet
from gputui.collect.fleet import plans_for_demo
from gputui.collect.monitor import FleetMonitor
from gputui.collect.scenarios import load_scenario
from gputui.core import prom_series as ps
from tests.conftest import need_program

GPUTUI = [sys.executable, "-m", "gputui.cli"]
FAULT_AT_S = 8.0  # late enough that a scrape sees the host healthy first


def scrape(port: int) -> tuple[str, dict[str, list[tuple[dict[str, str], float]]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found.setdefault(s.name, []).append((s.labels, s.value))
    return text, found


def value(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    hits = [v for lab, v in found.get(name, []) if all(lab.get(k) == w for k, w in labels.items())]
    assert len(hits) == 1, (name, labels)
    return hits[0]


async def poll(port: int, ok: Any, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        _, found = await asyncio.to_thread(scrape, port)
        try:
            if ok(found):
                return found
        except (AssertionError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout} s: {sorted(found)}")
        await asyncio.sleep(0.2)


async def test_exporter_serves_readings_verdicts_and_a_fault_as_it_appears() -> None:
    xid79 = load_scenario("xid79")
    xid79["fault"] = [{**xid79["fault"][0], "at": FAULT_AT_S}]
    given = [("gpu-ok", load_scenario("healthy")), ("gpu-bad", xid79)]
    async with DemoFleet(2, given=given) as fleet:
        plans, ssh = plans_for_demo(fleet, interval_s=0.5)
        feed = ExportFeed()
        server = start_server(feed, "127.0.0.1", 0)
        port = server.server_address[1]
        try:
            async with FleetMonitor(plans, closers=[ssh.close], history_len=0) as monitor:
                follower = await feed.start(monitor)

                def both_streaming(found: dict[str, Any]) -> bool:
                    return value(found, ps.COLLECTOR_HOSTS, state="streaming") == 2

                healthy = await poll(port, both_streaming)
                assert value(healthy, ps.HOST_VERDICT, host="gpu-bad") == 0
                assert value(healthy, ps.GPU_VERDICT, host="gpu-bad", gpu="3") == 0
                # Units: bytes, ratios, hertz, as the agent read them.
                temps = [v for lab, v in healthy["gputui_gpu_temperature_celsius"]]
                assert len(temps) == 16 and all(20 < t < 95 for t in temps)
                used = [v for _, v in healthy["gputui_gpu_memory_used_bytes"]]
                # A training H100 holds gigabytes (not a count of MiB), at most its 80 GB.
                assert max(used) > 1e9 and all(0 <= v <= 81559 * 1024 * 1024 for v in used)
                util = [v for _, v in healthy["gputui_gpu_utilization_ratio"]]
                assert all(0 <= u <= 1 for u in util) and max(util) > 0.5
                clocks = [v for _, v in healthy["gputui_gpu_sm_clock_hertz"]]
                assert all(1e8 < c < 3e9 for c in clocks)
                labels = healthy["gputui_gpu_temperature_celsius"][0][0]
                assert labels["model"].startswith("NVIDIA") and labels["uuid"].startswith("GPU-")
                assert labels["group"] == "demo"

                def lost(found: dict[str, Any]) -> bool:
                    return value(found, ps.HOST_VERDICT, host="gpu-bad") == 4

                faulty = await poll(port, lost)
                assert value(faulty, ps.GPU_VERDICT, host="gpu-bad", gpu="3") == 4
                assert value(faulty, ps.HOST_VERDICT, host="gpu-ok") == 0
                codes = {
                    lab["code"]
                    for lab, _ in faulty[ps.GPU_REASON]
                    if lab["host"] == "gpu-bad" and lab["gpu"] == "3"
                }
                assert "xid_79" in codes, codes
                assert value(faulty, ps.XID_ERRORS, host="gpu-bad", gpu="3", xid="79") >= 1
                assert value(faulty, ps.COLLECTOR_SAMPLES) > 4
                assert value(faulty, ps.COLLECTOR_SAMPLE_RATE) > 0
                follower.cancel()
        finally:
            server.shutdown()
            server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sim_hosts(tmp_path: Path) -> Path:
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('hosts = ["localhost"]\n\n[defaults]\nbackend = "sim"\ninterval = 0.5\n')
    return hosts


def test_exporter_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [
            *GPUTUI,
            "exporter",
            "--hosts",
            str(_sim_hosts(tmp_path)),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _, found = scrape(port)
                if value(found, ps.COLLECTOR_HOSTS, state="streaming") == 1:
                    break
            except (OSError, AssertionError, KeyError):
                pass
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        agents = _children(proc.pid)
        assert agents, "the local agent runs as a child"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "exporter stopped" in err and "Traceback" not in err
    for pid in agents:  # every agent it started has ended
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid)
    with pytest.raises(OSError):
        scrape(port)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize(
    ("listen", "words"),
    [
        ("9835", "expected HOST:PORT"),
        (":9835", "names no address"),
        ("127.0.0.1:http", "is not a number"),
        ("127.0.0.1:70000", "must be 0 to 65535"),
        ("::1:9835", "takes brackets"),
    ],
)
def test_bad_listen_is_one_line(listen: str, words: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [*GPUTUI, "exporter", "--hosts", str(_sim_hosts(tmp_path)), "--listen", listen],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("gputui: --listen: ") and words in done.stderr
    assert done.stderr.count("\n") == 1


def test_port_in_use_and_bad_hosts_file_are_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                *GPUTUI,
                "exporter",
                "--hosts",
                str(_sim_hosts(tmp_path)),
                "--listen",
                f"127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert (
        done.stderr == f"gputui: cannot listen on 127.0.0.1 port {port}: address already in use\n"
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("hosts = [\n")
    done = subprocess.run(
        [*GPUTUI, "exporter", "--hosts", str(bad), "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert str(bad) in done.stderr


def test_report_prometheus_is_written_whole_in_one_rename(tmp_path: Path) -> None:
    hosts = _sim_hosts(tmp_path)
    out_dir = tmp_path / "textfile"
    out_dir.mkdir()
    target = out_dir / "gputui.prom"
    target.write_text("# an older report\n")
    old = target.open()  # a reader that opened the old file keeps reading it whole
    inode = target.stat().st_ino
    done = subprocess.run(
        [
            *GPUTUI,
            "report",
            "--hosts",
            str(hosts),
            "--format",
            "prometheus",
            "--output",
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert old.read() == "# an older report\n"
    old.close()
    assert target.stat().st_ino != inode  # replaced by a rename, not rewritten in place
    assert os.listdir(out_dir) == ["gputui.prom"]  # no temporary file left
    assert target.stat().st_mode & 0o777 == 0o644  # node_exporter's user reads it
    text = target.read_text()
    assert 'gputui_host_verdict_level{group="default",host="localhost"} 0.0' in text
    assert "gputui_gpu_temperature_celsius{" in text
    # A directory that does not exist: one line, UNKNOWN, as the report's other mistakes.
    done = subprocess.run(
        [
            *GPUTUI,
            "report",
            "--hosts",
            str(hosts),
            "--format",
            "prometheus",
            "--output",
            str(tmp_path / "nowhere" / "x.prom"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3 and done.stderr.count("\n") == 1
    assert "does not exist" in done.stderr


@pytest.mark.system
def test_promtool_accepts_a_live_scrape(tmp_path: Path) -> None:
    promtool = need_program("promtool")
    done = subprocess.run(
        [*GPUTUI, "report", "--hosts", str(_sim_hosts(tmp_path)), "--format", "prometheus"],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=done.stdout, capture_output=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
