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
