"""Memory as nvidia-smi counts it: NVML v2 where the driver has it, v1 where it does not.

A real idle H200 (driver 580) reads 615 MiB used through NVML's v1 memory info, and 0 MiB used
plus 616 MiB reserved through nvidia-smi, which reads v2. The agent reads v2 and reports the
reserved memory apart, falling back to v1 once per process where the driver or pynvml lacks v2.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gputui.agent.nvml_backend import NvmlBackend
from gputui.agent.simnvml import SimNvml
from gputui.agent.simulation import RESERVED_SHARE, Simulation
from gputui.collect.host_runtime import HostRuntime
from gputui.collect.protocol import StreamDecoder
from gputui.core.model import FleetSnapshot, Hello, Sample
from gputui.render.report import report_json
from tests.agent_sim import FakeClock, run_fast

H100_MIB = 81559
H100_RESERVED_MIB = round(H100_MIB * RESERVED_SHARE, 1)


def sim_nvml(workload: str = "idle", driver: str = "570", gpus: int = 2) -> SimNvml:
    sc = {"name": "memory", "gpus": gpus, "workload": workload, "driver": driver}
    return SimNvml(Simulation(sc, seed=0, clock=FakeClock()))


class Library:
    """A simulated NVML seen through a given pynvml: counts the memory calls, and can play a
    pynvml release from before v2 memory info (no `version` parameter, or no nvmlMemory_v2)."""

    def __init__(self, nv: SimNvml, *, version_param: bool = True, v2_name: bool = True) -> None:
        self._nv = nv
        self._version_param = version_param
        self._v2_name = v2_name
        self.versions: list[int | None] = []  # the `version` of each memory call

    def __getattr__(self, name: str) -> Any:
        if name == "nvmlMemory_v2" and not self._v2_name:
            raise AttributeError(name)
        return getattr(self._nv, name)

    def nvmlDeviceGetMemoryInfo(self, handle: Any, **kwargs: Any) -> Any:
        if kwargs and not self._version_param:
            raise TypeError("nvmlDeviceGetMemoryInfo() got an unexpected keyword argument")
        self.versions.append(kwargs.get("version"))
        return self._nv.nvmlDeviceGetMemoryInfo(handle, **kwargs)


def readings(nvml: Any, samples: int = 3) -> tuple[NvmlBackend, list[dict[str, Any]]]:
    backend = NvmlBackend(nvml, event_thread=False)
    backend.hello()
    out = [g for _ in range(samples) for g in backend.sample(slow=False)["gpus"]]
    return backend, out


def test_an_idle_gpu_reads_zero_used_and_the_reserved_memory_apart() -> None:
    backend, gpus = readings(sim_nvml("idle"))
    assert backend.memory_v2 is True
    for g in gpus:
        assert g["mem_used_mib"] == 0.0
        assert g["mem_reserved_mib"] == H100_RESERVED_MIB
    # About 0.43% of the board, as the H200 measured (615 MiB of 143,771).
    assert 340.0 < H100_RESERVED_MIB < 360.0


def test_a_busy_gpu_reads_used_without_the_reserved_memory() -> None:
    nv = sim_nvml("training")
    _, gpus = readings(nv)
    sim_used = nv.sim.gpus[0].mem_used_mib
    assert gpus[0]["mem_used_mib"] == round(sim_used, 1)
    assert gpus[0]["mem_reserved_mib"] == H100_RESERVED_MIB


def test_hello_total_is_the_same_through_v2() -> None:
    backend = NvmlBackend(sim_nvml(), event_thread=False)
    assert backend.hello()["gpus"][0]["memory_total_mib"] == float(H100_MIB)


def test_a_driver_without_v2_falls_back_to_v1_once_per_process() -> None:
    lib = Library(sim_nvml("idle", driver="470"))
    backend, gpus = readings(lib, samples=4)
    assert backend.memory_v2 is False
    # v1 counts the reserved memory as used, and cannot say how much of it is reserved.
    assert all(g["mem_used_mib"] == H100_RESERVED_MIB for g in gpus)
    assert all("mem_reserved_mib" not in g for g in gpus)
    # v2 was asked once (the hello's first GPU), never again on any GPU or sample.
    assert lib.versions[0] == lib._nv.nvmlMemory_v2
    assert lib.versions[1:] == [None] * (2 + 2 * 4)


@pytest.mark.parametrize(
    ("version_param", "v2_name"),
    [(False, True), (True, False)],
    ids=["no-version-parameter", "no-nvmlMemory_v2"],
)
def test_a_pynvml_without_v2_falls_back_to_v1(version_param: bool, v2_name: bool) -> None:
    lib = Library(sim_nvml("idle"), version_param=version_param, v2_name=v2_name)
    backend, gpus = readings(lib)
    assert backend.memory_v2 is False
    assert all(g["mem_used_mib"] == H100_RESERVED_MIB for g in gpus)
    assert all("mem_reserved_mib" not in g for g in gpus)
    assert set(lib.versions) == {None}  # a refused call is not counted by the stand-in


def test_a_driver_that_refuses_the_structure_version_falls_back() -> None:
    nv = sim_nvml("idle")
    real = nv.nvmlDeviceGetMemoryInfo

    def refuse_v2(handle: Any, version: int | None = None) -> Any:
        if version:
            raise nv.NVMLError(nv.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        return real(handle)

    nv.nvmlDeviceGetMemoryInfo = refuse_v2  # type: ignore[method-assign]
    backend, gpus = readings(nv)
    assert backend.memory_v2 is False
    assert gpus[0]["mem_used_mib"] == H100_RESERVED_MIB


def test_a_passing_failure_of_v2_leaves_memory_out_of_one_sample_only() -> None:
    nv = sim_nvml("idle")
    real = nv.nvmlDeviceGetMemoryInfo
    failures = [1]

    def flaky(handle: Any, version: int | None = None) -> Any:
        if version and failures:
            failures.pop()
            raise nv.NVMLError(nv.NVML_ERROR_UNKNOWN)
        return real(handle, version)

    backend = NvmlBackend(nv, event_thread=False)
    nv.nvmlDeviceGetMemoryInfo = flaky  # type: ignore[method-assign]
    first = backend.sample(slow=False)["gpus"][0]
    second = backend.sample(slow=False)["gpus"][0]
    assert "mem_used_mib" not in first and backend.transient_errors == 1
    assert backend.memory_v2 is True
    assert second["mem_reserved_mib"] == H100_RESERVED_MIB


def test_a_gpu_lost_during_the_v2_call_is_lost_not_downgraded() -> None:
    nv = sim_nvml("idle")
    real = nv.nvmlDeviceGetMemoryInfo

    def lost_gpu1(handle: Any, version: int | None = None) -> Any:
        if handle.index == 1:
            raise nv.NVMLError(nv.NVML_ERROR_GPU_IS_LOST)
        return real(handle, version)

    backend = NvmlBackend(nv, event_thread=False)
    nv.nvmlDeviceGetMemoryInfo = lost_gpu1  # type: ignore[method-assign]
    gpus = backend.sample(slow=False)["gpus"]
    assert gpus[1]["status"] == "lost"
    assert backend.memory_v2 is True
    assert gpus[0]["mem_reserved_mib"] == H100_RESERVED_MIB


@pytest.mark.parametrize("driver", ["570", "470"])
def test_the_stream_carries_memory_as_each_driver_reports_it(driver: str) -> None:
    sc = {"name": "stream", "gpus": 2, "workload": "training", "driver": driver}
    stream = run_fast(sc, until=10, slow_every=5)
    decoder = StreamDecoder()
    decoded = [decoder.decode(line) for line in stream.raw.splitlines()]
    assert decoder.stats.bad == 0
    hello = decoded[0]
    assert isinstance(hello, Hello) and hello.driver_version is not None
    assert hello.driver_version.startswith(driver + ".")
    readings = [g for m in decoded if isinstance(m, Sample) for g in m.gpus]
    assert readings and all(g.clock_events is not None for g in readings)
    sim = stream.backend.simulation.gpus[0]
    used = [g.mem_used_mib for g in readings if g.index == 0]
    if driver == "570":
        assert all(g.mem_reserved_mib == H100_RESERVED_MIB for g in readings)
        assert used[-1] == round(sim.mem_used_mib, 1)
    else:
        assert all(g.mem_reserved_mib is None for g in readings)
        assert used[-1] == pytest.approx(sim.mem_used_mib + sim.mem_reserved_mib, abs=0.1)


def test_the_report_carries_used_and_reserved_per_gpu() -> None:
    """From the agent on a simulated idle board through the host's runtime to report JSON."""
    stream = run_fast({"name": "report", "gpus": 2, "workload": "idle"}, until=3)
    clock = FakeClock()
    runtime = HostRuntime("sim-1", interval_s=1.0, emit=lambda *_: None, clock=clock)
    for line, message in zip(stream.raw.splitlines(), stream.lines, strict=True):
        clock.t = message.get("t", clock.t)
        runtime.on_line(line)
    doc = json.loads(report_json(FleetSnapshot(t=clock.t, hosts=(runtime.snapshot(),))))
    gpus = doc["hosts"][0]["gpus"]
    assert [(g["mem_used_mib"], g["mem_reserved_mib"], g["mem_total_mib"]) for g in gpus] == [
        (0.0, H100_RESERVED_MIB, float(H100_MIB))
    ] * 2
