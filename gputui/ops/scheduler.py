"""The scheduler's view of the jobs, read at most once per period for the whole fleet.

    reader = SchedulerReader(command, parse_squeue_json, period_s=60)
    await reader.refresh()          # runs `squeue --json` only when the period has passed
    reader.jobs["slurm:4242"]       # SchedulerJob: name, user, nodes, start time, GPUs per node
    reader.status()                 # "squeue: 12 jobs, read 40 s ago", "squeue exited 1: ..."

The hosts say which job each GPU process serves (the agent reads it from the process's cgroup
or environment); the scheduler adds what no host knows: the job's name, its owner as the
scheduler records it, every node it was given, when it started and its GPUs per node. One
reading serves the whole fleet, and it happens where the actions run (the `where` of the
scheduler preset's actions: this machine or the controller over SSH), never on the GPU hosts
and never per host per tick. A scheduler that is absent or fails leaves the jobs as the hosts
name them, and `status()` says why.

Slurm's JSON differs between releases (docs/jobs.md): 22.05 (openapi v0.0.38) writes
`job_state: "RUNNING"` and `start_time: 1700000000`; 23.02 and later write
`job_state: ["RUNNING"]` and `start_time: {"set": true, "infinite": false, "number": ...}`.
Each job is converted on its own, so one job the parser cannot read costs that job only.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gputui.config import HostRangeError, expand_hosts
from gputui.core.jobs import SchedulerJob
from gputui.core.text import plain
from gputui.ops.runner import Command, CommandResult, CommandRunner

#: The most of a job list kept from the scheduler's output: about 16,000 running jobs in
#: Slurm 22.05's JSON (some 4 KB each). Past it the reading is refused, never half used.
MAX_OUTPUT_CHARS = 64 << 20
#: Text from the scheduler (names, users) is cut to this, as a host's text is.
MAX_TEXT = 256
# Job states that hold nodes: a pending job has none, and a finished one none any more.
_HOLDING = frozenset({"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "CONFIGURING"})


class SchedulerParseError(ValueError):
    """The scheduler's answer is not a job list: the text says what it was."""


@dataclass(frozen=True)
class SchedulerRead:
    """One reading of the scheduler: its jobs by key, and what could not be read."""

    jobs: Mapping[str, SchedulerJob]
    skipped: int = 0  # jobs in the answer that could not be read
    problem: str = ""  # the first of them, or the scheduler's own error text


# --------------------------------------------------------------------------------------------
# Slurm's `squeue --json`
# --------------------------------------------------------------------------------------------


class _SqueueAnswer(msgspec.Struct):
    jobs: list[msgspec.Raw] | None = None
    errors: list[Any] | None = None


class _SqueueJob(msgspec.Struct, kw_only=True):
    """The fields read of one job; Any where releases disagree on the shape."""

    job_id: int
    array_job_id: Any = None
    array_task_id: Any = None
    name: Any = None
    user_name: Any = None
    user_id: Any = None
    job_state: Any = None
    nodes: Any = None
    start_time: Any = None
    node_count: Any = None
    gres_detail: Any = None
    tres_per_node: Any = None
    tres_alloc_str: Any = None


def parse_squeue_json(text: str) -> SchedulerRead:
    """`squeue --json` (Slurm 22.05 to 24.x) -> the jobs that hold nodes, keyed `slurm:<id>`.

    SchedulerParseError when the answer is not such a document at all."""
    try:
        answer = msgspec.json.decode(text, type=_SqueueAnswer)
    except msgspec.ValidationError as exc:  # JSON, of another shape (a DecodeError too)
        raise SchedulerParseError(f"not a job list: {plain(str(exc), 200)}") from None
    except msgspec.DecodeError as exc:
        raise SchedulerParseError(f"not JSON: {plain(str(exc), 200)}") from None
    if answer.jobs is None:
        said = _errors_text(answer.errors)
        raise SchedulerParseError(said or 'no job list in the answer (no "jobs" key)')
    jobs: dict[str, SchedulerJob] = {}
    skipped = 0
    problem = _errors_text(answer.errors)
    for raw in answer.jobs:
        try:
            job = _slurm_job(msgspec.json.decode(raw, type=_SqueueJob))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            skipped += 1
            problem = problem or f"a job could not be read: {plain(str(exc), 200)}"
            continue
        if job is not None:
            jobs[job[0]] = job[1]
    return SchedulerRead(jobs=jobs, skipped=skipped, problem=problem)


