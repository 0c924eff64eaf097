"""Ends a GPU process on its host: SIGTERM, then SIGKILL after a grace (gputui/ops/kill.py).

Not imported by gputui: its source is run on the host by the interpreter the agent uses
(`python3 -c SOURCE PID STARTED GRACE`), so it keeps to the standard library and Python 3.8.
The process is signalled only while it is the one the operator chose: the same pid started at
the same time (within 1.5 s: /proc/stat's boot time moves by a second on some kernels), so a
pid the kernel gave to another process since is never signalled. `-` as STARTED skips that
check (the agent could not read the start). A zombie counts as ended: it holds no GPU memory.
Exit status: 0 ended, 3 not running or another process now (nothing sent), 4 not permitted,
5 still running after SIGKILL.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def started(pid: int) -> tuple[float, bool] | None:
    """When `pid` started (Unix seconds), and whether it is a zombie; None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        with open("/proc/stat", "rb") as f:
            btime = [ln for ln in f.read().splitlines() if ln.startswith(b"btime ")]
        when = int(btime[0].split()[1]) + int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return when, fields[0] == b"Z"
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int, start: float | None) -> bool:
    seen = started(pid)
    if seen is None or seen[1]:
        return False
    return start is None or abs(seen[0] - start) < 1.5


def wait_end(pid: int, start: float | None, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid, start):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def main(argv: list[str]) -> int:
    pid, start, grace = int(argv[0]), None if argv[1] == "-" else float(argv[1]), float(argv[2])
    if pid <= 1 or not alive(pid, start):
        print(f"gputui: pid {pid} is not running, or is another process now: nothing sent")
        return 3
    t0 = time.monotonic()
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            print(f"gputui: pid {pid} ended")
            return 0
        except PermissionError:
            print(f"gputui: not permitted to signal pid {pid} ({sig.name})")
            return 4
        print(f"gputui: {sig.name} sent to pid {pid}", flush=True)
        if wait_end(pid, start, wait):
            print(f"gputui: pid {pid} ended {time.monotonic() - t0:.1f} s after SIGTERM")
            return 0
        if sig == signal.SIGTERM:
            print(f"gputui: pid {pid} still running {grace:g} s after SIGTERM")
    print(f"gputui: pid {pid} still running after SIGKILL (stuck in the kernel?)")
    return 5


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
