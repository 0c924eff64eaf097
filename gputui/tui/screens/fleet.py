"""The main screen: the fleet table, the GPU grid, the risk panel, the event log, the jobs and
the service list (prevention) as tabs.

Only the visible tab is brought up to date on a tick; a tab catches up with the newest
snapshot when it is shown (the table's keyed diff and the grid's repaint need no history).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input, Static, TabbedContent, TabPane

if TYPE_CHECKING:
    from gputui.core.risk import RiskSettings

from gputui.core.model import FleetEvent, FleetSnapshot
from gputui.core.text import plain
from gputui.core.words import counted
from gputui.tui.fleetview import SORT_OF_COLUMN, SortKey
from gputui.tui.gridview import GridMode
from gputui.tui.palette import DEFAULT_PALETTE, Palette
from gputui.tui.release import Release
from gputui.tui.summary import summary_text
from gputui.tui.widgets.acyclic_lines import AcyclicLines
from gputui.tui.widgets.event_log import EventLog
from gputui.tui.widgets.filter_box import FilterBox
from gputui.tui.widgets.fleet_table import FleetTable
from gputui.tui.widgets.gpu_grid import GpuGrid, GridPanel
from gputui.tui.widgets.jobs_table import JobsPanel, JobsTable
from gputui.tui.widgets.key_bar import KeyBar
from gputui.tui.widgets.prevention_panel import PreventionPanel, PreventionSource, PreventionTable
from gputui.tui.widgets.risk_panel import Record, RiskPanel

TABS = ("fleet", "grid", "risk", "events", "jobs", "prevention")
# Tabs whose rows `s` puts in another order; the others (the grid in fleet order, the risk
# figures, the log newest first) have none to change.
SORTED_TABS = ("fleet", "jobs")
RECENT_LINES = 4
TALL = 34  # rows from which the recent-events strip is worth its space
# Seconds screen updates are held on a tab switch: the tab bar, the panes' display and the
# focus each settle in messages of their own, and without the hold the first of them went
# out as an update of its own (a full redraw of the old tab, 15-25 ms at 1,000 hosts). A few
# milliseconds cover them; measured at 1,000 hosts, 20 ms answered later than 1-5 ms, and no
# hold at all 20 ms later still (two full redraws).
SWITCH_SETTLE = 0.005
FLEET_FILTER_HINT = "filter: text  state:warn  rack=r1  -state:ok   (enter keeps, esc clears)"
EVENT_FILTER_HINT = "filter: level:warn  host:gpu01*  kind:xid  text   (enter keeps, esc clears)"


class FleetScreen(AcyclicLines, Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "tab('fleet')", "Fleet", show=False),  # the tab bar shows it
        Binding("2", "tab('grid')", "Grid", show=False),  # the tab bar shows it
        Binding("3", "tab('risk')", "Risk", show=False),  # the tab bar shows it
        Binding("4", "tab('events')", "Events", show=False),  # the tab bar shows it
        Binding("5", "tab('jobs')", "Jobs", show=False),  # the tab bar shows it
        Binding("6", "tab('prevention')", "Prevention", show=False),  # the tab bar shows it
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("S", "sort_reverse", "Reverse sort", show=False),
        Binding("m", "grid_mode", "Grid colour", show=False),
    ]

    def __init__(
        self,
        open_host: Callable[[str], None],
        risk_settings: RiskSettings | None = None,
        record: Record | None = None,
        prevention: PreventionSource | None = None,
        release: Release | None = None,
    ) -> None:
        super().__init__(classes="fleet-screen")
        self._release = release
        self._open_host = open_host
        self._risk_settings = risk_settings
        self._record = record
        self._prevention = prevention
        self.snapshot: FleetSnapshot | None = None
        self.palette: Palette = DEFAULT_PALETTE
        self.note = ""
        # tab -> the snapshot it last caught up with: a tab shown again within the same tick
        # (1, 2, 1) has nothing to catch up on.
        self._applied: dict[str, FleetSnapshot] = {}

    def compose(self) -> ComposeResult:
        yield Static(Text("gputui  starting the monitor...", style="dim"), id="summary")
        with TabbedContent(initial="fleet", id="tabs"):
            with TabPane("1 Fleet", id="fleet"):
                yield FleetTable(id="fleet-table")
                yield FilterBox(placeholder=FLEET_FILTER_HINT, id="fleet-filter", classes="filter")
                yield Static(id="fleet-status", classes="status")
            with TabPane("2 Grid", id="grid"):
                yield GridPanel(id="grid-panel")
            with TabPane("3 Risk", id="risk"):
                yield RiskPanel(self._risk_settings, self._record, id="risk-panel")
            with TabPane("4 Events", id="events"):
                yield EventLog(id="event-log")
                yield FilterBox(placeholder=EVENT_FILTER_HINT, id="events-filter", classes="filter")
                yield Static(id="events-status", classes="status")
            with TabPane("5 Jobs", id="jobs"):
                yield JobsPanel(self._risk_settings, self._record, id="jobs-panel")
            with TabPane("6 Prevention", id="prevention"):
                yield PreventionPanel(self._prevention, id="prevention-panel")
        yield Static(id="recent")
        yield KeyBar()

    # -- widgets --------------------------------------------------------------------------

    @property
    def table(self) -> FleetTable:
        return self.query_one(FleetTable)

    @property
    def grid_panel(self) -> GridPanel:
        return self.query_one(GridPanel)

    @property
    def event_log(self) -> EventLog:
        return self.query_one(EventLog)

    @property
    def jobs_panel(self) -> JobsPanel:
        return self.query_one(JobsPanel)

    @property
    def prevention_panel(self) -> PreventionPanel:
        return self.query_one(PreventionPanel)

    @property
    def active_tab(self) -> str:
        return self.query_one(TabbedContent).active

    def on_mount(self) -> None:
        self.table.focus()
        self._status()

    def on_resize(self) -> None:
        self.set_class(self.size.height >= TALL, "-tall")
        self._summary()

    # -- data -----------------------------------------------------------------------------

    def apply(self, snapshot: FleetSnapshot) -> None:
        """Bring the visible parts to `snapshot` (called inside the app's batch update)."""
        self.snapshot = snapshot
        self._summary()
        self._apply_tab(self.active_tab)

    def _apply_tab(self, tab: str) -> None:
        snapshot = self.snapshot
        if snapshot is None:
            return
        shown = self._applied.get(tab)
        if shown is not None and shown is not snapshot and self._release is not None:
            # A tab shown again after ticks away holds an older snapshot's hosts than the
            # app's: they too are let go after the screen update, not inside it.
            self._release.hold(shown)
            self.call_after_refresh(self._release.start)
        self._applied[tab] = snapshot
        if tab == "fleet":
            self.table.apply(snapshot)
            self._status()
        elif tab == "grid":
            self.grid_panel.apply(snapshot)
        elif tab == "risk":
            self.query_one(RiskPanel).apply(snapshot)
        elif tab == "jobs":
            self.jobs_panel.apply(snapshot)
        elif tab == "prevention":
            self.prevention_panel.apply(snapshot)

    def add_events(self, events: Sequence[FleetEvent]) -> None:
        if not events:
            return
        log = self.event_log
        log.add(events)
        # The lines updated each tick (#recent, #summary, the status lines, the key bar) have
        # fixed heights: layout=False. A layout pass each tick would make every scrolling
        # widget redraw its scrollbars, whose lines Textual leaves to the cyclic collector
        # (docs/benchmarks.md: the full collections).
        self.query_one("#recent", Static).update(
            Text("\n".join(log.lines(RECENT_LINES))), layout=False
        )
        self._events_status()

    def set_note(self, note: str) -> None:
        """A word about the monitor itself (starting, stopping, failed) in the summary line."""
        self.note = note
        self._summary()

    def _summary(self) -> None:
        summary = self.query_one("#summary", Static)
        if self.snapshot is None:
            summary.update(Text(plain(f"gputui  {self.note}"), style="dim"), layout=False)
            return
        width = summary.content_size.width or self.size.width
        summary.update(summary_text(self.snapshot, self.palette, self.note, width), layout=False)

    def set_palette(self, palette: Palette) -> None:
        self.palette = palette
        self._applied.clear()  # every tab redraws in the new colours when next shown
        self.table.set_palette(palette)
        self.grid_panel.set_palette(palette)
        self.event_log.set_palette(palette)
        self.jobs_panel.set_palette(palette)
        self.prevention_panel.set_palette(palette)
        if self.snapshot is not None:
            self.apply(self.snapshot)

    def selected_host(self) -> str | None:
        if self.active_tab == "grid":
            return self.grid_panel.grid.selected_host
        if self.active_tab == "jobs":
            return self.jobs_panel.selected_host()
        if self.active_tab == "prevention":
            return self.prevention_panel.selected_host()
        return self.table.selected_host

    def _status(self) -> None:
        table = self.table
        shown, total = table.row_count, table.total
        order = table.sort_key.value + (" (reversed)" if table.sort_reverse else "")
        text = f"{shown} of {counted(total, 'host')}" if table.filter else counted(total, "host")
        text += f", sorted by {order} (s)"
        if table.filter:
            text += f", filter: {table.filter.text} (/)"
        else:
            text += ", / filters, enter opens a host"
        self.query_one("#fleet-status", Static).update(Text(text, style="dim"), layout=False)

    def _events_status(self) -> None:
        log = self.event_log
        text = f"{log.shown} of {counted(len(log.entries), 'event')}, newest first"
        if log.filter:
            text += f", filter: {log.filter.text}"
        self.query_one("#events-status", Static).update(Text(text, style="dim"), layout=False)

    # -- actions --------------------------------------------------------------------------

    def action_tab(self, tab: str) -> None:
        # Everything the new tab needs is done here, in the key's own handler, before the
        # switch: its data, its cursor and the focus. Left to TabActivated and to focus()'s
        # deferred call, each of them came after a screen update of its own, and at 1,000
        # hosts every such update redraws the whole table or grid: three full redraws per
        # switch instead of one (90-130 ms to the last, against 30-50).
        if tab == self.active_tab:
            return
        self.app.delay_update(SWITCH_SETTLE)
        self._tab_shown(tab)
        self.query_one(TabbedContent).active = tab

    @on(TabbedContent.TabActivated)
    def _tab_clicked(self, event: TabbedContent.TabActivated) -> None:
        self._tab_shown(event.pane.id or "fleet")  # a click on the tab bar: no key before it

    def _tab_shown(self, tab: str) -> None:
        snapshot = self.snapshot
        if snapshot is not None and self._applied.get(tab) is not snapshot:
            self._apply_tab(tab)
        focus: dict[str, type[Widget]] = {
            "fleet": FleetTable,
            "grid": GpuGrid,
            "risk": RiskPanel,
            "events": EventLog,
            "jobs": JobsTable,
            "prevention": PreventionTable,
        }
        # set_focus at once (focus() defers it to a later message) and without scrolling
        # the widget into view (it fills its tab): the new look is in the first update.
        self.set_focus(self.query_one(focus[tab]), scroll_visible=False)
        if tab == "grid" and (host := self.table.selected_host) is not None:
            self.grid_panel.select_host(host)

    def action_filter(self) -> None:
        tab = self.active_tab
        if tab not in ("fleet", "events"):
            self.action_tab("fleet")
            tab = "fleet"
        box = self.query_one(f"#{tab}-filter", FilterBox)
        box.add_class("-shown")
        box.focus()

    @on(Input.Changed, ".filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._set_filter(event.input.id or "", event.value)

    def _set_filter(self, box_id: str, text: str) -> None:
        if box_id == "fleet-filter":
            self.table.set_filter(text)
            self._status()
        else:
            self.event_log.set_filter(text)
            self._events_status()

    @on(Input.Submitted, ".filter")
    def _filter_kept(self, event: Input.Submitted) -> None:
        box = event.input
        if not box.value.strip():
            box.remove_class("-shown")
        self._focus_tab_widget()

    @on(FilterBox.Cleared)
    def _filter_cleared(self, event: FilterBox.Cleared) -> None:
        self._set_filter(event.box.id or "", "")
        event.box.remove_class("-shown")
        self._focus_tab_widget()

    def _focus_tab_widget(self) -> None:
        if self.active_tab == "events":
            self.event_log.focus()
        else:
            self.table.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("sort", "sort_reverse"):
            # Only where it orders what is shown: elsewhere it sorted the hidden fleet table.
            return self._sortable()
        return True

    def _sortable(self) -> bool:
        try:
            return self.active_tab in SORTED_TABS
        except NoMatches:  # asked before the tabs are composed
            return True

    def action_sort(self) -> None:
        if not self._sortable():
            self.app.notify("nothing on this tab has an order to change", timeout=3)
            return
        if self.active_tab == "jobs":  # the tab shown sorts: the jobs have orders of their own
            jobs = self.jobs_panel
            jobs.set_sort(jobs.sort_key.next(), False)
            return
        table = self.table
        table.set_sort(table.sort_key.next(), False)
        self._status()

    def action_sort_reverse(self) -> None:
        if not self._sortable():
            self.app.notify("nothing on this tab has an order to change", timeout=3)
            return
        if self.active_tab == "jobs":
            jobs = self.jobs_panel
            jobs.set_sort(jobs.sort_key, not jobs.sort_reverse)
            return
        table = self.table
        table.set_sort(table.sort_key, not table.sort_reverse)
        self._status()

    def action_grid_mode(self) -> GridMode:
        if self.active_tab != "grid":
            self.action_tab("grid")
        return self.grid_panel.cycle_mode()

    @on(FleetTable.HeaderClicked)
    def _header(self, event: FleetTable.HeaderClicked) -> None:
        key = SORT_OF_COLUMN.get(event.column)
        if key is None:
            return
        table = self.table
        reverse = not table.sort_reverse if key is table.sort_key else False
        table.set_sort(key, reverse)
        self._status()

    @on(FleetTable.HostChosen)
    def _row_chosen(self, event: FleetTable.HostChosen) -> None:
        self._open_host(event.host)

    @on(GpuGrid.Chosen)
    def _cell_chosen(self, event: GpuGrid.Chosen) -> None:
        self._open_host(event.host)

    @on(JobsPanel.HostChosen)
    def _job_gpu_chosen(self, event: JobsPanel.HostChosen) -> None:
        self._open_host(event.host)

    @on(PreventionPanel.HostChosen)
    def _service_chosen(self, event: PreventionPanel.HostChosen) -> None:
        self._open_host(event.host)

    def set_sort(self, key: SortKey, reverse: bool = False) -> None:
        self.table.set_sort(key, reverse)
        self._status()
