"""What a hosts file means, in the types the collector, reports and triage use.

Every struct here is frozen: the collector, the monitor and the TUI share one Config, and none
of them may change another's view of the fleet. Defaults match hosts.toml's defaults, so the
demo fleet and tests can build a HostSpec or SshSettings without a file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec

from gputui.config.errors import ConfigError, did_you_mean
from gputui.config.interval import DEFAULT_INTERVAL_S
from gputui.config.ranges import HostRangeError, expand_hosts, fold_hosts
from gputui.config.schema import (
    DEFAULT_BACKEND,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_GROUP,
    DEFAULT_KEEPALIVE_COUNT_MAX,
    DEFAULT_KEEPALIVE_INTERVAL_S,
    DEFAULT_KILL_GRACE_S,
    DEFAULT_KNOWN_HOSTS,
    DEFAULT_MAX_HANDSHAKES,
    DEFAULT_MAX_QUERIES,
    DEFAULT_PROM_TIMEOUT_S,
    DEFAULT_PYTHON,
    DEFAULT_SCHEDULER_PERIOD_S,
    DEFAULT_SCRAPE_INTERVAL_S,
    DEFAULT_SLOW_EVERY,
    Backend,
    SeriesKind,
)
from gputui.config.ui import UiSettings
from gputui.core.health import Thresholds
from gputui.core.risk import RiskSettings
from gputui.core.rollup import RollupRetention

Transport = Literal["ssh", "local"]

#: The one name collected through a local subprocess instead of SSH.
LOCAL_HOST = "localhost"


def transport_for(name: str) -> Transport:
    """ "local" for `localhost` (no sshd needed on the operator's own machine), else "ssh".

    Only the literal alias counts: to reach this machine through sshd, as tests of the SSH path
    do, give it another alias in ~/.ssh/config (Host loop / HostName 127.0.0.1).
    """
    return "local" if name == LOCAL_HOST else "ssh"


class HostSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One host to monitor, with the settings of its group already applied."""

    name: str  # the alias as written/expanded; ~/.ssh/config resolves HostName, User, Port...
    group: str = DEFAULT_GROUP
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    interval_s: float = DEFAULT_INTERVAL_S
    slow_every: int = DEFAULT_SLOW_EVERY
    backend: Backend = DEFAULT_BACKEND
    scenario: str | None = None  # set exactly when backend == "sim"
    python: str = DEFAULT_PYTHON
    transport: Transport = "ssh"
    spare: bool = False  # monitored like the others, flagged as the group's spare capacity


class HostGroup(msgspec.Struct, frozen=True, kw_only=True):
    """A `[groups.NAME]` table after expansion (or "default" for top-level `hosts`)."""

    name: str
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    hosts: tuple[str, ...] = ()  # in service, in file order
    spares: tuple[str, ...] = ()

    @property
    def members(self) -> tuple[str, ...]:
        """Every host of the group, spares last."""
        return self.hosts + self.spares


def _default_known_hosts() -> Path:
    return Path(DEFAULT_KNOWN_HOSTS).expanduser()


class SshSettings(msgspec.Struct, frozen=True, kw_only=True):
    """`[ssh]` with paths expanded: the options the collector passes to asyncssh.

    Per-host settings (HostName, User, Port, IdentityFile, ProxyJump) are not here: they come
    from `config_files`, the user's own ssh_config, exactly as `ssh ALIAS` would read them.
    """

    config_files: tuple[Path, ...] = ()  # ssh_config files, read in order
    known_hosts: Path = msgspec.field(default_factory=_default_known_hosts)  # may not exist yet
    identity_files: tuple[Path, ...] = ()  # extra keys; the agent and ssh_config's still apply
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    keepalive_interval_s: float = DEFAULT_KEEPALIVE_INTERVAL_S  # 0 turns keepalives off
    keepalive_count_max: int = DEFAULT_KEEPALIVE_COUNT_MAX
    max_handshakes: int = DEFAULT_MAX_HANDSHAKES  # concurrent SSH handshakes, fleet-wide
    strict_host_keys: bool = True  # unknown or changed host keys are refused


class PromSettings(msgspec.Struct, frozen=True, kw_only=True):
    """`[source] kind = "prometheus"`: how the fleet is read from a Prometheus HTTP API.

    Secrets are named by file and read when a query goes out (a rotated token is picked up),
    never held in the file itself or on the command line."""

    url: str  # the API's base, e.g. http://prometheus:9090 (no /api/v1)
    basic_auth_user: str | None = None
    basic_auth_password_file: Path | None = None
    bearer_token_file: Path | None = None
    ca_file: Path | None = None
    insecure_skip_verify: bool = False
    timeout_s: float = DEFAULT_PROM_TIMEOUT_S
    series: SeriesKind = "auto"
    selector: str | None = None  # PromQL label matchers, added to every query
    scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S
    query_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S
    max_concurrent_queries: int = DEFAULT_MAX_QUERIES
    # The hosts the file lists: only these are read. False: the hosts are the ones Prometheus
    # has series of (discovered when the monitor starts).
    listed_hosts: bool = True


class Config(msgspec.Struct, frozen=True, kw_only=True):
    """A loaded hosts file."""

    path: Path
    hosts: list[HostSpec]  # file order: groups in order, each group's hosts then its spares
    groups: dict[str, HostGroup]  # file order
    ssh: SshSettings = msgspec.field(default_factory=SshSettings)
    thresholds: Thresholds = msgspec.field(default_factory=Thresholds)
    risk: RiskSettings = msgspec.field(default_factory=RiskSettings)
    ui: UiSettings = msgspec.field(default_factory=UiSettings)  # [ui]: how the monitor opens
    actions: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)  # [actions.NAME], raw
    action_presets: tuple[str, ...] = ()  # [actions] presets = [...]
    journal_path: Path | None = None  # [journal] path; None: the default location
    # [journal] rollup_5m_days, rollup_daily_days: how long the per-GPU rollups are kept
    rollup_retention: RollupRetention = msgspec.field(default_factory=RollupRetention)
    # [scheduler] period_s: the scheduler's job list is read at most this often; 0: never.
    scheduler_period_s: float = DEFAULT_SCHEDULER_PERIOD_S
    # readonly = true (or --readonly): watch only. OperatorActions refuses every request to
    # mark, resume or act on a node or process, wherever it comes from (CLI or TUI).
    readonly: bool = False
    # kill_grace_s: a GPU process killed from the process table gets this long between
    # SIGTERM and SIGKILL (gputui/ops/kill.py).
    kill_grace_s: float = DEFAULT_KILL_GRACE_S
    # [source] kind = "prometheus": every host is read from Prometheus; None: over SSH.
    prometheus: PromSettings | None = None
    # [collector] workers: "auto", or how many worker processes read the hosts' streams (0: this
    # process); gputui/collect/workers/count.py decides what "auto" means for the fleet.
    workers: int | Literal["auto"] = "auto"

    def host(self, name: str) -> HostSpec:
        """The host called `name`; KeyError when there is none."""
        for spec in self.hosts:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def select(self, targets: Sequence[str]) -> list[HostSpec]:
        """The hosts named by `targets`, in file order, each once.

        A target is a group name (`train`, or `@train` as ClusterShell writes groups, spares
        included), a host alias (`gpu007`) or a host range (`gpu[001-004]`, `a,b`). Raises
        ConfigError naming the target when it is neither a group nor made only of known hosts:
        a typo must never select fewer hosts than the operator meant.
        """
        known = {spec.name for spec in self.hosts}
        wanted: set[str] = set()
        for target in targets:
            text = target.strip()
            group = text[1:] if text.startswith("@") else text
            if group in self.groups:
                wanted.update(self.groups[group].members)
                continue
            if text.startswith("@"):
                raise self._unknown(target, f"no group named {json.dumps(group)}", group)
            try:
                names = expand_hosts(text, allow_duplicates=True)
            except HostRangeError as exc:
                raise ConfigError(
                    f"target {json.dumps(target)} is not a host range: {exc}"
                ) from None
            unknown = [n for n in names if n not in known]
            if unknown:
                what = "host" if len(unknown) == 1 else "hosts"
                raise self._unknown(target, f"no {what} {fold_hosts(unknown)}", unknown[0])
            wanted.update(names)
        return [spec for spec in self.hosts if spec.name in wanted]

    def _unknown(self, target: str, problem: str, name: str) -> ConfigError:
        choices = [*self.groups, *(spec.name for spec in self.hosts)]
        groups = _clip(", ".join(self.groups))
        hosts = _clip(fold_hosts([spec.name for spec in self.hosts]))
        return ConfigError(
            f"unknown target {json.dumps(target)}{did_you_mean(name, choices)}: {problem} in "
            f"{self.path} (groups: {groups}; hosts: {hosts})"
        )


def _clip(text: str, width: int = 120) -> str:
    # A fleet of irregular names folds badly; the message stays one readable paragraph.
    return text if len(text) <= width else text[: width - 3] + "..."
