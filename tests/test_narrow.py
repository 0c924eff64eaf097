"""Narrow terminals: the fleet table, the dialogs and `gputui triage` at 60, 80 and 120 columns.

At 80 and 60 columns WHY keeps its room and the columns that say least (kW, MEM, SEEN) give
way first; every sortable header shows its arrow; a dialog's text wraps and its buttons stay on
screen however long the text; the triage report is laid out for the terminal's width, its GPU
table split into tables that fit rather than cut. What the operator sees is read off the
screen itself (the SVG screenshot's text), not off the widgets' data.
"""

from __future__ import annotations

import html
import re
from functools import cache
from pathlib import Path

import msgspec
import pytest
from rich.cells import cell_len
from textual.geometry import Region

from gputui.agent.sim_backend import SimBackend
from gputui.cli.demo_setup import demo_config
from gputui.collect.scenarios import load_scenario
from gputui.core.model import Action, GpuReading, Hello, Level, Sample, TriageFacts
from gputui.core.triage import TriageInput, TriageReport, assess_host, build_report
from gputui.ops.actions import OperatorActions
from gputui.ops.journal import Journal
from gputui.render.triage import (
    GPU_HEADERS,
    MIN_WIDTH,
    gpu_column_groups,
    triage_table,
)
from gputui.tui.app import GpuTuiApp
from gputui.tui.fleetview import (
    COLUMN_KEYS,
    COLUMNS,
    SORT_OF_COLUMN,
    WHY_MIN,
    WHY_SHARE,
    SortKey,
    column_widths,
)
from gputui.tui.ops_operator import OpsOperator
from gputui.tui.screens.dialogs import PreviewDialog
from gputui.tui.screens.triage import TriageScreen
from tests.fake_fleet import R, small_fleet
from tests.test_triage_agent import run_triage
from tests.test_tui_app import running, until

# Clock texts in UTC whatever the machine's zone (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("utc")

_SVG_TEXT = re.compile(r'<text class="[^"]*" x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>')
# Where Textual's SVG screenshots put a cell: x = 12.2 px a column, y = 20 px + 24.4 px a line.
_CELL_PX = 12.2
_TOP_PX = 20.0
_LINE_PX = 24.4


def screen_lines(app: GpuTuiApp) -> list[str]:
    """The screen as a person reads it: the screenshot's text, line by line."""
    rows: dict[int, list[tuple[int, str]]] = {}
    for m in _SVG_TEXT.finditer(app.export_screenshot()):
        text = html.unescape(m.group(3)).replace("\xa0", " ")
        row = round((float(m.group(2)) - _TOP_PX) / _LINE_PX)
        rows.setdefault(row, []).append((round(float(m.group(1)) / _CELL_PX), text))
    lines = []
    for row in range(app.size.height):
        line = ""
        for x, text in sorted(rows.get(row, ())):
            line = line.ljust(x) + text
        lines.append(line.rstrip())
    return lines


def screen_words(app: GpuTuiApp, region: Region | None = None) -> str:
    """The text of the screen (or of `region` of it) with every run of spaces and line breaks
    as one space."""
    lines = screen_lines(app)
    if region is not None:
        lines = [line[region.x : region.right] for line in lines[region.y : region.bottom]]
    return " ".join(" ".join(lines).split())


# -- the fleet table's columns ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "left_out"),
    [
        (200, set()),
        (120, set()),
        (80, {"power", "mem"}),
        (60, {"power", "mem", "age", "gpus"}),
    ],
)
def test_columns_give_way_to_why_those_that_say_least_first(width: int, left_out: set[str]) -> None:
    widths = column_widths(width, 7)
    shown = {c.key for c, w in zip(COLUMNS, widths, strict=True) if w}
    assert set(COLUMN_KEYS) - shown == left_out
    room = width - sum(w for c, w in zip(COLUMNS, widths, strict=True) if c.key != "why")
    assert room >= max(WHY_MIN, int(width * WHY_SHARE))


