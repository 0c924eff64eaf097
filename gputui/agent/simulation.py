"""The simulated GPUs behind simnvml: physics, workload, scripted faults and a kernel log.

Time comes from an injected clock (seconds since start; default time.monotonic from
construction, times the scenario's `speed`), and the state moves in fixed steps of `step_s`
(STEP_S, or longer for a fast-forwarded run) up to whatever the clock says when it is read.
Every random draw happens inside a step, in the same order, so a seed and a step fix the whole
history: a test may jump the clock ten minutes ahead and read what a live run would have read
at that moment.

Fast-forward: a scenario's `speed` runs the real clock that many times faster (a day a minute
at 1440), and a longer step keeps the cost per real second the same (STEP_S x speed, at most
MAX_STEP_S). A test or a report steps the simulation over days with a fake clock and a long
`step_s` (gputui/collect/sim_days.py). Everything that happens per step scales with its length:
counters by their rate times the step, drifts by the simulated time since they began. Events
shorter than a step (a power-brake assertion of seconds in a minute-long step) hold their
step's instant with the probability they would cover it, so every counter keeps its expected
rate whatever the step.

Physics, per step and GPU: the workload sets utilisation; power follows it up to the enforced
limit (software power cap beyond); temperature relaxes toward inlet + c_per_w * power with the
board's time constant (first-order lag, solved exactly per step); clocks fall when the power
cap, a thermal limit or a power brake is active, and the matching clock-event bits are set the
way NVML reports them. Each step a reason's bit is set adds the step's length to that reason's
held-clock counter (NVML's clock-event reason counters, in ns), so the counters move only
while their bits are set, and a training job at its power cap accrues SW power cap time.

Memory follows what a real H200 (driver 580) reports: the driver and firmware reserve a fixed
share of the board (RESERVED_SHARE) that NVML's v2 memory info counts apart from `used`, and a
job's process holds all of `used` but a few MiB of driver bookkeeping.
"""

from __future__ import annotations

import math
import random
import threading
import time
import zlib
from typing import Any, Callable, NamedTuple

from .fields import HELD_BITS
from .gpumodels import MODELS, GpuModel, bus_number
from .scenario import validate_scenario
from .simbeats import SimBeats
from .simjobs import HostJobs
from .workload import Workload, make_workload

STEP_S = 0.25
# The command line /proc shows for each simulated program (its rank among the host's processes
# of that program is `rank`).
_SIM_COMMANDS = {
    "python3": "/usr/bin/python3 -u train.py --config configs/pretrain.yaml --local-rank={rank}",
    "tritonserver": "/opt/tritonserver/bin/tritonserver --model-repository=/models",
}
# The longest step a real-clock run takes however fast it goes: past this the temperature's
# first-order lag (time constants of 25-35 s) is settled within one step anyway.
MAX_STEP_S = 60.0
DAY_S = 86_400.0

# Clock-event reason bits (nvmlClocksEventReason*), as NVML reports them.
GPU_IDLE = 0x1
SW_POWER_CAP = 0x4
HW_SLOWDOWN = 0x8
SYNC_BOOST = 0x10
SW_THERMAL = 0x20
HW_THERMAL = 0x40
HW_POWER_BRAKE = 0x80

# Share of the framebuffer the driver and firmware reserve: 615.1 MiB of an idle H200's
# 143,771 MiB (nvidia-smi: "Reserved 616 MiB, Used 0 MiB"; NVML v1 counts it as used).
RESERVED_SHARE = 615.1 / 143771.0
# v2 `used` beyond the job process's own memory (the H200 at full load: 96,507 MiB used by
# NVML v2, 96,498 MiB listed for the process).
DRIVER_USED_MIB = 9.0

# NVML event types the simulation raises.
EVENT_DBE = 0x2
EVENT_XID = 0x8

# The NVML_NVLINK_ERROR_DL_* counters: replay, recovery, CRC flit, CRC data.
NVLINK_COUNTERS = (0, 1, 2, 3)

