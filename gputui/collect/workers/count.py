"""How many collector worker processes a fleet gets (`[collector] workers`, `--workers`)."""

from __future__ import annotations

import os

#: Below this many hosts, "auto" collects in the UI's own process: one loop holds them with
#: room to spare, and a worker only adds a hop.
AUTO_MIN_HOSTS = 256
#: "auto" gives each worker at least this many hosts: fewer and the frames cost more than
#: the worker saves.
AUTO_HOSTS_PER_WORKER = 64


def cpu_count() -> int:
    """The cores this process may run on."""
    counted = getattr(os, "process_cpu_count", None)  # Python 3.13
    if counted is not None:
        n = counted()
    else:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, n or 1)


def workers_for(setting: int | str, n_hosts: int, cpus: int | None = None) -> int:
    """Worker processes for `n_hosts` hosts; 0 collects in this process.

    "auto": none below AUTO_MIN_HOSTS hosts, else one per core, never more than one per
    AUTO_HOSTS_PER_WORKER hosts. A number is taken as given, but never more workers than
    hosts (a worker without a host has nothing to do)."""
    if isinstance(setting, int):
        return max(0, min(setting, n_hosts))
    if n_hosts < AUTO_MIN_HOSTS:
        return 0
    cores = cpus if cpus is not None else cpu_count()
    return max(1, min(cores, n_hosts // AUTO_HOSTS_PER_WORKER))
