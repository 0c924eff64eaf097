"""Smoke runs of the benchmarks' own logic (the benchmarks themselves are not tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(autouse=True)
def _bench_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))


def test_report_rewrites_only_the_tables_between_markers(tmp_path: Path) -> None:
    import report

    (tmp_path / "memory-200.json").write_text(
        '{"points": [{"minute": 1, "rss_mib": 80.04, "samples": 1200}]}'
    )
    doc = (
        "prose 1\n<!-- table: memory-200 -->\nold table\n<!-- end: memory-200 -->\nprose 2\n"
        "<!-- table: detection -->\n<!-- end: detection -->\n"
    )
    out, done = report.refresh(doc, tmp_path)
    assert done == ["memory-200"]  # no detection.json: that table is left as it was
    assert "old table" not in out and "| 1 min | 80.0 MiB | 1,200 |" in out
    assert out.startswith("prose 1\n") and "prose 2\n<!-- table: detection -->" in out
    assert report.refresh(out, tmp_path)[0] == out  # idempotent


def test_fast_forwarded_memory_run_feeds_every_host_every_second() -> None:
    import memory_ff

    result = memory_ff.run(hosts=5, minutes=[0.05, 0.1], templates=2, record_s=20)
    points = result["points"]
    assert [p["host_samples"] for p in points] == [5 * 4, 5 * 7]
    assert all(p["rss_mib"] > 0 for p in points)


def test_detection_scenarios_validate_and_place_one_fault_per_host() -> None:
    import random

    import detection

    from gputui.collect.demo import DemoFleet

    hosts, faults = detection.assignment(list(detection.KINDS), 2, random.Random(1), 30.0, 5.0)
    assert len(hosts) == len(faults) == 2 * len(detection.KINDS)
    # The fleet the benchmark starts runs exactly these scenarios, faults included.
    assert DemoFleet(len(hosts), given=hosts).assignment() == hosts
    for name, scenario in hosts:
        (fault,) = scenario["fault"]
        kind, at = faults[name]
        assert fault["kind"] == kind and 30.0 <= at <= 35.0 and fault["at"] == at


def test_watchdog_sweep_measures_each_way_without_ending_a_stream() -> None:
    import asyncio

    import watchdog_sweep

    assert asyncio.run(watchdog_sweep.measure_sweep(50, repeat=2)) > 0  # asserts none ended
    pass_us, upkeep_us = watchdog_sweep.measure_numpy(50, repeat=2)
    assert pass_us > 0 and upkeep_us > 0
    assert asyncio.run(watchdog_sweep.measure_per_host(20, seconds=0.2)) > 0


def test_lean_floor_decodes_lines_cut_across_packets() -> None:
    import subprocess
    import sys

    import ingest

    # Real agent lines (a hello and samples), as the bench server sends them.
    agent = ["--backend", "sim", "--interval", "0.02", "--duration", "0.1", "--stdin-watch", "off"]
    lines = subprocess.run(
        [sys.executable, "-m", "gputui.agent", *agent],
        capture_output=True,
        check=True,
    ).stdout.splitlines(keepends=True)
    data = b"".join(lines)
    counter = ingest.Counter()
    session = ingest.LeanSession("h00000", counter)
    for i in range(0, len(data), 700):  # packets smaller than a line, cut anywhere
        session.data_received(data[i : i + 700], None)
    assert counter.samples == len(lines) and counter.hosts_seen == {"h00000"}


def test_report_renders_the_floors_run_with_repeats_numbered(tmp_path: Path) -> None:
    import json

    import report

    def result(strategy: str, us: float) -> dict[str, object]:
        return {
            "strategy": strategy,
            "hosts": 1000,
            "cpu_pct_of_one_core": us / 10,
            "us_per_host_sample": us,
            "samples_per_s": 1000.0,
            "expected_samples_per_s": 1000.0,
            "rss_mib": 80.0,
        }

    run = {
        "results": [result("gputui", 180), result("floor-lean", 100), result("gputui", 170)],
        "ratios": [{"hosts": 1000, "gputui_over_floor-lean": 1.7}],
    }
    (tmp_path / "ingest-floors-1000.json").write_text(json.dumps(run))
    doc = "<!-- table: ingest-floors-1000 -->\n<!-- end: ingest-floors-1000 -->\n"
    out, done = report.refresh(doc, tmp_path)
    assert done == ["ingest-floors-1000"]
    assert "| 1,000 | gputui (monitor, health rules, history, snapshots) (2) | 170 us |" in out
    assert "| hosts | gputui / lean floor |\n|---|---|\n| 1,000 | 1.70 |" in out


def test_app_ingest_pairs_each_tick_with_the_refresh_after_it(tmp_path: Path) -> None:
    import json

    import app_ingest
    import report

    assert app_ingest.first_after([1.0, 2.0, 3.0], 2.0) == 2
    assert app_ingest.first_after([1.0, 2.0, 3.0], 0.5) == 0
    assert app_ingest.first_after([1.0, 2.0, 3.0], 3.0) is None
    assert app_ingest.first_after([], 1.0) is None

    timing = {"n": 3, "p50_ms": 20.0, "p95_ms": 40.0, "max_ms": 45.5}
    run = {
        "hosts": 1000,
        "window_s": 60.0,
        "samples_per_s": 1000.1,
        "expected_samples_per_s": 1000.0,
        "process_cpu_pct_of_one_core": 29.1,
        "rss_mib": 215.8,
        "all_streaming_s": None,
        "tick_work_ms": timing,
        "snapshot_to_screen_ms": timing,
        "key_to_screen_ms": timing,
        "key_to_screen_ms_by_key": {"table: cursor down": timing},
        "keys_with_a_tick_between": 2,
        "gc_full_collections": {"n": 0},
    }
    (tmp_path / "app_ingest-1000.json").write_text(json.dumps(run))
    doc = "<!-- table: app-ingest-1000 -->\n<!-- end: app-ingest-1000 -->\n"
    out, done = report.refresh(doc, tmp_path)
    assert done == ["app-ingest-1000"]
    assert "| ... table: cursor down | 3 | 20.0 ms | 40.0 ms | 45.5 ms |" in out
    assert "| collector samples/s in the window | 1,000 of 1,000 |" in out
    assert "| all hosts streaming after | never |" in out


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "in-a-worker"])
def test_detect_screen_sees_each_injected_fault_on_the_fleet_table(
    tmp_path: Path, workers: int
) -> None:
    import asyncio

    import detect_screen
    from ingest import start_server, write_client_files
    from textual.screen import Screen

    unpatched = Screen._compositor_refresh
    server = start_server(tmp_path, 0.5)
    try:
        write_client_files(tmp_path, int((tmp_path / "port").read_text()), 4)
        result = asyncio.run(detect_screen.run(4, tmp_path, 0.5, per_kind=1, settle=30.0, seed=2))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)
    assert Screen._compositor_refresh is unpatched  # the other tests draw as usual
    assert result["missed_within_10_intervals"] == []
    by_kind = result["fault_to_screen_ms_by_kind"]
    assert by_kind["xid"]["n"] == 1 and by_kind["hot"]["n"] == 1
    # A sampled fault shows at the host's next sample: never before it began, and within a
    # few intervals on an idle machine.
    assert 0 < by_kind["hot"]["max_ms"] < 5 * 500
