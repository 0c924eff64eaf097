"""The kernel log's XIDs: read with journalctl or dmesg, parse the driver's `NVRM: Xid` lines.

The driver writes one line per XID, in a format that has changed across releases:

    NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python3, GPU has fallen off the bus.
    NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.              (older, no pid)
    NVRM: Xid (PCI:0000:3b:00.0): 13, pid='<unknown>', name=<unknown>, Graphics ...
    NVRM: Xid (0000:3b:00): 31, Ch 00000010, intr 10000000. MMU Fault ...     (old, no PCI:)

and the reader in front of it adds its own time stamp: journalctl's `short-iso`
(`2024-05-14T10:21:07+0000 host kernel: ...`), dmesg's `--time-format iso`
(`2024-05-14T10:21:07,123456+00:00 ...`) or plain dmesg's seconds since boot (`[ 1234.5]`).

Reading can be refused (kernel.dmesg_restrict=1, a user outside systemd-journal/adm): that is
reported as a status the collector turns into a finding with the fix, never raised.
"""

from __future__ import annotations

import calendar
import os
import re
import subprocess
import time
from typing import Any, Callable, Dict, List, Tuple

RUN_TIMEOUT_S = 30.0  # journalctl over a large journal is slow, but must not hang triage
MAX_XIDS = 400  # the newest are kept: the triage line must stay far below 1 MiB
MAX_LINE_CHARS = 300

_XID = re.compile(
    r"NVRM: Xid \((?:PCI:)?(?P<pci>[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\.[0-7])?)\):"
    r"\s*(?P<xid>\d+),\s*(?P<rest>.*)$"
)
# Since R470 or so the driver names the process; the pid may be '<unknown>'.
_PID = re.compile(r"^pid=(?P<pid>'?<?[^,]*?>?'?),\s*")
_NAME = re.compile(r"^name=(?P<name>[^,]*),\s*")
_ISO = re.compile(
    r"^(?P<y>\d{4})-(?P<mo>\d\d)-(?P<d>\d\d)[T ](?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)"
    r"(?:[.,](?P<frac>\d+))?(?P<tz>Z|[+-]\d\d:?\d\d)?"
)
_BOOT = re.compile(r"^\[\s*(?P<secs>\d+\.\d+)\]")

# What the readers print when the account may not read the kernel log (LC_ALL=C).
_DENIED = (
    "operation not permitted",
    "permission denied",
    "insufficient permissions",
    # journalctl without access to the system journal succeeds, shows nothing and says this:
    "not seeing messages from other users and the system",
)

Json = Dict[str, Any]
Runner = Callable[[List[str]], Tuple[int, str, str]]


# -- parsing ----------------------------------------------------------------------------------


def parse_time(line: str, boot_t: float | None) -> float | None:
    """Unix seconds of a log line's stamp: ISO 8601 (with or without a zone; without one it
    is local time) or dmesg's `[seconds since boot]` when the boot time is known."""
    m = _ISO.match(line)
    if m:
        parts = [int(m.group(k)) for k in ("y", "mo", "d", "h", "mi", "s")]
        frac = float("0." + m.group("frac")) if m.group("frac") else 0.0
        tz = m.group("tz")
        if tz is None:
            return time.mktime((*parts, 0, 0, -1)) + frac  # type: ignore[arg-type]
        seconds = calendar.timegm((*parts, 0, 0, 0)) + frac
        if tz != "Z":
            sign = -1 if tz[0] == "-" else 1
            digits = tz[1:].replace(":", "")
            seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
        return seconds
    m = _BOOT.match(line)
    if m and boot_t is not None:
        return boot_t + float(m.group("secs"))
    return None


def parse_xid(line: str, boot_t: float | None = None) -> Json | None:
    """The XID of one kernel log line, as the protocol's KernelXid fields; None if it has none."""
    m = _XID.search(line)
    if m is None:
        return None
    rest = m.group("rest").strip()
    out: Json = {"xid": int(m.group("xid")), "pci_bus_id": m.group("pci").lower()}
    pm = _PID.match(rest)
    if pm:
        pid = pm.group("pid").strip("'")
        if pid.isdigit():
            out["pid"] = int(pid)
        rest = rest[pm.end() :]
        nm = _NAME.match(rest)
        if nm:
            name = nm.group("name").strip()
            if name and name != "<unknown>":
                out["process"] = name
            rest = rest[nm.end() :]
    out["text"] = rest
    t = parse_time(line, boot_t)
    if t is not None:
        out["t"] = round(t, 3)
    out["line"] = line.rstrip()[:MAX_LINE_CHARS]
    return out


def parse_log(
    lines: list[str], boot_t: float | None, since_t: float | None
) -> tuple[list[Json], int]:
    """The XIDs of `lines` from `since_t` on (a line without a time is kept), newest
    MAX_XIDS of them, and how many older ones were dropped to stay under the cap."""
    xids = []
    for line in lines:
        if "NVRM" not in line:
            continue
        xid = parse_xid(line, boot_t)
        if xid is None:
            continue
        if since_t is not None and xid.get("t") is not None and xid["t"] < since_t:
            continue
        xids.append(xid)
    dropped = max(0, len(xids) - MAX_XIDS)
    return xids[dropped:], dropped


