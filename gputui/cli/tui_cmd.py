"""`gputui monitor` and `gputui demo` (and bare `gputui`): the live fleet monitor.

Textual, the ops layer and the collector are imported inside the commands, never at module
level: `gputui report` and friends import this module too, and must stay free of textual.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gputui.cli.app import app
from gputui.cli.common import DEMO_HOSTS
from gputui.cli.options import (
    HostsOption,
    JournalOption,
    LocalBackendOption,
    ReadonlyOption,
    WorkersOption,
    workers_problem,
)
from gputui.config import DEFAULT_INTERVAL_S

if TYPE_CHECKING:
    from gputui.collect.live import LiveMonitor
    from gputui.config import Config
    from gputui.config.ui import UiSettings
    from gputui.core.jobs import SchedulerJob
    from gputui.core.model import FleetEvent
    from gputui.core.risk import RiskSettings
    from gputui.ops.actions import OperatorActions
    from gputui.ops.journal import Journal
    from gputui.tui.ports import MonitorFactory, MonitorPort
    from gputui.tui.screens.triage import TriageRunner


class Wiring:
    """Opens the monitor with what runs beside it: the journal recorder and the operator's
    actions. Everything opened here is closed when the monitor's context exits. Opening the
    journal looks for the commands of interrupted actions; `notices()` has the findings."""

    def __init__(self, journal_path: Path | None, use_journal: bool) -> None:
        self.journal_path = journal_path
        self.use_journal = use_journal
        self.ops: OperatorActions | None = None
        self.journal: Journal | None = None
        self._record: tuple[int, float] | None = None
        self._notices: list[FleetEvent] = []
        # host -> group, for the Prevention tab's host comparisons: filled once the fleet is known
        self.groups: dict[str, str] = {}

    @contextlib.asynccontextmanager
    async def attach(self, monitor: LiveMonitor, config: Config) -> AsyncIterator[None]:
        if not self.use_journal:
            yield
            return
        from gputui.ops.actions import OperatorActions
        from gputui.ops.journal import Journal
        from gputui.ops.orphans import orphan_events
        from gputui.ops.recorder import JournalRecorder
        from gputui.ops.rollups import RollupWriter

        journal = Journal.open(self.journal_path)
        self.groups.update({h.name: h.group for h in config.hosts})
        self._notices = orphan_events(journal.check_interrupted(), time.time())
        ops = OperatorActions(config, journal, monitor=monitor)
        recorder = asyncio.create_task(JournalRecorder(journal, monitor).run())
        rollups = asyncio.create_task(RollupWriter(journal, config.rollup_retention).run(monitor))
        # The scheduler's job list (names, users, start times) for the Jobs tab, read at most
        # once per [scheduler] period_s for the whole fleet.
        scheduler = None if ops.scheduler is None else asyncio.create_task(ops.scheduler.run())
        self.journal, self.ops = journal, ops
        try:
            yield
        finally:
            self.ops = None
            if scheduler is not None:
                scheduler.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await scheduler
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await recorder  # flushes the exposure seen so far
            rollups.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await rollups  # writes the rollups seen so far, open buckets too
            await ops.aclose()
            self.journal = None
            journal.close()

    def notices(self) -> list[FleetEvent]:
        """What the journal's check found, for the event log (once: later calls get none)."""
        found, self._notices = self._notices, []
        return found

    def scheduler_view(self) -> tuple[Mapping[str, SchedulerJob], str] | None:
        """The scheduler's job list and how it was read, while one is read."""
        reader = None if self.ops is None else self.ops.scheduler
        return None if reader is None else (reader.jobs, reader.status())

    def record(self) -> dict[str, tuple[int, float]] | None:
        """Failures and monitored GPU-hours per node from the journal, for the risk panel's
        posterior (their sums) and its lemon-node ranking."""
        journal = self.journal
        return None if journal is None else journal.per_node_failures_and_exposure()


