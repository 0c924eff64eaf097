"""A training process for tests/test_train_heartbeat.py: a plain loop watched by GPUGuard on
one GPU of a simulated host, stepping every STEP_S seconds until killed. Its heartbeat file is
what the real agent on the same host reads.

    python tests/train_heartbeat_job.py SCENARIO_JSON SEED GPU STEP_S
"""

from __future__ import annotations

import json
import sys
import time

from gputui.agent.sim_backend import SimBackend
from gputui.train import GPUGuard
from gputui.train.nvml import simulated


def main() -> None:
    table, seed, gpu, step_s = (
        json.loads(sys.argv[1]),
        int(sys.argv[2]),
        int(sys.argv[3]),
        float(sys.argv[4]),
    )
    uuid = SimBackend(table, seed=seed, clock=lambda: 0.0, event_thread=False).hello()["gpus"][gpu][
        "uuid"
    ]
    guard = GPUGuard(
        every_steps=50, device=uuid, backend=simulated(table, seed=seed), heartbeat_s=0.2
    )
    print("ready", flush=True)
    while True:
        start = time.perf_counter()
        # A step's own work: a sleep, which a loaded machine delays far less than it slows a
        # busy loop, so the two ranks' ratio holds on a shared CI machine.
        time.sleep(step_s)
        guard.compute(time.perf_counter() - start)
        guard.step()


if __name__ == "__main__":
    main()
