"""What the Jobs tab shows: one row of text cells per job, its sort orders, and one row per GPU
of the job chosen, its GPUs across hosts side by side.

Pure functions of Jobs (gputui/core/jobs.py) and the snapshot's time, so the tab's keyed diff
compares rows as plain tuples and tests check them without running the app. The cells are the
ones `gputui jobs` prints (gputui/render/jobs.py), so the command and the tab cannot disagree.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gputui.core.jobs import HEALTH_RANK, Job, JobGpu
from gputui.core.model import GpuReading
from gputui.render.jobs import fold_hosts, job_cells, job_title, runtime


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    width: int  # characters of content (at most, when `fit`); each cell gets a leading space
    right: bool = False
    fit: bool = False  # as wide as its widest cell (or header), up to `width`
    optional: bool = False  # left out while every cell is "-" (nothing reports it yet)
    fill: bool = False  # takes the rest of the line (the last column)
    middle: bool = False  # cut in the middle: the end tells names apart (pods, array tasks)


JOB_COLUMNS = (
    Column("job", "JOB", 18, fit=True, middle=True),
    Column("user", "USER", 10, fit=True),
    Column("gpus", "GPUS", 5, right=True),
    Column("hosts", "HOSTS", 16, fit=True),
    Column("state", "STATE", 11, fit=True),
    Column("run", "RUN", 7, right=True),
    Column("steps", "STEP/s", 6, right=True, optional=True),
    Column("p24h", "P24H", 5, right=True),
    Column("ckpt", "CKPT", 6, right=True),
    Column("name", "NAME", 16, fit=True, optional=True),
    Column("why", "WHY", 200, fill=True),
)
JOB_COLUMN_KEYS = tuple(c.key for c in JOB_COLUMNS)
FILL_MIN = 24  # the least of the line WHY keeps before names and hosts are cut
STATE = JOB_COLUMN_KEYS.index("state")


class JobSort(enum.Enum):
    WORST = "worst"
    GPUS = "GPUs"
    RUN = "run time"
    RISK = "risk"
    USER = "user"
    JOB = "job"

    def next(self) -> JobSort:
        order = list(JobSort)
        return order[(order.index(self) + 1) % len(order)]


SORT_OF_COLUMN = {
    "job": JobSort.JOB,
    "user": JobSort.USER,
    "gpus": JobSort.GPUS,
    "state": JobSort.WORST,
    "run": JobSort.RUN,
    "p24h": JobSort.RISK,
}


def _worst(job: Job) -> tuple[int, int]:
    return HEALTH_RANK[job.health.label], -job.health.level


def _order(sort: JobSort, now: float) -> Callable[[Job], tuple[object, ...]]:
    """Each order's key, with the worst first where the values tie."""
    if sort is JobSort.GPUS:
        return lambda j: (-j.gpu_count, *_worst(j))
    if sort is JobSort.RUN:  # the longest first; those of unknown run time last
        return lambda j: (-_runtime(j, now), *_worst(j))
    if sort is JobSort.RISK:  # the least likely to see tomorrow first
        return lambda j: (j.risk.p_survive_24h if j.risk else math.inf, *_worst(j))
    if sort is JobSort.USER:
        return lambda j: ((j.user or "~").lower(), *_worst(j))
    if sort is JobSort.JOB:
        return lambda j: (j.kind, j.id.zfill(20) if j.id.isdigit() else j.id)
    return _worst


def _runtime(job: Job, now: float) -> float:
    seconds = job.runtime_s(now)
    return -1.0 if seconds is None else seconds


def sort_jobs(jobs: Sequence[Job], sort: JobSort, reverse: bool, now: float) -> list[Job]:
    """`jobs` in `sort` order; ties keep the fleet's order."""
    return sorted(jobs, key=_order(sort, now), reverse=reverse)


@dataclass(frozen=True)
class JobRow:
    """One job's row: its key, health word (for colour) and cell texts in JOB_COLUMNS order."""

    key: str
    label: str
    cells: tuple[str, ...]


def job_row(job: Job, now: float) -> JobRow:
    c = job_cells(job, now)
    cells = (c.job, c.user, c.gpus, c.hosts, c.state, c.run, c.steps, c.p24h, c.ckpt, c.name, c.why)
    return JobRow(job.key, job.health.label, cells)


# --------------------------------------------------------------------------------------------
# The chosen job's GPUs
# --------------------------------------------------------------------------------------------

