"""What the agent says of a GPU process besides its owner (agent/procinfo.py), and NVML's
per-process utilisation (agent/nvml_backend.py).

The /proc readers are checked on fixture trees (every field, hostile content of every file a
process can shape) and on real child processes: a busy loop uses most of a core, a sleep none,
and their command lines, start times and resident memory are the kernel's. Everything read
goes through the collector's decoder into core.model.GpuProcess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gputui.agent import procinfo
from gputui.agent.nvml_backend import NvmlBackend
from gputui.agent.procinfo import CMDLINE_MAX, SAME_READ_S, ProcReader
from gputui.agent.simnvml import SimNvml
from gputui.agent.simulation import Simulation
from gputui.collect.protocol import StreamDecoder
from gputui.core.model import GpuProcess, Sample
from tests.agent_sim import FakeClock

HZ = 100
BOOT = 1_700_000_000


def stat_line(
    pid: int, *, start: int = 5000, utime: int = 0, stime: int = 0, comm: str = "py"
) -> bytes:
    """/proc/PID/stat: fields 14 and 15 `utime` and `stime`, 22 `start`, the rest plausible."""
    fields = ["S"] + [str(n) for n in range(4, 14)] + [str(utime), str(stime)]
    fields += [str(n) for n in range(16, 22)] + [str(start)] + [str(n) for n in range(23, 53)]
    return f"{pid} ({comm}) {' '.join(fields)}\n".encode()


def status_text(rss_kib: int | None = 2_097_152) -> bytes:
    rss = f"VmRSS:\t{rss_kib:8d} kB\n" if rss_kib is not None else ""
    return f"Name:\tpy\nState:\tS (sleeping)\nUid:\t0\t0\t0\t0\n{rss}Threads:\t4\n".encode()


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Tree:
    """A fake /proc with its /proc/stat (boot time)."""

    def __init__(self, root: Path) -> None:
        self.proc = root / "proc"
        self.proc.mkdir()
        (self.proc / "stat").write_bytes(
            b"cpu  1 2 3 4\nintr 5\nctxt 6\nbtime %d\nprocesses 7\n" % BOOT
        )
        self.clock = Clock()

    def process(
        self,
        pid: int,
        *,
        cmdline: bytes = b"python3\0train.py\0--lr\x000.1\0",
        stat: bytes | None = None,
        status: bytes | None = None,
        start: int = 5000,
        ticks: int = 0,
    ) -> None:
        d = self.proc / str(pid)
        d.mkdir(exist_ok=True)
        (d / "stat").write_bytes(
            stat if stat is not None else stat_line(pid, start=start, utime=ticks)
        )
        (d / "status").write_bytes(status if status is not None else status_text())
        (d / "cgroup").write_bytes(b"0::/user.slice\n")
        (d / "cmdline").write_bytes(cmdline)

    def reader(self) -> ProcReader:
        return ProcReader(str(self.proc), node_name="n", monotonic=self.clock, clock_ticks=HZ)


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


def decoded(pid: int, fields: dict[str, Any]) -> GpuProcess:
    """The fields as the collector takes them: within every bound, or the line is refused."""
    return msgspec.convert({"pid": pid, **fields}, GpuProcess)


# -- parsers ---------------------------------------------------------------------------------------


def test_the_command_line_joins_its_arguments_with_spaces() -> None:
    assert procinfo.command_line(b"python3\0-m\0torch.distributed.run\0--nproc=8\0") == (
        "python3 -m torch.distributed.run --nproc=8"
    )
    # setproctitle writes one string with spaces and no NUL: shown as written.
    assert procinfo.command_line(b"postgres: checkpointer   ") == "postgres: checkpointer"
    assert procinfo.command_line(b"") is None  # a kernel thread
    assert procinfo.command_line(b"\0\0") is None


def test_a_long_command_line_is_cut_to_the_collectors_bound() -> None:
    text = procinfo.command_line(b"python3\0" + b"x" * 100_000 + b"\0")
    assert text is not None and len(text) == CMDLINE_MAX and text.endswith("...")
    decoded(1, {"cmdline": text})
    # Characters, not bytes: four-byte characters still give at most CMDLINE_MAX of them.
    wide = procinfo.command_line("\U0001f525".encode() * 5000)
    assert wide is not None and len(wide) == CMDLINE_MAX


def test_stat_gives_user_plus_system_time_counted_after_the_name() -> None:
    assert procinfo.cpu_ticks(stat_line(7, utime=1234, stime=66)) == 1300
    # A name may hold spaces and parentheses: fields count from the last `)`.
    assert procinfo.cpu_ticks(stat_line(7, utime=10, stime=5, comm="a) S 1 2 (b")) == 15
    assert procinfo.cpu_ticks(b"7 (py) S 1 2") is None
    assert procinfo.cpu_ticks(stat_line(7).replace(b" 0 0 16", b" -1 x 16")) is None


def test_status_gives_the_resident_memory_in_mib() -> None:
    assert procinfo.rss_mib(status_text(3_145_728)) == 3072.0
    assert procinfo.rss_mib(status_text(1536)) == 1.5
    assert procinfo.rss_mib(status_text(None)) is None  # a zombie has no VmRSS
    assert procinfo.rss_mib(b"VmRSS:\t12 MB\n") is None
    assert procinfo.rss_mib(b"VmRSS:\t" + b"9" * 40 + b" kB\n") is None


def test_proc_stat_gives_the_boot_time() -> None:
    assert procinfo.boot_time(b"cpu 1 2\nbtime 1700000000\n") == 1_700_000_000.0
    assert procinfo.boot_time(b"cpu 1 2\n") is None
    assert procinfo.boot_time(b"btime -5\n") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=800))
def test_the_parsers_take_any_bytes(data: bytes) -> None:
    ticks = procinfo.cpu_ticks(data)
    assert ticks is None or ticks >= 0
    rss = procinfo.rss_mib(data)
    text = procinfo.command_line(data)
    decoded(1, {"cmdline": text, "rss_mib": rss})
    procinfo.boot_time(data)


# -- the reader on a fixture tree ------------------------------------------------------------------


def test_a_process_is_read_in_full(tree: Tree) -> None:
    tree.process(40, start=12_345)
    fields = tree.reader()(40)
    assert fields["cmdline"] == "python3 train.py --lr 0.1"
    assert fields["started_t"] == BOOT + 123.45
    assert fields["rss_mib"] == 2048.0
    assert "cpu_pct" not in fields  # the first read has nothing to compare with
    assert fields["uid"] == 0  # the owner, as attribution.py reads it
    decoded(40, fields)


def test_cpu_is_the_time_used_between_two_reads_over_the_time_between_them(tree: Tree) -> None:
    tree.process(41, ticks=1000)
    reader = tree.reader()
    reader(41)
    tree.clock.t += 2.0
    tree.process(41, ticks=1000 + 300)  # 3 s of CPU in 2 s: one and a half cores
    assert reader(41)["cpu_pct"] == 150.0
    tree.clock.t += 1.0
    assert reader(41)["cpu_pct"] == 0.0  # idle since


def test_a_process_on_several_gpus_is_read_once_a_sample(tree: Tree) -> None:
    tree.process(42, ticks=0)
    reader = tree.reader()
    reader(42)
    tree.clock.t += 1.0
    tree.process(42, ticks=50)
    first = reader(42)
    # The same process listed on the next GPU a moment later: the same figures, not a rate
    # over microseconds.
    tree.clock.t += SAME_READ_S / 10
    tree.process(42, ticks=90, status=status_text(1024))
    assert reader(42) == first
    assert first["cpu_pct"] == 50.0


def test_the_command_line_is_read_once_until_the_pid_is_reused(tree: Tree) -> None:
    tree.process(43, start=100)
    reader = tree.reader()
    assert reader(43)["cmdline"] == "python3 train.py --lr 0.1"
    (tree.proc / "43" / "cmdline").write_bytes(b"renamed\0")
    assert reader(43)["cmdline"] == "python3 train.py --lr 0.1"
    assert reader.reads == 1
    tree.process(43, start=200, cmdline=b"sleep\x0030\0", ticks=7)  # another process
    tree.clock.t += 1.0
    fields = reader(43)
    assert fields["cmdline"] == "sleep 30" and "cpu_pct" not in fields
    assert reader.reads == 2


def test_a_process_read_before_it_has_arguments_is_read_again(tree: Tree) -> None:
    tree.process(44, start=100, cmdline=b"")  # caught in exec: no arguments yet
    reader = tree.reader()
    assert "cmdline" not in reader(44)
    (tree.proc / "44" / "cmdline").write_bytes(b"sleep\x0060\0")
    tree.clock.t += 1.0
    assert reader(44)["cmdline"] == "sleep 60"
    assert reader.reads == 1  # the owner is not read again


def test_cpu_time_that_goes_backwards_gives_no_figure(tree: Tree) -> None:
    tree.process(44, ticks=500)
    reader = tree.reader()
    reader(44)
    tree.clock.t += 1.0
    tree.process(44, ticks=10)
    assert "cpu_pct" not in reader(44)


def test_without_a_boot_time_there_is_no_start(tree: Tree) -> None:
    (tree.proc / "stat").write_bytes(b"cpu 1 2 3\n")
    tree.process(45)
    fields = tree.reader()(45)
    assert "started_t" not in fields and fields["cmdline"]


HOSTILE = [
    b"",
    b"\x00\x01\x02\xff\xfe\x1b[31m",
    b"\x1b]0;pwned\x07\0rm -rf /\0",
    b"\0" * 70_000,
    b"a" * 1_000_000,
    "\u202e\u0000evil\u2066".encode(),
]


@pytest.mark.parametrize("content", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_files_never_raise_and_stay_in_bounds(tree: Tree, content: bytes) -> None:
    tree.process(46, cmdline=content, status=content)
    reader = tree.reader()
    reader(46)
    tree.clock.t += 1.0
    fields = reader(46)
    proc = decoded(46, fields)
    assert proc.cmdline is None or len(proc.cmdline) <= CMDLINE_MAX
    assert "rss_mib" not in fields


def test_a_command_line_with_escapes_reaches_the_collector_as_plain_text(tree: Tree) -> None:
    tree.process(47, cmdline=b"python3\0\x1b[2J\x1b]0;x\x07train.py\0")
    fields = tree.reader()(47)
    line = json.dumps(
        {
            "type": "sample",
            "v": 1,
            "t": time.time(),
            "seq": 0,
            "slow": True,
            "gpus": [{"index": 0, "processes": [{"pid": 47, **fields}]}],
        }
    )
    msg = StreamDecoder().decode(line)
    assert isinstance(msg, Sample)
    [proc] = msg.gpus[0].processes or []
    assert proc.cmdline is not None and "\x1b" not in proc.cmdline and "\x07" not in proc.cmdline
    assert proc.cmdline.startswith("python3 [2J]0;xtrain.py")


# -- real processes --------------------------------------------------------------------------------


@pytest.fixture
def busy() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield child
    finally:
        child.kill()
        child.wait()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(["sleep", "60"])
    try:
        yield child
    finally:
        child.kill()
        child.wait()


def read_twice(pid: int, gap_s: float = 1.0) -> dict[str, Any]:
    reader = ProcReader()
    reader(pid)
    time.sleep(gap_s)
    return reader(pid)


def test_a_busy_loop_uses_most_of_a_core(busy: subprocess.Popen[bytes]) -> None:
    time.sleep(0.3)  # past the interpreter's start
    fields = read_twice(busy.pid)
    # The machine is shared: most of a core, not all of it.
    assert fields["cpu_pct"] > 50
    assert fields["cmdline"] == f"{sys.executable} -c while True: pass"
    decoded(busy.pid, fields)


def test_a_sleep_uses_no_cpu_and_started_when_it_was_started(
    sleeper: subprocess.Popen[bytes],
) -> None:
    started = time.time()
    fields = read_twice(sleeper.pid)
    assert fields["cpu_pct"] < 5
    assert fields["cmdline"] == "sleep 60"
    # The kernel counts the start in clock ticks since boot: to within a second or two.
    assert abs(fields["started_t"] - started) < 3
    assert 0 < fields["rss_mib"] < 100
    assert fields["uid"] == os.getuid()


def test_a_process_that_ended_has_no_fields() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert ProcReader()(child.pid) == {}


# -- NVML's per-process utilisation ----------------------------------------------------------------


def training(gpus: int = 2) -> SimNvml:
    sc = {"name": "jobs", "gpus": gpus, "workload": "training"}
    return SimNvml(Simulation(sc, seed=3, clock=FakeClock()))


def processes(sample: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for g in sample["gpus"] for p in g.get("processes", [])]


def test_each_process_gets_its_gpus_sm_and_memory_utilisation() -> None:
    nvml = training()
    backend = NvmlBackend(nvml, event_thread=False, attribute_process=lambda pid: {})
    backend.hello()
    sample = backend.sample(slow=True)
    for g in sample["gpus"]:
        [p] = g["processes"]
        assert p["sm_util_pct"] == g["util_pct"] and p["mem_util_pct"] == g["mem_util_pct"]
        assert p["sm_util_pct"] > 50  # a training job


def test_no_new_sample_is_no_figure_and_no_error() -> None:
    nvml = training()
    backend = NvmlBackend(nvml, event_thread=False, attribute_process=lambda pid: {})
    backend.hello()
    backend.sample(slow=True)
    # No simulated time passed: NVML took no new sample of the processes (NOT_FOUND).
    again = processes(backend.sample(slow=True))
    assert again and all("sm_util_pct" not in p for p in again)
    assert backend.transient_errors == 0
    nvml.sim.clock.t += 1.0  # type: ignore[attr-defined]
    assert all("sm_util_pct" in p for p in processes(backend.sample(slow=True)))


class NoProcessUtil:
    """A simulated NVML whose driver refuses per-process utilisation (as vGPU guests do)."""

    def __init__(self) -> None:
        self._nv = training()
        self.asked = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._nv, name)

    def nvmlDeviceGetProcessUtilization(self, handle: Any, timeStamp: int) -> list[Any]:
        self.asked += 1
        raise self._nv.NVMLError(self._nv.NVML_ERROR_NOT_SUPPORTED)


def test_a_gpu_that_does_not_sample_processes_is_not_asked_again() -> None:
    nvml = NoProcessUtil()
    backend = NvmlBackend(nvml, event_thread=False, attribute_process=lambda pid: {})
    backend.hello()
    for _ in range(3):
        procs = processes(backend.sample(slow=True))
        assert procs and all("sm_util_pct" not in p for p in procs)
    assert nvml.asked == 2  # once per GPU


def test_processes_come_in_every_sample_only_while_asked() -> None:
    backend = NvmlBackend(training(), event_thread=False, attribute_process=lambda pid: {})
    backend.hello()
    assert all("processes" not in g for g in backend.sample(slow=False)["gpus"])
    backend.processes_every_sample = True
    fast = backend.sample(slow=False)["gpus"]
    assert all(len(g["processes"]) == 1 for g in fast)
    assert all("pcie_gen" not in g for g in fast)  # the slow signals stay slow
    backend.processes_every_sample = False
    assert all("processes" not in g for g in backend.sample(slow=False)["gpus"])


def test_simulated_processes_report_what_the_real_hook_reads() -> None:
    from gputui.agent.sim_backend import SimBackend

    backend = SimBackend({"name": "t", "gpus": 2, "workload": "training"}, event_thread=False)
    backend.hello()
    procs = processes(backend.sample(slow=True))
    backend.close()
    for rank, p in enumerate(procs):
        proc = decoded(p.pop("pid"), p)
        assert proc.cmdline is not None and proc.cmdline.endswith(f"--local-rank={rank}")
        assert proc.cpu_pct is not None and proc.cpu_pct > 100  # a rank spins its core
        assert proc.rss_mib is not None and proc.rss_mib > 2048
        assert proc.started_t is not None and proc.started_t < time.time() - 600
        assert proc.sm_util_pct is not None
    assert procs[0]["started_t"] == procs[1]["started_t"]  # one torchrun started them
