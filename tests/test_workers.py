"""Collection in worker processes (gputui/collect/workers/): frames, the worker, the merged
monitor, a worker's failure and restart, and the app over it while a worker is killed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import types
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import numpy as np
import pytest

from gputui.collect.demo import DemoFleet
from gputui.collect.event_log import EventLog
from gputui.collect.fleet import demo_ssh_settings, recipes_for_demo
from gputui.collect.history import HostHistory, Metric
from gputui.collect.launch import AgentArgs
from gputui.collect.monitor import FleetMonitor
from gputui.collect.recipes import HostRecipe, plans_for_recipes
from gputui.collect.scenarios import load_scenario
from gputui.collect.workers.count import workers_for
from gputui.collect.workers.frames import (
    Delta,
    FrameError,
    MarkFailed,
    Points,
    Start,
    Stop,
    down_reader,
    encode,
    up_reader,
)
from gputui.collect.workers.link import WORKER_ARGV, exit_words
from gputui.collect.workers.monitor import WorkerHost, WorkerMonitor
from gputui.collect.workers.worker import DeltaBuilder
from gputui.config import ConfigError, config_from_text
from gputui.core.model import FleetEvent, FleetSnapshot, HostState, Level
from gputui.tui.app import GpuTuiApp
from gputui.tui.session import MonitorSession
from tests.fake_fleet import gpu_infos, small_fleet

# -- helpers -------------------------------------------------------------------------------------


def sim_recipe(
    name: str, scenario: str = "healthy", interval_s: float = 0.25, elapsed_s: float = 120.0
) -> HostRecipe:
    """A simulated host run as a local agent process (no SSH needed)."""
    return HostRecipe(
        name=name,
        transport="local",
        args=AgentArgs(
            backend="sim",
            interval_s=interval_s,
            slow_every=4,
            host=name,
            scenario=load_scenario(scenario),
            seed=7,
            sim_elapsed_s=elapsed_s,
        ),
        interval_s=interval_s,
        labels={"group": "sim", "scenario": scenario},
    )


async def wait_for(cond: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout} s: {what}")
        await asyncio.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children_of(pid: int) -> list[int]:
    """The live processes whose parent is `pid`."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def key_state(snap: FleetSnapshot) -> dict[str, tuple[object, ...]]:
    """What must agree between the in-process monitor and the workers: each host's state,
    its level, and the reason codes of the host and of each GPU."""
    return {
        h.name: (
            h.state,
            h.verdict.host.level,
            tuple(sorted(r.code for r in h.verdict.host.reasons)),
            tuple(
                (i, v.level, tuple(sorted(r.code for r in v.reasons)))
                for i, v in sorted(h.verdict.gpus.items())
            ),
        )
        for h in snap.hosts
    }


# -- frames ----------------------------------------------------------------------------------------


