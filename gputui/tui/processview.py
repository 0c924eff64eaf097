"""What the per-GPU view's process table shows: one row of text cells per process and GPU, its
sort orders, and which columns a fleet's processes fill.

Pure functions of the snapshot, so the table's keyed diff compares rows as plain tuples and
tests check them without running the app. A process on two GPUs has a row on each (as
nvidia-smi and nvitop list it): its memory is per GPU. Columns the hosts do not report
(per-process SM utilisation, CPU, RSS, start time, command line, job) are left out while every
row says `-` for them (jobsview.Column.optional), so an older agent's table is not half empty.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from gputui.core.model import GpuProcess, HostSnapshot
from gputui.core.text import plain
from gputui.render.jobs import span
from gputui.tui.jobsview import FILL_MIN, Column, layout

PROCESS_COLUMNS = (
    Column("host", "HOST", 16, fit=True, optional=True),
    Column("gpu", "GPU", 3, right=True),
    Column("pid", "PID", 7, right=True),
    Column("user", "USER", 10, fit=True),
    Column("gpu_mem", "GPU MEM", 8, right=True),
    Column("sm", "SM%", 4, right=True, optional=True),
    Column("gmbw", "GMBW%", 5, right=True, optional=True),
    Column("cpu", "CPU%", 5, right=True, optional=True),
    Column("rss", "RSS", 8, right=True, optional=True),
    Column("time", "TIME", 6, right=True, optional=True),
    Column("job", "JOB", 14, fit=True, optional=True, middle=True),
    Column("command", "COMMAND", 400, fill=True),
)
PROCESS_COLUMN_KEYS = tuple(c.key for c in PROCESS_COLUMNS)
#: Optional columns in the order a narrow table leaves them out, so the command line keeps
#: FILL_MIN characters: the least read first.
DROP_ORDER = ("gmbw", "rss", "job", "time", "cpu", "sm")


class ProcSort(enum.Enum):
    """The table's orders; `s` cycles them in this order."""

    GPU_MEM = "GPU memory"
    SM = "SM util"
    CPU = "CPU"
    RSS = "host memory"
    TIME = "run time"
    GPU = "GPU"
    PID = "pid"
    USER = "user"

    def next(self) -> ProcSort:
        order = list(ProcSort)
        return order[(order.index(self) + 1) % len(order)]


SORT_OF_COLUMN = {
    "host": ProcSort.GPU,
    "gpu": ProcSort.GPU,
    "pid": ProcSort.PID,
    "user": ProcSort.USER,
    "gpu_mem": ProcSort.GPU_MEM,
    "sm": ProcSort.SM,
    "cpu": ProcSort.CPU,
    "rss": ProcSort.RSS,
    "time": ProcSort.TIME,
}


@dataclass(frozen=True)
class ProcessRow:
    """One process on one GPU: where it runs, the process as its host reported it, and how
    long it has run (None where the host gave no start time)."""

    host: str
    gpu: int
    process: GpuProcess
    elapsed_s: float | None

    @property
    def key(self) -> str:
        # Host names hold no NUL: the triple is unique.
        return f"{self.host}\x00{self.gpu}\x00{self.process.pid}"


def process_rows(hosts: Iterable[HostSnapshot]) -> list[ProcessRow]:
    """The GPU processes of `hosts` from the last sample that listed them, in host and GPU
    order. Elapsed time is counted on the host's own clock (its newest sample's time against
    the process's start), so a host whose clock is off still shows the right run time."""
    rows: list[ProcessRow] = []
    for host in hosts:
        sample = host.slow_sample
        if sample is None:
            continue
        # The newest sample's time: the lists may be fresher than the slow sample holding them
        # (collect/watch.py), and the run time moves each second either way.
        now = host.sample.t if host.sample is not None else sample.t
        for reading in sample.gpus:
            for p in reading.processes or ():
                elapsed = None if p.started_t is None else max(0.0, now - p.started_t)
                rows.append(ProcessRow(host.name, reading.index, p, elapsed))
    return rows


