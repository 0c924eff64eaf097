"""Processes every second while a screen shows them: the request to the agent, and the lists.

The agent lists a host's GPU processes with its slow signals (every 10 samples by default):
for a fleet table that is enough, and it is what a thousand hosts can afford. A screen that
shows processes to act on (the per-GPU view's process table) needs them fresh. The monitor then
asks that host's agent, and only that host's, for them in every sample, with one line on the
agent's stdin (docs/protocol.md, "Requests"):

    {"type":"watch","v":1,"processes":true}

and `false` when the screen closes. An agent from before requests discards what arrives on its
stdin and goes on listing processes in slow samples only, so the request needs no new protocol
version. The line is sent once the agent said hello: the bootstrap reads the bundle from the
same stdin, and a request must never be taken for bundle bytes.

A fast sample that lists processes carries only those: the host's slow sample (what the views
read processes from, with ECC, PCIe and the rest) gets the fresh lists in its GPUs' places,
keeping its own time and sequence number, so what counts samples (rollups) counts it once.
"""

from __future__ import annotations

import msgspec

from gputui.core.model import PROTOCOL_VERSION, Sample


def watch_line(processes: bool) -> bytes:
    """The request that turns the per-sample process lists on or off."""
    msg = {"type": "watch", "v": PROTOCOL_VERSION, "processes": processes}
    return msgspec.json.encode(msg) + b"\n"


def lists_processes(sample: Sample) -> bool:
    """Whether any GPU of `sample` carries a process list (an empty list counts: no process)."""
    return any(r.processes is not None for r in sample.gpus)


def with_processes(slow: Sample, fresh: Sample) -> Sample:
    """`slow` with the process lists of `fresh` where `fresh` has them. A GPU `fresh` could not
    read (lost, not answering) keeps the list `slow` has."""
    lists = {r.index: r.processes for r in fresh.gpus if r.processes is not None}
    gpus = [
        msgspec.structs.replace(r, processes=lists[r.index]) if r.index in lists else r
        for r in slow.gpus
    ]
    return msgspec.structs.replace(slow, gpus=gpus)