GPU_COLUMNS = (
    Column("host", "HOST", 16, fit=True),
    Column("gpu", "GPU", 3, right=True),
    Column("util", "UTIL%", 5, right=True),
    Column("sm", "SM MHz", 6, right=True),
    Column("power", "POWER W", 7, right=True),
    Column("temp", "TEMP", 4, right=True),
    Column("mem", "MEM GiB", 9, right=True, fit=True),
    # From the training loop's heartbeat (docs/training.md): shown once a rank reports.
    Column("rank", "RANK", 4, right=True, optional=True),
    Column("speed", "SPEED", 5, right=True, optional=True),
    Column("state", "STATE", 11, fit=True),
    Column("why", "WHY", 200, fill=True),
)
GPU_STATE = tuple(c.key for c in GPU_COLUMNS).index("state")


def _n(x: float | int | None, fmt: str = "{:.0f}") -> str:
    return "-" if x is None else fmt.format(x)


def gpu_key(g: JobGpu) -> str:
    return f"{g.host}\x00{g.gpu}"  # host names hold no NUL: the pair is unique


def gpu_row(g: JobGpu, r: GpuReading | None) -> tuple[str, ...]:
    """The GPU's row, with its latest reading `r` (core.jobs.gpu_readings)."""
    if r is None or r.status != "ok":
        readings = ("-",) * 5
    else:
        used = r.mem_used_mib
        total = g.memory_total_mib
        mem = _n(used / 1024 if used is not None else None, "{:.1f}")
        if used is not None and total:
            mem += f"/{total / 1024:.0f}"
        readings = (
            _n(r.util_pct),
            _n(r.sm_clock_mhz),
            _n(r.power_w),
            _n(r.temp_c, "{:.0f}C"),
            mem,
        )
    why = g.why + (f" -> {g.action.value}" if g.why and g.action.value != "none" else "")
    if not g.pids and not why:
        why = "no process listed"
    rank = _n(g.rank, "{}")
    speed = _n(g.relative_speed, "{:.2f}")  # this rank's speed against the job's fastest
    return (g.host, str(g.gpu), *readings, rank, speed, g.label, why)


def layout(
    columns: Sequence[Column], rows: Sequence[tuple[str, ...]], width: int
) -> tuple[tuple[int, int], ...]:
    """The columns to show, as (index, content width), for `rows` in `width` characters.

    Names and hosts are shown whole while the last column keeps FILL_MIN characters, and cut
    to their widths otherwise; the last column takes what is left of the line."""
    for capped in (False, True):
        shown: list[tuple[int, int]] = []
        for i, column in enumerate(columns):
            if column.optional and all(cells[i] == "-" for cells in rows):
                continue
            w = column.width
            if column.fit:
                w = max([len(column.header), *(len(cells[i]) for cells in rows)])
                w = min(w, column.width) if capped else w
            shown.append((i, w))
        fill = next((n for n, (i, _) in enumerate(shown) if columns[i].fill), None)
        if fill is None:
            return tuple(shown)
        used = sum(w + 1 for n, (_, w) in enumerate(shown) if n != fill)
        left = width - used - 1  # each column with its leading space
        if left >= FILL_MIN or capped:
            i, cap = shown[fill]
            shown[fill] = (i, max(len(columns[i].header), min(cap, left)))
            break
    return tuple(shown)


def job_why(job: Job) -> tuple[str, str, str]:
    """The highlighted job in one line, for a terminal too narrow for the WHY column: its
    title, its health word and why (`slurm:4250`, `failed`, `gpu005 GPU3 XID 79 ... -> reboot
    node`; "" when nothing is wrong)."""
    h = job.health
    why = ""
    if h.why:
        where = f"{h.host} " if h.host and not h.why.startswith(h.host) else ""
        why = f"{where}{h.why}"
        if h.action.value != "none":
            why += f" -> {h.action.value}"
    return job_title(job), h.label, why


def detail_title(job: Job, now: float) -> str:
    """`slurm:4243 · bob · 16 GPUs on gpu[003-004] · run 3h12m · P24H 0.992 · CKPT 10.2 h`."""
    c = job_cells(job, now)
    parts = [job_title(job)]
    if job.name and job.kind == "slurm":
        parts.append(job.name)
    parts += [
        job.user or "user unknown",
        f"{c.gpus} GPUs on {fold_hosts(job.hosts)}",
        f"run {runtime(job, now)}",
    ]
    if job.step_rate_per_s is not None:
        parts.append(f"{c.steps} steps/s")
    parts += [f"P24H {c.p24h}", f"CKPT {c.ckpt}"]
    return " · ".join(parts)
