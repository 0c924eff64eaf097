"""A host's plan as plain data, and the plans built from it.

The in-process monitor builds its plans from recipes, and so does each collector worker
process, which receives its hosts' recipes in a frame (gputui/collect/workers/frames.py): a
Source holds connections and cannot travel between processes, a recipe can.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gputui.collect.feed import Source
from gputui.collect.launch import AgentArgs, remote_invocation
from gputui.collect.local_source import LocalSource
from gputui.collect.monitor import HostPlan
from gputui.config import DEFAULT_INTERVAL_S, SshSettings

if TYPE_CHECKING:
    from gputui.collect.ssh import SshContext, SshOptions


def ssh_options(settings: SshSettings) -> SshOptions:
    from gputui.collect.ssh import SshOptions

    return SshOptions(
        config_files=tuple(settings.config_files),
        known_hosts=settings.known_hosts,
        connect_timeout_s=settings.connect_timeout_s,
        keepalive_interval_s=settings.keepalive_interval_s,
        keepalive_count_max=settings.keepalive_count_max,
        max_handshakes=settings.max_handshakes,
        identity_files=tuple(settings.identity_files),
        strict_host_keys=settings.strict_host_keys,
    )


@dataclass(frozen=True)
class HostRecipe:
    """Everything a host's plan is built from, as plain data: a worker process receives its
    hosts this way (a Source holds connections and cannot travel) and builds their plans."""

    name: str
    args: AgentArgs
    transport: str = "ssh"  # "local": a subprocess on this machine (config.model.Transport)
    python: str = "python3"
    interval_s: float = DEFAULT_INTERVAL_S
    labels: dict[str, str] = field(default_factory=dict)
    spare: bool = False


def plans_for_recipes(
    recipes: Sequence[HostRecipe], options: SshOptions | None
) -> tuple[list[HostPlan], SshContext | None]:
    """One plan per recipe, sharing one SSH context made from `options`; None when every host
    is `localhost` (no SSH, so no asyncssh, no known_hosts read)."""
    ssh = None
    if any(r.transport != "local" for r in recipes):
        from gputui.collect.ssh import SshContext, SshOptions

        ssh = SshContext(options if options is not None else SshOptions())
    return [plan_for(recipe, ssh) for recipe in recipes], ssh


def plan_for(recipe: HostRecipe, ssh: SshContext | None) -> HostPlan:
    source: Source
    if recipe.transport == "local":
        source = LocalSource(recipe.name, recipe.args)
    elif ssh is None:
        raise ValueError(f"{recipe.name} is reached over SSH, and no SSH context was given")
    else:
        from gputui.collect.ssh_source import SshSource

        python, args = recipe.python, recipe.args
        source = SshSource(recipe.name, ssh, lambda: remote_invocation(python, args))
    return HostPlan(
        source=source, interval_s=recipe.interval_s, labels=dict(recipe.labels), spare=recipe.spare
    )
