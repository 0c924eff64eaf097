"""Open file descriptors: the process's limit, raised once, and what a fleet needs of it.

Every SSH host holds a socket for as long as it is watched, and a local agent its three pipes.
Most systems start a process with a soft limit of 1,024 open files under a hard limit far
higher, so a fleet of a thousand hosts runs out unless the soft limit is raised, which any
process may do up to the hard limit. Past the hard limit only the user or the administrator
can help, and they should hear it once, with the numbers, not as a thousand unreachable hosts.
"""

from __future__ import annotations

import contextlib
import importlib
import resource
from dataclasses import dataclass

# The process's own descriptors: the interpreter, the terminal, the event loop and its
# self-pipe, thread pools, the journal (database, WAL, shared memory), ssh_config and key files
# read while connecting, a demo fleet's server pipe. Counted generously: running short is
# worse than a warning that comes a few hosts early.
BASE_DESCRIPTORS = 50
PER_SSH_HOST = 1  # one TCP socket (hosts behind a shared ProxyJump cost less: a channel each)
PER_LOCAL_HOST = 4  # the agent's stdin, stdout and stderr pipes, and one more while it starts
# A demo host's SSH server (gputui.collect.demo_server, a child that inherits the limit): its
# listener, the accepted connection, and the three pipes of the agent it runs.
PER_DEMO_SERVER_HOST = 5

# Where the hard limit is "unlimited" (macOS), the kernel still refuses a soft limit above its
# per-process maximum; these are tried in turn.
_UNLIMITED_FALLBACKS = (1 << 20, 65536, 10240)


# Modules the connection path imports on first use. An import opens the module's file, so one
# first needed after the fleet's sockets took every descriptor fails, and with it every host
# that needs it, even those that got a socket: socket.getaddrinfo loads the IDNA codec the
# first time asyncssh matches a host's address against known_hosts.
_LAZY_MODULES = ("encodings.idna",)


@dataclass(frozen=True)
class OpenFiles:
    """The limit after raising it, against what a fleet needs."""

    hosts: int
    needed: int
    soft: int  # what this process may open now
    hard: int  # the most it may raise itself to (resource.RLIM_INFINITY: no limit)

    @property
    def enough(self) -> bool:
        return self.needed <= self.soft

    def shortfall(self) -> str | None:
        """One line for the operator when the fleet needs more than the process may open."""
        if self.enough:
            return None
        suggest = _suggested_limit(self.needed)
        at_most = self.soft == self.hard or self.hard == resource.RLIM_INFINITY
        hard = " (hard limit)" if at_most else ""
        noun = "host needs" if self.hosts == 1 else "hosts need"
        return (
            f"{self.hosts:,} {noun} about {self.needed:,} open files; this process may open "
            f"{self.soft:,}{hard}. Raise it: `ulimit -n {suggest}` in the shell, or "
            f"LimitNOFILE={suggest} in the systemd unit"
        )


def _suggested_limit(needed: int) -> int:
    """A power of two with room to spare: twice the need, for reconnects and growth."""
    return 1 << max(12, (2 * needed - 1).bit_length())


def raise_soft_limit() -> tuple[int, int]:
    """Lift the soft open-files limit to the hard one; the (soft, hard) limits now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        candidates: tuple[int, ...] = _UNLIMITED_FALLBACKS
    else:
        candidates = (hard,)
    for target in candidates:
        if soft != resource.RLIM_INFINITY and target <= soft:
            break
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            break
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def load_lazy_modules() -> None:
    """Import now, while descriptors are free, what connecting would import later."""
    for name in _LAZY_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def descriptors_needed(ssh_hosts: int = 0, local_hosts: int = 0, demo_hosts: int = 0) -> int:
    """About how many descriptors a process watching these hosts holds at once."""
    per_process = ssh_hosts * PER_SSH_HOST + local_hosts * PER_LOCAL_HOST
    # The demo's servers run in a child with the same limit; the larger of the two must fit.
    return BASE_DESCRIPTORS + max(per_process, demo_hosts * PER_DEMO_SERVER_HOST)


def open_files_for(ssh_hosts: int = 0, local_hosts: int = 0, demo_hosts: int = 0) -> OpenFiles:
    """Raise the soft limit, then compare it with what these hosts need."""
    load_lazy_modules()
    soft, hard = raise_soft_limit()
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 62  # no limit at all: nothing is ever short
    return OpenFiles(
        hosts=ssh_hosts + local_hosts + demo_hosts,
        needed=descriptors_needed(ssh_hosts, local_hosts, demo_hosts),
        soft=soft,
        hard=hard,
    )
