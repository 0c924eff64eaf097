"""The Textual app: one snapshot per tick in, one batched screen update out.

The monitor runs beside the app on the same event loop (its work per tick is small); each
snapshot reaches the app as one message, and the app applies it inside `batch_update()` so a
tick is one repaint however many hosts changed. Operator flows run as workers, so a dialog
waiting for an answer never holds up the ticks.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.theme import Theme

if TYPE_CHECKING:
    from gputui.core.jobs import SchedulerJob
    from gputui.core.risk import RiskSettings

from gputui.config.ui import UiSettings
from gputui.core.model import FleetEvent, FleetSnapshot, HostSnapshot, Level
from gputui.core.text import plain
from gputui.core.words import counted
from gputui.render.report import fleet_labels, host_label, host_why, live_label
from gputui.tui.commands import HostCommands
from gputui.tui.fleetview import LABEL_RANK, severity
from gputui.tui.gc_pacing import GcPacer
from gputui.tui.hangup import ignore_resume_once_hung_up, terminal_fd
from gputui.tui.hostview import gpu_views
from gputui.tui.operator import OperatorPort, Outcome, Prepared, RequestKind, SessionOperator
from gputui.tui.palette import Palette
from gputui.tui.release import Release
from gputui.tui.screens.dialogs import ActionPicker, ConfirmDialog, PreviewDialog, ReasonDialog
from gputui.tui.screens.fleet import FleetScreen
from gputui.tui.screens.gpus import GpusData, GpusScreen, opens_on_gpus
from gputui.tui.screens.help import HelpScreen
from gputui.tui.screens.host import HostData, HostScreen
from gputui.tui.screens.triage import TriageRunner, TriageScreen
from gputui.tui.session import MonitorSession
from gputui.tui.widgets.gpu_grid import GRID_HELP
from gputui.tui.widgets.prevention_panel import PreventionSource
from gputui.tui.widgets.risk_panel import Record

HOST_SCREEN = "host"
GPUS_SCREEN = "gpus"
HOST_EVENTS = 50  # recent events kept per host for its screen
TICK_SAMPLES = 600  # per-tick timings kept for `tick_ms` (the benchmark reads them)

#: Lines for the event log once the fleet is up, such as the commands of interrupted actions
#: that still run (gputui/ops/orphans.py); read once, with the first snapshot.
Notices = Callable[[], Sequence[FleetEvent]]
#: The scheduler's latest job list and a line on how it was read, for the Jobs tab; None
#: while nothing reads one (no scheduler preset lists jobs).
SchedulerView = Callable[[], "tuple[Mapping[str, SchedulerJob], str] | None"]
#: The title of the toast of each kind of notice.
NOTICE_TITLES = {
    "interrupted": "gputui was interrupted before",
    "limit": "too few open files for the fleet",
}


class FleetUpdated(Message):
    """The monitor published a snapshot."""

    def __init__(self, snapshot: FleetSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class GpuTuiApp(App[None]):
    CSS_PATH = "gputui.tcss"
    TITLE = "gputui"
    COMMANDS: ClassVar = App.COMMANDS | {HostCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("x", "mark_failed", "Mark failed"),
        Binding("u", "resume", "Resume"),
        Binding("a", "run_action", "Action"),
        Binding("c", "clear_latched", "Clear latched", show=False),
        Binding("t", "triage", "Triage", show=False),
        Binding("b", "toggle_bell", "Bell on/off", show=False),
        Binding("g", "gpu_view", "GPUs", show=False),
    ]

    def __init__(
        self,
        session: MonitorSession,
        *,
        operator: OperatorPort | None = None,
        risk_settings: RiskSettings | None = None,
        record: Record | None = None,
        bell: bool = False,
        clock: Callable[[], float] = time.time,
        tune_gc: bool = False,
        triage: TriageRunner | None = None,
        notices: Notices | None = None,
        scheduler: SchedulerView | None = None,
        ui: UiSettings | None = None,
        prevention: PreventionSource | None = None,
        hangup_guard: bool = False,
    ) -> None:
        super().__init__()
        self._hangup_guard = hangup_guard
        self.triage_runner = triage
        self.session = session
        self.operator: OperatorPort = operator or SessionOperator(lambda: session.monitor)
        self.bell_on = bell
        self.snapshot: FleetSnapshot | None = None
        self.by_name: dict[str, HostSnapshot] = {}
        self.tick_ms: deque[float] = deque(maxlen=TICK_SAMPLES)
        self.ticks = 0
        self.palette = Palette.from_theme(None)
        self._clock = clock
        # Full garbage collections paced by the app (gc_pacing.py), as `gputui` runs it.
        self.gc_pacer = GcPacer() if tune_gc else None
        self._risk_settings = risk_settings
        self._record = record
        self._notices = notices
        self._scheduler = scheduler
        self._prevention = prevention  # the journal's service list and daily rollups
        self._applied = asyncio.Event()
        self._release = Release()
        self._quitting = False
        self._host_events: dict[str, deque[FleetEvent]] = {}
        self._settled: dict[str, str] = {}
        self._ui = ui or UiSettings()
        # Until the fleet's GPUs are counted (or a key is pressed), the view the app opens on
        # is open: a small fleet opens on the per-GPU view (config/ui.py).
        self._view_chosen = False
        self._first_t: float | None = None

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """A toast, read as plain text unless asked: its words name hosts and quote their
        reasons, errors and command output, which are never markup (each line `plain()`)."""
        lines = "\n".join(plain(line) for line in message.split("\n"))
        super().notify(lines, title=plain(title), severity=severity, timeout=timeout, markup=markup)

    # -- screens --------------------------------------------------------------------------

    def get_default_screen(self) -> Screen[Any]:
        return FleetScreen(
            self.open_host, self._risk_settings, self._record, self._prevention, self._release
        )

    @property
    def _background_screens(self) -> list[Screen[Any]]:
        # Textual counts the screen under the top one as showing through even when the top
        # one is opaque. Under the host screen that made every change to the fleet screen (a
        # tick, the cursor, the key bar) a repaint of the whole host screen an update later,
        # and kept the fleet screen laying itself out unseen. Only a see-through screen (a
        # dialog) has screens behind it.
        stack = self.screen_stack
        if stack and stack[-1].styles.background.a == 1:
            return []
        return super()._background_screens

    @property
    def fleet_screen(self) -> FleetScreen:
        screen = self.screen_stack[0]
        assert isinstance(screen, FleetScreen)
        return screen

    def on_mount(self) -> None:
        if self._hangup_guard:
            # After the driver has set its own SIGCONT handler (hangup.py says why).
            fd = terminal_fd()
            if fd is not None:
                ignore_resume_once_hung_up(fd)
        # The default screen composes after the app mounts: start once it is on screen.
        self.call_after_refresh(self._start)

    def _start(self) -> None:
        self._set_palette(self.current_theme)
        self.theme_changed_signal.subscribe(self, self._set_palette)
        self.fleet_screen.set_note("starting the monitor...")
        self.session.start(self._deliver, self._monitor_failed)

    def _set_palette(self, theme: Theme) -> None:
        self.palette = Palette.from_theme(theme)
        self.fleet_screen.set_palette(self.palette)

    # -- ticks ----------------------------------------------------------------------------

    async def _deliver(self, snapshot: FleetSnapshot) -> None:
        """Post one message per snapshot; return once it is applied (or the app is going)."""
        if self._quitting:
            return
        self._applied.clear()
        self.post_message(FleetUpdated(snapshot))
        await self._applied.wait()

    def on_fleet_updated(self, message: FleetUpdated) -> None:
        started = time.perf_counter()
        try:
            with self.batch_update():
                self._apply(message.snapshot)
        finally:
            self.tick_ms.append((time.perf_counter() - started) * 1000)
            self.ticks += 1
            self._applied.set()

    def _apply(self, snapshot: FleetSnapshot) -> None:
        first = self.snapshot is None
        if self.snapshot is not None:
            # Its hosts are let go after this tick is drawn, not inside it (release.py).
            self._release.hold(self.snapshot)
        self.snapshot = snapshot
        self.by_name = {h.name: h for h in snapshot.hosts}
        events = list(snapshot.events) + self._announce(snapshot)
        if first:
            events += self._start_notices()
        for event in events:
            self._remember(event)
        screen = self.fleet_screen
        if first:
            screen.set_note("")
            if self.gc_pacer is not None:
                self.call_after_refresh(self.gc_pacer.start)  # start-up objects, on screen
        elif self.gc_pacer is not None:
            # A full collection, if due, once the previous snapshot is let go.
            self.call_after_refresh(self._release.start, self.gc_pacer.after_tick)
        else:
            self.call_after_refresh(self._release.start)
        if self._scheduler is not None:
            said = self._scheduler()
            if said is not None:
                screen.jobs_panel.set_scheduler(*said)
        screen.apply(snapshot)
        screen.add_events(events)
        if isinstance(self.screen, (HostScreen, GpusScreen)):
            self.screen.update_data()
        if not self._view_chosen:
            self._choose_view(snapshot)

    def _choose_view(self, snapshot: FleetSnapshot) -> None:
        """Open on the per-GPU view once the fleet turns out small enough for it."""
        if self._first_t is None:
            self._first_t = snapshot.t
        small = opens_on_gpus(snapshot, self._ui, snapshot.t - self._first_t)
        if small is None:
            return
        self._view_chosen = True
        if small and self.screen is self.fleet_screen:
            self.open_gpu_view(None)

    def _announce(self, snapshot: FleetSnapshot) -> list[FleetEvent]:
        """Hosts whose state got worse since the last tick: a log line each, one toast."""
        worse: list[FleetEvent] = []
        for host, label in zip(snapshot.hosts, fleet_labels(snapshot), strict=True):
            now_bad = severity(label)
            if now_bad is None:
                continue  # connecting or marked failed: not a judgement of the host
            before = self._settled.get(host.name)
            self._settled[host.name] = label
            was_bad = severity(before) if before is not None else None
            if was_bad is not None and now_bad > was_bad:
                why = host_why(host)
                worse.append(
                    FleetEvent(
                        t=snapshot.t,
                        host=host.name,
                        kind="alert",
                        text=f"worse: {before} -> {label}" + (f": {why}" if why else ""),
                        level=host.verdict.host.level
                        if label in ("warn", "critical", "failed")
                        else Level.WARN,
                    )
                )
        if worse:
            names = ", ".join(e.host for e in worse[:5]) + (" ..." if len(worse) > 5 else "")
            serious = any(e.level >= Level.CRITICAL for e in worse)
            self.notify(
                f"{counted(len(worse), 'host')} worse: {names}",
                severity="error" if serious else "warning",
                timeout=6,
            )
            if self.bell_on:
                self.bell()
        return worse

    def _start_notices(self) -> list[FleetEvent]:
        """The notices, in the log; a toast of each kind that needs the operator (level warn)."""
        notices = list(self._notices()) if self._notices is not None else []
        urgent = [n for n in notices if n.level >= Level.WARN]
        for kind in dict.fromkeys(n.kind for n in urgent):
            texts = [n.text for n in urgent if n.kind == kind]
            self.notify(
                "\n".join(texts[:3]) + ("\n..." if len(texts) > 3 else ""),
                title=NOTICE_TITLES.get(kind, ""),
                severity="warning",
                timeout=30,
            )
        return notices

    def _remember(self, event: FleetEvent) -> None:
        per_host = self._host_events.get(event.host)
        if per_host is None:
            per_host = self._host_events[event.host] = deque(maxlen=HOST_EVENTS)
        per_host.appendleft(event)

    def log_event(self, host: str, kind: str, text: str, level: Level = Level.OK) -> None:
        """A line of the app's own (operator actions and their output) in the event log."""
        event = FleetEvent(t=self._clock(), host=host, kind=kind, text=text, level=level)
        self._remember(event)
        self.fleet_screen.add_events([event])

    def _monitor_failed(self, exc: BaseException) -> None:
        message = f"the monitor stopped: {exc}"
        self.fleet_screen.set_note(message)
        self.log_event("gputui", "error", message, Level.CRITICAL)
        self.notify(message, severity="error", timeout=30)

    # -- hosts ----------------------------------------------------------------------------

    def hosts_worst_first(self) -> list[tuple[str, str]]:
        labelled = [(h.name, host_label(h)) for h in self.by_name.values()]
        return sorted(labelled, key=lambda nl: (LABEL_RANK.get(nl[1], 99), nl[0]))

    def selected_host(self) -> str | None:
        screen = self.screen
        if isinstance(screen, HostScreen):
            return screen.host
        if isinstance(screen, GpusScreen):
            return screen.selected_host()
        return self.fleet_screen.selected_host()

    def open_host(self, name: str) -> None:
        if name not in self.by_name:
            return
        # One host screen, installed once and re-shown: composing its panels and styling
        # them anew on every open would cost more than the whole tick.
        if not self.is_screen_installed(HOST_SCREEN):
            host = HostScreen(name, self.host_data, self.neighbour, self._prevention)
            self.install_screen(host, HOST_SCREEN)
        screen = self.get_screen(HOST_SCREEN)
        assert isinstance(screen, HostScreen)
        screen.show_host(name)
        self._bring_up(screen)

    def open_gpu_view(self, name: str | None) -> None:
        """The per-GPU view of host `name`, or of the whole fleet (None)."""
        if name is not None and name not in self.by_name:
            return
        # Installed once and re-shown, as the host screen.
        if not self.is_screen_installed(GPUS_SCREEN):
            view = GpusScreen(
                name,
                self.gpus_data,
                self.neighbour,
                self.open_host,
                watch=self.watch_processes,
                kill=self.kill_process,
            )
            self.install_screen(view, GPUS_SCREEN)
        screen = self.get_screen(GPUS_SCREEN)
        assert isinstance(screen, GpusScreen)
        screen.show_scope(name)
        self._bring_up(screen)

    def _bring_up(self, screen: Screen[Any]) -> None:
        """Show `screen`: back to it where it is under the top one (the host screen opened
        from the per-GPU view, or the other way), else on top."""
        if screen in self.screen_stack:
            while self.screen is not screen:
                self.pop_screen()
        else:
            self.push_screen(screen)

    def host_data(self, name: str) -> HostData | None:
        host = self.by_name.get(name)
        snapshot = self.snapshot
        if host is None or snapshot is None:
            return None
        monitor = self.session.monitor
        runtime = monitor.hosts.get(name) if monitor is not None else None
        history = runtime.history if runtime is not None else None
        slow = host.slow_sample
        held = (host.slow_sample_t or snapshot.t, slow) if slow is not None else None
        views = gpu_views(host, history, held, snapshot.t)
        events = list(self._host_events.get(name, ()))[:12]
        return HostData(host, views, events, snapshot.t, self.palette)

    def gpus_data(self, name: str | None) -> GpusData | None:
        """What the per-GPU view draws: host `name`, or every host (None), with each GPU's
        whole history for its charts."""
        snapshot = self.snapshot
        if snapshot is None:
            return None
        if name is None:
            hosts = list(snapshot.hosts)
        elif (one := self.by_name.get(name)) is not None:
            hosts = [one]
        else:
            return None
        monitor = self.session.monitor
        gpus = []
        for host in hosts:
            runtime = monitor.hosts.get(host.name) if monitor is not None else None
            history = runtime.history if runtime is not None else None
            points = history.capacity if history is not None else 0
            views = gpu_views(host, history, None, snapshot.t, points=points)
            gpus += [(host.name, view) for view in views]
        return GpusData(hosts, gpus, snapshot.t, self.palette)

    def neighbour(self, name: str, step: int) -> str | None:
        """The host `step` rows from `name` in the fleet table's order (wrapping)."""
        order = self.fleet_screen.table.shown or list(self.by_name)
        if name not in order:
            return order[0] if order else None
        return order[(order.index(name) + step) % len(order)]

    # -- actions --------------------------------------------------------------------------

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, (events.Key, events.MouseDown)):
            self._view_chosen = True  # the operator is at work: the view stays theirs
            if self.gc_pacer is not None:
                self.gc_pacer.input_seen()
        await super().on_event(event)

    async def action_quit(self) -> None:
        """Close every connection (so every agent exits with it), then leave."""
        if self._quitting:
            return
        self._quitting = True
        if self.gc_pacer is not None:
            self.gc_pacer.stop()
        self.fleet_screen.set_note("stopping: closing every connection...")
        self._applied.set()
        await self.session.close()
        self.exit()

    def action_help(self) -> None:
        sections: list[tuple[str, Iterable[BindingType]]] = [
            ("Everywhere", self.BINDINGS),
            ("Fleet screen", FleetScreen.BINDINGS),
            (
                "Fleet table",
                [
                    Binding("enter", "", "open the host (or click a row)"),
                    Binding("up,down,pageup,pagedown", "", "move"),
                    Binding("click header", "", "sort by that column"),
                ],
            ),
            ("GPU grid", GRID_HELP),
            ("Host screen", HostScreen.BINDINGS),
            ("GPU view", GpusScreen.BINDINGS),
            ("Command palette", [Binding("ctrl+p", "", "every action, and open any host by name")]),
        ]
        self.push_screen(HelpScreen(sections))

    def action_gpu_view(self) -> None:
        """The per-GPU view of the selected host."""
        host = self._target()
        if host is not None:
            self.open_gpu_view(host)

    def action_toggle_bell(self) -> None:
        self.bell_on = not self.bell_on
        self.notify(f"bell {'on' if self.bell_on else 'off'} for hosts that get worse", timeout=3)

    def action_triage(self) -> None:
        """Open the selected host's triage report (one deep pass over SSH)."""
        host = self._target()
        if host is None:
            return
        if self.triage_runner is None:
            self.notify("triage is not available in this session", severity="warning", timeout=4)
            return
        self.push_screen(TriageScreen(host, self.triage_runner))

    def _target(self) -> str | None:
        host = self.selected_host()
        if host is None:
            self.notify("no host selected", severity="warning", timeout=3)
        return host

    def _outcome(self, host: str, outcome: Outcome) -> None:
        level = Level.OK if outcome.ok else Level.WARN
        self.log_event(host, "action", outcome.text, level)
        self.notify(outcome.text, severity="information" if outcome.ok else "error", timeout=8)

    async def _prepare(self, kind: RequestKind, host: str, **how: Any) -> Prepared | None:
        try:
            return await self.operator.prepare(kind, host, **how)
        except ValueError as exc:
            self._outcome(host, Outcome(False, str(exc)))
            return None

    async def _carry_out(
        self, prepared: Prepared, *, ask: bool, question: str = ""
    ) -> Outcome | None:
        """Preview and confirm (when `ask`), run with its output in the log, log the outcome."""
        if ask and not await self.push_screen_wait(PreviewDialog(prepared, question=question)):
            return None
        host = prepared.host
        self.log_event(host, "action", f"{prepared.summary}: started")
        outcome = await self.operator.run(
            prepared, lambda line: self.log_event(host, "output", line)
        )
        self._outcome(host, outcome)
        return outcome

    def action_mark_failed(self) -> None:
        host = self._target()
        if host is not None and not self._refused():
            self._mark_failed_flow(host)

    def _refused(self) -> bool:
        """Say at once, before any dialog, when every request would be refused (watch only)."""
        refusal = self.operator.refusal
        if refusal is not None:
            self.notify(refusal, severity="warning", timeout=6)
        return refusal is not None

    @work(exclusive=True, group="operator")
    async def _mark_failed_flow(self, host: str) -> None:
        snap = self.by_name.get(host)
        if snap is not None and snap.marked_failed:
            self.notify(f"{host} is already marked failed (u resumes it)", timeout=4)
            return
        reason = ""
        if snap is not None:
            worst = snap.verdict.host.worst
            reason = worst.text if worst is not None and worst.level > Level.OK else host_why(snap)
        hint = (
            "Reason (journaled, and passed to the on-fail actions):"
            if self.operator.journaled
            else "Reason (this session only: no journal is open):"
        )
        answer = await self.push_screen_wait(ReasonDialog(host, reason, hint=hint))
        if answer is None:
            return
        prepared = await self._prepare("fail", host, reason=answer)
        if prepared is None:
            return
        # The reason dialog was the confirmation, unless commands are about to run or the
        # jobs the node's failure hits are to be seen first.
        outcome = await self._carry_out(prepared, ask=prepared.commands > 0 or bool(prepared.jobs))
        if outcome is None or not outcome.ok:
            return
        spare = self.operator.spare_for(host, self.snapshot)
        if spare is not None:
            offer = await self._prepare("spare", host, spare=spare)
            if offer is not None:
                question = f"Bring spare {spare} into service in place of {host}?"
                await self._carry_out(offer, ask=True, question=question)

    def action_resume(self) -> None:
        host = self._target()
        if host is not None and not self._refused():
            self._resume_flow(host)

    @work(exclusive=True, group="operator")
    async def _resume_flow(self, host: str) -> None:
        snap = self.by_name.get(host)
        if snap is not None and not snap.marked_failed:
            self.notify(f"{host} is not marked failed", timeout=4)
            return
        prepared = await self._prepare("resume", host)
        if prepared is None:
            return
        outcome = await self._carry_out(
            prepared, ask=True, question=resume_question(prepared.summary, snap)
        )
        if outcome is not None and outcome.refused:
            forced = await self._prepare("resume", host, force=True)
            if forced is not None:
                await self._carry_out(forced, ask=True, question=f"Force: {forced.summary}?")

    def action_run_action(self) -> None:
        host = self._target()
        if host is not None and not self._refused():
            self._action_flow(host)

    @work(exclusive=True, group="operator")
    async def _action_flow(self, host: str) -> None:
        choices = self.operator.actions(host)
        if not choices:
            self.notify("no actions are configured ([actions] in hosts.toml)", timeout=5)
            return
        snap = self.by_name.get(host)
        picked = await self.push_screen_wait(
            ActionPicker(host, choices, host_why(snap) if snap is not None else "")
        )
        if picked is None:
            return
        action, reason = picked
        prepared = await self._prepare("action", host, action=action, reason=reason)
        if prepared is not None:
            await self._carry_out(prepared, ask=True)

    def watch_processes(self, hosts: Collection[str]) -> None:
        """Ask for the processes of `hosts` every second (the per-GPU view shows them)."""
        monitor = self.session.monitor
        if monitor is not None:
            monitor.watch_processes(hosts)

    def kill_process(self, host: str, pid: int) -> None:
        self._kill_flow(host, pid)

    @work(exclusive=True, group="operator")
    async def _kill_flow(self, host: str, pid: int) -> None:
        """Confirm with the process, its user and its host named, then kill it, journaled."""
        try:
            prepared = await self.operator.prepare_kill(host, pid)
        except ValueError as exc:
            self._outcome(host, Outcome(False, str(exc)))
            return
        await self._carry_out(prepared, ask=True, question=prepared.question)

    def action_clear_latched(self) -> None:
        host = self._target()
        if host is not None:
            self._clear_flow(host)

    @work(exclusive=True, group="operator")
    async def _clear_flow(self, host: str) -> None:
        monitor = self.session.monitor
        if monitor is None:
            return
        question = f"Clear the latched reasons of {host}?"
        detail = "Do this after the GPU was reset or repaired; live conditions come back at once."
        if not await self.push_screen_wait(ConfirmDialog(question, detail, yes="Clear")):
            return
        monitor.clear(host)
        self.log_event(host, "action", "latched reasons cleared by the operator")

    # -- command palette ------------------------------------------------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        fleet = self.fleet_screen
        for tab, title in (
            ("fleet", "Fleet table"),
            ("grid", "GPU grid"),
            ("risk", "Risk panel"),
            ("events", "Event log"),
            ("jobs", "Jobs"),
            ("prevention", "Prevention"),
        ):
            yield SystemCommand(
                f"Show {title}",
                f"Switch to the {title.lower()} tab",
                lambda t=tab: self._show_tab(t),
            )
        yield SystemCommand(
            "Filter", "Filter the fleet table or the event log (/)", fleet.action_filter
        )
        yield SystemCommand(
            "Sort", "Sort the fleet table by the next column (s)", fleet.action_sort
        )
        yield SystemCommand(
            "Reverse sort", "Reverse the fleet table's order (S)", fleet.action_sort_reverse
        )
        yield SystemCommand(
            "Grid colour", "Colour the GPU grid by the next metric (m)", fleet.action_grid_mode
        )
        yield SystemCommand(
            "Open selected host",
            "The host screen of the selected host (enter)",
            self._open_selected,
        )
        yield SystemCommand(
            "GPU view",
            "Meters, charts and processes of the selected host's GPUs (g)",
            self.action_gpu_view,
        )
        yield SystemCommand(
            "Mark host failed", "Take the selected host out of service (x)", self.action_mark_failed
        )
        yield SystemCommand(
            "Resume host", "Return the selected host to service (u)", self.action_resume
        )
        yield SystemCommand(
            "Run action", "Run a configured action on the selected host (a)", self.action_run_action
        )
        yield SystemCommand(
            "Clear latched reasons", "After a GPU reset or repair (c)", self.action_clear_latched
        )
        yield SystemCommand(
            "Toggle bell",
            "Ring the terminal bell when a host gets worse (b)",
            self.action_toggle_bell,
        )
        yield SystemCommand("Help", "Every key (?)", self.action_help)

    def _show_tab(self, tab: str) -> None:
        while isinstance(self.screen, (HostScreen, GpusScreen)):
            self.pop_screen()
        self.fleet_screen.action_tab(tab)

    def _open_selected(self) -> None:
        host = self.selected_host()
        if host is not None:
            self.open_host(host)


def resume_question(summary: str, snap: HostSnapshot | None) -> str:
    """The resume's question (`summary`: "return gpu005 to service") with what the host reads
    now: one marked failed seconds ago may still be failing, and the operator decides on it."""
    question = f"{summary}?"
    if snap is None:
        return question
    why = host_why(snap)
    return f"{question} It reads {live_label(snap)} now" + (f": {why}" if why else ".")
