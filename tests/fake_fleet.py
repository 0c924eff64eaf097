"""A scripted fleet for the TUI's tests and benchmarks: fixed times, no SSH, no clock.

`FakeMonitor` has the surface the app uses (gputui.tui.ports.MonitorPort); a test pushes
snapshots built by `FakeFleet` and waits until the app applied them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field

import msgspec

from gputui.collect.history import HostHistory
from gputui.core.model import (
    Action,
    FleetEvent,
    FleetSnapshot,
    GpuInfo,
    GpuProcess,
    GpuReading,
    Hello,
    HostSnapshot,
    HostState,
    HostVerdict,
    Level,
    Reason,
    Sample,
    Verdict,
)
from gputui.tui.ports import MonitorPort

T0 = 1_700_000_000.0  # every snapshot's time is T0 + tick: no wall clock anywhere
GPU_NAME = "NVIDIA H100 80GB HBM3"


def gpu_infos(n: int) -> list[GpuInfo]:
    return [
        GpuInfo(
            index=i,
            uuid=f"GPU-{i:04d}",
            name=GPU_NAME,
            memory_total_mib=81559.0,
            power_limit_w=700.0,
            temp_shutdown_c=92.0,
            temp_slowdown_c=89.0,
            temp_gpu_max_c=87.0,
            sm_clock_max_mhz=1980,
            mem_clock_max_mhz=2619,
            pcie_gen_max=5,
            pcie_width_max=16,
            nvlink_count=18,
            ecc_enabled=True,
        )
        for i in range(n)
    ]


def hello(name: str, n: int = 8) -> Hello:
    return Hello(
        v=1,
        host=name,
        agent_version="1.0",
        backend="sim",
        interval_s=1.0,
        slow_every=10,
        driver_version="550.54.15",
        cuda_version="12.4",
        gpus=gpu_infos(n),
    )


def reading(
    i: int,
    tick: int,
    *,
    util: float = 90.0,
    temp: float = 62.0,
    slow: bool = False,
    **extra: object,
) -> GpuReading:
    wobble = math.sin(tick / 7 + i)
    fields: dict[str, object] = {
        "index": i,
        "util_pct": round(max(0.0, min(100.0, util + 8 * wobble))),  # NVML says 0-100
        "mem_util_pct": 40.0,
        "mem_used_mib": 60000.0 + 1000 * i,
        "temp_c": round(temp + 2 * wobble),
        "power_w": round(560.0 + 40 * wobble),
        "power_limit_w": 700.0,
        "sm_clock_mhz": 1980,
        "mem_clock_mhz": 2619,
        "clock_events": 0x4 if util > 95 else 0,
    }
    if slow:
        fields |= {
            "ecc_corrected_volatile": 0,
            "ecc_uncorrected_volatile": 0,
            "ecc_corrected_aggregate": 3,
            "ecc_uncorrected_aggregate": 0,
            "remap_corrected": 0,
            "remap_uncorrected": 0,
            "remap_pending": False,
            "remap_failure": False,
            "pcie_gen": 5,
            "pcie_width": 16,
            "pcie_replay": 0,
            "nvlink_active": 18,
            "nvlink_replay": 0,
            "nvlink_recovery": 0,
            "nvlink_crc_flit": 0,
            "nvlink_crc_data": 0,
            "recovery_action": 0,
            "processes": [GpuProcess(pid=4100 + i, name="python", used_memory_mib=58000.0)],
        }
    fields |= extra
    return msgspec.convert(fields, GpuReading, from_attributes=True)


@dataclass
class HostScript:
    """How one scripted host looks; tests change fields between ticks."""

    name: str
    gpus: int = 8
    state: HostState = HostState.STREAMING
    state_reason: str = ""
    reasons: list[Reason] = field(default_factory=list)  # GPU reasons (gpu set) and host ones
    lost: set[int] = field(default_factory=set)  # GPUs that fell off the bus
    hot: dict[int, float] = field(default_factory=dict)  # GPU -> temperature
    util: float = 90.0
    last_tick: int | None = None  # frozen sample time (stale/unreachable), None: current
    labels: dict[str, str] = field(default_factory=dict)
    marked_failed: bool = False
    said_hello: bool = True
    spare: bool = False  # listed as a spare of its group
    in_place_of: str | None = None  # a spare in service: the node it replaces


def _verdict(reasons: list[Reason]) -> Verdict:
    ordered = tuple(sorted(reasons, key=lambda r: (-r.level, r.gpu if r.gpu is not None else -1)))
    level = max((r.level for r in reasons), default=Level.OK)
    return Verdict(level=level, reasons=ordered)


class FakeFleet:
    """Builds deterministic snapshots of scripted hosts, with history rings to match."""

    def __init__(self, scripts: list[HostScript], history_len: int = 300) -> None:
        self.scripts = {s.name: s for s in scripts}
        self.tick = 0
        self.histories: dict[str, HostHistory] = {}
        self.samples: dict[str, tuple[float, Sample]] = {}
        self.slow_samples: dict[str, tuple[float, Sample]] = {}
        self.history_len = history_len
        self._pending_events: list[FleetEvent] = []

    def event(
        self,
        host: str,
        kind: str,
        text: str,
        level: Level = Level.WARN,
        gpu: int | None = None,
        xid: int | None = None,
    ) -> FleetEvent:
        e = FleetEvent(
            t=T0 + self.tick, host=host, kind=kind, text=text, level=level, gpu=gpu, xid=xid
        )
        self._pending_events.append(e)
        return e

    def _sample(self, s: HostScript, tick: int) -> Sample:
        slow = tick % 10 == 0
        gpus = []
        for i in range(s.gpus):
            if i in s.lost:
                gpus.append(GpuReading(index=i, status="lost", error="GPU is lost"))
                continue
            gpus.append(reading(i, tick, util=s.util, temp=s.hot.get(i, 62.0), slow=slow))
        return Sample(v=1, t=T0 + tick, seq=tick, gpus=gpus, slow=slow)

    def advance(self, ticks: int = 1) -> FleetSnapshot:
        """Move the fleet `ticks` seconds on and return the snapshot of the last one."""
        for _ in range(ticks):
            self.tick += 1
            for s in self.scripts.values():
                if not s.said_hello or s.last_tick is not None:
                    continue
                sample = self._sample(s, self.tick)
                self.samples[s.name] = (T0 + self.tick, sample)
                history = self.histories.get(s.name)
                if history is None:
                    history = self.histories[s.name] = HostHistory(
                        gpu_infos(s.gpus), self.history_len
                    )
                history.append(T0 + self.tick, sample)
        return self.snapshot()

    def host(self, s: HostScript) -> HostSnapshot:
        if not s.said_hello:
            return HostSnapshot(
                name=s.name, state=HostState.CONNECTING, labels=s.labels, spare=s.spare
            )
        if s.last_tick is not None and s.name not in self.samples:
            sample = self._sample(s, s.last_tick)
            self.samples[s.name] = (T0 + s.last_tick, sample)
        sample_t, sample = self.samples[s.name]
        if sample.slow:  # as the real monitor does: the last sample with the slow signals
            self.slow_samples[s.name] = (sample_t, sample)
        slow_t, slow = self.slow_samples.get(s.name, (None, None))
        per_gpu: dict[int, list[Reason]] = {i: [] for i in range(s.gpus)}
        for r in s.reasons:
            if r.gpu is not None:
                per_gpu[r.gpu].append(r)
        verdict = HostVerdict(
            host=_verdict(s.reasons), gpus={i: _verdict(rs) for i, rs in per_gpu.items()}
        )
        return HostSnapshot(
            name=s.name,
            state=s.state,
            state_reason=s.state_reason,
            labels=s.labels,
            hello=hello(s.name, s.gpus),
            sample=sample,
            sample_t=sample_t,
            slow_sample=slow,
            slow_sample_t=slow_t,
            backend="sim",
            verdict=verdict,
            marked_failed=s.marked_failed,
            spare=s.spare,
            in_place_of=s.in_place_of,
        )

    def snapshot(self) -> FleetSnapshot:
        events, self._pending_events = tuple(self._pending_events), []
        return FleetSnapshot(
            t=T0 + self.tick,
            hosts=tuple(self.host(s) for s in self.scripts.values()),
            events=events,
        )


@dataclass
class _Runtime:
    history: HostHistory | None


class FakeMonitor:
    """The app's view of a monitor, fed by hand: `push(snapshot)`."""

    def __init__(self, fleet: FakeFleet) -> None:
        self.fleet = fleet
        self.events: deque[FleetEvent] = deque(maxlen=2000)
        self.stopped = False
        self.cleared: list[tuple[str, int | None]] = []
        self.watched: list[tuple[str, ...]] = []  # each watch_processes() call, in order
        self.latest: FleetSnapshot | None = None
        self._queue: asyncio.Queue[FleetSnapshot | None] = asyncio.Queue()

    @property
    def hosts(self) -> dict[str, _Runtime]:
        return {n: _Runtime(self.fleet.histories.get(n)) for n in self.fleet.scripts}

    def push(self, snapshot: FleetSnapshot) -> None:
        self.events.extend(snapshot.events)
        self.latest = snapshot
        self._queue.put_nowait(snapshot)

    def snapshot(self) -> FleetSnapshot:
        """The latest snapshot pushed, as the real monitor's `snapshot()`."""
        return self.latest if self.latest is not None else self.fleet.snapshot()

    async def snapshots(self) -> AsyncIterator[FleetSnapshot]:
        while not self.stopped:
            snap = await self._queue.get()
            if snap is None:
                return
            # newest-wins, as the real monitor: skip to the latest, keep every event
            events = list(snap.events)
            while not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    return
                events += nxt.events
                snap = nxt
            yield msgspec.structs.replace(snap, events=tuple(events))

    def set_marked_failed(self, host: str, marked: bool) -> None:
        self.fleet.scripts[host].marked_failed = marked
        self.push(self.fleet.snapshot())

    def set_in_place_of(self, host: str, node: str | None) -> None:
        self.fleet.scripts[host].in_place_of = node
        self.push(self.fleet.snapshot())

    def clear(self, host: str, gpu: int | None = None) -> None:
        self.cleared.append((host, gpu))
        script = self.fleet.scripts[host]
        script.reasons = [r for r in script.reasons if not r.latched]
        self.push(self.fleet.snapshot())

    def watch_processes(self, hosts: Collection[str]) -> None:
        self.watched.append(tuple(hosts))

    async def stop(self) -> None:
        self.stopped = True
        self._queue.put_nowait(None)


