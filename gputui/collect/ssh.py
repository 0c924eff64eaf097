"""The user's SSH, shared across the fleet.

One `SshContext` per process holds what must be loaded or opened once rather than per host:
the known_hosts file, the client keys, the bound on concurrent handshakes, and one bastion
connection per ProxyJump value (asyncssh would otherwise open a bastion connection per target).

Host aliases are resolved through the user's ssh_config files exactly as `ssh ALIAS` would
(HostName, User, Port, IdentityFile, ProxyJump, Ciphers); connection failures become
`HostError`s whose text an operator can act on.

Cipher: unless ssh_config sets `Ciphers`, AES-GCM comes first where the CPU has AES
instructions. A monitor decrypts one packet per host per second, thousands a second for a
fleet; asyncssh's first choice, chacha20-poly1305, costs about 16 us a 1.5 KB packet in
Python (a cipher and a MAC object per packet) against 3.5 us for AES-GCM (one OpenSSL call),
and AES-GCM is as strong. Both ends support it (OpenSSH has since 6.2).
"""

from __future__ import annotations

import asyncio
import functools
import getpass
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import asyncssh
from asyncssh.config import SSHClientConfig
from asyncssh.encryption import get_default_encryption_algs

# Re-exported: callers name it from here.
from gputui.collect.host_error import HostError as HostError

DEFAULT_KEY_FILES = ("id_ed25519", "id_ecdsa", "id_rsa")


