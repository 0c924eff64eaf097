"""`--shard K/N`: N shards cover the fleet with each host exactly once, and say what is wrong."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gputui.config import expand_hosts
from gputui.config.shard import Shard, parse_shard, shard_of
from tests.conftest import need_program


@given(
    names=st.lists(st.text(min_size=1, max_size=30), unique=True, max_size=60),
    count=st.integers(min_value=1, max_value=12),
)
def test_n_shards_partition_the_fleet(names: list[str], count: int) -> None:
    shards = [Shard(k, count).select(names) for k in range(1, count + 1)]
    flat = [name for shard in shards for name in shard]
    assert sorted(flat) == sorted(names)  # every host once: none lost, none twice
    for shard in shards:  # each keeps the file's order
        assert shard == [n for n in names if n in set(shard)]


def test_adding_a_host_moves_no_other() -> None:
    names = expand_hosts("gpu[001-128]")
    before = {n: shard_of(n, 4) for n in names}
    after = {n: shard_of(n, 4) for n in ["gpu000", *names, "gpu999"]}
    assert all(after[n] == shard for n, shard in before.items())


def test_a_range_spreads_about_evenly() -> None:
    names = expand_hosts("gpu[001-128]")
    sizes = [len(Shard(k, 4).select(names)) for k in range(1, 5)]
    assert sum(sizes) == 128 and min(sizes) >= 20, sizes


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("0/3", "must be 1 to 3"),
        ("4/3", "must be 1 to 3"),
        ("x", "expected K/N"),
        ("1/0", "must be 1 to 10000"),
        ("a/b", "expected K/N"),
        ("1/", "expected K/N"),
    ],
)
def test_bad_shards_say_why(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_shard(text)


def test_a_shard_of_the_hosts_file_is_reported(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('hosts = ["localhost"]\n\n[defaults]\nbackend = "sim"\n')
    mine = shard_of("localhost", 2)
    other = 3 - mine
    for k, present in ((mine, True), (other, False)):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "gputui.cli",
                "report",
                "--hosts",
                str(hosts),
                "--format",
                "json",
                "--shard",
                f"{k}/2",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert ('"name": "localhost"' in done.stdout) is present
        assert f"shard {k}/2: {int(present)} of the 1 hosts" in done.stderr


@pytest.mark.parametrize("command", ["report", "exporter"])
@pytest.mark.parametrize("shard", ["0/3", "4/3", "x"])
def test_bad_shard_on_the_command_line(command: str, shard: str, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('hosts = ["localhost"]\n')
    done = subprocess.run(
        [sys.executable, "-m", "gputui.cli", command, "--hosts", str(hosts), "--shard", shard],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == (3 if command == "report" else 2)
    assert done.stderr.startswith("gputui: --shard: ") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


@pytest.mark.system
def test_prometheus_hashmod_puts_each_host_in_the_same_shard(tmp_path: Path) -> None:
    """A real Prometheus relabels 40 targets by `hashmod` of their `host` label: the shard it
    computes (0-based) is gputui's, minus one."""
    import json
    import time
    import urllib.request

    prometheus = need_program("prometheus", "/usr/bin/prometheus")
    names = expand_hosts("gpu[001-040]")
    targets = "\n".join(
        f'      - targets: ["127.0.0.1:{10_000 + i}"]\n        labels: {{host: "{name}"}}'
        for i, name in enumerate(names)
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1h\nscrape_configs:\n  - job_name: shards\n"
        f"    static_configs:\n{targets}\n    relabel_configs:\n"
        "      - {source_labels: [host], modulus: 3, target_label: shard, action: hashmod}\n"
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        found: list[dict[str, str]] = []
        while len(found) < len(names):
            assert time.monotonic() < deadline, "Prometheus listed no targets in time"
            time.sleep(0.5)
            try:
                url = f"http://127.0.0.1:{port}/api/v1/targets"
                with urllib.request.urlopen(url, timeout=5) as answer:
                    found = [t["labels"] for t in json.load(answer)["data"]["activeTargets"]]
            except OSError:
                continue
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert {t["host"]: int(t["shard"]) + 1 for t in found} == {n: shard_of(n, 3) for n in names}


def test_the_demo_fleet_is_not_split() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gputui.cli", "report", "--demo", "2", "--shard", "1/2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3
    assert done.stderr == (
        "gputui: --shard splits the hosts of a hosts file; the demo fleet is not split\n"
    )