# What NVML_FI_DEV_GET_GPU_RECOVERY_ACTION says after each XID (0 none, 1 GPU reset, 2 reboot).
RECOVERY_AFTER_XID = {48: 1, 61: 1, 62: 1, 64: 1, 74: 1, 95: 1, 119: 1, 120: 1, 140: 1}

# The text the driver logs after "NVRM: Xid (PCI:...): N, pid=..., name=...,".
_XID_TEXT = {
    13: "Graphics SM Warp Exception on (GPC 1, TPC 0, SM 1): Out Of Range Address",
    31: "MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_3 faulted @ 0x7f3a_b2c00000. "
    "Fault is of type FAULT_PDE ACCESS_TYPE_VIRT_READ",
    43: "Ch 00000018",
    45: "Ch 00000018, intr 00000000. Preemptive Removal",
    48: "An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer "
    "at partition 6, subpartition 0.",
    61: "Internal micro-controller breakpoint/warning (PMU)",
    62: "Internal micro-controller halt (PMU)",
    63: "Row Remapper: New row marked for remapping, reset gpu to activate.",
    64: "Row Remapper: Failed to mark a row for remapping, no spare rows left.",
    74: "NVLink: fatal error detected on link 3(0x0, 0x0, 0x10000, 0x0, 0x0, 0x0, 0x0)",
    79: "GPU has fallen off the bus.",
    92: "High single-bit ECC error rate detected",
    94: "Contained: SM (0x1). RST: No, D-RST: No",
    95: "Uncontained: FBHUB. RST: Yes, D-RST: No",
    119: "Timeout after 6s of waiting for RPC response from GPU0 GSP! "
    "Expected function 76 (GSP_RM_CONTROL) (0x20801702 0x4).",
    120: "GSP task exception: GSP Error",
    140: "An uncorrectable ECC error was detected and could not be recovered.",
}


# Fault kinds that raise an XID or ECC event when they start.
_EVENT_FAULTS = ("xid", "ecc_dbe", "ecc_sbe_storm", "row_remap_pending", "row_remap_failure")


class SimEvent(NamedTuple):
    t: float
    gpu: int
    event_type: int  # EVENT_XID or EVENT_DBE
    data: int  # the XID for EVENT_XID


class SimGpu:
    """The state of one simulated GPU; simnvml reads these attributes."""

    def __init__(self, index: int, model: GpuModel, rng: random.Random) -> None:
        self.index = index
        self.model = model
        hexes = f"{rng.getrandbits(128):032x}"
        self.uuid = f"GPU-{hexes[:8]}-{hexes[8:12]}-{hexes[12:16]}-{hexes[16:20]}-{hexes[20:]}"
        self.serial = f"{rng.randint(1_320_000_000_000, 1_799_999_999_999):013d}"
        self.bus = bus_number(index)
        self.inlet_c = rng.uniform(25.0, 31.0)
        self.status = "ok"  # ok | lost | reset_required
        self.power_limit_w = model.tdp_w
        # fast signals
        self.util = 0.0
        self.mem_util = 0.0
        self.mem_used_mib = 0.0  # as NVML v2 counts it: the reserved memory apart
        self.mem_reserved_mib = round(model.memory_mib * RESERVED_SHARE, 1)
        self.temp_c = self.inlet_c
        self.power_w = model.idle_w
        self.sm_mhz = model.sm_idle_mhz
        self.mem_mhz = model.mem_max_mhz
        self.clock_events = GPU_IDLE
        self.hw_thermal = False  # latched until the die cools 2 C below slowdown
        # slow signals: aggregate counters carry some history from before this run
        self.ecc_sbe_volatile = 0
        self.ecc_dbe_volatile = 0
        self.ecc_sbe_aggregate = rng.choice((0, 0, 0, 2, 5, 11))
        self.ecc_dbe_aggregate = 0
        self.remap_corrected = rng.choice((0, 0, 0, 1))
        self.remap_uncorrected = 0
        self.remap_pending = False
        self.remap_failure = False
        self.retired_sbe: list[int] = []
        self.retired_dbe: list[int] = []
        self.retired_pending = False
        self.pcie_gen = model.pcie_gen_max
        self.pcie_width = model.pcie_width_max
        self.pcie_replay = rng.choice((0, 0, 1, 3))
        self.nvlink_up = [True] * model.nvlinks
        self.nvlink_errors = [[0] * len(NVLINK_COUNTERS) for _ in range(model.nvlinks)]
        self.recovery_action = 0
        self.pids: list[int] = []
        self.process_mib = 0.0
        # Held-clock time per reason since the driver loaded, in ns as NVML counts it. The
        # simulated driver loaded with this run: zero, with no draw, so adding the counters
        # left every seed's history as it was.
        self.held_ns = dict.fromkeys(HELD_BITS, 0)
        self.remap_pending_stuck = False  # a reset leaves remap_pending set (remap_creep)

    @property
    def pci_bus_id(self) -> str:
        """As nvmlDeviceGetPciInfo().busId: 8-digit domain."""
        return f"00000000:{self.bus:02X}:00.0"

    @property
    def kernel_pci(self) -> str:
        """As the kernel log names the device: PCI:0000:bb:00."""
        return f"PCI:0000:{self.bus:02x}:00"


