"""Time to first output on this machine: `gputui report` and bare `gputui`'s first paint.

The question nvitop answers in one command, "how are this machine's GPUs?", asked of gputui:

- report: `gputui report` on a hosts file of `localhost` alone, read by the local agent with
  `--backend` (sim here: a simulated 8-GPU host; nvml on a GPU host), from the command to its
  exit: wall time, time to its first byte of output, and the CPU of gputui and its agent
  together (the rusage of the process and the children it reaped);
- nvitop: `nvitop --once` the same way, where nvitop is installed (an optional benchmark
  dependency: it needs a real GPU to print anything useful);
- first paint: bare `gputui` with no hosts file, this machine read with the same backend, in a
  terminal of 120x40, from the command to this machine's GPUs on screen (the per-GPU view: a
  panel per GPU with its meters, and the process table), and gputui's own CPU until then. The
  screen is read with tmux, or, without tmux, from the bytes a pseudo-terminal receives.

Each is run --runs times (interleaved, so a burst of load elsewhere hits every variant alike)
and reported as min / median / max. With --baseline-src DIR (a checkout of an earlier
revision, e.g. a `git worktree`), the same runs of that revision go beside this one's: before
and after, measured in one run, with this interpreter and its packages (--src DIR measures
another tree as after, such as a clean worktree of the newest commit).

--trace runs the report once more per revision with a timeline on stderr: the interpreter up,
each heavy library's import starting, every subprocess and thread started, the agent's first
bytes and first sample, the monitor settled, the first output, the exit; with CPU and peak
threads at the end. It is how docs/benchmarks.md explains where the time goes.

    python benchmarks/startup.py [--runs 7] [--backend sim|nvml|auto] [--baseline-src DIR]
        [--no-tui] [--trace] [--out benchmarks/results/startup.json]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import os
import platform
import re
import select
import shlex
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COLS, ROWS = 120, 40
POLL_S = 0.025  # how often the screen is looked at: the first-paint times' resolution
TIMEOUT_S = 60.0
GPUTUI = ["-m", "gputui.cli"]


@dataclass(frozen=True)
class Revision:
    """The gputui a run imports: this checkout, or the source tree of an earlier revision."""

    label: str
    src: Path

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        """A fresh account's environment: no hosts file, no journal, this revision's source."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("GPUTUI_HOSTS", "GPUTUI_JOURNAL", "GPUTUI_LOCAL_BACKEND", "TEXTUAL_DRIVER")
        }
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_STATE_HOME=str(home / ".state"),
            # Before the installed (editable) gputui: each revision runs its own source.
            PYTHONPATH=str(self.src),
            **extra,
        )
        return env


