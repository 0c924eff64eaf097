"""Find, read and check a hosts file: hosts.toml -> Config.

Reading happens in three passes, each with errors that name the key path:
1. TOML syntax (tomllib), with the line and column;
2. shapes and ranges of values (msgspec, against schema.py), one user-named table at a time;
3. what spans keys: host ranges, a host in two places, scenario vs backend, paths that exist.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from shlex import quote
from typing import Any, TypeVar

import msgspec
import platformdirs

from gputui.config.errors import (
    ConfigError,
    from_toml_error,
    from_validation_error,
    join_key,
    show_value,
)
from gputui.config.model import (
    Config,
    HostGroup,
    HostSpec,
    PromSettings,
    SshSettings,
    transport_for,
)
from gputui.config.ranges import MAX_HOSTS, HostRangeError, expand_hosts
from gputui.config.schema import (
    DEFAULT_GROUP,
    DEFAULT_SIM_SCENARIO,
    DEFAULT_SSH_CONFIG,
    MIN_SCHEDULER_PERIOD_S,
    SCHEDULER_PERIOD_EXPECTED,
    DefaultsTable,
    GroupTable,
    HostsFile,
    SourceTable,
    SshTable,
)
from gputui.config.source import selector_problem, url_problem
from gputui.config.ui import UiSettings
from gputui.core.health import Thresholds
from gputui.core.risk import RiskSettings
from gputui.core.rollup import RollupRetention

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML with the tomli backport
    import tomli as tomllib

#: The environment variable naming the hosts file when --hosts is not given.
HOSTS_ENV = "GPUTUI_HOSTS"
HOSTS_FILE_NAME = "hosts.toml"

T = TypeVar("T")

# Group names are also `gputui triage` targets and ClusterShell-style `@group` references, so
# they are kept to characters that cannot be mistaken for a host range.
_GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def default_hosts_path() -> Path:
    """The hosts file in the user's config dir (~/.config/gputui/hosts.toml on Linux)."""
    return platformdirs.user_config_path("gputui", appauthor=False) / HOSTS_FILE_NAME


def chosen_hosts_path(
    cli_path: Path | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Path, str]:
    """Where the hosts file is, whether or not it exists: `--hosts PATH`, else $GPUTUI_HOSTS,
    else the user config dir; and which of them chose it, in words. `gputui init` writes there.
    """
    env = os.environ if environ is None else environ
    if cli_path is not None:
        path, origin = cli_path, "given with --hosts"
    elif env.get(HOSTS_ENV):
        path, origin = Path(env[HOSTS_ENV]), f"named by ${HOSTS_ENV}"
    else:
        path = default_hosts_path()
        origin = f"the default location; --hosts PATH or ${HOSTS_ENV} choose another"
    return path.expanduser(), origin


def resolve_hosts_path(
    cli_path: Path | None = None, environ: Mapping[str, str] | None = None
) -> Path:
    """The hosts file to use: `--hosts PATH`, else $GPUTUI_HOSTS, else the user config dir.

    Raises ConfigError, saying where it looked and how to start, when that file does not exist.
    """
    path, origin = chosen_hosts_path(cli_path, environ)
    if not path.is_file():
        problem = "is not a file" if path.exists() else "does not exist"
        # `gputui init` writes the packaged starter there (it reads $GPUTUI_HOSTS as this
        # does); the example file of the sources is nowhere a pip user can find it.
        write = "gputui init" if cli_path is None else f"gputui init --hosts {quote(str(path))}"
        raise ConfigError(
            f"no hosts file: {path} ({origin}) {problem}. To start, `{write}` writes a starter "
            "file there to list your hosts in (docs/configuration.md describes every key), or "
            "try `gputui demo`, a simulated fleet that needs no hosts file"
        )
    return path


def load_config(path: Path | str) -> Config:
    """Read and check the hosts file at `path`. Raises ConfigError, never anything else."""
    path = Path(path)
    source = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("the file does not exist", source=source) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a hosts file", source=source) from None
    except OSError as exc:
        raise ConfigError(f"cannot be read: {exc.strerror or exc}", source=source) from None
    try:
        # utf-8-sig: Windows editors start files with a byte-order mark, which TOML forbids.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not valid TOML: the file is not UTF-8 text (byte {exc.start})", source=source
        ) from None
    return config_from_text(text, source, base_dir=path.parent)