def test_frames_round_trip_split_anywhere() -> None:
    fleet = small_fleet()
    snap = fleet.advance(3)
    delta = Delta(
        t=12.5,
        hosts=list(snap.hosts),
        events=[FleetEvent(t=1.0, host="gpu001", kind="xid", text="XID 79", level=Level.FAILED)],
        points=[
            Points(
                host="gpu001",
                new_ring=True,
                gpus=gpu_infos(2),
                times=[1.0, 2.0],
                values=np.arange(16, dtype=np.float32).tobytes(),
            )
        ],
        answered=["gpu001"],
        urgent=True,
    )
    data = encode(delta) * 2
    for cut in (1, 3, 4, 5, len(data) // 2, len(data) - 1):
        reader = up_reader()
        got = reader.feed(data[:cut]) + reader.feed(data[cut:])
        assert got == [delta, delta]
        assert reader.pending == 0


def test_a_hello_or_slow_sample_already_sent_is_left_out_and_put_back() -> None:
    fast = small_fleet().advance(3).hosts[0]
    assert fast.hello is not None and fast.sample is not None
    host = msgspec.structs.replace(fast, slow_sample=fast.sample)  # as after a slow sample
    assert host.slow_sample is not None
    newer = msgspec.structs.replace(host, sample_t=(host.sample_t or 0) + 1)  # same hello, slow
    slower = msgspec.structs.replace(  # a new slow sample comes with its time, as a runtime's
        newer,
        slow_sample=msgspec.structs.replace(host.slow_sample, seq=host.slow_sample.seq + 9),
        slow_sample_t=(host.slow_sample_t or 0) + 10,
    )
    builder = DeltaBuilder(types.SimpleNamespace(hosts={}))  # type: ignore[arg-type]
    mine = WorkerHost(sim_recipe(host.name, "healthy"), time.time)
    reader = up_reader()
    sizes = []
    for snap in (host, newer, slower):
        frame = encode(builder.build(FleetSnapshot(t=1.0, hosts=(snap,))))
        sizes.append(len(frame))
        (delta,) = reader.feed(frame)
        for got in delta.hosts:
            mine.receive(got, got.name in delta.same_hello, got.name in delta.same_slow)
        assert mine.latest == snap  # whole again on this side
    assert builder.build(FleetSnapshot(t=2.0, hosts=(slower,))).hosts == []  # unchanged: none
    # The second left both out, the third only the hello: each is smaller than the first.
    assert sizes[1] < sizes[2] < sizes[0]


def test_commands_round_trip() -> None:
    reader = down_reader()
    start = Start(worker=2, hosts=[sim_recipe("a", "xid79")], tick_s=0.5, history_len=64)
    got = reader.feed(encode(start) + encode(MarkFailed(host="a", marked=True)) + encode(Stop()))
    assert got == [start, MarkFailed(host="a", marked=True), Stop()]


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x00\x07garbage",
        b"\x00\x00\x00\x01\xc1",  # msgpack's one never-used byte
        encode(Stop()),  # a command where a delta belongs: not a frame of this direction
        b"\xff\xff\xff\xff" + b"x" * 10,  # a length past the limit
    ],
)
def test_a_bad_frame_is_a_frame_error_with_words(data: bytes) -> None:
    with pytest.raises(FrameError) as exc:
        up_reader().feed(data)
    assert str(exc.value).startswith("a frame")


def test_exit_words() -> None:
    assert exit_words(-9, []) == "exited (SIGKILL)"
    assert (
        exit_words(1, ["Traceback", "ValueError: boom"]) == "exited with status 1: ValueError: boom"
    )
    assert exit_words(0, []) == "exited with status 0"


# -- how many workers ------------------------------------------------------------------------------


def test_auto_collects_in_process_below_256_hosts_then_one_worker_per_core() -> None:
    assert workers_for("auto", 255, cpus=16) == 0
    assert workers_for("auto", 256, cpus=16) == 4  # never more than hosts/64
    assert workers_for("auto", 1000, cpus=16) == 15
    assert workers_for("auto", 5000, cpus=16) == 16
    assert workers_for("auto", 300, cpus=1) == 1
    assert workers_for(0, 5000) == 0
    assert workers_for(2, 4) == 2  # a number is taken as given
    assert workers_for(8, 3) == 3  # but never more workers than hosts


def test_the_hosts_file_says_how_many_workers() -> None:
    base = 'hosts = ["a"]\n'
    assert config_from_text(base).workers == "auto"
    assert config_from_text(base + "[collector]\nworkers = 3\n").workers == 3
    assert config_from_text(base + '[collector]\nworkers = "auto"\n').workers == "auto"
    for bad in ("-1", '"many"', "2.5", "5000"):
        with pytest.raises(ConfigError) as exc:
            config_from_text(base + f"[collector]\nworkers = {bad}\n")
        assert "collector.workers" in str(exc.value) and '"auto"' in str(exc.value)


def test_workers_option_is_checked_before_anything_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gputui.cli", "report", "--demo", "2", "--workers", "-2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3  # a mistake of the user's is UNKNOWN to a monitoring system
    assert "--workers takes" in done.stderr and "Traceback" not in done.stderr


# -- the pieces the parent reuses ------------------------------------------------------------------


def test_the_event_log_counts_repeats_itself_whatever_the_event_carried() -> None:
    log = EventLog()
    e = FleetEvent(t=1.0, host="a", kind="state", text="x", level=Level.WARN)
    log.add(msgspec.structs.replace(e, repeat=5))  # counted by a worker that has since died
    log.add(msgspec.structs.replace(e, t=2.0, repeat=1))
    assert [x.repeat for x in log.entries] == [2]


