"""The heartbeat file each training process writes for the agent on its host.

One small JSON file per process, `<pid>.json` under the user's runtime dir, replaced atomically
(written beside it, then renamed over it) so the agent never reads half of one: the process's
step count, the mean wall time of its recent steps and of its own work per step, its rank, its
job and its GPU's UUID. No network, no lock, nothing shared: the agent reads the files in its
slow path (gputui/agent/heartbeat.py, which documents where it looks and what it refuses), and
docs/protocol.md says how they reach the monitor.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import msgspec

ENV_DIR = "GPUTUI_HEARTBEAT_DIR"


def heartbeat_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where this user's heartbeat files go: $GPUTUI_HEARTBEAT_DIR, else the runtime dir's
    gputui/heartbeat ($XDG_RUNTIME_DIR, or /run/user/UID where it exists), else
    $TMPDIR/gputui-UID/heartbeat. The agent looks in the same places."""
    env = os.environ if env is None else env
    chosen = env.get(ENV_DIR)
    if chosen:
        return Path(chosen)
    runtime = env.get("XDG_RUNTIME_DIR")
    uid = os.getuid()
    if not runtime and os.path.isdir(f"/run/user/{uid}"):
        runtime = f"/run/user/{uid}"
    if runtime:
        return Path(runtime) / "gputui" / "heartbeat"
    return Path(tempfile.gettempdir()) / f"gputui-{uid}" / "heartbeat"


class Identity(msgspec.Struct, frozen=True, kw_only=True):
    """Who is training: the process, its rank and its job, as the launcher said them."""

    pid: int
    framework: str
    rank: int | None = None
    local_rank: int | None = None
    world_size: int | None = None
    job_kind: str | None = None  # slurm, k8s
    job_id: str | None = None

    @classmethod
    def from_env(cls, framework: str, env: Mapping[str, str] | None = None) -> Identity:
        """torchrun's RANK, LOCAL_RANK and WORLD_SIZE, else Slurm's SLURM_PROCID, SLURM_LOCALID
        and SLURM_NTASKS; the job from SLURM_JOB_ID, or a pod's POD_UID (the downward API's
        usual name for metadata.uid)."""
        env = os.environ if env is None else env

        def number(*names: str) -> int | None:
            for name in names:
                value = env.get(name, "")
                if value.isdigit():
                    return int(value)
            return None

        kind, job = None, None
        if env.get("SLURM_JOB_ID"):
            kind, job = "slurm", env["SLURM_JOB_ID"]
        elif env.get("POD_UID"):
            kind, job = "k8s", env["POD_UID"]
        return cls(
            pid=os.getpid(),
            framework=framework,
            rank=number("RANK", "SLURM_PROCID"),
            local_rank=number("LOCAL_RANK", "SLURM_LOCALID"),
            world_size=number("WORLD_SIZE", "SLURM_NTASKS"),
            job_kind=kind,
            job_id=job,
        )


class HeartbeatWriter:
    """Writes one process's heartbeat file; `remove()` when the process is done."""

    def __init__(self, identity: Identity, directory: Path | None = None) -> None:
        self.identity = identity
        self.directory = heartbeat_dir() if directory is None else directory
        self.path = self.directory / f"{identity.pid}.json"
        self._made = False

    def write(
        self,
        *,
        t: float,
        step: int,
        step_time_s: float | None,
        compute_s: float | None,
        uuid: str | None,
    ) -> None:
        """Replace the file with these figures (raises OSError when it cannot)."""
        if not self._made:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._made = True
        ident = self.identity
        doc = {
            "v": 1,
            "pid": ident.pid,
            "t": round(t, 3),
            "step": step,
            "step_time_s": step_time_s,
            "compute_s": compute_s,
            "uuid": uuid,
            "rank": ident.rank,
            "local_rank": ident.local_rank,
            "world_size": ident.world_size,
            "job_kind": ident.job_kind,
            "job_id": ident.job_id,
            "framework": ident.framework,
        }
        data = json.dumps({k: v for k, v in doc.items() if v is not None}).encode()
        tmp = self.directory / f".{ident.pid}.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()
