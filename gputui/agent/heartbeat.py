"""Training heartbeats: the files training processes write on this host, read in the slow path.

A training loop watched by gputui (gputui/train) writes one small JSON file per process,
`<pid>.json`, replaced atomically a few times a minute: its step count, how long its steps
take, its rank and the UUID of its GPU (docs/training.md). The agent reads them when it reads
the slow signals and forwards each as a `heartbeats` entry of the sample (docs/protocol.md), so
the monitor can put a job's step rate and each rank's relative speed next to its GPU's verdict.

The agent writes nothing here and trusts nothing it reads: a file is at most 4 KiB, every field
is type-checked, a file must be named by the pid it names, that process must be alive and owned
by the file's owner (a user can speak only for their own processes), and a file older than
MAX_AGE_S (a process that stopped writing) is left out.

Where the files lie: $GPUTUI_HEARTBEAT_DIR when set (the writer honours the same variable);
otherwise every user's runtime dir that this agent may read (/run/user/UID/gputui/heartbeat:
its own user's, or everyone's when it runs as root), and the writer's fallback for hosts
without one ($TMPDIR/gputui-UID/heartbeat).
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import time
from typing import Any, Callable, Dict, Mapping

Json = Dict[str, Any]

ENV_DIR = "GPUTUI_HEARTBEAT_DIR"
MAX_FILE_BYTES = 4096
MAX_FILES = 1024  # per scan, over every directory: a host runs a few processes per GPU
MAX_AGE_S = 120.0  # the writer rewrites its file at least every 10 s while it runs
_TEXT_MAX = 256

# Field -> (types accepted, lowest value): numbers are checked here so a bad file is dropped
# whole on the host rather than refused with the whole sample by the collector's bounds.
_NUMBERS: dict[str, tuple[Any, int]] = {
    "step": (int, 0),
    "rank": (int, 0),
    "local_rank": (int, 0),
    "world_size": (int, 1),
    "step_time_s": ((int, float), 0),
    "compute_s": ((int, float), 0),
}
_LIMITS = {"step": 1 << 53, "rank": 1 << 24, "local_rank": 1 << 24, "world_size": 1 << 24}
_STEP_MAX_S = 86_400.0
_TEXTS = ("uuid", "framework")
_JOB_KINDS = ("slurm", "k8s")


def heartbeat_dirs(env: Mapping[str, str] | None = None) -> list[str]:
    """Where heartbeat files may lie, for a reader on this host (see the module doc)."""
    if env is None:
        env = os.environ
    chosen = env.get(ENV_DIR)
    if chosen:
        return [chosen]
    dirs = []
    own = env.get("XDG_RUNTIME_DIR")
    if own:
        dirs.append(os.path.join(own, "gputui", "heartbeat"))
    dirs.extend(sorted(glob.glob("/run/user/*/gputui/heartbeat")))
    dirs.extend(sorted(glob.glob(os.path.join(tempfile.gettempdir(), "gputui-*", "heartbeat"))))
    seen = set()
    out = []
    for d in dirs:
        real = os.path.realpath(d)
        if real not in seen:
            seen.add(real)
            out.append(d)
    return out


def _alive_owner(pid: int) -> int | None:
    """The uid owning process `pid`, -1 where it is alive but /proc cannot say; None if gone."""
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except FileNotFoundError:
        pass
    except OSError:
        return -1
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except OSError:
        return -1  # alive, another user's
    return -1


def parse(raw: bytes, pid: int, now: float, max_age_s: float = MAX_AGE_S) -> Json | None:
    """The heartbeat a file of process `pid` holds, as the protocol's fields; None when the
    file is not a good heartbeat of that process, or is older than `max_age_s`."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("v") != 1 or doc.get("pid") != pid:
        return None
    t = doc.get("t")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < 1e11:
        return None
    if now - t > max_age_s:
        return None
    out: Json = {"pid": pid, "t": round(float(t), 3)}
    for key, (kinds, low) in _NUMBERS.items():
        value = doc.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, kinds) or value < low:
            return None
        if key.endswith("_s"):
            if not 0 < value <= _STEP_MAX_S:
                return None
            out[key] = round(float(value), 6)
        else:
            if value > _LIMITS[key]:
                return None
            out[key] = value
    if "step" not in out:
        return None
    for key in _TEXTS:
        value = doc.get(key)
        if isinstance(value, str) and value:
            out[key] = value[:_TEXT_MAX]
    kind, job_id = doc.get("job_kind"), doc.get("job_id")
    if kind in _JOB_KINDS and isinstance(job_id, str) and 0 < len(job_id) <= _TEXT_MAX:
        # The process's own word for its job (SLURM_JOB_ID in its environment).
        out["job"] = {"kind": kind, "id": job_id, "source": "environ"}
    return out


class HeartbeatReader:
    """Reads the heartbeat files of this host's training processes (see the module doc).

    `simulated`: a simulated host's own heartbeats, listed after the files' (the simulator's
    jobs have no processes to write files)."""

    def __init__(
        self,
        dirs: list[str] | None = None,
        simulated: Callable[[], list[Json]] | None = None,
        max_age_s: float = MAX_AGE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dirs = dirs
        self.simulated = simulated
        self.max_age_s = max_age_s
        self.clock = clock

    def __call__(self) -> list[Json]:
        beats = self.read_files()
        if self.simulated is not None:
            beats.extend(self.simulated())
        return beats

    def read_files(self) -> list[Json]:
        now = self.clock()
        out: list[Json] = []
        budget = MAX_FILES
        for d in self.dirs if self.dirs is not None else heartbeat_dirs():
            try:
                names = sorted(os.listdir(d))
            except OSError:
                continue  # absent, or another user's runtime dir
            for name in names:
                if budget <= 0:
                    return out
                stem, dot, ext = name.partition(".")
                if ext != "json" or not dot or not stem.isdigit():
                    continue
                budget -= 1
                beat = self._read(os.path.join(d, name), int(stem), now)
                if beat is not None:
                    out.append(beat)
        return out

    def _read(self, path: str, pid: int, now: float) -> Json | None:
        owner = _alive_owner(pid)
        if owner is None:
            return None  # the process ended; its file is left for its owner to remove
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if st.st_mode & 61440 != 32768:  # a regular file only
                return None
            if owner >= 0 and st.st_uid != owner:
                return None  # a file speaking for another user's process
            raw = os.read(fd, MAX_FILE_BYTES + 1)
        except OSError:
            return None
        finally:
            os.close(fd)
        if len(raw) > MAX_FILE_BYTES:
            return None
        return parse(raw, pid, now, self.max_age_s)
