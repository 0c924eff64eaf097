"""Private scratch directories of the demo: made 0700, marked with the pid of the process that
owns them, and removed at a later start once that process is gone.

The demo keeps private keys, an ssh_config, a journal and logs in them. A run that ends in an
orderly way removes its own; one that was killed (SIGKILL, a crash, a power cut) cannot, so
every start sweeps up what dead runs of the same user left behind. A directory of another
user, or of a process still alive, is never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

DEMO_PREFIX = "gputui-demo-"  # the demo fleet's directory, and (gputui-demo-journal-) its journal
PID_FILE = "pid"
# A directory without a pid file is being made right now (the file follows within
# microseconds) or was left by a gputui that wrote none; only the latter is old.
UNMARKED_GRACE_S = 3600.0


def make_scratch(prefix: str = DEMO_PREFIX) -> Path:
    """A new private directory (0700) in the temporary directory, marked as this process's."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o700)  # mkdtemp's mode already; said again because keys go in here
    (path / PID_FILE).write_text(f"{os.getpid()}\n")
    return path


def remove_scratch(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def remove_stale(prefix: str = DEMO_PREFIX, parent: Path | None = None) -> list[Path]:
    """Remove this user's scratch directories whose owning process is gone; those removed."""
    parent = parent if parent is not None else Path(tempfile.gettempdir())
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    uid = os.getuid()
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
            continue  # a link, a file, another user's: not ours to judge
        path = Path(entry.path)
        if _abandoned(path, st.st_mtime):
            remove_scratch(path)
            removed.append(path)
    return removed


def _abandoned(path: Path, mtime: float) -> bool:
    try:
        pid = int((path / PID_FILE).read_text().strip())
    except FileNotFoundError:
        return time.time() - mtime > UNMARKED_GRACE_S
    except (OSError, ValueError):
        return False  # unreadable or odd: keep it
    return pid > 0 and not _alive(pid)


def _alive(pid: int) -> bool:
    """Whether a process `pid` exists (any user's: a signal we may not send still finds it)."""
    with contextlib.suppress(PermissionError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
    return True
