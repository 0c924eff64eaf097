"""`gputui serve`: the live monitor in a web browser, through textual-serve.

Each browser session starts its own `gputui monitor` (or `gputui demo`) with the arguments
given here, as a terminal would. The server binds loopback unless told `--public`, which then
asks every request for a random token (gputui/cli/serve_auth.py). textual-serve and aiohttp
load inside the command: every other command imports this module too.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from gputui.cli.app import app
from gputui.cli.exits import EXIT_UNKNOWN

DEFAULT_PORT = 8000
LOOPBACK = "127.0.0.1"
EVERY_INTERFACE = "0.0.0.0"


def app_argv(hosts: Path | None, demo: int | None) -> list[str]:
    """The command line of the app one browser session runs: this interpreter's gputui."""
    argv = [sys.executable, "-m", "gputui.cli"]
    if demo is not None:
        return [*argv, "demo", "--hosts", str(demo)]
    if hosts is None:
        return [*argv, "monitor"]
    return [*argv, "monitor", "--hosts", str(hosts)]


def page_address(host: str, port: int, token: str | None) -> str:
    """The address to open, as printed at start: a wildcard bind named by this machine's name."""
    from gputui.cli.serve_auth import TOKEN_PARAM

    name = socket.getfqdn() if host in ("", EVERY_INTERFACE, "::") else host
    if ":" in name:  # an IPv6 address
        name = f"[{name}]"
    query = "" if token is None else f"?{TOKEN_PARAM}={token}"
    return f"http://{name}:{port}/{query}"


def _hosts_file(hosts: Path | None) -> Path | None:
    """hosts.toml resolved and checked now, so that a mistake in it is said here once rather
    than in each browser session. None where none is named and the default does not exist: the
    session's `gputui monitor` then decides what to watch, as bare `gputui` does."""
    from gputui.cli.common import load_hosts
    from gputui.config import HOSTS_ENV, default_hosts_path, resolve_hosts_path

    if hosts is None and not os.environ.get(HOSTS_ENV) and not default_hosts_path().exists():
        return None
    path = resolve_hosts_path(hosts)  # ConfigError: a named file that is not there
    load_hosts(path)
    return path.resolve()


@app.command("serve")
def serve(
    hosts: Annotated[
        Path | None,
        typer.Option(
            "--hosts", help="hosts.toml (default: $GPUTUI_HOSTS, then the user config dir)"
        ),
    ] = None,
    demo: Annotated[
        int | None,
        typer.Option("--demo", help="Serve N simulated hosts (each session its own) instead"),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="Address to listen on (default: 127.0.0.1; with --public, every interface)",
        ),
    ] = None,
    port: Annotated[int, typer.Option("--port", help="Port to listen on")] = DEFAULT_PORT,
    public: Annotated[
        bool,
        typer.Option(
            "--public",
            help="Allow a non-loopback address; every request then needs the printed token",
        ),
    ] = False,
) -> None:
    """Serve the live monitor to a web browser.

    On loopback only, unless --public."""
    from gputui.cli.common import fail
    from gputui.cli.listen import is_loopback
    from gputui.cli.serve_auth import Gate, GatedServer, new_token
    from gputui.config import ConfigError

    if hosts is not None and demo is not None:
        raise fail("--hosts and --demo exclude each other")
    if demo is not None and not 1 <= demo <= 5000:
        raise fail("--demo takes a number of hosts from 1 to 5000")
    if not 1 <= port <= 65535:
        raise fail("--port takes a port number from 1 to 65535")
    bind = host if host is not None else (EVERY_INTERFACE if public else LOOPBACK)
    if not public and not is_loopback(bind):
        raise fail(
            f"--host {bind} is reachable from other machines, and the app operates the fleet: "
            "add --public to serve it there behind an access token",
            EXIT_UNKNOWN,
        )
    try:
        hosts_file = None if demo is not None else _hosts_file(hosts)
    except ConfigError as exc:
        raise fail(str(exc)) from None

    token = new_token() if public else None
    command = shlex.join(app_argv(hosts_file, demo))
    server = GatedServer(command, Gate(token, port), host=bind, port=port, title="gputui")
    address = page_address(bind, port, token)
    if token is None:
        typer.echo(f"gputui: serving the monitor at {address} (Ctrl+C stops)")
    else:
        typer.echo(
            f"gputui: serving the monitor at {address}\n"
            "gputui: anyone with this address can operate the fleet; plain HTTP carries it "
            "unencrypted (Ctrl+C stops)"
        )
    try:
        server.serve()
    except OSError as exc:  # the port taken, an address this machine does not have
        # asyncio words it "error while attempting to bind on address (...): ...": the cause alone.
        cause = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        raise fail(f"cannot listen on {bind} port {port}: {cause}") from None
