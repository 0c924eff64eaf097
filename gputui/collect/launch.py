"""How the agent is started on a host: the command line and what goes down its stdin."""

from __future__ import annotations

import json
import shlex
import signal
from collections.abc import Callable
from dataclasses import dataclass

from gputui.config import DEFAULT_INTERVAL_S

EXIT_NO_PYTHON = 127  # POSIX shells' "command not found"


@dataclass(frozen=True)
class AgentInvocation:
    """A command for the host's shell plus bytes written to its stdin once it starts.

    stdin stays open afterwards: its end is how the agent learns the collector went away.
    """

    command: str
    stdin: bytes = b""
    smi: bool = False  # the output is nvidia-smi's session stream, not protocol lines
    fallback: AgentInvocation | None = None  # tried when the host has no python


@dataclass(frozen=True)
class AgentArgs:
    """The agent's own arguments (gputui/agent/main.py)."""

    backend: str = "auto"
    interval_s: float = DEFAULT_INTERVAL_S
    slow_every: int = 10
    host: str | None = None  # reported name (simulated hosts)
    scenario: dict[str, object] | None = None  # sim only
    seed: int | None = None
    once: bool = False
    # sim only: seconds into the scenario the simulation starts at (streaming: as if started
    # that long ago; triage: the time it is read at). None: 0, or triage's own default.
    sim_elapsed_s: float | None = None

    def argv(self) -> list[str]:
        args = [
            "--backend",
            self.backend,
            "--interval",
            f"{self.interval_s:g}",
            "--slow-every",
            str(self.slow_every),
        ]
        if self.host:
            args += ["--host", self.host]
        if self.scenario is not None:
            args += ["--scenario-json", json.dumps(self.scenario, separators=(",", ":"))]
        if self.seed is not None:
            args += ["--seed", str(self.seed)]
        if self.once:
            args.append("--once")
        if self.sim_elapsed_s is not None:
            args += ["--sim-elapsed", f"{self.sim_elapsed_s:g}"]
        return args


def smi_invocation(interval_s: float) -> AgentInvocation:
    """nvidia-smi streaming over one exec, for hosts where python cannot be used."""
    from gputui.agent.smi_parse import session_command

    check = (
        "command -v nvidia-smi >/dev/null 2>&1 || "
        f"{{ echo 'gputui: neither python nor nvidia-smi found on this host' >&2; "
        f"exit {EXIT_NO_PYTHON}; }}; "
    )
    return AgentInvocation(command=check + session_command(interval_s), smi=True)


def remote_invocation(python: str, args: AgentArgs) -> AgentInvocation:
    """Ship the agent bundle over stdin and run it with the host's python.

    The bundle carries a copy of pynvml (from the local nvidia-ml-py) that the agent imports
    only when the host has none, so nothing is installed or written on the host. With the
    `auto` backend, a host without python falls back to streaming nvidia-smi (degraded); with
    `smi`, nvidia-smi is streamed directly.
    """
    from gputui.agent.bundle import bootstrap_command, build_bundle

    if args.backend == "smi":
        return smi_invocation(args.interval_s)

    # A simulated host needs no NVML bindings: leave pynvml's 330 KB of source out.
    bundle = _cached_bundle(build_bundle, include_pynvml=args.backend != "sim")
    python_q = shlex.quote(python)
    run = bootstrap_command(python, len(bundle), args.argv())
    # `command -v` first so a host without python gets a clear reason, not a shell error.
    command = (
        f"command -v {python_q} >/dev/null 2>&1 || "
        f"{{ echo 'gputui: {python} not found on this host' >&2; exit {EXIT_NO_PYTHON}; }}; "
        f"exec {run}"
    )
    fallback = smi_invocation(args.interval_s) if args.backend == "auto" else None
    return AgentInvocation(command=command, stdin=bundle, fallback=fallback)


_BUNDLES: dict[bool, bytes] = {}


def _cached_bundle(build: Callable[[bool], bytes], include_pynvml: bool) -> bytes:
    """Built once per process: every host gets the same bytes."""
    bundle = _BUNDLES.get(include_pynvml)
    if bundle is None:
        bundle = _BUNDLES[include_pynvml] = build(include_pynvml)
    return bundle


def describe_exit(status: int | None, sig: str | None, last_stderr: str) -> str:
    """The reason line for an agent that ended."""
    tail = f": {last_stderr}" if last_stderr else ""
    if sig:
        return f"agent killed by signal {sig}{tail}"
    if status is None:
        return f"agent stream closed{tail}"
    if status == EXIT_NO_PYTHON:
        # The launch commands explain themselves on stderr ("gputui: ... not found").
        return last_stderr.removeprefix("gputui: ") or "command not found on the host"
    if status > 128 and status - 128 in signal.Signals._value2member_map_:
        return f"agent killed by {signal.Signals(status - 128).name}{tail}"
    return f"agent exited with code {status}{tail}"