def test_columns_leave_in_their_order_and_only_while_why_lacks_room() -> None:
    order = [c.key for c in sorted((c for c in COLUMNS if c.drop), key=lambda c: c.drop)]
    assert order[:3] == ["power", "mem", "age"]  # kW, MEM, SEEN first
    for host_width in (6, 12, 24):
        for width in range(30, 260):
            widths = dict(zip(COLUMN_KEYS, column_widths(width, host_width), strict=True))
            gone = [key for key in order if widths[key] == 0]
            assert gone == order[: len(gone)], (width, gone)  # always the first in order
            if gone:  # the last to leave had to: with it, WHY would lack its room
                natural = dict(zip(COLUMN_KEYS, column_widths(0, host_width), strict=True))
                with_it = sum(w for k, w in widths.items() if k != "why") + natural[gone[-1]]
                assert width - with_it < max(WHY_MIN, int(width * WHY_SHARE)), (width, gone)


@pytest.mark.parametrize(
    ("size", "header", "why"),
    [
        ((60, 24), ["HOST", "STATE▾", "UTIL%", "TEMP", "WHY"], "GPU3 XID 79: GPU has"),
        ((80, 24), ["HOST", "STATE▾", "GPU", "UTIL%", "TEMP", "SEEN", "WHY"], "GPU has fallen off"),
        (
            (120, 40),
            ["HOST", "STATE▾", "GPU", "UTIL%", "TEMP", "kW", "MEM", "SEEN", "WHY"],
            "GPU3 XID 79: GPU has fallen off the bus",
        ),
    ],
)
async def test_the_fleet_table_keeps_why_readable_at_every_width(
    size: tuple[int, int], header: list[str], why: str
) -> None:
    async with running(size=size) as r:
        lines = screen_lines(r.app)
        head = next(line for line in lines if line.lstrip().startswith("HOST"))
        assert head.split() == header
        top = next(line for line in lines if line.lstrip().startswith("gpu005"))
        assert why in top  # the worst host's reason, readable on its row
        key_of = {c.header: c.key for c in COLUMNS}
        assert r.table.shown_columns == [key_of[h.rstrip("▾")] for h in header]


async def test_columns_come_and_go_as_the_terminal_is_resized() -> None:
    async with running(size=(120, 30)) as r:
        assert r.table.shown_columns == list(COLUMN_KEYS)
        await r.pilot.resize_terminal(60, 30)
        await r.pilot.pause()
        assert r.table.shown_columns == ["host", "state", "util", "temp", "why"]
        await r.pilot.resize_terminal(120, 30)
        await r.pilot.pause()
        assert r.table.shown_columns == list(COLUMN_KEYS)


@pytest.mark.parametrize("reverse", [False, True])
async def test_every_sorted_column_shows_its_arrow(reverse: bool) -> None:
    arrow = "▴" if reverse else "▾"
    headers = {c.key: c.header for c in COLUMNS}
    async with running(size=(120, 30)) as r:
        for column, key in SORT_OF_COLUMN.items():
            r.app.fleet_screen.set_sort(key, reverse)
            await r.pilot.pause()
            head = r.table.render_line(0).text
            assert f"{headers[column]}{arrow}" in head.split(), (key, head)
            assert head.count(arrow) == 1
        assert set(SORT_OF_COLUMN.values()) == set(SortKey)


async def test_s_sorts_only_the_tab_shown() -> None:
    async with running(size=(120, 30)) as r:
        table = r.table
        for tab in ("2", "3", "4"):  # grid, risk, events: nothing there in an order of its own
            await r.press(tab, "s", "S")
            assert (table.sort_key, table.sort_reverse) == (SortKey.STATE, False), tab
            assert "Sort" not in " ".join(screen_lines(r.app)[-1:]), tab
        jobs = r.app.fleet_screen.jobs_panel
        before = jobs.sort_key
        await r.press("5", "s")
        assert jobs.sort_key is before.next() and table.sort_key is SortKey.STATE
        await r.press("1", "s")
        assert table.sort_key is SortKey.HOST


# -- dialogs ----------------------------------------------------------------------------------