def _slurm_job(j: _SqueueJob) -> tuple[str, SchedulerJob] | None:
    if j.job_id <= 0:
        raise ValueError(f"job_id {j.job_id} is not a job id")
    state = _state(j.job_state)
    nodes_text = _text(j.nodes)
    if not nodes_text or (state is not None and not _HOLDING & set(state.split("+"))):
        return None  # pending, or done: no GPU of the fleet serves it now
    nodes = _nodes(nodes_text)
    array_job = _number(j.array_job_id)
    task = _number(j.array_task_id)
    user = _text(j.user_name)
    if user is None and (uid := _number(j.user_id)) is not None:
        user = f"uid {int(uid)}"
    start = _number(j.start_time)
    job = SchedulerJob(
        # An array task is named `4242_7`; its processes carry its own job id (cgroup
        # job_<id>, SLURM_JOB_ID), and so does the key the hosts' attribution matches.
        id=f"{int(array_job)}_{int(task)}" if array_job and task is not None else str(j.job_id),
        name=_text(j.name),
        user=user,
        nodes=nodes,
        start_t=start if start else None,
        gpus_per_node=_gpus_per_node(j, len(nodes)),
        state=state,
    )
    return f"slurm:{j.job_id}", job


@functools.lru_cache(maxsize=4096)
def _nodes(text: str) -> tuple[str, ...]:
    """A Slurm node list (`gpu[003-004]`) as names; () when it cannot be expanded.

    Cached: ClusterShell takes some 50 us a list, and array tasks and a period's readings
    repeat the same lists; a single node, the common case, needs no range parser at all."""
    if "[" not in text and "," not in text:
        return (text,) if text.isprintable() and " " not in text else ()
    try:
        return tuple(expand_hosts(text, allow_duplicates=True))
    except HostRangeError:
        return ()  # a node list gputui cannot expand names no node; the rest still helps


def _number(value: Any) -> float | None:
    """An integer as 22.05 writes it, or 23.02's {"set": true, "number": N}; None when unset."""
    if isinstance(value, dict):
        if not value.get("set", True) or value.get("infinite"):
            return None
        value = value.get("number")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _state(value: Any) -> str | None:
    """ "RUNNING" (22.05) or ["RUNNING", ...] (23.02+) -> "RUNNING" or "RUNNING+COMPLETING"."""
    if isinstance(value, str):
        return plain(value, 64) or None
    if isinstance(value, list) and all(isinstance(v, str) for v in value) and value:
        return plain("+".join(value), 64)
    return None


