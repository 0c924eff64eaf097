"""hosts.toml: what a good file means, and what a bad one is told."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from gputui import agent
from gputui.config import (
    DEFAULT_INTERVAL_S,
    HOSTS_ENV,
    Config,
    ConfigError,
    HostSpec,
    config_from_text,
    default_hosts_path,
    interval_problem,
    load_config,
    resolve_hosts_path,
)
from gputui.core.health import Thresholds
from gputui.core.risk import HazardMultipliers, RiskSettings

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "hosts.example.toml"


def load(text: str) -> Config:
    return config_from_text(textwrap.dedent(text))


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(text)
    message = str(info.value)
    assert "\n" not in message  # one paragraph, printed as is by the CLI
    return message


# --------------------------------------------------------------------------------------------
# What a good file means
# --------------------------------------------------------------------------------------------


def test_the_example_file_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.path == EXAMPLE
    assert list(config.groups) == ["default", "train", "infer", "lab"]
    train = config.groups["train"]
    assert len(train.hosts) == 32 + 16 and train.spares == ("gpu033", "gpu034")
    assert train.labels == {"cluster": "prod", "partition": "train", "rack": "r12"}
    assert config.host("inf03").interval_s == 2.0
    assert config.host("sim2").scenario == "demo"
    assert config.actions["custom"]["argv"] == ["/usr/local/bin/notify", "{node}", "{reason}"]
    assert config.action_presets == ()
    assert config.thresholds == Thresholds()  # the example shows the defaults
    assert config.risk == RiskSettings()


def test_the_example_shows_every_key_with_a_comment() -> None:
    from gputui.config.schema import DefaultsTable, GroupTable, SourceTable, SshTable

    text = EXAMPLE.read_text()
    for table in (DefaultsTable, GroupTable, SshTable, SourceTable):
        for field in table.__struct_fields__:
            line = next((ln for ln in text.splitlines() if re.match(rf"#?\s*{field}\b", ln)), None)
            assert line is not None, f"{table.__name__}.{field} is not in hosts.example.toml"
    assert re.search(r"^# presets = \[\"slurm\"\]", text, re.MULTILINE)


def test_the_docs_describe_every_key() -> None:
    from gputui.config.schema import DefaultsTable, GroupTable, HostsFile, SourceTable, SshTable

    doc = (REPO / "docs" / "configuration.md").read_text()
    tables = (HostsFile, DefaultsTable, GroupTable, SshTable, SourceTable, Thresholds, RiskSettings)
    for table in tables:
        for field in table.__struct_fields__:
            documented = (
                re.search(rf"\| `(\[\w+\.)?\[?{field}\]?` \|", doc) or f"`[{field}]`" in doc
            )
            assert documented, f"{table.__name__}.{field} is not in docs/configuration.md"


def test_simple_hosts_form_the_default_group_with_default_settings() -> None:
    config = load('hosts = ["dgx-a", "gpu[01-02]"]')
    assert [h.name for h in config.hosts] == ["dgx-a", "gpu01", "gpu02"]
    assert config.hosts[0] == HostSpec(name="dgx-a")  # every default, group "default"
    assert config.groups["default"].hosts == ("dgx-a", "gpu01", "gpu02")


def test_readonly_is_off_unless_the_file_says_so() -> None:
    assert load('hosts = ["a"]').readonly is False
    assert load('hosts = ["a"]\nreadonly = true').readonly is True
    assert error_of('hosts = ["a"]\nreadonly = "yes"') == (
        'hosts.toml: readonly: expected true or false, got "yes"'
    )


def test_hosts_keep_file_order_and_group_settings_apply() -> None:
    config = load(
        """
        [defaults]
        interval = 2
        python = "/usr/bin/python3.8"

        [groups.b]
        hosts = ["b2", "b1"]
        spares = ["b9"]
        labels = { rack = 12, cluster = "c" }
        slow_every = 30

        [groups.a]
        hosts = ["a1"]
        interval = 0.5
        backend = "smi"
        """
    )
    assert [(h.name, h.group, h.spare) for h in config.hosts] == [
        ("b2", "b", False),
        ("b1", "b", False),
        ("b9", "b", True),
        ("a1", "a", False),
    ]
    b2, a1 = config.host("b2"), config.host("a1")
    assert (b2.interval_s, b2.slow_every, b2.python, b2.backend) == (
        2.0,
        30,
        "/usr/bin/python3.8",
        "auto",
    )
    assert b2.labels == {"rack": "12", "cluster": "c"}
    assert (a1.interval_s, a1.slow_every, a1.backend, a1.labels) == (0.5, 10, "smi", {})


def test_localhost_is_collected_without_ssh() -> None:
    config = load('hosts = ["localhost", "loop"]')
    assert [(h.name, h.transport) for h in config.hosts] == [
        ("localhost", "local"),
        ("loop", "ssh"),
    ]


def test_sim_backend_defaults_to_the_healthy_scenario() -> None:
    config = load(
        """
        [defaults]
        backend = "sim"
        scenario = "demo"
        [groups.a]
        hosts = ["a1"]
        [groups.b]
        hosts = ["b1"]
        scenario = "xid79"
        [groups.c]
        hosts = ["c1"]
        backend = "nvml"  # does not inherit the defaults' scenario
        [groups.d]
        hosts = ["d1"]
        """
    )
    assert [h.scenario for h in config.hosts] == ["demo", "xid79", None, "demo"]
    assert load('[groups.s]\nhosts = ["s1"]\nbackend = "sim"').hosts[0].scenario == "healthy"


def test_ssh_settings_expand_paths_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "id").write_text("key")
    (tmp_path / "ssh_config").write_text("Host *\n")
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(
        textwrap.dedent(
            """
            hosts = ["a"]
            [ssh]
            config_files = ["ssh_config"]
            known_hosts = "kh"
            identity_files = ["keys/id"]
            connect_timeout_s = 3
            keepalive_interval_s = 0
            max_handshakes = 8
            strict_host_keys = false
            """
        )
    )
    ssh = load_config(hosts).ssh
    assert ssh.config_files == (tmp_path / "ssh_config",)
    assert ssh.known_hosts == tmp_path / "kh"  # need not exist yet
    assert ssh.identity_files == (tmp_path / "keys" / "id",)
    assert (ssh.connect_timeout_s, ssh.keepalive_interval_s, ssh.keepalive_count_max) == (3, 0, 3)
    assert (ssh.max_handshakes, ssh.strict_host_keys) == (8, False)


def test_ssh_config_defaults_to_the_users_file_when_it_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load('hosts = ["a"]').ssh.config_files == ()
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text("Host a\n")
    ssh = load('hosts = ["a"]').ssh
    assert ssh.config_files == (tmp_path / ".ssh" / "config",)
    assert ssh.known_hosts == tmp_path / ".ssh" / "known_hosts"


def test_thresholds_risk_and_actions_are_carried() -> None:
    config = load(
        """
        hosts = ["a"]
        [thresholds]
        mem_used_warn_pct = 90
        [risk]
        window_hours = 48
        [risk.multipliers]
        warn = 3
        [actions]
        presets = ["slurm"]
        [actions.page]
        argv = ["pager", "{node}"]
        confirm = false
        """
    )
    assert config.action_presets == ("slurm",)
    assert config.actions == {"page": {"argv": ["pager", "{node}"], "confirm": False}}
    assert config.thresholds == Thresholds(mem_used_warn_pct=90)
    assert config.risk == RiskSettings(window_hours=48, multipliers=HazardMultipliers(warn=3))


# --------------------------------------------------------------------------------------------
# select(): targets for triage
# --------------------------------------------------------------------------------------------

FLEET = """
[groups.train]
hosts = ["gpu[001-004]"]
spares = ["gpu005"]
[groups.infer]
hosts = ["inf1", "inf2"]
"""


def names(specs: list[HostSpec]) -> list[str]:
    return [s.name for s in specs]


def test_select_by_alias_range_and_group() -> None:
    config = load(FLEET)
    assert names(config.select(["inf2"])) == ["inf2"]
    assert names(config.select(["gpu[002-003]"])) == ["gpu002", "gpu003"]
    assert names(config.select(["train"])) == ["gpu001", "gpu002", "gpu003", "gpu004", "gpu005"]
    assert names(config.select(["@infer"])) == ["inf1", "inf2"]
    # file order, each host once, however the targets overlap
    assert names(config.select(["inf1", "gpu004,gpu001", "gpu001"])) == ["gpu001", "gpu004", "inf1"]
    assert config.select([]) == []


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("infr1", 'unknown target "infr1" (did you mean "inf1"?): no host infr1 in hosts.toml'),
        ("gpu[004-006]", "no host gpu006"),
        ("gpu[001-009]", "no hosts gpu[006-009]"),
        ("trian", 'did you mean "train"?'),
        ("@nope", 'no group named "nope"'),
        ("gpu[3-1]", 'target "gpu[3-1]" is not a host range: not a valid host range'),
    ],
)
def test_select_refuses_an_unknown_target(target: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(FLEET).select(["inf1", target])
    assert message in str(info.value)
    assert "groups: train, infer" in str(info.value) or "not a host range" in str(info.value)


# --------------------------------------------------------------------------------------------
# What a bad file is told
# --------------------------------------------------------------------------------------------


def test_bad_toml_names_line_and_column() -> None:
    message = error_of(
        """\
        hosts = ["a"]
        [defaults]
        interval 2
        """
    )
    assert message == (
        "hosts.toml: line 3, column 10: not valid TOML: expected '=' after a key in a key/value "
        "pair; the line reads: interval 2"
    )


def test_unterminated_toml_points_at_the_end() -> None:
    assert "line 1 (end of file): not valid TOML: unterminated string" in error_of('hosts = ["a')


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # unknown keys, with the likely intended one
        (
            '[defaults]\nintervall = 2\n[groups.t]\nhosts = ["a"]',
            'hosts.toml: defaults.intervall: unknown key "intervall" (did you mean "interval"?); '
            "valid keys here: interval, slow_every, backend, python, scenario",
        ),
        (
            '[groups.train]\nhost = ["a"]',
            'groups.train.host: unknown key "host" (did you mean "hosts"?)',
        ),
        ('hosts = ["a"]\nhostz = ["b"]', 'hostz: unknown key "hostz" (did you mean "hosts"?)'),
        ('hosts = ["a"]\n[ssh]\nport = 22', 'ssh.port: unknown key "port"'),
        # wrong types and values
        (
            '[groups.train]\nhosts = ["a"]\ninterval = "fast"',
            "hosts.toml: groups.train.interval: "
            'expected a number of seconds > 0 and <= 3600, got "fast"',
        ),
        (
            '[groups.train]\nhosts = ["a"]\ninterval = 0',
            "groups.train.interval: expected a number of seconds > 0 and <= 3600, got 0",
        ),
        (
            'hosts = ["a"]\n[defaults]\ninterval = -1.5',
            "defaults.interval: expected a number of seconds > 0 and <= 3600, got -1.5",
        ),
        ('hosts = ["a"]\n[defaults]\ninterval = 7200', "got 7200"),
        ('hosts = ["a"]\n[defaults]\ninterval = nan', "got nan"),
        (
            'hosts = ["a"]\n[defaults]\nslow_every = 0',
            "defaults.slow_every: expected a whole number of samples >= 1, got 0",
        ),
        ('hosts = ["a"]\n[defaults]\nslow_every = 2.5', "got 2.5"),
        (
            'hosts = ["a"]\n[defaults]\nbackend = "cuda"',
            'defaults.backend: expected one of "auto", "nvml", "smi", "sim", got "cuda"',
        ),
        (
            'hosts = ["a"]\n[ssh]\nmax_handshakes = 0',
            "ssh.max_handshakes: expected a whole number of connections >= 1, got 0",
        ),
        (
            'hosts = ["a"]\n[ssh]\nstrict_host_keys = "yes"',
            'ssh.strict_host_keys: expected true or false, got "yes"',
        ),
        (
            'hosts = ["a"]\n[ssh]\nconnect_timeout_s = 0',
            "ssh.connect_timeout_s: expected a number of seconds > 0",
        ),
        (
            'hosts = "gpu1"',
            'hosts: expected an array of host names or ranges, e.g. ["gpu[001-128]", "dgx-a"], '
            'got "gpu1"',
        ),
        (
            'hosts = ["a", 7]',
            'hosts[1]: expected a host name or range (a string), e.g. "gpu[001-128]", got 7',
        ),
        ('hosts = ["a"]\ndefaults = 1', "defaults: expected a table [defaults], got 1"),
        (
            'hosts = ["a"]\ngroups = ["x"]',
            'groups: expected tables [groups.NAME], got an array ["x"]',
        ),
        (
            'hosts = ["a"]\n[groups]\nx = 1',
            "groups.x: expected a table [groups.x] with hosts = [...], got 1",
        ),
        (
            '[groups.t]\nhosts = ["a"]\nlabels = { rack = true }',
            "groups.t.labels.rack: expected a string (or a whole number), got true",
        ),
        (
            '[groups."my group"]\nhosts = ["a"]',
            'groups."my group": a group name uses letters, digits',
        ),
        # ranges
        (
            '[groups.train]\nhosts = ["gpu1", "gpu2", "gpu[3-1]"]',
            'hosts.toml: groups.train.hosts[2]: cannot use "gpu[3-1]": not a valid host range: '
            'invalid values in range: "3-1"',
        ),
        (
            'hosts = ["gpu[01-1]"]',
            'hosts[0]: cannot use "gpu[01-1]": not a valid host range: padding length mismatch',
        ),
        (
            '[groups.t]\nspares = ["gpu[1-"]',
            'groups.t.spares[0]: cannot use "gpu[1-": not a valid host range: missing bracket',
        ),
        ('hosts = ["ops@gpu1"]', "set User for this host in ~/.ssh/config instead"),
        ('hosts = ["gpu[1-99999999]"]', "expands to more than 50000 hosts"),
        ('hosts = [""]', 'hosts[0]: cannot use "": empty host entry'),
        # one host, two places
        (
            '[groups.train]\nhosts = ["gpu[1-4]"]\n'
            '[groups.infer]\nhosts = ["x"]\nspares = ["gpu3"]',
            "hosts.toml: groups.infer.spares[0]: gpu3 is listed twice: "
            'at groups.train.hosts[0] ("gpu[1-4]") and here ("gpu3"); '
            "a host belongs to one group, once",
        ),
        ('hosts = ["a", "b", "a"]', 'hosts[2]: a is listed twice: at hosts[0] ("a")'),
        (
            '[groups.a]\nhosts = ["b"]\n[groups.b]\nhosts = ["c"]',
            'groups.b: group "b" has the same name as a host',
        ),
        (
            'hosts = ["a"]\n[groups.default]\nhosts = ["b"]',
            'hosts: top-level hosts form the group "default"',
        ),
        # nothing to watch
        ("[defaults]\ninterval = 2", "hosts.toml: no hosts configured"),
        ("", "hosts.toml: no hosts configured"),
        ('[groups.t]\nlabels = { rack = "1" }', "groups.t: group has no hosts"),
        # scenario without the simulator
        (
            '[groups.t]\nhosts = ["a"]\nscenario = "demo"',
            'hosts.toml: groups.t.scenario: a scenario is only read by the "sim" backend, and '
            'defaults.backend is "auto"; remove the scenario or set backend = "sim"',
        ),
        (
            '[groups.t]\nhosts = ["a"]\nbackend = "nvml"\nscenario = "demo"',
            'groups.t.backend is "nvml"',
        ),
        (
            'hosts = ["a"]\n[defaults]\nscenario = "demo"',
            "defaults.scenario: a scenario is only read",
        ),
        # actions keep their tables, but the shape is checked here
        (
            'hosts = ["a"]\n[actions]\npresets = "slurm"',
            'actions.presets: expected an array of preset names such as ["slurm"], got "slurm"',
        ),
        (
            'hosts = ["a"]\n[actions]\ndrain = "scontrol"',
            'actions.drain: expected a table [actions.drain] with argv = [...], got "scontrol"',
        ),
        ('hosts = ["a"]\nthresholds = 3', "thresholds: expected a table, got 3"),
        (
            'hosts = ["a"]\n[thresholds]\nmem_used_warn = 90',
            'thresholds.mem_used_warn: unknown key "mem_used_warn" '
            '(did you mean "mem_used_warn_pct"?)',
        ),
        (
            'hosts = ["a"]\n[thresholds]\nmem_used_warn_pct = 120',
            "thresholds.mem_used_warn_pct: expected a number >= 0 and <= 100, got 120",
        ),
        (
            'hosts = ["a"]\n[thresholds]\nstraggler_samples = 0',
            "expected a whole number >= 1, got 0",
        ),
        (
            'hosts = ["a"]\n[risk]\ndetect_gamma = 1.5',
            "risk.detect_gamma: expected a number >= 0 and <= 1, got 1.5",
        ),
        (
            'hosts = ["a"]\n[risk.multipliers]\nwarm = 2',
            'risk.multipliers.warm: unknown key "warm" (did you mean "warn"?)',
        ),
        (
            'hosts = ["a"]\n[risk]\njob_gpus = "all"',
            'risk.job_gpus: expected a whole number >= 1, got "all"',
        ),
    ],
)
def test_a_bad_file_gets_one_paragraph_naming_the_key(text: str, expected: str) -> None:
    message = error_of(text)
    assert expected in message
    assert message.startswith("hosts.toml: ")


def test_missing_ssh_files_are_named(tmp_path: Path) -> None:
    message = error_of(f'hosts = ["a"]\n[ssh]\nidentity_files = ["{tmp_path}/nope"]')
    assert message == f"hosts.toml: ssh.identity_files[0]: file not found: {tmp_path}/nope"
    assert "ssh.config_files[0]: file not found" in error_of(
        f'hosts = ["a"]\n[ssh]\nconfig_files = ["{tmp_path}/none"]'
    )


def test_the_error_carries_its_parts() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_text('[groups.t]\nhosts = ["a"]\ninterval = "x"', "/etc/gputui/hosts.toml")
    err = info.value
    assert (err.source, err.key) == ("/etc/gputui/hosts.toml", "groups.t.interval")
    assert str(err).startswith("/etc/gputui/hosts.toml: groups.t.interval: expected")
    with pytest.raises(ConfigError) as info:
        config_from_text("a = = 1", "h.toml")
    assert (info.value.line, info.value.column) == (1, 5)


def test_load_config_names_the_file_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=re.escape(f"{tmp_path}/none.toml: the file does not exist")
    ):
        load_config(tmp_path / "none.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b'\xef\xbb\xbfhosts = ["a"]\r\n')
    assert [h.name for h in load_config(bom).hosts] == ["a"]
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'hosts = ["\xff"]')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad)


# --------------------------------------------------------------------------------------------
# Where the file is
# --------------------------------------------------------------------------------------------


def test_lookup_order_cli_then_env_then_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli, env, home = tmp_path / "cli.toml", tmp_path / "env.toml", tmp_path / "xdg"
    for p in (cli, env):
        p.write_text('hosts = ["a"]')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    assert default_hosts_path() == home / "gputui" / "hosts.toml"
    assert resolve_hosts_path(cli, {HOSTS_ENV: str(env)}) == cli
    assert resolve_hosts_path(None, {HOSTS_ENV: str(env)}) == env
    (home / "gputui").mkdir(parents=True)
    (home / "gputui" / "hosts.toml").write_text('hosts = ["a"]')
    assert resolve_hosts_path(None, {HOSTS_ENV: ""}) == home / "gputui" / "hosts.toml"
    monkeypatch.setenv(HOSTS_ENV, str(env))
    assert resolve_hosts_path() == env


@pytest.mark.parametrize(
    ("use_cli", "env", "origin"),
    [
        (True, None, "given with --hosts"),
        (False, "x.toml", "named by $GPUTUI_HOSTS"),
        (False, None, "the default location; --hosts PATH or $GPUTUI_HOSTS choose another"),
    ],
)
def test_a_missing_file_says_where_it_looked_and_how_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_cli: bool, env: str | None, origin: str
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    environ = {HOSTS_ENV: str(tmp_path / env)} if env else {}
    with pytest.raises(ConfigError) as info:
        resolve_hosts_path(tmp_path / "cli.toml" if use_cli else None, environ)
    message = str(info.value)
    looked = {
        True: tmp_path / "cli.toml",
        False: tmp_path / env if env else tmp_path / "xdg" / "gputui" / "hosts.toml",
    }[use_cli]
    # The starter ships with the package: the sources' example file is not where pip users are.
    init = f"gputui init --hosts {looked}" if use_cli else "gputui init"
    assert message.startswith(
        f"no hosts file: {looked} ({origin}) does not exist. To start, `{init}` writes a "
        "starter file there"
    )
    assert "hosts.example.toml" not in message
    assert "`gputui demo`" in message


@pytest.mark.parametrize(
    "seconds", [0.0, -1.5, 0.001, 0.5, 1.0, 3600.0, 3600.5, 7200.0, float("nan")]
)
def test_interval_problem_is_the_files_own_check(seconds: float) -> None:
    # `gputui agent --interval` is checked with interval_problem(); a hosts file by its schema.
    problem = interval_problem(seconds)
    try:
        load(f'hosts = ["a"]\n[defaults]\ninterval = {seconds!r}\n')
    except ConfigError as exc:
        assert problem is not None and problem in str(exc)
    else:
        assert problem is None


def test_the_agent_defaults_to_gputuis_interval() -> None:
    # The agent keeps its own copy (it imports nothing of gputui): the copy must agree.
    assert agent.DEFAULT_INTERVAL_S == DEFAULT_INTERVAL_S
