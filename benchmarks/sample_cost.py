"""The monitor's CPU per host-sample, by part, in-process (no SSH): decode, health rules,
history ring, and the whole of HostRuntime.on_line.

A recorded stream of the real sim backend (the healthy 8-GPU training scenario, 600 samples at
1 s, every 10th slow) is fed `--repeat` times per part; the figure is the fastest pass, in
microseconds per 8-GPU sample. To compare two revisions, run it under each in one session:

    python benchmarks/sample_cost.py
    PYTHONPATH=/path/to/other/checkout python benchmarks/sample_cost.py
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from memory_ff import T0, record

import gputui
from gputui.collect.history import HostHistory
from gputui.collect.host_runtime import HostRuntime
from gputui.collect.protocol import StreamDecoder
from gputui.collect.scenarios import load_scenario
from gputui.core.health import HostHealth
from gputui.core.model import Hello, HostState, Sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    hello, templates = record(load_scenario("healthy"), seed=3, seconds=600)
    lines = [
        tpl.replace("@T@", f"{T0 + i:.3f}").replace("@SEQ@", str(i)).encode()
        for i, tpl in enumerate(templates)
    ]
    hello_line = json.dumps(hello).encode()
    decoder = StreamDecoder()
    parsed_hello = decoder.decode(hello_line)
    assert isinstance(parsed_hello, Hello)
    samples: list[Sample] = []
    for line in lines:
        msg = decoder.decode(line)
        assert isinstance(msg, Sample)
        samples.append(msg)

    def decode() -> Callable[[], None]:
        d = StreamDecoder()

        def go() -> None:
            for line in lines:
                d.decode(line)

        return go

    def health() -> Callable[[], None]:
        h = HostHealth()

        def go() -> None:
            for i, s in enumerate(samples):
                h.evaluate(parsed_hello, s, T0 + i)

        return go

    def history() -> Callable[[], None]:
        ring = HostHistory(parsed_hello.gpus, 300)

        def go() -> None:
            for i, s in enumerate(samples):
                ring.append(T0 + i, s)

        return go

    def on_line() -> Callable[[], None]:
        now = [T0]
        rt = HostRuntime("h", interval_s=1.0, emit=lambda e, u: None, clock=lambda: now[0])
        rt.set_state(HostState.CONNECTING)
        rt.on_line(hello_line)

        def go() -> None:
            for i, line in enumerate(lines):
                now[0] = T0 + i
                rt.on_line(line)

        return go

    parts = {"decode": decode, "health": health, "history": history, "on_line": on_line}
    best = dict.fromkeys(parts, float("inf"))
    for _ in range(args.repeat):  # parts alternate, so a noisy moment hits them all
        for name, make in parts.items():
            run = make()
            t = time.perf_counter()
            run()
            best[name] = min(best[name], (time.perf_counter() - t) / len(lines))
    result = {name: round(v * 1e6, 1) for name, v in best.items()}
    print(json.dumps({"gputui": gputui.__file__, "us_per_8gpu_sample": result}))


if __name__ == "__main__":
    main()