def check_source(python: str, revision: Revision, home: Path) -> None:
    """Fail unless `revision` runs the gputui of its own tree (an installed one could win)."""
    found = subprocess.run(
        [python, "-c", "import gputui; print(gputui.__file__)"],
        env=revision.env(home),
        cwd=home,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(found).resolve().is_relative_to(revision.src):
        raise SystemExit(f"{revision.label}: gputui comes from {found}, not {revision.src}")


@dataclass
class Run:
    wall_s: float
    first_output_s: float | None
    cpu_s: float
    exit_code: int


@dataclass
class Paint:
    wall_s: float
    cpu_s: float | None  # gputui's own process, until its GPUs were on screen


@dataclass
class Series:
    """Every run of one variant, and the figures that summarise them."""

    name: str
    runs: list[dict[str, Any]] = field(default_factory=list)

    def add(self, run: Run | Paint) -> None:
        self.runs.append(asdict(run))

    def summary(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for key in self.runs[0] if self.runs else ():
            values = [r[key] for r in self.runs if isinstance(r[key], (int, float))]
            if values and key != "exit_code":
                out[key] = {
                    "min": min(values),
                    "median": statistics.median(values),
                    "max": max(values),
                }
        return out


def hosts_file(directory: Path, backend: str) -> Path:
    """`hosts = ["localhost"]` read with `backend`: what `gputui init` writes, and a backend."""
    path = directory / "hosts.toml"
    path.write_text(f'hosts = ["localhost"]\n\n[defaults]\nbackend = "{backend}"\n')
    return path


def timed(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    """Run `argv` to its end with its output in a pipe, as cron or a script would."""
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=cwd
    )
    assert proc.stdout is not None
    first: float | None = None
    fd = proc.stdout.fileno()
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        if first is None:
            first = time.monotonic() - started
    # wait4, not wait: the rusage of the process and of every child it reaped (the agent).
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    return Run(
        wall_s=round(wall, 4),
        first_output_s=None if first is None else round(first, 4),
        cpu_s=round(usage.ru_utime + usage.ru_stime, 4),
        exit_code=proc.returncode,
    )


def nvitop_argv() -> list[str] | None:
    """How to run `nvitop --once` here, or None where nvitop is not installed."""
    if shutil.which("nvitop"):
        return ["nvitop", "--once"]
    with contextlib.suppress(ImportError):
        import importlib.util

        if importlib.util.find_spec("nvitop") is not None:
            return [sys.executable, "-m", "nvitop", "--once"]
    return None


# -- first paint ----------------------------------------------------------------------------

_ESCAPE = re.compile(
    rb"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|.)"
)


def gpus_on_screen(text: str) -> bool:
    """This machine's GPUs as the per-GPU view draws them: the first GPU's panel with its name,
    a utilisation meter, and the process table's header."""
    return (
        re.search(r"GPU0 \S", text) is not None
        and re.search(r"util +\[[^\]]*\d+%\]", text) is not None
        and re.search(r"GPU +PID +USER", text) is not None
    )


def _cpu_s(pid: int) -> float | None:
    """User and system CPU seconds of process `pid` so far (Linux /proc), None when gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class TmuxScreen:
    """Bare gputui in a tmux pane of COLS x ROWS, its screen read as a person would see it."""

    def __init__(self, tmux: str, socket: Path) -> None:
        self.tmux, self.socket = tmux, socket

    def _run(self, *args: str) -> str:
        out = subprocess.run(
            [self.tmux, "-S", str(self.socket), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout

    def paint(self, argv: list[str], env: dict[str, str]) -> Paint:
        diff = {k: v for k, v in env.items() if os.environ.get(k) != v}
        unset = [f"-u{k}" for k in os.environ if k not in env]
        line = shlex.join(["exec", "env", *unset, *(f"{k}={v}" for k, v in diff.items()), *argv])
        started = time.monotonic()
        where = env["HOME"]  # not this checkout: `python -m` puts the directory first on the path
        self._run(
            "new-session", "-d", "-s", "paint", "-c", where, "-x", str(COLS), "-y", str(ROWS), line
        )  # fmt: skip
        pid = int(self._run("display-message", "-p", "-t", "paint", "#{pane_pid}"))
        try:
            while True:
                screen = self._run("capture-pane", "-p", "-t", "paint")
                if gpus_on_screen(screen):
                    return Paint(round(time.monotonic() - started, 3), _cpu_s(pid))
                if time.monotonic() - started > TIMEOUT_S:
                    raise RuntimeError(f"no GPUs on screen after {TIMEOUT_S:g} s:\n{screen}")
                time.sleep(POLL_S)
        finally:
            with contextlib.suppress(subprocess.SubprocessError):
                self._run("send-keys", "-t", "paint", "q")
            _wait_gone(pid)
            with contextlib.suppress(subprocess.SubprocessError):
                self._run("kill-server")


class PtyScreen:
    """Without tmux: the bytes gputui writes to a pseudo-terminal, escape sequences removed.
    Text drawn in one run of a style stays together, which is what gpus_on_screen looks for."""

    def paint(self, argv: list[str], env: dict[str, str]) -> Paint:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        env = dict(env, TERM=env.get("TERM", "xterm-256color"))
        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=env["HOME"],  # not this checkout: `python -m` puts the directory first on the path
            start_new_session=True,
        )
        os.close(slave)
        seen = b""
        try:
            while True:
                ready, _, _ = select.select([master], [], [], POLL_S)
                if ready:
                    with contextlib.suppress(OSError):
                        seen += os.read(master, 1 << 16)
                    if gpus_on_screen(_ESCAPE.sub(b" ", seen).decode("utf-8", "replace")):
                        return Paint(round(time.monotonic() - started, 3), _cpu_s(proc.pid))
                if proc.poll() is not None or time.monotonic() - started > TIMEOUT_S:
                    tail = _ESCAPE.sub(b" ", seen[-2000:]).decode("utf-8", "replace")
                    raise RuntimeError(f"no GPUs on screen (exit {proc.returncode}): {tail}")
        finally:
            with contextlib.suppress(OSError):
                os.write(master, b"q")
            _drain_until_exit(master, proc)
            os.close(master)


def _drain_until_exit(master: int, proc: subprocess.Popen[bytes]) -> None:
    """Read what the app still writes (a full pty would block its exit) until it ends."""
    deadline = time.monotonic() + 15
    while proc.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            with contextlib.suppress(OSError):
                os.read(master, 1 << 16)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def _wait_gone(pid: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _cpu_s(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)


# -- the timeline (--trace) -------------------------------------------------------------------

# Runs in the gputui process before gputui: it only watches (audit hooks, a meta-path finder
# that wraps a few of gputui's functions once their modules are loaded) and writes one
# `TRACE <ms since the command> <what>` line on stderr per event.
TRACE_PRELUDE = r"""
import atexit, functools, os, resource, sys, threading, time
T0 = float(os.environ["STARTUP_TRACE_T0"])
OUT = sys.stderr
if os.environ.get("STARTUP_TRACE_OUT"):
    OUT = open(os.environ["STARTUP_TRACE_OUT"], "a")
def log(what):
    OUT.write("TRACE %.1f %s\n" % ((time.monotonic() - T0) * 1000, what)); OUT.flush()
log("interpreter up, site imported")
HEAVY = ("asyncssh", "cryptography", "numpy", "scipy", "torch", "textual", "rich", "msgspec",
         "typer", "pydantic", "pynvml", "sqlite3")
seen = set()
peak = [1]
def hook(event, args):
    if event == "import" and args[0] in HEAVY and args[0] not in seen:
        seen.add(args[0]); log("import %s starts" % args[0])
    elif event == "subprocess.Popen":
        argv = args[1] if isinstance(args[1], (list, tuple)) else [args[1]]
        log("subprocess %s" % " ".join(str(a) for a in argv[:4]))
sys.addaudithook(hook)
start = threading.Thread.start
def traced_start(self):
    log("thread %s starts" % self.name); start(self)
    peak[0] = max(peak[0], threading.active_count())
threading.Thread.start = traced_start
def first_call(cls, name, what, when=lambda result: True):
    orig = getattr(cls, name, None)
    if orig is None: return
    done = [False]
    @functools.wraps(orig)  # Textual reads a handler's parameters
    def traced(self, *a, **k):
        result = orig(self, *a, **k)
        if not done[0] and when(result):
            done[0] = True; log(what)
        return result
    setattr(cls, name, traced)
def first_lines(module):
    cls = module.LineSplitter; init = cls.__init__
    def traced_init(self, on_line, *a, **k):
        n = [0]
        def on(line):
            n[0] += 1
            if n[0] <= 2:
                kind = line.split(b'"type":"', 1)[-1].split(b'"', 1)[0].decode(errors="replace")
                log("agent line %d: %s (%d bytes)" % (n[0], kind, len(line)))
            on_line(line)
        init(self, on, *a, **k)
    cls.__init__ = traced_init
def monitor(module):
    first_call(module.FleetMonitor, "settled", "monitor settled (every host answered)", bool)
    first_call(module.FleetMonitor, "publish", "monitor published its first snapshot")
def app(module):
    log("gputui.tui.app imported")
    first_call(module.GpuTuiApp, "on_mount", "app mounted")
    first_call(module.GpuTuiApp, "_start", "app on screen: monitor starts")
    first_call(module.GpuTuiApp, "on_fleet_updated", "app applied its first snapshot")
    first_call(module.GpuTuiApp, "open_gpu_view", "app opens the per-GPU view")
WATCH = {"gputui.collect.lines": first_lines, "gputui.collect.monitor": monitor,
         "gputui.tui.app": app,
         "gputui.cli.commands": lambda m: log("gputui.cli.commands imported")}
class After:
    def find_spec(self, name, path=None, target=None):
        if name not in WATCH: return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"): continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                run = spec.loader.exec_module
                def exec_module(module, run=run, then=WATCH[name]):
                    run(module); then(module)
                spec.loader.exec_module = exec_module
                return spec
        return None
sys.meta_path.insert(0, After())
class Out:
    def __init__(self, f): self.f = f; self.first = True
    def write(self, s):
        if self.first and s: self.first = False; log("first output")
        return self.f.write(s)
    def __getattr__(self, n): return getattr(self.f, n)
sys.stdout = Out(sys.stdout)
def at_exit():
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    log("exit: CPU %.2f s here (user %.2f, system %.2f), %.2f s in reaped children; "
        "%d modules; at most %d threads" % (me.ru_utime + me.ru_stime, me.ru_utime, me.ru_stime,
        kids.ru_utime + kids.ru_stime, len(sys.modules), peak[0]))
atexit.register(at_exit)
sys.argv[0] = "gputui"
from gputui.cli import main
main()
"""


def trace_report(python: str, revision: Revision, hosts: Path, home: Path) -> list[str]:
    """One traced `gputui report`: its timeline, then the wall time of the whole."""
    t0 = time.monotonic()
    env = revision.env(home, STARTUP_TRACE_T0=repr(t0))
    proc = subprocess.run(
        [python, "-c", TRACE_PRELUDE, "report", "--hosts", str(hosts)],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    wall_ms = (time.monotonic() - t0) * 1000
    lines = [ln[len("TRACE ") :] for ln in proc.stderr.splitlines() if ln.startswith("TRACE ")]
    return [*lines, f"{wall_ms:.1f} process ended (exit {proc.returncode})"]


def trace_paint(
    python: str, revision: Revision, backend: str, screen: TmuxScreen | PtyScreen, home: Path
) -> list[str]:
    """One traced first paint of bare gputui: its timeline, with the moment its GPUs were on
    screen (the timeline goes to a file: the app owns the terminal)."""
    out = home / "trace.txt"
    t0 = time.monotonic()
    env = revision.env(
        home, GPUTUI_LOCAL_BACKEND=backend, STARTUP_TRACE_T0=repr(t0), STARTUP_TRACE_OUT=str(out)
    )
    shot = screen.paint([python, "-c", TRACE_PRELUDE], env)
    lines = [(float(ms), what) for ms, what in _trace_lines(out)]
    lines.append((shot.wall_s * 1000, f"GPUs on screen (gputui's CPU so far {shot.cpu_s} s)"))
    return [f"{ms:.1f} {what}" for ms, what in sorted(lines, key=lambda x: x[0])]


def _trace_lines(path: Path) -> list[tuple[str, str]]:
    text = path.read_text() if path.exists() else ""
    return [
        tuple(ln[len("TRACE ") :].split(" ", 1))  # type: ignore[misc]
        for ln in text.splitlines()
        if ln.startswith("TRACE ")
    ]


# -- the runs ---------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_home(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


def paint_reader() -> tuple[str, Callable[[Path], TmuxScreen | PtyScreen]]:
    tmux = shutil.which("tmux")
    if tmux:
        return "tmux", lambda home: TmuxScreen(tmux, home / "tmux.sock")
    return "pty", lambda _home: PtyScreen()


def ratios(
    results: dict[str, dict[str, dict[str, float]]], over: str
) -> dict[str, dict[str, float]]:
    """Median wall and CPU of each variant against `over`'s (nvitop, or the revision before)."""
    base = results.get(over)
    if not base:
        return {}
    out: dict[str, dict[str, float]] = {}
    for name, summary in results.items():
        if name == over:
            continue
        out[name] = {
            key: round(summary[key]["median"] / base[key]["median"], 2)
            for key in ("wall_s", "cpu_s")
            if key in summary and key in base and base[key]["median"] > 0
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--backend", default="sim", choices=["sim", "nvml", "auto", "smi"])
    parser.add_argument("--baseline-src", type=Path, help="source tree of the revision before")
    parser.add_argument(
        "--src", type=Path, default=ROOT, help="source tree measured as after (this checkout)"
    )
    parser.add_argument("--no-tui", action="store_true", help="leave the first paint out")
    parser.add_argument("--trace", action="store_true", help="print a timeline of one report")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    python = sys.executable
    revisions = [Revision("after", args.src.resolve())]
    if args.baseline_src is not None:
        revisions.insert(0, Revision("before", args.baseline_src.resolve()))
    nvitop = nvitop_argv()
    how, screen_for = paint_reader()
    report: dict[str, Series] = {r.label: Series(r.label) for r in revisions}
    if nvitop:
        report["nvitop"] = Series("nvitop --once")
    paint: dict[str, Series] = {r.label: Series(r.label) for r in revisions}

    with fresh_home("gputui-startup-") as home:
        hosts = hosts_file(home, args.backend)
        for rev in revisions:
            check_source(python, rev, home)
        for i in range(args.runs):
            for rev in revisions:
                argv = [python, *GPUTUI, "report", "--hosts", str(hosts)]
                # In a directory of its own: `python -m` puts the current one first on the path.
                run = timed(argv, rev.env(home), cwd=home)
                report[rev.label].add(run)
                print(f"report {rev.label} {i + 1}: {run}", file=sys.stderr)
            if nvitop:
                report["nvitop"].add(timed(nvitop))
            if args.no_tui:
                continue
            for rev in revisions:
                with fresh_home("gputui-paint-") as paint_home:
                    env = rev.env(paint_home, GPUTUI_LOCAL_BACKEND=args.backend)
                    shot = screen_for(paint_home).paint([python, *GPUTUI], env)
                paint[rev.label].add(shot)
                print(f"first paint {rev.label} {i + 1}: {shot}", file=sys.stderr)
        traces: dict[str, list[str]] = {}
        if args.trace:
            for rev in revisions:
                traces[f"report, {rev.label}"] = trace_report(python, rev, hosts, home)
                if not args.no_tui:
                    with fresh_home("gputui-paint-") as paint_home:
                        screen = screen_for(paint_home)
                        traces[f"first paint, {rev.label}"] = trace_paint(
                            python, rev, args.backend, screen, paint_home
                        )

    report_summary = {name: s.summary() for name, s in report.items()}
    paint_summary = {name: s.summary() for name, s in paint.items() if s.runs}
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_1min": round(os.getloadavg()[0], 2),
        },
        "backend": args.backend,
        "runs": args.runs,
        "first_paint_read_with": None if args.no_tui else how,
        "report": report_summary,
        "report_runs": {name: s.runs for name, s in report.items()},
        "report_over_nvitop": ratios(report_summary, "nvitop"),
        "report_over_before": ratios(report_summary, "before"),
        "first_paint_over_before": ratios(paint_summary, "before"),
        "first_paint": paint_summary,
        "first_paint_runs": {name: s.runs for name, s in paint.items() if s.runs},
        "traces": traces,
    }
    print_result(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _fmt(stats: dict[str, float]) -> str:
    return " / ".join(f"{stats[k]:.3f}" for k in ("min", "median", "max"))


def print_result(result: dict[str, Any]) -> None:
    machine = result["machine"]
    print(
        f"{result['date']}  {machine['cpus']} CPUs, load {machine['load_1min']}, "
        f"backend {result['backend']}, {result['runs']} runs (min / median / max, seconds)"
    )
    for title, key, columns in (
        ("gputui report", "report", ("wall_s", "first_output_s", "cpu_s")),
        ("first paint (bare gputui)", "first_paint", ("wall_s", "cpu_s")),
    ):
        if not result[key]:
            continue
        print(f"\n{title}:")
        for name, summary in result[key].items():
            cells = "  ".join(f"{c} {_fmt(summary[c])}" for c in columns if c in summary)
            print(f"  {name:8} {cells}")
    print()
    for key, what in (
        ("report_over_nvitop", "report {} / nvitop --once"),
        ("report_over_before", "report {} / before"),
        ("first_paint_over_before", "first paint {} / before"),
    ):
        for name, ratio in result[key].items():
            said = what.format(name)
            print(f"{said}: wall x{ratio.get('wall_s')}, CPU x{ratio.get('cpu_s')}")
    for label, lines in result["traces"].items():
        print(f"\ntimeline ({label}), ms since the command:")
        for line in lines:
            print(f"  {line}")


if __name__ == "__main__":
    raise SystemExit(main())
