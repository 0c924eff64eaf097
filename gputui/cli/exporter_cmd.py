"""`gputui exporter`: the collector without a screen, its fleet served to Prometheus.

The monitor runs as it does under the TUI (same hosts.toml, same agents, same verdicts); the
HTTP server is prometheus-client's, on its own threads, and builds the exposition from the
newest snapshot when Prometheus scrapes (gputui/render/prometheus.py). prometheus-client and
the collector load inside the command: every other command imports this module too.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gputui.cli.app import app
from gputui.cli.options import HostsOption, WorkersOption

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from gputui.cli.export_feed import ExportFeed
    from gputui.config.shard import Shard

DEFAULT_LISTEN = "127.0.0.1:9835"


@app.command("exporter")
def exporter(
    hosts: HostsOption = None,
    demo: Annotated[
        int | None,
        typer.Option(
            "--demo",
            metavar="N",
            help="Export N simulated hosts behind local SSH servers instead",
        ),
    ] = None,
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            metavar="HOST:PORT",
            help=f"Address to serve /metrics on (default {DEFAULT_LISTEN}: this machine only). "
            "An address other machines reach, such as 0.0.0.0:9835 for a Prometheus elsewhere, "
            "is served only when given here: the metrics name every host, GPU and fault of the "
            "fleet, and the server asks for no password",
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="K/N",
            help="Watch only shard K of N of the hosts file (a stable hash of each host's "
            "name), so N exporters cover the fleet with each host once",
        ),
    ] = None,
    workers: WorkersOption = None,
) -> None:
    """Serve the fleet's readings and verdicts to Prometheus at /metrics.

    It watches the hosts of hosts.toml as `gputui monitor` does, without a screen, until
    Ctrl+C or SIGTERM. Series and alerting rules: docs/prometheus.md, `gputui rules`."""
    from gputui.cli.common import fail, parse_shard_option
    from gputui.cli.listen import is_loopback, parse_listen
    from gputui.cli.options import workers_problem

    if hosts is not None and demo is not None:
        raise fail("--hosts and --demo exclude each other")
    if demo is not None and not 1 <= demo <= 5000:
        raise fail("--demo takes a number of hosts from 1 to 5000")
    if (problem := workers_problem(workers)) is not None:
        raise fail(problem)
    chosen = parse_shard_option(shard)
    try:
        address, port = parse_listen(listen if listen is not None else DEFAULT_LISTEN)
    except ValueError as exc:
        raise fail(f"--listen: {exc}") from None
    if not is_loopback(address):
        typer.echo(
            f"gputui: serving /metrics to other machines on {address}, without authentication",
            err=True,
        )
    asyncio.run(_serve(hosts, demo, chosen, address, port, workers))


def start_server(feed: ExportFeed, address: str, port: int) -> WSGIServer:
    """prometheus-client's HTTP server over the feed's newest view, on its own threads; a
    usage error when the address cannot be bound (the port taken, an address not ours)."""
    from prometheus_client import ProcessCollector, start_http_server
    from prometheus_client.registry import CollectorRegistry

    from gputui.cli.common import fail
    from gputui.render.prometheus import FleetCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(feed.latest))
    ProcessCollector(registry=registry)  # the exporter's own CPU, memory and descriptors
    try:
        server, _thread = start_http_server(port, addr=address, registry=registry)
    except OSError as exc:
        cause = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        raise fail(f"cannot listen on {address} port {port}: {cause}") from None
    return server


async def _serve(
    hosts: Path | None,
    demo: int | None,
    shard: Shard | None,
    address: str,
    port: int,
    workers: int | None = None,
) -> None:
    from gputui.cli.common import open_monitor
    from gputui.cli.export_feed import ExportFeed

    feed = ExportFeed()
    # Bound before the fleet is opened: a port in use is said at once, and no agent starts.
    server = start_server(feed, address, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        bound = server.server_address[1]
        shown = f"[{address}]" if ":" in address else address
        typer.echo(
            f"gputui: serving http://{shown}:{bound}/metrics (Ctrl+C or SIGTERM stops)", err=True
        )
        async with open_monitor(hosts, demo, shard=shard, workers=workers) as monitor:
            follower = await feed.start(monitor)
            await stop.wait()
            follower.cancel()
        # Leaving the monitor closed every host's connection, which ends its agent.
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await asyncio.to_thread(server.shutdown)
        server.server_close()
    typer.echo("gputui: exporter stopped; every host's connection closed", err=True)
