"""A real OpenSSH sshd on loopback for the tests, with its own host key and authorized key.

Runs Debian's /usr/sbin/sshd in the foreground on a free port, as the current user (root in CI,
where it can serve any account; as another user it serves only that user). Stop and start it to
simulate a host going away and coming back.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import need_program


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ssh_keygen(path: Path) -> str:
    """Generate an ed25519 key pair at `path`; the public key line."""
    keygen = need_program("ssh-keygen")
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return (
        path.with_suffix(".pub").read_text().strip()
        if path.suffix
        else Path(f"{path}.pub").read_text().strip()
    )


class OpenSshServer:
    def __init__(
        self, directory: Path, name: str, authorized_keys: list[str], extra_config: str = ""
    ) -> None:
        self.sshd = need_program("sshd", "/usr/sbin/sshd")
        self.dir = directory / name
        self.dir.mkdir(parents=True)
        self.name = name
        self.port = free_port()
        self.user = getpass.getuser()
        self.host_key_pub = ssh_keygen(self.dir / "host_key")
        (self.dir / "authorized_keys").write_text("\n".join(authorized_keys) + "\n")
        (self.dir / "authorized_keys").chmod(0o600)
        self.log = self.dir / "sshd.log"
        self.config = self.dir / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {self.dir / 'host_key'}\n"
            f"PidFile {self.dir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}\n"
            "StrictModes no\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "PermitRootLogin prohibit-password\n"
            "AllowTcpForwarding yes\n"
            "MaxStartups 100:30:200\n"
            "LogLevel DEBUG1\n" + extra_config
        )
        self.proc: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.sshd, "-D", "-e", "-f", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("ab"),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    def stop(self) -> None:
        """Stop the listener and every session it serves, as a host going down would."""
        if self.proc is None:
            return
        for pid in [*_descendants(self.proc.pid), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        self.proc.wait(timeout=10)
        self.proc = None

    def accepted_logins(self) -> int:
        return self.log.read_text(errors="replace").count("Accepted publickey")

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key_pub}"


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (sshd's per-connection children and their commands)."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        c, p = (int(x) for x in line.split())
        children.setdefault(p, []).append(c)
    found: list[int] = []
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    return found
