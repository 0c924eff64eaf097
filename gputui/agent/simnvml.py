"""A simulated NVML with pynvml's surface, so NvmlBackend runs unchanged on simulated GPUs.

SimNvml(simulation) is a module-like object: its methods carry pynvml's function names and
parameter names, its attributes pynvml's constants, and NVMLError here maps error codes to the
same subclasses (NVMLError(15) is an NVMLError_GpuIsLost) as pynvml's does. Return values have
pynvml's attribute names and units (mW, bytes, MHz). tests/test_simnvml_surface.py holds the
surface against the real pynvml module.

A lost GPU raises NVML_ERROR_GPU_IS_LOST from every per-device call, one that needs a reset
NVML_ERROR_RESET_REQUIRED, as the driver does.

The scenario's `driver` picks what the library offers. A 580 driver (the H200 recorded in
tests/fixtures/h200) has everything the agent calls, and answers the five held-clock counters
(nanoseconds) at the field ids of its release. A 570 driver answers only the two older ones
(SW power cap and sync boost: its ids for the others belong to power smoothing, which a Hopper
board does not support). A 470 driver also lacks the calls added since: nvmlDeviceGetMemoryInfo
with a `version` (v2: `used` without the reserved memory, `reserved` apart), the clock-event
reasons call (R535) and the recovery-action field (R565); pynvml raises
NVML_ERROR_FUNCTION_NOT_FOUND for a function the library does not export, and v1 memory info
counts the reserved memory as used.
"""

from __future__ import annotations

import string
import time
from typing import Any, ClassVar, NamedTuple

from .fields import held_field_ids
from .simulation import EVENT_DBE, EVENT_XID, NVLINK_COUNTERS, SimGpu, Simulation

# -- error codes and classes (pynvml's values and names) ---------------------------------------

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_INSUFFICIENT_POWER = 8
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_IRQ_ISSUE = 11
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_CORRUPTED_INFOROM = 14
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_OPERATING_SYSTEM = 17
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_IN_USE = 19
NVML_ERROR_MEMORY = 20
NVML_ERROR_NO_DATA = 21
NVML_ERROR_VGPU_ECC_NOT_SUPPORTED = 22
NVML_ERROR_INSUFFICIENT_RESOURCES = 23
NVML_ERROR_FREQ_NOT_SUPPORTED = 24
NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25
NVML_ERROR_DEPRECATED = 26
NVML_ERROR_NOT_READY = 27
NVML_ERROR_GPU_NOT_FOUND = 28
NVML_ERROR_INVALID_STATE = 29
NVML_ERROR_RESET_TYPE_NOT_SUPPORTED = 30
NVML_ERROR_UNKNOWN = 999