def test_history_points_travel_between_rings() -> None:
    gpus = gpu_infos(2)
    src, dst = HostHistory(gpus, 8), HostHistory(gpus, 16)
    values = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5)
    src.extend(np.arange(5, dtype=np.float64), values)
    t, v = src.since(2)
    assert t.tolist() == [2.0, 3.0, 4.0] and v.shape == (2, 4, 3)
    dst.extend(*src.since(0))
    assert dst.appended == 5 and dst.times().tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert np.array_equal(dst.values[:, :, :5], values)
    # Past the ring's size: the newest points fill it, the count counts them all.
    src.extend(np.arange(5, 20, dtype=np.float64), np.ones((2, 4, 15), dtype=np.float32))
    assert src.appended == 20 and src.times().tolist() == list(map(float, range(12, 20)))


# -- the worker itself -----------------------------------------------------------------------------


def test_a_worker_runs_this_gputui_not_a_gputui_folder_in_the_current_directory(
    tmp_path: Path,
) -> None:
    planted = tmp_path / "gputui"
    (planted / "collect" / "workers").mkdir(parents=True)
    ran = tmp_path / "planted-ran"
    for folder in (planted, planted / "collect", planted / "collect" / "workers"):
        (folder / "__init__.py").write_text(f"open({str(ran)!r}, 'w').close()\n")
    done = subprocess.run(WORKER_ARGV, cwd=tmp_path, input=b"", capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr  # no Start before its stdin ended: nothing to run
    assert not ran.exists()


def test_a_worker_streams_its_shard_and_ends_with_its_stdin_leaving_no_agent() -> None:
    proc = subprocess.Popen(
        WORKER_ARGV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(encode(Start(worker=1, hosts=[sim_recipe("w1")], history_len=64)))
        proc.stdin.flush()
        reader = up_reader()
        frames: list[Delta] = []
        deadline = time.monotonic() + 30
        while not any(p.times for f in frames for p in f.points):
            assert time.monotonic() < deadline, "no history points from the worker"
            frames += reader.feed(os.read(proc.stdout.fileno(), 1 << 16))
        hosts = [h for f in frames for h in f.hosts]
        assert hosts[0].name == "w1" and hosts[-1].state is HostState.STREAMING
        agents = children_of(proc.pid)
        assert agents, "the worker runs its host's agent"
        proc.stdin.close()  # what a killed parent leaves: the worker's stdin ends
        assert proc.wait(timeout=15) == 0
        assert not any(alive(pid) for pid in agents)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


PARENT = """
import asyncio, sys
from tests.test_workers import sim_recipe
from gputui.collect.workers.monitor import WorkerHost, WorkerMonitor
from gputui.collect.workers.worker import DeltaBuilder

async def main():
    async with WorkerMonitor([sim_recipe("p0"), sim_recipe("p1")], 2, tick_s=0.25) as mon:
        while not mon.settled():
            await asyncio.sleep(0.05)
        print(*(link.pid for link in mon.links), flush=True)
        await asyncio.sleep(120)

asyncio.run(main())
"""


def test_workers_and_their_agents_end_when_the_parent_is_killed() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    try:
        assert parent.stdout is not None
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(workers) == 2 and all(alive(pid) for pid in workers)
        agents = [a for pid in workers for a in children_of(pid)]
        assert len(agents) == 2  # one local agent per host
        parent.kill()  # no stop(), no goodbye: the workers see their stdin end
        parent.wait()
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in workers + agents):
            assert time.monotonic() < deadline, "a worker or an agent outlived its parent"
            time.sleep(0.1)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


# -- the merged monitor ----------------------------------------------------------------------------

SCENARIOS = ("healthy", "xid79", "thermal", "healthy", "xid79", "thermal")


def settled_and_faulted(snap: FleetSnapshot) -> bool:
    by = {h.name: h for h in snap.hosts}
    return all(h.state is HostState.STREAMING for h in snap.hosts) and all(
        by[f"h{i}"].verdict.host.level >= Level.CRITICAL
        for i, sc in enumerate(SCENARIOS)
        if sc != "healthy"
    )


async def test_workers_give_the_snapshots_the_in_process_monitor_gives() -> None:
    recipes = [sim_recipe(f"h{i}", sc) for i, sc in enumerate(SCENARIOS)]
    plans, _ = plans_for_recipes(recipes, None)
    async with (
        FleetMonitor(plans, tick_s=0.25, history_len=100) as inproc,
        WorkerMonitor(recipes, 2, tick_s=0.25, history_len=100) as workers,
    ):
        assert [link.hosts for link in workers.links] == [
            frozenset({"h0", "h1", "h2"}),
            frozenset({"h3", "h4", "h5"}),
        ]
        await wait_for(lambda: settled_and_faulted(inproc.snapshot()), what="in-process")
        await wait_for(lambda: settled_and_faulted(workers.snapshot()), what="workers")
        # The rules that need time (a straggler held for some seconds) settle at slightly
        # different moments in the two, whose agents started apart: they must come to agree.
        await wait_for(
            lambda: key_state(workers.publish()) == key_state(inproc.publish()),
            what="the same states, verdicts and reasons",
        )
        b = workers.publish()
        assert [h.name for h in b.hosts] == [r.name for r in recipes]  # configured order
        lost, hot = b.hosts[1].verdict.gpus[3], b.hosts[2].verdict.gpus[5]
        assert lost.level is Level.FAILED and "gpu_lost" in {r.code for r in lost.reasons}
        assert hot.level is Level.CRITICAL and "hw_thermal" in {r.code for r in hot.reasons}
        for name in ("h0", "h3"):
            ring, mine = inproc.hosts[name].history, workers.hosts[name].history
            assert ring is not None and mine is not None
            assert mine.series(0, Metric.TEMP_C)[-1] > 0
        # The same events, counted the same way, for the same faults.
        kinds = lambda m: {(e.host, e.kind) for e in m.events if e.kind != "state"}  # noqa: E731
        assert kinds(workers) == kinds(inproc)


async def test_every_sample_reaches_the_rings_not_only_each_ticks_latest() -> None:
    # Four samples a tick: each frame carries all four.
    async with WorkerMonitor([sim_recipe("r0", interval_s=0.25)], 1, tick_s=1.0) as mon:
        await wait_for(
            lambda: (h := mon.hosts["r0"].history) is not None and len(h) >= 12, what="points"
        )
        ring = mon.hosts["r0"].history
        assert ring is not None
        gaps = np.diff(ring.times()[-12:])
        assert gaps.max() < 0.45, f"samples missing between ticks: {gaps}"
        assert not np.isnan(ring.series(0, Metric.UTIL_PCT)[-12:]).any()


async def test_an_xid_skips_the_tick_through_the_worker_and_the_parent() -> None:
    # XID 79 two seconds in; a tick of 2 s: only the urgent path shows it within a second.
    recipe = sim_recipe("x0", "xid79", interval_s=0.25, elapsed_s=0.0)
    # Two workers: the parent does not wait for the other's tick either.
    async with WorkerMonitor([recipe, sim_recipe("x1", elapsed_s=0.0)], 2, tick_s=2.0) as mon:
        async for snap in mon.snapshots():
            lost = [e for e in snap.events if e.kind == "gpu_lost"]
            if lost:
                delay = snap.t - lost[0].t
                assert delay < 1.0, f"the XID waited {delay:.2f} s for a tick"
                assert snap.hosts[0].verdict.host.level is Level.FAILED
                break


async def test_marks_show_at_once_and_reach_the_worker() -> None:
    async with WorkerMonitor([sim_recipe("m0"), sim_recipe("m1")], 2, tick_s=0.25) as mon:
        await wait_for(mon.settled, what="settled")
        mon.set_marked_failed("m1", True)
        mon.set_in_place_of("m0", "m1")
        snap = mon.publish()
        assert snap.hosts[1].marked_failed and snap.hosts[0].in_place_of == "m1"
        # The worker echoes it in its own snapshot: the mark is kept there too.
        await wait_for(lambda: mon.hosts["m1"].latest.marked_failed, what="worker's mark")


@contextlib.asynccontextmanager
async def bad_workers(script: str, n: int = 1) -> AsyncIterator[WorkerMonitor]:
    recipes = [sim_recipe(f"b{i}") for i in range(2 * n)]
    async with WorkerMonitor(
        recipes, n, tick_s=0.1, worker_argv=[sys.executable, "-c", script]
    ) as mon:
        yield mon


async def test_a_malformed_frame_is_a_worker_failure_with_a_reason() -> None:
    garbage = "import sys, time; sys.stdout.buffer.write(b'\\x00\\x00\\x00\\x05hello'); " + (
        "sys.stdout.flush(); time.sleep(60)"
    )
    async with bad_workers(garbage) as mon:
        await wait_for(
            lambda: mon.snapshot().hosts[0].state is HostState.RECONNECTING, what="failure"
        )
        host = mon.snapshot().hosts[0]
        assert host.state_reason.startswith("collector worker 1 sent a malformed frame (a frame")
        assert host.state_reason.endswith("; restarting")
        assert any(e.kind == "state" and "reconnecting" in e.text for e in mon.events)
        pid = mon.links[0].pid
    assert pid is not None and not alive(pid)  # killed, not left reading garbage


async def test_a_crashing_worker_says_its_last_words_and_is_retried() -> None:
    async with bad_workers("raise SystemExit('boom: the shard could not start')") as mon:
        await wait_for(lambda: "boom" in mon.snapshot().hosts[1].state_reason, what="crash reason")
        assert mon.snapshot().hosts[1].state_reason == (
            "collector worker 1 exited with status 1: boom: the shard could not start; restarting"
        )
        first = mon.links[0].pid
        await wait_for(lambda: mon.links[0].pid != first, what="a second try")


# -- a worker killed under the app ---------------------------------------------------------------


def demo_server_pid(directory: Path) -> int:
    """The demo fleet's server process (its agents are its children)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if b"gputui.collect.demo_server" in argv and str(directory).encode() in argv:
                    return int(entry.name)
    raise AssertionError("the demo fleet's server is not running")


def text_of(app: GpuTuiApp, host: str, column: str) -> str:
    """A cell of the fleet table as drawn ("" before the host's row is there)."""
    table = app.fleet_screen.table
    return table.get_cell(host, column).text.strip() if host in table.shown else ""


async def test_a_worker_killed_under_the_app_restarts_while_keys_are_answered() -> None:
    async with DemoFleet(4, scenario="healthy") as fleet:
        assert fleet.directory is not None
        server = demo_server_pid(fleet.directory)
        monitor = WorkerMonitor(
            recipes_for_demo(fleet, 0.5), 2, ssh=demo_ssh_settings(fleet), tick_s=0.5
        )
        first, second = sorted(monitor.links[0].hosts), sorted(monitor.links[1].hosts)

        @contextlib.asynccontextmanager
        async def open_monitor() -> AsyncIterator[WorkerMonitor]:
            async with monitor:
                yield monitor

        session = MonitorSession(open_monitor)
        app = GpuTuiApp(session)
        app.animation_level = "none"
        async with app.run_test(size=(140, 36)) as pilot:
            await wait_for(
                lambda: all(text_of(app, h, "state") == "ok" for h in first + second),
                what="every host ok on screen",
            )
            assert children_of(server), "the demo's agents run"
            victim = monitor.links[1]
            dead_pid = victim.pid
            assert dead_pid is not None
            before = {h: monitor.hosts[h].latest.sample_t for h in first}
            os.kill(dead_pid, signal.SIGKILL)
            # Keys are answered while the worker dies and its replacement starts.
            answered: list[float] = []
            sort_keys = set()
            saw_reconnecting = False
            while not (
                victim.pid != dead_pid and all(text_of(app, h, "state") == "ok" for h in second)
            ):
                began = time.perf_counter()
                await pilot.press("s")
                answered.append(time.perf_counter() - began)
                sort_keys.add(app.fleet_screen.table.sort_key)
                if any(text_of(app, h, "state") == "reconnecting" for h in second):
                    why = text_of(app, second[0], "why")
                    assert why == "collector worker 2 exited (SIGKILL); restarting"
                    assert all(text_of(app, h, "state") == "ok" for h in first)
                    saw_reconnecting = True
                    # The last readings stay, as a stale host's do.
                    assert text_of(app, second[0], "temp").rstrip("C").isdigit()
                assert len(answered) < 2000, "the worker was not restarted"
                await asyncio.sleep(0.05)
            assert saw_reconnecting, "the dead worker's hosts never showed reconnecting"
            assert any(
                e.kind == "state" and e.host == second[0] and "SIGKILL" in e.text
                for e in monitor.events
            ), "the failure is in the event log"
            assert len(sort_keys) > 1  # the presses changed the sort: they were answered
            worst = max(answered)
            print(f"key answered in at most {worst * 1000:.0f} ms over {len(answered)} presses")
            assert worst < 0.5, f"a key took {worst:.3f} s while a worker restarted"
            # The other worker's hosts went on streaming all along.
            assert all(monitor.hosts[h].latest.sample_t != before[h] for h in first)
            assert not alive(dead_pid)
            pids = [link.pid for link in monitor.links]
        await session.close()
        assert all(pid is not None and not alive(pid) for pid in pids), "a worker outlived stop"
        deadline = time.monotonic() + 10
        while children_of(server):  # each agent exits as its channel closes
            assert time.monotonic() < deadline, "an agent outlived the monitor"
            await asyncio.sleep(0.1)
