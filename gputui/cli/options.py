"""Options that several commands take, each worded once.

Only typer and the standard library here: the live monitor's module imports this one, and must
stay quick to load and free of the ops layer until a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

#: The environment variable that chooses the local backend when no hosts file exists.
LOCAL_BACKEND_ENV = "GPUTUI_LOCAL_BACKEND"

HostsOption = Annotated[
    Path | None,
    typer.Option(
        "--hosts",
        metavar="PATH",
        help="hosts.toml (default: $GPUTUI_HOSTS, then the user config dir)",
    ),
]
JournalOption = Annotated[
    Path | None,
    typer.Option(
        "--journal",
        metavar="PATH",
        help="The journal file (default: $GPUTUI_JOURNAL, then [journal] path in hosts.toml, "
        "then the user state dir)",
    ),
]
ReadonlyOption = Annotated[
    bool,
    typer.Option(
        "--readonly",
        help="Watch only: refuse every request to mark, resume or act on a node or process "
        "(also: readonly = true in hosts.toml)",
    ),
]
LocalBackendOption = Annotated[
    str | None,
    typer.Option(
        "--local-backend",
        metavar="BACKEND",
        help="With no hosts file, read this machine's GPUs with auto, nvml, smi, sim or "
        f"sim:SCENARIO (sim: simulated, no GPU needed; default: ${LOCAL_BACKEND_ENV}, then auto)",
    ),
]

#: How many collector worker processes read the hosts' streams (`[collector] workers`).
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers",
        metavar="N",
        help="Read the hosts' streams in N worker processes (0: in this process; default: "
        "[collector] workers of the hosts file, else one per core from 256 hosts)",
    ),
]

#: The most worker processes --workers takes (the hosts file says the same).
MAX_WORKERS = 1024


def workers_problem(workers: int | None) -> str | None:
    """Why `--workers` cannot be used, or None."""
    if workers is not None and not 0 <= workers <= MAX_WORKERS:
        return f"--workers takes a number of processes from 0 (this process) to {MAX_WORKERS}"
    return None
