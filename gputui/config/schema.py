"""The hosts.toml file as written: msgspec structs that mirror its tables one to one.

These are the *file's* types. load.py turns them into the types the rest of gputui uses
(HostSpec, SshSettings, Config in model.py), after checks that span several keys.

Every struct forbids unknown fields so that a typo (`intervall = 2`) is an error that names the
key instead of a setting silently left at its default. Every field's `description` is the
"expected ..." phrase of its error message (errors.py reads it back through msgspec.inspect).
Tables whose keys are names chosen by the user (groups, labels, actions) are plain dicts here
and are converted one entry at a time, because msgspec paths do not name dict keys.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from gputui.config.interval import DEFAULT_INTERVAL_S, INTERVAL_EXPECTED, MAX_INTERVAL_S
from gputui.core.rollup import RollupRetention

Backend = Literal["auto", "nvml", "smi", "sim"]
BACKENDS: tuple[Backend, ...] = ("auto", "nvml", "smi", "sim")

DEFAULT_SLOW_EVERY = 10
DEFAULT_BACKEND: Backend = "auto"
DEFAULT_PYTHON = "python3"
DEFAULT_SIM_SCENARIO = "healthy"
DEFAULT_GROUP = "default"

DEFAULT_SSH_CONFIG = "~/.ssh/config"
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
DEFAULT_CONNECT_TIMEOUT_S = 10.0
# Seconds a GPU process killed from the process table has between SIGTERM and SIGKILL.
DEFAULT_KILL_GRACE_S = 10.0
DEFAULT_KEEPALIVE_INTERVAL_S = 5.0
DEFAULT_KEEPALIVE_COUNT_MAX = 3
DEFAULT_MAX_HANDSHAKES = 64
DEFAULT_ROLLUP_RETENTION = RollupRetention()

#: How often, at most, the scheduler's job list is read for the whole fleet (`squeue --json`).
DEFAULT_SCHEDULER_PERIOD_S = 60.0
#: The shortest period accepted (0 aside, which turns the reading off): one `squeue --json` is
#: one RPC that walks every job in slurmctld, and a monitor must not become its busiest client.
MIN_SCHEDULER_PERIOD_S = 10.0
SCHEDULER_PERIOD_EXPECTED = "a number of seconds: 0 (never read the scheduler) or 10 to 86400"

Interval = Annotated[
    float,
    msgspec.Meta(gt=0, le=MAX_INTERVAL_S, description=INTERVAL_EXPECTED),
]
SlowEvery = Annotated[int, msgspec.Meta(ge=1, description="a whole number of samples >= 1")]
BackendField = Annotated[Backend, msgspec.Meta(description='one of "auto", "nvml", "smi", "sim"')]
Scenario = Annotated[
    str, msgspec.Meta(min_length=1, description='a simulator scenario name such as "demo"')
]
Python = Annotated[
    str, msgspec.Meta(min_length=1, description='the python command on the host, e.g. "python3"')
]
HostEntry = Annotated[
    str, msgspec.Meta(description='a host name or range (a string), e.g. "gpu[001-128]"')
]
HostList = Annotated[
    list[HostEntry],
    msgspec.Meta(description='an array of host names or ranges, e.g. ["gpu[001-128]", "dgx-a"]'),
]
PathField = Annotated[str, msgspec.Meta(min_length=1, description="a file path (a string)")]
PathList = Annotated[list[PathField], msgspec.Meta(description="an array of file paths")]


class DefaultsTable(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`[defaults]`: what every group gets unless it says otherwise."""

    interval: Interval = DEFAULT_INTERVAL_S
    slow_every: SlowEvery = DEFAULT_SLOW_EVERY
    backend: BackendField = DEFAULT_BACKEND
    python: Python = DEFAULT_PYTHON
    scenario: Scenario | None = None


