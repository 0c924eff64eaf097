"""The NVML backend: reads GPUs through pynvml, or anything with pynvml's surface (simnvml).

Every call goes through one wrapper (_Reader.call) that sorts NVML's answers the way an
operator needs them sorted:
- NOT_SUPPORTED, FUNCTION_NOT_FOUND, NO_PERMISSION: the field is left out, and the call is
  not tried again on that GPU (a board that lacks NVLink lacks it on every tick);
- GPU_IS_LOST, RESET_REQUIRED: the whole GPU changes state, reported once as an event and in
  every sample as its status, while the other GPUs keep streaming;
- anything else: the field is left out of this sample only.

Fast signals are read every sample, slow ones when the run loop asks (every `slow_every`). The
processes come with the slow signals, and in every sample while the collector watches them
(`processes_every_sample`): each with its owner and what the host says of it (procinfo.py), and
its SM and memory utilisation where NVML samples it per process.
Which call reads each field, with which arguments and unit conversion, is declared once in
fields.py; the fields that take one plain call are read from that table here.
XIDs and double-bit ECC errors come from an NVML event set waited on in a daemon thread and
are pushed the moment NVML hands them over.

Memory is read as nvidia-smi counts it: NVML's v2 memory info, where `used` leaves out what the
driver and firmware reserve (about 0.4% of the board: 615 MiB of an idle H200 that v1 calls
used) and `reserved` says how much that is. Drivers before v2, and pynvml releases without
its `version` parameter, get v1, whose `used` counts the reserved memory.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Callable, Tuple

from .attribution import ProcAttribution
from .backend import Backend, BackendError, EventSink, Json
from .fields import READINGS, bytes_to_mib, held_field_ids, milliwatts_to_w, ns_to_us
from .procinfo import ProcReader

# Every pynvml name this module uses: the simulated NVML must offer each one with the same
# signature and value (tests/test_simnvml_surface.py checks it against the real pynvml).
NVML_FUNCTIONS = (
    "nvmlInit",
    "nvmlShutdown",
    "nvmlSystemGetDriverVersion",
    "nvmlSystemGetNVMLVersion",
    "nvmlSystemGetCudaDriverVersion",
    "nvmlSystemGetProcessName",
    "nvmlDeviceGetCount",
    "nvmlDeviceGetHandleByIndex",
    "nvmlDeviceGetIndex",
    "nvmlDeviceGetName",
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetSerial",
    "nvmlDeviceGetPciInfo",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetEnforcedPowerLimit",
    "nvmlDeviceGetTemperatureThreshold",
    "nvmlDeviceGetMaxClockInfo",
    "nvmlDeviceGetMaxPcieLinkGeneration",
    "nvmlDeviceGetMaxPcieLinkWidth",
    "nvmlDeviceGetEccMode",
    "nvmlDeviceGetPersistenceMode",
    "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetTemperature",
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetClockInfo",
    "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlDeviceGetCurrentClocksThrottleReasons",
    "nvmlDeviceGetTotalEccErrors",
    "nvmlDeviceGetRemappedRows",
    "nvmlDeviceGetRetiredPages",
    "nvmlDeviceGetRetiredPagesPendingStatus",
    "nvmlDeviceGetCurrPcieLinkGeneration",
    "nvmlDeviceGetCurrPcieLinkWidth",
    "nvmlDeviceGetPcieReplayCounter",
    "nvmlDeviceGetNvLinkState",
    "nvmlDeviceGetNvLinkErrorCounter",
    "nvmlDeviceGetFieldValues",
    "nvmlDeviceGetComputeRunningProcesses",
    "nvmlDeviceGetProcessUtilization",
    "nvmlDeviceGetSupportedEventTypes",
    "nvmlDeviceRegisterEvents",
    "nvmlEventSetCreate",
    "nvmlEventSetWait_v2",
    "nvmlEventSetWait",
    "nvmlEventSetFree",
)
NVML_CONSTANTS = (
    "NVML_SUCCESS",
    "NVML_ERROR_INVALID_ARGUMENT",
    "NVML_ERROR_NOT_SUPPORTED",
    "NVML_ERROR_NO_PERMISSION",
    "NVML_ERROR_NOT_FOUND",
    "NVML_ERROR_TIMEOUT",
    "NVML_ERROR_FUNCTION_NOT_FOUND",
    "NVML_ERROR_ARGUMENT_VERSION_MISMATCH",
    "NVML_ERROR_GPU_IS_LOST",
    "NVML_ERROR_RESET_REQUIRED",
    "NVML_TEMPERATURE_GPU",
    "NVML_TEMPERATURE_THRESHOLD_SHUTDOWN",
    "NVML_TEMPERATURE_THRESHOLD_SLOWDOWN",
    "NVML_TEMPERATURE_THRESHOLD_MEM_MAX",
    "NVML_TEMPERATURE_THRESHOLD_GPU_MAX",
    "NVML_CLOCK_SM",
    "NVML_CLOCK_MEM",
    "NVML_MEMORY_ERROR_TYPE_CORRECTED",
    "NVML_MEMORY_ERROR_TYPE_UNCORRECTED",
    "NVML_VOLATILE_ECC",
    "NVML_AGGREGATE_ECC",
    "NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS",
    "NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR",
    "NVML_NVLINK_ERROR_DL_REPLAY",
    "NVML_NVLINK_ERROR_DL_RECOVERY",
    "NVML_NVLINK_ERROR_DL_CRC_FLIT",
    "NVML_NVLINK_ERROR_DL_CRC_DATA",
    "NVML_NVLINK_MAX_LINKS",
    "NVML_FEATURE_ENABLED",
    "NVML_FI_DEV_GET_GPU_RECOVERY_ACTION",
    # The held-clock counters, as the field table names them; their ids are picked by the
    # driver's version (fields.HELD_FIELD_IDS), since they moved between releases.
    "NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_POWER_CAP",
    "NVML_FI_DEV_CLOCKS_EVENT_REASON_SYNC_BOOST",
    "NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_THERM_SLOWDOWN",
    "NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_THERM_SLOWDOWN",
    "NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_POWER_BRAKE_SLOWDOWN",
    "nvmlEventTypeXidCriticalError",
    "nvmlEventTypeDoubleBitEccError",
    "nvmlMemory_v2",
)
NVML_ERROR_CLASSES = ("NVMLError", "NVMLError_GpuIsLost", "NVMLError_NotSupported")

_EVENT_WAIT_MS = 500
# What the process hook may add to a process (docs/protocol.md); anything else is ignored.
_HOST_FIELDS = ("uid", "user", "job", "cmdline", "started_t", "cpu_pct", "rss_mib")


_PlainRead = Tuple[str, str, Tuple[Any, ...], Callable[[Any], Any]]


def _plain_reads(nvml: Any, slow: bool, prefix: str) -> tuple[_PlainRead, ...]:
    """The table's fields read by one plain call, of one speed and name prefix, in order."""
    return tuple(
        (f.name, f.nvml, tuple(getattr(nvml, a) for a in f.nvml_args), f.nvml_value)
        for f in READINGS
        if f.generic and f.slow == slow and f.name.startswith(prefix)
    )


