"""What the live monitor watches when no hosts file exists: this machine, if it has a GPU.

nvitop shows the GPUs of the machine it runs on at once; so does bare `gputui` without a hosts
file. It watches `localhost` through a local agent (gputui/collect/local_source.py), as the
starter file `gputui init` writes would (gputui/config/local.py). Without a GPU here, it says
what it looked for and how to go on, and exits EXIT_CANNOT_WATCH.

Whether this machine has a GPU is NVML's answer in this process: it loads, and counts at least
one device. That is what the agent's NVML backend needs; the local agent then opens it again.
When it counts one, NVML stays open here for as long as gputui runs: without persistence mode
the driver takes a GPU down when its last client closes it, and sets it up again (1-3 s per GPU,
NVIDIA's driver persistence documentation) for the next, which would be the agent starting.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from gputui.cli.common import DEMO_HOSTS, fail
from gputui.cli.exits import EXIT_CANNOT_WATCH
from gputui.cli.options import LOCAL_BACKEND_ENV
from gputui.config import BACKENDS, HOSTS_ENV, Backend, Config, default_hosts_path
from gputui.config.local import local_config


def no_hosts_file(hosts: Path | None) -> bool:
    """Whether no hosts file is named (--hosts, $GPUTUI_HOSTS) and none is in the config dir.

    A file that is named but missing stays an error: the user meant that file."""
    return hosts is None and not os.environ.get(HOSTS_ENV) and not default_hosts_path().exists()


def parse_local_backend(text: str) -> tuple[Backend, str | None]:
    """`auto`, `nvml`, `smi`, `sim` or `sim:SCENARIO` -> (backend, scenario); ValueError."""
    name, _, scenario = text.strip().partition(":")
    for backend in BACKENDS:
        if name == backend and (not scenario or backend == "sim"):
            return backend, scenario or None
    raise ValueError(
        f"expected auto, nvml, smi, sim or sim:SCENARIO, got {text!r}"
        + (" (only sim takes a scenario)" if scenario and name in BACKENDS else "")
    )


def nvml_problem() -> str | None:
    """Why NVML cannot show a GPU in this process, or None when it counts one or more (and
    then stays open)."""
    try:
        import pynvml
    except ImportError as exc:
        return f"the NVML bindings (nvidia-ml-py) are not installed ({exc})"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return f"NVML does not load ({exc})"
    problem: str | None = None
    try:
        count = int(pynvml.nvmlDeviceGetCount())
    except pynvml.NVMLError as exc:
        count, problem = 0, f"NVML cannot count the GPUs ({exc})"
    if count == 0:
        problem = problem or "NVML loads, and sees no GPU"
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
    # Else left open (the module's docstring): the GPUs stay set up for the local agent.
    return problem


def local_or_fail(local_backend: str | None) -> Config:
    """This machine as the fleet, read with `local_backend` (else $GPUTUI_LOCAL_BACKEND, else
    auto); exits with the next steps when auto finds no GPU here."""
    choice = local_backend or os.environ.get(LOCAL_BACKEND_ENV) or "auto"
    try:
        backend, scenario = parse_local_backend(choice)
    except ValueError as exc:
        where = "--local-backend" if local_backend else f"${LOCAL_BACKEND_ENV}"
        raise fail(f"{where}: {exc}") from None
    if backend == "auto":
        problem = nvml_problem()
        if problem is not None:
            raise fail(nothing_to_watch(problem), EXIT_CANNOT_WATCH)
    return local_config(backend, scenario)


def nothing_to_watch(gpu_problem: str) -> str:
    """The message of bare `gputui` with no hosts file and no GPU: what it looked for, then
    the two ways on."""
    path = default_hosts_path()
    return "\n".join(
        [
            "nothing to watch here.",
            f"  no hosts file: {path} does not exist (--hosts PATH or ${HOSTS_ENV} choose another)",
            f"  no GPU on this machine: {gpu_problem}",
            "Next:",
            f"  gputui demo    a simulated fleet of {DEMO_HOSTS} GPU hosts, nothing to set up",
            f"  gputui init    write a starter hosts file to {path}, then list your hosts in it",
        ]
    )