class GroupTable(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`[groups.NAME]`: hosts, spares, labels and per-group overrides (None: use [defaults])."""

    hosts: HostList = msgspec.field(default_factory=list)
    spares: HostList = msgspec.field(default_factory=list)
    labels: Annotated[
        dict[str, Any], msgspec.Meta(description='a table of labels, e.g. { rack = "r12" }')
    ] = msgspec.field(default_factory=dict)
    interval: Interval | None = None
    slow_every: SlowEvery | None = None
    backend: BackendField | None = None
    scenario: Scenario | None = None
    python: Python | None = None


class SshTable(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`[ssh]`: how the collector connects. Per-host settings belong in ~/.ssh/config."""

    config_files: PathList | None = None  # None: ~/.ssh/config when it exists
    known_hosts: PathField = DEFAULT_KNOWN_HOSTS
    identity_files: PathList = msgspec.field(default_factory=list)
    connect_timeout_s: Annotated[
        float, msgspec.Meta(gt=0, le=600, description="a number of seconds > 0 and <= 600")
    ] = DEFAULT_CONNECT_TIMEOUT_S
    keepalive_interval_s: Annotated[
        float,
        msgspec.Meta(ge=0, le=3600, description="a number of seconds >= 0 and <= 3600 (0: off)"),
    ] = DEFAULT_KEEPALIVE_INTERVAL_S
    keepalive_count_max: Annotated[int, msgspec.Meta(ge=1, description="a whole number >= 1")] = (
        DEFAULT_KEEPALIVE_COUNT_MAX
    )
    max_handshakes: Annotated[
        int, msgspec.Meta(ge=1, description="a whole number of connections >= 1")
    ] = DEFAULT_MAX_HANDSHAKES
    strict_host_keys: Annotated[bool, msgspec.Meta(description="true or false")] = True


_Table = Annotated[dict[str, Any], msgspec.Meta(description="a table")]

SourceKind = Literal["ssh", "prometheus"]
SeriesKind = Literal["dcgm", "gputui", "auto"]
DEFAULT_PROM_TIMEOUT_S = 10.0
# dcgm-exporter collects every 30 s by default; a Prometheus scraping it faster sees the same
# values again, so 30 s is also the query period unless the file says otherwise.
DEFAULT_SCRAPE_INTERVAL_S = 30.0
DEFAULT_MAX_QUERIES = 8
Seconds = Annotated[
    float, msgspec.Meta(gt=0, le=3600, description="a number of seconds > 0 and <= 3600")
]


class SourceTable(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`[source]`: where readings come from. SSH (the default) runs the agent on every host;
    "prometheus" reads the fleet from a Prometheus HTTP API (docs/prometheus.md)."""

    kind: Annotated[SourceKind, msgspec.Meta(description='"ssh" or "prometheus"')] = "ssh"
    url: Annotated[
        str, msgspec.Meta(min_length=1, description='a URL such as "http://prometheus:9090"')
    ] = ""
    basic_auth_user: (
        Annotated[str, msgspec.Meta(min_length=1, description="a user name")] | None
    ) = None
    basic_auth_password_file: PathField | None = None
    bearer_token_file: PathField | None = None
    ca_file: PathField | None = None
    insecure_skip_verify: Annotated[bool, msgspec.Meta(description="true or false")] = False
    timeout_s: Annotated[
        float, msgspec.Meta(gt=0, le=300, description="a number of seconds > 0 and <= 300")
    ] = DEFAULT_PROM_TIMEOUT_S
    series: Annotated[SeriesKind, msgspec.Meta(description='one of "dcgm", "gputui", "auto"')] = (
        "auto"
    )
    selector: (
        Annotated[
            str,
            msgspec.Meta(
                min_length=1,
                description="PromQL label matchers without braces, e.g. 'cluster=\"a\"'",
            ),
        ]
        | None
    ) = None
    scrape_interval_s: Seconds = DEFAULT_SCRAPE_INTERVAL_S
    query_interval_s: Seconds | None = None  # None: the scrape interval
    max_concurrent_queries: Annotated[
        int, msgspec.Meta(ge=1, le=64, description="a whole number from 1 to 64")
    ] = DEFAULT_MAX_QUERIES


class JournalTable(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`[journal]`: where the operator journal lives (default: the user state dir), and how
    long it keeps the per-GPU rollups that prevention reads (docs/prevention.md)."""

    path: PathField | None = None
    rollup_5m_days: Annotated[int, msgspec.Meta(ge=1, le=366)] = (
        DEFAULT_ROLLUP_RETENTION.five_minute_days
    )
    rollup_daily_days: Annotated[int, msgspec.Meta(ge=1, le=3660)] = (
        DEFAULT_ROLLUP_RETENTION.daily_days
    )


class SchedulerTable(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`[scheduler]`: how often the scheduler's job list names the jobs seen on the GPUs."""

    period_s: Annotated[
        float, msgspec.Meta(ge=0, le=86_400, description=SCHEDULER_PERIOD_EXPECTED)
    ] = DEFAULT_SCHEDULER_PERIOD_S


WORKERS_EXPECTED = '"auto" or a number of worker processes from 0 (collect in this process) to 1024'
Workers = Annotated[int, msgspec.Meta(ge=0, le=1024, description=WORKERS_EXPECTED)]


class CollectorTable(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`[collector]`: where the hosts' streams are read (docs/configuration.md)."""

    workers: Annotated[Workers | Literal["auto"], msgspec.Meta(description=WORKERS_EXPECTED)] = (
        "auto"
    )


class HostsFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The whole file."""

    hosts: HostList = msgspec.field(default_factory=list)  # the simple case: group "default"
    # Watch only: every request to mark, resume or act on a node or process is refused.
    readonly: Annotated[bool, msgspec.Meta(description="true or false")] = False
    kill_grace_s: Annotated[
        float, msgspec.Meta(gt=0, le=3600, description="a number of seconds > 0 and <= 3600")
    ] = DEFAULT_KILL_GRACE_S
    defaults: Annotated[DefaultsTable, msgspec.Meta(description="a table [defaults]")] = (
        msgspec.field(default_factory=DefaultsTable)
    )
    ssh: Annotated[SshTable, msgspec.Meta(description="a table [ssh]")] = msgspec.field(
        default_factory=SshTable
    )
    groups: Annotated[dict[str, Any], msgspec.Meta(description="tables [groups.NAME]")] = (
        msgspec.field(default_factory=dict)
    )
    thresholds: _Table = msgspec.field(default_factory=dict)
    risk: _Table = msgspec.field(default_factory=dict)
    ui: _Table = msgspec.field(default_factory=dict)  # config/ui.py
    actions: Annotated[dict[str, Any], msgspec.Meta(description="tables [actions.NAME]")] = (
        msgspec.field(default_factory=dict)
    )
    journal: Annotated[JournalTable, msgspec.Meta(description="a table [journal]")] = msgspec.field(
        default_factory=JournalTable
    )
    scheduler: Annotated[SchedulerTable, msgspec.Meta(description="a table [scheduler]")] = (
        msgspec.field(default_factory=SchedulerTable)
    )
    source: Annotated[SourceTable, msgspec.Meta(description="a table [source]")] = msgspec.field(
        default_factory=SourceTable
    )
    collector: Annotated[CollectorTable, msgspec.Meta(description="a table [collector]")] = (
        msgspec.field(default_factory=CollectorTable)
    )
