"""Triage mode (`--triage`): one deep pass over the host instead of the stream.

    hello, then `--samples` samples with every slow field, then one `triage` line, then exit 0.

Several samples rather than one because some health rules judge a series: a straggler is
flagged only after a few outlying samples in a row, and a counter "rises" only between two
readings. XIDs come from the kernel log, not from an NVML event set: the log holds every XID
since boot, where an event set would only see those raised while triage runs (and would count
them twice).

On a simulated host the same pass runs against the simulation fast-forwarded to a moment when
the scenario's faults have developed (`--sim-elapsed`, default: SIM_SETTLE_S after the last
fault starts): the samples are a simulated interval apart with no real waiting, the kernel log
is the simulation's own (dmesg style), and the PCI bus is the simulated one.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from . import DEFAULT_INTERVAL_S
from .backend import Backend, BackendError, Json
from .hostfacts import pci_gpus, system_facts
from .kernlog import parse_log, read_system_log
from .runner import EXIT_BACKEND, EXIT_OK, Runner
from .stream import StreamWriter

DEFAULT_SAMPLES = 5
# A thermal runaway ramps over a minute and the die follows with its time constant: 90 s after
# the last fault starts, every packaged scenario shows its fault fully developed.
SIM_SETTLE_S = 90.0
_SIM_CLASS = "0x030200"  # simulated boards are HGX parts: 3D controllers


def default_sim_elapsed(scenario: dict[str, Any]) -> float:
    """Scenario time at which triage reads a simulated host: after every fault has started."""
    starts = [float(f.get("at", 0.0)) for f in scenario.get("fault", [])]
    return (max(starts) if starts else 0.0) + SIM_SETTLE_S


class _VirtualClock:
    """The simulation's clock during triage: jumps instead of sleeping."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class TriageRunner(Runner):
    """Hello, `samples` full samples, the triage line. Works with any backend."""

    def __init__(
        self,
        backend: Backend,
        writer: StreamWriter,
        stop: threading.Event,
        *,
        host: str,
        interval_s: float = DEFAULT_INTERVAL_S,
        samples: int = DEFAULT_SAMPLES,
        since_s: float | None = None,
        sim_elapsed_s: float | None = None,
    ) -> None:
        self.samples = max(1, samples)
        self.since_s = since_s
        self.simulation: Any = getattr(backend, "simulation", None)
        self._clock: _VirtualClock | None = None
        wall: Callable[[], float] = time.time
        if self.simulation is not None:
            start = sim_elapsed_s
            if start is None:
                start = default_sim_elapsed(self.simulation.scenario)
            start = max(start, float(self.simulation.t))  # its state never goes back
            clock = self._clock = _VirtualClock(start)
            backend.use_clock(clock)  # type: ignore[attr-defined]
            # The last sample is "now": earlier ones, and the log, lie in the past.
            end = start + (self.samples - 1) * interval_s
            now = time.time()

            def wall() -> float:
                return now - (end - clock.t)

        super().__init__(
            backend, writer, stop, host=host, interval_s=interval_s, once=True, wall=wall
        )

    def _run(self) -> int:
        hello = self.write_hello()
        if hello is None:
            return EXIT_BACKEND
        for seq in range(self.samples):
            if seq and not self._wait():
                break
            try:
                self._sample(seq, slow=True)
            except BackendError as exc:
                self.error(exc.code, exc.text, fatal=True)
                return EXIT_BACKEND
            if self.writer.closed:
                return EXIT_OK
        self.writer.write(self._msg("triage", self.facts(hello)))
        return EXIT_OK

    def _wait(self) -> bool:
        """One interval: simulated time jumps, real time is waited for. False when stopped."""
        if self._clock is not None:
            self._clock.t += self.interval_s
            return not self.stop.is_set()
        return not self.stop.wait(self.interval_s)

    # -- the triage line ---------------------------------------------------------------------

    def facts(self, hello: Json) -> Json:
        """The triage line's fields. A part that fails is left out and said in an error
        line: the rest of the facts still reach the operator."""
        now = self.wall()
        out: Json = {"nvml_gpu_count": len(hello.get("gpus", []))}
        parts: list[tuple[str, Callable[[], Json]]] = [
            ("host", self._host_facts),
            ("gpus", lambda: {"gpus": self.backend.gpu_facts() or None}),
            ("pci", self._pci),
            ("kernel_log", lambda: self._kernel_log(now, out.get("uptime_s"))),
        ]
        for name, part in parts:
            try:
                out.update(part())
            except Exception as exc:  # a bug in one probe must not cost the whole triage
                self.error("triage_failed", f"triage {name}: {type(exc).__name__}: {exc}")
        out.setdefault(
            "kernel_log",
            {"source": "none", "readable": False, "error_code": "failed", "error": "see errors"},
        )
        if self._clock is not None:
            out["sim_elapsed_s"] = round(self._clock.t, 3)
        return out

    def _host_facts(self) -> Json:
        facts = system_facts()
        if self.simulation is not None:
            facts["uptime_s"] = round(self.simulation.boot_s + self.simulation.t, 1)
        return facts

    def _pci(self) -> Json:
        if self.simulation is not None:
            return {"pci_gpus": _sim_pci(self.simulation)}
        found, error = pci_gpus()
        return {"pci_gpus": found, "pci_error": error}

    def _kernel_log(self, now: float, uptime: float | None) -> Json:
        since_t = None if self.since_s is None else now - self.since_s
        boot_t = None if uptime is None else now - uptime
        if self.simulation is not None:
            lines = self.simulation.kernel_log()
            xids, dropped = parse_log(lines, boot_t, since_t)
            status: Json = {"source": "sim", "readable": True, "since_t": since_t}
            status.update(lines=len(lines), xids_dropped=dropped or None)
        else:
            status, xids = read_system_log(since_t, boot_t)
        if status.get("since_t") is not None:
            status["since_t"] = round(status["since_t"], 3)
        return {"kernel_log": status, "xids": xids}


def _sim_pci(sim: Any) -> list[Json]:
    """The simulated host's PCI bus: every board stays enumerated; one that fell off the bus
    no longer answers config reads, as on a real host."""
    return [
        {
            "bus_id": f"0000:{g.bus:02x}:00.0",
            "device_id": f"0x{g.model.pci_device_id:04x}",
            "class_code": _SIM_CLASS,
            "driver": "nvidia",
            "responds": g.status != "lost",
        }
        for g in sim.gpus
    ]
