"""`gputui init`: write the starter hosts file where gputui looks for it.

The starter ships inside the package (gputui/config/starter.toml), so a pip install has it. It
goes where every command reads the hosts file from (--hosts, $GPUTUI_HOSTS, the user config
dir), with its directory created: on a fresh account ~/.config/gputui does not exist yet.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from gputui.cli.app import app
from gputui.cli.common import fail
from gputui.cli.options import HostsOption
from gputui.config import chosen_hosts_path
from gputui.config.starter import starter_text

BACKUP_SUFFIX = ".bak"


@app.command("init")
def init(
    hosts: HostsOption = None,
    force: Annotated[
        bool,
        typer.Option("--force", help=f"Replace an existing file (kept as FILE{BACKUP_SUFFIX})"),
    ] = False,
) -> None:
    """Write a starter hosts.toml where gputui looks for it.

    As written it watches this machine (`localhost`); list your GPU hosts in it to watch a
    fleet. The other keys are in it, commented out. Its directory is created; an existing
    file is left alone unless --force."""
    path, origin = chosen_hosts_path(hosts)
    if path.is_dir():
        raise fail(f"{path} ({origin}) is a directory; --hosts names the file to write")
    backup: Path | None = None
    if path.exists():
        if not force:
            raise fail(
                f"{path} ({origin}) exists: left as it is (--force replaces it, keeping it as "
                f"{path.name}{BACKUP_SUFFIX})"
            )
        backup = path.with_name(path.name + BACKUP_SUFFIX)
    try:
        _write(path, starter_text(), backup)
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror or exc}", 1) from None
    if backup is not None:
        typer.echo(f"kept the file it replaces as {backup}")
    typer.echo(f"wrote {path}")
    typer.echo(
        "It watches this machine (localhost) until you list your GPU hosts in it: "
        "SSH aliases or ranges such as gpu[001-032]. Then run `gputui`."
    )


def _write(path: Path, text: str, backup: Path | None) -> None:
    """`text` to `path` whole or not at all: written beside it, then renamed over it. The file
    is private to the user (0600, as mkstemp makes it): it names the fleet's hosts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        if backup is not None:
            os.replace(path, backup)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