def dialog(app: GpuTuiApp) -> Region:
    """Where the dialog on top shows its text."""
    return app.screen.query_one(".dialog").content_region


LONG = "GPU3 XID 79: GPU has fallen off the bus; reboot or power-cycle the node; RMA if it recurs"


@pytest.mark.parametrize("size", [(60, 24), (80, 24), (200, 50)])
async def test_the_mark_failed_dialogs_wrap_and_keep_their_buttons_on_screen(
    size: tuple[int, int], tmp_path: Path
) -> None:
    fleet = small_fleet()
    fleet.scripts["gpu005"].reasons[0] = R(
        "xid_79", Level.FAILED, LONG, 3, Action.REBOOT_NODE, latched=True
    )
    config = demo_config(list(fleet.scripts), tmp_path / "scheduler.log")
    journal = Journal.open(tmp_path / "journal.sqlite3")
    holder: list[OperatorActions] = []
    operator = OpsOperator(lambda: holder[0] if holder else None)
    async with running(fleet, size=size, operator=operator) as r:
        holder.append(OperatorActions(config, journal, monitor=r.monitor))  # type: ignore[arg-type]
        await r.press("x")
        assert "Mark gpu005 failed" in screen_words(r.app, dialog(r.app))
        await r.press("enter")  # the prefilled reason; then the drain's preview
        await until(r.pilot, lambda: isinstance(r.app.screen, PreviewDialog))
        await r.pilot.pause()
        shown = screen_words(r.app, dialog(r.app))
        assert f'mark gpu005 failed: "{LONG}"?' in shown  # whole, with its closing quote
        width, height = size
        for button in ("#yes", "#no"):
            region = r.app.screen.query_one(button).region
            assert region.right <= width and region.bottom <= height, (button, region)
        assert "Run (y)" in shown and "Cancel (n)" in shown
        await r.press("n")
        await holder[0].aclose()
    journal.close()


# -- gputui triage ----------------------------------------------------------------------------


@cache
def _triaged(scenario: str, host: str) -> TriageInput:
    msgs = run_triage(SimBackend(load_scenario(scenario), seed=5, event_thread=False))
    hello = next(m for m in msgs if isinstance(m, Hello))
    samples = tuple(m for m in msgs if isinstance(m, Sample))
    facts = next(m for m in msgs if isinstance(m, TriageFacts))
    return TriageInput(host=host, hello=hello, samples=samples, facts=facts)


def faulty_report() -> TriageReport:
    """Hosts of the simulator's fault scenarios, triaged by the real agent."""
    hosts = [
        assess_host(_triaged(scenario, f"gpu-node-{i:03d}"))
        for i, scenario in enumerate(("xid79", "ecc", "thermal", "flaky", "healthy"), 1)
    ]
    return build_report(hosts, 1_800_000_000.0, None)


@pytest.mark.parametrize("width", [60, 80, 120])
def test_triage_lays_its_tables_out_for_the_terminal(width: int) -> None:
    text = triage_table(faulty_report(), width)
    lines = text.splitlines()
    for line in lines:
        if not line.startswith("command: "):  # one line, so that it pastes whole
            assert cell_len(line) <= width, (width, line)
    # Every column of the GPU table is there, under a header of its own, never cut.
    headers = [line for line in lines if line.startswith("GPU  ")]
    assert {h for line in headers for h in re.split(r"\s{2,}", line.strip())} == set(GPU_HEADERS)
    gpu_rows = [line for line in lines if re.match(r"\d+ {2,}", line)]
    assert gpu_rows and not any("…" in row for row in gpu_rows)
    assert "PROCS" in text and "EVENTS" in text


def test_the_gpu_table_splits_into_tables_that_fit() -> None:
    widths = [3, 8, 5, 7, 4, 6, 6, 7, 12, 6, 6, 16]
    assert gpu_column_groups(widths, 200) == [list(range(12))]
    for width in (MIN_WIDTH, 60, 80, 100):
        groups = gpu_column_groups(widths, width)
        assert all(group[0] == 0 for group in groups)  # each table says which GPU
        assert sorted({i for group in groups for i in group}) == list(range(12))
        for group in groups:
            assert sum(widths[i] for i in group) + 2 * (len(group) - 1) <= width