def factory(
    monitor: FakeMonitor,
) -> Callable[[], contextlib.AbstractAsyncContextManager[MonitorPort]]:
    @contextlib.asynccontextmanager
    async def open_monitor() -> AsyncIterator[MonitorPort]:
        try:
            yield monitor
        finally:
            await monitor.stop()

    return open_monitor


def R(
    code: str,
    level: Level,
    text: str,
    gpu: int | None = None,
    action: Action = Action.NONE,
    latched: bool = False,
) -> Reason:
    return Reason(code=code, level=level, text=text, gpu=gpu, action=action, latched=latched)


def small_fleet() -> FakeFleet:
    """Ten hosts, one of each kind an operator meets."""
    rack = lambda r: {"group": "train", "rack": r}  # noqa: E731
    scripts = [
        HostScript("gpu001", labels=rack("r1")),
        HostScript("gpu002", labels=rack("r1"), util=100.0),
        HostScript(
            "gpu003",
            labels=rack("r1"),
            hot={2: 86.0},
            reasons=[
                R(
                    "temp_high",
                    Level.WARN,
                    "GPU2 temperature 86 C at or above the max operating 85 C",
                    2,
                )
            ],
        ),
        HostScript(
            "gpu004",
            labels=rack("r2"),
            hot={5: 90.0},
            reasons=[
                R(
                    "temp_slowdown",
                    Level.CRITICAL,
                    "GPU5 temperature 90 C at or above the slowdown limit 89 C",
                    5,
                    Action.DRAIN,
                )
            ],
        ),
        HostScript(
            "gpu005",
            labels=rack("r2"),
            lost={3},
            reasons=[
                R(
                    "xid_79",
                    Level.FAILED,
                    "GPU3 XID 79: GPU has fallen off the bus",
                    3,
                    Action.REBOOT_NODE,
                    latched=True,
                ),
                R(
                    "gpu_lost",
                    Level.FAILED,
                    "GPU3 is lost (fell off the bus)",
                    3,
                    Action.REBOOT_NODE,
                ),
            ],
        ),
        HostScript(
            "gpu006",
            labels=rack("r2"),
            state=HostState.UNREACHABLE,
            last_tick=0,
            state_reason="connection refused (retrying)",
        ),
        HostScript(
            "gpu007",
            labels=rack("r3"),
            state=HostState.STALE,
            last_tick=0,
            state_reason="no sample for 12 s",
        ),
        HostScript("gpu008", labels=rack("r3"), marked_failed=True),
        HostScript("gpu009", gpus=4, labels={"group": "infer", "rack": "r3"}, util=35.0),
        HostScript("gpu010", labels={"group": "infer", "rack": "r4"}, said_hello=False),
    ]
    return FakeFleet(scripts)


def big_fleet(n_hosts: int, seed: int = 7) -> FakeFleet:
    """`n_hosts` 8-GPU hosts with a sprinkling of faults (every 37th warm, every 101st critical)."""
    scripts = []
    for i in range(n_hosts):
        name = f"node{i + 1:04d}"
        s = HostScript(name, labels={"rack": f"r{i // 40 + 1:02d}"}, util=20.0 + (i * seed) % 80)
        if i % 37 == 5:
            s.hot = {i % 8: 86.0}
            s.reasons = [R("temp_high", Level.WARN, f"GPU{i % 8} temperature 86 C", i % 8)]
        if i % 101 == 17:
            s.reasons = [
                R(
                    "hw_slowdown",
                    Level.CRITICAL,
                    f"GPU{i % 8} hardware slowdown",
                    i % 8,
                    Action.DRAIN,
                )
            ]
        if i % 211 == 50:
            s.state, s.last_tick, s.state_reason = HostState.UNREACHABLE, 0, "connection timed out"
        scripts.append(s)
    return FakeFleet(scripts)