def _run(
    open_monitor: MonitorFactory,
    wiring: Wiring,
    risk: RiskSettings | None,
    bell: bool,
    triage: TriageRunner | None = None,
    notices: Sequence[str] = (),
    info: Sequence[str] = (),
    ui: UiSettings | None = None,
    open_first: bool = False,
) -> None:
    """Run the app over the monitor `open_monitor` opens. With `open_first` (a fleet of local
    agents: starting them costs this process a fork each), the monitor opens before the app is
    even imported, so the agents start while it loads and the first screen can show their
    readings; otherwise the app opens it once its screen is up (an SSH fleet's handshakes, or
    the demo's servers, would hold the screen back)."""
    # The risk model needs scipy (about a second to import): load it while the fleet connects,
    # so the risk tab answers at once when first shown.
    threading.Thread(
        target=importlib.import_module, args=("gputui.core.risk_report",), daemon=True
    ).start()

    async def main() -> None:
        early = contextlib.AsyncExitStack()
        try:
            factory = open_monitor
            if open_first:
                opened = await early.enter_async_context(open_monitor())
                factory = functools.partial(_handed_over, opened, early)
                # One turn of the loop: each source's task starts its agent now, not after the
                # app's imports, which hold the loop.
                await asyncio.sleep(0)
            await _app(factory)
        finally:
            await early.aclose()  # the app never took the monitor over: close it here

    async def _app(factory: MonitorFactory) -> None:
        from gputui.ops.prevention import JournalPrevention
        from gputui.tui.app import GpuTuiApp
        from gputui.tui.operator import OperatorPort
        from gputui.tui.ops_operator import OpsOperator
        from gputui.tui.session import MonitorSession

        session = MonitorSession(factory)
        operator: OperatorPort | None = (
            OpsOperator(lambda: wiring.ops) if wiring.use_journal else None
        )
        tui = GpuTuiApp(
            session,
            operator=operator,
            risk_settings=risk,
            record=wiring.record,
            bell=bell,
            tune_gc=True,
            triage=triage,
            notices=lambda: [*_events_of(notices, info), *wiring.notices()],
            scheduler=wiring.scheduler_view,
            prevention=JournalPrevention(lambda: wiring.journal, risk=risk, groups=wiring.groups)
            if wiring.use_journal
            else None,
            ui=ui,
            hangup_guard=True,
        )
        _quit_on_signals(tui.exit)
        try:
            await tui.run_async()
        finally:
            await session.close()  # whatever ended the app: no connection, no agent left

    asyncio.run(main())


@contextlib.asynccontextmanager
async def _handed_over(
    monitor: MonitorPort, opened: contextlib.AsyncExitStack
) -> AsyncIterator[MonitorPort]:
    """A monitor opened before the app, handed to its session: closed when the session ends."""
    async with opened:
        yield monitor


def _quit_on_signals(quit_app: Callable[[], object]) -> None:
    """SIGTERM and SIGHUP end the app as `q` does, so the monitor closes (ending every agent)
    and the demo's scratch is removed. A terminal that closes sends SIGHUP; Python's default
    for both signals is to die at once, leaving all of it behind."""
    from gputui.tui.hangup import silence_if_hung_up

    def hang_up() -> None:
        silence_if_hung_up((0, 1, 2))  # its last writes go nowhere rather than wait
        quit_app()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, quit_app)
    loop.add_signal_handler(signal.SIGHUP, hang_up)


def _notices(*lines: str | None) -> list[str]:
    """What the app shows at start: the lines said on stderr, hidden once the screen is up."""
    return [line for line in lines if line]


def _events_of(warnings: Sequence[str], info: Sequence[str] = ()) -> list[FleetEvent]:
    """What was said at start as entries of the event log: `warnings` (the open-files limit)
    and `info` (what is watched and why)."""
    from gputui.core.model import FleetEvent, Level

    now = time.time()
    return [
        *(FleetEvent(t=now, host="gputui", kind="start", text=line) for line in info),
        *(
            FleetEvent(t=now, host="gputui", kind="limit", text=line, level=Level.WARN)
            for line in warnings
        ),
    ]


