"""The one-line fleet summary at the top of the main screen."""

from __future__ import annotations

from rich.text import Text

from gputui.core.model import FleetSnapshot
from gputui.core.text import plain
from gputui.core.words import counted
from gputui.render.report import fleet_labels
from gputui.tui.palette import LABELS, Palette
from gputui.tui.widgets.event_log import clock

# Used when the full words do not fit the line (an 80-column terminal with every state).
SHORT = {
    "failed": "fail",
    "critical": "crit",
    "unreachable": "unreach",
    "connecting": "conn",
    "marked-failed": "marked",
    "unknown": "unkn",
}


def summary_text(snapshot: FleetSnapshot, palette: Palette, note: str = "", width: int = 0) -> Text:
    """`32 hosts 256 GPUs │ 2 critical 1 warn 29 ok │ 12:00:03`, worst first, fitted to `width`.

    The counts come first: in a narrow terminal the clock is what gets cut off.
    """
    counts: dict[str, int] = {}
    gpus = 0
    for host, label in zip(snapshot.hosts, fleet_labels(snapshot), strict=True):
        counts[label] = counts.get(label, 0) + 1
        gpus += len(host.hello.gpus) if host.hello is not None else 0

    def build(short: bool) -> Text:
        hosts = f"{len(snapshot.hosts)} host{'' if len(snapshot.hosts) == 1 else 's'}"
        text = Text.assemble((f"{hosts} {counted(gpus, 'GPU')} ", "bold"), ("│", "dim"))
        for label in LABELS:
            n = counts.get(label, 0)
            if n:
                text.append(f" {n} ")
                text.append(SHORT.get(label, label) if short else label, style=palette.chip(label))
        text.append(" │ ", style="dim")
        text.append(clock(snapshot.t))
        if note:
            text.append("  ")
            text.append(plain(note), style="dim")  # may quote an error's text
        return text

    full = build(False)
    return full if not width or full.cell_len <= width else build(True)