_ERROR_CODES = {k: v for k, v in dict(globals()).items() if k.startswith("NVML_ERROR_")}
_ERROR_TEXT = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_TIMEOUT: "Timeout",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_RESET_REQUIRED: "GPU requires restart",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """pynvml's NVMLError: constructing it with a code gives that code's subclass."""

    _valClassMapping: ClassVar[dict[int, type]] = {}
    value: int

    def __new__(typ, value: int) -> NVMLError:
        if typ is NVMLError:
            typ = NVMLError._valClassMapping.get(value, typ)
        obj: NVMLError = Exception.__new__(typ)
        obj.value = value
        return obj

    def __init__(self, value: int) -> None:
        super().__init__(value)

    def __str__(self) -> str:
        return _ERROR_TEXT.get(self.value, f"NVML Error with code {self.value}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NVMLError) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)


def _error_class(code: int) -> type:
    def new(typ: type, *args: Any) -> NVMLError:
        return NVMLError.__new__(typ, code)

    def init(self: NVMLError, *args: Any) -> None:
        Exception.__init__(self, code)

    return type(
        f"NVMLError_{_error_class_suffix(code)}",
        (NVMLError,),
        {"__new__": new, "__init__": init, "__module__": __name__},
    )


def _error_class_suffix(code: int) -> str:
    name = next(k for k, v in _ERROR_CODES.items() if v == code)
    # pynvml's rule: NVML_ERROR_GPU_IS_LOST -> NVMLError_GpuIsLost
    return string.capwords(name.replace("NVML_ERROR_", ""), "_").replace("_", "")


ERROR_CLASSES: dict[str, type] = {}
for _code in _ERROR_CODES.values():
    _cls = _error_class(_code)
    NVMLError._valClassMapping[_code] = _cls
    ERROR_CLASSES[_cls.__name__] = _cls


# -- other constants (pynvml's values) ---------------------------------------------------------

CONSTANTS: dict[str, int] = {
    "NVML_SUCCESS": NVML_SUCCESS,
    "NVML_TEMPERATURE_GPU": 0,
    "NVML_TEMPERATURE_THRESHOLD_SHUTDOWN": 0,
    "NVML_TEMPERATURE_THRESHOLD_SLOWDOWN": 1,
    "NVML_TEMPERATURE_THRESHOLD_MEM_MAX": 2,
    "NVML_TEMPERATURE_THRESHOLD_GPU_MAX": 3,
    "NVML_CLOCK_GRAPHICS": 0,
    "NVML_CLOCK_SM": 1,
    "NVML_CLOCK_MEM": 2,
    "NVML_CLOCK_VIDEO": 3,
    "NVML_MEMORY_ERROR_TYPE_CORRECTED": 0,
    "NVML_MEMORY_ERROR_TYPE_UNCORRECTED": 1,
    "NVML_VOLATILE_ECC": 0,
    "NVML_AGGREGATE_ECC": 1,
    "NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS": 0,
    "NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR": 1,
    "NVML_NVLINK_ERROR_DL_REPLAY": 0,
    "NVML_NVLINK_ERROR_DL_RECOVERY": 1,
    "NVML_NVLINK_ERROR_DL_CRC_FLIT": 2,
    "NVML_NVLINK_ERROR_DL_CRC_DATA": 3,
    "NVML_NVLINK_MAX_LINKS": 36,
    "NVML_FEATURE_DISABLED": 0,
    "NVML_FEATURE_ENABLED": 1,
    "NVML_FI_DEV_GET_GPU_RECOVERY_ACTION": 230,
    # As nvidia-ml-py 13.580.82 and later number them (fields.HELD_FIELD_IDS has the others).
    "NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_POWER_CAP": 74,
    "NVML_FI_DEV_CLOCKS_EVENT_REASON_SYNC_BOOST": 76,
    "NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_THERM_SLOWDOWN": 269,
    "NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_THERM_SLOWDOWN": 270,
    "NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_POWER_BRAKE_SLOWDOWN": 271,
    "NVML_VALUE_TYPE_UNSIGNED_INT": 1,
    "NVML_VALUE_TYPE_UNSIGNED_LONG_LONG": 3,
    "nvmlEventTypeSingleBitEccError": 0x1,
    "nvmlEventTypeDoubleBitEccError": EVENT_DBE,
    "nvmlEventTypePState": 0x4,
    "nvmlEventTypeXidCriticalError": EVENT_XID,
    "nvmlEventTypeClock": 0x10,
    # The version word of nvmlMemory_v2_t: struct version 2, size 40 bytes.
    "nvmlMemory_v2": 0x02000028,
}

NVML_MEMORY_V2 = CONSTANTS["nvmlMemory_v2"]
_VALUE_UINT = CONSTANTS["NVML_VALUE_TYPE_UNSIGNED_INT"]
_VALUE_ULL = CONSTANTS["NVML_VALUE_TYPE_UNSIGNED_LONG_LONG"]


class Driver(NamedTuple):
    """What one driver branch reports and offers."""

    version: str  # nvmlSystemGetDriverVersion
    nvml_version: str
    cuda: int  # as nvmlSystemGetCudaDriverVersion encodes it: 12080 is 12.8
    memory_v2: bool  # nvmlDeviceGetMemoryInfo_v2 (R510)
    clock_events: bool  # nvmlDeviceGetCurrentClocksEventReasons (R535)
    recovery_action: bool  # field NVML_FI_DEV_GET_GPU_RECOVERY_ACTION (R565)


DRIVERS = {
    "580": Driver("580.159.04", "13.580.159.04", 13000, True, True, True),
    "570": Driver("570.124.06", "12.570.124.06", 12080, True, True, True),
    "470": Driver("470.256.02", "11.470.256.02", 11040, False, False, False),
}
_MIB = 1 << 20


# -- return types (pynvml's attribute names) ---------------------------------------------------


class Record:
    """A plain object with the attributes pynvml's structures expose."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        inner = ", ".join(f"{kv[0]}={kv[1]!r}" for kv in sorted(self.__dict__.items()))
        return f"{type(self).__name__}({inner})"


class SimHandle:
    """What nvmlDeviceGetHandleByIndex returns: opaque to the caller."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __repr__(self) -> str:
        return f"<nvmlDevice_t sim {self.index}>"


class SimEventSet:
    """What nvmlEventSetCreate returns: registrations and a read position in the event log."""

    def __init__(self, cursor: int) -> None:
        self.masks: dict[int, int] = {}
        self.cursor = cursor
        self.freed = False


class SimNvml:
    """The simulated NVML; every method is named and shaped like pynvml's function."""

    NVMLError = NVMLError
    # Events a simulated board can deliver (pynvml's nvmlDeviceGetSupportedEventTypes).
    SUPPORTED_EVENTS = 0x1 | EVENT_DBE | 0x4 | EVENT_XID | 0x10

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.driver = DRIVERS[sim.scenario["driver"]]
        # field id -> the held-clock counter it reads, as this driver numbers them.
        self._held_ids = {fid: name for name, fid in held_field_ids(self.driver.version).items()}
        self._initialised = 0
        self._handles = [SimHandle(g.index) for g in sim.gpus]
        for name, value in {**_ERROR_CODES, **CONSTANTS}.items():
            setattr(self, name, value)
        for name, cls in ERROR_CLASSES.items():
            setattr(self, name, cls)

    # -- helpers -----------------------------------------------------------------------------

    def _check_init(self) -> None:
        if not self._initialised:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    def _gpu(self, handle: Any) -> SimGpu:
        """The GPU behind `handle`, with the state stepped to now; raises as the driver does
        for a GPU that is lost or needs a reset."""
        # Every call of every sample comes through here: kept to a few attribute reads.
        if not self._initialised:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        sim = self.sim
        if not isinstance(handle, SimHandle) or not 0 <= handle.index < len(sim.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        sim.advance()
        g = sim.gpus[handle.index]
        status = g.status
        if status != "ok":
            if status == "lost":
                raise NVMLError(NVML_ERROR_GPU_IS_LOST)
            if status == "reset_required":
                raise NVMLError(NVML_ERROR_RESET_REQUIRED)
        return g

    # -- library -----------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self._initialised += 1

    def nvmlShutdown(self) -> None:
        self._check_init()
        self._initialised -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check_init()
        return self.driver.version

    def nvmlSystemGetNVMLVersion(self) -> str:
        self._check_init()
        return self.driver.nvml_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._check_init()
        return self.driver.cuda

    def nvmlSystemGetProcessName(self, pid: int) -> str:
        self._check_init()
        name = self.sim.process_name(pid)
        if name is None:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return "/usr/bin/" + name

    def nvmlDeviceGetCount(self) -> int:
        self._check_init()
        return len(self._handles)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> SimHandle:
        self._check_init()
        if not 0 <= index < len(self._handles):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        self._gpu(self._handles[index])
        return self._handles[index]

    # -- inventory ---------------------------------------------------------------------------

    def nvmlDeviceGetIndex(self, handle: Any) -> int:
        return self._gpu(handle).index

    def nvmlDeviceGetName(self, handle: Any) -> str:
        return self._gpu(handle).model.name

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return self._gpu(handle).uuid

    def nvmlDeviceGetSerial(self, handle: Any) -> str:
        return self._gpu(handle).serial

    def nvmlDeviceGetPciInfo(self, handle: Any) -> Record:
        g = self._gpu(handle)
        return Record(
            busId=g.pci_bus_id,
            busIdLegacy=g.pci_bus_id[4:],
            domain=0,
            bus=g.bus,
            device=0,
            pciDeviceId=(g.model.pci_device_id << 16) | 0x10DE,
            pciSubSystemId=0x16C110DE,
        )

    def nvmlDeviceGetTemperatureThreshold(self, handle: Any, threshold: int) -> int:
        m = self._gpu(handle).model
        limits = {
            0: m.temp_shutdown_c,
            1: m.temp_slowdown_c,
            2: m.temp_mem_max_c,
            3: m.temp_gpu_max_c,
        }
        if threshold not in limits:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return limits[threshold]

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:
        return int(self._gpu(handle).power_limit_w * 1000)

    def nvmlDeviceGetMaxClockInfo(self, handle: Any, type: int) -> int:
        m = self._gpu(handle).model
        if type in (0, 1):
            return m.sm_max_mhz
        if type == 2:
            return m.mem_max_mhz
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetMaxPcieLinkGeneration(self, handle: Any) -> int:
        return self._gpu(handle).model.pcie_gen_max

    def nvmlDeviceGetMaxPcieLinkWidth(self, handle: Any) -> int:
        return self._gpu(handle).model.pcie_width_max

    def nvmlDeviceGetEccMode(self, handle: Any) -> list[int]:
        self._gpu(handle)
        return [1, 1]

    def nvmlDeviceGetPersistenceMode(self, handle: Any) -> int:
        self._gpu(handle)
        return 1

    def nvmlDeviceGetArchitecture(self, device: Any) -> int:
        return self._gpu(device).model.arch

    # -- fast signals ------------------------------------------------------------------------

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Record:
        g = self._gpu(handle)
        return Record(gpu=round(g.util * 100), memory=round(g.mem_util * 100))

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: int | None = None) -> Record:
        """v1 without `version` (used counts the reserved memory, as the driver's v1 does);
        v2 with it: used, reserved apart, and total = reserved + used + free."""
        if version and not self.driver.memory_v2:
            self._check_init()
            raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)  # no such symbol in the library
        g = self._gpu(handle)
        total = g.model.memory_mib * _MIB
        used = int(g.mem_used_mib * _MIB)
        reserved = int(g.mem_reserved_mib * _MIB)
        free = total - used - reserved
        if not version:
            return Record(total=total, free=free, used=used + reserved)
        if version != NVML_MEMORY_V2:
            raise NVMLError(NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        return Record(version=version, total=total, reserved=reserved, free=free, used=used)

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        g = self._gpu(handle)
        if sensor != 0:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return round(g.temp_c)

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        return int(self._gpu(handle).power_w * 1000)

    def nvmlDeviceGetClockInfo(self, handle: Any, type: int) -> int:
        g = self._gpu(handle)
        if type in (0, 1):
            return g.sm_mhz
        if type == 2:
            return g.mem_mhz
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        if not self.driver.clock_events:
            self._check_init()
            raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
        return self._gpu(handle).clock_events

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: Any) -> int:
        return self._gpu(handle).clock_events

    # -- slow signals ------------------------------------------------------------------------

    def nvmlDeviceGetTotalEccErrors(self, handle: Any, errorType: int, counterType: int) -> int:
        g = self._gpu(handle)
        counts = {
            (0, 0): g.ecc_sbe_volatile,
            (1, 0): g.ecc_dbe_volatile,
            (0, 1): g.ecc_sbe_aggregate,
            (1, 1): g.ecc_dbe_aggregate,
        }
        if (errorType, counterType) not in counts:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return counts[(errorType, counterType)]

    def nvmlDeviceGetRemappedRows(self, device: Any) -> tuple[int, int, int, int]:
        g = self._gpu(device)
        if not g.model.row_remapping:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return (
            g.remap_corrected,
            g.remap_uncorrected,
            int(g.remap_pending),
            int(g.remap_failure),
        )

    def nvmlDeviceGetRetiredPages(self, device: Any, sourceFilter: int) -> list[int]:
        g = self._gpu(device)
        if g.model.row_remapping:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return list(g.retired_sbe if sourceFilter == 0 else g.retired_dbe)

    def nvmlDeviceGetRetiredPagesPendingStatus(self, device: Any) -> int:
        g = self._gpu(device)
        if g.model.row_remapping:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return int(g.retired_pending)

    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle: Any) -> int:
        return self._gpu(handle).pcie_gen

    def nvmlDeviceGetCurrPcieLinkWidth(self, handle: Any) -> int:
        return self._gpu(handle).pcie_width

    def nvmlDeviceGetPcieReplayCounter(self, handle: Any) -> int:
        return self._gpu(handle).pcie_replay

    def _link(self, device: Any, link: int) -> SimGpu:
        g = self._gpu(device)
        if not g.model.nvlinks:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if not 0 <= link < g.model.nvlinks:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return g

    def nvmlDeviceGetNvLinkState(self, device: Any, link: int) -> int:
        return int(self._link(device, link).nvlink_up[link])

    def nvmlDeviceGetNvLinkErrorCounter(self, device: Any, link: int, counter: int) -> int:
        g = self._link(device, link)
        if counter not in NVLINK_COUNTERS or counter in g.model.nvlink_unsupported_counters:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return g.nvlink_errors[link][counter]

    def nvmlDeviceGetFieldValues(self, handle: Any, fieldIds: list[int]) -> list[Record]:
        g = self._gpu(handle)
        out = []
        for field in fieldIds:
            ret, number, kind = NVML_ERROR_NOT_SUPPORTED, 0, _VALUE_UINT
            held = self._held_ids.get(field)
            # The recovery-action field exists from R565 on Ampere and later boards.
            if field == 230 and g.model.row_remapping and self.driver.recovery_action:
                ret, number = NVML_SUCCESS, g.recovery_action
            elif held is not None:
                ret, number = NVML_SUCCESS, g.held_ns[held]
                kind = _VALUE_ULL
            value = Record(
                dVal=float(number),
                uiVal=number & 0xFFFFFFFF,
                ulVal=number,
                ullVal=number,
                sllVal=number,
                siVal=number,
                usVal=number,
            )
            out.append(
                Record(
                    fieldId=field,
                    scopeId=0,
                    timestamp=int(time.time() * 1e6),
                    latencyUsec=0,
                    valueType=kind,
                    nvmlReturn=ret,
                    value=value,
                )
            )
        return out

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Record]:
        g = self._gpu(handle)
        return [
            Record(
                pid=pid,
                usedGpuMemory=int(g.process_mib * _MIB),
                gpuInstanceId=0xFFFFFFFF,
                computeInstanceId=0xFFFFFFFF,
            )
            for pid in g.pids
        ]

    def nvmlDeviceGetProcessUtilization(self, handle: Any, timeStamp: int) -> list[Record]:
        """One sample of each process on the GPU, taken at the simulation's latest step
        (NVML's CPU timestamp, microseconds), when that is newer than `timeStamp`; NOT_FOUND,
        as the driver answers, when no sample is (no process, or no step since the last read).
        The GPU's utilisation is shared evenly between its processes."""
        g = self._gpu(handle)
        sim = self.sim
        # Never 0, which asks for every sample: a simulation on an injected clock starts there.
        stamp = round(((sim.start_unix or 0.0) + sim.t / sim.speed) * 1e6) + 1
        if not g.pids or stamp <= timeStamp:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        share = len(g.pids)
        sm, mem = round(g.util * 100 / share), round(g.mem_util * 100 / share)
        return [
            Record(pid=pid, timeStamp=stamp, smUtil=sm, memUtil=mem, encUtil=0, decUtil=0)
            for pid in g.pids
        ]

    # -- events ------------------------------------------------------------------------------

    def nvmlDeviceGetSupportedEventTypes(self, handle: Any) -> int:
        self._gpu(handle)
        return self.SUPPORTED_EVENTS

    def nvmlEventSetCreate(self) -> SimEventSet:
        self._check_init()
        with self.sim.lock:
            return SimEventSet(len(self.sim.events))

    def nvmlDeviceRegisterEvents(self, handle: Any, eventTypes: int, eventSet: Any) -> None:
        g = self._gpu(handle)
        if eventTypes & ~self.SUPPORTED_EVENTS:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        eventSet.masks[g.index] = eventSet.masks.get(g.index, 0) | eventTypes

    def nvmlEventSetWait_v2(self, eventSet: Any, timeoutms: int) -> Record:
        """The next event registered in `eventSet`, waiting up to `timeoutms` of real time
        for the simulated clock to reach one."""
        self._check_init()
        deadline = time.monotonic() + timeoutms / 1000.0
        sim = self.sim
        with sim.lock:
            while True:
                sim.advance()
                while eventSet.cursor < len(sim.events):
                    ev = sim.events[eventSet.cursor]
                    eventSet.cursor += 1
                    if eventSet.masks.get(ev.gpu, 0) & ev.event_type:
                        return Record(
                            device=self._handles[ev.gpu],
                            eventType=ev.event_type,
                            eventData=ev.data,
                            gpuInstanceId=0xFFFFFFFF,
                            computeInstanceId=0xFFFFFFFF,
                        )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NVMLError(NVML_ERROR_TIMEOUT)
                # Sleep until the next scripted event is due (the default clock runs in real
                # seconds) or another reader steps the state: no polling, so hundreds of
                # simulated hosts on one machine cost nothing while nothing happens.
                due = sim.next_event_at()
                until_due = None if due is None else (due - sim.clock()) / sim.speed
                pause = left if until_due is None else min(left, max(0.005, until_due))
                sim.changed.wait(pause)

    def nvmlEventSetWait(self, eventSet: Any, timeoutms: int) -> Record:
        return self.nvmlEventSetWait_v2(eventSet, timeoutms)

    def nvmlEventSetFree(self, eventSet: Any) -> None:
        self._check_init()
        eventSet.freed = True
