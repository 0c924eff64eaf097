"""The interface every agent backend offers (nvml, smi, sim), and its error type.

The run loop (main.py) owns the wire format: it adds `type`, `v`, `t`, `seq`, `host` and the
agent's own fields. A backend only says what the GPUs report, as plain dicts whose keys are the
protocol's field names (docs/protocol.md; core/model.py on the collector side):

- hello() -> {"driver_version", "nvml_version", "cuda_version", "persistence_mode",
  "gpus": [GpuInfo dicts]}; any key may be absent when unknown.
- sample(slow) -> {"gpus": [GpuReading dicts]}, one per GPU, ordered by index. Slow fields
  only when `slow` is true; the processes when `slow` is, and in every sample while
  `processes_every_sample` is set (the run loop sets it as the collector asks: a screen that
  shows them is open). A field a GPU does not support is absent, never None.

Events (XIDs, double-bit ECC, a GPU found lost while sampling) go out through the `emit`
callback given to start_events(): a dict with "kind" and optionally "gpu", "uuid", "xid",
"text". start_events() is called once, after hello() and before the first sample(); `emit` is
thread-safe, so an event thread may call it at any time.

Constructors (main.py builds the backend named by --backend):
- NvmlBackend(nvml): `nvml` is the pynvml module or the simulated one (simnvml.py).
- SmiBackend(interval_s: float): the nvidia-smi fallback (smi.py); it reads its own stream.
A constructor that cannot start raises BackendError (codes: nvml_init_failed, no_gpu,
smi_not_found, smi_failed); main.py turns it into a fatal `error` line and exit code 3.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict

Json = Dict[str, Any]
EventSink = Callable[[Json], None]

# What process_fault() may ask the run loop to do (scripted faults of the simulator).
FAULT_CRASH = "crash"  # write a fatal error line and exit non-zero
FAULT_HANG = "hang"  # stop writing, keep the channel open until stdin closes


class BackendError(Exception):
    """A failure that stops a backend; becomes an `error` line with `code` (fatal)."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class Backend:
    """Base class of the agent backends; subclasses override hello() and sample()."""

    #: The `backend` field of hello: "nvml", "smi" or "sim".
    name = "nvml"
    #: List the GPUs' processes in every sample, not only in slow ones (the collector's `watch`
    #: request, docs/protocol.md). Backends that cannot list processes ignore it.
    processes_every_sample = False

    def hello(self) -> Json:
        """Inventory, read once at start. Raises BackendError when no GPU can be read."""
        raise NotImplementedError

    def sample(self, slow: bool) -> Json:
        """One reading of every GPU; never raises for a single GPU's failure."""
        raise NotImplementedError

    def start_events(self, emit: EventSink) -> None:
        """Begin pushing events through `emit` (default: the backend has no pushed events)."""
        self._emit: EventSink | None = emit

    def gpu_facts(self) -> list[Json]:
        """Per GPU, what triage adds to the stream: `index`, `persistence_mode`,
        `nvlink_states` (each key when known). Default: nothing beyond the index."""
        return []

    def wall(self) -> float:
        """Unix time for the stream's `t`: the host's clock, except in a simulation that
        runs faster than real time (its own simulated clock)."""
        return time.time()

    def process_fault(self) -> str | None:
        """FAULT_CRASH or FAULT_HANG when a scripted fault is due now; None on real hosts."""
        return None

    def fault_text(self) -> str:
        """The message of the error line written for FAULT_CRASH."""
        return "agent crashed"

    def crash_exit_code(self) -> int:
        """The exit status after FAULT_CRASH."""
        return 1

    def close(self) -> None:
        """Stop threads and release the library (idempotent)."""
