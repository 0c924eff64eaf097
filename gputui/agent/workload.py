"""Utilisation profiles of the simulated GPUs: what the job on the host asks of them.

Each profile answers "how busy is GPU i at time t" (0..1) and what it holds in memory. They
draw their randomness from the simulation's generator, one draw pattern per step, so a
simulation replays exactly for a seed however often it is read.
"""

from __future__ import annotations

import random
from typing import Any


class Workload:
    """Idle: nothing runs; the GPU sits in its lowest clock state."""

    name = "idle"
    process_name = ""

    def __init__(self, rng: random.Random, n_gpus: int) -> None:
        self.rng = rng
        self.n_gpus = n_gpus

    def step(self, t: float, dt: float) -> None:
        """Advance per-host state (bursts, phases) to time t."""

    def util(self, index: int, t: float) -> tuple[float, float]:
        """(SM utilisation, memory-controller utilisation), both 0..1."""
        return 0.0, 0.0

    def memory_fraction(self, index: int) -> float:
        """Share of the GPU's memory the job holds."""
        return 0.0

    def gpu_pids(self, index: int) -> list[int]:
        """PIDs of the processes on GPU `index` (one process may drive several GPUs)."""
        return []

    def process_name_of(self, index: int) -> str:
        """The executable of the processes on GPU `index`."""
        return self.process_name

    def owner(self, pid: int) -> dict[str, Any]:
        """Who runs process `pid`, as the agent's attribution reports it (uid, user, job);
        nothing when the scenario says nothing about it."""
        return {}


class Training(Workload):
    """Data-parallel training: every GPU near 100% in lockstep, with a dip for each checkpoint
    write and a lighter phase for each evaluation."""

    name = "training"
    process_name = "python3"

    def __init__(
        self, rng: random.Random, n_gpus: int, timeline: random.Random | None = None
    ) -> None:
        """`timeline` draws the job's rhythm (checkpoints, evaluations) when it is not the
        host's own: every host of a multi-host job draws the same one."""
        super().__init__(rng, n_gpus)
        timeline = rng if timeline is None else timeline
        self.checkpoint_every_s = timeline.uniform(150.0, 300.0)
        self.checkpoint_len_s = timeline.uniform(8.0, 18.0)
        self.eval_every = 3  # checkpoints
        self.eval_len_s = timeline.uniform(25.0, 45.0)
        # Start somewhere inside a period, but not in a dip, so t=0 shows a busy job.
        self.phase_s = timeline.uniform(self.checkpoint_len_s + 5.0, self.checkpoint_every_s - 5.0)
        self.mem_fraction = [rng.uniform(0.88, 0.94) for _ in range(n_gpus)]
        torchrun = rng.randint(20_000, 900_000)
        self._pids = [torchrun + 1 + i for i in range(n_gpus)]
        self._noise = [0.0] * n_gpus

    def step(self, t: float, dt: float) -> None:
        self._noise = [self.rng.gauss(0.0, 0.012) for _ in range(self.n_gpus)]

    def util(self, index: int, t: float) -> tuple[float, float]:
        since = (t + self.phase_s) % self.checkpoint_every_s
        period = int((t + self.phase_s) // self.checkpoint_every_s)
        if since < self.checkpoint_len_s:
            base = 0.03  # writing a checkpoint: GPUs wait on storage
        elif period % self.eval_every == 0 and since < self.checkpoint_len_s + self.eval_len_s:
            base = 0.62  # evaluation: smaller batches, more host work
        else:
            base = 0.97
        sm = min(1.0, max(0.0, base + self._noise[index]))
        return sm, min(1.0, sm * 0.48 + abs(self._noise[index]))

    def memory_fraction(self, index: int) -> float:
        return self.mem_fraction[index]

    def gpu_pids(self, index: int) -> list[int]:
        return [self._pids[index]]


# Request bursts on an inference server: one starts after a mean of BURST_GAP_S idle, and
# lasts a mean of BURST_S.
BURST_GAP_S = 20.0
BURST_S = 8.0
# A step longer than this (a fast-forwarded run) outlasts bursts and the queues' settling: each
# step draws the GPU's state at its end instead of following bursts through it.
COARSE_STEP_S = 2.0


class Inference(Workload):
    """An inference server: one process on every GPU, idling between request bursts."""

    name = "inference"
    process_name = "tritonserver"

    def __init__(self, rng: random.Random, n_gpus: int) -> None:
        super().__init__(rng, n_gpus)
        self.mem_fraction = [rng.uniform(0.55, 0.68) for _ in range(n_gpus)]
        self._pid = rng.randint(2_000, 400_000)
        self._burst_left = [0.0] * n_gpus
        self._level = [0.15] * n_gpus

    def step(self, t: float, dt: float) -> None:
        if dt > COARSE_STEP_S:
            self._coarse_step()
            return
        for i in range(self.n_gpus):
            # A Poisson stream of bursts, mean one every 20 s, each lasting ~8 s.
            if self._burst_left[i] > 0.0:
                self._burst_left[i] -= dt
            elif self.rng.random() < dt / BURST_GAP_S:
                self._burst_left[i] = self.rng.expovariate(1.0 / BURST_S)
            busy = self._burst_left[i] > 0.0
            target = self.rng.uniform(0.70, 0.95) if busy else self.rng.uniform(0.08, 0.30)
            # Request queues drain and fill over a few seconds, not instantly.
            self._level[i] += (target - self._level[i]) * min(1.0, dt / 1.5)

    def _coarse_step(self) -> None:
        """Each GPU busy at the step's end with the share of time bursts take, its queue
        settled at the level of that state."""
        busy_share = BURST_S / (BURST_S + BURST_GAP_S)
        for i in range(self.n_gpus):
            busy = self.rng.random() < busy_share
            self._burst_left[i] = 0.0
            self._level[i] = self.rng.uniform(0.70, 0.95) if busy else self.rng.uniform(0.08, 0.30)

    def util(self, index: int, t: float) -> tuple[float, float]:
        sm = self._level[index]
        return sm, sm * 0.35

    def memory_fraction(self, index: int) -> float:
        return self.mem_fraction[index]

    def gpu_pids(self, index: int) -> list[int]:
        return [self._pid]


def make_workload(name: str, rng: random.Random, n_gpus: int) -> Workload:
    if name == "training":
        return Training(rng, n_gpus)
    if name == "inference":
        return Inference(rng, n_gpus)
    return Workload(rng, n_gpus)
