"""What gputui says, said once and said right: counts agree with their nouns, nothing is said
twice, no "none" stands for advice on a host that is not ok, one word for one step, a
confirmation shows what it will do and to which node, a reason read at another time says so,
and one fault is one line of the event log."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec
import pytest

from gputui.cli.demo_setup import demo_config
from gputui.collect.host_runtime import HostRuntime
from gputui.collect.scenarios import load_scenario
from gputui.core.health import HostHealth
from gputui.core.model import (
    Action,
    Event,
    FleetEvent,
    FleetSnapshot,
    GpuReading,
    Hello,
    HostSnapshot,
    HostState,
    HostVerdict,
    Level,
    Reason,
    Sample,
    Verdict,
)
from gputui.core.reasons import advice
from gputui.core.triage_steps import OperatorStep, step_for
from gputui.core.words import counted
from gputui.core.xid import xid_info, xid_words
from gputui.ops.actions import OperatorActions
from gputui.ops.journal import Journal
from gputui.render.report import report_markdown, report_table, summary_line
from gputui.render.triage import finding_line
from gputui.tui.hostview import reasons_text
from gputui.tui.palette import DEFAULT_PALETTE
from gputui.tui.screens.dialogs import LinesDialog, PreviewDialog
from gputui.tui.widgets.event_log import FAULT_WINDOW_S, EventLog
from tests.agent_sim import run_fast
from tests.fake_fleet import R, hello, reading, small_fleet
from tests.test_tui_app import running

# Clock texts in UTC whatever the machine's zone (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("utc")

H200 = Path(__file__).parent / "fixtures" / "h200" / "h200-nvml-idle-load-idle.jsonl"
T = 1_800_000_000.0


# -- counts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "noun", "plural", "said"),
    [
        (0, "host", "", "0 hosts"),
        (1, "host", "", "1 host"),
        (2, "GPU", "", "2 GPUs"),
        (1, "uncorrectable ECC error", "", "1 uncorrectable ECC error"),
        (3, "process", "processes", "3 processes"),
    ],
)
def test_a_count_agrees_with_its_noun(n: int, noun: str, plural: str, said: str) -> None:
    assert counted(n, noun, plural) == said


def one_host(name: str = "solo", gpus: int = 1, verdict: HostVerdict | None = None) -> HostSnapshot:
    info = hello(name, gpus)
    sample = Sample(v=1, t=T, seq=1, gpus=[reading(i, 1) for i in range(gpus)])
    return HostSnapshot(
        name=name,
        state=HostState.STREAMING,
        hello=info,
        sample=sample,
        sample_t=T,
        verdict=verdict or HostVerdict(host=Verdict(level=Level.OK)),
    )


def test_the_report_counts_one_host_and_one_gpu_in_the_singular() -> None:
    snap = FleetSnapshot(t=T, hosts=(one_host(),))
    assert summary_line(snap) == "GPUTUI OK - 1 host, 1 GPU: 1 ok"
    two = FleetSnapshot(t=T, hosts=(one_host("a", 2), one_host("b", 2)))
    assert "2 hosts, 4 GPUs" in summary_line(two)
    assert "1 host, 1 GPU" in report_table(snap) and "hosts" not in report_table(snap)


@pytest.mark.parametrize(
    ("errors", "said"),
    [
        (1, "GPU0 1 uncorrectable ECC error since reset"),
        (3, "GPU0 3 uncorrectable ECC errors since reset"),
    ],
)
def test_uncorrectable_ecc_errors_are_counted_in_words_that_agree(errors: int, said: str) -> None:
    health = HostHealth()
    info = hello("gpu001", 1)
    health.evaluate(info, Sample(v=1, t=T, seq=1, gpus=[reading(0, 1)]), T)
    bad = reading(0, 2, ecc_uncorrected_volatile=errors)
    verdict = health.evaluate(info, Sample(v=1, t=T + 1, seq=2, gpus=[bad]), T + 1)
    assert [r.text for r in verdict.host.reasons if r.code == "ecc_uncorrectable"] == [said]


async def test_a_host_that_gets_worse_is_one_host_in_the_toast() -> None:
    async with running() as r:
        r.fleet.scripts["gpu001"].reasons = [R("temp_high", Level.WARN, "GPU0 warm", 0)]
        await r.tick()
        toasts = [n.message for n in r.app._notifications]
        assert any(m.startswith("1 host worse: gpu001") for m in toasts), toasts
        assert not any("(s)" in m for m in toasts)


# -- nothing said twice -----------------------------------------------------------------------


def runtime_events(scenario: str, until_s: float) -> list[FleetEvent]:
    """What the collector makes of the real agent's stream on the simulated NVML."""
    stream = run_fast(load_scenario(scenario), until=until_s)
    now = [0.0]
    events: list[FleetEvent] = []
    runtime = HostRuntime(
        "sim-016",
        interval_s=1.0,
        emit=lambda event, _urgent: events.append(event),
        clock=lambda: now[0],
        monotonic=lambda: now[0],
    )
    runtime.stream_started()
    for line in stream.raw.splitlines():
        now[0] = json.loads(line).get("t", now[0])
        runtime.on_line(line)
    return events


