"""hosts.toml -> a typed, validated Config.

    path = resolve_hosts_path(cli_path)   # --hosts, else $GPUTUI_HOSTS, else the config dir
    config = load_config(path)            # ConfigError (one paragraph) on any problem
    for spec in config.hosts: ...         # HostSpec: alias, group, labels, settings, transport

docs/configuration.md documents the file; hosts.example.toml shows every key.
"""

from __future__ import annotations

from gputui.config.errors import ConfigError
from gputui.config.interval import (
    DEFAULT_INTERVAL_S,
    INTERVAL_EXPECTED,
    MAX_INTERVAL_S,
    interval_problem,
)
from gputui.config.load import (
    HOSTS_ENV,
    chosen_hosts_path,
    config_from_text,
    default_hosts_path,
    load_config,
    resolve_hosts_path,
)
from gputui.config.model import (
    LOCAL_HOST,
    Config,
    HostGroup,
    HostSpec,
    SshSettings,
    Transport,
    transport_for,
)
from gputui.config.ranges import MAX_HOSTS, HostRangeError, expand_hosts, fold_hosts
from gputui.config.schema import BACKENDS, Backend

__all__ = [
    "BACKENDS",
    "DEFAULT_INTERVAL_S",
    "HOSTS_ENV",
    "INTERVAL_EXPECTED",
    "LOCAL_HOST",
    "MAX_HOSTS",
    "MAX_INTERVAL_S",
    "Backend",
    "Config",
    "ConfigError",
    "HostGroup",
    "HostRangeError",
    "HostSpec",
    "SshSettings",
    "Transport",
    "chosen_hosts_path",
    "config_from_text",
    "default_hosts_path",
    "expand_hosts",
    "fold_hosts",
    "interval_problem",
    "load_config",
    "resolve_hosts_path",
    "transport_for",
]