def config_from_text(
    text: str, source_name: str = HOSTS_FILE_NAME, base_dir: Path | None = None
) -> Config:
    """Check hosts.toml content `text`; `source_name` is the file named in error messages.

    Relative paths in the file are taken relative to `base_dir` (the file's directory;
    the current directory when None).
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise from_toml_error(exc, text, source_name) from None
    return _Builder(raw, source_name, base_dir or Path()).build()


class _Builder:
    """One pass over a parsed file; holds what errors need (the source, the raw tables)."""

    def __init__(self, raw: dict[str, Any], source: str, base_dir: Path) -> None:
        self.raw = raw
        self.source = source
        self.base_dir = base_dir
        # host name -> (key path, entry as written) of where it was first listed
        self.placed: dict[str, tuple[str, str]] = {}

    def error(self, detail: str, key: str | None = None) -> ConfigError:
        return ConfigError(detail, source=self.source, key=key)

    def convert(self, raw: Any, schema: type[T], prefix: str) -> T:
        try:
            return msgspec.convert(raw, schema)
        except msgspec.ValidationError as exc:
            raise from_validation_error(exc, raw, schema, self.source, prefix) from None

    def build(self) -> Config:
        top = self.convert(self.raw, HostsFile, "")
        defaults = top.defaults
        if defaults.scenario is not None and defaults.backend != "sim":
            raise self._scenario_error("defaults", defaults.backend, "defaults.backend")

        tables: list[tuple[str, str, GroupTable]] = []  # (name, key prefix, table)
        if top.hosts:
            if DEFAULT_GROUP in top.groups:
                raise self.error(
                    f'top-level hosts form the group "{DEFAULT_GROUP}", and a '
                    f"[groups.{DEFAULT_GROUP}] table exists too; move these hosts into it",
                    "hosts",
                )
            tables.append((DEFAULT_GROUP, "", GroupTable(hosts=top.hosts)))
        for name, table in top.groups.items():
            prefix = join_key("groups", name)
            if not _GROUP_NAME.match(name):
                raise self.error(
                    "a group name uses letters, digits, '_', '.' and '-', and starts with a "
                    f"letter or digit; got {json.dumps(name)}",
                    prefix,
                )
            if not isinstance(table, dict):
                raise self.error(
                    f"expected a table [{prefix}] with hosts = [...], got {show_value(table)}",
                    prefix,
                )
            tables.append((name, prefix, self.convert(table, GroupTable, prefix)))

        hosts: list[HostSpec] = []
        groups: dict[str, HostGroup] = {}
        for name, prefix, table in tables:
            group, specs = self._group(name, prefix, table, defaults)
            groups[name] = group
            hosts.extend(specs)
        prometheus = self._source(top.source, listed=bool(hosts))
        if not hosts and prometheus is None:
            raise self.error(
                "no hosts configured: list them in hosts = [...] at the top of the file, or in "
                "[groups.NAME] tables (see hosts.example.toml)"
            )
        for name in groups:
            if name in self.placed:
                where, _ = self.placed[name]
                raise self.error(
                    f'group "{name}" has the same name as a host (at {where}); rename the group '
                    "so that a target such as `gputui triage NAME` has one meaning",
                    join_key("groups", name),
                )

        presets, actions = self._actions(top.actions)
        period = top.scheduler.period_s
        if 0 < period < MIN_SCHEDULER_PERIOD_S:
            raise self.error(
                f"expected {SCHEDULER_PERIOD_EXPECTED}, got {show_value(period)}",
                "scheduler.period_s",
            )
        return Config(
            path=Path(self.source),
            hosts=hosts,
            groups=groups,
            ssh=self._ssh(top.ssh),
            thresholds=self.convert(top.thresholds, Thresholds, "thresholds"),
            risk=self.convert(top.risk, RiskSettings, "risk"),
            ui=self.convert(top.ui, UiSettings, "ui"),
            actions=actions,
            action_presets=presets,
            journal_path=self._path(top.journal.path) if top.journal.path else None,
            rollup_retention=RollupRetention(
                five_minute_days=top.journal.rollup_5m_days,
                daily_days=top.journal.rollup_daily_days,
            ),
            scheduler_period_s=period,
            readonly=top.readonly,
            kill_grace_s=top.kill_grace_s,
            prometheus=prometheus,
            workers=top.collector.workers,
        )

    def _source(self, table: SourceTable, listed: bool) -> PromSettings | None:
        """`[source]`: None for SSH; the Prometheus settings, checked, for "prometheus"."""
        if table.kind == "ssh":
            given = [
                f
                for f in table.__struct_fields__
                if f != "kind" and f in self.raw.get("source", {})
            ]
            if given:
                raise self.error(
                    f'{given[0]} is only read when kind = "prometheus" (the source is "ssh"); '
                    'remove it or set kind = "prometheus"',
                    join_key("source", given[0]),
                )
            return None
        url = table.url
        problem = url_problem(url)
        if problem is not None:
            raise self.error(problem, "source.url")
        if (table.basic_auth_user is None) != (table.basic_auth_password_file is None):
            missing = (
                "basic_auth_password_file"
                if table.basic_auth_password_file is None
                else ("basic_auth_user")
            )
            raise self.error(
                "basic auth needs both basic_auth_user and basic_auth_password_file; "
                f"{missing} is missing",
                join_key("source", missing),
            )
        if table.basic_auth_user is not None and table.bearer_token_file is not None:
            raise self.error(
                "choose basic auth or a bearer token, not both", "source.bearer_token_file"
            )
        if table.selector is not None:
            problem = selector_problem(table.selector)
            if problem is not None:
                raise self.error(problem, "source.selector")

        def file(key: str, value: str | None) -> Path | None:
            if value is None:
                return None
            path = self._path(value)
            if not path.is_file():
                raise self.error(f"file not found: {path}", join_key("source", key))
            return path

        return PromSettings(
            url=url.rstrip("/"),
            basic_auth_user=table.basic_auth_user,
            basic_auth_password_file=file(
                "basic_auth_password_file", table.basic_auth_password_file
            ),
            bearer_token_file=file("bearer_token_file", table.bearer_token_file),
            ca_file=file("ca_file", table.ca_file),
            insecure_skip_verify=table.insecure_skip_verify,
            timeout_s=table.timeout_s,
            series=table.series,
            selector=table.selector,
            scrape_interval_s=table.scrape_interval_s,
            query_interval_s=table.query_interval_s or table.scrape_interval_s,
            max_concurrent_queries=table.max_concurrent_queries,
            listed_hosts=listed,
        )

    def _scenario_error(self, prefix: str, backend: str, backend_key: str) -> ConfigError:
        return self.error(
            f'a scenario is only read by the "sim" backend, and {backend_key} is '
            f'{json.dumps(backend)}; remove the scenario or set backend = "sim"',
            f"{prefix}.scenario",
        )

    def _group(
        self, name: str, prefix: str, table: GroupTable, defaults: DefaultsTable
    ) -> tuple[HostGroup, list[HostSpec]]:
        labels = self._labels(table.labels, join_key(prefix, "labels"))
        backend = table.backend or defaults.backend
        if table.scenario is not None and backend != "sim":
            backend_key = join_key(prefix, "backend") if table.backend else "defaults.backend"
            raise self._scenario_error(prefix, backend, backend_key)
        scenario: str | None = None
        if backend == "sim":
            # A group that chose another backend does not inherit the defaults' scenario;
            # one that is sim and names none gets the steady "healthy" fleet.
            scenario = table.scenario or defaults.scenario or DEFAULT_SIM_SCENARIO

        hosts_key = join_key(prefix, "hosts")
        in_service = self._expand(table.hosts, hosts_key)
        spares = self._expand(table.spares, join_key(prefix, "spares"))
        if not in_service and not spares:
            raise self.error(
                f"group has no hosts; add hosts = [...] or remove [{prefix}]", prefix or None
            )
        group = HostGroup(name=name, labels=labels, hosts=tuple(in_service), spares=tuple(spares))
        specs = [
            HostSpec(
                name=host,
                group=name,
                labels=dict(labels),  # each its own: no host can change another's
                interval_s=table.interval or defaults.interval,
                slow_every=table.slow_every or defaults.slow_every,
                backend=backend,
                scenario=scenario,
                python=table.python or defaults.python,
                transport=transport_for(host),
                spare=spare,
            )
            for names, spare in ((in_service, False), (spares, True))
            for host in names
        ]
        return group, specs

    def _expand(self, entries: list[str], key: str) -> list[str]:
        names: list[str] = []
        for i, entry in enumerate(entries):
            where = f"{key}[{i}]"
            try:
                expanded = expand_hosts(entry, MAX_HOSTS)
            except HostRangeError as exc:
                raise self.error(f"cannot use {json.dumps(entry)}: {exc}", where) from None
            if len(self.placed) + len(expanded) > MAX_HOSTS:
                raise self.error(
                    f"{json.dumps(entry)} brings the file past {MAX_HOSTS} hosts, the most gputui "
                    "watches",
                    where,
                )
            for host in expanded:
                if host in self.placed:
                    first, first_entry = self.placed[host]
                    raise self.error(
                        f"{host} is listed twice: at {first} ({json.dumps(first_entry)}) and "
                        f"here ({json.dumps(entry)}); a host belongs to one group, once",
                        where,
                    )
                self.placed[host] = (where, entry)
            names.extend(expanded)
        return names

    def _labels(self, raw: dict[str, Any], prefix: str) -> dict[str, str]:
        labels: dict[str, str] = {}
        for key, value in raw.items():
            # rack = 12 is as natural as rack = "12"; both are the label "12".
            if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
                labels[key] = str(value)
            else:
                raise self.error(
                    f"expected a string (or a whole number), got {show_value(value)}",
                    join_key(prefix, key),
                )
        return labels

    def _path(self, text: str) -> Path:
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def _existing_files(self, paths: list[str], key: str) -> tuple[Path, ...]:
        out: list[Path] = []
        for i, text in enumerate(paths):
            path = self._path(text)
            if not path.is_file():
                raise self.error(f"file not found: {path}", f"{key}[{i}]")
            out.append(path)
        return tuple(out)

    def _ssh(self, table: SshTable) -> SshSettings:
        if table.config_files is None:
            default = Path(DEFAULT_SSH_CONFIG).expanduser()
            config_files: tuple[Path, ...] = (default,) if default.is_file() else ()
        else:
            config_files = self._existing_files(table.config_files, "ssh.config_files")
        return SshSettings(
            config_files=config_files,
            # Not required to exist: ssh creates it on first use, and a missing one only means
            # no key is known yet, which the collector reports per host with ssh-keyscan advice.
            known_hosts=self._path(table.known_hosts),
            identity_files=self._existing_files(table.identity_files, "ssh.identity_files"),
            connect_timeout_s=table.connect_timeout_s,
            keepalive_interval_s=table.keepalive_interval_s,
            keepalive_count_max=table.keepalive_count_max,
            max_handshakes=table.max_handshakes,
            strict_host_keys=table.strict_host_keys,
        )

    def _actions(self, raw: dict[str, Any]) -> tuple[tuple[str, ...], dict[str, dict[str, Any]]]:
        """`[actions] presets = [...]` and the `[actions.NAME]` tables, kept raw.

        The actions module checks the tables' contents (argv templates, where, timeout); here
        only their shape is checked, so that the error still names this file.
        """
        presets: tuple[str, ...] = ()
        actions: dict[str, dict[str, Any]] = {}
        for name, value in raw.items():
            key = join_key("actions", name)
            if name == "presets":
                if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                    raise self.error(
                        f'expected an array of preset names such as ["slurm"], got '
                        f"{show_value(value)}",
                        key,
                    )
                presets = tuple(value)
            elif isinstance(value, dict):
                actions[name] = value
            else:
                raise self.error(
                    f"expected a table [{key}] with argv = [...], got {show_value(value)}", key
                )
        return presets, actions