def _percent(value: Any) -> float:
    """An NVML percentage, held to 0..100 (a driver has been seen to report more)."""
    return float(min(100, max(0, int(value))))


def _recovery_value(value: Any) -> int:
    return int(value.uiVal)


def _held_value(value: Any) -> int:
    return ns_to_us(value.ullVal)


class _Gone(Exception):
    """A GPU left service: lost (off the bus) or waiting for a reset."""

    def __init__(self, status: str, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


class _Gpu:
    """What the backend remembers about one GPU between samples."""

    def __init__(self, index: int, handle: Any) -> None:
        self.index = index
        self.handle = handle
        self.uuid = ""
        self.status = "ok"  # ok | lost | reset_required
        self.error = ""
        self.unsupported: set[str] = set()  # call keys NVML refused for good
        self.nvlinks = 0
        self.ecc_enabled: bool | None = None
        # The newest per-process utilisation sample read (NVML's CPU timestamp, microseconds):
        # the next read asks only for newer ones.
        self.process_util_seen = 0


def _text(value: Any) -> str:
    """pynvml returns bytes from older releases and str from newer ones."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _handle_key(handle: Any) -> Any:
    """A key that names the same device whichever handle object NVML returns for it:
    pynvml's handles are ctypes pointers (equal by address, not by identity)."""
    try:
        import ctypes

        return ("ptr", ctypes.cast(handle, ctypes.c_void_p).value)
    except Exception:
        return ("obj", id(handle))


class NvmlBackend(Backend):
    """Reads every GPU of the host through `nvml` (pynvml, or simnvml.SimNvml)."""

    name = "nvml"

    def __init__(
        self,
        nvml: Any,
        event_thread: bool = True,
        attribute_process: Callable[[int], Json] | None = None,
    ) -> None:
        self._nvml = nvml
        # Who owns each GPU process (uid, user, job) and what it is doing (command line, start,
        # CPU, resident memory), asked once per process per read of the processes. The real
        # one reads this host's /proc; the simulator plugs in its own, since its pids are made
        # up and must never be looked up in a real /proc.
        self.attribute_process: Callable[[int], Json] = (
            attribute_process if attribute_process is not None else ProcReader()
        )
        self._read_pids: set[int] = set()  # the processes the current read listed
        # Without the thread, events wait in NVML until pump_events() is called: tests that
        # fast-forward a simulated clock use this to place events deterministically.
        self._event_thread = event_thread
        self._emit: EventSink | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._event_set: Any = None
        self._closed = False
        self.transient_errors = 0  # calls that failed once and were left out of a sample
        # The training heartbeats read on slow samples (heartbeat.HeartbeatReader): main.py
        # plugs the reader in for a streaming agent; None reads none.
        self.heartbeats: Callable[[], list[Json]] | None = None
        # Whether v2 memory info is worth asking for: the driver and pynvml are the same for
        # every GPU and every sample, so one refusal settles it for this process.
        self.memory_v2 = getattr(nvml, "nvmlMemory_v2", None) is not None
        try:
            nvml.nvmlInit()
        except Exception as exc:
            raise BackendError("nvml_init_failed", f"nvmlInit failed: {exc}") from exc
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except nvml.NVMLError as exc:
            raise BackendError("nvml_init_failed", f"nvmlDeviceGetCount: {exc}") from exc
        if count == 0:
            raise BackendError("no_gpu", "NVML sees no GPU on this host")
        self._unsupported_codes = {
            nvml.NVML_ERROR_NOT_SUPPORTED,
            nvml.NVML_ERROR_FUNCTION_NOT_FOUND,
            nvml.NVML_ERROR_NO_PERMISSION,
        }
        # How a driver without v2 memory info answers a v2 request: pynvml finds no such symbol
        # in the library, or the driver knows the call but not this version of the structure.
        self._no_memory_v2_codes = {
            nvml.NVML_ERROR_FUNCTION_NOT_FOUND,
            nvml.NVML_ERROR_NOT_SUPPORTED,
            getattr(nvml, "NVML_ERROR_ARGUMENT_VERSION_MISMATCH", 25),
        }
        # The table's plain reads with their pynvml constants looked up once, not per sample:
        # (field, function, arguments after the handle, conversion).
        self._fast_reads = _plain_reads(nvml, slow=False, prefix="")
        self._ecc_reads = _plain_reads(nvml, slow=True, prefix="ecc_")
        self._pcie_reads = _plain_reads(nvml, slow=True, prefix="pcie_")
        # The field values read in one call per slow sample: the recovery action and the
        # held-clock counters, each with its conversion. Counter ids depend on the driver.
        driver: str | None = None
        with contextlib.suppress(Exception):
            driver = _text(nvml.nvmlSystemGetDriverVersion())
        recovery_id = int(getattr(nvml, "NVML_FI_DEV_GET_GPU_RECOVERY_ACTION", 230))
        self._field_reads: tuple[tuple[str, int, Callable[[Any], Any]], ...] = (
            ("recovery_action", recovery_id, _recovery_value),
            *((name, fid, _held_value) for name, fid in held_field_ids(driver).items()),
        )
        self._gpus: list[_Gpu] = []
        for i in range(count):
            gpu = _Gpu(i, None)
            try:
                gpu.handle = nvml.nvmlDeviceGetHandleByIndex(i)
            except nvml.NVMLError as exc:
                self._mark(gpu, self._gone(exc) or _Gone("error", str(exc)))
            self._gpus.append(gpu)
        self._by_handle: dict[Any, _Gpu] = {
            _handle_key(g.handle): g for g in self._gpus if g.handle is not None
        }

    # -- the one call wrapper ----------------------------------------------------------------

    def _gone(self, exc: Any) -> _Gone | None:
        code = getattr(exc, "value", None)
        if code == self._nvml.NVML_ERROR_GPU_IS_LOST:
            return _Gone("lost", str(exc))
        if code == self._nvml.NVML_ERROR_RESET_REQUIRED:
            return _Gone("reset_required", str(exc))
        return None

    def _call(self, gpu: _Gpu, key: str, fn_name: str, *args: Any) -> Any:
        """nvml.fn_name(*args), or None when this GPU cannot answer it (see module doc).
        Raises _Gone when the GPU is lost or needs a reset."""
        if key in gpu.unsupported:
            return None
        fn: Callable[..., Any] | None = getattr(self._nvml, fn_name, None)
        if fn is None:  # an older pynvml without this function
            gpu.unsupported.add(key)
            return None
        try:
            return fn(*args)
        except self._nvml.NVMLError as exc:
            gone = self._gone(exc)
            if gone is not None:
                raise gone from None
            if getattr(exc, "value", None) in self._unsupported_codes:
                gpu.unsupported.add(key)
            else:
                self.transient_errors += 1
            return None

    def _memory(self, gpu: _Gpu) -> tuple[Any, bool] | None:
        """(memory info, whether it is v2), or None when this GPU cannot answer now.
        Raises _Gone when the GPU is lost or needs a reset."""
        if self.memory_v2:
            nvml = self._nvml
            try:
                return nvml.nvmlDeviceGetMemoryInfo(gpu.handle, version=nvml.nvmlMemory_v2), True
            except TypeError:  # a pynvml from before the `version` parameter
                self.memory_v2 = False
            except nvml.NVMLError as exc:
                gone = self._gone(exc)
                if gone is not None:
                    raise gone from None
                if getattr(exc, "value", None) not in self._no_memory_v2_codes:
                    self.transient_errors += 1
                    return None
                self.memory_v2 = False
        mem = self._call(gpu, "mem", "nvmlDeviceGetMemoryInfo", gpu.handle)
        return None if mem is None else (mem, False)

    def _mark(self, gpu: _Gpu, gone: _Gone) -> None:
        """Record a GPU leaving service, and say so once."""
        if gpu.status == gone.status:
            return
        gpu.status = gone.status
        gpu.error = gone.error
        kind = {"lost": "gpu_lost", "reset_required": "reset_required"}.get(gone.status)
        if kind is not None:
            text = f"GPU {gpu.index}: {gone.error}"
            self._push({"kind": kind, "gpu": gpu.index, "uuid": gpu.uuid or None, "text": text})

    def _push(self, event: Json) -> None:
        if self._emit is not None:
            self._emit({k: v for k, v in event.items() if v is not None})

    # -- hello -------------------------------------------------------------------------------

    def hello(self) -> Json:
        nvml = self._nvml
        out: Json = {"gpus": [self._info(g) for g in self._gpus]}
        for key, fn_name in (
            ("driver_version", "nvmlSystemGetDriverVersion"),
            ("nvml_version", "nvmlSystemGetNVMLVersion"),
        ):
            # Missing in an old pynvml, or refused: the field is left out.
            with contextlib.suppress(Exception):
                out[key] = _text(getattr(nvml, fn_name)())
        with contextlib.suppress(Exception):
            cuda = int(nvml.nvmlSystemGetCudaDriverVersion())
            out["cuda_version"] = f"{cuda // 1000}.{cuda % 1000 // 10}"
        modes = []
        for g in self._gpus:
            try:
                modes.append(self._call(g, "persistence", "nvmlDeviceGetPersistenceMode", g.handle))
            except _Gone:
                modes.append(None)
        if modes and all(m is not None for m in modes):
            out["persistence_mode"] = all(m == nvml.NVML_FEATURE_ENABLED for m in modes)
        return out

    def _info(self, gpu: _Gpu) -> Json:
        nvml, h = self._nvml, gpu.handle
        info: Json = {"index": gpu.index, "uuid": "", "name": "unknown"}
        if gpu.status != "ok":
            return info
        try:
            gpu.uuid = _text(self._call(gpu, "uuid", "nvmlDeviceGetUUID", h) or "")
            info["uuid"] = gpu.uuid
            name = self._call(gpu, "name", "nvmlDeviceGetName", h)
            if name is not None:
                info["name"] = _text(name)
            serial = self._call(gpu, "serial", "nvmlDeviceGetSerial", h)
            if serial is not None:
                info["serial"] = _text(serial)
            pci = self._call(gpu, "pci", "nvmlDeviceGetPciInfo", h)
            if pci is not None:
                info["pci_bus_id"] = _text(pci.busId)
            memory = self._memory(gpu)
            if memory is not None:
                info["memory_total_mib"] = bytes_to_mib(memory[0].total)
            # The same call and key as the sample's power_limit_w: one refusal covers both.
            limit = self._call(gpu, "power_limit_w", "nvmlDeviceGetEnforcedPowerLimit", h)
            if limit is not None:
                info["power_limit_w"] = milliwatts_to_w(limit)
            for field, const in (
                ("temp_shutdown_c", "NVML_TEMPERATURE_THRESHOLD_SHUTDOWN"),
                ("temp_slowdown_c", "NVML_TEMPERATURE_THRESHOLD_SLOWDOWN"),
                ("temp_gpu_max_c", "NVML_TEMPERATURE_THRESHOLD_GPU_MAX"),
                ("temp_mem_max_c", "NVML_TEMPERATURE_THRESHOLD_MEM_MAX"),
            ):
                value = self._call(
                    gpu, field, "nvmlDeviceGetTemperatureThreshold", h, getattr(nvml, const)
                )
                # Boards without a sensor for a threshold report 0 rather than an error.
                if value:
                    info[field] = float(value)
            for field, clock in (
                ("sm_clock_max_mhz", nvml.NVML_CLOCK_SM),
                ("mem_clock_max_mhz", nvml.NVML_CLOCK_MEM),
            ):
                value = self._call(gpu, field, "nvmlDeviceGetMaxClockInfo", h, clock)
                if value is not None:
                    info[field] = int(value)
            gen = self._call(gpu, "pcie_gen_max", "nvmlDeviceGetMaxPcieLinkGeneration", h)
            if gen is not None:
                info["pcie_gen_max"] = int(gen)
            width = self._call(gpu, "pcie_width_max", "nvmlDeviceGetMaxPcieLinkWidth", h)
            if width is not None:
                info["pcie_width_max"] = int(width)
            gpu.nvlinks = self._count_nvlinks(gpu)
            info["nvlink_count"] = gpu.nvlinks
            ecc = self._call(gpu, "ecc_mode", "nvmlDeviceGetEccMode", h)
            if ecc is not None:
                gpu.ecc_enabled = ecc[0] == nvml.NVML_FEATURE_ENABLED
                info["ecc_enabled"] = gpu.ecc_enabled
        except _Gone as gone:
            self._mark(gpu, gone)
        return info

    def _count_nvlinks(self, gpu: _Gpu) -> int:
        """Links present: probe link 0, 1, ... until NVML says there is no such link."""
        nvml = self._nvml
        stop = {nvml.NVML_ERROR_NOT_SUPPORTED, nvml.NVML_ERROR_INVALID_ARGUMENT}
        count = 0
        for link in range(int(getattr(nvml, "NVML_NVLINK_MAX_LINKS", 18))):
            try:
                nvml.nvmlDeviceGetNvLinkState(gpu.handle, link)
            except nvml.NVMLError as exc:
                gone = self._gone(exc)
                if gone is not None:
                    raise gone from None
                if getattr(exc, "value", None) in stop:
                    break
                continue  # present but not answering now; don't count it
            except AttributeError:
                break
            count += 1
        return count

    # -- samples -----------------------------------------------------------------------------

    def sample(self, slow: bool) -> Json:
        self._read_pids = set()
        processes = slow or self.processes_every_sample
        out = {"gpus": [self._reading(g, slow, processes) for g in self._gpus]}
        if processes and isinstance(self.attribute_process, ProcAttribution):
            self.attribute_process.retain(self._read_pids)  # its cache holds one read at most
        if slow and self.heartbeats is not None:
            beats = self._heartbeats(self.heartbeats)
            if beats:
                out["heartbeats"] = beats
        return out

    def _heartbeats(self, read: Callable[[], list[Json]]) -> list[Json]:
        """The training heartbeats of this host's GPUs (heartbeat.py), each placed on its GPU
        by UUID and given the job its process belongs to where the attribution knows it."""
        try:
            beats = read()
        except Exception:  # a heartbeat must never cost the sample
            return []
        by_uuid = {g.uuid: g.index for g in self._gpus if g.uuid}
        out = []
        for beat in beats:
            index = by_uuid.get(beat.get("uuid") or "")
            if index is None:
                continue  # not one of this host's GPUs (or trained on the CPU)
            beat["gpu"] = index
            job = self._host_view(beat["pid"]).get("job")
            if job:
                beat["job"] = job
            out.append(beat)
        return out

    def _reading(self, gpu: _Gpu, slow: bool, processes: bool) -> Json:
        if gpu.status == "lost" or (gpu.status == "reset_required" and not slow):
            # A lost GPU stays lost until the node is rebooted; a GPU waiting for a reset is
            # probed again on slow ticks only, so a dead board costs one call per slow tick.
            return {"index": gpu.index, "status": gpu.status, "error": gpu.error}
        reading: Json = {"index": gpu.index}
        try:
            self._fast(gpu, reading)
            if slow:
                self._slow(gpu, reading)
            if processes:
                self._processes(gpu, reading)
        except _Gone as gone:
            self._mark(gpu, gone)
            return {"index": gpu.index, "status": gpu.status, "error": gpu.error}
        gpu.status, gpu.error = "ok", ""  # a reset brought it back
        return reading

    def _fast(self, gpu: _Gpu, r: Json) -> None:
        h = gpu.handle
        rates = self._call(gpu, "util", "nvmlDeviceGetUtilizationRates", h)
        if rates is not None:
            r["util_pct"] = float(rates.gpu)
            r["mem_util_pct"] = float(rates.memory)
        memory = self._memory(gpu)
        if memory is not None:
            mem, v2 = memory
            # v1's `used` includes the reserved memory; v2's does not, and says it apart.
            r["mem_used_mib"] = bytes_to_mib(mem.used)
            if v2:
                r["mem_reserved_mib"] = bytes_to_mib(mem.reserved)
        for field, fn_name, args, convert in self._fast_reads:  # temperature, power, clocks
            value = self._call(gpu, field, fn_name, h, *args)
            if value is not None:
                r[field] = convert(value)
        # "Clock event reasons" is the R535+ name of "throttle reasons"; older pynvml or
        # drivers only have the old one.
        reasons = self._call(gpu, "clock_events", "nvmlDeviceGetCurrentClocksEventReasons", h)
        if reasons is None and "clock_events" in gpu.unsupported:
            reasons = self._call(
                gpu, "clock_throttle", "nvmlDeviceGetCurrentClocksThrottleReasons", h
            )
        if reasons is not None:
            r["clock_events"] = int(reasons)

    def _slow(self, gpu: _Gpu, r: Json) -> None:
        self._ecc(gpu, r)
        self._remap(gpu, r)
        self._pcie(gpu, r)
        if gpu.nvlinks:
            self._nvlink(gpu, r)
        self._field_values(gpu, r)

    def _ecc(self, gpu: _Gpu, r: Json) -> None:
        if gpu.ecc_enabled is False:
            return  # counters of a board with ECC off mean nothing
        self._plain(gpu, r, self._ecc_reads)

    def _remap(self, gpu: _Gpu, r: Json) -> None:
        nvml, h = self._nvml, gpu.handle
        rows = self._call(gpu, "remap", "nvmlDeviceGetRemappedRows", h)
        if rows is not None:
            r["remap_corrected"] = int(rows[0])
            r["remap_uncorrected"] = int(rows[1])
            r["remap_pending"] = bool(rows[2])
            r["remap_failure"] = bool(rows[3])
            return
        if "remap" not in gpu.unsupported:
            return  # a passing failure, not a pre-Ampere board
        # Before Ampere, bad memory is handled by retiring pages instead of remapping rows.
        for field, cause in (
            ("retired_pages_sbe", "NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS"),
            ("retired_pages_dbe", "NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR"),
        ):
            pages = self._call(gpu, field, "nvmlDeviceGetRetiredPages", h, getattr(nvml, cause))
            if pages is not None:
                r[field] = len(pages)
        pending = self._call(gpu, "retired_pending", "nvmlDeviceGetRetiredPagesPendingStatus", h)
        if pending is not None:
            r["retired_pages_pending"] = bool(pending)

    def _pcie(self, gpu: _Gpu, r: Json) -> None:
        self._plain(gpu, r, self._pcie_reads)

    def _plain(self, gpu: _Gpu, r: Json, reads: tuple[_PlainRead, ...]) -> None:
        h = gpu.handle
        for field, fn_name, args, convert in reads:
            value = self._call(gpu, field, fn_name, h, *args)
            if value is not None:
                r[field] = convert(value)

    def _nvlink(self, gpu: _Gpu, r: Json) -> None:
        nvml, h = self._nvml, gpu.handle
        states = [
            self._call(gpu, "nvlink_state", "nvmlDeviceGetNvLinkState", h, link)
            for link in range(gpu.nvlinks)
        ]
        if all(s is not None for s in states):
            r["nvlink_active"] = sum(1 for s in states if s == nvml.NVML_FEATURE_ENABLED)
        for field, counter in (
            ("nvlink_replay", "NVML_NVLINK_ERROR_DL_REPLAY"),
            ("nvlink_recovery", "NVML_NVLINK_ERROR_DL_RECOVERY"),
            ("nvlink_crc_flit", "NVML_NVLINK_ERROR_DL_CRC_FLIT"),
            ("nvlink_crc_data", "NVML_NVLINK_ERROR_DL_CRC_DATA"),
        ):
            total: int | None = None
            for link in range(gpu.nvlinks):
                value = self._call(
                    gpu, field, "nvmlDeviceGetNvLinkErrorCounter", h, link, getattr(nvml, counter)
                )
                if value is None:
                    if field in gpu.unsupported:
                        break
                    continue
                total = (total or 0) + int(value)
            if total is not None:
                r[field] = total

    def _field_values(self, gpu: _Gpu, r: Json) -> None:
        """The recovery action and the held-clock counters, in one nvmlDeviceGetFieldValues
        call. NVML answers each field apart: a driver that does not know a field (the
        recovery action before R565, the counters before R575) refuses only that one, and
        it is not asked for again on this GPU."""
        nvml = self._nvml
        wanted = [read for read in self._field_reads if read[0] not in gpu.unsupported]
        if not wanted:
            return
        ids = [field_id for _, field_id, _ in wanted]
        values = self._call(gpu, "field_values", "nvmlDeviceGetFieldValues", gpu.handle, ids)
        if not values:
            return
        refused = self._unsupported_codes | {nvml.NVML_ERROR_INVALID_ARGUMENT}
        for (name, _, convert), value in zip(wanted, values):
            if value.nvmlReturn == nvml.NVML_SUCCESS:
                r[name] = convert(value.value)
            elif value.nvmlReturn in refused:
                gpu.unsupported.add(name)
            else:
                self.transient_errors += 1

    def _processes(self, gpu: _Gpu, r: Json) -> None:
        procs = self._call(gpu, "processes", "nvmlDeviceGetComputeRunningProcesses", gpu.handle)
        if procs is None:
            return
        utilisation = self._process_utilization(gpu) if procs else {}
        out = []
        for p in procs:
            pid = int(p.pid)
            proc: Json = {"pid": pid}
            name = self._process_name(pid)
            if name:
                proc["name"] = name
            used = getattr(p, "usedGpuMemory", None)
            if used is not None:  # None where the driver cannot say (WDDM, MIG)
                proc["used_memory_mib"] = bytes_to_mib(used)
            util = utilisation.get(pid)
            if util is not None:
                proc["sm_util_pct"], proc["mem_util_pct"] = util
            proc.update(self._host_view(pid))
            self._read_pids.add(pid)
            out.append(proc)
        r["processes"] = out

    def _process_utilization(self, gpu: _Gpu) -> dict[int, tuple[float, float]]:
        """pid -> (SM %, memory %) of the newest sample NVML took of each process since the
        last read (nvmlDeviceGetProcessUtilization, as nvidia-smi pmon and nvitop read it).
        NVML answers NOT_FOUND when it took no new sample (the processes left the GPU idle):
        then no process has a figure, which is no error."""
        nvml = self._nvml
        if "process_util" in gpu.unsupported:
            return {}
        fn = getattr(nvml, "nvmlDeviceGetProcessUtilization", None)
        if fn is None:
            gpu.unsupported.add("process_util")
            return {}
        try:
            samples = fn(gpu.handle, gpu.process_util_seen)
        except nvml.NVMLError as exc:
            gone = self._gone(exc)
            if gone is not None:
                raise gone from None
            code = getattr(exc, "value", None)
            # pynvml raises NVMLError(SUCCESS) when NVML reports no sample without NOT_FOUND.
            if code in (nvml.NVML_ERROR_NOT_FOUND, nvml.NVML_SUCCESS):
                return {}
            if code in self._unsupported_codes:
                gpu.unsupported.add("process_util")
            else:
                self.transient_errors += 1
            return {}
        newest: dict[int, Any] = {}
        for s in samples or ():
            pid, stamp = int(s.pid), int(s.timeStamp)
            if pid not in newest or stamp > int(newest[pid].timeStamp):
                newest[pid] = s
            gpu.process_util_seen = max(gpu.process_util_seen, stamp)
        return {pid: (_percent(s.smUtil), _percent(s.memUtil)) for pid, s in newest.items()}

    def _host_view(self, pid: int) -> Json:
        """What the host says of a process (owner, command line, start, CPU, memory); nothing
        when it cannot be read."""
        try:
            return {k: v for k, v in self.attribute_process(pid).items() if k in _HOST_FIELDS}
        except Exception:  # a plugged-in hook failing must not cost the process list
            return {}

    def _process_name(self, pid: int) -> str | None:
        try:
            return os.path.basename(_text(self._nvml.nvmlSystemGetProcessName(pid))) or None
        except Exception:  # the process ended between the two calls, or no permission
            return None

    # -- triage ------------------------------------------------------------------------------

    def gpu_facts(self) -> list[Json]:
        """Per GPU: persistence mode and the state of each NVLink (triage reads them once)."""
        nvml = self._nvml
        out: list[Json] = []
        for gpu in self._gpus:
            facts: Json = {"index": gpu.index}
            out.append(facts)
            if gpu.status != "ok":
                continue
            try:
                mode = self._call(gpu, "persistence", "nvmlDeviceGetPersistenceMode", gpu.handle)
                if mode is not None:
                    facts["persistence_mode"] = mode == nvml.NVML_FEATURE_ENABLED
                states = [
                    self._call(gpu, "nvlink_state", "nvmlDeviceGetNvLinkState", gpu.handle, link)
                    for link in range(gpu.nvlinks)
                ]
                if states and all(s is not None for s in states):
                    facts["nvlink_states"] = [s == nvml.NVML_FEATURE_ENABLED for s in states]
            except _Gone as gone:
                self._mark(gpu, gone)
        return out

    # -- events ------------------------------------------------------------------------------

    def start_events(self, emit: EventSink) -> None:
        self._emit = emit
        for gpu in self._gpus:
            if gpu.status != "ok":  # lost before the first sample: say so now
                status, gpu.status = gpu.status, "ok"
                self._mark(gpu, _Gone(status, gpu.error))
        nvml = self._nvml
        try:
            event_set = nvml.nvmlEventSetCreate()
        except Exception:
            return  # no events on this host; samples still flow
        wanted = nvml.nvmlEventTypeXidCriticalError | nvml.nvmlEventTypeDoubleBitEccError
        registered = 0
        for gpu in self._gpus:
            if gpu.status != "ok":
                continue
            try:
                types = int(nvml.nvmlDeviceGetSupportedEventTypes(gpu.handle)) & wanted
                if types:
                    nvml.nvmlDeviceRegisterEvents(gpu.handle, types, event_set)
                    registered += 1
            except nvml.NVMLError:
                continue  # this GPU cannot deliver events; the others still can
        if not registered:
            with contextlib.suppress(Exception):
                nvml.nvmlEventSetFree(event_set)
            return
        self._event_set = event_set
        if self._event_thread:
            self._thread = threading.Thread(
                target=self._event_loop, name="nvml-events", daemon=True
            )
            self._thread.start()

    def pump_events(self) -> int:
        """Deliver, in the calling thread, every event NVML holds now; the number delivered.
        (For backends built with event_thread=False.)"""
        nvml = self._nvml
        if self._event_set is None:
            return 0
        wait = getattr(nvml, "nvmlEventSetWait_v2", None) or nvml.nvmlEventSetWait
        delivered = 0
        while True:
            try:
                data = wait(self._event_set, 0)
            except nvml.NVMLError:
                return delivered
            self._push(self._event(data))
            delivered += 1

    def _event_loop(self) -> None:
        nvml = self._nvml
        wait = getattr(nvml, "nvmlEventSetWait_v2", None) or nvml.nvmlEventSetWait
        while not self._stop.is_set():
            try:
                data = wait(self._event_set, _EVENT_WAIT_MS)
            except nvml.NVMLError as exc:
                if getattr(exc, "value", None) != nvml.NVML_ERROR_TIMEOUT:
                    # A lost GPU can make the set fail on every wait: don't spin on it.
                    self._stop.wait(_EVENT_WAIT_MS / 1000.0)
                continue
            except Exception:
                self._stop.wait(_EVENT_WAIT_MS / 1000.0)
                continue
            try:
                self._push(self._event(data))
            except Exception:  # one odd event must not end event delivery
                continue

    def _event(self, data: Any) -> Json:
        nvml = self._nvml
        gpu = self._by_handle.get(_handle_key(data.device))
        index: int | None = gpu.index if gpu is not None else None
        if gpu is None:
            try:
                index = int(nvml.nvmlDeviceGetIndex(data.device))
            except Exception:
                index = None
        uuid = self._gpus[index].uuid if index is not None and index < len(self._gpus) else ""
        if data.eventType & nvml.nvmlEventTypeXidCriticalError:
            xid = int(data.eventData)
            where = f"GPU {index}" if index is not None else "a GPU"
            return {
                "kind": "xid",
                "gpu": index,
                "uuid": uuid or None,
                "xid": xid,
                "text": f"Xid {xid} on {where}",
            }
        return {
            "kind": "ecc_dbe",
            "gpu": index,
            "uuid": uuid or None,
            "text": "double-bit ECC error",
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=2 * _EVENT_WAIT_MS / 1000.0)
            if thread.is_alive():
                return  # still inside NVML: freeing the set under it could crash
        nvml = self._nvml
        try:
            if self._event_set is not None:
                nvml.nvmlEventSetFree(self._event_set)
            nvml.nvmlShutdown()
        except Exception:
            pass  # shutting down anyway