def _cpu_has_aes() -> bool:
    """Whether the CPU has AES instructions (x86 AES-NI, the ARMv8 crypto extension)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return "aes" in line.split(":", 1)[-1].split()
    except OSError:
        pass
    return False


def cipher_preference(has_aes: bool) -> list[str]:
    """asyncssh's default ciphers, with AES-GCM moved first on a CPU with AES instructions."""
    default = [a.decode() for a in get_default_encryption_algs()]
    if not has_aes:
        return default
    gcm = [a for a in ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com") if a in default]
    return gcm + [a for a in default if a not in gcm]


CIPHERS = cipher_preference(_cpu_has_aes())


@dataclass(frozen=True)
class SshOptions:
    """Connection settings for the whole fleet (hosts.toml [ssh])."""

    config_files: tuple[Path, ...] = ()
    known_hosts: Path | None = None  # None: ~/.ssh/known_hosts
    connect_timeout_s: float = 10.0
    keepalive_interval_s: float = 5.0
    keepalive_count_max: int = 3
    max_handshakes: int = 64
    identity_files: tuple[Path, ...] = ()  # used when ssh_config names none
    strict_host_keys: bool = True


@dataclass(frozen=True)
class SshTarget:
    """A host alias resolved through ssh_config."""

    alias: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...] = ()
    proxy_jump: str | None = None
    ciphers: str | None = None  # ssh_config's Ciphers, as written

    @property
    def known_hosts_name(self) -> str:
        """The name this host has in known_hosts (`[host]:port` off port 22)."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


@dataclass
class _Bastion:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    conn: asyncssh.SSHClientConnection | None = None


class SshContext:
    """Fleet-wide SSH state: keys, known_hosts, handshake bound, shared bastions."""

    def __init__(self, options: SshOptions | None = None) -> None:
        self.options = options or SshOptions()
        home = Path.home()
        if self.options.config_files:
            self._config_paths = [str(p.expanduser()) for p in self.options.config_files]
        else:
            default = home / ".ssh" / "config"
            self._config_paths = [str(default)] if default.exists() else []
        kh = (self.options.known_hosts or home / ".ssh" / "known_hosts").expanduser()
        self.known_hosts_path = kh
        self._known_hosts = self._read_known_hosts(kh)
        self._keys: dict[tuple[str, ...], Sequence[asyncssh.SSHKeyPair]] = {}
        self._targets: dict[str, SshTarget] = {}
        self._bastions: dict[str, _Bastion] = {}
        self._handshakes = asyncio.Semaphore(self.options.max_handshakes)
        self._local_user = _local_user()

    # -- resolution -------------------------------------------------------------------------

    def resolve(self, alias: str) -> SshTarget:
        """The alias as ssh_config resolves it (cached: config files are read once per alias)."""
        target = self._targets.get(alias)
        if target is None:
            target = self._resolve_uncached(alias)
            self._targets[alias] = target
        return target

    def _resolve_uncached(self, alias: str) -> SshTarget:
        cfg = SSHClientConfig.load(
            None, self._config_paths, False, False, False, self._local_user, (), alias, ()
        )
        hostname = str(cfg.get("Hostname") or alias)
        port = int(cfg.get("Port") or 22)  # type: ignore[call-overload]
        user = str(cfg.get("User") or self._local_user)
        identity = cfg.get("IdentityFile") or ()
        proxy = cfg.get("ProxyJump")
        identity_files = tuple(str(Path(str(p)).expanduser()) for p in identity)  # type: ignore[attr-defined]
        proxy_jump = str(proxy) if proxy and str(proxy).lower() != "none" else None
        ciphers = cfg.get("Ciphers")
        return SshTarget(
            alias,
            hostname,
            port,
            user,
            identity_files,
            proxy_jump,
            str(ciphers) if ciphers else None,
        )

    # -- keys and known hosts ---------------------------------------------------------------

    @staticmethod
    def _read_known_hosts(path: Path) -> asyncssh.SSHKnownHosts:
        try:
            return asyncssh.read_known_hosts(str(path))
        except FileNotFoundError:
            return asyncssh.import_known_hosts("")
        except (OSError, ValueError) as exc:
            raise HostError("known_hosts_unreadable", f"cannot read {path}: {exc}") from exc

    def _client_keys(self, target: SshTarget) -> Sequence[asyncssh.SSHKeyPair]:
        files = target.identity_files or tuple(str(p) for p in self.options.identity_files)
        if not files:
            ssh_dir = Path.home() / ".ssh"
            files = tuple(str(ssh_dir / n) for n in DEFAULT_KEY_FILES if (ssh_dir / n).exists())
        keys = self._keys.get(files)
        if keys is None:
            present = [f for f in files if Path(f).exists()]
            try:
                keys = asyncssh.load_keypairs(present, ignore_encrypted=True)
            except (OSError, asyncssh.KeyImportError) as exc:
                raise HostError("key_unreadable", f"cannot load key {present}: {exc}") from exc
            self._keys[files] = keys
        return keys

    def _known_host_entry_exists(self, target: SshTarget) -> bool:
        addr = _first_address(target.hostname)
        trusted, _ca, _revoked, _x509, _x509_ca, _x509_rev, _subj = self._known_hosts.match(
            target.hostname, addr, target.port
        )
        return bool(trusted)

    # -- connecting -------------------------------------------------------------------------

    async def connect(
        self, alias: str, on_phase: Callable[[str], None] | None = None
    ) -> asyncssh.SSHClientConnection:
        """An authenticated connection to `alias`; raises HostError with the reason.

        `on_phase` hears where the attempt is ("connecting to ...", "SSH handshake and login
        with ..."), so a host that hangs in one of them says which."""
        target = self.resolve(alias)
        where = f"{target.user}@{target.hostname}:{target.port}"
        if target.proxy_jump:
            if on_phase is not None:
                on_phase(f"connecting through ProxyJump {target.proxy_jump}")
            tunnel = await self._bastion(target.proxy_jump)
        else:
            tunnel = None
        return await self._connect_target(target, tunnel, where, on_phase)

    async def _connect_target(
        self,
        target: SshTarget,
        tunnel: asyncssh.SSHClientConnection | None,
        where: str = "",
        on_phase: Callable[[str], None] | None = None,
    ) -> asyncssh.SSHClientConnection:
        keys = self._client_keys(target)
        known_hosts = self._known_hosts if self.options.strict_host_keys else None
        opts = self.options
        if on_phase is not None:
            on_phase(f"waiting for a handshake slot ({opts.max_handshakes} at a time)")
        async with self._handshakes:
            if on_phase is not None:
                on_phase(f"connecting to {where}")
            try:
                return await asyncssh.connect(
                    target.hostname,
                    target.port,
                    username=target.user,
                    client_keys=keys,
                    known_hosts=known_hosts,
                    tunnel=tunnel if tunnel is not None else (),
                    config=None,
                    connect_timeout=opts.connect_timeout_s,
                    login_timeout=opts.connect_timeout_s,
                    keepalive_interval=opts.keepalive_interval_s,
                    keepalive_count_max=opts.keepalive_count_max,
                    agent_path=os.environ.get("SSH_AUTH_SOCK") or None,
                    encryption_algs=target.ciphers or CIPHERS,
                    client_factory=_PhaseClient.factory(where, on_phase),
                )
            except Exception as exc:  # every failure becomes this host's state, never a crash
                raise self.classify(target, exc) from exc

    async def _bastion(self, jump: str) -> asyncssh.SSHClientConnection:
        """The one shared connection to a ProxyJump host, opened on first use."""
        # A ProxyJump of several hops ("a,b") is reached hop by hop; the first hop is shared.
        hops = [h.strip() for h in jump.split(",") if h.strip()]
        key = ",".join(hops)
        bastion = self._bastions.setdefault(key, _Bastion())
        async with bastion.lock:
            conn = bastion.conn
            if conn is not None and not conn.is_closed():
                return conn
            tunnel: asyncssh.SSHClientConnection | None = None
            for hop in hops:
                user, _, host = hop.rpartition("@")
                target = self.resolve(host.split(":")[0])
                target = replace(target, proxy_jump=None)
                if ":" in host:
                    target = replace(target, port=int(host.split(":")[1]))
                if user:
                    target = replace(target, user=user)
                try:
                    tunnel = await self._connect_target(target, tunnel)
                except HostError as exc:
                    raise HostError(exc.code, f"via ProxyJump {hop}: {exc.text}") from exc
            assert tunnel is not None
            bastion.conn = tunnel
            return tunnel

    def classify(self, target: SshTarget, exc: BaseException) -> HostError:
        """Turn an exception from connecting into the host's reason."""
        where = f"{target.user}@{target.hostname}:{target.port}"
        if isinstance(exc, HostError):
            return exc
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            name = target.known_hosts_name
            kh = self.known_hosts_path
            port = f"-p {target.port} " if target.port != 22 else ""
            if self._known_host_entry_exists(target):
                return HostError(
                    "host_key_changed",
                    f"host key of {name} CHANGED (does not match {kh}); refusing to connect. "
                    f"If the host was reinstalled, verify the new key out of band, then: "
                    f"ssh-keygen -f {kh} -R '{name}' && "
                    f"ssh-keyscan {port}{target.hostname} >> {kh}",
                )
            return HostError(
                "host_key_unknown",
                f"host key of {name} is not in {kh}; refusing to connect. "
                f"Verify its fingerprint out of band, then: "
                f"ssh-keyscan {port}{target.hostname} >> {kh}",
            )
        if isinstance(exc, asyncssh.PermissionDenied):
            return HostError("auth_failed", f"authentication failed for {where}: {exc.reason}")
        if isinstance(exc, asyncssh.DisconnectError):
            return HostError("ssh_error", f"{where}: SSH disconnected: {exc.reason}")
        if isinstance(exc, socket.gaierror):
            return HostError("dns", f"cannot resolve {target.hostname}: {exc.strerror}")
        if isinstance(exc, ConnectionRefusedError):
            return HostError("refused", f"connection refused by {where}")
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            return HostError(
                "timeout", f"no answer from {where} within {self.options.connect_timeout_s:g} s"
            )
        if isinstance(exc, asyncssh.ChannelOpenError):
            return HostError(
                "tunnel_failed", f"cannot reach {where} through ProxyJump: {exc.reason}"
            )
        if isinstance(exc, OSError):
            return HostError("network", f"{where}: {exc.strerror or exc}")
        return HostError("ssh_error", f"{where}: {type(exc).__name__}: {exc}")

    async def close(self) -> None:
        """Close the shared bastion connections."""
        for bastion in self._bastions.values():
            if bastion.conn is not None:
                bastion.conn.close()
        for bastion in self._bastions.values():
            if bastion.conn is not None:
                await bastion.conn.wait_closed()
        self._bastions.clear()


class _PhaseClient(asyncssh.SSHClient):
    """Reports the moment the TCP connection is up: what follows is the SSH handshake and
    login, so a host that accepts connections and then stalls is told apart from one that
    does not answer at all."""

    def __init__(self, where: str, on_phase: Callable[[str], None] | None) -> None:
        self._where = where
        self._on_phase = on_phase

    @classmethod
    def factory(
        cls, where: str, on_phase: Callable[[str], None] | None
    ) -> Callable[[], asyncssh.SSHClient]:
        return lambda: cls(where, on_phase)

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        if self._on_phase is not None:
            self._on_phase(f"SSH handshake and login with {self._where}")


@functools.cache
def _local_user() -> str:
    """The local user's name, looked up once, while descriptors are plentiful.

    asyncssh looks the local user up again at every connection (getpass.getuser()). Where the
    environment names no user (a systemd service, cron, a container) that reads the password
    database, which takes a file descriptor: once a large fleet's sockets had used them all,
    every further connection failed as "Unknown local username". Exporting LOGNAME, the name
    login(1) sets, answers those lookups from the environment.
    """
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "root" if os.getuid() == 0 else str(os.getuid())
    if not any(os.environ.get(name) for name in ("LOGNAME", "USER", "LNAME", "USERNAME")):
        os.environ["LOGNAME"] = user
    return user


def _first_address(hostname: str) -> str:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in hostname else socket.AF_INET, hostname)
        return hostname
    except OSError:
        pass
    try:
        return socket.gethostbyname(hostname)
    except OSError:
        return hostname