def test_an_xid_event_says_what_it_is_not_its_number_twice() -> None:
    events = runtime_events("xid79", 6)
    (xid,) = [e for e in events if e.kind == "xid"]
    assert xid.text == "GPU3 XID 79: GPU has fallen off the bus"
    assert "Xid 79" not in xid.text  # NVML's event text names only the number
    (lost,) = [e for e in events if e.kind == "gpu_lost"]
    assert lost.text == "GPU3 is lost"  # not "GPU3 gpu lost: GPU 3: GPU is lost"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("Xid 13 on GPU 0", "graphics engine exception"),
        ("Xid (13) on a GPU.", "graphics engine exception"),
        ("", "graphics engine exception"),
        ("Graphics SM Warp Exception", "graphics engine exception: Graphics SM Warp Exception"),
    ],
)
def test_xid_words_keep_the_drivers_words_only_when_they_add(text: str, said: str) -> None:
    assert xid_words(13, text) == said
    assert xid_words(250, "Xid 250 on GPU 1") == "not in gputui's catalogue"


@pytest.mark.parametrize(
    ("error", "said"),
    [
        ("GPU is lost", "GPU3 is lost (fell off the bus)"),
        ("GPU 3: GPU is lost", "GPU3 is lost (fell off the bus)"),
        (None, "GPU3 is lost (fell off the bus)"),
        ("Unknown Error", "GPU3 is lost (fell off the bus): Unknown Error"),
    ],
)
def test_a_lost_gpu_is_said_lost_once(error: str | None, said: str) -> None:
    health = HostHealth()
    info = hello("gpu001", 4)
    readings = [reading(i, 1) for i in range(4)]
    readings[3] = GpuReading(index=3, status="lost", error=error)
    verdict = health.evaluate(info, Sample(v=1, t=T, seq=1, gpus=readings), T)
    assert [r.text for r in verdict.host.reasons if r.code == "gpu_lost"] == [said]
    event = Event(v=1, t=T, kind="gpu_lost", gpu=2, text="GPU 2: GPU is lost")
    health.observe_event(event, T)
    verdict = health.evaluate(info, Sample(v=1, t=T + 1, seq=2, gpus=readings), T + 1)
    lost = [r.text for r in verdict.host.reasons if r.code == "gpu_lost"]
    assert "GPU2 is lost (fell off the bus)" in lost


def test_a_reset_the_gpu_asks_for_is_said_once() -> None:
    health = HostHealth()
    readings = [GpuReading(index=0, status="reset_required", error="GPU requires reset")]
    verdict = health.evaluate(hello("gpu001", 1), Sample(v=1, t=T, seq=1, gpus=readings), T)
    assert [r.text for r in verdict.host.reasons] == ["GPU0 needs a GPU reset"]


# -- advice on hosts that are not ok ----------------------------------------------------------


@pytest.mark.parametrize("xid", [92, 121])
def test_nvidias_words_never_open_with_none_on_a_warning(xid: int) -> None:
    info = xid_info(xid)
    assert info.level is Level.WARN and info.action is Action.NONE  # the codes stay
    assert not info.action_text.startswith("none")
    health = HostHealth()
    health.observe_event(Event(v=1, t=T, kind="xid", gpu=0, xid=xid, text=""), T)
    sample = Sample(v=1, t=T, seq=1, gpus=[reading(0, 1)])
    (text,) = [r.text for r in health.evaluate(hello("gpu001", 1), sample, T).host.reasons]
    assert text.endswith("; contact support if it persists") and "none" not in text


