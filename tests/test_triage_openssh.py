"""`gputui triage` through real OpenSSH sshds: a simulated host, a host read through nvidia-smi
whose journal holds an XID, and one whose kernel log is refused (stand-in journalctl and dmesg
on the session's PATH, set with sshd_config SetEnv as a host's environment would be)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.openssh import OpenSshServer, ssh_keygen
from tests.test_collect_openssh import FIXTURES as SMI_FIXTURES
from tests.test_triage_cli import CLI

pytestmark = pytest.mark.system

FAKE_SMI = (
    "#!/bin/sh\n"
    f"export FAKE_SMI_HELLO={SMI_FIXTURES / 'h100_hello.csv'}\n"
    f"export FAKE_SMI_TEMPERATURE={SMI_FIXTURES / 'h100_temperature.txt'}\n"
    f"export FAKE_SMI_STREAM={SMI_FIXTURES / 'h100_training.csv'}\n"
    "export FAKE_SMI_PERIOD_S=0.1\n"
    f'exec {sys.executable} {SMI_FIXTURES / "fake_nvidia_smi.py"} "$@"\n'
)
# A journal that holds a double-bit ECC error on GPU 2 (00000000:3A:00.0 in the smi fixture).
JOURNAL_WITH_XID = (
    "#!/bin/sh\n"
    'echo "$@" >> "$(dirname "$0")/journalctl.args"\n'
    "now=$(date -u +%Y-%m-%dT%H:%M:%S+0000)\n"
    'echo "$now gpu-smi kernel: NVRM: Xid (PCI:0000:3a:00): 48, pid=4242, name=python3, An '
    "uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at "
    'partition 6, subpartition 0."\n'
)
# What a user outside systemd-journal/adm gets, and dmesg under kernel.dmesg_restrict=1.
JOURNAL_REFUSED = (
    "#!/bin/sh\n"
    'echo "Hint: You are currently not seeing messages from other users and the system." >&2\n'
    "echo \"      Users in groups 'adm', 'systemd-journal' can see all messages.\" >&2\n"
    'echo "-- No entries --"\n'
)
DMESG_REFUSED = (
    '#!/bin/sh\necho "dmesg: read kernel buffer failed: Operation not permitted" >&2\nexit 1\n'
)


def _host(tmp: Path, name: str, client_pub: str, scripts: dict[str, str]) -> OpenSshServer:
    bindir = tmp / f"bin-{name}"
    bindir.mkdir()
    for program, text in scripts.items():
        (bindir / program).write_text(text)
        (bindir / program).chmod(0o755)
    return OpenSshServer(
        tmp, name, [client_pub], extra_config=f"SetEnv PATH={bindir}:/usr/bin:/bin\n"
    )


def test_triage_through_openssh_with_a_refused_kernel_log(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    client_pub = ssh_keygen(key)
    readable = _host(
        tmp_path, "readable", client_pub, {"nvidia-smi": FAKE_SMI, "journalctl": JOURNAL_WITH_XID}
    )
    refused = _host(
        tmp_path,
        "refused",
        client_pub,
        {"nvidia-smi": FAKE_SMI, "journalctl": JOURNAL_REFUSED, "dmesg": DMESG_REFUSED},
    )
    (tmp_path / "known_hosts").write_text(
        readable.known_hosts_line() + "\n" + refused.known_hosts_line() + "\n"
    )
    entries = [("gpu-sim", readable), ("gpu-smi", readable), ("gpu-locked", refused)]
    (tmp_path / "ssh_config").write_text(
        "".join(
            f"Host {alias}\n  HostName 127.0.0.1\n  Port {srv.port}\n  User {srv.user}\n"
            f"  IdentityFile {key}\n\n"
            for alias, srv in entries
        )
    )
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(
        f"""
[ssh]
config_files = ["{tmp_path / "ssh_config"}"]
known_hosts = "{tmp_path / "known_hosts"}"
connect_timeout_s = 10

[groups.sim]
hosts = ["gpu-sim"]
backend = "sim"
scenario = "xid79"

[groups.real]
hosts = ["gpu-smi", "gpu-locked"]

[actions]
presets = ["slurm"]
"""
    )
    readable.start()
    refused.start()
    try:
        result = CliRunner().invoke(
            CLI,
            ["triage", "sim", "real", "--hosts", str(hosts), "--samples", "2", "--format=json"],
        )
    finally:
        readable.stop()
        refused.stop()
    assert result.exit_code == 2, result.output
    doc = json.loads(result.stdout)
    by_host = {h["host"]: h for h in doc["hosts"]}
    assert [h["host"] for h in doc["hosts"]] == ["gpu-sim", "gpu-smi", "gpu-locked"]
    assert readable.accepted_logins() == 2 and refused.accepted_logins() == 1

    sim = by_host["gpu-sim"]
    assert (sim["level"], sim["step"], sim["nvidia_action"]) == (
        "failed",
        "drain and reboot",
        "reboot node",
    )
    assert [(x["xid"], x["gpu"]) for x in sim["xids"]] == [(79, 3)]

    smi = by_host["gpu-smi"]
    facts = smi["facts"]
    assert facts["backend"] == "smi" and facts["kernel_log"]["source"] == "journalctl"
    assert (smi["level"], smi["step"], smi["nvidia_action"]) == (
        "critical",
        "reset GPU",
        "reset GPU",
    )
    assert [(x["xid"], x["gpu"], x["pid"]) for x in smi["xids"]] == [(48, 2, 4242)]
    assert smi["command"].endswith(f"--action drain --hosts {hosts}")
    args = (tmp_path / "bin-readable" / "journalctl.args").read_text().split()
    assert args[:4] == ["-k", "-o", "short-iso", "--no-pager"]  # since boot: no --since

    locked = by_host["gpu-locked"]
    assert (locked["level"], locked["status"], locked["step"]) == ("warn", "WARNING", "watch")
    log = locked["facts"]["kernel_log"]
    assert not log["readable"] and log["error_code"] == "permission_denied"
    assert "Operation not permitted" in log["error"]
    (denied,) = [f for f in locked["findings"] if f["code"] == "kernel_log_denied"]
    assert "sudo sysctl kernel.dmesg_restrict=0" in denied["fix"]
    assert "systemd-journal" in denied["fix"] and locked["command"] is None
    assert len(locked["gpus"]) == 8 and locked["xids"] == []