@app.command("monitor")
def monitor(
    hosts: HostsOption = None,
    journal: JournalOption = None,
    no_journal: Annotated[
        bool,
        typer.Option("--no-journal", help="Marks last this session only; no action runs"),
    ] = False,
    bell: Annotated[
        bool, typer.Option("--bell", help="Ring the terminal bell when a host gets worse")
    ] = False,
    readonly: ReadonlyOption = False,
    local_backend: LocalBackendOption = None,
    workers: WorkersOption = None,
) -> None:
    """Open the live monitor (also: bare `gputui`).

    It watches the hosts of hosts.toml. With no hosts file at all, it watches this machine's
    GPUs, as nvitop does; without a GPU here either, it says how to go on (`gputui demo`,
    `gputui init`) and exits 3."""
    import msgspec

    from gputui.cli.common import check_open_files, fail, load_hosts
    from gputui.cli.local_mode import local_or_fail, no_hosts_file
    from gputui.cli.terminal import need_terminal
    from gputui.collect.fleet import monitor_config, sim_scenarios
    from gputui.collect.scenarios import ScenarioError
    from gputui.config import ConfigError
    from gputui.ops.catalog import load_actions
    from gputui.ops.journal import resolve_journal_path

    local = no_hosts_file(hosts)
    if local_backend is not None and not local:
        raise fail(
            "--local-backend chooses how this machine is read when there is no hosts file; "
            "in a hosts file, backend = ... says how each group is read"
        )
    if (problem := workers_problem(workers)) is not None:
        raise fail(problem)
    config = local_or_fail(local_backend) if local else load_hosts(hosts)
    if config.prometheus is not None and not config.prometheus.listed_hosts:
        import asyncio

        from gputui.cli.common import discovered

        config = asyncio.run(discovered(config))
    if readonly:
        config = msgspec.structs.replace(config, readonly=True)
    try:
        load_actions(config)  # a wrong [actions] table is a start-up error, not a late surprise
        sim_scenarios(config.hosts)  # so is a simulated host's unknown scenario
    except (ConfigError, ScenarioError) as exc:
        raise fail(str(exc)) from None
    # Redirected, this machine alone is still one command away: the agent's own readings.
    need_terminal("the live monitor", instead="gputui agent --once" if local else "gputui report")
    wiring = Wiring(resolve_journal_path(journal, config.journal_path), not no_journal)
    shortfall = check_open_files(config.hosts if config.prometheus is None else [])
    info = [_local_notice(config)] if local else []

    @contextlib.asynccontextmanager
    async def open_monitor() -> AsyncIterator[LiveMonitor]:
        async with monitor_config(config, workers=workers) as m, wiring.attach(m, config):
            yield m

    async def triage(name: str, width: int) -> str:
        from gputui.ops.triage import TriageOptions, triage_config
        from gputui.render.triage import triage_table

        report = await triage_config(config, [config.host(name)], TriageOptions())
        return triage_table(report, width)

    _run(
        open_monitor,
        wiring,
        config.risk,
        bell,
        triage,
        notices=_notices(shortfall),
        info=info,
        ui=config.ui,
        open_first=all(spec.transport == "local" for spec in config.hosts),
    )


def _local_notice(config: Config) -> str:
    spec = config.hosts[0]
    how = f"simulated, scenario {spec.scenario}" if spec.backend == "sim" else spec.backend
    # Its start is what a narrow event log shows: the rest is in the entry's details.
    return (
        f"no hosts file: this machine only ({spec.name}, {how}); `gputui init` writes a hosts "
        "file to list your GPU hosts in"
    )