def test_a_host_that_is_not_ok_is_never_recommended_none() -> None:
    warm = Reason(code="temp_high", level=Level.WARN, text="GPU0 86 C >= max operating 85 C", gpu=0)
    verdict = HostVerdict(host=Verdict(level=Level.WARN, reasons=(warm,)))
    snap = FleetSnapshot(t=T, hosts=(one_host("warm", 1, verdict),))
    table = report_table(snap, 100)
    assert "warm: warn, recommended: watch it" in table
    assert "recommended: none" not in table and "-> none" not in table
    assert "| watch it |" in report_markdown(snap)
    assert advice(Action.NONE, Level.OK) == "none"  # an ok host needs nothing, and says so


def test_the_host_screen_never_recommends_none_on_a_warning() -> None:
    warm = Reason(code="temp_high", level=Level.WARN, text="GPU0 86 C >= max operating 85 C", gpu=0)
    verdict = HostVerdict(host=Verdict(level=Level.WARN, reasons=(warm,)))
    text = reasons_text(one_host("warm", 1, verdict), DEFAULT_PALETTE).plain
    assert "(recommended: watch it)" in text and "recommended: none" not in text
    assert advice(Action.DRAIN, Level.WARN) == "drain"


def test_triage_and_the_tui_say_restart_app_alike() -> None:
    step = step_for("xid_13", Level.WARN, Action.RESTART_APP)
    assert step is OperatorStep.RESTART_APP and step.value == Action.RESTART_APP.value
    assert "resume app" not in {s.value for s in OperatorStep}


def test_a_finding_of_xid_92_reads_as_advice() -> None:
    from gputui.core.triage import Finding

    info = xid_info(92)
    finding = Finding(
        code="xid_92",
        level=Level.WARN,
        text="GPU0 XID 92: high single-bit ECC error rate",
        action=info.action,
        action_text=info.action_text,
        gpu=0,
    )
    line = finding_line(finding)
    assert "NVIDIA: contact support if it persists" in line and "none;" not in line


# -- confirmations ----------------------------------------------------------------------------


async def test_the_demos_confirmations_show_the_slurm_command_and_the_node_it_acts_on(
    tmp_path: Path,
) -> None:
    names = [f"sim-{i:03d}" for i in range(1, 9)]
    config = demo_config(names, tmp_path / "scheduler.log")
    journal = Journal.open(tmp_path / "journal.sqlite3")
    ops = OperatorActions(config, journal)
    try:
        drain = "\n".join(ops.prepare_fail("sim-003", "GPU3 XID 79").preview())
        spare = ops.prepare_spare("sim-003")
        assert spare is not None
        offer = "\n".join(spare.preview())
    finally:
        await ops.aclose()
        journal.close()
    for shown in (drain, offer):
        assert "sh -c" not in shown and "printf" not in shown and "tee -a" not in shown
    program = tmp_path / "demo-slurm" / "scontrol"
    assert f"sh {program} update NodeName=sim-003 State=DRAIN 'Reason=gputui: GPU3 XID 79'" in (
        drain
    )
    # The spare is what the command brings in: the line says so, and names the node it replaces.
    assert "activate-spare on sim-007 in place of sim-003" in offer
    assert f"sh {program} update NodeName=sim-007 State=RESUME" in offer


async def test_resume_restates_what_the_host_reads_now() -> None:
    fleet = small_fleet()
    fleet.scripts["gpu005"].marked_failed = True  # marked, and still failing
    async with running(fleet) as r:
        r.table.select_host("gpu005")
        await r.press("u")
        dialog = r.app.screen
        assert isinstance(dialog, PreviewDialog)
        assert dialog.question.startswith("return gpu005 to service")
        assert dialog.question.endswith(
            "? It reads failed now: GPU3 XID 79: GPU has fallen off the bus"
        )
        await r.press("n")
        r.table.select_host("gpu008")  # marked, and healthy again
        await r.press("u")
        dialog = r.app.screen
        assert isinstance(dialog, PreviewDialog)
        assert dialog.question.endswith("? It reads ok now.")


# -- a reason read at another time ------------------------------------------------------------