def _mib(mib: float | None) -> str:
    if mib is None:
        return "-"
    return f"{mib:.0f} MiB" if mib < 1024 else f"{mib / 1024:.1f} GiB"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def process_cells(row: ProcessRow, *, with_host: bool = True) -> tuple[str, ...]:
    """The row's texts in PROCESS_COLUMNS order, each `plain()`: the host's text. Without
    the host (a view of one host), its cell says `-` and the column is left out."""
    p = row.process
    user = p.user or (f"uid {p.uid}" if p.uid is not None else "-")
    command = p.cmdline or p.name or "?"
    cells = (
        row.host if with_host else "-",
        str(row.gpu),
        str(p.pid),
        user,
        _mib(p.used_memory_mib),
        _pct(p.sm_util_pct),
        _pct(p.mem_util_pct),
        _pct(p.cpu_pct),
        _mib(p.rss_mib),
        "-" if row.elapsed_s is None else span(row.elapsed_s),
        p.job.key if p.job is not None else "-",
        command,
    )
    return tuple(plain(c) for c in cells)


def fit_width(rows: Sequence[tuple[str, ...]], width: int) -> list[tuple[str, ...]]:
    """`rows` with the cells of the columns a `width`-wide table leaves out set to `-` (the
    layout then drops them, as it drops what nobody reports), in DROP_ORDER until the command
    line keeps FILL_MIN characters or nothing is left to drop."""
    command = PROCESS_COLUMN_KEYS.index("command")
    shown = [list(r) for r in rows]
    for key in (None, *DROP_ORDER):
        if key is not None:
            i = PROCESS_COLUMN_KEYS.index(key)
            for cells in shown:
                cells[i] = "-"
        fitted = [tuple(c) for c in shown]
        widths = dict(layout(PROCESS_COLUMNS, fitted, width))
        if widths.get(command, 0) >= FILL_MIN:
            break
    return fitted


def _missing_last(x: float | None) -> float:
    """Biggest first with the numbers' order reversed, unknowns after every known value."""
    return math.inf if x is None else -x


def _where(r: ProcessRow) -> tuple[str, int, int]:
    return r.host, r.gpu, r.process.pid


def _order(sort: ProcSort) -> Callable[[ProcessRow], tuple[object, ...]]:
    """Each order's key: figures biggest first, names and places in their natural order,
    ties by host, GPU and pid."""
    if sort is ProcSort.SM:
        return lambda r: (_missing_last(r.process.sm_util_pct), *_where(r))
    if sort is ProcSort.CPU:
        return lambda r: (_missing_last(r.process.cpu_pct), *_where(r))
    if sort is ProcSort.RSS:
        return lambda r: (_missing_last(r.process.rss_mib), *_where(r))
    if sort is ProcSort.TIME:
        return lambda r: (_missing_last(r.elapsed_s), *_where(r))
    if sort is ProcSort.GPU:
        return _where
    if sort is ProcSort.PID:
        return lambda r: (r.process.pid, r.host, r.gpu)
    if sort is ProcSort.USER:
        return lambda r: ((r.process.user or "~").lower(), *_where(r))
    return lambda r: (_missing_last(r.process.used_memory_mib), *_where(r))


def sort_processes(rows: Sequence[ProcessRow], sort: ProcSort, reverse: bool) -> list[ProcessRow]:
    return sorted(rows, key=_order(sort), reverse=reverse)


def summary_line(rows: Sequence[ProcessRow], gpus: int, sort: ProcSort, reverse: bool) -> str:
    """`5 processes on 3 of 8 GPUs, sorted by GPU memory (s)`."""
    busy = len({(r.host, r.gpu) for r in rows})
    n = len(rows)
    order = sort.value + (" (reversed)" if reverse else "")
    if not n:
        return f"no GPU process on {gpus} GPU{'' if gpus == 1 else 's'}"
    noun = "process" if n == 1 else "processes"
    return f"{n} {noun} on {busy} of {gpus} GPUs, sorted by {order} (s)"