def _text(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    return plain(value.strip(), MAX_TEXT)


# "gpu:h100:8(IDX:0-7)" or "gpu:8(IDX:0-7)": one entry per node of the job.
_GRES_DETAIL = re.compile(r"^gpu(?::[^:(]*)?:(\d+)")
# tres_per_node "gres/gpu:8", "gres:gpu:8", "gres/gpu:h100:8".
_TRES_PER_NODE = re.compile(r"gres[/:]gpu(?::[^:,=]+)?[:=](\d+)")
# tres_alloc_str "cpu=16,mem=64G,node=2,billing=16,gres/gpu=16": the job's total.
_TRES_ALLOC = re.compile(r"(?:^|,)gres/gpu=(\d+)")


def _gpus_per_node(j: _SqueueJob, nodes: int) -> int | None:
    if isinstance(j.gres_detail, list):
        counts = [
            int(m.group(1))
            for d in j.gres_detail
            if isinstance(d, str) and (m := _GRES_DETAIL.match(d))
        ]
        if counts:
            return max(counts)  # nodes may differ; the most any node holds
    if isinstance(j.tres_per_node, str) and (m := _TRES_PER_NODE.search(j.tres_per_node)):
        return int(m.group(1))
    if isinstance(j.tres_alloc_str, str) and (m := _TRES_ALLOC.search(j.tres_alloc_str)):
        count = _number(j.node_count)
        per = max(1, int(count) if count else nodes)
        return -(-int(m.group(1)) // per)
    return None


def _errors_text(errors: list[Any] | None) -> str:
    """Slurm's own error list ({"error": "...", "error_number": N}) as one line."""
    texts: list[str] = []
    for e in errors or ():
        if isinstance(e, dict):
            said = e.get("error") or e.get("description")
            if isinstance(said, str) and said.strip():
                texts.append(said.strip())
        elif isinstance(e, str) and e.strip():
            texts.append(e.strip())
    return plain("; ".join(texts), 300)


# --------------------------------------------------------------------------------------------
# The bounded reader
# --------------------------------------------------------------------------------------------

Parse = Callable[[str], SchedulerRead]
Clock = Callable[[], float]


@dataclass
class _State:
    jobs: Mapping[str, SchedulerJob] = field(default_factory=dict)
    read_t: float | None = None  # when the jobs were read (wall clock)
    attempt_t: float | None = None  # the last call started (monotonic)
    failure: str = ""  # why the last call gave nothing new; "" after a good one
    skipped: str = ""  # jobs of the last good reading that could not be read


class SchedulerReader:
    """`command` (the preset's job list, where the actions run) read at most once per
    `period_s`, however many views, ticks and operator requests ask.

    A failed call counts towards the period too: a scheduler that is down is not asked again
    at every tick. The jobs of the last good reading stay until a newer one replaces them;
    `status()` says how old they are and why nothing newer came."""

    def __init__(
        self,
        command: Command,
        parse: Parse,
        *,
        period_s: float,
        runner: CommandRunner | None = None,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        self.command = command
        self.period_s = period_s
        self._parse = parse
        self._runner = runner or CommandRunner()
        self._clock = clock
        self._wall = wall
        self._state = _State()
        self._inflight: asyncio.Future[None] | None = None
        self.calls = 0  # commands run: what the period bounds

    @property
    def program(self) -> str:
        return self.command.argv[0].rsplit("/", 1)[-1]

    @property
    def jobs(self) -> Mapping[str, SchedulerJob]:
        return self._state.jobs

    @property
    def read_t(self) -> float | None:
        """When the jobs now held were read (Unix seconds); None: never."""
        return self._state.read_t

    def due(self) -> bool:
        last = self._state.attempt_t
        return last is None or self._clock() - last >= self.period_s

    async def refresh(self, *, force: bool = False) -> None:
        """Read the scheduler if the period has passed since the last call (or `force`).

        Callers arriving while a call runs wait for that call; none starts a second."""
        if self._inflight is not None:
            await asyncio.shield(self._inflight)
            return
        if not force and not self.due():
            return
        self._state.attempt_t = self._clock()
        loop = asyncio.get_running_loop()
        self._inflight = loop.create_future()
        try:
            await self._read()
        finally:
            done, self._inflight = self._inflight, None
            done.set_result(None)

    async def run(self, on_update: Callable[[], None] | None = None) -> None:
        """Refresh once per period until cancelled (the live views' loop)."""
        while True:
            await self.refresh()
            if on_update is not None:
                on_update()
            wait = self.period_s
            if self._state.attempt_t is not None:
                wait = max(0.0, self._state.attempt_t + self.period_s - self._clock())
            await asyncio.sleep(wait)

    async def aclose(self) -> None:
        await self._runner.aclose()

    async def _read(self) -> None:
        self.calls += 1
        result = await self._runner.run(self.command)
        failure = self._failure(result)
        if failure:
            self._state.failure = failure
            return
        try:
            # A large job list takes tens of milliseconds to decode: not on the UI's loop.
            read = await asyncio.to_thread(self._parse, result.stdout)
        except SchedulerParseError as exc:
            self._state.failure = f"{shown_argv(self.command)}: {exc}"
            return
        self._state = _State(
            jobs=read.jobs,
            read_t=self._wall(),
            attempt_t=self._state.attempt_t,
            skipped=(f"{read.skipped} jobs not read ({read.problem})" if read.skipped else ""),
        )

    def _failure(self, result: CommandResult) -> str:
        program = self.program
        if result.error is not None and result.exit_code is None:
            return plain(result.error, 300)
        if result.error is not None:  # ran, but its output was cut: never half a job list
            return f"{program}: {plain(result.error, 300)}"
        if result.exit_code != 0:
            last = next(
                (ln.strip() for ln in reversed(result.output.splitlines()) if ln.strip()), ""
            )
            said = f": {plain(last, 200)}" if last else ""
            return f"{program} exited {result.exit_code}{said}"
        return ""

    def status(self, now: float | None = None) -> str:
        """One line for the views: what the jobs rest on, or why the scheduler added nothing."""
        s = self._state
        now = self._wall() if now is None else now
        program = self.program
        if s.read_t is None:
            return s.failure or f"{program} not read yet"
        age = f"{age_text(now - s.read_t)} ago"
        text = f"{program}: {len(s.jobs)} jobs holding nodes, read {age}"
        if s.failure:
            text = f"{s.failure}; the jobs as {program} gave them {age}"
        if s.skipped:
            text += f"; {s.skipped}"
        return text

    @property
    def ok(self) -> bool:
        """The last call gave a job list."""
        return self._state.read_t is not None and not self._state.failure

    def on_node(self, node: str) -> list[tuple[str, SchedulerJob]]:
        """The jobs (key, job) the last reading places on `node`."""
        return [(key, job) for key, job in self._state.jobs.items() if node in job.nodes]


def shown_argv(command: Command) -> str:
    return " ".join(command.argv[:2]) if len(command.argv) > 1 else command.argv[0]


def age_text(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