# -- reading ----------------------------------------------------------------------------------


def run_command(argv: list[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of argv, in the C locale so messages can be matched.
    Raises OSError when the program is missing, subprocess.TimeoutExpired when it hangs."""
    env = dict(os.environ, LC_ALL="C", SYSTEMD_PAGER="", PAGER="cat")
    proc = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    return proc.returncode, out, err


class _Attempt:
    """One reader's outcome: its lines, or why it gave none."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.error_code: str | None = None
        self.error = ""

    def fail(self, code: str, text: str) -> _Attempt:
        self.error_code = code
        self.error = f"{self.name}: {text}"
        return self


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0][:200] if lines else ""


def _denied(*texts: str) -> bool:
    lowered = " ".join(texts).lower()
    return any(d in lowered for d in _DENIED)


def _try(name: str, argv: list[str], run: Runner) -> _Attempt:
    attempt = _Attempt(name)
    try:
        status, out, err = run(argv)
    except subprocess.TimeoutExpired:
        return attempt.fail("timeout", f"no answer within {RUN_TIMEOUT_S:g} s")
    except OSError as exc:
        return attempt.fail("not_found", f"cannot run: {exc.strerror or exc}")
    if status != 0:
        if _denied(err, out):
            return attempt.fail("permission_denied", _first_line(err) or _first_line(out))
        return attempt.fail("failed", f"exit status {status}: {_first_line(err) or 'no message'}")
    hint, lines = _split_hint(out)
    attempt.lines = [ln for ln in lines if ln.strip() and not ln.startswith("-- ")]
    # A success with nothing to show is a refusal when the reader says so (journalctl for a
    # user outside systemd-journal/adm); a warning beside real lines is not.
    if not attempt.lines and _denied(err, hint):
        return attempt.fail("permission_denied", _first_line(hint) or _first_line(err))
    return attempt


def _split_hint(out: str) -> tuple[str, list[str]]:
    """journalctl's access hint (a `Hint:` line and its indented continuation; some releases
    print it on stdout) apart from the log lines."""
    hint: list[str] = []
    lines: list[str] = []
    in_hint = False
    for line in out.splitlines():
        in_hint = line.startswith("Hint:") or (in_hint and line.startswith(" "))
        (hint if in_hint else lines).append(line)
    return "\n".join(hint), lines


def journalctl_argv(since_t: float | None) -> list[str]:
    # -k implies the current boot; --since narrows it. No --grep: it needs PCRE2 support that
    # not every build has, and the lines are filtered here anyway.
    argv = ["journalctl", "-k", "-o", "short-iso", "--no-pager"]
    if since_t is not None:
        argv += ["--since", f"@{int(since_t)}"]
    return argv


def read_system_log(
    since_t: float | None, boot_t: float | None, run: Runner = run_command
) -> tuple[Json, list[Json]]:
    """(KernelLogStatus fields, XIDs) from journalctl, else dmesg.

    journalctl comes first because the journal keeps what dmesg's ring buffer has already
    overwritten on a busy host. When journalctl gives no lines at all (no journald in a
    container, a journal without kernel messages) dmesg is asked too, and its answer used if
    it has one.
    """
    status: Json = {"since_t": since_t, "dmesg_restrict": dmesg_restricted()}
    journal = _try("journalctl", journalctl_argv(since_t), run)
    if journal.error_code is None and journal.lines:
        return _ok(status, "journalctl", journal.lines, None, since_t=None)
    dmesg = _try("dmesg", ["dmesg", "--time-format", "iso"], run)
    if dmesg.error_code == "failed":
        # busybox and util-linux before 2.26 lack --time-format: seconds since boot then.
        dmesg = _try("dmesg", ["dmesg"], run)
    if dmesg.error_code is None:
        return _ok(status, "dmesg", dmesg.lines, boot_t, since_t)
    if journal.error_code is None:  # journalctl worked and the window is empty
        return _ok(status, "journalctl", [], None, since_t=None)
    attempts = (journal, dmesg)
    codes = [a.error_code for a in attempts]
    code = next(
        (c for c in ("permission_denied", "timeout", "failed", "not_found") if c in codes),
        "failed",
    )
    status.update(
        source="none",
        readable=False,
        error_code=code,
        error="; ".join(a.error for a in attempts),
    )
    return status, []


def _ok(
    status: Json, source: str, lines: list[str], boot_t: float | None, since_t: float | None
) -> tuple[Json, list[Json]]:
    xids, dropped = parse_log(lines, boot_t, since_t)
    status.update(source=source, readable=True, lines=len(lines), xids_dropped=dropped or None)
    return status, xids


def dmesg_restricted(path: str = "/proc/sys/kernel/dmesg_restrict") -> bool | None:
    """kernel.dmesg_restrict: when 1, only CAP_SYSLOG may read the kernel ring buffer."""
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip() == "1"
    except (OSError, ValueError):
        return None
