"""What the process table shows of a GPU process besides its owner, read from /proc on the host.

NVML names a GPU's processes by pid, name and GPU memory. The rest is the host's view of each
process, as nvitop and htop read it (docs/protocol.md, "What a process is doing"):

- `cmdline`: /proc/PID/cmdline, its NUL-separated arguments joined by spaces, at most
  CMDLINE_MAX characters (the collector refuses a longer one);
- `started_t`: when the process started, in Unix seconds on the host's clock: the boot time
  (`btime` in /proc/stat) plus its start in clock ticks since boot (field 22 of its stat);
- `cpu_pct`: the CPU time it used (utime + stime, fields 14 and 15 of its stat) between two
  reads of it, over the time between them, in percent of one core (so 250 is two and a half
  cores); absent at the first read of a process, which has nothing to compare with;
- `rss_mib`: its resident memory (`VmRSS` of /proc/PID/status).

ProcReader is the agent's default hook for a GPU process (NvmlBackend.attribute_process): the
owner as attribution.py reads it, and these. The command line is read once per process, in the
same cache entry as the owner (keyed on the start time, so a reused pid is read afresh); the
CPU time and resident memory are read at each read of the processes. Every file is read with a
size cap and parsed as untrusted text: nothing here raises for what a hostile process can put
in its own files (its command line, its name in stat).
"""

from __future__ import annotations

import os
import time
from typing import Callable

from .attribution import KUBELET_ROOT, PROC_ROOT, Json, ProcAttribution, Seen

CMDLINE_MAX = 4096  # characters: core/model.py GpuProcess.cmdline
# UTF-8 takes at most 4 bytes a character: this many bytes give CMDLINE_MAX characters, and a
# command line of megabytes (the kernel allows a quarter of the stack limit) is not read whole.
_CMDLINE_BYTES = 4 * CMDLINE_MAX
_SMALL_FILE = 64 * 1024
_CUT = "..."  # ASCII, as everything the agent writes
# Two reads of one process closer than this are one read: a process on several GPUs is listed
# once per GPU in a sample, and its CPU time over a few microseconds would be noise.
SAME_READ_S = 0.2
_CPU_PCT_MAX = 100_000.0  # core/model.py: a thousand cores
_MIB_MAX = float(1 << 30)  # core/model.py MiB
_UNIX_TIME_MAX = 1e11  # core/model.py UnixTime


def _read(path: str, limit: int) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except (OSError, ValueError):
        return None


# -- parsing: pure functions of a file's bytes ---------------------------------------------------


def _stat_fields(stat: bytes) -> list[bytes]:
    """The fields of /proc/PID/stat from the state on (field 3 is item 0): the name before it
    may hold spaces and parentheses, so the fields are counted from the last `)`."""
    _, sep, rest = stat.rpartition(b")")
    return rest.split() if sep else []


def cpu_ticks(stat: bytes) -> int | None:
    """utime + stime (fields 14 and 15 of /proc/PID/stat): the CPU time the process used, in
    clock ticks. Its children's time (fields 16, 17) is theirs, as top counts it."""
    fields = _stat_fields(stat)
    if len(fields) < 13:
        return None
    utime, stime = fields[11], fields[12]
    if not (utime.isdigit() and stime.isdigit()) or len(utime) > 20 or len(stime) > 20:
        return None
    return int(utime) + int(stime)


def rss_mib(status: bytes) -> float | None:
    """`VmRSS:  123456 kB` of /proc/PID/status in MiB; None for a kernel thread or a zombie,
    which have none."""
    for line in status.splitlines():
        if line.startswith(b"VmRSS:"):
            parts = line.split()
            if len(parts) == 3 and parts[2] == b"kB" and parts[1].isdigit() and len(parts[1]) < 16:
                mib = int(parts[1]) / 1024.0
                return round(mib, 1) if mib <= _MIB_MAX else None
            return None
    return None


