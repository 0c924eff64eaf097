"""Processes every sample while a screen shows them (collect/watch.py, agent/stream.py).

From the agent's stdin to the monitor's snapshot: the request line and what the agent does with
it (a real agent process), the host runtime that sends it at the hello and merges the fresh
lists into the slow sample, and whole monitors over a local agent and over real SSH servers
with the shipped bundle, where only the watched host lists its processes in fast samples.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from gputui.agent.stream import REQUEST_LINE_MAX, LineReader, Requests
from gputui.collect.demo import DemoFleet
from gputui.collect.fleet import plans_for_demo
from gputui.collect.host_runtime import HostRuntime
from gputui.collect.launch import AgentArgs
from gputui.collect.local_source import LocalSource
from gputui.collect.monitor import FleetMonitor, HostPlan
from gputui.collect.watch import watch_line, with_processes
from gputui.core.model import FleetSnapshot, GpuInfo, GpuProcess, GpuReading, Hello, Sample

TRAINING = {"name": "watch", "gpus": 2, "workload": "training"}


# -- the agent's side ------------------------------------------------------------------------------


def test_the_request_line_turns_the_lists_on_and_off() -> None:
    requests = Requests()
    requests.line(watch_line(True).rstrip(b"\n"))
    assert requests.processes is True
    requests.line(watch_line(False))
    assert requests.processes is False
    assert requests.ignored == 0


@pytest.mark.parametrize(
    "line",
    [
        b"garbage",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"type":"watch","v":2,"processes":true}',  # another protocol version
        b'{"type":"watch","v":1,"processes":"yes"}',
        b'{"type":"shutdown","v":1}',  # a request of a newer collector
    ],
)
def test_a_line_that_is_no_known_request_changes_nothing(line: bytes) -> None:
    requests = Requests()
    requests.line(line)
    assert requests.processes is False and requests.ignored == 1


def test_lines_are_joined_across_reads_and_an_overlong_one_is_dropped_whole() -> None:
    got: list[bytes] = []
    reader = LineReader(got.append)
    reader.feed(b'{"type":"wa')
    reader.feed(b'tch"}\n\n  \nx' + b"y" * (REQUEST_LINE_MAX + 10))
    reader.feed(b"z" * 100 + b"\nlast\n")
    assert got == [b'{"type":"watch"}', b"last"]


def read_message(out: Any) -> dict[str, Any]:
    line = out.readline()
    assert line, "the agent ended"
    return json.loads(line)  # type: ignore[no-any-return]


def test_a_real_agent_lists_processes_in_every_sample_while_asked() -> None:
    args = AgentArgs(
        backend="sim", interval_s=0.05, slow_every=1000, scenario=TRAINING, seed=1
    ).argv()
    agent = subprocess.Popen(
        [sys.executable, "-m", "gputui.agent", *args, "--stdin-watch", "on"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert agent.stdin is not None and agent.stdout is not None
    try:
        assert read_message(agent.stdout)["type"] == "hello"
        first = read_message(agent.stdout)
        assert first["slow"] and all("processes" in g for g in first["gpus"])

        def fast_samples(n: int) -> list[dict[str, Any]]:
            got = [read_message(agent.stdout) for _ in range(n)]
            return [m for m in got if m["type"] == "sample" and not m.get("slow")]

        assert all("processes" not in g for m in fast_samples(5) for g in m["gpus"])
        agent.stdin.write(watch_line(True))
        agent.stdin.flush()
        # The request reaches the sampler within a sample; from then on every one lists them.
        listed = [all("processes" in g for g in m["gpus"]) for m in fast_samples(12)]
        assert listed[-8:] == [True] * 8
        agent.stdin.write(b"not a request\n" + watch_line(False))
        agent.stdin.flush()
        listed = [any("processes" in g for g in m["gpus"]) for m in fast_samples(12)]
        assert listed[-8:] == [False] * 8
    finally:
        agent.stdin.close()  # its end of input ends the agent
        assert agent.wait(timeout=10) == 0
        agent.stdout.close()


# -- the host runtime ------------------------------------------------------------------------------


def proc(pid: int) -> GpuProcess:
    return GpuProcess(pid=pid, name="python3", used_memory_mib=1000.0)


def sample(seq: int, t: float, *, slow: bool, procs: list[int] | None) -> Sample:
    gpus = [
        GpuReading(
            index=0,
            util_pct=90.0,
            temp_c=60.0,
            power_w=300.0,
            mem_used_mib=1000.0,
            pcie_gen=5 if slow else None,
            processes=None if procs is None else [proc(p) for p in procs],
        )
    ]
    return Sample(v=1, t=t, seq=seq, slow=slow, gpus=gpus)


HELLO = Hello(
    v=1,
    host="h",
    agent_version="t",
    backend="sim",
    interval_s=1.0,
    slow_every=10,
    gpus=[GpuInfo(index=0, uuid="GPU-0", name="H100")],
)
HELLO_LINE = msgspec.json.encode(HELLO)


class Channel:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def __call__(self, line: bytes) -> bool:
        self.sent.append(line)
        return True


def runtime() -> tuple[HostRuntime, Channel, list[float]]:
    clock = [1000.0]
    rt = HostRuntime("h", interval_s=1.0, emit=lambda e, u: None, clock=lambda: clock[0])
    channel = Channel()
    rt.stream_started()
    rt.agent_channel(channel)
    return rt, channel, clock


def test_the_request_waits_for_the_hello_and_follows_each_change() -> None:
    rt, channel, _ = runtime()
    rt.watch_processes(True)
    assert channel.sent == []  # the bootstrap may still be reading its bundle from stdin
    rt.on_line(HELLO_LINE)
    assert channel.sent == [watch_line(True)]
    rt.watch_processes(True)  # no change: nothing sent
    rt.watch_processes(False)
    assert channel.sent == [watch_line(True), watch_line(False)]


def test_a_new_stream_is_asked_again_at_its_hello_and_an_unwatched_one_never() -> None:
    rt, channel, _ = runtime()
    rt.on_line(HELLO_LINE)
    assert channel.sent == []  # a new agent lists processes in slow samples: nothing to say
    rt.watch_processes(True)
    rt.agent_channel(None)  # the stream ended
    rt.watch_processes(False)
    rt.watch_processes(True)
    again = Channel()
    rt.stream_started()
    rt.agent_channel(again)
    rt.on_line(HELLO_LINE)
    assert again.sent == [watch_line(True)]


def test_fresh_lists_replace_the_slow_samples_and_keep_its_time() -> None:
    rt, _, clock = runtime()
    rt.on_line(HELLO_LINE)
    rt.on_line(msgspec.json.encode(sample(0, 50.0, slow=True, procs=[1, 2])))
    slow = rt.slow_sample
    assert slow is not None and rt.processes_t == 1000.0
    clock[0] = 1001.0
    rt.on_line(msgspec.json.encode(sample(1, 51.0, slow=False, procs=None)))  # not watched
    assert rt.slow_sample is slow
    clock[0] = 1002.0
    rt.on_line(msgspec.json.encode(sample(2, 52.0, slow=False, procs=[2, 3])))
    merged = rt.slow_sample
    assert merged is not None and merged is not slow
    assert [p.pid for p in merged.gpus[0].processes or []] == [2, 3]
    assert (merged.seq, merged.t, merged.gpus[0].pcie_gen) == (0, 50.0, 5)  # counted once
    snap = rt.snapshot()
    assert snap.processes_t == 1002.0 and snap.slow_sample_t == 1000.0


def test_a_gpu_the_fresh_sample_could_not_read_keeps_its_list() -> None:
    slow = sample(0, 1.0, slow=True, procs=[1])
    lost = Sample(v=1, t=2.0, seq=1, gpus=[GpuReading(index=0, status="lost", error="gone")])
    assert with_processes(slow, lost) == slow


# -- whole monitors --------------------------------------------------------------------------------


async def fast_lists(
    monitor: FleetMonitor, seconds: float, ready: Callable[[FleetSnapshot], bool]
) -> dict[str, list[bool]]:
    """For each host, whether each fast sample seen in `seconds` listed processes."""
    seen: dict[str, list[bool]] = {name: [] for name in monitor.hosts}
    last: dict[str, int] = {}

    async def watch() -> None:
        started: float | None = None
        async for snap in monitor.snapshots():
            if started is None:
                if not ready(snap):
                    continue
                started = time.monotonic()
            for h in snap.hosts:
                s = h.sample
                if s is None or s.slow or last.get(h.name) == s.seq:
                    continue
                last[h.name] = s.seq
                seen[h.name].append(any(r.processes is not None for r in s.gpus))
            if time.monotonic() - started > seconds:
                return

    await asyncio.wait_for(watch(), 60)
    return seen


def streaming(snap: FleetSnapshot) -> bool:
    return all(h.slow_sample is not None for h in snap.hosts)


async def test_only_the_watched_local_host_lists_processes_in_every_sample() -> None:
    plans = [
        HostPlan(
            LocalSource(
                name,
                AgentArgs(
                    backend="sim", interval_s=0.1, slow_every=1000, host=name, scenario=TRAINING
                ),
            ),
            interval_s=0.1,
        )
        for name in ("watched", "other")
    ]
    async with FleetMonitor(plans, tick_s=0.1) as monitor:
        monitor.watch_processes(["watched", "not-a-host"])
        seen = await fast_lists(monitor, 2.0, streaming)
        assert len(seen["watched"]) >= 5 and all(seen["watched"][2:])
        assert seen["other"] and not any(seen["other"])
        listed = monitor.hosts["watched"].processes_t
        monitor.watch_processes([])
        seen = await fast_lists(monitor, 1.0, streaming)
        assert not any(seen["watched"][3:]) and not any(seen["other"])
        assert monitor.hosts["watched"].processes_t == listed  # no fresher list since


async def test_the_request_reaches_an_agent_shipped_over_ssh() -> None:
    hosts = [("sim-001", dict(TRAINING)), ("sim-002", dict(TRAINING))]
    async with DemoFleet(2, given=hosts) as fleet:
        plans, ssh = plans_for_demo(fleet, interval_s=0.2)
        async with FleetMonitor(plans, tick_s=0.2, closers=[ssh.close]) as monitor:
            monitor.watch_processes(["sim-002"])
            seen = await fast_lists(monitor, 3.0, streaming)
    assert len(seen["sim-002"]) >= 5 and all(seen["sim-002"][2:])
    assert seen["sim-001"] and not any(seen["sim-001"])