def _print_version(value: bool) -> None:
    if value:
        from gputui import __version__

        typer.echo(f"gputui {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _default(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit", is_eager=True, callback=_print_version
        ),
    ] = False,
    readonly: ReadonlyOption = False,
    local_backend: LocalBackendOption = None,
) -> None:
    """Terminal fleet monitor for NVIDIA GPU hosts.

    With no command, the live monitor (`gputui monitor`): of the hosts of hosts.toml, or of
    this machine's GPUs when there is no hosts file."""
    if ctx.invoked_subcommand is None:
        monitor(readonly=readonly, local_backend=local_backend)
        return
    given = [
        flag for flag, on in (("--readonly", readonly), ("--local-backend", local_backend)) if on
    ]
    if given:
        from gputui.cli.common import fail

        sub = ctx.invoked_subcommand
        raise fail(
            f"{' and '.join(given)} before a command "
            f"{'applies' if len(given) == 1 else 'apply'} only to bare `gputui`; put "
            f"{'it' if len(given) == 1 else 'them'} after `{sub}` where it takes "
            f"{'it' if len(given) == 1 else 'them'} (`gputui {sub} --help`)"
        )


@app.command("demo")
def demo(
    n_hosts: Annotated[
        int, typer.Option("--hosts", help="Simulated hosts behind local SSH servers")
    ] = DEMO_HOSTS,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the demo's scenario mix")] = 1,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between samples")
    ] = DEFAULT_INTERVAL_S,
    bell: Annotated[
        bool, typer.Option("--bell", help="Ring the terminal bell when a host gets worse")
    ] = False,
    workers: WorkersOption = None,
) -> None:
    """Open the monitor on a simulated fleet.

    Real SSH servers on loopback, real agents, simulated GPUs with scripted faults."""
    from gputui.cli.common import check_open_files, fail
    from gputui.cli.demo_setup import demo_config
    from gputui.cli.terminal import need_terminal
    from gputui.collect.demo import (
        DEMO_MAX_INTERVAL_S,
        DEMO_MIN_INTERVAL_S,
        DemoFleet,
        default_spares,
    )
    from gputui.collect.fleet import demo_fleet_and_monitor
    from gputui.collect.scratch import DEMO_PREFIX, make_scratch, remove_scratch

    if not 1 <= n_hosts <= 5000:
        raise fail("--hosts takes a number of hosts from 1 to 5000")
    if not DEMO_MIN_INTERVAL_S <= interval <= DEMO_MAX_INTERVAL_S:
        raise fail(f"--interval takes {DEMO_MIN_INTERVAL_S:g} to {DEMO_MAX_INTERVAL_S:g} seconds")
    if (problem := workers_problem(workers)) is not None:
        raise fail(problem)
    need_terminal("gputui demo", instead=f"gputui report --demo {n_hosts}")
    shortfall = check_open_files(demo=n_hosts)
    # The demo journals into a scratch file: its marks and actions are not the real fleet's.
    scratch = make_scratch(DEMO_PREFIX + "journal-")
    wiring = Wiring(scratch / "journal.sqlite3", True)

    @contextlib.asynccontextmanager
    async def open_monitor() -> AsyncIterator[LiveMonitor]:
        async with demo_fleet_and_monitor(
            n_hosts,
            seed=seed,
            interval_s=interval,
            spares=default_spares(n_hosts),
            workers="auto" if workers is None else workers,
        ) as (fleet, m):
            running.append((fleet, time.monotonic()))
            config = demo_config(list(m.hosts), scratch / "scheduler.log", fleet.scheduler)
            async with wiring.attach(m, config):
                yield m

    running: list[tuple[DemoFleet, float]] = []  # the fleet and when it started

    async def triage(name: str, width: int) -> str:
        from gputui.ops.triage import TriageOptions, triage_demo
        from gputui.render.triage import triage_table

        if not running:
            return "the demo fleet is not running"
        fleet, started = running[0]
        # Read the simulated host where the live view is, not where its faults end up.
        options = TriageOptions(sim_elapsed_s=time.monotonic() - started)
        report = await triage_demo(fleet, [name], options)
        return triage_table(report, width)

    try:
        _run(open_monitor, wiring, None, bell, triage, notices=_notices(shortfall))
    finally:
        remove_scratch(scratch)