def test_triage_is_never_laid_out_narrower_than_its_tables_read() -> None:
    text = triage_table(faulty_report(), 10)
    assert max(cell_len(line) for line in text.splitlines() if "command:" not in line) <= (
        MIN_WIDTH
    )
    assert "GPU  VERDICT" in text


# -- host text in the triage report, at every width -------------------------------------------

HOSTILE = ":ab: [bold]x[/bold]"  # an emoji shortcode and markup, as a host may send them


def hostile_report() -> TriageReport:
    """The xid79 host's triage with host text in every field a host fills."""
    inp = _triaged("xid79", f"0000:ab:00 {HOSTILE}")
    assert inp.hello is not None and inp.facts is not None
    hello = msgspec.structs.replace(
        inp.hello,
        driver_version=HOSTILE,
        nvml_version=HOSTILE,
        cuda_version=HOSTILE,
        gpus=[
            msgspec.structs.replace(g, name=HOSTILE, pci_bus_id="0000:ab:00.0")
            for g in inp.hello.gpus
        ],
    )

    def named(r: GpuReading) -> GpuReading:
        procs = [msgspec.structs.replace(p, name=HOSTILE) for p in r.processes or []]
        return msgspec.structs.replace(r, processes=procs or r.processes, error=r.error and HOSTILE)

    samples = tuple(
        msgspec.structs.replace(s, gpus=[named(r) for r in s.gpus]) for s in inp.samples
    )
    facts = msgspec.structs.replace(
        inp.facts,
        kernel=HOSTILE,
        os=HOSTILE,
        user=HOSTILE,
        xids=[
            msgspec.structs.replace(x, text=HOSTILE, process=HOSTILE, pci_bus_id="0000:ab:00")
            for x in inp.facts.xids
        ],
    )
    up = assess_host(TriageInput(host=inp.host, hello=hello, samples=samples, facts=facts))
    down = assess_host(
        TriageInput(host=f"gpu002 {HOSTILE}", error_code="unreachable", error=HOSTILE)
    )
    return build_report([up, down], 1_800_000_000.0, None)


@pytest.mark.parametrize("width", [60, 80, 120])
def test_host_text_in_every_field_of_triage_is_shown_as_written(width: int) -> None:
    text = triage_table(hostile_report(), width)
    assert "🆎" not in text
    flat = " ".join(text.split())
    for said in (
        f"0000:ab:00 {HOSTILE}: FAILED",  # the host's name, in its rule
        f"kernel {HOSTILE}, {HOSTILE}, as {HOSTILE}",  # its facts
        f"driver {HOSTILE}, NVML {HOSTILE}, CUDA {HOSTILE}",
        "0000:ab:00 XID 79",  # the kernel log's bus id, no emoji
        f"): {HOSTILE} (pid",  # the kernel log's text and process
        f"not triaged: {HOSTILE}",  # an unreachable host's error
    ):
        assert said in flat, (width, said)
    assert text.splitlines()[1].startswith(f"0000:ab:00 {HOSTILE} ")  # the summary's worst


@pytest.mark.parametrize("size", [(60, 24), (80, 24), (120, 40)])
async def test_the_triage_dialog_paints_host_text_as_written(size: tuple[int, int]) -> None:
    async def runner(host: str, width: int) -> str:
        return triage_table(hostile_report(), width)

    async with running(size=size, triage=runner) as r:
        await r.press("t")
        screen = r.app.screen
        assert isinstance(screen, TriageScreen)
        await until(r.pilot, lambda: screen.report_text is not None)
        await r.pilot.pause()
        painted = screen_lines(r.app)
        assert not any("🆎" in line for line in painted)
        assert sum(HOSTILE in line for line in painted) >= 2, painted
        assert any("0000:ab:00" in line for line in painted)
