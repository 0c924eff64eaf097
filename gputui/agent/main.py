"""The agent's command line: pick a backend, stream until the channel closes.

    python -m gputui.agent [--backend auto|nvml|smi|sim] [--scenario-json JSON] [--seed N]
        [--interval S] [--slow-every N] [--duration S] [--host NAME] [--once]
        [--sim-elapsed SECONDS] [--triage [--samples N] [--since SECONDS]]

`auto` tries NVML through pynvml, then nvidia-smi, and says on stderr which it took; when
neither works it writes a fatal `error` line and exits 3. Stdout carries only protocol lines
(docs/protocol.md); anything for a person goes to stderr.
"""

from __future__ import annotations

import argparse
import functools
import json
import signal
import socket
import sys
import threading
from typing import Any

from . import DEFAULT_INTERVAL_S
from .backend import Backend, BackendError
from .runner import EXIT_BACKEND, EXIT_OK, EXIT_USAGE, Runner
from .stream import Requests, StreamWriter, stdin_is_channel, watch_stdin


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gputui-agent",
        description="Stream this host's GPU readings as JSON lines (gputui protocol v1).",
    )
    p.add_argument("--backend", choices=("auto", "nvml", "smi", "sim"), default="auto")
    p.add_argument("--scenario-json", default=None, help="scenario for --backend sim, as JSON")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulation")
    p.add_argument(
        "--interval", type=float, default=DEFAULT_INTERVAL_S, help="seconds between samples"
    )
    p.add_argument("--slow-every", type=int, default=10, help="read slow signals every N samples")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--host", default=None, help="host name to report (default: this host's)")
    p.add_argument("--once", action="store_true", help="hello and one full sample, then exit")
    p.add_argument(
        "--triage",
        action="store_true",
        help="one deep pass: hello, --samples full samples, a triage line (host facts, PCI bus, "
        "kernel log XIDs), then exit",
    )
    p.add_argument("--samples", type=int, default=5, help="with --triage: samples to take")
    p.add_argument(
        "--since",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --triage: kernel log XIDs of the last SECONDS (default: since boot)",
    )
    p.add_argument(
        "--sim-elapsed",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --backend sim: start the simulation this far into its scenario (with "
        "--triage, read it there; default there: 90 s after its last fault starts); other "
        "backends read the GPUs as they are",
    )
    p.add_argument(
        "--stdin-watch",
        choices=("auto", "on", "off"),
        default="auto",
        help="exit when stdin closes (auto: when stdin is a pipe or socket, as over SSH)",
    )
    return p


def _say(text: str) -> None:
    sys.stderr.write(f"gputui-agent: {text}\n")
    sys.stderr.flush()


def _nvml_backend(event_thread: bool = True) -> Backend:
    try:
        import pynvml
    except ImportError as exc:
        raise BackendError("nvml_init_failed", f"pynvml is not importable: {exc}") from exc
    from .nvml_backend import NvmlBackend

    return NvmlBackend(pynvml, event_thread=event_thread)


def _smi_backend(interval_s: float) -> Backend:
    from .smi import SmiBackend  # only hosts without NVML bindings pay for importing it

    return SmiBackend(interval_s=interval_s)


def _sim_backend(args: argparse.Namespace) -> Backend:
    from .sim_backend import SimBackend

    scenario: Any = {"name": "healthy"}
    if args.scenario_json:
        try:
            scenario = json.loads(args.scenario_json)
        except ValueError as exc:
            raise BackendError("bad_scenario", f"--scenario-json is not JSON: {exc}") from exc
    try:
        return SimBackend(scenario, seed=args.seed, event_thread=not args.once)
    except ValueError as exc:
        raise BackendError("bad_scenario", f"scenario: {exc}") from exc


def pick_backend(args: argparse.Namespace) -> Backend:
    """The backend --backend names; for auto, the first of nvml, smi that starts.

    With --once, NVML's events are read in the main thread before the sample, not by the event
    thread: closing that thread waits out its 0.5 s NVML event wait, which made a one-shot
    agent end half a second after its sample."""
    threaded = not args.once
    if args.backend == "sim":
        return _sim_backend(args)
    if args.backend == "nvml":
        return _nvml_backend(threaded)
    if args.backend == "smi":
        return _smi_backend(args.interval)
    failures = []
    for name, make in (
        ("nvml", functools.partial(_nvml_backend, threaded)),
        ("smi", functools.partial(_smi_backend, args.interval)),
    ):
        try:
            backend = make()
        except BackendError as exc:
            failures.append(f"{name}: {exc.text}")
            continue
        _say(f"using the {name} backend" + (f" ({failures[0]})" if failures else ""))
        return backend
    raise BackendError("no_backend", "no GPU backend works here: " + "; ".join(failures))


def _read_heartbeats(backend: Backend) -> None:
    """Let a backend that forwards training heartbeats read this host's (heartbeat.py), and a
    simulated host's own jobs' as well."""
    if not hasattr(backend, "heartbeats"):
        return
    from .heartbeat import HeartbeatReader

    simulation = getattr(backend, "simulation", None)
    simulated = getattr(simulation, "heartbeats", None)
    backend.heartbeats = HeartbeatReader(simulated=simulated)


def _install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM and SIGHUP (the session went away) end the stream like stdin's EOF does."""
    if threading.current_thread() is not threading.main_thread():
        return
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, lambda *_: stop.set())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The agent's own check, not gputui's (gputui/config/interval.py): it runs alone on the
    # host and imports nothing of gputui. gputui hands it only intervals its config accepts;
    # this guards a command line typed on the host, where a zero interval would spin.
    if args.interval <= 0 or args.slow_every < 1:
        _say("--interval must be > 0 and --slow-every >= 1")
        return EXIT_USAGE
    if args.samples < 1 or (args.since is not None and args.since <= 0):
        _say("--samples must be >= 1 and --since > 0")
        return EXIT_USAGE
    if args.sim_elapsed is not None and args.sim_elapsed < 0:
        _say("--sim-elapsed takes seconds >= 0")
        return EXIT_USAGE
    stop = threading.Event()
    writer = StreamWriter(sys.stdout.buffer, stop)
    requests = Requests()  # what the collector asks on stdin once the agent runs
    if args.stdin_watch == "on" or (args.stdin_watch == "auto" and stdin_is_channel()):
        # Say why the stream ends: an empty stdin pipe (some CI runners, `cmd < /dev/null` is
        # fine) would otherwise look like an agent that quietly gave up.
        watch_stdin(
            stop,
            on_eof=lambda: _say("stdin closed: stopping (see --stdin-watch)"),
            on_line=requests.line,
        )
    _install_signal_handlers(stop)
    try:
        backend = pick_backend(args)
    except BackendError as exc:
        runner = Runner(_NoBackend(), writer, stop, host="")
        runner.error(exc.code, exc.text, fatal=True)
        _say(exc.text)
        return EXIT_USAGE if exc.code == "bad_scenario" else EXIT_BACKEND
    host = args.host or socket.gethostname()
    if args.triage:
        from .triage import TriageRunner  # streaming hosts never load the triage modules

        runner = TriageRunner(
            backend,
            writer,
            stop,
            host=host,
            interval_s=args.interval,
            samples=args.samples,
            since_s=args.since,
            sim_elapsed_s=args.sim_elapsed,
        )
    else:
        # Only a simulation has a scenario to start into; real GPUs read now, as in triage.
        start_at = getattr(backend, "start_at", None)
        if args.sim_elapsed is not None and start_at is not None:
            start_at(args.sim_elapsed)
        _read_heartbeats(backend)
        runner = Runner(
            backend,
            writer,
            stop,
            host=host,
            interval_s=args.interval,
            slow_every=args.slow_every,
            duration_s=args.duration,
            once=args.once,
            wall=backend.wall,
            requests=requests,
            pump_events=args.once,
        )
    try:
        return runner.run()
    except KeyboardInterrupt:
        return EXIT_OK


class _NoBackend(Backend):
    """Stands in when no backend started, so the error line is written the usual way."""

    name = "none"
