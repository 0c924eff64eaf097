"""`gputui init` and the starter hosts file it writes (shipped inside the package)."""

from __future__ import annotations

import re
import stat
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

import gputui.cli.commands  # noqa: F401  (registers every command)
from gputui.cli.app import app
from gputui.config import config_from_text, load_config, resolve_hosts_path
from gputui.config.local import local_config
from gputui.config.starter import STARTER_NAME, starter_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def fresh_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user with no config dir yet: where `gputui init` must write, and create."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.delenv("GPUTUI_HOSTS", raising=False)
    return tmp_path / "home" / ".config" / "gputui" / "hosts.toml"


def init(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, ["init", *args], env=env)


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gputui: ")
    return lines[0]


def test_init_creates_the_config_dir_and_writes_the_starter(fresh_account: Path) -> None:
    assert not fresh_account.parent.exists()
    result = init()
    assert result.exit_code == 0, result.output
    assert fresh_account.read_text(encoding="utf-8") == starter_text()
    assert f"wrote {fresh_account}" in result.stdout
    assert "Then run `gputui`" in result.stdout
    # Where every command then reads it, and what it means: this machine, as with no file.
    assert resolve_hosts_path() == fresh_account
    config = load_config(fresh_account)
    assert config.hosts == local_config().hosts and config.groups == local_config().groups
    # It names the fleet's hosts: private to the user, like the journal.
    assert stat.S_IMODE(fresh_account.stat().st_mode) == 0o600
    assert [p.name for p in fresh_account.parent.iterdir()] == ["hosts.toml"]  # no temp left


def test_init_leaves_an_existing_file_alone(fresh_account: Path) -> None:
    fresh_account.parent.mkdir(parents=True)
    fresh_account.write_text('hosts = ["dgx-a"]\n')
    result = init()
    assert result.exit_code == 2
    line = one_error_line(result)
    assert f"{fresh_account} (the default location" in line
    assert "exists: left as it is (--force replaces it" in line
    assert fresh_account.read_text() == 'hosts = ["dgx-a"]\n'


def test_init_force_replaces_and_keeps_the_old_file(fresh_account: Path) -> None:
    fresh_account.parent.mkdir(parents=True)
    fresh_account.write_text('hosts = ["dgx-a"]\n')
    result = init("--force")
    assert result.exit_code == 0, result.output
    assert fresh_account.read_text(encoding="utf-8") == starter_text()
    backup = fresh_account.with_name("hosts.toml.bak")
    assert backup.read_text() == 'hosts = ["dgx-a"]\n'
    assert f"kept the file it replaces as {backup}" in result.stdout


def test_init_writes_where_hosts_or_the_environment_say(
    fresh_account: Path, tmp_path: Path
) -> None:
    given = tmp_path / "site" / "a" / "fleet.toml"
    assert init("--hosts", str(given)).exit_code == 0
    assert given.read_text(encoding="utf-8") == starter_text()
    named = tmp_path / "env" / "hosts.toml"
    assert init(env={"GPUTUI_HOSTS": str(named)}).exit_code == 0
    assert named.is_file()
    assert not fresh_account.exists()


def test_init_refuses_a_directory(fresh_account: Path) -> None:
    fresh_account.mkdir(parents=True)
    result = init()
    assert result.exit_code == 2
    assert "is a directory; --hosts names the file to write" in one_error_line(result)


def test_a_missing_hosts_file_points_at_init(fresh_account: Path) -> None:
    result = CliRunner().invoke(app, ["report"])
    assert result.exit_code == 3
    line = one_error_line(result)
    assert "To start, `gputui init` writes a starter file there" in line
    assert "hosts.example.toml" not in line


# --------------------------------------------------------------------------------------------
# The starter itself
# --------------------------------------------------------------------------------------------

_COMMENTED_TOML = re.compile(r"^# (\[[\w.]+\]|\w+ = .*)$")


def test_every_commented_key_of_the_starter_is_a_real_one() -> None:
    """Uncommented, the starter's examples load: each key exists and each value is accepted."""
    text = starter_text()
    lines = text.splitlines()
    commented = [ln for ln in lines if _COMMENTED_TOML.match(ln)]
    assert len(commented) >= 10, commented
    uncommented = "\n".join(ln[2:] if _COMMENTED_TOML.match(ln) else ln for ln in lines)
    config = config_from_text(uncommented)
    assert config.readonly is True
    assert config.action_presets == ("slurm",)
    assert config.groups["train"].spares == ("gpu033", "gpu034")
    assert str(config.journal_path).endswith(".local/state/gputui/journal.sqlite3")


def test_the_starter_as_written_is_this_machine_at_defaults() -> None:
    config = config_from_text(starter_text())
    local = local_config()
    assert config.hosts == local.hosts and config.groups == local.groups
    assert not config.readonly and config.action_presets == () and config.actions == {}


def test_the_starter_is_package_data() -> None:
    """pip installs the package's data files only: the starter must be one of them."""
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["gputui"]
    shipped = {
        p.relative_to(REPO / "gputui") for pat in patterns for p in (REPO / "gputui").glob(pat)
    }
    assert Path("config") / STARTER_NAME in shipped