def test_a_pcie_reason_read_under_load_says_so_once_the_gpu_idles() -> None:
    """The real H200's idle-load-idle stream, its link read one generation down under load:
    while the GPU idles (links train down at idle, so the judgement stands) the reason says
    it is an earlier reading, never "at 99% util" beside a GPU reading 0%."""
    lines = [json.loads(line) for line in H200.read_text().splitlines()]
    info = msgspec.convert(lines[0], Hello)
    health = HostHealth()
    seen: list[tuple[float, str]] = []
    for message in lines[1:]:
        sample = msgspec.convert(message, Sample)
        (g,) = sample.gpus
        if g.pcie_gen is not None and (g.util_pct or 0) > 50:
            g = msgspec.structs.replace(g, pcie_gen=4)  # a link trained down under load
            sample = msgspec.structs.replace(sample, gpus=[g])
        verdict = health.evaluate(info, sample, sample.t)
        for r in verdict.host.reasons:
            if r.code == "pcie_downgraded":
                seen.append((g.util_pct or 0.0, r.text))
    loaded = [text for util, text in seen if util > 50]
    idle = [text for util, text in seen if util <= 50]
    assert loaded and idle  # raised under load, kept through the idle end of the recording
    assert all(re.fullmatch(r"GPU0 PCIe Gen4 < max Gen5 at \d+% util", t) for t in loaded)
    assert all(t.endswith("(an earlier reading; idle now)") for t in idle)


# -- the event log: one line per fault ----------------------------------------------------------


def fault_events(host: str) -> list[FleetEvent]:
    """One XID 79's lines as the collector makes them from the real agent's stream."""
    events = [e for e in runtime_events("xid79", 6) if e.kind != "state"]
    assert [e.kind for e in events] == ["verdict", "xid", "gpu_lost"]
    return [msgspec.structs.replace(e, host=host) for e in events]


async def test_a_fault_is_one_line_of_the_event_log_with_its_lines_one_key_away() -> None:
    async with running(size=(120, 30)) as r:
        r.fleet.scripts["gpu001"].reasons = [
            R("xid_79", Level.FAILED, "GPU3 XID 79: GPU has fallen off the bus", 3, latched=True)
        ]
        events = fault_events("gpu001")
        t0 = events[0].t
        moved = [msgspec.structs.replace(e, t=r.fleet.tick + 1 + e.t - t0 + 1.7e9) for e in events]
        await r.push(lambda: _with_events(r, moved))
        log = r.app.fleet_screen.event_log
        lines = [line for line in log.lines() if "gpu001" in line]
        assert len(lines) == 1, lines  # verdict, XID, lost GPU and the app's alert: one fault
        (line,) = lines
        assert (
            "failed" in line and "xid" in line and "GPU3 XID 79: GPU has fallen off the bus" in line
        )
        assert line.endswith("+3")
        await r.press("4")
        log.action_cursor_to(0)
        await r.press("enter")
        dialog = r.app.screen
        assert isinstance(dialog, LinesDialog)
        assert [line.split()[3] for line in dialog.lines] == ["verdict", "xid", "gpu_lost", "alert"]
        await r.press("escape")
        assert not isinstance(r.app.screen, LinesDialog)


def _with_events(r, events: list[FleetEvent]) -> FleetSnapshot:  # type: ignore[no-untyped-def]
    snap = r.fleet.advance()
    return msgspec.structs.replace(snap, events=(*snap.events, *events))


def fault(
    t: float, kind: str, gpu: int, xid: int | None = None, level: Level = Level.FAILED
) -> FleetEvent:
    return FleetEvent(
        t=t, host="gpu001", kind=kind, text=f"{kind} {gpu} {xid}", level=level, gpu=gpu, xid=xid
    )


async def test_faults_of_other_gpus_or_later_times_are_lines_of_their_own() -> None:
    from textual.app import App, ComposeResult

    class LogApp(App[None]):
        def compose(self) -> ComposeResult:
            yield EventLog(id="log")

    async with LogApp().run_test() as pilot:
        log = pilot.app.query_one(EventLog)
        log.add([fault(T, "verdict", 3), fault(T, "xid", 3, 79), fault(T + 1, "gpu_lost", 3)])
        assert len(log.lines()) == 1
        log.add([fault(T + 1, "xid", 5, 79)])  # another GPU: another fault
        log.add([fault(T + 1, "xid", 3, 48)])  # another XID on the same GPU: another fault
        log.add([fault(T + 2 + FAULT_WINDOW_S, "verdict", 3)])  # later: another
        log.add([FleetEvent(t=T + 9, host="gpu001", kind="action", text="marked failed")])
        await pilot.pause()
        lines = log.lines()
        assert len(lines) == 5, lines
        assert lines[-1].endswith("+2") and "xid 3 79" in lines[-1]  # the cause leads
        log.set_filter("gpu_lost")  # a filter finds a fault by any of its lines
        assert log.shown == 1
