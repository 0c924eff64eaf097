"""The simulated NVML offers pynvml's surface for every name the NVML backend uses.

The lists live beside the code that uses them (gputui/agent/nvml_backend.py); a test below
checks that no pynvml name in that module is missing from them.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pynvml
import pytest

from gputui.agent import nvml_backend, simnvml
from gputui.agent.simulation import Simulation

SIM = simnvml.SimNvml(Simulation({"name": "surface"}, seed=0))


@pytest.mark.parametrize("name", nvml_backend.NVML_FUNCTIONS)
def test_function_exists_with_pynvml_signature(name: str) -> None:
    real = getattr(pynvml, name)
    fake = getattr(SIM, name)
    real_params = inspect.signature(real).parameters
    fake_params = inspect.signature(fake).parameters
    assert list(fake_params) == list(real_params)
    for pname, param in real_params.items():
        assert fake_params[pname].default == param.default, pname


@pytest.mark.parametrize("name", nvml_backend.NVML_CONSTANTS)
def test_constant_has_pynvml_value(name: str) -> None:
    assert getattr(SIM, name) == getattr(pynvml, name)


@pytest.mark.parametrize("name", nvml_backend.NVML_ERROR_CLASSES)
def test_error_class_exists(name: str) -> None:
    assert getattr(SIM, name).__name__ == getattr(pynvml, name).__name__


def _error_codes() -> list[str]:
    return sorted(n for n in dir(pynvml) if n.startswith("NVML_ERROR_"))


@pytest.mark.parametrize("name", _error_codes())
def test_every_error_code_maps_to_pynvml_class(name: str) -> None:
    code = getattr(pynvml, name)
    assert getattr(SIM, name) == code
    real = pynvml.NVMLError(code)
    fake = SIM.NVMLError(code)
    assert type(fake).__name__ == type(real).__name__
    assert isinstance(fake, SIM.NVMLError)
    assert isinstance(fake, getattr(SIM, type(real).__name__))
    assert fake.value == code
    # Constructing the subclass directly works as in pynvml (it ignores its argument).
    again = getattr(SIM, type(real).__name__)(0)
    assert again.value == code


def test_error_text_matches_pynvml_for_the_codes_the_agent_reports() -> None:
    for code in (pynvml.NVML_ERROR_GPU_IS_LOST, pynvml.NVML_ERROR_RESET_REQUIRED):
        assert str(SIM.NVMLError(code)) == str(pynvml.NVMLError(code))


def test_the_lists_cover_every_pynvml_name_the_backend_uses() -> None:
    source = Path(nvml_backend.__file__).read_text(encoding="utf-8")
    body = source.split("NVML_ERROR_CLASSES = ", 1)[1]  # past the lists themselves
    used = set(re.findall(r"\b(nvml[A-Z]\w*|NVML_\w+|NVMLError\w*)\b", body))
    used = {n for n in used if not n.endswith("_")}  # prefixes of names built at run time
    used -= {"nvmlReturn"}  # an attribute of field values, not a name of the module
    listed = (
        set(nvml_backend.NVML_FUNCTIONS)
        | set(nvml_backend.NVML_CONSTANTS)
        | set(nvml_backend.NVML_ERROR_CLASSES)
    )
    assert used - listed == set()


def test_return_shapes_have_pynvml_attribute_names() -> None:
    nv = simnvml.SimNvml(Simulation({"name": "shapes", "gpus": 2}, seed=1))
    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    mem = nv.nvmlDeviceGetMemoryInfo(h)
    assert mem.total == mem.used + mem.free
    assert mem.total == 81559 * (1 << 20)
    rates = nv.nvmlDeviceGetUtilizationRates(h)
    assert 0 <= rates.gpu <= 100 and 0 <= rates.memory <= 100
    assert nv.nvmlDeviceGetPciInfo(h).busId == "00000000:18:00.0"
    assert len(nv.nvmlDeviceGetRemappedRows(h)) == 4
    (field,) = nv.nvmlDeviceGetFieldValues(h, [nv.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION])
    assert field.nvmlReturn == nv.NVML_SUCCESS and field.value.uiVal == 0
    procs = nv.nvmlDeviceGetComputeRunningProcesses(h)
    assert procs and procs[0].usedGpuMemory > 0 and procs[0].pid > 0
    assert 300_000 < nv.nvmlDeviceGetPowerUsage(h) < 760_000  # mW
    event_set = nv.nvmlEventSetCreate()
    nv.nvmlDeviceRegisterEvents(h, nv.nvmlEventTypeXidCriticalError, event_set)
    with pytest.raises(nv.NVMLError_Timeout):
        nv.nvmlEventSetWait_v2(event_set, 0)


def test_calls_before_init_raise_uninitialized() -> None:
    nv = simnvml.SimNvml(Simulation({"name": "uninit"}, seed=0))
    with pytest.raises(nv.NVMLError_Uninitialized):
        nv.nvmlDeviceGetCount()


def _fields(struct: type) -> set[str]:
    return {name for name, _ in struct._fields_}


def test_memory_info_v1_and_v2_have_pynvml_fields_and_semantics() -> None:
    nv = simnvml.SimNvml(Simulation({"name": "memory", "gpus": 1, "workload": "idle"}, seed=0))
    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    v1 = nv.nvmlDeviceGetMemoryInfo(h)
    v2 = nv.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
    assert set(vars(v1)) == _fields(pynvml.c_nvmlMemory_t)
    assert set(vars(v2)) == _fields(pynvml.c_nvmlMemory_v2_t)
    assert v2.version == pynvml.nvmlMemory_v2
    # v2 says the reserved memory apart; v1 counts it as used (an idle H200: 0 + 615 MiB).
    assert v2.used == 0
    assert v1.used == v2.used + v2.reserved
    assert v1.total == v2.total == v1.used + v1.free == v2.reserved + v2.used + v2.free
    assert v2.reserved / v2.total == pytest.approx(615.1 / 143771, rel=0.01)
    with pytest.raises(nv.NVMLError_ArgumentVersionMismatch):
        nv.nvmlDeviceGetMemoryInfo(h, version=2)  # the struct version alone is not the word


def test_a_driver_before_v2_memory_info_refuses_it_as_pynvml_does() -> None:
    """pynvml raises FUNCTION_NOT_FOUND for a symbol the library lacks; a 470 driver lacks
    nvmlDeviceGetMemoryInfo_v2 and the clock-event reasons call, and says it is 470."""
    sim = Simulation({"name": "r470", "gpus": 1, "driver": "470"}, seed=0)
    nv = simnvml.SimNvml(sim)
    nv.nvmlInit()
    h = nv.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(nv.NVMLError_FunctionNotFound):
        nv.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
    with pytest.raises(nv.NVMLError_FunctionNotFound):
        nv.nvmlDeviceGetCurrentClocksEventReasons(h)
    assert nv.nvmlDeviceGetCurrentClocksThrottleReasons(h) == sim.gpus[0].clock_events
    v1 = nv.nvmlDeviceGetMemoryInfo(h)
    assert v1.used == int(sim.gpus[0].mem_used_mib * (1 << 20)) + int(
        sim.gpus[0].mem_reserved_mib * (1 << 20)
    )
    assert nv.nvmlSystemGetDriverVersion().startswith("470.")
    assert nv.nvmlSystemGetCudaDriverVersion() == 11040
    (field,) = nv.nvmlDeviceGetFieldValues(h, [nv.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION])
    assert field.nvmlReturn == nv.NVML_ERROR_NOT_SUPPORTED