class _Fault:
    """One scripted fault and whether it has started and ended."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.kind: str = spec["kind"]
        self.gpus: list[int] = spec["gpus"]
        self.at: float = spec["at"]
        duration: float | None = spec.get("duration")
        self.end: float | None = None if duration is None else self.at + duration
        self.started = False
        self.ended = False
        self.brake_until = -1.0  # psu_brake: when the assertions started so far end

    def active(self, t: float) -> bool:
        return self.started and not self.ended


class Simulation:
    """A host's simulated GPUs following a scenario (validated here)."""

    def __init__(
        self,
        scenario: dict[str, Any],
        seed: int = 0,
        clock: Callable[[], float] | None = None,
        step_s: float | None = None,
    ) -> None:
        """`clock`: simulated seconds since the start (default: the real clock times the
        scenario's `speed`); `step_s`: the length of a step (default STEP_S times `speed`,
        at most MAX_STEP_S)."""
        self.scenario = validate_scenario(scenario)
        self.model = MODELS[self.scenario["model"]]
        self.rng = random.Random(seed)
        self.speed = float(self.scenario.get("speed", 1.0))
        if step_s is None:
            step_s = min(MAX_STEP_S, max(STEP_S, STEP_S * self.speed))
        if not step_s > 0:
            raise ValueError(f"step_s: expected a number > 0, got {step_s!r}")
        self.step_s = float(step_s)
        # Unix time of the simulation's t=0, when it runs on the real clock (the agent's hello
        # says it, so a benchmark can place a scripted fault in wall-clock time).
        self.start_unix: float | None = None
        if clock is None:
            start = time.monotonic()
            self.start_unix = time.time()
            speed = self.speed

            def clock() -> float:
                return (time.monotonic() - start) * speed

        self.clock: Callable[[], float] = clock
        # simnvml's sampler thread and event thread both read the state.
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.t = 0.0
        self.boot_s = self.rng.uniform(200_000.0, 3_000_000.0)  # uptime at start, for dmesg
        self.gpus = [SimGpu(i, self.model, self.rng) for i in range(self.scenario["gpus"])]
        self.workload = self._workload()
        # The heartbeats of the jobs that write them (simbeats.py); None when none does.
        self.beats: SimBeats | None = None
        if any(j.get("heartbeat") for j in self.scenario["job"]):
            self.beats = SimBeats(self.workload, self.gpus)
        self.faults = [_Fault(f) for f in self.scenario["fault"]]
        self.events: list[SimEvent] = []
        self._kernel_log: list[str] = []
        self._settle()

    def _workload(self) -> Workload:
        """The scenario's jobs, each on its GPUs; without any, its workload on every GPU."""
        n = len(self.gpus)
        if not self.scenario["job"]:
            return make_workload(self.scenario["workload"], self.rng, n)
        origin = self.start_unix or 0.0
        requeue_file = self.scenario.get("requeue_file")
        return HostJobs(self.rng, n, self.scenario["job"], origin, requeue_file)

    def heartbeats(self) -> list[dict[str, Any]]:
        """The training heartbeats of the jobs that write them, as of the clock's present."""
        if self.beats is None:
            return []
        self.advance()
        with self.lock:
            # On the real clock a heartbeat carries the host's time, as a file's would.
            wall = time.time() if self.start_unix is not None else self.t
            return self.beats.beats(wall)

    # -- time --------------------------------------------------------------------------------

    def advance(self) -> None:
        """Step the state up to the clock's present."""
        # Every NVML call of a sample lands here: most find no step due, and skip the lock.
        if self.t + self.step_s > self.clock() + 1e-9:
            return
        with self.lock:
            now = self.clock()
            stepped = False
            step = self.step_s
            while self.t + step <= now + 1e-9:
                self._step(self.t + step)
                stepped = True
            if stepped:
                self.changed.notify_all()

    def _settle(self) -> None:
        """Start in thermal equilibrium for the workload at t=0, as a host that has been
        running for a while would be when the agent attaches."""
        self.workload.step(0.0, self.step_s)
        for g in self.gpus:
            for _ in range(30):
                self._physics(g, 0.0, dt=None)

    def _step(self, t: float) -> None:
        self.t = t
        for f in self.faults:
            if not f.started and f.at <= t:
                f.started = True
                self._start_fault(f)
            if f.started and not f.ended and f.end is not None and f.end <= t:
                f.ended = True
                self._end_fault(f)
        dt = self.step_s
        self.workload.step(t, dt)
        for f in self.faults:
            if f.kind == "psu_brake" and f.active(t):
                self._brake_events(f, t, dt)
        for g in self.gpus:
            if g.status == "ok":
                self._physics(g, t, dt=dt)
                self._counters(g, t, dt)
                self._held(g, dt)
        if self.beats is not None:
            self.beats.step(dt)

    # -- physics -----------------------------------------------------------------------------

    def _active(self, kind: str, index: int, t: float) -> _Fault | None:
        for f in self.faults:
            if f.kind == kind and index in f.gpus and f.active(t):
                return f
        return None

    def _physics(self, g: SimGpu, t: float, dt: float | None) -> None:
        m = g.model
        util, mem_util = self.workload.util(g.index, t)
        # How much slower than its job this GPU runs: a straggling GPU, a slow host.
        speed, clock_speed = 1.0, 1.0
        straggler = self._active("straggler", g.index, t)
        if straggler is not None:
            speed = clock_speed = straggler.spec["factor"]
        slow_host = self._active("slow_host", g.index, t)
        if slow_host is not None:
            speed *= slow_host.spec["factor"]
            if slow_host.spec["cause"] == "none":
                clock_speed *= slow_host.spec["factor"]
            # else the lowered power limit (set when the fault started) trims the clocks
        util *= speed
        mem_util *= speed
        idle = util < 0.05
        # Demand slightly above TDP at full load: large training jobs run power-capped.
        demand = m.idle_w + (m.tdp_w * 1.06 - m.idle_w) * util**0.85
        factor = 1.0
        bits = GPU_IDLE if idle else 0
        if demand > g.power_limit_w:
            factor = (g.power_limit_w - m.idle_w) / (demand - m.idle_w)
            bits |= SW_POWER_CAP
        if g.temp_c >= m.temp_gpu_max_c:
            # The driver's thermal controller trims clocks progressively above max operating.
            bits |= SW_THERMAL
            factor *= max(0.4, 1.0 - 0.1 * (g.temp_c - m.temp_gpu_max_c + 1.0))
        g.hw_thermal = g.temp_c >= m.temp_slowdown_c or (
            g.hw_thermal and g.temp_c >= m.temp_slowdown_c - 2.0
        )
        if g.hw_thermal:
            bits |= HW_THERMAL | HW_SLOWDOWN
            factor *= 0.5
        if self._active("power_brake", g.index, t) is not None or self._braking(g.index, t):
            # An external brake signal (PSU or BMC) forces the slowest clocks at once.
            bits |= HW_POWER_BRAKE | HW_SLOWDOWN
            factor = min(factor, 0.22)
        clock_factor = factor * clock_speed
        if idle:
            g.sm_mhz = m.sm_idle_mhz
        else:
            mhz = m.sm_max_mhz * min(1.0, clock_factor)
            g.sm_mhz = max(m.sm_idle_mhz, int(mhz // m.clock_step_mhz) * m.clock_step_mhz)
        g.mem_mhz = m.mem_max_mhz
        noise = self.rng.gauss(0.0, 0.01) if dt is not None else 0.0
        power = m.idle_w + (demand - m.idle_w) * min(1.0, factor)
        g.power_w = max(m.idle_w * 0.9, power * (1.0 + noise))
        runaway = self._active("thermal_runaway", g.index, t)
        extra_c = 0.0
        if runaway is not None:
            # Failing cooling (a fan, a blocked inlet): the steady state climbs over a minute.
            extra_c = runaway.spec["rise_c"] * min(1.0, (t - runaway.at) / 60.0)
        decay = self._active("cooling_decay", g.index, t)
        if decay is not None:
            # Cooling wearing out (a fan, a clogging filter, the thermal interface drying, a
            # rack's airflow): the steady state at the same power climbs day by day.
            spec = decay.spec
            days = (t - decay.at) / DAY_S
            extra_c += min(spec["max_rise_c"], spec["offset_c"] + spec["c_per_day"] * days)
        target = g.inlet_c + m.c_per_w * g.power_w + extra_c
        if dt is None:
            g.temp_c = target
        else:
            g.temp_c += (target - g.temp_c) * (1.0 - math.exp(-dt / m.tau_s))
            g.temp_c += self.rng.gauss(0.0, 0.05)
        g.util = util
        g.mem_util = mem_util
        g.clock_events = bits
        frac = self.workload.memory_fraction(g.index)
        g.mem_used_mib = min(m.memory_mib - g.mem_reserved_mib, m.memory_mib * frac)
        g.pids = self.workload.gpu_pids(g.index)
        g.process_mib = max(0.0, g.mem_used_mib - DRIVER_USED_MIB) if g.pids else 0.0
        downgrade = self._active("pcie_downgrade", g.index, t)
        if downgrade is not None:
            g.pcie_gen = downgrade.spec.get("gen") or m.pcie_gen_max
            g.pcie_width = downgrade.spec["width"]
        else:
            # Links drop to gen 1 to save power when idle, and retrain to full speed on load.
            g.pcie_gen = 1 if idle else m.pcie_gen_max
            g.pcie_width = m.pcie_width_max

    def _poisson(self, mean: float) -> int:
        """A Poisson draw (Knuth's method for small means, normal approximation above)."""
        if mean <= 0.0:
            return 0
        if mean > 30.0:
            return max(0, round(self.rng.gauss(mean, math.sqrt(mean))))
        limit, k, p = math.exp(-mean), 0, 1.0
        while True:
            p *= self.rng.random()
            if p <= limit:
                return k
            k += 1

    def _counters(self, g: SimGpu, t: float, dt: float) -> None:
        storm = self._active("ecc_sbe_storm", g.index, t)
        if storm is not None:
            n = self._poisson(storm.spec["rate"] * dt)
            g.ecc_sbe_volatile += n
            g.ecc_sbe_aggregate += n
        pcie = self._active("pcie_downgrade", g.index, t)
        if pcie is not None:
            g.pcie_replay += self._poisson(pcie.spec["replay_rate"] * dt)
        self._drift_counters(g, t, dt)
        nvlink = self._active("nvlink_errors", g.index, t)
        if nvlink is not None and g.model.nvlinks:
            rate = nvlink.spec["rate"] * dt
            # Replays dominate; a few escalate to link recovery; CRC errors drive the replays.
            for counter, share in ((0, 1.0), (1, 0.05), (2, 0.5), (3, 0.25)):
                for _ in range(self._poisson(rate * share)):
                    link = self.rng.randrange(g.model.nvlinks)
                    g.nvlink_errors[link][counter] += 1

    def _held(self, g: SimGpu, dt: float) -> None:
        """The step counts toward each reason whose bit it ends with: NVML's counters grow
        only while the reason holds the clocks."""
        step_ns = round(dt * 1e9)
        bits = g.clock_events
        for name, bit in HELD_BITS.items():
            if bits & bit:
                g.held_ns[name] += step_ns

    # -- slow drifts ---------------------------------------------------------------------------

    def _creep(self, f: _Fault, t: float, dt: float) -> int:
        """Events of a creeping counter in the step ending at `t`: Poisson at `per_day`,
        doubling every `doubling_days` when given (the rate at the step's middle)."""
        rate = f.spec["per_day"]
        doubling = f.spec.get("doubling_days")
        if doubling is not None:
            rate *= 2.0 ** (max(0.0, t - dt / 2.0 - f.at) / (doubling * DAY_S))
        return self._poisson(rate * dt / DAY_S)

    def _drift_counters(self, g: SimGpu, t: float, dt: float) -> None:
        ecc = self._active("ecc_creep", g.index, t)
        if ecc is not None:
            n = self._creep(ecc, t, dt)
            g.ecc_sbe_volatile += n
            g.ecc_sbe_aggregate += n
        replay = self._active("pcie_replay_creep", g.index, t)
        if replay is not None:
            g.pcie_replay += self._creep(replay, t, dt)
        remaps = self._active("remap_creep", g.index, t)
        if remaps is not None:
            for _ in range(self._creep(remaps, t, dt)):
                self._xid(g, 63)  # a row marked for remapping (pre-Ampere: a page retired)

    def _brake_events(self, f: _Fault, t: float, dt: float) -> None:
        """Power-brake assertions starting in the step ending at `t`: Poisson at `per_day`,
        each `seconds` long from a moment drawn inside the step."""
        for _ in range(self._poisson(f.spec["per_day"] * dt / DAY_S)):
            start = t - dt * self.rng.random()
            f.brake_until = max(f.brake_until, start + f.spec["seconds"])

    def _braking(self, index: int, t: float) -> bool:
        """Whether a recurring power brake holds GPU `index` at instant `t`."""
        for f in self.faults:
            if f.kind == "psu_brake" and index in f.gpus and f.active(t) and f.brake_until > t:
                return True
        return False

    # -- faults ------------------------------------------------------------------------------

    def _start_fault(self, f: _Fault) -> None:
        for index in f.gpus:
            g = self.gpus[index]
            if g.status == "lost":
                continue  # a GPU off the bus reports nothing more
            if f.kind == "xid":
                self._xid(g, f.spec["xid"])
            elif f.kind == "ecc_dbe":
                self._xid(g, 48)
            elif f.kind == "ecc_sbe_storm":
                self._xid(g, 92)
            elif f.kind == "row_remap_pending":
                self._xid(g, 63)
            elif f.kind == "row_remap_failure":
                self._xid(g, 64)
            elif f.kind == "nvlink_errors":
                for link in range(min(f.spec["links_down"], g.model.nvlinks)):
                    g.nvlink_up[link] = False
            elif f.kind == "gpu_lost":
                self._log(f"NVRM: GPU 0000:{g.bus:02x}:00.0: GPU has fallen off the bus.")
                g.status = "lost"
            elif f.kind == "remap_creep" and f.spec["stuck_pending"]:
                g.remap_pending_stuck = True
            elif f.kind == "slow_host" and f.spec["cause"] == "power_cap":
                # As `nvidia-smi -pl` or a BMC's power policy would: NVML's enforced limit.
                g.power_limit_w = round(g.model.tdp_w * f.spec["factor"])

    def _end_fault(self, f: _Fault) -> None:
        """Recovery at the end of a fault's duration, where recovery makes physical sense.
        Counters stay (they are cumulative); a fault that needs a GPU reset ends as if the
        GPU had been reset; a lost GPU stays lost (it needs the node rebooted)."""
        for index in f.gpus:
            g = self.gpus[index]
            if g.status == "lost":
                continue
            if f.kind == "nvlink_errors":
                g.nvlink_up = [True] * g.model.nvlinks
            elif f.kind == "slow_host":
                g.power_limit_w = g.model.tdp_w
            elif f.kind in ("xid", "ecc_dbe", "row_remap_pending", "row_remap_failure"):
                self._reset(g)

    def _reset(self, g: SimGpu) -> None:
        """A GPU reset: pending remaps are applied, volatile counters clear."""
        g.status = "ok"
        g.ecc_sbe_volatile = g.ecc_dbe_volatile = 0
        # A remap that a reset does not apply stays pending: the GPU must be serviced.
        g.remap_pending = g.remap_pending and g.remap_pending_stuck
        g.retired_pending = False
        g.recovery_action = 0
        self._log(f"NVRM: GPU at PCI:0000:{g.bus:02x}:00: {g.uuid} reset")

    def _xid(self, g: SimGpu, xid: int) -> None:
        """The driver reports XID `xid` on `g`, with the side effects the XID stands for."""
        pid = g.pids[0] if g.pids else 0
        name = self.workload.process_name_of(g.index) if g.pids else ""
        who = f"pid={pid}, name={name}, " if pid else "pid='<unknown>', name=<unknown>, "
        text = _XID_TEXT.get(xid, f"Xid {xid}")
        self._log(f"NVRM: Xid ({g.kernel_pci}): {xid}, {who}{text}")
        self.events.append(SimEvent(self.t, g.index, EVENT_XID, xid))
        g.recovery_action = max(g.recovery_action, RECOVERY_AFTER_XID.get(xid, 0))
        m = g.model
        if xid in (48, 94, 95, 140):
            g.ecc_dbe_volatile += 1
            g.ecc_dbe_aggregate += 1
            if xid == 48:
                self.events.append(SimEvent(self.t, g.index, EVENT_DBE, 0))
            if m.row_remapping:
                g.remap_uncorrected += 1
                g.remap_pending = True
            else:
                g.retired_dbe.append(self._page())
                g.retired_pending = True
        if xid == 63:
            if m.row_remapping:
                g.remap_corrected += 1
                g.remap_pending = True
            else:
                g.retired_sbe.append(self._page())
                g.retired_pending = True
        elif xid == 64 and m.row_remapping:
            g.remap_failure = True
        elif xid == 74 and m.nvlinks:
            link = min(3, m.nvlinks - 1)
            g.nvlink_errors[link][1] += 1
            g.nvlink_errors[link][0] += 40
        elif xid == 92:
            g.ecc_sbe_volatile += 64
            g.ecc_sbe_aggregate += 64
        elif xid == 79:
            g.status = "lost"
        elif xid == 95:
            g.status = "reset_required"

    def _page(self) -> int:
        return self.rng.randrange(0x100000, 0x2000000) << 12

    def _log(self, text: str) -> None:
        self._kernel_log.append(f"[{self.boot_s + self.t:12.6f}] {text}")

    # -- readers -----------------------------------------------------------------------------

    def kernel_log(self) -> list[str]:
        """The kernel log lines the driver wrote so far, dmesg style ([uptime] NVRM: ...)."""
        with self.lock:
            self.advance()
            return list(self._kernel_log)

    def process_name(self, pid: int) -> str | None:
        """The executable of process `pid` on one of the GPUs, or None when none runs it."""
        with self.lock:
            for g in self.gpus:
                if pid in g.pids:
                    return self.workload.process_name_of(g.index)
            return None

    def attribution(self, pid: int) -> dict[str, Any]:
        """Who runs process `pid` (uid, user, job) as the scenario's jobs say, and what the
        host says of it (command line, start, CPU, resident memory): what the agent's hook
        reads from /proc on a real host (procinfo.py). Simulated pids are made up, so a real
        /proc is never asked about them."""
        with self.lock:
            fields = dict(self.workload.owner(pid))
            gpus = [g for g in self.gpus if pid in g.pids]
            if gpus:
                fields.update(self._host_view(pid, gpus, fields.get("job")))
            return fields

    def _host_view(self, pid: int, gpus: list[SimGpu], job: Any) -> dict[str, Any]:
        """What /proc would say of a simulated process, drawn from nothing random (reading
        it must not change what the simulation replays): a command line for its program, a
        start shared by the processes of its job (or of its program), CPU use that follows
        its GPUs' utilisation (a training rank spins a core on the GPU, its data loaders take
        more), resident memory in step with its GPU memory."""
        name = self.workload.process_name_of(gpus[0].index)
        named = self.workload.process_name_of
        peers = sorted({p for g in self.gpus if named(g.index) == name for p in g.pids} | {pid})
        group = f"{job['kind']}:{job['id']}" if isinstance(job, dict) else f"{name}:{peers[0]}"
        util = sum(g.util for g in gpus) / len(gpus)
        mib = sum(g.process_mib for g in gpus)
        view: dict[str, Any] = {
            "cmdline": _SIM_COMMANDS.get(name, "/usr/bin/{name}").format(
                name=name, rank=peers.index(pid)
            ),
            "cpu_pct": round(35.0 + 80.0 * util, 1),
            "rss_mib": round(2048.0 + 0.08 * mib, 1),
        }
        if self.start_unix is not None:
            # On an injected clock (tests, triage's fast-forward) no Unix time is known: the
            # start is left out, as the real hook leaves out what it cannot read.
            age_s = 900 + zlib.crc32(group.encode()) % (3 * 86_400)
            view["started_t"] = round(self.start_unix - age_s, 2)
        return view

    def next_event_at(self) -> float | None:
        """Simulated time of the next scripted fault that raises an NVML event, if any."""
        pending = [f.at for f in self.faults if f.kind in _EVENT_FAULTS and not f.started]
        return min(pending) if pending else None

    def process_fault(self) -> str | None:
        """ "crash" or "hang" when such a scripted fault of the agent is active now."""
        with self.lock:
            self.advance()
            for f in self.faults:
                if f.kind == "agent_crash" and f.started:
                    return "crash"
                if f.kind == "hang" and f.active(self.t):
                    return "hang"
            return None

    def crash_exit_code(self) -> int:
        for f in self.faults:
            if f.kind == "agent_crash":
                return int(f.spec["exit_code"])
        return 1


def kernel_log_at(scenario: dict[str, Any], seed: int, elapsed_s: float) -> list[str]:
    """The kernel log of a simulated host `elapsed_s` seconds after its agent started.

    A simulation is fixed by its scenario and seed, so whoever knows both (the collector that
    launched the host) can read the host's log without asking the agent: triage of a
    simulated host reads it here, as it would run dmesg on a real one. A fast-forwarded
    host (`speed`) has lived `speed` times as long in its simulated time."""
    speed = validate_scenario(scenario).get("speed", 1.0)
    sim = Simulation(scenario, seed=seed, clock=lambda: elapsed_s * speed)
    return sim.kernel_log()