def command_line(raw: bytes, limit: int = CMDLINE_MAX) -> str | None:
    """The arguments of /proc/PID/cmdline (each ended by a NUL) joined by spaces, at most
    `limit` characters; None when there are none (a kernel thread, a zombie).

    A process may rewrite its own command line (setproctitle does) without NULs between
    words: it is then one argument, shown as written. Control characters are left for the
    collector, which strips every string a host sends."""
    args = [a for a in raw.rstrip(b"\0").split(b"\0")]
    text = " ".join(a.decode("utf-8", "replace") for a in args).strip()
    if not text:
        return None
    if len(text) > limit:
        text = text[: limit - len(_CUT)] + _CUT
    return text


def boot_time(proc_stat: bytes) -> float | None:
    """`btime` of /proc/stat: when the host booted, in Unix seconds."""
    for line in proc_stat.splitlines():
        if line.startswith(b"btime "):
            value = line[6:].strip()
            return float(value) if value.isdigit() and len(value) < 16 else None
    return None


def _clock_ticks() -> int | None:
    try:
        ticks = os.sysconf("SC_CLK_TCK")
    except (AttributeError, ValueError, OSError):
        return None
    return ticks if ticks > 0 else None


# -- the reader -----------------------------------------------------------------------------------


class _Usage:
    """What ProcReader keeps of a process between reads: its CPU time when last read, and the
    fields that read gave (returned again for a second read within SAME_READ_S)."""

    __slots__ = ("at", "fields", "ticks")

    def __init__(self, ticks: int, at: float, fields: Json) -> None:
        self.ticks = ticks
        self.at = at
        self.fields = fields


class ProcReader(ProcAttribution):
    """A GPU process's owner (attribution.py) and what it is doing: command line, start time,
    CPU use and resident memory. Never raises; a field it cannot read is left out."""

    def __init__(
        self,
        proc: str = PROC_ROOT,
        kubelet: str = KUBELET_ROOT,
        node_name: str | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        clock_ticks: int | None = None,
    ) -> None:
        super().__init__(proc, kubelet, node_name)
        self._monotonic = monotonic
        self._ticks_per_s = clock_ticks if clock_ticks is not None else _clock_ticks()
        # Read when first needed: the boot time does not change while the host runs.
        self._boot: float | None = None
        self._boot_read = False

    def _read_fields(self, base: str) -> Json:
        fields = super()._read_fields(base)
        self._read_command_line(base, fields)
        return fields

    @staticmethod
    def _read_command_line(base: str, fields: Json) -> None:
        raw = _read(os.path.join(base, "cmdline"), _CMDLINE_BYTES)
        text = command_line(raw) if raw is not None else None
        if text is not None:
            fields["cmdline"] = text

    def _booted(self) -> float | None:
        if not self._boot_read:
            self._boot_read = True
            raw = _read(os.path.join(self.proc, "stat"), _SMALL_FILE)
            self._boot = boot_time(raw) if raw is not None else None
        return self._boot

    def _current(self, seen: Seen, base: str, stat: bytes) -> Json:
        now = self._monotonic()
        usage: _Usage | None = seen.extra
        if usage is not None and now - usage.at < SAME_READ_S:
            return usage.fields
        if "cmdline" not in seen.fields:
            # A process read while it execs has no arguments yet (the kernel sets them up
            # after it closes the parent's close-on-exec pipes): ask again until it has.
            self._read_command_line(base, seen.fields)
        fields: Json = {}
        hz = self._ticks_per_s
        booted = self._booted()
        if hz is not None and booted is not None:
            started = booted + int(seen.started) / hz
            if started <= _UNIX_TIME_MAX:
                fields["started_t"] = round(started, 2)
        ticks = cpu_ticks(stat)
        if ticks is not None and hz is not None and usage is not None and ticks >= usage.ticks:
            pct = 100.0 * (ticks - usage.ticks) / hz / (now - usage.at)
            fields["cpu_pct"] = round(min(pct, _CPU_PCT_MAX), 1)
        status = _read(os.path.join(base, "status"), _SMALL_FILE)
        rss = rss_mib(status) if status is not None else None
        if rss is not None:
            fields["rss_mib"] = rss
        if ticks is not None:
            seen.extra = _Usage(ticks, now, fields)
        return fields
