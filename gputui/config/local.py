"""This machine alone: the Config of bare `gputui` when no hosts file exists.

It is the fleet the starter hosts file lists (`gputui init` writes it, starter.py reads it):
`localhost`, read through a local agent without SSH, every setting at its default. So running
`gputui init` changes nothing about what `gputui` shows until the file is edited.
"""

from __future__ import annotations

from pathlib import Path

from gputui.config.model import LOCAL_HOST, Config, HostGroup, HostSpec, transport_for
from gputui.config.schema import DEFAULT_BACKEND, DEFAULT_GROUP, DEFAULT_SIM_SCENARIO, Backend

#: What stands for the file's path in messages (there is no file).
NO_HOSTS_FILE = Path("(no hosts file: this machine only)")


def local_config(backend: Backend = DEFAULT_BACKEND, scenario: str | None = None) -> Config:
    """`localhost` read with `backend`; `scenario` (default "healthy") only for "sim"."""
    sim = backend == "sim"
    spec = HostSpec(
        name=LOCAL_HOST,
        backend=backend,
        scenario=(scenario or DEFAULT_SIM_SCENARIO) if sim else None,
        transport=transport_for(LOCAL_HOST),
    )
    group = HostGroup(name=DEFAULT_GROUP, hosts=(LOCAL_HOST,))
    return Config(path=NO_HOSTS_FILE, hosts=[spec], groups={DEFAULT_GROUP: group})
